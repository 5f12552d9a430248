"""Cross-prediction for any recipe: is a self-report introspection, or inference from the training data?

Looking Inward's control, made general. A recipe fine-tunes model M1 and asks it about itself. Run it
again with a second model M2 trained on exactly the same data and asked the same questions. Where
M2's answers match M1's, the training data alone explain them; where M1 differs from M2, M1 may have
access to something about itself that its data do not carry.

The two runs are ordinary runs (cached, resumable, each with its own report) in `<out>/self` and
`<out>/cross`; `<out>/cross_prediction.json` and `.md` compare every metric the two summaries share.
Same data is checked, not assumed: the runs' dataset hashes must be equal. A recipe whose data depend
on the model (a persona named after it) pins those fields through its `cross_prediction_pins(config)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .analysis.report import format_value
from .errors import UserError
from .experiment import resolve_config, run_experiment
from .runtime.store import RunStore

if TYPE_CHECKING:
    from .runtime.executors import Executor


def run_cross_prediction(target: str, cross_model: str, preset: str | None = None, overrides: dict | None = None,
                         out: str | None = None, executor: Executor | None = None) -> Path:
    """Run `target` on its own model (M1) and on `cross_model` (M2) with the same data; compare."""
    recipe, config = resolve_config(target, preset, overrides)
    if "model" not in type(config).model_fields:
        raise UserError(f"--cross-model: recipe '{recipe.NAME}' compares several models itself "
                        "(give them in its 'models' field instead)")
    root = Path(out or config.out or f"runs/{recipe.NAME}")
    pins = recipe.cross_prediction_pins(config) if hasattr(recipe, "cross_prediction_pins") else {}
    pinned = {**(overrides or {}), **pins}
    print(f"Cross-prediction: M1 = {config.model}, M2 = {cross_model}", file=sys.stderr, flush=True)
    self_dir = run_experiment(target, preset, pinned, str(root / "self"), executor)
    cross_dir = run_experiment(target, preset, {**pinned, "model": cross_model}, str(root / "cross"), executor)
    comparison = compare_runs(self_dir, cross_dir)
    store = RunStore(root)  # written atomically, as every run file is
    store.write_text("cross_prediction.json", json.dumps(comparison, indent=2, default=str) + "\n")
    store.write_text("cross_prediction.md", render_markdown(comparison))
    print(f"Comparison: {root / 'cross_prediction.md'}", flush=True)
    return root


def compare_runs(self_dir: Path, cross_dir: Path) -> dict:
    """Every metric with an estimate in both runs' summaries: M1's value, M2's, and their difference."""
    summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in (self_dir, cross_dir)]
    datasets = [_dataset_hashes(Path(d)) for d in (self_dir, cross_dir)]
    if datasets[0] != datasets[1]:
        differing = sorted(k for k in set(datasets[0]) | set(datasets[1]) if datasets[0].get(k) != datasets[1].get(k))
        raise UserError(f"{cross_dir}: the training data differ from {self_dir} ({', '.join(differing)}); "
                        "the recipe's data depend on the model, so the comparison would not be cross-prediction")
    own, other = (_leaves(s.get("metrics", s)) for s in summaries)
    rows = []
    for name in own:
        if name in other:
            a, b = own[name], other[name]
            rows.append({"metric": name, "self": a.get("estimate"), "self_ci": [a.get("ci_low"), a.get("ci_high")],
                         "cross": b.get("estimate"), "cross_ci": [b.get("ci_low"), b.get("ci_high")],
                         "self_minus_cross": None if a.get("estimate") is None or b.get("estimate") is None
                         else a["estimate"] - b["estimate"],
                         "intervals_overlap": _overlap(a, b)})
    return {"self_model": summaries[0].get("model"), "cross_model": summaries[1].get("model"),
            "recipe": summaries[0].get("recipe"), "datasets": datasets[0], "metrics": rows}


def _dataset_hashes(run_dir: Path) -> dict[str, str]:
    path = run_dir / "datasets.json"
    if not path.is_file():
        return {}
    return {name: info["sha256"] if isinstance(info, dict) else info
            for name, info in json.loads(path.read_text()).items()}


def _leaves(node, prefix: str = "") -> dict[str, dict]:
    """Flatten nested metrics down to the dicts holding an 'estimate'."""
    if isinstance(node, dict) and "estimate" in node:
        return {prefix: node}
    if not isinstance(node, dict):
        return {}
    found: dict[str, dict] = {}
    for key, value in node.items():
        found.update(_leaves(value, f"{prefix}/{key}" if prefix else str(key)))
    return found


def _overlap(a: dict, b: dict) -> bool | None:
    bounds = [a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high")]
    if any(v is None for v in bounds):
        return None
    return not (bounds[1] < bounds[2] or bounds[3] < bounds[0])


def render_markdown(comparison: dict) -> str:
    lines = [f"# Cross-prediction: {comparison['recipe']}", "",
             f"M1 (self): {comparison['self_model']}; M2 (cross, trained on the same data): "
             f"{comparison['cross_model']}. Where the 95% intervals overlap, M2 reports what M1 reports and the "
             "training data suffice to explain M1's answer.", ""]
    frame = pd.DataFrame(comparison["metrics"])
    if frame.empty:
        return "\n".join(lines + ["(no shared metric)", ""])
    lines += ["| metric | self | cross | self - cross | intervals overlap |", "|---|---|---|---|---|"]
    for row in comparison["metrics"]:
        lines.append(f"| {row['metric']} | {format_value(row['self'])} | {format_value(row['cross'])} | "
                     f"{format_value(row['self_minus_cross'])} | {row['intervals_overlap']} |")
    return "\n".join(lines) + "\n"
