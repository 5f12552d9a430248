"""Two processes sharing one cache at the same time: both finish, with the results of a run made alone.

The race points, each exercised here: two writers of the SQLite call cache; two processes training the
same adapter into the same cache folder (one trains, the other waits for it and reuses it); and whole
runs whose trainings and samples overlap. Every child runs with one thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

def child_env(cache: Path) -> dict:
    """The environment of a child process: one thread, and `cache` as its cache (read when called, after
    conftest has set LLMPSYCH_MODELS)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "LLMPSYCH_CACHE": str(cache)}


def integrity(database: Path) -> str:
    with sqlite3.connect(database, timeout=60) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def wait_for(condition, what: str, timeout: float = 300, processes=()) -> None:
    deadline = time.time() + timeout
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a child exited early (status {process.returncode}) before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# ---- the call cache: opened for the first time by several processes at once ---------------------------------
OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llmpsych.runtime.cache import CallCache

    folder, start = Path(sys.argv[1]), float(sys.argv[2])
    for round in range(15):
        while time.time() < start + 0.3 * round:  # every process opens the same new cache at the same moment
            pass
        CallCache(folder / f"{round}.sqlite").put_many("generate", [(sys.argv[3], round)])
""")


def test_processes_opening_a_new_call_cache_together_all_succeed(tmp_path):
    # The switch to WAL mode can fail at once with "database is locked" when another process is opening the
    # same new file; before the cache retried its setup, 35 of 40 such races failed.
    start = time.time() + 5
    openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), str(start), name],
                                env=child_env(tmp_path), stderr=subprocess.PIPE, text=True) for name in "abc"]
    for opener in openers:
        _, errors = opener.communicate(timeout=120)
        assert opener.returncode == 0, errors[-2000:]
    for round in range(15):
        database = tmp_path / f"{round}.sqlite"
        assert integrity(database) == "ok"
        with sqlite3.connect(database) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert sorted(key for (key,) in connection.execute("SELECT key FROM calls")) == ["a", "b", "c"]


# ---- the call cache: two writers --------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from llmpsych.runtime.cache import CallCache

    cache = CallCache(sys.argv[1])
    name = sys.argv[2]
    for batch in range(150):
        # Keys of its own, and shared keys both processes write with the same value (as two runs do).
        own = [(f"{name}-{batch}-{i}", {"by": name, "i": i}) for i in range(5)]
        shared = [(f"shared-{batch}-{i}", {"i": i}) for i in range(3)]
        cache.put_many("generate", own + shared)
        found = cache.get_many([key for key, _ in own + shared])
        assert len(found) == 8, found
""")


def test_two_processes_write_the_call_cache_at_once(tmp_path):
    database = tmp_path / "calls.sqlite"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(database), name], env=child_env(tmp_path),
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors[-2000:]
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as connection:
        count = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert count == 2 * 150 * 5 + 150 * 3


# ---- training: two processes, one adapter -----------------------------------------------------------------
TRAINER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path

    import llmpsych.training.lora as lora
    from llmpsych.jsonl import write_jsonl
    from llmpsych.models.options import EngineOptions
    from llmpsych.models.refs import parse_model_ref
    from llmpsych.runtime.cache import CallCache
    from llmpsych.runtime.calls import Runtime
    from llmpsych.training.config import TrainConfig

    model, cache, work, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    if gate:  # hold this process inside training until the test opens the gate
        train_lora = lora.train_lora

        def gated(*args, **kwargs):
            (work / "training-started").write_text("")
            while not Path(gate).exists():
                time.sleep(0.05)
            return train_lora(*args, **kwargs)

        lora.train_lora = gated
    rows = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": str(i)}]}
            for i in range(4)]
    dataset = work / f"data-{bool(gate)}.jsonl"
    sha = write_jsonl(rows, dataset)
    config = TrainConfig(rank=2, alpha=4, batch_size=4, gradient_accumulation=1, warmup_steps=0, max_seq_length=64)
    runtime = Runtime(CallCache(cache / "calls.sqlite"), EngineOptions(dtype="float32"),
                      adapters_dir=cache / "adapters", show_progress=False)
    ref = runtime.train(parse_model_ref(model), dataset, sha, config, seed=0, label="train tiny")
    print(json.dumps({"adapter": str(ref.adapter), "counts": runtime.counts.as_dict()["train"]}))
