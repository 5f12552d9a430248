"""Cross-prediction for any recipe: is a self-report introspection, or inference from the training data?

Looking Inward's control, made general. A recipe fine-tunes model M1 and asks it about itself. Run it
again with a second model M2 trained on exactly the same data and asked the same questions. Where
M2's answers match M1's, the training data alone could explain them; where M1 differs from M2, M1 may
have access to something about itself that its data do not carry.

The two runs are ordinary runs (cached, resumable, each with its own report) in `<out>/self` and
`<out>/cross`; `<out>/cross_prediction.json` and `.md` compare them. Same data is checked, not assumed:
the runs' dataset hashes must be equal. A recipe whose data depend on the model (a persona named after
it) pins those fields through `@recipe(..., cross_prediction_pins=...)`.

Overlapping intervals are not evidence that two models agree. For every probe, arm and variant of the
two result tables, the comparison reports M1 - M2 with a bootstrap interval (the questions drawn once for
both, the fine-tunes of each run on their own), a test of difference and an equivalence test against a
stated margin (two one-sided tests; both Holm-corrected across the comparisons), and says which holds:
"different", "equivalent within the margin" or "inconclusive".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .analysis.report import format_value
from .analysis.stats import equivalence, holm, point_estimate
from .errors import UserError
from .experiment import resolve_config, run_experiment
from .runtime.results import read_results
from .runtime.store import RunStore

if TYPE_CHECKING:
    from .runtime.executors import Executor

MARGIN = 0.05  # five points on a probability or a 0-100 scale read as a share: what counts as the same
ALPHA = 0.05


def run_cross_prediction(target: str, cross_model: str, preset: str | None = None, overrides: dict | None = None,
                         out: str | None = None, executor: Executor | None = None, margin: float = MARGIN) -> Path:
    """Run `target` on its own model (M1) and on `cross_model` (M2) with the same data; compare."""
    recipe, config = resolve_config(target, preset, overrides)
    if "model" not in type(config).model_fields:
        raise UserError(f"--cross-model: recipe '{recipe.NAME}' compares several models itself "
                        "(give them in its 'models' field instead)")
    if not 0 < margin < 1:
        raise UserError(f"--equivalence-margin: expected a number between 0 and 1 (a difference in points / 100), "
                        f"got {margin}")
    root = Path(out or config.out or f"runs/{recipe.NAME}")
    pins = recipe.cross_prediction_pins(config)
    pinned = {**(overrides or {}), **pins}
    print(f"Cross-prediction: M1 = {config.model}, M2 = {cross_model}", file=sys.stderr, flush=True)
    self_dir = run_experiment(target, preset, pinned, str(root / "self"), executor)
    cross_dir = run_experiment(target, preset, {**pinned, "model": cross_model}, str(root / "cross"), executor)
    comparison = compare_runs(self_dir, cross_dir, margin)
    store = RunStore(root)  # written atomically, as every run file is
    store.write_text("cross_prediction.json", json.dumps(comparison, indent=2, default=str) + "\n")
    store.write_text("cross_prediction.md", render_markdown(comparison))
    print(f"Comparison: {root / 'cross_prediction.md'}", flush=True)
    return root


def compare_runs(self_dir: Path, cross_dir: Path, margin: float = MARGIN) -> dict:
    """M1's and M2's estimate of every probe, arm and variant both result tables hold, their difference with
    a 95% interval, and the verdict of a difference test and an equivalence test at `margin`."""
    summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in (self_dir, cross_dir)]
    datasets = [_dataset_hashes(Path(d)) for d in (self_dir, cross_dir)]
    if datasets[0] != datasets[1]:
        differing = sorted(k for k in set(datasets[0]) | set(datasets[1]) if datasets[0].get(k) != datasets[1].get(k))
        raise UserError(f"{cross_dir}: the training data differ from {self_dir} ({', '.join(differing)}); "
                        "the recipe's data depend on the model, so the comparison would not be cross-prediction")
    own, other = (read_results(RunStore(Path(d))) for d in (self_dir, cross_dir))
    keys = ["probe", "arm", "variant"]
    rows = []
    for key, mine in own.groupby(keys, sort=False):
        theirs = other
        for name, value in zip(keys, key):
            theirs = theirs[theirs[name] == value]
        result, p_equivalent = equivalence(mine, theirs, margin)
        if result.estimate is None:
            continue
        rows.append({"probe": key[0], "arm": key[1], "variant": key[2],
                     "self": point_estimate(mine), "cross": point_estimate(theirs),
                     "self_minus_cross": result.estimate, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "p_difference": result.p, "p_equivalence": p_equivalent, "caveat": result.caveat})
    for name in ("p_difference", "p_equivalence"):
        for row, adjusted in zip(rows, holm([row[name] for row in rows])):
            row[f"{name}_adjusted"] = adjusted
    for row in rows:
        row["verdict"] = _verdict(row)
    return {"self_model": summaries[0].get("model"), "cross_model": summaries[1].get("model"),
            "recipe": summaries[0].get("recipe"), "equivalence_margin": margin, "datasets": datasets[0],
            "comparisons": rows}


def _verdict(row: dict) -> str:
    """different, equivalent within the margin, or inconclusive (Holm-corrected at 5%)."""
    if row["p_equivalence_adjusted"] is not None and row["p_equivalence_adjusted"] < ALPHA:
        return "equivalent within the margin"
    if row["p_difference_adjusted"] is not None and row["p_difference_adjusted"] < ALPHA:
        return "different"
    return "inconclusive"


def _dataset_hashes(run_dir: Path) -> dict[str, str]:
    path = run_dir / "datasets.json"
    if not path.is_file():
        return {}
    return {name: info["sha256"] if isinstance(info, dict) else info
            for name, info in json.loads(path.read_text()).items()}


def render_markdown(comparison: dict) -> str:
    margin = comparison["equivalence_margin"]
    lines = [f"# Cross-prediction: {comparison['recipe']}", "",
             f"M1 (self): {comparison['self_model']}; M2 (cross, trained on the same data): "
             f"{comparison['cross_model']}. self - cross with a 95% bootstrap interval (the questions drawn once "
             f"for both runs). Verdicts, Holm-corrected across the rows at 5%: 'different' (the difference is not "
             f"zero), 'equivalent within the margin' (two one-sided tests: the difference lies within "
             f"+-{100 * margin:g} points, i.e. its 90% interval falls inside the margin; then M2's answers, and so "
             "the training data, account for M1's), or "
             "'inconclusive'. Overlapping intervals alone would prove neither.", ""]
    if not comparison["comparisons"]:
        return "\n".join(lines + ["(no shared probe)", ""])
    frame = pd.DataFrame(comparison["comparisons"])
    lines += ["| probe | arm | variant | self | cross | self - cross [95% CI] | verdict |", "|---|---|---|---|---|---|---|"]
    for row in frame.to_dict(orient="records"):
        interval = f"{format_value(row['self_minus_cross'])} [{format_value(row['ci_low'])}, {format_value(row['ci_high'])}]"
        lines.append(f"| {row['probe']} | {row['arm']} | {row['variant']} | {format_value(row['self'])} | "
                     f"{format_value(row['cross'])} | {interval} | {row['verdict']} |")
    return "\n".join(lines) + "\n"
