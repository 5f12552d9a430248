"""The introspection (self-prediction) report, rebuilt from a run directory alone (no model calls)."""

from __future__ import annotations

import datetime
import json

import pandas as pd
import yaml

from ..runtime.store import RunStore
from . import introspection as intro
from . import plots
from .report import Report, json_value, save_report, save_tables

PERCENT = ("estimate", "ci_low", "ci_high", "compliance", "mode_baseline", "self", "self_ci_low", "self_ci_high",
           "cross", "cross_ci_low", "cross_ci_high", "advantage", "advantage_ci_low", "advantage_ci_high",
           "untrained", "untrained_ci_low", "untrained_ci_high", "predicts_new", "new_ci_low", "new_ci_high",
           "predicts_old", "old_ci_low", "old_ci_high", "changed_share", "p_hypothetical", "p_object")
SIGNIFICANCE = 0.05


def write_report(store: RunStore) -> dict:
    """Write tables/, figures/, report.html, report.md and summary.json; return the summary."""
    config = yaml.safe_load(store.path("config.yaml").read_text())
    models = store.read_json("models.json")
    objects = {path.stem: [json.loads(line) for line in path.read_text().splitlines() if line]
               for path in sorted(store.path("object_level").glob("*.jsonl"))}
    hypotheticals = store.read_jsonl("hypotheticals.jsonl")
    calibration = store.read_jsonl("calibration.jsonl")
    calls = store.read_json("calls.json") if store.exists("calls.json") else {}

    truths = intro.truth_table(objects)
    items = intro.scored_items(hypotheticals, truths)
    training_rows = {m["label"]: (m.get("training") or {}).get("rows") for m in models}
    pairs_pooled = intro.self_vs_cross(items)
    calibration_pairs = intro.calibration_pairs(calibration)
    tables = {
        "self_vs_cross": pairs_pooled,
        "self_vs_cross_by_task": intro.self_vs_cross(items, ("task",)),
        "self_vs_cross_by_property": intro.self_vs_cross(items, ("property",)),
        "accuracy": intro.summarise(items, ["role", "predictor", "target"]),
        "accuracy_by_task_property": intro.summarise(items, ["role", "predictor", "task", "property"]),
        "object_compliance": _object_compliance(objects),
        "scaling": intro.scaling_curve(items, training_rows),
        "calibration_mad": intro.calibration_mad(calibration_pairs),
        "calibration_curve": intro.calibration_curve(calibration_pairs),
        "behaviour_change": intro.behaviour_change(hypotheticals, truths),
        "self_training_drift": intro.behaviour_drift(truths, [m["label"] for m in models if m.get("condition") == "base"]),
    }
    save_tables(store, tables)

    verdicts = _verdicts(pairs_pooled)
    summary = {
        "recipe": config.get("recipe"), "preset": config.get("preset"), "models": config.get("models"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pairs": [{key: json_value(row[key]) for key in row} for row in pairs_pooled.to_dict(orient="records")],
        "accuracy": [{key: json_value(row[key]) for key in ("role", "predictor", "target", "estimate", "ci_low", "ci_high",
                                                         "n", "compliance", "mode_baseline")}
                     for row in tables["accuracy"].to_dict(orient="records")],
        "calibration_mad": [{k: json_value(v) for k, v in row.items()}
                            for row in tables["calibration_mad"].to_dict(orient="records")],
        "behaviour_change": [{k: json_value(v) for k, v in row.items()}
                             for row in tables["behaviour_change"].to_dict(orient="records")],
        "scaling": [{k: json_value(v) for k, v in row.items()} for row in tables["scaling"].to_dict(orient="records")],
        "self_training_drift": [{k: json_value(v) for k, v in row.items()}
                                for row in tables["self_training_drift"].to_dict(orient="records")],
        "verdicts": verdicts,
        "calls": calls,
        "models_detail": [{k: m.get(k) for k in ("label", "condition", "ref", "fingerprint", "plain_template")}
                          for m in models],
    }
    store.write_json("summary.json", summary)

    report = _build(config, tables, verdicts, models, calls, items, store)
    save_report(store, report)
    return summary


def _object_compliance(objects: dict[str, list[dict]]) -> pd.DataFrame:
    """Share of object-level answers with a value, per model, split and property (dropped otherwise)."""
    rows = [{"model": label, "split": row["split"], "task": row["task"], "property": prop, "compliant": value is not None}
            for label, entries in objects.items() for row in entries for prop, value in row["values"].items()]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    return frame.groupby(["model", "split"], sort=False).agg(compliance=("compliant", "mean"),
                                                              pairs=("compliant", "size")).reset_index()


def _verdicts(pairs: pd.DataFrame) -> dict:
    """Per ordered pair, in words: does self-prediction beat cross-prediction, and the mode baseline?"""
    verdicts = {}
    for row in pairs.to_dict(orient="records") if not pairs.empty else []:
        key = f"{row['m1']} predicted by itself vs by {row['m2']}"
        if row["self"] is None or row["cross"] is None:
            verdicts[key] = "missing: no item could be scored"
            continue
        beats_cross = row["advantage"] > 0 and row["p_value"] is not None and row["p_value"] < SIGNIFICANCE
        beats_mode = row["self_ci_low"] is not None and row["self_ci_low"] > row["mode_baseline"]
        verdicts[key] = (
            f"self-prediction {'beats' if beats_cross else 'does not beat'} cross-prediction "
            f"({100 * row['self']:.1f}% vs {100 * row['cross']:.1f}%, advantage {100 * row['advantage']:+.1f} points, "
            f"p = {row['p_value']:.3g}) and {'beats' if beats_mode else 'does not beat'} the mode baseline "
            f"({100 * row['mode_baseline']:.1f}%)")
    return verdicts


def _build(config: dict, tables: dict[str, pd.DataFrame], verdicts: dict, models: list[dict], calls: dict,
           items: pd.DataFrame, store: RunStore) -> Report:
    report = Report("Introspection by self-prediction: " + ", ".join(config.get("models") or []))
    tasks = config.get("tasks") or {}
    report.paragraph(
        f"Preset {config.get('preset')}; models {', '.join(config.get('models') or [])}. Training families: "
        f"{', '.join(tasks.get('train') or [])}. Held-out families: {', '.join(tasks.get('held_out') or [])}. "
        f"Ground truth from each model's own object-level answers (temperature "
        f"{(config.get('sampling') or {}).get('temperature')}). Accuracies pool held-out (prompt, property) items; "
        "95% bootstrap intervals over items; p-values from a paired sign-flip permutation test.")
    plain = [m["label"] for m in models if m.get("plain_template") and m.get("condition") == "base"]
    if plain:
        report.paragraph(f"{', '.join(plain)} has no chat template: it is prompted with the plain User/Assistant "
                         f"template and this preamble: \"{config.get('base_model_preamble')}\"", "note")

    report.heading("Self-prediction against cross-prediction")
    for key, text in verdicts.items():
        report.paragraph(f"{key}: {text}.")
    report.paragraph("For comparison, the paper (held-out tasks, models of 70B+ parameters): Llama-3-70B predicting "
                     "itself 48.5% against GPT-4o predicting Llama 31.8%; GPT-4o predicting itself 49.4% against "
                     "Llama predicting GPT-4o 36.6%; self-training raised GPT-4o from 32.6% to 49.4%.", "note")
    if tables["self_vs_cross"].empty:
        report.paragraph("No ordered pair: give two or more models to compare self- and cross-prediction.", "warning")
    report.table(tables["self_vs_cross"], PERCENT)
    pooled = tables["self_vs_cross"]
    if not pooled.empty:
        bars = []
        for row in pooled.to_dict(orient="records"):
            pair = f"{row['m1']} / {row['m2']}"
            bars += [{"pair": pair, "series": name, "estimate": row[key], "ci_low": row[f"{key}_ci_low"],
                      "ci_high": row[f"{key}_ci_high"]}
                     for name, key in (("untrained M1", "untrained"), ("self-trained M1", "self"),
                                       ("cross-trained M2", "cross"))]
            bars.append({"pair": pair, "series": "mode baseline", "estimate": row["mode_baseline"],
                         "ci_low": None, "ci_high": None})
        report.figure(plots.grouped_bars(pd.DataFrame(bars), "pair", "series", "estimate",
                                         "Held-out accuracy predicting M1 (pair: M1 / M2)", "accuracy (%)"),
                      "Held-out self-prediction accuracy", "figures/self_vs_cross.png")
    report.paragraph("Self-training can change a model's own answers. The self-trained M1 learned its behaviour "
                     "before training and is judged on its behaviour after it, while M2 learned the after-training "
                     "behaviour directly; the share of held-out items whose value changed is below. A large share "
                     "handicaps self-prediction; `cross.learns: untrained` gives M2 the very rows M1 was trained "
                     f"on instead (this run: {(config.get('cross') or {}).get('learns')}).", "note")
    report.table(tables["self_training_drift"], ("changed",))
    report.heading("By task family", 3)
    report.table(tables["self_vs_cross_by_task"], PERCENT)
    report.heading("By property", 3)
    report.table(tables["self_vs_cross_by_property"], PERCENT)

    report.heading("Every predictor")
    report.paragraph("Untrained models predict their own untrained behaviour; self-trained models their own "
                     "behaviour after training; cross-trained models the self-trained M1. Compliance: share of "
                     "hypothetical answers that gave a value at all.", "note")
    report.table(tables["accuracy"], PERCENT)
    report.table(tables["object_compliance"], ("compliance",))

    if not tables["scaling"].empty:
        report.heading("Cross-prediction data scaling")
        report.table(tables["scaling"], PERCENT)
        series, reference = {}, {}
        for (m1, m2), part in tables["scaling"].groupby(["m1", "m2"], sort=False):
            series[f"{m2} predicting {m1}"] = (list(part["training_rows"]), [100 * v for v in part["estimate"]])
            own = pooled[(pooled["m1"] == m1) & (pooled["m2"] == m2)]
            if len(own):
                reference[f"{m1} self"] = 100 * own.iloc[0]["self"]
        report.figure(plots.lines(series, "Cross-prediction accuracy by training rows", "training rows",
                                  "accuracy (%)", reference=reference), "Data scaling", "figures/scaling.png")

    if not tables["calibration_mad"].empty:
        report.heading("Calibration")
        report.paragraph("Mean absolute deviation (percentage points) between object-level and hypothetical "
                         "probabilities of the most likely, second and third most likely object-level values, from "
                         "temperature-1 samples. Lower is better calibrated.", "note")
        report.table(tables["calibration_mad"])
        curve = tables["calibration_curve"]
        series = {f"{p} ({r})": (list(part["p_hypothetical"]), list(part["p_object"]))
                  for (p, r), part in curve.groupby(["predictor", "role"], sort=False)}
        report.figure(plots.lines(series, "Calibration", "hypothetical probability", "object-level probability",
                                  diagonal=True), "Calibration curves", "figures/calibration.png")

    if not tables["behaviour_change"].empty:
        report.heading("Behaviour change")
        report.paragraph("The self-trained M1 fine-tuned on another model's object-level answers: on items where its "
                         "behaviour changed, does it predict its new behaviour or its old one? The entropy-matched "
                         "row drops items until the new behaviour is as varied as the old.", "note")
        report.table(tables["behaviour_change"], PERCENT)

    report.heading("Examples", 3)
    if not items.empty:
        shown = items[items["role"] == "self"].groupby("task", sort=False).head(2)
        report.table(shown[["predictor", "task", "property", "truth", "predicted", "correct"]])
    report.heading("Fine-tunes", 3)
    report.table(pd.DataFrame([{"model": m["label"], "role": m.get("condition"),
                                "rows": (m.get("training") or {}).get("rows"),
                                "final_loss": (m.get("training") or {}).get("final_loss"),
                                "seconds": (m.get("training") or {}).get("seconds")} for m in models
                               if m.get("training")]))
    logs = plots.training_logs(models, store)
    if logs:
        report.figure(plots.loss_curves(logs), "Training loss", "figures/loss.png")
    report.paragraph(f"Model calls: {json.dumps(calls)}", "note")
    return report
