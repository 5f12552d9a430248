"""The study engine: a recipe declares its study, the engine compiles it into a plan and does the plumbing.

A recipe is a function `config -> Study`, registered with `@recipe(...)` (no central table to edit). A
`Study` names, as plain typed values:

    data    the training datasets: built from the config, read from a researcher's JSONL, or built from
            earlier steps' results (`after=`: a model's own answers, as in introspection)
    arms    the models under study: a base model, or a fine-tune of a base (or of another arm) on a dataset,
            with its training settings and seed
    probes  what is measured: each a function of a `Context` (the runtime, the run directory, the arms'
            models and the results of the steps it needs) that writes result rows

The engine owns, once, what every recipe used to write by hand: dataset files and their hashes
(datasets.json), one fine-tune step per trained arm with its adapter copied into the run directory,
models.json, and the order of steps. Every model call still goes through the call cache, so a rerun
executes nothing, and the plan can be fanned out by the distributed executors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import UserError
from .jsonl import read_training_rows, write_jsonl
from .models.refs import ModelRef
from .runtime.calls import Runtime, keep_adapter
from .runtime.plan import Plan
from .runtime.results import write_results
from .runtime.store import RunStore
from .training.config import TrainConfig


# ---- what a recipe declares -----------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    """A training dataset, written to `datasets/<name>.jsonl`.

    rows: builds the rows (chat `messages` or `{"text"}`), given the context, or (rows, statistics for
        datasets.json); None from a builder that depends on earlier answers means "no usable rows": the
        arms trained on it are skipped.
    path: a researcher's own JSONL instead of `rows` (validated, copied into the run directory).
    after: the steps whose results `rows` reads (then it is built inside each fine-tune that uses it).
    info: extra fields for datasets.json (sizes, statistics, the latents a dataset was drawn from).
    uses_models: the builder calls a model (an LLM document pipeline), so its step is not a light one.
    """

    name: str
    rows: Callable[[Context], list[dict] | tuple[list[dict], dict] | None] | None = None
    path: Path | None = None
    after: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)
    uses_models: bool = False


@dataclass(frozen=True)
class Arm:
    """One model under study: `label` names it (with its seed), `arm` is what the statistics compare.

    base: a model reference, or the label of another arm (a fine-tune of that fine-tune).
    data: the dataset it is fine-tuned on; None for a model used as it is.
    info: extra fields for models.json.
    """

    label: str
    arm: str
    base: ModelRef | str
    seed: int | None = None
    data: str | None = None
    training: TrainConfig | None = None
    info: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Probe:
    """A measurement step: `run(context)` writes its rows (`context.write_results`) and returns what later
    steps receive. It runs once the arms in `arms` (None: every arm) are trained and the steps in `after`
    are done."""

    name: str
    run: Callable[[Context], Any]
    arms: tuple[str, ...] | None = None
    after: tuple[str, ...] = ()
    light: bool = False  # calls no model (writes data files): distributed executors run it in the driver


@dataclass
class Study:
    """A recipe's declaration: its datasets, models under study and probes (in the order they run)."""

    arms: list[Arm]
    probes: list[Probe]
    data: list[Data] = field(default_factory=list)
    describe: Callable[[Context, Arm, ModelRef], dict] | None = None  # extra models.json fields, at run time


@dataclass
class Context:
    """What a probe or dataset builder sees when it runs."""

    runtime: Runtime
    store: RunStore
    study: Study
    results: dict[str, Any]  # the results of the steps this one needs, by step name
    arms: tuple[str, ...] | None = None  # the arms this step was declared for (None: every arm)

    def ref(self, label: str) -> ModelRef | None:
        """The model of an arm: its fine-tune (None when the fine-tune was skipped), or its base."""
        arm = self.arm(label)
        if arm.trained:
            return self.results[train_step(label)]
        return arm.base if isinstance(arm.base, ModelRef) else self.ref(arm.base)

    def arm(self, label: str) -> Arm:
        for arm in self.study.arms:
            if arm.label == label:
                return arm
        raise KeyError(f"no arm labelled {label!r}")

    def models(self, labels: Iterable[str] | None = None) -> list[tuple[Arm, ModelRef]]:
        """(arm, model) for the arms named (default: the step's arms), in declaration order, skipped fine-tunes
        left out."""
        labels = self.arms if labels is None else labels
        wanted = None if labels is None else set(labels)
        return [(arm, ref) for arm in self.study.arms if wanted is None or arm.label in wanted
                for ref in [self.ref(arm.label)] if ref is not None]

    def checkpoints(self, label: str) -> list[tuple[int, ModelRef]]:
        """(step, model) along an arm's fine-tune: step 0 (the model it started from), every checkpoint it saved
        (`training.checkpoint_every`) and the final adapter; empty for an arm not trained (or skipped)."""
        import json

        from .training.lora import checkpoint_adapters

        arm, ref = self.arm(label), self.ref(label)
        if not arm.trained or ref is None or ref.adapter is None:
            return []
        start = self.ref(arm.base) if isinstance(arm.base, str) else arm.base
        final = json.loads((ref.adapter / "training_meta.json").read_text()).get("steps")
        points = {0: start, **{step: ref.with_adapter(folder) for step, folder in checkpoint_adapters(ref.adapter)}}
        if final is not None:
            points[final] = ref  # the same weights as a checkpoint at that step: read through one reference
        return sorted(points.items())

    def write_results(self, part: str, rows: Iterable[dict]) -> None:
        """Rows for the result table (`runtime.results`): one part per probe step."""
        write_results(self.store, part, rows)


