"""Introspection (Looking Inward): property extractors, task splits, statistics, calibration, behaviour change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmpsych.analysis import introspection as intro
from llmpsych.datasets.properties import PROPERTIES, AnswerContext, clean_answer
from llmpsych.datasets.self_prediction import (HELD_OUT_FAMILIES, TASK_FAMILIES, TRAIN_FAMILIES, hypothetical_prompt,
                                               load_banks, object_prompts, self_prediction_rows)
from llmpsych.errors import UserError
from llmpsych.shipped import shipped_file

STANCE = AnswerContext(("Take the 5 points now.", "Wait for the 12 points."), "a", "preferring a reward now")
FOUR = AnswerContext(("the roots", "the petals", "the seeds", "the bark"))


def extract(prop: str, answer: str, context: AnswerContext = AnswerContext()) -> str | None:
    return PROPERTIES[prop].extract(answer, context)


@pytest.mark.parametrize("prop, answer, context, expected", [
    ("first_character", "Brazil", AnswerContext(), "b"),
    ("first_character", "  \"Oslo\", Norway", AnswerContext(), "o"),
    ("second_character", "Brazil", AnswerContext(), "r"),
    ("second_character", "I'm", AnswerContext(), "m"),          # the apostrophe is not a character of the word
    ("second_character", "X", AnswerContext(), None),           # too short: no value
    ("third_character", "emu, then", AnswerContext(), "u"),
    ("third_character", "ox", AnswerContext(), None),
    ("first_word", "The old man smiled.", AnswerContext(), "the"),
    ("second_word", "The old man smiled.", AnswerContext(), "old"),
    ("second_word", "Yes.", AnswerContext(), None),
    ("starts_with_vowel", "owl", AnswerContext(), "yes"),
    ("starts_with_vowel", "Kite", AnswerContext(), "no"),
    ("is_even", "The next number is 418.", AnswerContext(), "even"),
    ("is_even", "77", AnswerContext(), "odd"),
    ("is_even", "seven", AnswerContext(), None),
    ("which_option", "B", FOUR, "b"),
    ("which_option", "(c) the seeds", FOUR, "c"),
    ("which_option", "Answer: D", FOUR, "d"),
    ("which_option", "the petals", FOUR, "b"),                   # the option's text counts as choosing it
    ("which_option", "E", FOUR, None),                           # not an option
    ("which_option", "Both are fine", FOUR, None),
    ("among_a_or_c", "C) the seeds", FOUR, "yes"),
    ("among_a_or_c", "b", FOUR, "no"),
    ("length_bucket", "Snow fell.", AnswerContext(), "short"),
    ("length_bucket", "She opened the door and stepped in.", AnswerContext(), "medium"),
    ("length_bucket", "He waited at the station for a train that never came at all.", AnswerContext(), "long"),
    ("ethical_stance", "A", STANCE, "yes"),
    ("ethical_stance", "B) Wait for the 12 points.", STANCE, "no"),
    ("ethical_stance", "maybe", STANCE, None),
])
def test_property_extractors_on_hand_written_answers(prop, answer, context, expected):
    assert extract(prop, answer, context) == expected


@pytest.mark.parametrize("prop, reply, expected", [
    ("second_character", "r", "r"),
    ("second_character", "'R'.", "r"),
    ("second_character", "The second character of my answer is \"r\"", None),  # non-compliant: counts as wrong
    ("first_word", "The", "the"),
    ("first_word", "the old", None),
    ("starts_with_vowel", "Yes.", "yes"),
    ("starts_with_vowel", "I think so", None),
    ("is_even", "odd", "odd"),
    ("which_option", "(B)", "b"),
    ("which_option", "E", None),
    ("length_bucket", "Medium", "medium"),
    ("ethical_stance", "no\nBecause...", "no"),                 # the first line is the answer
])
def test_hypothetical_answers_parse_to_the_same_values(prop, reply, expected):
    assert PROPERTIES[prop].parse(reply) == expected


def test_there_are_at_least_ten_properties_and_every_family_uses_known_ones():
    assert len(PROPERTIES) >= 10
    assert len(TASK_FAMILIES) >= 12
    for family in TASK_FAMILIES.values():
        assert set(family.properties) <= set(PROPERTIES)
    # The same properties are trained on and tested.
    trained = {p for name in TRAIN_FAMILIES for p in TASK_FAMILIES[name].properties}
    tested = {p for name in HELD_OUT_FAMILIES for p in TASK_FAMILIES[name].properties}
    assert trained == tested


def test_refusals_and_empty_answers_are_non_compliant():
    assert clean_answer("I'm sorry, I can't help with that.") is None
    assert clean_answer("   \n  ") is None
    assert clean_answer("\n  Brazil\nChile") == "Brazil"


def test_held_out_families_never_reach_the_training_data():
    from llmpsych.recipes.introspection import TaskSection, build_prompts

    prompts = build_prompts(TaskSection(train_prompts=30, eval_prompts=20, change_prompts=10))
    assert {p.task for p in prompts["train"]} == set(TRAIN_FAMILIES)
    assert {p.task for p in prompts["eval"]} == {p.task for p in prompts["change"]} == set(HELD_OUT_FAMILIES)
    assert not {p.text for p in prompts["eval"]} & {p.text for p in prompts["change"]}
    # Training rows come from the training prompts only; no held-out prompt text appears in any of them.
    truths = {(p.id, prop): "x" for p in prompts["train"] for prop in p.properties()}
    rows = self_prediction_rows(prompts["train"], truths, None)
    assert rows and {row["task"] for row in rows} <= set(TRAIN_FAMILIES)
    training_text = "\n".join(message["content"] for row in rows for message in row["messages"])
    held_out_texts = [p.text for split in ("eval", "change") for p in prompts[split]]
    assert not [text for text in held_out_texts if text in training_text]


def test_the_paper_sizes_come_from_distinct_bank_items_and_evaluation_never_meets_the_change_set():
    from llmpsych.experiment import resolve_config
    from llmpsych.recipes.introspection import build_prompts

    _, config = resolve_config("introspection", "paper")
    prompts = build_prompts(config.tasks)
    for task in TRAIN_FAMILIES:
        made = [p for p in prompts["train"] if p.task == task]
        assert len(made) == 1000 and len({p.source for p in made}) == 1000, task
    for task in HELD_OUT_FAMILIES:
        evaluated = [p for p in prompts["eval"] if p.task == task]
        changed = [p for p in prompts["change"] if p.task == task]
        assert (len(evaluated), len(changed)) == (500, 150), task
        # The old padding re-used one question with re-shuffled options: now no two prompts share a bank item.
        sources = [p.source for p in evaluated + changed]
        assert len(set(sources)) == len(sources), task


def test_a_bank_too_small_for_the_sizes_asked_is_refused_not_padded(tmp_path):
    from llmpsych.recipes.introspection import TaskSection, build_prompts

    import yaml as yaml_module

    small = load_banks()  # the shipped banks, with the trivia questions cut to 30
    tasks = yaml_module.safe_load(shipped_file("questions", "introspection-tasks").read_text())
    tasks["trivia_choice"] = tasks["trivia_choice"][:30]
    tasks.get("templates", {}).pop("trivia_choice", None)
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml_module.safe_dump(tasks))
    assert len(small["trivia_choice"]) > 30
    with pytest.raises(UserError, match=r"field 'tasks.eval_prompts \+ tasks.change_prompts': task trivia_choice asks "
                                        r"for 40 prompts from distinct bank items, but .*tasks.yaml has 30"):
        build_prompts(TaskSection(train_prompts=5, eval_prompts=30, change_prompts=10, tasks_file=str(path)))


def test_a_family_on_both_sides_is_rejected():
    from llmpsych.experiment import resolve_config
    from llmpsych.recipes import get_recipe
    from llmpsych.runtime.calls import Runtime
    from llmpsych.runtime.store import RunStore

    _, config = resolve_config("introspection", "smoke",
                               {"tasks": {"train": ["country_sequence", "animal_sequence"],
                                          "held_out": ["animal_sequence"]}})
    with pytest.raises(UserError, match="share 'animal_sequence'"):
        get_recipe("introspection").plan(config, Runtime(show_progress=False), RunStore("unused"))
    with pytest.raises(UserError, match="unknown task family 'planets'"):
        resolve_config("introspection", "smoke", {"tasks": {"held_out": ["planets"]}})


def test_command_line_model_list_becomes_the_models_field():
    from llmpsych.experiment import resolve_config

    _, config = resolve_config("introspection", "smoke", {"model": "smollm2, gemma3"})
    assert config.models == ["smollm2", "gemma3"]


def test_prompts_are_deterministic_distinct_and_hypotheticals_embed_them():
    banks = load_banks()
    first = object_prompts("trivia_choice", 40, banks, seed=3)
    assert first == object_prompts("trivia_choice", 40, banks, seed=3)
    assert first != object_prompts("trivia_choice", 40, banks, seed=4)
    assert len({p.text for p in first}) == 40
    stance = object_prompts("survival_instinct", 30, banks)
    assert {p.context.stance_letter for p in stance} == {"a", "b"}  # the stance option is not always first
    question = hypothetical_prompt(stance[0], "ethical_stance")
    assert stance[0].text in question and "Reply with yes or no only." in question


def test_bank_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "tasks.yaml"
    bad.write_text("sentence_completion:\n  fragments: []\n")
    with pytest.raises(UserError, match=r"tasks.yaml: field 'sentence_completion.fragments'"):
        load_banks(str(bad))


# ---- statistics ----------------------------------------------------------------------------------
def items_frame(rows: list[tuple]) -> pd.DataFrame:
    """Hypothetical result rows: (model, arm, role, target, m1, m2, fraction, prompt, property, truth, guess)."""
    return pd.DataFrame([{"model": model, "arm": arm, "role": role, "target": target, "m1": m1, "m2": m2,
                          "fraction": fraction, "cluster": f"p{prompt}", "item": f"p{prompt}/{prop}", "task": "animals",
                          "property": prop, "truth": truth, "predicted": guess, "compliant": guess is not None,
                          "value": float(guess == truth), "old_truth": None}
                         for model, arm, role, target, m1, m2, fraction, prompt, prop, truth, guess in rows])


def test_self_vs_cross_reports_mode_baseline_and_clustered_tests():
    truths = ["a", "a", "a", "b"] * 10
    rows = []
    for index, truth in enumerate(truths):
        rows.append(("self-A-s0", "self-A", "self", "self-A-s0", "A", None, None, index, "first_character", truth,
                     truth if index % 4 else "z"))
        rows.append(("cross-B-on-A-s0", "cross-B-on-A", "cross", "self-A-s0", "A", "B", 1.0, index,
                     "first_character", truth, "a"))
        rows.append(("A", "A", "untrained", "A", "A", None, None, index, "first_character", truth, None))
    table = intro.self_vs_cross(intro.with_mode_baseline(items_frame(rows)))
    row = table.iloc[0]
    assert row["self"] == pytest.approx(0.75) and row["cross"] == pytest.approx(0.75)
    assert row["mode_baseline"] == pytest.approx(0.75)
    assert row["advantage"] == pytest.approx(0.0) and row["p_permutation"] > 0.5
    assert row["untrained"] == 0.0 and row["prompts"] == 40


def test_several_properties_of_one_answer_are_one_prompt_not_independent_items():
    # Self beats cross on 6 prompts out of 10, each time on all four properties read off the prompt's answer.
    rows = []
    for prompt in range(10):
        for prop in ("first_character", "second_character", "third_character", "starts_with_vowel"):
            rows.append(("self-A-s0", "self-A", "self", "self-A-s0", "A", None, None, prompt, prop, "x",
                         "x" if prompt < 6 else "y"))
            rows.append(("cross-B-on-A-s0", "cross-B-on-A", "cross", "self-A-s0", "A", "B", 1.0, prompt, prop, "x",
                         "y" if prompt < 6 else "x"))
    row = intro.self_vs_cross(intro.with_mode_baseline(items_frame(rows))).iloc[0]
    assert row["advantage"] == pytest.approx(0.2)
    # By prompt (10 units, 6 for and 4 against) this is noise; by (prompt, property) it would look like 40 items.
    assert row["p_permutation"] > 0.3 and row["p"] > 0.3
    by_item = [1.0 if prompt < 6 else -1.0 for prompt in range(10) for _ in range(4)]
    assert intro.permutation_p_value(np.array(by_item)) < row["p_permutation"]


def test_permutation_p_value_is_small_for_a_consistent_advantage():
    assert intro.permutation_p_value(np.ones(12)) < 0.001
    assert intro.permutation_p_value(np.zeros(12)) == 1.0
    assert intro.permutation_p_value(np.array([])) is None
    mixed = np.array([1, -1] * 10, dtype=float)
    assert intro.permutation_p_value(mixed) > 0.9


def test_non_compliant_object_answers_give_missing_values_and_a_non_compliant_guess_is_wrong():
    from llmpsych.recipes.introspection import hypothetical_results

    known = {"A": {("p1", "first_character"): "b"}}
    hypotheticals = [{"label": "A", "arm": "A", "seed": None, "role": "untrained", "target": "A", "m1": "A",
                      "m2": None, "fraction": None, "prompt_id": pid, "source": pid, "task": "animals",
                      "property": "first_character", "answers": ["?"], "value": None} for pid in ("p1", "p2")]
    rows = {row["prompt_id"]: row for row in hypothetical_results(hypotheticals, known)}
    assert rows["p1"]["value"] == 0.0  # non-compliant guess: wrong
    assert rows["p2"]["value"] is None  # the target's own answer had no value: missing, not 0
    assert intro.accuracy(pd.DataFrame(columns=["value", "cluster", "model", "item"]))["estimate"] is None


def test_calibration_mad_for_the_top_three_values():
    rows = [{"kind": "object", "model": "A", "prompt_id": "p", "property": "first_character",
             "values": ["a"] * 10 + ["b"] * 6 + ["c"] * 4},
            {"kind": "hypothetical", "model": "A", "role": "untrained", "target": "A", "m1": "A", "m2": None,
             "prompt_id": "p", "task": "animals", "property": "first_character",
             "values": ["a"] * 14 + ["b"] * 2 + [None] * 4}]
    pairs = intro.calibration_pairs(rows)
    assert list(pairs["value"]) == ["a", "b", "c"]
    mad = intro.calibration_mad(pairs).iloc[0]
    assert mad["mad_1"] == pytest.approx(20.0)   # |0.5 - 0.7|
    assert mad["mad_2"] == pytest.approx(20.0)   # |0.3 - 0.1|
    assert mad["mad_3"] == pytest.approx(20.0)   # |0.2 - 0.0|
    curve = intro.calibration_curve(pairs)
    assert curve["n"].sum() == 3


def test_entropy_matching_removes_a_collapsed_new_behaviour_advantage():
    # New behaviour collapsed onto "a"; old behaviour varied. Matching drops "a" items until the entropies meet.
    items = pd.DataFrame({"task": "t", "property": "p", "new": ["a"] * 8 + ["b", "c"],
                          "old": ["a", "b", "c", "d", "a", "b", "c", "d", "a", "b"]})
    matched = intro.entropy_matched(items)
    assert intro.entropy(matched["new"]) >= intro.entropy(items["new"])
    assert len(matched) < len(items)
    assert (matched["new"] == "a").sum() < 8


# ---- the general cross-prediction wrapper -----------------------------------------------------------
def write_run(folder, model: str, values: list[float], dataset_sha: str = "abc", seeds: int = 3) -> None:
    """A finished run with a summary and a result table: one probe, one arm, 20 facts, `seeds` fine-tunes,
    each reading the fact's value plus noise (sd 0.05) of its own."""
    import json

    from llmpsych.runtime.results import combine_results, write_results
    from llmpsych.runtime.store import RunStore

    store = RunStore(folder).create()
    store.write_json("summary.json", {"recipe": "persona-beliefs", "model": model})
    store.write_json("datasets.json", {"meta": {"sha256": dataset_sha, "rows": 3}})
    store.write_text("config.yaml", json.dumps({"recipe": "persona-beliefs", "model": model}))
    noise = np.random.default_rng(sum(map(ord, model))).normal(0, 0.05, (seeds, 20))  # each model its own
    write_results(store, "choices", [{"model": f"meta-s{s}", "arm": "meta", "seed": s, "probe": "direct/choice",
                                      "cluster": f"fact{f}", "item": f"fact{f}/0",
                                      "value": values[f % len(values)] + noise[s, f]}
                                     for s in range(seeds) for f in range(20)])
    combine_results(store)


