"""llmpsych's performance bench: every hot path against its plain baseline and the machine's limit.

    python benchmarks/run.py                      # everything (about 20 minutes on 2 CPU cores)
    python benchmarks/run.py --sections sampling,judging --fast
    python benchmarks/run.py --presets quick      # also peak memory of every recipe's quick preset (long)

Each measurement runs in a process of its own, so its peak RSS is its own and no model or cache leaks
from one into the next; the engine and its baselines get the same inputs in the same run. Figures
that matter are ratios measured side by side. The table goes to stdout and everything to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ("machine", "sampling", "judging", "capture", "training", "cache", "growth")


def measure(name: str, args: dict | None = None) -> dict:
    """Run `module.function(args)` in a fresh process; its result plus that process's peak RSS."""
    print(f"  {name} {json.dumps(args or {})}", file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, str(Path(__file__)), "--measure", name, "--args", json.dumps(args or {})],
                         stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        return {"error": f"exited with {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(name: str, args: dict) -> None:
    import importlib

    from common import peak_rss_mib

    module, function = name.split(".")
    result = getattr(importlib.import_module(module), function)(args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def ratio(a: dict, b: dict) -> float | None:
    return a["rate"] / b["rate"] if "rate" in a and "rate" in b else None


def run_sections(sections: list[str], fast: bool) -> dict:
    results: dict = {}
    scale = 0.25 if fast else 1.0
    if "machine" in sections:
        results["machine"] = measure("machine.measure")
    if "sampling" in sections:
        work = {"prompts": 8, "samples": 8, "max_tokens": 16 if fast else 64}
        results["sampling"] = {v: measure(f"sampling.{v}", work) for v in ("engine", "per_prompt", "batched")}
    if "judging" in sections:
        work = {"judgements": int(32 * scale)}
        results["judging"] = {v: measure(f"judging.{v}", work)
                              for v in ("engine", "one_at_a_time", "from_scratch", "as_text")}
    if "capture" in sections:
        work = {"questions": 8, "answers": 2 if fast else 8}
        results["capture"] = {v: measure(f"capture.{v}", work) for v in ("engine", "scoring", "hidden_states")}
    if "training" in sections:
        work = {"rows": int(64 * scale)}
        results["training"] = {v: measure(f"training.{v}", work) for v in ("engine", "trl_default")}
    if "cache" in sections:
        recipes = ("emergent-misalignment",) if fast else __import__("runs").RECIPES
        results["cache"] = {r: measure("runs.cache_rerun", {"recipe": r}) for r in recipes}
    if "growth" in sections:
        from common import DEFAULT_MODEL, SECOND_MODEL

        tokens = 16 if fast else 64
        results["growth"] = {
            "sampling": {f"x{k}": measure("sampling.engine", {"prompts": 8, "samples": k, "max_tokens": tokens})
                         for k in (1, 4, 16)},
            "judging": {f"x{k}": measure("judging.engine", {"judgements": int(16 * k * scale)}) for k in (1, 4, 16)},
            "model_size": {m: {"sampling": measure("sampling.engine", {"model": m, "samples": 4, "max_tokens": tokens}),
                               "judging": measure("judging.engine", {"model": m, "judgements": int(32 * scale)})}
                           for m in (DEFAULT_MODEL, SECOND_MODEL)},
        }
    return results


def run_presets(preset: str) -> dict:
    from runs import RECIPES

    return {r: measure("runs.preset_memory", {"recipe": r, "preset": preset}) for r in RECIPES}


# ---- the table ---------------------------------------------------------------------------------
def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def table(results: dict) -> list[str]:
    lines: list[str] = []
    limits = results.get("machine", {})
    if limits:
        lines.append(f"machine ({limits.get('threads')} threads): fp32 {_fmt(limits['float32']['gflops'])} GFLOP/s, "
                     f"bf16 {_fmt(limits['bfloat16']['gflops'])} GFLOP/s (best square matmul)")

    def limit_share(entry: dict) -> str:
        dtype = entry.get("dtype")
        peak = limits.get(dtype, {}).get("gflops") if dtype else None
        return f"{100 * entry['flops'] / 1e9 / peak:.0f}% of {dtype} limit" if peak and "flops" in entry else ""

    def block(title: str, rows: dict, unit: str, extra=lambda name, e: "") -> None:
        lines.append(f"\n{title}")
        ours = rows.get("engine", {})
        for name, entry in rows.items():
            if "error" in entry:
                lines.append(f"  {name:<16} {entry['error']}")
                continue
            versus = "" if name == "engine" or ratio(ours, entry) is None else f"engine is {ratio(ours, entry):.2f}x"
            lines.append(f"  {name:<16} {_fmt(entry['rate'], 2):>10} {unit:<13} {versus:<18} "
                         f"RSS {_fmt(entry['peak_rss_mib'], 0)} MiB  {limit_share(entry)} {extra(name, entry)}".rstrip())

    if "sampling" in results:
        block("sampling (8 EM questions x 8 samples, temperature 1)", results["sampling"], "tokens/s")
    if "judging" in results:
        reference = results["judging"].get("from_scratch", {}).get("numeric_mass")

        def agreement(name, entry):
            mass = entry.get("numeric_mass")
            if not mass or not reference or name == "from_scratch":
                return f"{entry['parsed_replies']} of {entry['judgements']} replies parsed" if "parsed_replies" in entry else ""
            diff = max(abs(a - b) for a, b in zip(mass, reference))
            return f"numeric mass within {diff:.4f} of from_scratch"

        block("judging (0-100 alignment rubric, 101 numbers + escape words)", results["judging"], "judgements/s", agreement)
    if "capture" in results:
        block("activation capture (8 EM questions x canned answers, every layer, 3 readouts)", results["capture"],
              "responses/s")
    if "training" in results:
        entries = results["training"]
        block("training (LoRA, cpu-small preset, insecure-code rows)", entries, "tokens/s",
              lambda name, e: f"final loss {e['final_loss']:.4f}" if "final_loss" in e else "")
        if all("final_loss" in e for e in entries.values()):
            a, b = entries["engine"]["final_loss"], entries["trl_default"]["final_loss"]
            lines.append(f"  final losses differ by {100 * abs(a - b) / b:.2f}%")
    if "cache" in results:
        lines.append("\ncache (smoke preset: a fresh run, then the same run again)")
        for recipe, entry in results["cache"].items():
            if "error" in entry:
                lines.append(f"  {recipe:<22} {entry['error']}")
                continue
            lines.append(f"  {recipe:<22} fresh {_fmt(entry['first_seconds'])} s (RSS {_fmt(entry['first_peak_rss_mib'], 0)} "
                         f"MiB), rerun {_fmt(entry['seconds'])} s (RSS {_fmt(entry['peak_rss_mib'], 0)} MiB), "
                         f"same summary: {entry['same_summary']}")
    if "growth" in results:
        growth = results["growth"]
        lines.append("\ngrowth with the number of samples (time exponent: 1 = linear)")
        for kind, unit in (("sampling", "tokens"), ("judging", "judgements")):
            steps = growth[kind]
            if any("error" in e for e in steps.values()):
                lines.append(f"  {kind}: missing")
                continue
            amount = {k: e.get("tokens", e.get("judgements")) for k, e in steps.items()}
            parts = [f"{k}: {amount[k]} {unit} in {_fmt(e['seconds'])} s" for k, e in steps.items()]
            exponent = math.log(steps["x16"]["seconds"] / steps["x1"]["seconds"]) / math.log(
                amount["x16"] / amount["x1"])
            lines.append(f"  {kind}: {'; '.join(parts)}; exponent {exponent:.2f}")
        lines.append("growth with model size")
        for model, entry in growth["model_size"].items():
            sampling, judging = entry["sampling"], entry["judging"]
            lines.append(f"  {model:<24} sampling {_fmt(sampling.get('rate'))} tokens/s ({limit_share(sampling)}), "
                         f"judging {_fmt(judging.get('rate'), 2)} judgements/s, "
                         f"RSS {_fmt(max(sampling.get('peak_rss_mib', 0), judging.get('peak_rss_mib', 0)), 0)} MiB")
    if "presets" in results:
        lines.append("\npresets from a fresh cache (whole run)")
        for recipe, entry in results["presets"].items():
            lines.append(f"  {recipe:<22} {_fmt(entry.get('seconds'))} s, peak RSS "
                         f"{_fmt(entry.get('peak_rss_mib', 0) / 1024, 2)} GiB" if "error" not in entry
                         else f"  {recipe:<22} {entry['error']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from: {', '.join(SECTIONS)}")
    parser.add_argument("--fast", action="store_true", help="smaller workloads (a check that the bench works)")
    parser.add_argument("--presets", default=None, help="also run every recipe's PRESET from a fresh cache")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.measure:
        _child(args.measure, json.loads(args.args))
        return
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)} (expected: {', '.join(SECTIONS)})")
    import torch

    results = {"host": {"machine": platform.machine(), "processor": platform.processor() or None,
                        "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
               **run_sections(sections, args.fast)}
    if args.presets:
        results["presets"] = run_presets(args.presets)
    args.out.write_text(json.dumps(results, indent=2))
    print("\n".join(table(results)))
    print(f"\n(all figures in {args.out})")


if __name__ == "__main__":
    main()
