"""Whole runs through the command line: a fresh `smoke` run, then the same run again from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmpsych.recipes import recipe_names

RECIPES = tuple(recipe_names())  # every registered study

# Runs a command and prints its wall time and peak RSS: run from its own process, so that the peak
# (Linux keeps the largest of all waited-for children) belongs to this one command alone.
_TIMED = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
          "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
          "print(json.dumps({'seconds': time.perf_counter() - t, 'code': done.returncode, "
          "'error': done.stderr.strip().splitlines()[-1:] if done.returncode else None, "
          "'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")


def timed(argv: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _TIMED, *argv], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result['code']}: {result['error']}")
    return result


def cache_rerun(args: dict) -> dict:
    """A recipe's preset run twice into the same cache (fresh unless `cache` is given), both timed."""
    recipe, preset = args.get("recipe", "emergent-misalignment"), args.get("preset", "smoke")
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, LLMPSYCH_CACHE=args.get("cache") or str(Path(scratch) / "cache"))
        command = [sys.executable, "-m", "llmpsych", "run", recipe, "--preset", preset]
        first = timed([*command, "--out", str(Path(scratch) / "first")], env)
        started = time.perf_counter()
        again = timed([*command, "--out", str(Path(scratch) / "again")], env)
        summaries = [json.loads((Path(scratch) / d / "summary.json").read_text()) for d in ("first", "again")]
    for summary in summaries:  # results must match; only the time and the cached/executed call counts differ
        summary.pop("created", None)
        summary.pop("calls", None)
    return {"first_seconds": first["seconds"], "first_peak_rss_mib": first["peak_rss_mib"],
            "seconds": again["seconds"], "peak_rss_mib": again["peak_rss_mib"],
            "rerun_wall": time.perf_counter() - started, "same_summary": summaries[0] == summaries[1]}


def preset_memory(args: dict) -> dict:
    """A recipe's preset from a fresh cache: wall time and peak RSS of the whole run."""
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ, LLMPSYCH_CACHE=str(Path(scratch) / "cache"))
        return timed([sys.executable, "-m", "llmpsych", "run", args["recipe"], "--preset", args.get("preset", "quick"),
                      "--out", str(Path(scratch) / "run")], env)
