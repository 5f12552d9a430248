"""Distributed executors: a plan's steps as Ray tasks or SLURM jobs, with the local executor's results.

A step's action is a closure, and closures do not travel. A worker therefore rebuilds the plan from a
`PlanSpec` (recipe name, resolved config, run directory, cache locations, and the module-level function
that rebuilds a plan, which pickles by reference) and runs one step by name,
given the results of the steps it needs. Every model call still goes through the shared call cache and
adapters folder, so the results are those of `run_local` and a rerun executes nothing; the run
directory and the cache must be on a filesystem that every worker sees. Light steps (data files, no
model) run in the driver. Each step's call counts come back to the driver, so calls.json covers the
whole run.

    ray     one task per step, submitted in plan order with the results it needs as object refs;
            one GPU per step when the cluster has GPUs (sampling and judging want one as much as
            training does), else `cpus_per_step` cores
    slurm   submitit job arrays: whenever steps become ready, one array runs them all;
            cluster="local" runs real local subprocess jobs (for tests and laptops)

A worker runs torch with as many threads as the cores its step was given: two steps on two cores, each
with torch's default of every core, run many times slower than one thread each.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from ..errors import UserError
from ..models.options import EngineOptions
from .calls import CallCounts, Runtime
from .plan import Plan, Step
from .store import RunStore

# Settings a worker needs to see the same models and files as the driver. Tokens and API keys are left
# out on purpose: job pickles sit on shared disks, so a cluster's nodes supply their own credentials.
FORWARDED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "TRANSFORMERS_OFFLINE",
                 "TOKENIZERS_PARALLELISM", "OPENAI_BASE_URL")
EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class PlanSpec:
    """What a worker needs to rebuild a run's plan: small, picklable, and free of credentials."""

    recipe: str
    config: dict  # the resolved config as JSON values (what config.yaml holds)
    run_dir: str
    cwd: str  # the driver's working directory, so that relative paths in step results mean the same
    options: EngineOptions
    cache: str  # the call cache file
    adapters: str
    environ: dict  # LLMPSYCH_CACHE / LLMPSYCH_MODELS as the driver resolved them, and FORWARDED_ENV
    # (recipe, config, runtime, store) -> the plan; a module-level function, so it pickles by reference
    rebuild: Callable[[str, dict, Runtime, RunStore], Plan]


def plan_spec(recipe: str, config: Any, store: RunStore, runtime: Runtime,
              rebuild: Callable[[str, dict, Runtime, RunStore], Plan]) -> PlanSpec:
    """The spec of the plan that `rebuild(recipe, config, runtime, store)` builds in this process."""
    from ..paths import cache_dir, models_dir

    environ = {"LLMPSYCH_CACHE": str(cache_dir().absolute()), "LLMPSYCH_MODELS": str(models_dir().absolute())}
    environ.update({name: os.environ[name] for name in FORWARDED_ENV if name in os.environ})
    return PlanSpec(recipe, config.model_dump(mode="json"), str(store.root), os.getcwd(), runtime.options,
                    str(runtime.cache.path.absolute()), str(Path(runtime.adapters_dir).absolute()), environ, rebuild)


@dataclass
class StepOutcome:
    """A finished step: its result, the model calls it executed and reused, and how long it took."""

    result: Any
    executed: dict[str, int]
    cached: dict[str, int]
    seconds: float


# A worker process that runs several steps of one plan (Ray reuses CPU workers) rebuilds it once and
# keeps the models it loaded, as the local executor does.
_rebuilt: tuple[PlanSpec, Plan, Runtime] | None = None


def run_step(spec: PlanSpec, name: str, needed: dict[str, Any], threads: int) -> StepOutcome:
    """Run the step `name` of the plan `spec` describes, in this (worker) process.

    needed: the results of the step's `needs`, by step name.
    threads: torch's thread count, the cores this step was given.
    """
    global _rebuilt
    os.environ.update(spec.environ)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by BLAS libraries at their first import
    try:
        os.chdir(spec.cwd)
    except OSError:
        raise UserError(f"worker on {platform.node()}: no folder {spec.cwd}; the run directory and the cache must "
                        "be on a filesystem that every node mounts at the same path") from None
    import torch

    torch.set_num_threads(threads)
    if _rebuilt is None or _rebuilt[0] != spec:
        from .cache import CallCache

        runtime = Runtime(CallCache(Path(spec.cache)), spec.options, Path(spec.adapters))
        _rebuilt = (spec, spec.rebuild(spec.recipe, spec.config, runtime, RunStore(Path(spec.run_dir))), runtime)
    _, plan, runtime = _rebuilt
    step = next((s for s in plan.steps if s.name == name), None)
    if step is None:  # a bug: plan() must build the same steps from the same config everywhere
        raise RuntimeError(f"step {name!r} is not in the plan rebuilt from {spec.run_dir}/config.yaml")
    executed, cached = dict(runtime.counts.executed), dict(runtime.counts.cached)
    started = time.time()
    result = step.action(needed)
    return StepOutcome(result, _minus(runtime.counts.executed, executed), _minus(runtime.counts.cached, cached),
                       time.time() - started)


