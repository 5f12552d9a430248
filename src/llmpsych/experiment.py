"""Running an experiment: resolve its config, execute the recipe's plan, write the report.

Config precedence, lowest first: the recipe's defaults, the named preset, the YAML file, then the
explicit overrides (command-line flags). The resolved config is saved in the run directory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .config import deep_merge, read_config_file, validate
from .errors import UserError
from .recipes import get_recipe, load_recipe_file
from .yamlio import read_yaml

if TYPE_CHECKING:
    from .runtime.calls import Runtime
    from .runtime.executors import Executor
    from .runtime.plan import Plan
    from .runtime.store import RunStore
    from .study import Recipe


def resolve_config(target: str, preset: str | None = None, overrides: dict | None = None) -> tuple[Recipe, Any]:
    """(recipe, validated config) for a recipe name, a researcher's recipe .py file or a config file path."""
    overrides = overrides or {}
    is_file = target.endswith((".yaml", ".yml")) or Path(target).is_file()
    data: dict = {}
    source = "config"
    if target.endswith(".py"):
        recipe = load_recipe_file(Path(target))
    elif is_file:
        data = read_config_file(Path(target))
        source = target
        if "recipe" not in data:
            raise UserError(f"{target}: missing field 'recipe' (expected a recipe name such as emergent-misalignment)")
        recipe = get_recipe(str(data["recipe"]), f"{target}: field 'recipe'")
        data["recipe"] = recipe.NAME
    else:
        recipe = get_recipe(target)
    if "model" in overrides and "models" in recipe.Config.model_fields:  # recipes comparing several models
        overrides = {**overrides, "models": [m.strip() for m in overrides["model"].split(",") if m.strip()]}
        del overrides["model"]
    chosen = preset or data.get("preset") or (None if is_file else recipe.DEFAULT_PRESET)
    if chosen is not None and (not isinstance(chosen, str) or chosen not in recipe.PRESETS):
        where = "--preset" if preset else f"{source}: field 'preset'"
        raise UserError(f"{where}: unknown preset '{chosen}' (expected one of: {', '.join(recipe.PRESETS)})")
    merged: dict = {}
    for layer in (recipe.PRESETS.get(chosen, {}), data, overrides):
        merged = deep_merge(merged, _training_preset_inside(layer, source))
    merged["preset"] = chosen
    if "training" in recipe.Config.model_fields:  # a study that trains nothing has no training section
        merged = _expand_training_preset(merged, source, recipe.Config.model_fields["training_preset"].default)
    return recipe, validate(recipe.Config, merged, source)


def _training_preset_inside(layer: dict, source: str) -> dict:
    """Move a layer's top-level `training_preset` into `training.preset`, so that layers merge in order."""
    training = {} if layer.get("training") is None else layer["training"]
    if not isinstance(training, dict):
        raise UserError(f"{source}: field 'training': expected a mapping of training settings, "
                        f"got {type(training).__name__}")
    if "training_preset" not in layer:
        return layer
    moved = {key: value for key, value in layer.items() if key != "training_preset"}
    moved["training"] = {"preset": layer["training_preset"], **training}
    return moved


def _expand_training_preset(data: dict, source: str, default: str | None) -> dict:
    """`training: {preset: NAME, ...overrides}` -> the preset's values with the overrides on top; with no
    preset named anywhere, the recipe's own default preset."""
    from .training.config import TrainConfig, train_preset

    training = dict(data.get("training") or {})
    name = training.pop("preset", default)
    base = train_preset(name, f"{source}: field 'training.preset'") if name else TrainConfig()
    return {**data, "training_preset": name, "training": {**base.model_dump(), **training}}


def run_experiment(target: str, preset: str | None = None, overrides: dict | None = None,
                   out: str | None = None, executor: Executor | None = None) -> Path:
    """Run a recipe (or config file) end to end; return the run directory.

    executor: where the plan's steps run (see runtime.executors.make_executor); None runs them here.
    """
    from .runtime.calls import Runtime
    from .runtime.plan import run_local
    from .runtime.results import clear_results, combine_results
    from .runtime.store import RunStore, environment

    recipe, config = resolve_config(target, preset, overrides)
    run_dir = Path(out or config.out or f"runs/{recipe.NAME}")
    store = RunStore(run_dir)
    runtime = Runtime(options=config.engine)
    # Declaring the study reads every input file (questions, facts, banks, datasets): a bad one stops the
    # run here, before the run directory exists.
    plan = recipe.plan(config, runtime, store)
    store.create()
    clear_results(store)
    store.write_text("config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    store.write_json("environment.json", environment(config.engine))
    try:
        if executor is None:
            run_local(plan)
        else:
            from .runtime.executors import plan_spec

            executor.run(plan, plan_spec(recipe.NAME, config, store, runtime, rebuild_plan), runtime.counts)
    finally:
        store.write_json("calls.json", runtime.counts.as_dict())
    combine_results(store)
    recipe.report(store)
    print(f"Report: {store.path('report.html')}", file=sys.stdout, flush=True)
    return run_dir


def rebuild_report(run_dir: Path) -> Path:
    """Rewrite a run's tables, figures and report from its stored results, without any model call."""
    from .runtime.store import RunStore

    store = RunStore(Path(run_dir))
    if not store.exists("config.yaml"):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml in it)")
    config = read_yaml(store.path("config.yaml"), "the run's resolved config")
    if not isinstance(config, dict):
        raise UserError(f"{store.path('config.yaml')}: expected a mapping of settings (is this an llmpsych run?)")
    get_recipe(str(config.get("recipe")), f"{run_dir}/config.yaml: field 'recipe'").report(store)
    return store.path("report.html")


def rebuild_plan(name: str, config: dict, runtime: Runtime, store: RunStore) -> Plan:
    """A run's plan, rebuilt from its resolved config: what a distributed worker runs its step from."""
    from .config import validate

    recipe = get_recipe(name)
    return recipe.plan(validate(recipe.Config, config, f"{store.root}/config.yaml"), runtime, store)