def train_step(label: str) -> str:
    return f"train/{label}"


# ---- compiling a study into a plan --------------------------------------------------------------
def compile_study(study: Study, runtime: Runtime, store: RunStore) -> Plan:
    """The steps: datasets, one fine-tune per trained arm, the probes, then models.json, each placed after the
    steps it needs (in declaration order otherwise)."""
    _check(study)
    data = {d.name: d for d in study.data}
    context = lambda results, arms=None: Context(runtime, store, study, results, arms)  # noqa: E731
    steps: list[tuple[str, Callable, tuple[str, ...], bool]] = []  # (name, action, needs, light)

    probe_needs = {}
    for probe in study.probes:
        arms = study.arms if probe.arms is None else [a for a in study.arms if a.label in probe.arms]
        probe_needs[probe.name] = tuple(dict.fromkeys(
            [train_step(a.label) for a in _with_ancestors(study, arms) if a.trained] + list(probe.after)))
    # A dataset built from earlier answers goes into the shared "datasets" step when those answers come from
    # models used as they are; from a fine-tune's answers, it is built inside each fine-tune that uses it.
    shared = [d for d in study.data if not any(_needs_training(step, probe_needs) for step in d.after)]
    in_shared_step = {d.name for d in shared}
    if shared:
        def build_datasets(results):
            built = {d.name: _write_data(d, context(results), store) for d in shared}
            store.write_json("datasets.json", built)
            return built

        needs = tuple(dict.fromkeys(step for d in shared for step in d.after))
        steps.append(("datasets", build_datasets, needs, not any(d.uses_models for d in shared)))

    for arm in study.arms:
        if not arm.trained:
            continue
        source = data[arm.data]
        needs = (("datasets",) if source.name in in_shared_step else source.after) + \
            ((train_step(arm.base),) if isinstance(arm.base, str) else ())

        def train(results, arm=arm, source=source):
            ctx = context(results)
            base = ctx.ref(arm.base) if isinstance(arm.base, str) else arm.base
            if base is None:
                return None  # the arm it fine-tunes was skipped
            built = (results["datasets"][source.name] if source.name in in_shared_step
                     else _write_data(source, ctx, store))
            if built is None:
                return None
            ref = runtime.train(base, Path(built["path"]), built["sha256"], arm.training, arm.seed,
                                label=f"train {arm.label}")
            keep_adapter(ref, store.path(f"adapters/{arm.label}"))
            return ref

        steps.append((train_step(arm.label), train, tuple(dict.fromkeys(needs)), False))

    for probe in study.probes:
        steps.append((probe.name, lambda results, probe=probe: probe.run(context(results, probe.arms)),
                      probe_needs[probe.name], probe.light))

    def describe(results):
        ctx = context(results)
        models = [_describe(ctx, arm, ref) for arm, ref in ctx.models()]
        store.write_json("models.json", models)
        return len(models)

    steps.append(("models", describe, tuple(train_step(a.label) for a in study.arms if a.trained), False))
    return _in_order(steps)


def _needs_training(step: str, probe_needs: dict[str, tuple[str, ...]]) -> bool:
    if step.startswith("train/"):
        return True
    return any(_needs_training(need, probe_needs) for need in probe_needs.get(step, ()))


def _in_order(steps: list[tuple[str, Callable, tuple[str, ...], bool]]) -> Plan:
    """A plan with every step after the steps it needs: repeatedly the first declared step that is ready."""
    plan, done, waiting = Plan(), set(), list(steps)
    while waiting:
        ready = next((step for step in waiting if set(step[2]) <= done), None)
        if ready is None:
            names = ", ".join(f"{name} (needs {', '.join(sorted(set(needs) - done))})" for name, _, needs, _ in waiting)
            raise ValueError(f"study: these steps need steps that are not declared or wait on each other: {names}")
        name, action, needs, light = ready
        plan.add(name, action, needs=needs, light=light)
        done.add(name)
        waiting.remove(ready)
    return plan


def _check(study: Study) -> None:
    """A malformed declaration is a bug in the recipe: say which."""
    names = [d.name for d in study.data]
    labels = [a.label for a in study.arms]
    for kind, values in (("dataset", names), ("arm", labels)):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"study: {kind} {duplicates[0]!r} is declared twice")
    for arm in study.arms:
        if arm.trained and (arm.data not in names or arm.training is None or arm.seed is None):
            raise ValueError(f"study: arm {arm.label!r} needs a declared dataset, training settings and a seed")
        if isinstance(arm.base, str) and arm.base not in labels:
            raise ValueError(f"study: arm {arm.label!r} fine-tunes an unknown arm {arm.base!r}")


