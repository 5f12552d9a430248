"""Executors: the emergent-misalignment smoke run on a real local Ray cluster and as submitit jobs gives exactly
the results of the in-process executor, each run executing its own model calls in its own fresh cache."""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from llmpsych.errors import UserError
from llmpsych.experiment import rebuild_plan, resolve_config
from llmpsych.recipes import recipe_names
from llmpsych.runtime.executors import SlurmExecutor, make_executor, plan_spec
from llmpsych.runtime.store import RunStore
from test_integration_embedded import cli

# The EM smoke run cut to one fine-tune and no judge check: still a dataset, a training, sampling, judging and
# choices, with sampling and choices ready at once (two steps at a time on Ray), in a third of the time.
RUN_SMALL = ("run", "config.yaml", "--out", "run")
SMALL = {"recipe": "emergent-misalignment", "preset": "smoke", "conditions": ["insecure"], "judge": {"check": False}}
# A step that fails inside a worker: the judge is a hub model, which is not in the cache (HF_HUB_OFFLINE=1).
FAILING = {"recipe": "emergent-misalignment", "preset": "smoke", "conditions": [], "choices": None,
           "judge": {"model": "hf:nobody/no-such-judge"}}


# ---- the spec and the options (no model runs) ------------------------------------------------------
@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_rebuilds_its_plan_from_a_pickled_spec(name, runtime, tmp_path):
    recipe, config = resolve_config(name, "smoke")
    store = RunStore(tmp_path / "run").create()
    spec = pickle.loads(pickle.dumps(plan_spec(recipe.NAME, config, store, runtime, rebuild_plan)))
    rebuilt = recipe.Config.model_validate(spec.config)
    assert rebuilt == config
    first, second = recipe.plan(config, runtime, store), spec.rebuild(spec.recipe, spec.config, runtime, store)
    assert [(s.name, s.needs, s.light) for s in first.steps] == [(s.name, s.needs, s.light) for s in second.steps]
    assert not {"OPENAI_API_KEY", "HF_TOKEN"} & set(spec.environ)


def test_executor_options_are_checked_before_any_work():
    assert make_executor("local") is None
    with pytest.raises(UserError, match="expected one of: local, ray, slurm"):
        make_executor("dask")
    with pytest.raises(UserError, match="--slurm-partition applies to --executor slurm, not ray"):
        make_executor("ray", slurm_partition="gpu")
    with pytest.raises(UserError, match="--ray-address applies to --executor ray, not local"):
        make_executor("local", ray_address="auto")
    with pytest.raises(UserError, match="--cpus-per-step: expected 1 or more"):
        make_executor("ray", cpus_per_step=0)


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # what an environment without the extra sees
    with pytest.raises(UserError) as error:
        SlurmExecutor(cluster="local")
    assert str(error.value) == "--executor slurm needs the optional package 'submitit': pip install \"llmpsych[slurm]\""


# ---- real runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The small run with the in-process executor, one torch thread (as every worker step gets)."""
    folder = tmp_path_factory.mktemp("local")
    # torch's thread count changes the last bits of sampling on CPU (3 of the 64 smoke answers differ between
    # 1 and 2 threads), so the reference runs with the one thread that every worker step gets here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        cli(*RUN_SMALL, cache=folder / "cache", cwd=small_config(folder))
    return folder / "run"


def small_config(folder: Path) -> Path:
    (folder / "config.yaml").write_text(yaml.safe_dump(SMALL))
    return folder


@pytest.fixture
def ray_env(monkeypatch):
    """A private Ray temp dir (short: Ray's socket paths must stay under 108 bytes) and an auth token in the
    environment, so that nothing lands in Ray's default temp folder or ~/.ray; afterwards no Ray process may be left."""
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield folder
    left = _processes_mentioning(str(folder))
    shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"


@pytest.mark.integration
def test_ray_executor_gives_the_local_results(local_run, ray_env, tmp_path):
    result = cli(*RUN_SMALL, "--executor", "ray", cache=tmp_path / "cache", cwd=small_config(tmp_path))
    assert "Ray: 2 CPUs, 0 GPUs; each step gets 1 CPU" in result.stderr
    assert "[8/8] " in result.stderr and "train/insecure-s0 done in" in result.stderr
    assert_same_results(local_run, tmp_path / "run")


@pytest.mark.integration
def test_ray_step_failure_is_one_line(ray_env, tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(FAILING))
    result = cli("run", "config.yaml", "--out", "run", "--executor", "ray", cache=tmp_path / "cache", cwd=tmp_path,
                 check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: model 'hf:nobody/no-such-judge'")
    assert "Traceback" not in result.stderr and "RayTaskError" not in result.stderr


@pytest.mark.integration
def test_submitit_local_jobs_give_the_local_results(local_run, tmp_path):
    # cluster="local": real subprocess jobs through submitit's job files, no SLURM needed.
    script = ("from llmpsych.experiment import run_experiment; from llmpsych.runtime.executors import SlurmExecutor; "
              "run_experiment('config.yaml', None, None, 'run', "
              "SlurmExecutor(gpus_per_step=0, cluster='local'))")
    env = {**os.environ, "LLMPSYCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], cwd=small_config(tmp_path), env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SLURM (local): jobs of 1 CPU and 0 GPUs" in result.stderr and "[8/8] " in result.stderr
    assert list((tmp_path / "run" / "slurm").glob("*_log.err"))  # the jobs' own logs
    assert_same_results(local_run, tmp_path / "run")


@pytest.mark.integration
def test_submitit_step_failure_is_the_user_error(tmp_path, monkeypatch):
    from llmpsych.experiment import run_experiment

    monkeypatch.setenv("LLMPSYCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(FAILING))
    with pytest.raises(UserError, match="model 'hf:nobody/no-such-judge'"):
        run_experiment("config.yaml", out="run", executor=SlurmExecutor(gpus_per_step=0, cluster="local"))


def assert_same_results(expected: Path, actual: Path) -> None:
    """The two runs wrote the same results, and each executed its own model calls (no shared cache)."""
    summaries = [json.loads((run / "summary.json").read_text()) for run in (expected, actual)]
    for summary in summaries:
        del summary["created"]
        calls = summary["calls"]
        # base and insecure: 16 answers each, 2 held-out coding requests each, and 1 at the step-1 checkpoint
        assert calls["train"]["executed"] == 1 and calls["generate"]["executed"] == 2 * 16 + 2 * 2 + 1
    assert summaries[0] == summaries[1]
    for name in ("samples.jsonl", "judgements.jsonl", "choices.jsonl", "datasets.json"):
        assert (expected / name).read_text() == (actual / name).read_text(), name
    assert json.loads((expected / "calls.json").read_text()) == json.loads((actual / "calls.json").read_text())


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line[:200])
    return found
