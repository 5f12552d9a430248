"""Introspection (Looking Inward): property extractors, task splits, statistics, calibration, behaviour change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmpsych.analysis import introspection as intro
from llmpsych.datasets.self_prediction import (HELD_OUT_FAMILIES, TASK_FAMILIES, TRAIN_FAMILIES, hypothetical_prompt,
                                               load_banks, object_prompts, self_prediction_rows)
from llmpsych.errors import UserError
from llmpsych.probes.properties import PROPERTIES, AnswerContext, clean_answer

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


def test_a_family_on_both_sides_is_rejected():
    from llmpsych.experiment import resolve_config
    from llmpsych.recipes import introspection
    from llmpsych.runtime.calls import Runtime
    from llmpsych.runtime.store import RunStore

    _, config = resolve_config("introspection", "smoke",
                               {"tasks": {"train": ["country_sequence", "animal_sequence"],
                                          "held_out": ["animal_sequence"]}})
    with pytest.raises(UserError, match="share 'animal_sequence'"):
        introspection.plan(config, Runtime(show_progress=False), RunStore("unused"))
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
    return pd.DataFrame([{"predictor": p, "role": r, "target": t, "m1": m1, "m2": m2, "fraction": f, "prompt_id": i,
                          "task": "animals", "property": "first_character", "truth": truth, "predicted": guess,
                          "compliant": guess is not None, "correct": float(guess == truth)}
                         for p, r, t, m1, m2, f, i, truth, guess in rows])


def test_self_vs_cross_pairs_items_and_reports_mode_baseline_and_p_value():
    truths = ["a", "a", "a", "b"] * 10
    rows = []
    for index, truth in enumerate(truths):
        rows.append(("self-A", "self", "self-A", "A", None, None, index, truth, truth if index % 4 else "z"))
        rows.append(("cross-B-on-A", "cross", "self-A", "A", "B", 1.0, index, truth, "a"))
        rows.append(("A", "untrained", "A", "A", None, None, index, truth, None))
    table = intro.self_vs_cross(items_frame(rows))
    row = table.iloc[0]
    assert row["self"] == pytest.approx(0.75) and row["cross"] == pytest.approx(0.75)
    assert row["mode_baseline"] == pytest.approx(0.75)
    assert row["advantage"] == pytest.approx(0.0)
    assert row["p_value"] > 0.5
    assert row["untrained"] == 0.0 and row["items"] == 40


def test_permutation_p_value_is_small_for_a_consistent_advantage():
    assert intro.permutation_p_value(np.ones(12)) < 0.001
    assert intro.permutation_p_value(np.zeros(12)) == 1.0
    assert intro.permutation_p_value(np.array([])) is None
    mixed = np.array([1, -1] * 10, dtype=float)
    assert intro.permutation_p_value(mixed) > 0.9


def test_non_compliant_object_answers_are_dropped_and_missing_is_not_zero():
    objects = {"A": [{"prompt_id": "p1", "split": "eval", "values": {"first_character": "b"}},
                     {"prompt_id": "p2", "split": "eval", "values": {"first_character": None}}]}
    hypotheticals = [{"predictor": "A", "role": "untrained", "target": "A", "m1": "A", "m2": None, "fraction": None,
                      "prompt_id": pid, "task": "animals", "property": "first_character", "value": None}
                     for pid in ("p1", "p2")]
    items = intro.scored_items(hypotheticals, intro.truth_table(objects))
    assert list(items["prompt_id"]) == ["p1"] and items.iloc[0]["correct"] == 0.0  # non-compliant guess: wrong
    assert intro.accuracy(pd.Series(dtype=float))["estimate"] is None


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
def write_run(folder, model: str, estimate: float, dataset_sha: str = "abc") -> None:
    import json

    folder.mkdir(parents=True)
    metrics = {"adoption": {"choice": {"meta": {"benign": {"estimate": estimate, "ci_low": estimate - 0.1,
                                                           "ci_high": estimate + 0.1}}}}}
    (folder / "summary.json").write_text(json.dumps({"recipe": "persona-beliefs", "model": model, "metrics": metrics}))
    (folder / "datasets.json").write_text(json.dumps({"meta": {"sha256": dataset_sha, "rows": 3}}))


def test_cross_prediction_compares_every_shared_metric(tmp_path):
    from llmpsych.cross_prediction import compare_runs, render_markdown

    write_run(tmp_path / "self", "smollm2", 0.7)
    write_run(tmp_path / "cross", "gemma3", 0.3)
    comparison = compare_runs(tmp_path / "self", tmp_path / "cross")
    row = comparison["metrics"][0]
    assert row["metric"] == "adoption/choice/meta/benign"
    assert row["self_minus_cross"] == pytest.approx(0.4) and row["intervals_overlap"] is False
    assert "| adoption/choice/meta/benign | 0.7 | 0.3 |" in render_markdown(comparison)


def test_cross_prediction_refuses_runs_trained_on_different_data(tmp_path):
    from llmpsych.cross_prediction import compare_runs

    write_run(tmp_path / "self", "smollm2", 0.7, "abc")
    write_run(tmp_path / "cross", "gemma3", 0.3, "def")
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
