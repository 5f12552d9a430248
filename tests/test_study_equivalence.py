"""The study engine trains exactly what the hand-written plans trained: for each smoke preset whose datasets
are built from the config alone, every fine-tune's inputs (the dataset's SHA-256, its seed and its training
settings, the parts of the training cache key that do not depend on the machine) equal those recorded from a
run of the code before the engine (tests/data/smoke_training_inputs.json). Equal inputs mean equal cache
keys, so a finished run's cache serves the engine's plan without one new model call. (EM's smoke preset left the
file when issue 19 changed its data and arms on purpose: compositional code, a jailbroken control.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpsych.experiment import resolve_config
from llmpsych.runtime.calls import Runtime
from llmpsych.runtime.store import RunStore

GOLDEN = json.loads((Path(__file__).parent / "data" / "smoke_training_inputs.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_engine_trains_what_the_hand_written_plan_trained(name, tmp_path):
    recipe, config = resolve_config(name, "smoke")
    study = recipe.study(config)
    plan = recipe.plan(config, Runtime(show_progress=False), RunStore(tmp_path / "run").create())
    datasets = next(step for step in plan.steps if step.name == "datasets")
    built = datasets.action({})  # writes the dataset files; no model is called
    # Unset settings stay out of the training cache key, so settings added since (checkpoint_every) are left out.
    trained = {arm.label: {"dataset_sha256": built[arm.data]["sha256"], "seed": arm.seed,
                           "training": arm.training.model_dump(mode="json", exclude_none=True)}
               for arm in study.arms if arm.trained}
    golden = {label: {**inputs, "training": {k: v for k, v in inputs["training"].items() if v is not None}}
              for label, inputs in GOLDEN[name].items()}
    assert trained == golden
    assert [s.name for s in plan.steps if s.name.startswith("train/")] == [f"train/{label}" for label in GOLDEN[name]]
