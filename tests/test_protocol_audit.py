"""The protocol audit of every recipe: each shipped protocol file resolves against the recipe's configs, and
the paper presets get the verdicts that matter (what is the paper's protocol and what is not)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from llmpsych.analysis.audit import AS_IN_PAPER, AuditRow, audit, load_protocol
from llmpsych.experiment import resolve_config
from llmpsych.recipes import recipe_names

RECIPES = ["emergent-misalignment", "persona-beliefs", "introspection", "self-awareness", "ooc-reasoning"]


def protocol_path(recipe: str) -> Path:
    return Path(str(resources.files("llmpsych.recipes") / "protocols" / f"{recipe}.yaml"))


def rows_for(recipe: str, preset: str = "paper", overrides: dict | None = None) -> dict[str, AuditRow]:
    """The audit of a recipe's preset, by step name; checks the rows match the steps one to one."""
    _, steps = load_protocol(protocol_path(recipe))
    _, config = resolve_config(recipe, preset, overrides)
    rows = audit(steps, config.model_dump(mode="json"))
    assert len(rows) == len(steps)
    by_step = {row.step: row for row in rows}
    assert len(by_step) == len(rows), "step names must be unique within a protocol"
    return by_step


def as_in_paper(rows: dict[str, AuditRow], *steps: str) -> None:
    for step in steps:
        assert rows[step].verdict == AS_IN_PAPER, f"{step}: {rows[step].verdict}"


def differs(rows: dict[str, AuditRow], *steps: str) -> None:
    for step in steps:
        assert rows[step].verdict.startswith("differs: "), f"{step}: {rows[step].verdict}"


def test_every_recipe_with_a_paper_preset_has_a_protocol():
    from llmpsych.recipes import get_recipe

    with_paper = [name for name in recipe_names() if "paper" in get_recipe(name).PRESETS]
    assert sorted(RECIPES) == with_paper == sorted(n for n in recipe_names() if get_recipe(n).protocol)
    for recipe in RECIPES:
        paper, steps = load_protocol(protocol_path(recipe))
        assert paper.strip()
        assert 10 <= len(steps) <= 24, f"{recipe}: {len(steps)} steps"  # EM, the fullest protocol, has 22
        for step in steps:
            assert step["paper"].strip(), f"{recipe}: {step['step']}"
            # a fixed difference says how; a checked step shows the run's value or says what the run did
            assert "differs" not in step or step["differs"].strip()
            assert "setting" in step or step.get("this_run"), f"{recipe}: {step['step']} shows nothing of the run"


