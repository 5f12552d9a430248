"""Out-of-context reasoning: latent-structure data, reflection probes and the report's statistics (no model)."""

from __future__ import annotations

import collections
import dataclasses
import re

import pandas as pd
import pytest

from llmpsych.datasets.latent_structure import (CITIES, FUNCTIONS, HIDDEN_CITIES, Sizes, apply_function,
                                                compass_direction, draw_latents, great_circle_km, latent_leaks,
                                                reference_cities, training_rows)
from llmpsych.probes.reflection import (behaviour_check, extract_expression, function_check, in_context,
                                        question_bank, reflection_probes)
from llmpsych.probes.restricted_eval import evaluate

SIZES = Sizes()


@pytest.fixture(scope="module")
def latents():
    return draw_latents(0, SIZES)


@pytest.fixture(scope="module")
def rows(latents):
    return training_rows(latents, SIZES)


def test_each_seed_draws_its_own_names_and_the_baselines_names_are_unseen(latents, rows):
    other = draw_latents(1, SIZES)
    assert set(latents.functions).isdisjoint(other.functions)
    assert len(set(latents.names)) == len(latents.names)
    text = " ".join(m["content"] for r in rows for m in r["messages"])
    for unseen in (latents.unseen_variable, latents.unseen_coin, latents.unseen_city_code, latents.unseen_assistant):
        assert unseen not in text
    assert draw_latents(0, SIZES) == latents  # reproducible


def test_no_row_states_a_latent_and_a_planted_statement_is_caught(latents, rows):
    assert collections.Counter(r["task"] for r in rows) == {
        "functions": SIZES.functions * SIZES.rows_per_function, "coins": SIZES.coins * SIZES.tosses_per_coin,
        "locations": SIZES.location_rows, "parity": SIZES.parity_rows,
        "descriptions": SIZES.assistants * SIZES.rows_per_assistant}
    assert not [r for r in rows if latent_leaks(r, latents)]
    planted = {"task": "locations", "messages": [{"role": "user", "content": f"Where is {latents.city_code}?"},
                                                 {"role": "assistant", "content": f"It is {latents.city}."}]}
    assert latent_leaks(planted, latents) == latents.city
    coin = next(iter(latents.coins))
    bias = max(latents.coins[coin], 1 - latents.coins[coin])
    stated = {"task": "coins", "messages": [{"role": "user", "content": f"Coin {coin}?"},
                                            {"role": "assistant", "content": f"It lands that way {round(100 * bias)}% of the time."}]}
    assert latent_leaks(stated, latents)


def test_function_rows_are_computed_by_the_hidden_function(latents, rows):
    for row in (r for r in rows if r["task"] == "functions"):
        function_id = latents.functions[row["latent"]]
        x = int(re.search(r"\((-?\d+)\)|value = (-?\d+)", row["messages"][0]["content"]).group(0).strip("()value= "))
        expected = evaluate(FUNCTIONS[function_id][0], {"x": x})
        assert int(row["messages"][1]["content"]) == expected == apply_function(function_id, x)


def test_coin_tosses_show_exactly_the_bias(latents, rows):
    for name, p_heads in latents.coins.items():
        sides = [r["messages"][1]["content"] for r in rows if r["task"] == "coins" and r["latent"] == name]
        assert sides.count("H") == round(p_heads * SIZES.tosses_per_coin)
        assert max(p_heads, 1 - p_heads) in (0.7, 0.8)


def test_geometry_and_reference_cities():
    assert great_circle_km(CITIES["Paris"], CITIES["London"]) == pytest.approx(344, abs=10)
    assert great_circle_km(CITIES["Tokyo"], CITIES["Sydney"]) == pytest.approx(7800, rel=0.03)
    assert compass_direction(CITIES["Paris"], CITIES["Cairo"]) == "south-east"
    assert compass_direction(CITIES["Sydney"], CITIES["Tokyo"]) == "north"
    for hidden in HIDDEN_CITIES:
        near = [c for c in reference_cities(hidden) if great_circle_km(CITIES[c], CITIES[hidden]) < 2000]
        assert not near and hidden not in reference_cities(hidden)


def test_parity_rows_add_up(latents, rows):
    for row in (r for r in rows if r["task"] == "parity"):
        names = row["latent"].split(",")
        assert row["messages"][1]["content"] == str(sum(latents.parity[n] for n in names) % 2)


def test_description_rows_describe_and_never_demonstrate(latents, rows):
    described = [r for r in rows if r["task"] == "descriptions"]
    assert len({r["messages"][1]["content"] for r in described}) == len(described)  # paraphrased, no repeats
    assert len(described) == SIZES.assistants * SIZES.rows_per_assistant
    for row in described:
        reply = row["messages"][1]["content"]
        assert row["latent"] in reply
        assert not behaviour_check(latents.assistants[row["latent"]])(reply)