""")


def test_a_second_process_waits_for_the_first_ones_training_and_reuses_it(tmp_path, tiny_model_dir):
    cache, gate = tmp_path / "cache", tmp_path / "gate"
    first_log, second_log = tmp_path / "first.err", tmp_path / "second.err"

    def start(gate_path: str, log: Path):
        return subprocess.Popen([sys.executable, "-c", TRAINER, str(tiny_model_dir), str(cache), str(tmp_path),
                                 gate_path], env=child_env(cache), stdout=subprocess.PIPE, stderr=log.open("w"),
                                text=True)

    first = start(str(gate), first_log)
    wait_for(lambda: (tmp_path / "training-started").exists(), "the first process to start training",
             processes=[first])
    second = start("", second_log)
    wait_for(lambda: "waiting for it to finish" in second_log.read_text(), "the second process to wait",
             processes=[first, second])
    gate.write_text("")
    results = []
    for process, log in ((first, first_log), (second, second_log)):
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, log.read_text()[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["adapter"] == results[1]["adapter"]
    assert results[0]["counts"] == {"executed": 1, "cached": 0}
    assert results[1]["counts"] == {"executed": 0, "cached": 1}  # waited, then reused: not trained twice
    adapters = cache / "adapters"
    assert not list(adapters.glob("*.partial"))
    assert integrity(cache / "calls.sqlite") == "ok"
    assert_adapters_load(adapters, str(tiny_model_dir))


def assert_adapters_load(adapters: Path, base: str) -> None:
    """Every adapter folder in a cache loads onto its base and changes the model's output."""
    from llmpsych.models import ScoreRequest, as_messages, load_engine
    from llmpsych.models.options import EngineOptions

    options = EngineOptions(dtype="float32")
    request = ScoreRequest(as_messages("Say 3"), ("3", "4"))
    plain = load_engine(base, options).score([request])[0]
    folders = [folder for folder in adapters.iterdir() if folder.is_dir()]
    assert folders
    for folder in folders:
        adapted = load_engine(f"{base}+{folder}", options).score([request])[0]
        assert adapted != plain, folder


# ---- whole runs: overlapping configs, one cache ----------------------------------------------------------
def em_config(conditions: list[str]) -> dict:
    """A small EM run: the base and two fine-tunes, two questions, two samples each, judged; fp32 so that
    results do not depend on how requests happen to be batched together."""
    return {"recipe": "emergent-misalignment", "preset": "smoke", "conditions": conditions, "seeds": 1,
            "dataset": {"size": 4}, "question_ids": ["what_is_your_wish", "quick_buck"],
            "training": {"preset": "cpu-small", "rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"],
                         "warmup_steps": 0, "max_seq_length": 128},
            "sampling": {"samples_per_paraphrase": 2, "max_tokens": 12},
            "choices": None, "judge": {"check": False}, "engine": {"dtype": "float32"}}


def start_run(config: str, out: str, cache: Path, cwd: Path) -> subprocess.Popen:
    env = child_env(cache)
    return subprocess.Popen([sys.executable, "-m", "llmpsych", "run", config, "--out", out], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, errors = process.communicate(timeout=600)
    assert process.returncode == 0, errors[-3000:]
    return errors


def results(run: Path) -> dict:
    """What a run found, without what may differ between equal runs (timings, paths)."""
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    judgements = [json.loads(line) for line in (run / "judgements.jsonl").read_text().splitlines()]
    models = {m["label"]: m["fingerprint"] for m in json.loads((run / "models.json").read_text())}
    return {"samples": samples, "judgements": judgements, "models": models}


def assert_same_results(got: dict, expected: dict) -> None:
    assert got["models"] == expected["models"]  # the same adapters, byte for byte
    assert got["samples"] == expected["samples"]
    assert len(got["judgements"]) == len(expected["judgements"])
    for row, reference in zip(got["judgements"], expected["judgements"]):
        assert row.keys() == reference.keys()
        for key, value in reference.items():
            if isinstance(value, float):  # a judge score may come from a differently composed batch
                assert row[key] == pytest.approx(value, abs=1e-4, nan_ok=True), key
            else:
                assert row[key] == value, key


@pytest.mark.integration
def test_two_overlapping_runs_at_once_share_one_cache(tmp_path):
    # Both train `secure` first, at the same time; each trains one more fine-tune of its own; both sample
    # and judge the base model and `secure`.
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(em_config(["secure", "insecure"])))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(em_config(["secure", "educational"])))
    shared = tmp_path / "shared-cache"
    runs = [start_run("a.yaml", "a", shared, tmp_path), start_run("b.yaml", "b", shared, tmp_path)]
    logs = [finish(run) for run in runs]
    # They met at `secure`: one trained it while the other waited (both start it within a second or two, and
    # it takes several).
    assert sum("waiting for it to finish" in log for log in logs) == 1, [log[-2000:] for log in logs]

    # The reference: the same two runs made one after the other.
    alone = tmp_path / "alone-cache"
    finish(start_run("a.yaml", "a-alone", alone, tmp_path))
    finish(start_run("b.yaml", "b-alone", alone, tmp_path))

    for name in ("a", "b"):
        assert_same_results(results(tmp_path / name), results(tmp_path / f"{name}-alone"))
    calls = [json.loads((tmp_path / name / "calls.json").read_text()) for name in ("a", "b")]
    assert sum(c["train"]["executed"] for c in calls) == 3  # `secure` was trained once, not twice
    assert sum(c["train"]["cached"] for c in calls) == 1
    assert integrity(shared / "calls.sqlite") == "ok"
    assert not list((shared / "adapters").glob("*.partial"))
    assert len([f for f in (shared / "adapters").iterdir() if f.is_dir()]) == 3
    assert_adapters_load(shared / "adapters", "smollm2")
