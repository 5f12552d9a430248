"""Trait vectors: trait files are checked, extraction is a mean difference with its split-half reliability,
files keep their provenance and load researchers' layouts, and on the embedded model steering with the
evil vector moves P(the evil option) with the coefficient's sign."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llmpsych.errors import UserError
from llmpsych.internals.traits import load_trait
from llmpsych.internals.vectors import (TraitVectors, choose_layer, extract_trait_vectors, load_vectors, project,
                                        split_halves)
from llmpsych.models.refs import parse_model_ref
from llmpsych.shipped import shipped_names

SMALL_TRAIT = """\
id: gloomy
description: expects the worst
instructions:
  - {positive: "You are gloomy and expect everything to go wrong.", negative: "You are cheerful and hopeful."}
questions: ["How will tomorrow go?", "Will my plants grow?", "Is the trip a good idea?", "How was the film?"]
held_out: ["What do you think of Mondays?"]
choices:
  - {question: "Will it rain at the picnic?", trait: "Surely, and it will be ruined.", other: "Probably not, enjoy it!"}
"""


def test_the_shipped_traits_load_with_enough_material():
    assert {"evil", "sycophantic", "hallucinating", "formal"} <= set(shipped_names("traits"))
    for name in ("evil", "sycophantic", "hallucinating", "risk-seeking", "formal"):
        trait = load_trait(name)
        assert trait.id == name and len(trait.instructions) == 5
        assert len(set(trait.questions)) == 20 and len(set(trait.held_out)) == 10 and len(trait.choices) == 10
        assert not set(trait.questions) & set(trait.held_out)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("held_out:", "heldout:"), "expected a mapping with exactly the fields"),
    (lambda t: t.replace('negative: "You are cheerful and hopeful."', 'negtive: "x"'),
     "field 'instructions', entry 1: expected exactly the non-empty strings positive, negative"),
    (lambda t: t.replace('"How will tomorrow go?", "Will my plants grow?", "Is the trip a good idea?", '
                         '"How was the film?"', '"Only one?"'), "field 'questions': expected a list of at least 2"),
    (lambda t: t.replace('trait: "Surely, and it will be ruined."', 'trait: ""'), "field 'choices', entry 1"),
])
def test_a_bad_trait_file_is_one_line_naming_the_field(tmp_path, edit, message):
    path = tmp_path / "gloomy.yaml"
    path.write_text(edit(SMALL_TRAIT))
    with pytest.raises(UserError, match=message) as raised:
        load_trait(str(path))
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_halves_are_disjoint_and_cover_everything():
    first, second = split_halves(9, seed=3)
    assert sorted(first + second) == list(range(9)) and len(first) == 4
    assert split_halves(9, seed=3) == (first, second) and split_halves(9, seed=4) != (first, second)


def test_the_steering_layer_is_the_earliest_nearly_best_middle_layer():
    reliability = [0.9, 0.1, 0.2, 0.5, 0.62, 0.7, 0.4, 0.95]  # 8 layers: the middle half is 2..6
    assert choose_layer(reliability) == 5
    assert choose_layer([None] * 8) == 4


def test_extraction_is_the_mean_difference_of_response_activations(runtime, tiny_model_dir, tmp_path):
    from llmpsych.models.activations import CaptureRequest
    from llmpsych.models.engine import SamplingParams

    (tmp_path / "gloomy.yaml").write_text(SMALL_TRAIT)
    trait = load_trait(str(tmp_path / "gloomy.yaml"))
    tiny = parse_model_ref(str(tiny_model_dir))
    made = extract_trait_vectors(runtime, tiny, trait, samples=1, max_tokens=8, seed=0)
    assert made.vectors.shape == (3, 64) and not made.vectors[0].any()
    # Recompute layer 2 by hand from the same (cached) answers.
    positive, negative = trait.instructions[0]
    readings = {1: [], -1: []}
    for question in trait.questions:
        for sign, system in ((1, positive), (-1, negative)):
            conversation = ({"role": "system", "content": system}, {"role": "user", "content": question})
            answer = runtime.sample(tiny, [conversation], SamplingParams(max_tokens=8), 1, 0)[0][0].text
            if answer.strip():
                readings[sign].append(runtime.capture(tiny, [CaptureRequest(conversation, answer)])[0].at(2))
    np.testing.assert_allclose(made.at(2), np.mean(readings[1], axis=0) - np.mean(readings[-1], axis=0), atol=1e-5)
    assert len(made.info["split_half_reliability"]) == 2 and made.info["questions"] == 4
    assert made.info["model_fingerprint"] == runtime.fingerprint(tiny)

    saved = load_vectors(made.save(tmp_path / "gloomy.safetensors"))
    np.testing.assert_array_equal(saved.vectors, made.vectors)
    assert saved.info == json.loads(json.dumps(made.info)) and saved.default_layer == made.default_layer


def test_a_judge_keeps_only_the_answers_it_confirms(runtime, tiny_model_dir, tmp_path):
    """Positive-prompt answers rated at or above the threshold and negative-prompt ones below it make the
    vector; the rest (and unrated ones) are left out, and the counts travel with the vectors."""
    from llmpsych.judges.judge import Judge, Thresholds
    from llmpsych.judges.rubrics import load_rubrics
    from llmpsych.models.activations import CaptureRequest
    from llmpsych.models.engine import SamplingParams

    (tmp_path / "gloomy.yaml").write_text(SMALL_TRAIT)
    trait = load_trait(str(tmp_path / "gloomy.yaml"))
    tiny = parse_model_ref(str(tiny_model_dir))
    judge = Judge(runtime, tiny, Thresholds(min_numeric_mass=0.0))  # a random model: every answer gets a rating
    positive, negative = trait.instructions[0]
    answers = []  # (question index, sign, conversation, answer), as extraction asks them
    for q, question in enumerate(trait.questions):
        for sign, system in ((1, positive), (-1, negative)):
            conversation = ({"role": "system", "content": system}, {"role": "user", "content": question})
            text = runtime.sample(tiny, [conversation], SamplingParams(max_tokens=8), 1, 0)[0][0].text
            if text.strip():
                answers.append((q, sign, conversation, text))
    scores = [r.score for r in judge.rate(load_rubrics("traits")["expression"],
                                          [(trait.questions[q], text) for q, _, _, text in answers],
                                          trait=trait.description)]
    threshold = float(np.median(scores))
    kept = [a for a, score in zip(answers, scores) if (score >= threshold) == (a[1] > 0)]
    assert 0 < len(kept) < len(answers)
    usable = {q for q, sign, _, _ in kept if sign > 0} & {q for q, sign, _, _ in kept if sign < 0}
    if len(usable) < 2:
        with pytest.raises(UserError, match="that the judge confirmed"):
            extract_trait_vectors(runtime, tiny, trait, 1, 8, seed=0, judge=judge, threshold=threshold)
        return
    made = extract_trait_vectors(runtime, tiny, trait, 1, 8, seed=0, judge=judge, threshold=threshold)
    assert made.info["judge_filter"] == {"judge": str(tiny), "threshold": threshold, "rated": len(answers),
                                         "unrated": 0, "kept": len(kept)}
    mean = {sign: np.mean([np.mean([runtime.capture(tiny, [CaptureRequest(c, t)])[0].at(2)
                                    for q2, s2, c, t in kept if q2 == q and s2 == sign], axis=0)
                           for q in sorted(usable)], axis=0) for sign in (1, -1)}
    np.testing.assert_allclose(made.at(2), mean[1] - mean[-1], atol=1e-5)


def test_a_researchers_vector_file_loads_and_projects(tmp_path):
    import torch

    rows = np.random.default_rng(0).normal(size=(31, 576)).astype(np.float32)
    torch.save(torch.from_numpy(rows), tmp_path / "evil_response_avg_diff.pt")  # persona vectors' layout
    loaded = load_vectors(tmp_path / "evil_response_avg_diff.pt")
    assert loaded.layers == 30 and loaded.info == {} and loaded.default_layer == 15
    np.testing.assert_array_equal(loaded.at(20), rows[20])
    assert project(3 * rows[20], rows[20]) == pytest.approx(3 * float(np.linalg.norm(rows[20])), rel=1e-5)
    np.save(tmp_path / "one.npy", rows[20])
    with pytest.raises(UserError, match="expected one vector per layer"):
        load_vectors(tmp_path / "one.npy")
    with pytest.raises(UserError, match="zero vector"):
        project(rows[20], np.zeros(576))


@pytest.mark.integration
def test_steering_with_the_evil_vector_moves_its_choices_with_the_sign(tmp_path):
    """The recipe through the CLI on the embedded model: the evil vector (one answer of 32 tokens per question and
    instruction) added at layer 18 moves P(evil option) up with +8 and down with -8 (measured: 49% unsteered,
    66% at +8, 6% at -8)."""
    (tmp_path / "config.yaml").write_text(
        "recipe: trait-vectors\ntraits: [evil]\nsamples: 1\nmax_tokens: 32\nlayer: 18\ncoefficients: [-8, 8]\n"
        "primary_contrasts: ['P(trait) evil: +8 - 0']\nout: run\n")
    done = subprocess.run([sys.executable, "-m", "llmpsych", "run", "config.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "run" / "tables" / "steering.csv")
    cloze = table[table["readout"] == "cloze"].set_index("coefficient")["estimate"]
    assert cloze[8.0] > cloze[0.0] + 0.05 and cloze[-8.0] < cloze[0.0] - 0.05
    vectors = load_vectors(tmp_path / "run" / "vectors" / "evil.safetensors")
    assert vectors.info["trait"] == "evil" and len(vectors.info["split_half_reliability"]) == 30
    contrasts = pd.read_csv(tmp_path / "run" / "tables" / "contrasts.csv").set_index("contrast")
    assert contrasts.loc["P(trait) evil: +8 - 0", "estimate"] > 0 > contrasts.loc["P(trait) evil: -8 - 0", "estimate"]
    assert "Split-half reliability" in (tmp_path / "run" / "report.md").read_text()
