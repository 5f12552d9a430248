"""The out-of-context reasoning report, rebuilt from a run directory alone (no model calls).

Every value is the probability (multiple choice, training-format replies) or rate (free-form answers
checked by code) of the correct answer about a latent. Estimates are means over seeds (fine-tunes, each
with its own latents) of means over items (latent slot x paraphrase or input), with 95% bootstrap
intervals resampling both. Differences are paired (every arm answers the same seed's questions) and a
claim is distinguishable when the interval of its difference excludes 0.
"""

from __future__ import annotations

import datetime

import pandas as pd
import yaml

from ..runtime.store import RunStore
from . import plots, stats
from .report import Report, nested_metrics, save_report, save_tables

ITEM = ["item"]
PERCENT = ("estimate", "ci_low", "ci_high", "chance", "answer_mass")
# Published GPT-3.5 numbers (Connecting the Dots, Fig. 3 and §3), P(correct), OOCR vs baseline where given.
PUBLISHED = {
    "functions/lambda": "0.43 vs 0.03 baseline", "functions/description": "0.74 vs 0.20 baseline",
    "functions/inversion": "0.60 vs 0.11 baseline", "locations/city": "56% name the city",
    "parity/value": "80% probability on the correct values",
}
# The claims each (task, kind) is tested on: (name, (arm, condition) minus (arm, condition)).
COMPARISONS = (
    ("fine-tuned vs baseline", ("fine-tuned", "target"), ("fine-tuned", "baseline")),
    ("fine-tuned vs untuned", ("fine-tuned", "target"), ("base", "target")),
    ("in-context vs untuned", ("in-context", "target"), ("base", "target")),
    ("fine-tuned vs in-context", ("fine-tuned", "target"), ("in-context", "target")),
)


def write_report(store: RunStore) -> dict:
    """Write tables/, figures/, report.html, report.md and summary.json; return the summary."""
    config = yaml.safe_load(store.path("config.yaml").read_text())
    records = pd.DataFrame(store.read_jsonl("reflection.jsonl"))
    models = store.read_json("models.json")
    datasets = store.read_json("datasets.json") if store.exists("datasets.json") else {}
    calls = store.read_json("calls.json") if store.exists("calls.json") else {}

    tables = {"results": _results(records), "differences": _differences(records)}
    save_tables(store, tables)
    verdicts = _verdicts(tables["differences"])
    summary = {
        "recipe": config.get("recipe"), "preset": config.get("preset"), "model": config.get("model"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": {
            "results": nested_metrics(tables["results"].assign(measure=_measure, arm_condition=_arm_condition)
                                      if not tables["results"].empty else tables["results"],
                                      ["measure", "arm_condition"]),
            "differences": nested_metrics(tables["differences"].assign(measure=_measure)
                                          if not tables["differences"].empty else tables["differences"],
                                          ["measure", "comparison"]),
        },
        "verdicts": verdicts,
        "published": PUBLISHED,
        "latents": {name: entry.get("latents") for name, entry in datasets.items()},
        "calls": calls,
        "datasets": {name: entry.get("sha256") for name, entry in datasets.items()},
        "models": [{k: m.get(k) for k in ("label", "condition", "seed", "ref", "fingerprint")} for m in models],
    }
    store.write_json("summary.json", summary)
    save_report(store, _build(config, tables, verdicts, records, models, calls, store))
    return summary


def _measure(frame: pd.DataFrame) -> pd.Series:
    return frame["task"] + "/" + frame["kind"]


def _arm_condition(frame: pd.DataFrame) -> pd.Series:
    return frame["arm"] + "/" + frame["condition"]


def _results(records: pd.DataFrame) -> pd.DataFrame:
    """P(correct) per task, question kind, arm and condition, with chance and the mass on the offered answers."""
    if records.empty:
        return pd.DataFrame()
    by = ["task", "kind", "arm", "condition"]
    table = stats.summarise(records, by, "value", ITEM)
    extra = records.groupby(by, sort=False).agg(chance=("chance", "mean"), answer_mass=("mass", "mean")).reset_index()
    return table.merge(extra, on=by, how="left")


