"""Resource faults: a full disk, a read-only cache, a damaged cached adapter, a batch too big for memory.

Each ends in a one-line error that names what failed (the CLI prints `error: ...` and exits 2), or is
recovered from; never a silent wrong result, and nothing already computed is lost.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmpsych.errors import UserError
from llmpsych.jsonl import write_jsonl
from llmpsych.models import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.models.hf import HFBackend, HFEngine
from llmpsych.models.options import EngineOptions
from llmpsych.models.refs import parse_model_ref
from llmpsych.runtime.cache import CallCache
from llmpsych.runtime.calls import Runtime
from llmpsych.training.config import TrainConfig

def child_env(cache: Path) -> dict:
    """The environment of a child process: one thread, and `cache` as its cache (read when called, after
    conftest has set LLMPSYCH_MODELS)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "LLMPSYCH_CACHE": str(cache)}


def one_line_error(stderr: str, *says: str) -> str:
    """The error line at the end of stderr (after any progress lines), checked to name `says`."""
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("error: "), stderr[-3000:]
    for words in says:
        assert words in last, last
    return last


def cli_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from llmpsych.cli import main

    monkeypatch.setattr(sys, "argv", ["llmpsych", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code, capsys.readouterr().err


def em_config(model: Path) -> dict:
    """A small EM run on the tiny random model (also its judge): one fine-tune, two questions, judged."""
    return {"recipe": "emergent-misalignment", "preset": "smoke", "model": str(model), "conditions": ["insecure"],
            "seeds": 1, "dataset": {"size": 8}, "question_ids": ["what_is_your_wish", "quick_buck"],
            "training": {"rank": 2, "alpha": 4, "target_modules": ["q_proj"], "warmup_steps": 0,
                         "max_seq_length": 256, "checkpoint_every": None},  # the call cache is what fills up
            "sampling": {"samples_per_paraphrase": 4, "max_tokens": 12}, "choices": None,
            "judge": {"model": str(model), "check": False},
            "engine": {"dtype": "float32", "generate_batch_size": 2, "score_batch_size": 2}}


# ---- a full disk ------------------------------------------------------------------------------------------
def run_cli(config: Path, out: str, cache: Path, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`llmpsych run` in a child; with a limit, every write past that many bytes of a file fails (EFBIG), as
    on a full disk, without root or a special filesystem."""

    def limit() -> None:  # Python ignores SIGXFSZ, so the write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "llmpsych", "run", str(config), "--out", out], cwd=config.parent,
                          env=child_env(cache), capture_output=True, text=True, timeout=600,
                          preexec_fn=limit if file_size_limit else None)


def counts_by_kind(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return dict(connection.execute("SELECT kind, COUNT(*) FROM calls GROUP BY kind"))


@pytest.mark.integration  # three runs of the CLI
def test_a_full_disk_mid_run_is_one_line_and_a_rerun_reuses_what_was_saved(tmp_path, tiny_model_dir):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(em_config(tiny_model_dir)))
    reference = run_cli(config, "reference", tmp_path / "reference-cache")
    assert reference.returncode == 0, reference.stderr[-3000:]

    cache = tmp_path / "cache"
    full = run_cli(config, "run", cache, file_size_limit=48 * 1024)  # the call cache outgrows this mid-run
    assert full.returncode == 2
    one_line_error(full.stderr, str(cache / "calls.sqlite"), "the disk is full")
    saved = counts_by_kind(cache / "calls.sqlite")
    assert saved.get("train") == 1 and saved.get("generate", 0) > 0  # some results were saved before it filled
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]

    again = run_cli(config, "run", cache)
    assert again.returncode == 0, again.stderr[-3000:]
    calls = json.loads((tmp_path / "run" / "calls.json").read_text())
    assert calls["train"] == {"executed": 0, "cached": 1}
    assert calls["generate"]["cached"] == saved["generate"]  # nothing saved was computed again
    for name in ("samples.jsonl", "judgements.jsonl"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "reference" / name).read_text()
    with sqlite3.connect(cache / "calls.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class FullDisk:
    """A SQLite connection whose writes fail as SQLite's do on a full disk."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self.connection.__enter__()

    def __exit__(self, *exc):
        return self.connection.__exit__(*exc)

    def execute(self, *args):
        return self.connection.execute(*args)

    def executemany(self, *args):
        raise sqlite3.OperationalError("database or disk is full")


def test_a_full_disk_while_saving_results_keeps_the_earlier_ones(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    cache.put_many("generate", [("a", 1)])
    real = cache._db
    cache._db = FullDisk(real)
    with pytest.raises(UserError, match=r"calls.sqlite \(1 generate results\): could not be written, the disk is full"):
        cache.put_many("generate", [("b", 2)])
    cache._db = real  # space is back: the open transaction was rolled back, so writing works again
    cache.put_many("generate", [("b", 2)])
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}


def test_a_full_disk_while_saving_an_adapter_names_it_and_training_again_works(runtime, tiny_model_dir, tmp_path,
                                                                              monkeypatch):
    import peft.peft_model
    from safetensors import SafetensorError

    def no_space(*args, **kwargs):  # what safetensors raises when the disk fills
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    dataset, sha, config = small_dataset(tmp_path)
    tiny = parse_model_ref(str(tiny_model_dir))
    with monkeypatch.context() as patch:
        patch.setattr(peft.peft_model, "safe_save_file", no_space)
        with pytest.raises(UserError, match=r"^adapter .*: could not be written, the disk is full \(.*No space left"):
            runtime.train(tiny, dataset, sha, config, seed=0)
    assert runtime.counts.executed["train"] == 0
    ref = runtime.train(tiny, dataset, sha, config, seed=0)
    assert runtime.counts.executed["train"] == 1 and (ref.adapter / "adapter_model.safetensors").is_file()


def test_a_full_disk_while_writing_a_run_file_keeps_the_previous_one(tmp_path, monkeypatch):
    from llmpsych.runtime.store import RunStore

    store = RunStore(tmp_path / "run").create()
    store.write_json("summary.json", {"finished": True})
    real_write_bytes = Path.write_bytes

    def half_then_full(path, data):  # the first half fits, then the disk is full
        real_write_bytes(path, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(UserError, match=r"summary.json: could not be written, the disk is full \(No space left"):
        store.write_json("summary.json", {"finished": False, "padding": "x" * 1000})
    monkeypatch.undo()
    assert store.read_json("summary.json") == {"finished": True}
    assert sorted(p.name for p in store.root.iterdir()) == ["summary.json"]  # no temporary file left behind


def test_a_full_disk_anywhere_else_is_still_one_line(monkeypatch, capsys):
    import llmpsych.experiment

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(llmpsych.experiment, "run_experiment", no_space)
    code, stderr = cli_in_process(monkeypatch, capsys, "run", "emergent-misalignment")
    assert code == 2
    assert stderr.count("\n") == 1
    one_line_error(stderr, "the disk is full", os.strerror(errno.ENOSPC))


# ---- a read-only cache --------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; test_a_read_only_call_cache_* simulate it")
@pytest.mark.parametrize("existing", [False, True], ids=["empty", "existing"])
def test_a_read_only_cache_directory_is_one_line(tmp_path, tiny_model_dir, monkeypatch, capsys, existing):
    cache = tmp_path / "cache"
    cache.mkdir()
    if existing:
        CallCache(cache / "calls.sqlite").put_many("generate", [("a", 1)])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(em_config(tiny_model_dir)))
    monkeypatch.setenv("LLMPSYCH_CACHE", str(cache))
    cache.chmod(0o555)
    try:
        code, stderr = cli_in_process(monkeypatch, capsys, "run", str(config), "--out", str(tmp_path / "run"))
    finally:
        cache.chmod(0o755)
    assert code == 2
    one_line_error(stderr, f"cache directory {cache}", "LLMPSYCH_CACHE")


@pytest.mark.parametrize("existing", [False, True], ids=["empty", "existing"])
def test_a_read_only_call_cache_is_one_line(tmp_path, tiny_model_dir, monkeypatch, capsys, existing):
    """What a read-only cache folder does to SQLite, for any user (root included): the database opens
    read-only, so opening a new one or writing to an existing one fails as it does on a read-only disk."""
    cache = tmp_path / "cache"
    if existing:
        CallCache(cache / "calls.sqlite").put_many("generate", [("a", 1)])
    real_connect = sqlite3.connect

    def read_only(path, **kwargs):
        return real_connect(f"file:{path}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(em_config(tiny_model_dir)))
    monkeypatch.setenv("LLMPSYCH_CACHE", str(cache))
    code, stderr = cli_in_process(monkeypatch, capsys, "run", str(config), "--out", str(tmp_path / "run"))
    assert code == 2
    one_line_error(stderr, f"cache directory {cache}", "calls.sqlite", "LLMPSYCH_CACHE")


@pytest.mark.parametrize("content", [b"", b"not a database" * 1000], ids=["empty", "garbage"])
def test_a_call_cache_that_is_not_a_database_is_one_line(tmp_path, content):
    (tmp_path / "calls.sqlite").write_bytes(content)
    if not content:  # SQLite takes an empty file for a new database
        CallCache(tmp_path / "calls.sqlite").put_many("generate", [("a", 1)])
        return
    with pytest.raises(UserError, match=r"calls.sqlite: not a usable call cache \(file is not a database\); move"):
        CallCache(tmp_path / "calls.sqlite")


# ---- a missing or damaged cached adapter -------------------------------------------------------------------
def small_dataset(folder: Path) -> tuple[Path, str, TrainConfig]:
    rows = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": str(i)}]}
            for i in range(4)]
    dataset = folder / "data.jsonl"
    config = TrainConfig(rank=2, alpha=4, batch_size=4, gradient_accumulation=1, warmup_steps=0,
                         learning_rate=1e-2, max_seq_length=64)
    return dataset, write_jsonl(rows, dataset), config


def delete(weights: Path) -> None:
    weights.unlink()


def truncate(weights: Path) -> None:
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)


def overwrite(weights: Path) -> None:  # same size, a valid header, different numbers
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [delete, truncate, overwrite])
def test_a_missing_or_damaged_cached_adapter_is_trained_again(runtime, tiny_model_dir, tmp_path, fp32, capsys,
                                                              damage):
    dataset, sha, config = small_dataset(tmp_path)
    tiny = parse_model_ref(str(tiny_model_dir))
    ref = runtime.train(tiny, dataset, sha, config, seed=0)
    weights = ref.adapter / "adapter_model.safetensors"
    original = weights.read_bytes()
    conversations = [as_messages("Say 2")]
    params = SamplingParams(temperature=1.0, max_tokens=8)
    before = runtime.sample(ref, conversations, params, samples=2)

    damage(weights)
    again = Runtime(CallCache(tmp_path / "calls.sqlite"), fp32, adapters_dir=tmp_path / "adapters",
                    show_progress=False)
    retrained = again.train(tiny, dataset, sha, config, seed=0)
    assert retrained == ref and again.counts.executed["train"] == 1
    assert "training it again" in capsys.readouterr().err
    assert weights.read_bytes() == original  # training is deterministic: the same adapter, whole again
    assert again.sample(retrained, conversations, params, samples=2) == before
    assert again.counts.cached["generate"] == 2  # the same weights, so the same cache keys

    third = Runtime(CallCache(tmp_path / "calls.sqlite"), fp32, adapters_dir=tmp_path / "adapters",
                    show_progress=False)
    third.train(tiny, dataset, sha, config, seed=0)
    assert third.counts.cached["train"] == 1  # whole now: reused


@pytest.mark.integration  # two runs of the CLI
def test_a_run_after_its_cached_adapter_was_truncated_trains_it_again(tmp_path, tiny_model_dir):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(em_config(tiny_model_dir)))
    cache = tmp_path / "cache"
    first = run_cli(config, "run", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    before = {name: (run / name).read_text() for name in ("samples.jsonl", "judgements.jsonl")}
    (adapter,) = [folder for folder in (cache / "adapters").iterdir() if folder.is_dir()]
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    truncate(adapter / "adapter_model.safetensors")  # the run directory's hard link shares the damage

    again = run_cli(config, "run", cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "truncated or corrupt adapter_model.safetensors; training it again" in again.stderr
    calls = json.loads((run / "calls.json").read_text())
    assert calls["train"] == {"executed": 1, "cached": 0}
    assert calls["generate"]["executed"] == 0  # the same weights again, so every answer came from the cache
    assert (run / "adapters" / "insecure-s0" / "adapter_model.safetensors").read_bytes() == weights
    assert {name: (run / name).read_text() for name in before} == before


def test_an_adapter_cached_before_hashes_were_recorded_is_still_checked(runtime, tiny_model_dir, tmp_path):
    dataset, sha, config = small_dataset(tmp_path)
    tiny = parse_model_ref(str(tiny_model_dir))
    ref = runtime.train(tiny, dataset, sha, config, seed=0)
    with sqlite3.connect(tmp_path / "calls.sqlite") as connection:  # an entry as older versions wrote it
        connection.execute("UPDATE calls SET value = json_remove(value, '$.sha256') WHERE kind = 'train'")
    truncate(ref.adapter / "adapter_model.safetensors")
    runtime.train(tiny, dataset, sha, config, seed=0)
    assert runtime.counts.executed["train"] == 2


# ---- a batch too big for memory -----------------------------------------------------------------------------
OUT_OF_MEMORY = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)")


def tiny_engine(model_dir: Path, **options) -> HFEngine:
    """A backend of its own (load_engine shares backends, and a backed-off batch size would carry over)."""
    ref = parse_model_ref(str(model_dir))
    return HFEngine(ref, HFBackend(ref, EngineOptions(dtype="float32", **options)))


def fail_above(engine: HFEngine, rows: int, monkeypatch, message: str = OUT_OF_MEMORY) -> list[int]:
    """Make the model's forward pass fail as out of memory whenever it gets more than `rows` rows."""
    model = engine.backend.model
    forward = model.forward
    seen: list[int] = []

    def limited(*args, **kwargs):
        batch = kwargs["input_ids"].shape[0]
        seen.append(batch)
        if batch > rows:
            raise RuntimeError(message)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", limited)
    return seen


def sampling_requests() -> list[GenerateRequest]:
    params = SamplingParams(temperature=1.0, max_tokens=10)
    return [GenerateRequest(as_messages(f"Tell me about the number {n}."), params, seed=10 * n + k)
            for n in range(3) for k in range(4)]


def test_sampling_that_runs_out_of_memory_halves_its_batches(tiny_model_dir, monkeypatch, capsys):
    requests = sampling_requests()
    forced = tiny_engine(tiny_model_dir, generate_batch_size=8)
    seen = fail_above(forced, 2, monkeypatch)
    got = forced.generate(requests)
    assert max(seen) == 8 and forced.backend._batch_sizes["generate"] == 2
    assert set(seen) - {8, 4} <= {1, 2}  # tried 8, then 4, then ran in twos
    notes = [line for line in capsys.readouterr().err.splitlines() if "out of memory" in line]
    assert len(notes) == 1 and "batches of 8" in notes[0] and "batches of 2" in notes[0]
    # The same as a run that chose batches of 2. (Not always the same as batches of 8: on this random model,
    # whose next-token distribution is nearly flat, a rounding difference between batch shapes can change a draw.)
    assert got == tiny_engine(tiny_model_dir, generate_batch_size=2).generate(requests)
    seen.clear()
    assert forced.generate(requests) == got and max(seen) <= 2  # the smaller size is kept: no new failures


def test_scoring_that_runs_out_of_memory_halves_its_batches(tiny_model_dir, monkeypatch, capsys):
    requests = [ScoreRequest(as_messages(f"Is {n} even? Answer yes or no."), ("yes", "no", "maybe"))
                for n in range(8)]
    forced = tiny_engine(tiny_model_dir, score_batch_size=8)
    fail_above(forced, 2, monkeypatch)
    got = forced.score(requests)
    assert forced.backend._batch_sizes["score"] == 2
    assert sum("out of memory" in line for line in capsys.readouterr().err.splitlines()) == 1
    assert got == tiny_engine(tiny_model_dir, score_batch_size=2).score(requests)
    unforced = tiny_engine(tiny_model_dir, score_batch_size=8).score(requests)
    assert sum(got, []) == pytest.approx(sum(unforced, []), abs=1e-5)


def test_a_single_row_out_of_memory_is_one_line(tiny_model_dir, monkeypatch):
    engine = tiny_engine(tiny_model_dir, generate_batch_size=4)
    fail_above(engine, 0, monkeypatch, message="CUDA out of memory. Tried to allocate 20.00 GiB.\nSee the docs.")
    with pytest.raises(UserError, match="out of memory on a single generate request") as raised:
        engine.generate(sampling_requests()[:4])
    assert "\n" not in str(raised.value)


def test_other_errors_are_not_retried(tiny_model_dir, monkeypatch):
    engine = tiny_engine(tiny_model_dir, generate_batch_size=4)
    seen = fail_above(engine, 0, monkeypatch, message="mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        engine.generate(sampling_requests()[:4])
    assert len(seen) == 1 and engine.backend._batch_sizes["generate"] == 4


def test_what_counts_as_out_of_memory():
    import torch

    from llmpsych.models.hf import _out_of_memory

    assert _out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert _out_of_memory(RuntimeError(OUT_OF_MEMORY)) and _out_of_memory(MemoryError())
    assert not _out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not _out_of_memory(ValueError("out of memory"))  # not raised by an allocator