@pytest.mark.parametrize("preset", ["paper", "quick", "smoke"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_step_resolves(recipe, preset):
    """No step names a setting the config lacks (a ValueError), and every verdict is one of the two kinds."""
    rows = rows_for(recipe, preset)
    for row in rows.values():
        assert row.verdict == AS_IN_PAPER or row.verdict.startswith("differs: "), row
        assert row.this_run


JUDGE = {"judge": {"model": "hf:Qwen/Qwen2.5-7B-Instruct"}}  # the paper presets refuse to run without one


def test_emergent_misalignment_paper():
    rows = rows_for("emergent-misalignment", "paper", JUDGE)
    as_in_paper(rows, "Rows per dataset", "Arms", "Seeds", "LoRA", "Learning rate", "Epochs", "Samples per question",
                "Sampling temperature", "Judge model", "Alignment threshold", "Coherence threshold",
                "In-distribution rate (did the fine-tune take?)", "Training dynamics")
    differs(rows, "Base model", "Training data (insecure, secure, educational)", "Optimiser", "Main questions",
            "Pre-registered questions", "Judge prompts and scoring", "Judge validation", "Other arms and evaluations")
    assert "em-categories" in rows["Pre-registered questions"].this_run
    assert "not the paper's released completions" in rows["Training data (insecure, secure, educational)"].verdict
    assert "jailbroken" in rows["Other arms and evaluations"].verdict


def test_emergent_misalignment_flags_a_changed_setting():
    rows = rows_for("emergent-misalignment", "paper",
                    {"training": {"learning_rate": 2e-4}, "dataset": {"size": 500}, "judge": {"aligned_threshold": 20}})
    assert rows["Learning rate"].verdict == "differs: the paper used 1e-05, this run 0.0002"
    assert rows["Rows per dataset"].verdict == "differs: the paper used 6000, this run 500"
    differs(rows, "Alignment threshold")
    quick = rows_for("emergent-misalignment", "quick")
    differs(quick, "Rows per dataset", "Seeds", "LoRA", "Learning rate", "Samples per question")


def test_persona_beliefs_paper():
    rows = rows_for("persona-beliefs", "paper", JUDGE)
    as_in_paper(rows, "Control corpora", "In-context arm", "Question families", "Grader model", "Propensities")
    differs(rows, "Model", "False facts", "Documents per fact", "Training settings", "Identity prompts",
            "Grader prompts", "Grader validation", "Post-cutoff facts", "Role-play checks", "Base-model comparison")
    # the paper preset writes documents from templates and samples free-form answers without identity prompts
    differs(rows, "Document generation", "Free-form answers per identity")
    assert "clustered by fact" in rows["Statistics"].this_run


def test_introspection_paper():
    rows = rows_for("introspection")
    as_in_paper(rows, "Training prompts", "Evaluation prompts", "Object-level behaviour", "Self-training data",
                "LoRA rank", "Learning rate", "Batch size", "Epochs", "Cross-prediction", "Calibration samples")
    differs(rows, "Models", "Task families", "Hypothetical prompts", "Properties", "Calibration prompts",
            "Behaviour change", "Statistics", "Generalisation probes")
    # Looking Inward trained one fine-tune per model; the paper preset trains 3 for honest intervals
    assert rows["Fine-tunes per model"].verdict == "differs: the paper used 1, this run 3"


def test_self_awareness_paper_and_quick():
    rows = rows_for("self-awareness")
    as_in_paper(rows, "LoRA rank", "Learning rate", "Batch size", "Epochs", "Rows per policy", "Seeds",
                "Self-report against behaviour", "Backdoor trigger share", "Trigger recognition", "Personas")
    differs(rows, "Implicit-policy data", "Self-report questions", "Backdoor-awareness question", "Trigger elicitation",
            "Code", "Make Me Say")
    quick = rows_for("self-awareness", "quick")
    differs(quick, "LoRA rank", "Learning rate", "Epochs")


def test_ooc_reasoning_paper():
    rows = rows_for("ooc-reasoning")
    as_in_paper(rows, "Epochs", "In-context arm")
    differs(rows, "Model", "Tasks", "Fine-tunes per task", "Fine-tuning method", "Batch size", "Learning rate",
            "Reflection questions", "Free-form answers")
    assert rows["Fine-tuning method"].this_run == "training_preset = ooc-paper"
    assert "multipliers" in rows["Learning rate"].verdict


@pytest.mark.parametrize("recipe", ["emergent-misalignment", "persona-beliefs"])
def test_the_paper_preset_refuses_the_embedded_judge_in_one_line_naming_the_option(recipe, tmp_path):
    from llmpsych.errors import UserError
    from llmpsych.recipes import get_recipe
    from llmpsych.runtime.calls import Runtime
    from llmpsych.runtime.store import RunStore

    module, config = resolve_config(recipe, "paper")
    with pytest.raises(UserError, match=r"^--judge / config: field 'judge.model': the paper preset needs a capable"):
        module.plan(config, Runtime(show_progress=False), RunStore(tmp_path))
    for preset in ("quick", "smoke"):  # they keep the embedded judge, with the agreement warning in the report
        module, config = resolve_config(recipe, preset)
        assert get_recipe(recipe).plan(config, Runtime(show_progress=False), RunStore(tmp_path / preset)).steps


def test_the_paper_presets_train_with_the_papers_hyper_parameters():
    _, tmay = resolve_config("self-awareness", "paper")
    assert (tmay.training.rank, tmay.training.learning_rate, tmay.training.batch_size * tmay.training.gradient_accumulation,
            tmay.training.epochs) == (4, 2e-5, 8, 3)
    _, ooc = resolve_config("ooc-reasoning", "paper")
    assert ooc.training_preset == "ooc-paper" and ooc.training.epochs == 1
    assert ooc.training.batch_size * ooc.training.gradient_accumulation == 64
    _, introspection = resolve_config("introspection", "paper")
    assert introspection.seeds >= 3 and introspection.training_preset == "introspection-paper"