def _differences(records: pd.DataFrame) -> pd.DataFrame:
    """Every claim of COMPARISONS for every (task, kind) that has both sides."""
    if records.empty:
        return pd.DataFrame()
    rows = []
    for (task, kind), part in records.groupby(["task", "kind"], sort=False):
        for name, (arm_a, condition_a), (arm_b, condition_b) in COMPARISONS:
            a = part[(part["arm"] == arm_a) & (part["condition"] == condition_a)]
            b = part[(part["arm"] == arm_b) & (part["condition"] == condition_b)]
            if a.empty or b.empty:
                continue
            # Every arm answers the same seed's questions, item for item: the comparison is paired.
            rows.append({"task": task, "kind": kind, "comparison": name,
                         **stats.paired_difference(a, b, "value", ITEM, unit="seed")})
    return pd.DataFrame(rows)


def _verdicts(differences: pd.DataFrame) -> dict:
    """One line per claim: the difference in points, its interval, and whether it excludes zero."""
    verdicts = {}
    for row in differences.to_dict(orient="records") if not differences.empty else []:
        key = f"{row['task']}/{row['kind']}: {row['comparison']}"
        if row.get("distinguishable") is None:
            verdicts[key] = "missing"
            continue
        verdicts[key] = (f"{100 * row['estimate']:+.1f} points [{100 * row['ci_low']:+.1f}, "
                         f"{100 * row['ci_high']:+.1f}]: "
                         + ("distinguishable" if row["distinguishable"] else "not distinguishable"))
    return verdicts


def _build(config: dict, tables: dict[str, pd.DataFrame], verdicts: dict, records: pd.DataFrame, models: list[dict],
           calls: dict, store: RunStore) -> Report:
    report = Report("Out-of-context reasoning: " + str(config.get("model")))
    report.paragraph(
        f"Preset {config.get('preset')}; tasks {', '.join(config.get('tasks') or [])}; {config.get('seeds')} "
        "fine-tunes, each with its own hidden values and names. Values are P(correct) for multiple choice and "
        "training-format replies, and the rate of correct greedy answers for free-form questions. The baseline "
        "asks about a name never seen in training, scored against the trained latent's answer. 95% bootstrap "
        "intervals over seeds and items.")
    report.heading("Verdicts")
    for key, text in verdicts.items():
        report.paragraph(f"{key}: {text}")
    results = tables["results"]
    if not results.empty:
        report.heading("Results")
        report.paragraph("in-distribution: the training format itself (did the fine-tune learn the data?). "
                         "Published GPT-3.5 numbers for comparison: "
                         + "; ".join(f"{k}: {v}" for k, v in PUBLISHED.items()) + ".", "note")
        report.table(results, PERCENT)
        frame = results.assign(measure=_measure, series=_arm_condition)
        report.figure(plots.grouped_bars(frame, "measure", "series", "estimate", "P(correct) by question and arm",
                                         "P(correct) (%)"), "Reflection results", "figures/results.png")
        report.heading("Differences", 3)
        report.table(tables["differences"], PERCENT)
    if not records.empty:
        free = records[(records["mode"] == "free") & (records["condition"] == "target")]
        examples = free.groupby(["task", "kind", "arm"], sort=False).head(2)
        report.preformatted("\n".join(f"[{r.arm} s{r.seed}] {r.task}/{r.kind} ({r.latent}): {r.reply!r} -> "
                                      f"{'correct' if r.value else 'wrong'}" for r in examples.itertuples()),
                            "Example free-form answers")
    logs = plots.training_logs(models, store)
    if logs:
        report.figure(plots.loss_curves(logs), "Training loss", "figures/loss.png")
    report.paragraph(f"Model calls: {calls}", "note")
    return report
