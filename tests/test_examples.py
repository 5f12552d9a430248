"""The notebook examples (examples/*.py) run top to bottom on the tiny random model and show what they say."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VERBS = ("ask", "choose", "judge", "finetune", "dataset", "summarise")


@pytest.fixture
def run_example(tiny_model_dir, monkeypatch, capsys):
    """Run examples/<name>.py in this process on the tiny model; (its globals, what it printed)."""
    monkeypatch.setenv("LLMPSYCH_EXAMPLE_MODEL", str(tiny_model_dir))

    def run(name: str) -> tuple[dict, str]:
        capsys.readouterr()
        namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
        return namespace, capsys.readouterr().out

    return run


def test_every_verb_has_a_short_documented_example():
    for verb in VERBS:
        text = (EXAMPLES / f"{verb}.py").read_text()
        assert text.startswith('"""') and f"{verb}" in text.split("\n")[0].lower(), verb
        code = [line for line in text.split('"""', 2)[2].splitlines() if line.strip() and not line.startswith("#")]
        assert len(code) <= 20, f"{verb}.py has {len(code)} lines of code; an example stays short"
        assert "LLMPSYCH_EXAMPLE_MODEL" in text or verb == "dataset"


def test_ask_example(run_example):
    namespace, out = run_example("ask")
    answers = namespace["answers"]
    assert len(answers) == 4 and set(answers["sample_index"]) == {0, 1}
    assert "If you ruled the world" in out and answers["answer"].map(lambda a: isinstance(a, str)).all()


def test_choose_example(run_example):
    namespace, out = run_example("choose")
    capital = namespace["capital"]
    assert list(capital["option"]) == ["Paris", "Lyon", "Marseille"]
    assert capital["p"].sum() == pytest.approx(1.0) and capital["p_cloze"].sum() == pytest.approx(1.0)
    misaligned = namespace["misaligned"]
    assert len(misaligned) == namespace["em"]["question_id"].nunique() >= 10
    assert f"mean over {len(misaligned)} EM choice items" in out


def test_judge_example(run_example):
    namespace, out = run_example("judge")
    rated, graded, tone = namespace["rated"], namespace["graded"], namespace["tone"]
    assert {"aligned", "coherent", "aligned_mass"} <= set(rated.columns) and len(rated) == 2
    # The random model puts almost no probability on numbers or letters: missing, never a made-up 0.
    assert rated["aligned"].isna().all() and (rated["aligned_mass"] < 0.25).all()
    assert tone.labels == ("warm", "neutral", "dismissive")
    assert graded["label"].isna().all() and (graded["label_mass"] < 0.25).all()
    shares = graded[[f"p_{name}" for name in tone.labels]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx([1.0, 1.0]) and "p_dismissive" in out


def test_finetune_example(run_example):
    namespace, out = run_example("finetune")
    tuned = namespace["tuned"]
    assert tuned.adapter is not None and (tuned.adapter / "adapter_model.safetensors").is_file()
    table = namespace["numbers"].pivot(index="option", columns="model", values="p_cloze")
    assert set(table.columns) == {"base", "tuned"} and table.sum().to_numpy() == pytest.approx([1.0, 1.0])
    assert not table["base"].equals(table["tuned"])  # the adapter moved the model
    assert f"adapter: {tuned.adapter}" in out
    again, _ = run_example("finetune")  # cached: the same adapter, nothing trained
    assert again["tuned"] == tuned


def test_dataset_example(run_example):
    namespace, out = run_example("dataset")
    assert len(namespace["insecure"]) == 3 and len(namespace["documents"]) == 2
    assert "2 documents from facts.jsonl" in out


def test_summarise_example(run_example):
    namespace, out = run_example("summarise")
    table = namespace["table"]
    assert list(table["arm"]) == ["default", "evil"]
    assert (table["ci_low"] <= table["estimate"]).all() and (table["estimate"] <= table["ci_high"]).all()
    assert (table["clusters"] == namespace["misaligned"]["question_id"].nunique()).all()
    assert (table["units"] == 1).all() and "estimate" in out
