"""The performance bench stays runnable: its fast mode on the embedded model gives a table and a JSON of
figures that are plausible (no speed is asserted here; figures live in the bench's output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.integration
def test_fast_bench_measures_the_machine_and_sampling_against_its_baselines(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(BENCH), "--sections", "machine,sampling", "--fast", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["machine"]["float32"]["gflops"] > 0 and results["machine"]["bfloat16"]["gflops"] > 0
    sampling = results["sampling"]
    assert set(sampling) == {"engine", "per_prompt", "batched"}
    for entry in sampling.values():
        assert entry["tokens"] > 8 * 8 and entry["rate"] > 0 and entry["peak_rss_mib"] > 100
    # Same prompts, samples and budget: token counts differ only by where samples stop.
    assert abs(sampling["engine"]["tokens"] - sampling["batched"]["tokens"]) < 0.5 * sampling["batched"]["tokens"]
    assert "engine is" in done.stdout and " limit" in done.stdout


def test_unknown_section_is_a_one_line_usage_error():
    done = subprocess.run([sys.executable, str(BENCH), "--sections", "sampling,speed"], capture_output=True, text=True)
    assert done.returncode == 2 and "--sections: unknown speed" in done.stderr