class Executor(Protocol):
    def run(self, plan: Plan, spec: PlanSpec, counts: CallCounts, log: TextIO = sys.stderr) -> None:
        """Run every step of `plan` (which `spec` rebuilds), adding each step's call counts to `counts`."""


def make_executor(kind: str, ray_address: str | None = None, slurm_partition: str | None = None,
                  slurm_gpus: int | None = None, slurm_time: int | None = None,
                  cpus_per_step: int | None = None) -> Executor | None:
    """The executor the command line names; None for local (`run_local`). Options for another executor are errors."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor: unknown executor '{kind}' (expected one of: {', '.join(EXECUTORS)})")
    given = {"--ray-address": (ray_address, ("ray",)), "--slurm-partition": (slurm_partition, ("slurm",)),
             "--slurm-gpus": (slurm_gpus, ("slurm",)), "--slurm-time": (slurm_time, ("slurm",)),
             "--cpus-per-step": (cpus_per_step, ("ray", "slurm"))}
    for option, (value, owners) in given.items():
        if value is not None and kind not in owners:
            raise UserError(f"{option} applies to --executor {' or '.join(owners)}, not {kind}")
    # Only what was given, so that the executors' own defaults apply to the rest.
    chosen = {"cpus_per_step": cpus_per_step, "gpus_per_step": slurm_gpus, "time_min": slurm_time}
    chosen = {name: value for name, value in chosen.items() if value is not None}
    if kind == "ray":
        return RayExecutor(ray_address, **chosen)
    if kind == "slurm":
        return SlurmExecutor(slurm_partition, **chosen)
    return None


class RayExecutor:
    """Every step a Ray task on the cluster at `address` (else $RAY_ADDRESS, else a new local one)."""

    def __init__(self, address: str | None = None, cpus_per_step: int = 1):
        self.ray = _optional("ray", "ray")
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.cpus_per_step = _at_least_one(cpus_per_step, "--cpus-per-step")

    def run(self, plan: Plan, spec: PlanSpec, counts: CallCounts, log: TextIO = sys.stderr) -> None:
        """Run the plan on the cluster; connects (or starts a local cluster) and disconnects (stops it)."""
        import logging

        ray = self.ray
        connected_here = not ray.is_initialized()
        if connected_here:
            # No progress bars in workers: Ray interleaves every worker's output, one line per redraw.
            ray.init(address=self.address, logging_level=logging.WARNING, include_dashboard=False,
                     runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
        try:
            self._run(plan, spec, counts, log)
        finally:
            if connected_here:
                ray.shutdown()

    def _run(self, plan: Plan, spec: PlanSpec, counts: CallCounts, log: TextIO) -> None:
        ray = self.ray
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) > 0 else 0
        # With a GPU, Ray gives every call a fresh worker (max_calls=1), so no idle process holds GPU memory.
        task = ray.remote(num_cpus=self.cpus_per_step, num_gpus=gpus, num_returns=2)(_ray_step)
        print(f"Ray: {resources.get('CPU', 0):.0f} CPUs, {resources.get('GPU', 0):.0f} GPUs; each step gets "
              f"{self.cpus_per_step} CPU{'s' if self.cpus_per_step > 1 else ''}{' and 1 GPU' if gpus else ''}",
              file=log, flush=True)
        progress = _Progress(len(plan.steps), log)
        results: dict[str, Any] = {}  # step name -> object ref (remote steps) or value (light steps)
        running: dict[Any, str] = {}  # outcome ref -> step name

        def finish(awaited: set[str] | None = None) -> None:
            """Collect finished steps until none of `awaited` (None: none at all) is running."""
            while running and (awaited is None or awaited & set(running.values())):
                [ref], _ = ray.wait(list(running), num_returns=1)
                name = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as error:
                    if isinstance(error.cause, UserError):
                        raise error.cause from None  # the same one line the local executor prints
                    raise
                progress.done(name, outcome, counts)

        for step in plan.steps:
            if step.light:
                finish(set(step.needs))
                needed = {name: ray.get(results[name]) if isinstance(results[name], ray.ObjectRef) else results[name]
                          for name in step.needs}
                results[step.name] = _run_light(step, needed, counts, progress)
            else:
                results[step.name], outcome = task.remote(spec, step.name, self.cpus_per_step, step.needs,
                                                          *(results[name] for name in step.needs))
                running[outcome] = step.name
        finish()


def _ray_step(spec: PlanSpec, name: str, threads: int, needs: tuple[str, ...], *values: Any) -> tuple[Any, StepOutcome]:
    """A Ray task: the needs arrive as top-level arguments, so Ray waits for them and resolves them."""
    outcome = run_step(spec, name, dict(zip(needs, values)), threads)
    return outcome.result, replace(outcome, result=None)  # the result travels once, as its own object


class SlurmExecutor:
    """Steps as SLURM jobs through submitit; each time steps become ready, one job array runs them.

    partition: the SLURM partition (None: the cluster's default).
    gpus_per_step, cpus_per_step: resources of every job; torch uses `cpus_per_step` threads.
    time_min: each job's time limit in minutes.
    cluster: "slurm", or "local" to run the jobs as local subprocesses (no SLURM needed).
    """

    def __init__(self, partition: str | None = None, gpus_per_step: int = 1, cpus_per_step: int = 1,
                 time_min: int = 240, cluster: str = "slurm", poll_seconds: float = 2.0):
        self.submitit = _optional("submitit", "slurm")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--executor slurm: no `sbatch` on this machine (run from a SLURM login node, "
                            "or use --executor ray or local)")
        if gpus_per_step < 0:
            raise UserError(f"--slurm-gpus: expected 0 or more GPUs per job, got {gpus_per_step}")
        self.partition, self.gpus, self.cluster = partition, gpus_per_step, cluster
        self.cpus = _at_least_one(cpus_per_step, "--cpus-per-step")
        self.time_min = _at_least_one(time_min, "--slurm-time")
        self.poll_seconds = poll_seconds

    def run(self, plan: Plan, spec: PlanSpec, counts: CallCounts, log: TextIO = sys.stderr) -> None:
        """Submit ready steps, wait, repeat; job logs and pickles go to <run dir>/slurm."""
        executor = self.submitit.AutoExecutor(folder=Path(spec.cwd) / spec.run_dir / "slurm", cluster=self.cluster)
        parameters = {"name": f"llmpsych-{spec.recipe}", "timeout_min": self.time_min, "nodes": 1,
                      "tasks_per_node": 1, "cpus_per_task": self.cpus, "gpus_per_node": self.gpus}
        if self.partition:
            parameters["slurm_partition"] = self.partition
        executor.update_parameters(**parameters)
        print(f"SLURM ({self.cluster}): jobs of {self.cpus} CPU{'s' if self.cpus > 1 else ''} and {self.gpus} "
              f"GPU{'s' if self.gpus != 1 else ''}, {self.time_min} min each; logs in {executor.folder}",
              file=log, flush=True)
        progress = _Progress(len(plan.steps), log)
        results: dict[str, Any] = {}
        waiting = list(plan.steps)
        jobs: dict[str, Any] = {}  # step name -> submitit job
        try:
            while waiting or jobs:
                ready = [step for step in waiting if all(name in results for name in step.needs)]
                waiting = [step for step in waiting if step not in ready]
                for step in ready:
                    if step.light:
                        results[step.name] = _run_light(step, {n: results[n] for n in step.needs}, counts, progress)
                remote = [step for step in ready if not step.light]
                if remote:
                    submitted = executor.map_array(_slurm_step, [spec] * len(remote), [s.name for s in remote],
                                                   [{n: results[n] for n in s.needs} for s in remote],
                                                   [self.cpus] * len(remote))
                    jobs.update(zip([s.name for s in remote], submitted))
                finished = [name for name, job in jobs.items() if job.done()]
                for name in finished:
                    outcome = jobs.pop(name).result()
                    if isinstance(outcome, UserError):
                        raise outcome
                    results[name] = outcome.result
                    progress.done(name, outcome, counts)
                if not ready and not finished:
                    time.sleep(self.poll_seconds)
        finally:
            for job in jobs.values():  # after a failure or Ctrl-C: finished steps are cached, the rest stops
                job.cancel(check=False)


def _slurm_step(spec: PlanSpec, name: str, needed: dict[str, Any], threads: int) -> StepOutcome | UserError:
    """A SLURM job: a user error comes back as a value, since submitit returns only a traceback's text."""
    try:
        return run_step(spec, name, needed, threads)
    except UserError as error:
        return error


class _Progress:
    """One line per finished step, in the order steps finish; adds the step's call counts to the run's."""

    def __init__(self, total: int, log: TextIO):
        self.total, self.finished, self.log = total, 0, log

    def done(self, name: str, outcome: StepOutcome, counts: CallCounts) -> None:
        for kind, number in outcome.executed.items():
            counts.executed[kind] = counts.executed.get(kind, 0) + number
        for kind, number in outcome.cached.items():
            counts.cached[kind] = counts.cached.get(kind, 0) + number
        self.finished += 1
        print(f"[{self.finished}/{self.total}] {name} done in {outcome.seconds:.0f} s", file=self.log, flush=True)


def _run_light(step: Step, needed: dict[str, Any], counts: CallCounts, progress: _Progress) -> Any:
    """Run a light step in the driver; its model calls (none expected) are already in `counts`."""
    started = time.time()
    result = step.action(needed)
    progress.done(step.name, StepOutcome(None, {}, {}, time.time() - started), counts)
    return result


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {kind: number - before.get(kind, 0) for kind, number in after.items()}


def _at_least_one(value: int, option: str) -> int:
    if value < 1:
        raise UserError(f"{option}: expected 1 or more, got {value}")
    return value


def _optional(module: str, extra: str):
    """Import an optional dependency, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"--executor {extra} needs the optional package '{module}': "
                        f"pip install \"llmpsych[{extra}]\"") from None