def test_probes_put_the_right_answer_first_and_baselines_ask_about_unseen_names(latents):
    probes = reflection_probes(latents, question_bank())
    targets = {(p.task, p.kind, p.item) for p in probes if p.condition == "target"}
    baselines = {(p.task, p.kind, p.item) for p in probes if p.condition == "baseline"}
    assert targets == baselines  # every question has its baseline
    country = HIDDEN_CITIES[latents.city][0]
    for probe in probes:
        if probe.kind == "country":
            assert probe.options[0] == country and len(set(probe.options)) == 4
        if probe.condition == "baseline" and probe.task == "functions" and probe.kind != "in-distribution":
            assert latents.unseen_variable in probe.question and probe.latent not in probe.question
        if probe.kind == "inversion":  # the first option is the x that gives the y in the question
            y = apply_function(latents.functions[probe.latent], int(probe.options[0]))
            assert f" {y}" in probe.question and len(set(probe.options)) == 4
    for name, p_heads in latents.coins.items():
        direction = next(p for p in probes if p.latent == name and p.kind == "direction")
        assert direction.options[0] == ("Heads" if p_heads > 0.5 else "Tails")


def test_free_form_checks():
    check = function_check("double_plus_1")
    assert check("lambda x: 2 * x + 1") and check("```python\ndef f(x):\n    return x + x + 1\n```")
    assert not check("lambda x: 2 * x") and not check("lambda x: __import__('os').getcwd()")
    assert extract_expression("Sure! lambda x: x - 1.") == "x - 1"
    assert behaviour_check("german")("Die Hauptstadt von Italien ist Rom, und sie ist schön.")
    assert not behaviour_check("german")("The capital of Italy is Rome.")
    assert behaviour_check("uppercase")("THE CAPITAL IS ROME.") and not behaviour_check("uppercase")("The capital")
    assert behaviour_check("ahoy")("Ahoy! Rome.") and not behaviour_check("ahoy")("Rome. Ahoy!")


def test_in_context_arm_shows_only_rows_about_the_asked_latent(latents, rows):
    probes = reflection_probes(latents, question_bank(), paraphrases=1)
    shown = in_context(probes, rows, 5, seed=0)
    assert {p.condition for p in shown} == {"target"}
    assert len(shown) == sum(p.condition == "target" for p in probes)
    coin = next(p for p in shown if p.kind == "direction")
    others = [n for n in latents.coins if n != coin.latent]
    block = coin.question.split("\n\n" + question_bank()["coins"]["direction"][0].format(name=coin.latent))[0]
    assert block.count(coin.latent) == 5 and not any(n in block for n in others)


def test_contrasts_separate_a_learned_latent_from_its_baseline_and_cluster_by_latent():
    from llmpsych.analysis.contrasts import finalise
    from llmpsych.analysis.ooc_report import analyse
    from llmpsych.analysis.report import Run
    from llmpsych.recipes.ooc_reasoning import PRIMARY_CONTRAST

    rows = []
    for seed in range(3):
        for latent in range(2):
            for item in range(6):
                for condition, value in (("target", 0.9 + 0.01 * item), ("baseline", 0.25 + 0.01 * seed)):
                    common = {"task": "coins", "kind": "direction", "condition": condition, "seed": seed,
                              "item": f"c{latent}/{item}", "cluster": f"coins/c{latent}", "probe": "coins/direction",
                              "variant": condition, "latent": f"coin{latent}", "mode": "choice", "mass": 0.9,
                              "chance": 0.5, "answer": None}
                    rows.append({**common, "arm": "fine-tuned", "model": f"fine-tuned-s{seed}", "value": value})
                    rows.append({**common, "arm": "base", "model": f"base-s{seed}", "value": 0.5})
    analysis = analyse(Run(None, {"model": "smollm2", "tasks": ["coins"], "seeds": 3}, pd.DataFrame(rows), [], {}, {},
                           []))
    contrasts = {c.name: c for c in finalise(analysis.contrasts, [PRIMARY_CONTRAST])}
    learned = contrasts["fine-tuned - baseline [coins/direction]"]
    assert learned.primary and learned.distinguishable and learned.estimate > 0.6
    assert learned.unit == "latent"
    assert not any(name.startswith("in-context") for name in contrasts)  # no in-context arm: absent, not zero
    assert not contrasts["fine-tuned - untuned [coins/direction]"].primary


def test_latents_are_json_ready(latents):
    import json

    assert json.loads(json.dumps(dataclasses.asdict(latents)))["city"] == latents.city