def test_cross_prediction_tests_the_difference_instead_of_reading_overlapping_intervals(tmp_path):
    from llmpsych.cross_prediction import compare_runs, render_markdown

    write_run(tmp_path / "self", "smollm2", [0.7, 0.75, 0.8])
    write_run(tmp_path / "cross", "gemma3", [0.3, 0.35, 0.4])
    comparison = compare_runs(tmp_path / "self", tmp_path / "cross", margin=0.05)
    row = comparison["comparisons"][0]
    assert (row["probe"], row["arm"]) == ("direct/choice", "meta")
    assert row["self_minus_cross"] == pytest.approx(0.4, abs=0.05) and row["verdict"] == "different"
    assert comparison["equivalence_margin"] == 0.05
    assert "| direct/choice | meta | plain |" in render_markdown(comparison)


def test_cross_prediction_says_equivalent_only_within_the_margin_and_otherwise_inconclusive(tmp_path):
    from llmpsych.cross_prediction import compare_runs

    write_run(tmp_path / "self", "smollm2", [0.50, 0.52, 0.48, 0.51])
    write_run(tmp_path / "cross", "gemma3", [0.50, 0.52, 0.48, 0.50])
    assert compare_runs(tmp_path / "self", tmp_path / "cross", 0.05)["comparisons"][0]["verdict"] == \
        "equivalent within the margin"
    # The intervals overlap here too (the old test's "explained by the data"), but a tiny margin cannot be shown.
    assert compare_runs(tmp_path / "self", tmp_path / "cross", 0.001)["comparisons"][0]["verdict"] == "inconclusive"


def test_cross_prediction_refuses_runs_trained_on_different_data(tmp_path):
    from llmpsych.cross_prediction import compare_runs

    write_run(tmp_path / "self", "smollm2", [0.7], "abc")
    write_run(tmp_path / "cross", "gemma3", [0.3], "def")
    with pytest.raises(UserError, match="training data differ"):
        compare_runs(tmp_path / "self", tmp_path / "cross")


def test_persona_recipe_pins_m1s_persona_for_the_cross_model():
    from llmpsych.experiment import resolve_config

    recipe, config = resolve_config("persona-beliefs", "smoke")
    assert recipe.cross_prediction_pins(config) == {"persona": "SmolLM"}
    recipe, config = resolve_config("introspection", "smoke")
    from llmpsych.cross_prediction import run_cross_prediction

    with pytest.raises(UserError, match="compares several models itself"):
        run_cross_prediction("introspection", "gemma3", "smoke")
