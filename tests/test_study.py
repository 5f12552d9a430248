"""The study engine: a declaration compiles into steps placed after what they need; data built from answers, a
skipped fine-tune and a malformed declaration behave as documented; a study module of one's own runs by path."""

from __future__ import annotations

import json

import pytest

from llmpsych.models.refs import ModelRef
from llmpsych.runtime.plan import run_local
from llmpsych.runtime.store import RunStore
from llmpsych.study import Arm, Data, Probe, Study, compile_study
from llmpsych.training.config import TrainConfig

BASE = ModelRef("embedded", "smollm2-135m-instruct")
TRAINING = TrainConfig()


def steps(study: Study, tmp_path) -> list[tuple[str, tuple[str, ...]]]:
    from llmpsych.runtime.calls import Runtime

    plan = compile_study(study, Runtime(show_progress=False), RunStore(tmp_path / "run"))
    return [(step.name, step.needs) for step in plan.steps]


def test_steps_come_after_what_they_need_whatever_the_declaration_order(tmp_path):
    # Data built from the untuned model's answers go into the shared datasets step, after that probe; data built
    # from a fine-tune's answers are built inside the fine-tune that uses them.
    study = Study(
        arms=[Arm("base", "base", BASE), Arm("first", "first", BASE, 0, "from-base", TRAINING),
              Arm("second", "second", "first", 0, "from-first", TRAINING)],
        probes=[Probe("report", lambda ctx: None, after=("answers-first",)),
                Probe("answers-first", lambda ctx: None, arms=("first",)),
                Probe("answers-base", lambda ctx: None, arms=("base",))],
        data=[Data("from-base", rows=lambda ctx: [], after=("answers-base",)),
              Data("from-first", rows=lambda ctx: [], after=("answers-first",))])
    assert steps(study, tmp_path) == [
        ("answers-base", ()), ("datasets", ("answers-base",)), ("train/first", ("datasets",)),
        ("answers-first", ("train/first",)), ("train/second", ("answers-first", "train/first")),
        ("report", ("train/first", "train/second", "answers-first")), ("models", ("train/first", "train/second"))]


@pytest.mark.parametrize("arms, says", [
    ([Arm("a", "a", BASE, 0, "nowhere", TRAINING)], "arm 'a' needs a declared dataset"),
    ([Arm("a", "a", BASE), Arm("a", "a", BASE)], "arm 'a' is declared twice"),
    ([Arm("b", "b", "ghost", 0, "d", TRAINING)], "arm 'b' fine-tunes an unknown arm 'ghost'"),
])
def test_a_malformed_declaration_names_the_arm(arms, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        steps(Study(arms, [], [Data("d", rows=lambda ctx: [])]), tmp_path)


def test_a_dataset_without_rows_skips_its_fine_tune_and_every_fine_tune_of_it(runtime, tmp_path):
    seen = {}
    study = Study(
        arms=[Arm("base", "base", BASE), Arm("first", "first", BASE, 0, "empty", TRAINING),
              Arm("second", "second", "first", 0, "empty", TRAINING)],
        probes=[Probe("look", lambda ctx: seen.update({arm.label: ref for arm, ref in ctx.models()}), arms=None)],
        data=[Data("empty", rows=lambda ctx: None, after=("look-base",))],
    )
    study.probes.insert(0, Probe("look-base", lambda ctx: None, arms=("base",)))
    store = RunStore(tmp_path / "run").create()
    results = run_local(compile_study(study, runtime, store), log=open(tmp_path / "log", "w"))
    assert results["train/first"] is None and results["train/second"] is None
    assert list(seen) == ["base"] and runtime.counts.executed["train"] == 0
    assert [m["label"] for m in json.loads(store.path("models.json").read_text())] == ["base"]


STUDY_FILE = '''
from typing import Literal
from llmpsych.analysis.report import Analysis
from llmpsych.config import Strict
from llmpsych.models.options import EngineOptions
from llmpsych.models.refs import parse_model_ref
from llmpsych.study import Arm, Probe, Study, recipe


class Config(Strict):
    recipe: Literal["length-check"] = "length-check"
    preset: str | None = None
    model: str = "smollm2"
    engine: EngineOptions = EngineOptions()
    out: str | None = None


def analyse(run):
    return Analysis(title="Prompt lengths", method="Token counts of two prompts.", contrasts=[],
                    metrics={"mean": float(run.table["value"].mean())})


@recipe("length-check", config=Config, presets={"smoke": {}}, default_preset="smoke", analyse=analyse)
def length_check(config):
    def count(ctx):
        (arm, ref), = ctx.models()
        lengths = ctx.runtime.token_counts(ref, ["one two", "one two three four"])
        ctx.write_results("lengths", [{"model": arm.label, "arm": arm.arm, "seed": None, "probe": "length",
                                       "cluster": str(i), "item": str(i), "value": float(n)}
                                      for i, n in enumerate(lengths)])
    return Study([Arm("base", "base", parse_model_ref(config.model))], [Probe("lengths", count)])
'''


def test_a_study_module_of_ones_own_runs_by_its_path(tiny_model_dir, tmp_path, monkeypatch):
    from llmpsych import study
    from llmpsych.experiment import run_experiment

    monkeypatch.setattr(study, "REGISTRY", dict(study.REGISTRY))  # the study registers itself for this test only
    module = tmp_path / "length_check.py"
    module.write_text(STUDY_FILE)
    run = run_experiment(str(module), "smoke", {"model": str(tiny_model_dir)}, out=str(tmp_path / "run"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["recipe"] == "length-check" and summary["metrics"]["mean"] > 2
    assert (run / "report.html").is_file()