def _with_ancestors(study: Study, arms: list[Arm]) -> list[Arm]:
    by_label = {a.label: a for a in study.arms}
    out: dict[str, Arm] = {}
    for arm in arms:
        while True:
            out[arm.label] = arm
            if not isinstance(arm.base, str):
                break
            arm = by_label[arm.base]
    return [a for a in study.arms if a.label in out]


def _write_data(data: Data, ctx: Context, store: RunStore) -> dict | None:
    """Write a dataset into the run directory; its entry for datasets.json (None: no rows to train on)."""
    target = store.path(f"datasets/{data.name}.jsonl")
    if data.path is not None:
        rows = read_training_rows(Path(data.path))
    else:
        rows = data.rows(ctx)
        if rows is None:
            return None
    rows, stats = rows if isinstance(rows, tuple) else (rows, {})  # a builder may report statistics too
    sha = write_jsonl(rows, target)
    return {"path": str(target), "sha256": sha, "rows": len(rows), **data.info, **stats}


def _describe(ctx: Context, arm: Arm, ref: ModelRef) -> dict:
    """One models.json entry: what was evaluated, and for a fine-tune how it was trained."""
    import json

    entry = {"label": arm.label, "condition": arm.arm, "seed": arm.seed, "ref": str(ref.base),
             "fingerprint": ctx.runtime.fingerprint(ref),
             "default_system_prompt": ctx.runtime.default_system_prompt(ref)}
    if ref.adapter:
        adapter = ctx.store.path(f"adapters/{arm.label}")
        entry["adapter"] = f"adapters/{arm.label}"
        entry["training"] = json.loads((adapter / "training_meta.json").read_text())
    entry.update(arm.info)
    if ctx.study.describe is not None:
        entry.update(ctx.study.describe(ctx, arm, ref))
    return entry


# ---- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A registered study: its config type and presets, the function declaring the study, and its analysis."""

    NAME: str
    Config: type
    PRESETS: dict[str, dict]
    DEFAULT_PRESET: str
    declare: Callable[[Any], Study]
    analyse: Callable
    protocol: Path | None = None
    aliases: tuple[str, ...] = ()
    pins: Callable[[Any], dict[str, str]] | None = None  # --cross-model: what every model must share

    def study(self, config: Any) -> Study:
        return self.declare(config)

    def plan(self, config: Any, runtime: Runtime, store: RunStore) -> Plan:
        return compile_study(self.declare(config), runtime, store)

    def report(self, store: RunStore) -> dict:
        """Tables, figures, report.html/.md and summary.json, from the run directory alone."""
        from .analysis.report import write_run_report

        return write_run_report(store, self.analyse, self.protocol)

    def cross_prediction_pins(self, config: Any) -> dict[str, str]:
        return self.pins(config) if self.pins else {}


REGISTRY: dict[str, Recipe] = {}
ALIASES: dict[str, str] = {}


def recipe(name: str, *, config: type, presets: dict[str, dict], default_preset: str, analyse: Callable,
           protocol: Path | None = None, aliases: Iterable[str] = (),
           cross_prediction_pins: Callable[[Any], dict[str, str]] | None = None
           ) -> Callable[[Callable[[Any], Study]], Recipe]:
    """Register a study: `@recipe("my-study", config=Config, presets=PRESETS, default_preset="quick",
    analyse=analyse)` above a function `config -> Study`."""
    def register(declare: Callable[[Any], Study]) -> Recipe:
        registered = Recipe(name, config, presets, default_preset, declare, analyse, protocol, tuple(aliases),
                            cross_prediction_pins)
        if name in REGISTRY and REGISTRY[name].declare.__module__ != declare.__module__:
            raise ValueError(f"recipe {name!r} is registered twice ({REGISTRY[name].declare.__module__}, "
                             f"{declare.__module__})")
        REGISTRY[name] = registered
        ALIASES.update({alias: name for alias in aliases})
        return registered

    return register


def is_user_dataset(spec: str) -> bool:
    """A condition given as a researcher's own training file rather than a shipped dataset's name."""
    return spec.endswith(".jsonl")


def dataset_name(spec: str) -> str:
    """A shipped dataset is named as it is; a researcher's file by its stem (my_data.jsonl -> my_data)."""
    return Path(spec).stem if is_user_dataset(spec) else spec


def user_dataset(spec: str, source: str, name: str | None = None) -> Data:
    """A researcher's chat (`messages`) or text (`{"text"}`) JSONL as a training dataset (named `name`, else by the
    file's stem), checked now, so that a bad file stops the run before anything is computed."""
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"{source}: no such training file '{spec}' (expected a .jsonl of chat or text rows)")
    read_training_rows(path)
    return Data(name or dataset_name(spec), path=path)


def refuse_api_model(ref: ModelRef, field_name: str = "model") -> None:
    """For recipes that score multi-token replies or count tokens: an API model cannot do that."""
    if ref.kind == "openai":
        raise UserError(f"config: field '{field_name}': '{ref}' is an API model; this recipe scores multi-token "
                        "replies and counts tokens, which needs a local model (or `llmpsych serve` it)")
