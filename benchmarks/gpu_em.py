"""Emergent Misalignment on a GPU, in under 8 minutes: the smoke preset and a reduced quick preset on CUDA with
the embedded model (bf16; TRL's fused loss, since the CPU-only plain loss is not used on CUDA; the PEFT adapter
path), their judge-free results against the same runs on the CPU, and throughput against the plain baselines.

    python benchmarks/gpu_em.py --device cpu --out runs/gpu-check/cpu     # here, first: the CPU reference
    python benchmarks/gpu_em.py --device cuda --out $OUT/cuda --reference runs/gpu-check/cpu   # on the GPU

Only probes read off log-probabilities are compared (choice probe, advice cloze, the curves along training):
sampled answers differ between devices by construction (other kernels, other random streams). Tolerance: each
(probe, arm) mean within 0.05 of the CPU's; bf16 against the CPU's numerics moves probabilities by about 1e-2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.05
RUNS = {  # name -> llmpsych run arguments (the quick preset cut to one seed and 200 rows to fit the budget)
    "smoke": ["--preset", "smoke"],
    "quick-reduced": ["--preset", "quick", "--seeds", "1", "--set", "dataset.size=200",
                      "--set", "sampling.samples_per_paraphrase=4"],
}
JUDGE_FREE = ("choice", "in-distribution/", "dynamics/choice", "dynamics/in-distribution/medical")


def run_presets(device: str, out: Path) -> dict[str, float]:
    """Each run on `device` from a fresh cache; seconds per run."""
    env = {**os.environ, "LLMPSYCH_CACHE": str(out / "cache")}
    seconds = {}
    for name, args in RUNS.items():
        started = time.time()
        subprocess.run([sys.executable, "-m", "llmpsych", "run", "emergent-misalignment", *args,
                        "--set", f"engine.device={device}", "--out", str(out / name)], env=env, check=True)
        seconds[name] = round(time.time() - started, 1)
    return seconds


def judge_free_means(run: Path):
    import pandas as pd

    table = pd.read_parquet(run / "results.parquet")
    table = table[table["probe"].str.startswith(JUDGE_FREE) & ~table["probe"].eq("in-distribution/code")]
    return table.groupby(["probe", "arm"])["value"].mean()


def compare(run: Path, reference: Path) -> list[dict]:
    ours, theirs = judge_free_means(run), judge_free_means(reference)
    rows = []
    for key in sorted(set(ours.index) | set(theirs.index)):
        a, b = ours.get(key), theirs.get(key)
        delta = None if a is None or b is None else abs(a - b)
        rows.append({"probe": key[0], "arm": key[1], "gpu": a, "cpu": b, "delta": delta,
                     "within": delta is not None and delta <= TOLERANCE})
    return rows


def throughput() -> dict:
    """Sampling and training rates of llmpsych against plain `generate` and TRL's defaults (benchmarks/run.py)."""
    sys.path.insert(0, str(HERE))
    from run import measure, ratio

    work = {"prompts": 16, "samples": 8, "max_tokens": 64}
    sampling = {v: measure(f"sampling.{v}", work) for v in ("engine", "batched")}
    training = {v: measure(f"training.{v}", {"rows": 256}) for v in ("engine", "trl_default")}
    return {"sampling": sampling, "training": training,
            "sampling_ratio_vs_generate": ratio(sampling["engine"], sampling["batched"]),
            "training_ratio_vs_trl_defaults": ratio(training["engine"], training["trl_default"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="the CPU runs' folder (from --device cpu)")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": args.device, "seconds": run_presets(args.device, args.out)}
    if args.reference:
        report["comparison"] = {name: compare(args.out / name, args.reference / name) for name in RUNS}
        report["all_within_tolerance"] = all(r["within"] for rows in report["comparison"].values() for r in rows)
    if not args.skip_throughput:
        report["throughput"] = throughput()
    (args.out / "gpu_em.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "comparison"}, indent=2, default=str))
    for name, rows in report.get("comparison", {}).items():
        for row in rows:
            print(f"{name:14} {row['probe']:40} {row['arm']:28} gpu {row['gpu']} cpu {row['cpu']} "
                  f"{'ok' if row['within'] else 'OUT OF TOLERANCE'}")


if __name__ == "__main__":
    main()
