"""Concept injection: word lists and trial files are checked, concept directions are baseline-subtracted, the
random control matches their norms, and the recipe runs every trial kind through the CLI (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from llmpsych.errors import UserError
from llmpsych.internals.concepts import concept_vectors, load_concepts, matched_random
from llmpsych.models.refs import parse_model_ref
from llmpsych.recipes.concept_injection import load_trials


@pytest.mark.parametrize("words, says", [
    (["ocean", "fire"], "expected a YAML list of at least 3 words"),
    (["ocean", "fire", "ocean"], "'ocean' is listed twice"),
    (["ocean", "fire", "42"], "entry 3: expected a word or short phrase of letters, got '42'"),
])
def test_a_bad_word_list_is_one_line(tmp_path, words, says):
    path = tmp_path / "words.yaml"
    path.write_text(yaml.safe_dump(words))
    with pytest.raises(UserError, match=says) as raised:
        load_concepts(str(path))
    assert str(path) in str(raised.value)


def test_the_shipped_lists_load(tmp_path):
    assert len(load_concepts("concepts")) == 20
    trials = load_trials("trials")
    assert len(trials.detection) == 2 and len(trials.identification) == 1 and len(trials.open) == 1
    (tmp_path / "trials.yaml").write_text("detection: [\"Do you notice anything?\"]\n")
    with pytest.raises(UserError, match="expected the fields detection and identification"):
        load_trials(str(tmp_path / "trials.yaml"))


def test_directions_are_baseline_subtracted_and_the_control_matches_their_norms(runtime, tiny_model_dir):
    words = ["ocean", "fire", "music", "bread"]
    directions = concept_vectors(runtime, parse_model_ref(str(tiny_model_dir)), words)
    stacked = np.stack([directions[w].vectors for w in words])
    assert stacked.shape == (4, 3, 64) and not stacked[:, 0].any()
    np.testing.assert_allclose(stacked.sum(axis=0), 0, atol=1e-4)  # the mean over words is taken out
    control = matched_random(directions["ocean"], "random:ocean")
    np.testing.assert_allclose(np.linalg.norm(control.vectors, axis=1), np.linalg.norm(stacked[0], axis=1), rtol=1e-5)
    assert abs(float(np.dot(control.vectors[2], stacked[0][2]))) < np.linalg.norm(stacked[0][2]) ** 2
    np.testing.assert_array_equal(control.vectors, matched_random(directions["ocean"], "random:ocean").vectors)
    assert not np.allclose(control.vectors, matched_random(directions["ocean"], "random:fire").vectors)


def test_the_recipe_runs_injected_random_and_control_trials(tiny_model_dir, tmp_path):
    config = {"recipe": "concept-injection", "model": str(tiny_model_dir), "count": 3, "layers": [1, 2],
              "strengths": [4.0], "engine": {"dtype": "float32"}, "out": "run",
              "judge": {"model": str(tiny_model_dir), "max_tokens": 6}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "llmpsych", "run", "config.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    detection = pd.read_csv(run / "tables" / "detection.csv")
    assert set(zip(detection["arm"], detection["layer"].fillna(0))) == {
        ("none", 0), ("concept", 1), ("concept", 2), ("random", 1), ("random", 2)}
    assert detection["p_yes"].between(0, 1).all() and (detection["clusters"][detection["arm"] != "none"] == 3).all()
    identification = pd.read_csv(run / "tables" / "identification.csv")
    assert set(identification["arm"]) == {"concept", "random"}  # nothing to identify on control trials
    summary = json.loads((run / "summary.json").read_text())
    names = {c["name"]: c for c in summary["contrasts"]}
    assert names["P(yes): injected - control"]["primary"]
    assert {"P(yes): injected - random [layer 1 x4]", "identified: injected - random [layer 2 x4]"} <= set(names)
    assert len(list((run / "vectors").glob("concept-*.safetensors"))) == 3
    assert "not expected to show it" in (run / "report.md").read_text()
    # The optional judge: a greedy reply per trial, its verdict, and its agreement measured beside it.
    table = pd.read_parquet(run / "results.parquet")
    judged = table[table["probe"] == "judged-detection"]
    assert len(judged) == 1 + 2 * 2 * 3 and set(judged["arm"]) == {"none", "concept", "random"}
    assert judged["answer"].notna().all() and judged["value"].isin([0.0, 1.0]).sum() + judged["value"].isna().sum() \
        == len(judged)
    named = table[table["probe"] == "named"]
    assert len(named) == 2 * 2 * 3 and "none" not in set(named["arm"])
    check = json.loads((run / "judge_check.json").read_text())["injection judge"]
    assert check["n"] == 20 and check["rubric"] == "injection" and check["source"].startswith("shipped:")
    assert {"judged detection: injected - control", "named in reply: injected - random"} <= set(names)
    assert "Free-text replies, judged" in (run / "report.md").read_text()


def test_a_judge_needs_open_wordings_and_a_valid_labelled_set(tmp_path):
    from llmpsych.experiment import resolve_config
    from llmpsych.recipes.concept_injection import concept_injection

    (tmp_path / "closed.yaml").write_text('detection: ["Notice anything?"]\nidentification: ["Which word?"]\n')
    _, config = resolve_config("concept-injection", "smoke", {"trials": str(tmp_path / "closed.yaml"),
                                                              "judge": {"model": "smollm2-135m-instruct"}})
    with pytest.raises(UserError, match="has no open wordings; the judge"):
        concept_injection.study(config)
    (tmp_path / "labels.yaml").write_text("- {question: Q, answer: A, expected: maybe}\n")
    _, config = resolve_config("concept-injection", "smoke", {"judge": {"model": "smollm2-135m-instruct",
                                                                        "check_file": str(tmp_path / "labels.yaml")}})
    with pytest.raises(UserError, match=r"labels.yaml: line 1: field 'expected': expected one of noticed, not noticed"):
        concept_injection.study(config)
