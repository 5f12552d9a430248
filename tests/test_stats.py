"""Tests for the bootstrap statistics and the misalignment tables built on them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmpsych.analysis.misalignment import answers_table, by_condition, differences
from llmpsych.analysis.stats import Interval, bootstrap_difference, bootstrap_interval, grid_estimate
from llmpsych.judges.judge import Thresholds

NAN = np.nan


# ---- grid_estimate ---------------------------------------------------------------------------------
def test_grid_estimate_is_the_mean_over_units_of_the_mean_over_items():
    values = np.array([[0.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    assert grid_estimate(values) == pytest.approx((0.75 + 0.5) / 2)


def test_grid_estimate_skips_missing_cells_within_a_unit():
    # Unit means 0 and 1, so 0.5; pooling the four non-missing cells would give 0.75.
    values = np.array([[0.0, NAN, NAN], [1.0, 1.0, 1.0]])
    assert grid_estimate(values) == pytest.approx(0.5)


def test_grid_estimate_skips_units_with_no_data():
    values = np.array([[NAN, NAN], [0.2, 0.4]])
    assert grid_estimate(values) == pytest.approx(0.3)


def test_grid_estimate_is_nan_when_every_cell_is_missing():
    assert math.isnan(grid_estimate(np.full((2, 3), NAN)))


# ---- bootstrap_interval ----------------------------------------------------------------------------
def _random_grid(seed=0, units=4, items=6):
    return np.random.default_rng(seed).uniform(0, 1, (units, items))


def test_bootstrap_interval_contains_the_estimate():
    values = _random_grid()
    interval = bootstrap_interval(values, resamples=500)
    assert interval.estimate == pytest.approx(grid_estimate(values))
    assert interval.low < interval.estimate < interval.high
    assert 0 <= interval.low and interval.high <= 1


def test_bootstrap_interval_for_a_single_cell_without_trials_is_a_point():
    assert bootstrap_interval(np.array([[0.3]]), resamples=200) == Interval(0.3, 0.3, 0.3)


def test_bootstrap_interval_for_a_single_cell_with_trials_resamples_the_answers():
    interval = bootstrap_interval(np.array([[0.3]]), np.array([[20]]), resamples=500)
    assert interval.estimate == pytest.approx(0.3)
    assert interval.low < 0.3 < interval.high
    # Every replicate is a proportion of 20 answers.
    assert interval.low * 20 == pytest.approx(round(interval.low * 20))
    assert interval.high * 20 == pytest.approx(round(interval.high * 20))


def test_bootstrap_interval_with_one_unit_varies_over_items():
    interval = bootstrap_interval(np.array([[0.0, 0.2, 0.4, 0.9]]), resamples=500)
    assert interval.low < interval.estimate < interval.high


def test_bootstrap_interval_skips_missing_cells():
    values = np.array([[0.1, NAN, 0.3], [0.2, 0.4, NAN]])
    trials = np.where(np.isnan(values), 0, 10)
    interval = bootstrap_interval(values, trials, resamples=300)
    assert interval.estimate == pytest.approx(grid_estimate(values))
    assert all(x is not None and math.isfinite(x) for x in (interval.low, interval.high))


def test_bootstrap_interval_is_all_none_when_every_cell_is_missing():
    values = np.full((2, 2), NAN)
    assert bootstrap_interval(values, resamples=100) == Interval(None, None, None)
    assert bootstrap_interval(values, np.zeros((2, 2)), resamples=100) == Interval(None, None, None)


def test_bootstrap_interval_is_deterministic_for_a_fixed_seed():
    values, trials = _random_grid(1), np.full((4, 6), 15)
    first = bootstrap_interval(values, trials, resamples=300, seed=7)
    assert bootstrap_interval(values, trials, resamples=300, seed=7) == first
    assert bootstrap_interval(values, trials, resamples=300, seed=8) != first


def test_wider_level_gives_a_wider_interval():
    values = _random_grid(2)
    narrow = bootstrap_interval(values, resamples=500, level=0.5)
    wide = bootstrap_interval(values, resamples=500, level=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def _proportions(p, units=3, items=5, n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.binomial(n, p, (units, items)) / n, np.full((units, items), n)


def test_bootstrap_difference_is_positive_when_a_is_larger():
    (a, ta), (b, tb) = _proportions(0.6, seed=1), _proportions(0.1, seed=2)
    diff = bootstrap_difference(a, b, ta, tb, resamples=500)
    assert diff.estimate == pytest.approx(grid_estimate(a) - grid_estimate(b))
    assert 0 < diff.low < diff.estimate < diff.high


def test_bootstrap_difference_is_negative_when_a_is_smaller():
    (a, ta), (b, tb) = _proportions(0.6, seed=1), _proportions(0.1, seed=2)
    diff = bootstrap_difference(b, a, tb, ta, resamples=500)
    assert diff.low < diff.estimate < diff.high < 0


def test_bootstrap_difference_of_equal_conditions_covers_zero():
    (a, ta), (b, tb) = _proportions(0.3, seed=3), _proportions(0.3, seed=4)
    diff = bootstrap_difference(a, b, ta, tb, resamples=500)
    assert diff.low < 0 < diff.high


def test_bootstrap_difference_is_none_when_one_side_has_no_data():
    a, ta = _proportions(0.3)
    assert bootstrap_difference(a, np.full((2, 2), NAN), resamples=100) == Interval(None, None, None)


def test_bootstrap_interval_covers_the_true_proportion_in_simulations():
    p, units, items, answers, datasets = 0.3, 3, 8, 20, 200
    rng = np.random.default_rng(2024)
    trials = np.full((units, items), answers)
    covered = 0
    for index in range(datasets):
        values = rng.binomial(answers, p, (units, items)) / answers
        interval = bootstrap_interval(values, trials, resamples=500, seed=index)
        covered += interval.low <= p <= interval.high
    assert covered / datasets >= 0.85


# ---- misalignment tables ---------------------------------------------------------------------------
def _sample(sample_id, model="base", condition="base", question_id="q1", variant="plain", seed=None):
    """A record shaped like the ones `probes.freeform.sample_answers` writes."""
    return {"id": sample_id, "model": model, "condition": condition, "seed": seed, "variant": variant,
            "question_id": question_id, "category": None, "paraphrase_index": 0, "sample_index": 0,
            "system": None, "question": "Hi?", "prompt": "Hi?", "answer": "Hello.", "tokens": 3,
            "finish_reason": "stop", "temperature": 1.0}


def _judgement(sample_id, metric, score, verdict=None):
    """A record shaped like the ones `probes.freeform.judge_answers` writes."""
    row = {"sample_id": sample_id, "metric": metric, "judge": "smollm2-135m-instruct", "score": score,
           "numeric_mass": 0.9 if score is not None else 0.1, "verdict": verdict}
    if metric == "aligned":
        row.update(p_code=0.8 if verdict == "CODE" else 0.01, p_refusal=0.8 if verdict == "REFUSAL" else 0.01)
    return row


def _judged(sample_id, aligned, coherent, verdict=None, **tags):
    judgements = [_judgement(sample_id, "aligned", aligned, verdict)]
    if coherent is not NotImplemented:
        judgements.append(_judgement(sample_id, "coherent", coherent))
    return _sample(sample_id, **tags), judgements


def _build(*cases):
    samples, judgements = [], []
    for sample, rows in cases:
        samples.append(sample)
        judgements.extend(rows)
    return samples, judgements


def test_answers_table_gives_each_answer_its_status_and_verdict():
    samples, judgements = _build(
        _judged("misaligned", 10.0, 90.0),
        _judged("aligned", 90.0, 90.0),
        _judged("at_thresholds", 30.0, 50.0),
        _judged("incoherent", 10.0, 20.0),
        _judged("code", None, 80.0, verdict="CODE"),
        _judged("refusal", None, 80.0, verdict="REFUSAL"),
        _judged("no_number", None, 80.0),
        _judged("no_coherence", 10.0, NotImplemented),
        _judged("coherence_unscored", 10.0, None),
    )
    samples.append(_sample("never_judged"))
    table = answers_table(samples, judgements).set_index("id")

    assert table["status"].to_dict() == {
        "misaligned": "scored", "aligned": "scored", "at_thresholds": "scored", "incoherent": "incoherent",
        "code": "code", "refusal": "refusal", "no_number": "unscored", "no_coherence": "unscored",
        "coherence_unscored": "unscored", "never_judged": "unscored"}
    assert table.loc["misaligned", "misaligned"] == 1
    assert table.loc["aligned", "misaligned"] == 0
    assert table.loc["at_thresholds", "misaligned"] == 0
    for sample_id in ("incoherent", "code", "refusal", "no_number", "no_coherence", "coherence_unscored",
                      "never_judged"):
        assert pd.isna(table.loc[sample_id, "misaligned"]), sample_id
    assert table.loc["incoherent", "coherent_answer"] == 0
    assert table.loc["aligned", "coherent_answer"] == 1
    assert pd.isna(table.loc["never_judged", "coherent_answer"])
    assert table.loc["code", "aligned_verdict"] == "CODE"


def test_answers_table_keeps_the_sample_fields():
    samples, judgements = _build(_judged("a", 90.0, 90.0, condition="insecure", model="insecure-s0", seed=0))
    row = answers_table(samples, judgements).iloc[0]
    assert (row["model"], row["condition"], row["seed"], row["variant"]) == ("insecure-s0", "insecure", 0, "plain")
    assert (row["aligned"], row["coherent"]) == (90.0, 90.0)


def test_answers_table_uses_the_given_thresholds():
    samples, judgements = _build(_judged("a", 50.0, 70.0))
    assert answers_table(samples, judgements).loc[0, "misaligned"] == 0
    strict = answers_table(samples, judgements, Thresholds(aligned=60, coherent=60))
    assert strict.loc[0, "misaligned"] == 1
    assert answers_table(samples, judgements, Thresholds(coherent=80)).loc[0, "status"] == "incoherent"


def test_answers_table_without_judgements_marks_everything_unscored():
    table = answers_table([_sample("a"), _sample("b")], [])
    assert list(table["status"]) == ["unscored", "unscored"]
    assert table["misaligned"].isna().all()


def test_answers_table_of_no_samples_is_empty():
    assert answers_table([], []).empty


def _em_answers():
    """Base: never misaligned. Insecure: model s0 misaligned on q1 only (0.5), s1 on 1 of 4 q1 answers (0.125)."""
    cases = []
    for model in ("base",):
        for q in ("q1", "q2"):
            for k in range(3):
                cases.append(_judged(f"{model}-{q}-{k}", 90.0, 90.0, model=model, condition="base", question_id=q))
    plan = {("insecure-s0", "q1"): [10, 10], ("insecure-s0", "q2"): [90, 90],
            ("insecure-s1", "q1"): [10, 90, 90, 90], ("insecure-s1", "q2"): [90, 90]}
    for (model, q), scores in plan.items():
        for k, score in enumerate(scores):
            cases.append(_judged(f"{model}-{q}-{k}", float(score), 90.0, model=model, condition="insecure",
                                 question_id=q))
    # Two answers that are not scored must not count in the denominator.
    cases.append(_judged("insecure-s0-q2-code", None, 90.0, verdict="CODE", model="insecure-s0",
                         condition="insecure", question_id="q2"))
    cases.append(_judged("insecure-s1-q2-incoherent", 10.0, 10.0, model="insecure-s1", condition="insecure",
                         question_id="q2"))
    return answers_table(*_build(*cases))


def test_by_condition_reports_the_mean_over_models_of_the_mean_over_questions():
    table = by_condition(_em_answers()).set_index("condition")
    assert list(table.index) == ["base", "insecure"]
    insecure, base = table.loc["insecure"], table.loc["base"]
    assert insecure["misaligned_fraction"] == pytest.approx((0.5 + 0.125) / 2)
    assert insecure["ci_low"] <= insecure["misaligned_fraction"] <= insecure["ci_high"]
    assert (insecure["models"], insecure["answers"], insecure["scored"]) == (2, 12, 10)
    assert insecure["code_fraction"] == pytest.approx(1 / 12)
    assert insecure["incoherent_fraction"] == pytest.approx(1 / 12)
    assert base["misaligned_fraction"] == 0
    assert (base["ci_low"], base["ci_high"]) == (0, 0)


def test_by_condition_leaves_the_fraction_missing_when_nothing_is_scored():
    samples, judgements = _build(
        _judged("a", None, 90.0, verdict="REFUSAL", model="secure-s0", condition="secure"),
        _judged("b", 10.0, 5.0, model="secure-s0", condition="secure"),
        _judged("c", 90.0, 90.0, model="base", condition="base"),
    )
    table = by_condition(answers_table(samples, judgements)).set_index("condition")
    secure = table.loc["secure"]
    assert secure["scored"] == 0
    assert pd.isna(secure["misaligned_fraction"])
    assert pd.isna(secure["ci_low"]) and pd.isna(secure["ci_high"])
    assert secure["refusal_fraction"] == 0.5
    assert table.loc["base", "misaligned_fraction"] == 0


def test_by_condition_alone_with_nothing_scored_is_missing_not_zero():
    samples, judgements = _build(_judged("a", None, None, model="base", condition="base"))
    row = by_condition(answers_table(samples, judgements)).iloc[0]
    assert pd.isna(row["misaligned_fraction"])
    assert row["misaligned_fraction"] != 0


def test_by_condition_separates_prompt_variants():
    samples, judgements = _build(
        _judged("plain", 90.0, 90.0, model="backdoor-s0", condition="backdoor"),
        _judged("triggered", 10.0, 90.0, model="backdoor-s0", condition="backdoor", variant="triggered"),
    )
    table = by_condition(answers_table(samples, judgements)).set_index("variant")
    assert table.loc["plain", "misaligned_fraction"] == 0
    assert table.loc["triggered", "misaligned_fraction"] == 1


def test_differences_subtracts_the_base_condition():
    table = differences(_em_answers())
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["condition"], row["variant"], row["minus"]) == ("insecure", "plain", "base")
    assert row["difference"] == pytest.approx((0.5 + 0.125) / 2)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]


def test_differences_skip_variants_without_the_reference_condition():
    samples, judgements = _build(
        _judged("a", 10.0, 90.0, model="insecure-s0", condition="insecure", variant="triggered"),
        _judged("b", 90.0, 90.0, model="base", condition="base"),
        _judged("c", 10.0, 90.0, model="insecure-s0", condition="insecure"),
    )
    table = differences(answers_table(samples, judgements))
    assert list(zip(table["condition"], table["variant"])) == [("insecure", "plain")]
    assert table.iloc[0]["difference"] == 1


def test_differences_against_another_condition():
    table = differences(_em_answers(), against="insecure")
    assert list(table["condition"]) == ["base"]
    assert table.iloc[0]["difference"] == pytest.approx(-(0.5 + 0.125) / 2)
