"""The introspection (self-prediction) analysis, from a run's result table alone."""

from __future__ import annotations

import pandas as pd

from . import introspection as intro
from . import plots
from .contrasts import Contrast
from .report import Analysis, Run, Section, json_value, on_embedded_model
from .stats import difference

PERCENT = ("estimate", "ci_low", "ci_high", "compliance", "mode_baseline", "self", "self_ci_low", "self_ci_high",
           "cross", "cross_ci_low", "cross_ci_high", "advantage", "advantage_ci_low", "advantage_ci_high",
           "untrained", "untrained_ci_low", "untrained_ci_high", "predicts_new", "new_ci_low", "new_ci_high",
           "predicts_old", "old_ci_low", "old_ci_high", "changed_share", "changed")


def analyse(run: Run) -> Analysis:
    items = intro.with_mode_baseline(run.probe("hypothetical"))
    objects = run.probe("object-level")
    training_rows = {m["label"]: (m.get("training") or {}).get("rows") for m in run.models}
    calibration = intro.calibration_pairs(intro.calibration_rows(run.probe("calibration/object",
                                                                           "calibration/hypothetical")))
    pooled = intro.self_vs_cross(items)
    tables = {
        "self_vs_cross": pooled,
        "self_vs_cross_by_task": intro.self_vs_cross(items, ("task",)),
        "self_vs_cross_by_property": intro.self_vs_cross(items, ("property",)),
        "accuracy": _accuracy(items, ["role", "arm", "target"]),
        "accuracy_by_task_property": _accuracy(items, ["role", "arm", "task", "property"]),
        "object_compliance": objects.groupby(["arm", "split"], sort=False)["value"]
        .agg(compliance="mean", readings="size").reset_index() if not objects.empty else pd.DataFrame(),
        "scaling": intro.scaling_curve(items, training_rows),
        "calibration_mad": intro.calibration_mad(calibration),
        "calibration_curve": intro.calibration_curve(calibration),
        "behaviour_change": intro.behaviour_change(items),
        "self_training_drift": intro.behaviour_drift(objects),
    }
    config = run.config
    tasks = config.get("tasks") or {}
    method = (f"Models {', '.join(config.get('models') or [])}; {config.get('seeds', 1)} fine-tune(s) per model and "
              f"role. Training families: {', '.join(tasks.get('train') or [])}. Held-out families: "
              f"{', '.join(tasks.get('held_out') or [])}. Ground truth from each model's own object-level answers "
              f"(temperature {(config.get('sampling') or {}).get('temperature')}). Accuracy is the mean over seeds "
              "of the mean over held-out prompts of the mean over the properties read off each answer; 95% "
              "bootstrap intervals over seeds, then prompts (the independent unit), then properties. "
              "p_permutation flips the sign of each prompt's self-minus-cross difference.")
    primary, secondary, samples = Section(), Section(), Section()
    _primary(primary, tables, run)
    _secondary(secondary, tables, pooled)
    if not items.empty:
        shown = items[items["role"] == "self"].groupby("task", sort=False).head(2)
        samples.table(shown[["model", "task", "property", "truth", "predicted", "value"]], ())
    return Analysis(
        title="Introspection by self-prediction: " + ", ".join(config.get("models") or []), method=method,
        contrasts=_contrasts(items), tables=tables, primary=primary, secondary=secondary, samples=samples,
        metrics={"pairs": _records(pooled), "accuracy": _records(tables["accuracy"]),
                 "calibration_mad": _records(tables["calibration_mad"]),
                 "behaviour_change": _records(tables["behaviour_change"]), "scaling": _records(tables["scaling"]),
                 "self_training_drift": _records(tables["self_training_drift"])},
        expected_at_this_scale=("At 135-270M parameters self-training may beat the untrained model (format, base "
                                "rates) but self beating cross-prediction is not expected: GPT-3.5's advantage in "
                                "the paper was +0.8 points, and two models of different capacity confound the "
                                "comparison." if on_embedded_model(config) else ""))


def _accuracy(items: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Accuracy, compliance and the target's mode baseline per group."""
    rows = []
    for key, group in (items.groupby(by, sort=False, dropna=False) if not items.empty else []):
        key = key if isinstance(key, tuple) else (key,)
        scored = group[group["value"].notna()]
        rows.append({**dict(zip(by, key)), **intro.accuracy(group), "seeds": group["model"].nunique(),
                     "compliance": scored["compliant"].astype(float).mean() if len(scored) else None,
                     "mode_baseline": scored["mode_correct"].mean() if len(scored) else None})
    return pd.DataFrame(rows)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{key: json_value(value) for key, value in row.items()} for row in frame.to_dict(orient="records")] \
        if not frame.empty else []


# ---- contrasts ------------------------------------------------------------------------------------------
def _contrasts(items: pd.DataFrame) -> list[Contrast]:
    if items.empty:
        return []
    contrasts = []
    for m1, m2 in intro.pairs(items):
        own = items[(items["role"] == "self") & (items["m1"] == m1)]
        other = items[(items["role"] == "cross") & (items["m1"] == m1) & (items["m2"] == m2) & (items["fraction"] == 1.0)]
        contrasts.append(Contrast.of(f"self - cross [{m1} by {m2}]", "self - cross", "prompt",
                                     difference(own, other, levels=intro.PROMPTS)))
        for column in ("task", "property"):
            for value, part in own.groupby(column, sort=False):
                result = difference(part, other[other[column] == value], levels=intro.PROMPTS)
                contrasts.append(Contrast.of(f"self - cross by {column} [{m1} by {m2}: {value}]",
                                             f"self - cross by {column}", "prompt", result))
    for m1 in items.loc[items["role"] == "self", "m1"].unique():
        own = items[(items["role"] == "self") & (items["m1"] == m1)]
        untrained = items[(items["role"] == "untrained") & (items["m1"] == m1)]
        contrasts.append(Contrast.of(f"self - untrained [{m1}]", "self-training", "prompt",
                                     difference(own, untrained, levels=intro.PROMPTS)))
        mode = own.assign(value=own["mode_correct"].where(own["value"].notna()))
        contrasts.append(Contrast.of(f"self - mode baseline [{m1}]", "vs mode baseline", "prompt",
                                     difference(own, mode, levels=intro.PROMPTS, paired=True)))
    changed = items[(items["role"] == "changed") & items["truth"].notna() & items["old_truth"].notna()
                    & (items["truth"] != items["old_truth"])]
    for m1, part in changed.groupby("m1", sort=False):
        old = part.assign(value=(part["predicted"] == part["old_truth"]).astype(float))
        contrasts.append(Contrast.of(f"changed: predicts new - predicts old [{m1}]", "behaviour change", "prompt",
                                     difference(part, old, levels=intro.PROMPTS, paired=True)))
    return contrasts


# ---- report sections ---------------------------------------------------------------------------------------
def _primary(section: Section, tables: dict[str, pd.DataFrame], run: Run) -> None:
    pooled = tables["self_vs_cross"]
    section.heading("Self-prediction against cross-prediction")
    section.paragraph("For comparison, the paper (held-out tasks, models of 70B+ parameters): Llama-3-70B predicting "
                      "itself 48.5% against GPT-4o predicting Llama 31.8%; GPT-4o predicting itself 49.4% against "
                      "Llama predicting GPT-4o 36.6%; self-training raised GPT-4o from 32.6% to 49.4%.", "note")
    if pooled.empty:
        section.paragraph("No ordered pair: give two or more models to compare self- and cross-prediction.", "warning")
        return
    section.table(pooled, PERCENT)
    plain = [m["label"] for m in run.models if m.get("plain_template") and m.get("condition") == "base"]
    if plain:
        section.paragraph(f"{', '.join(plain)} has no chat template: it is prompted with the plain User/Assistant "
                          f"template and this preamble: \"{run.config.get('base_model_preamble')}\"", "note")
    bars = []
    for row in pooled.to_dict(orient="records"):
        pair = f"{row['m1']} / {row['m2']}"
        bars += [{"pair": pair, "series": name, "estimate": row[key], "ci_low": row[f"{key}_ci_low"],
                  "ci_high": row[f"{key}_ci_high"]}
                 for name, key in (("untrained M1", "untrained"), ("self-trained M1", "self"),
                                   ("cross-trained M2", "cross"))]
        bars.append({"pair": pair, "series": "mode baseline", "estimate": row["mode_baseline"], "ci_low": None,
                     "ci_high": None})
    section.figure(plots.grouped_bars(pd.DataFrame(bars), "pair", "series", "estimate",
                                      "Held-out accuracy predicting M1 (pair: M1 / M2)", "accuracy (%)"),
                   "Held-out self-prediction accuracy", "figures/self_vs_cross.png")
    section.paragraph("Self-training can change a model's own answers. The self-trained M1 learned its behaviour "
                      "before training and is judged on its behaviour after it, while M2 learned the after-training "
                      "behaviour directly; the share of held-out items whose value changed is below. A large share "
                      "handicaps self-prediction; `cross.learns: untrained` gives M2 the very rows M1 was trained "
                      f"on instead (this run: {(run.config.get('cross') or {}).get('learns')}).", "note")
    section.table(tables["self_training_drift"], ("changed",))


def _secondary(section: Section, tables: dict[str, pd.DataFrame], pooled: pd.DataFrame) -> None:
    section.heading("By task family")
    section.table(tables["self_vs_cross_by_task"], PERCENT)
    section.heading("By property")
    section.table(tables["self_vs_cross_by_property"], PERCENT)
    section.heading("Every predictor")
    section.paragraph("Untrained models predict their own untrained behaviour; self-trained models their own "
                      "behaviour after training; cross-trained models the self-trained M1. Compliance: share of "
                      "hypothetical answers that gave a value at all.", "note")
    section.table(tables["accuracy"], PERCENT)
    section.table(tables["object_compliance"], ("compliance",))
    if not tables["scaling"].empty:
        section.heading("Cross-prediction data scaling")
        section.table(tables["scaling"], PERCENT)
        series, reference = {}, {}
        for (m1, m2), part in tables["scaling"].groupby(["m1", "m2"], sort=False):
            series[f"{m2} predicting {m1}"] = (list(part["training_rows"]),
                                               [None if v is None else 100 * v for v in part["estimate"]])
            own = pooled[(pooled["m1"] == m1) & (pooled["m2"] == m2)] if not pooled.empty else pooled
            if len(own) and own.iloc[0]["self"] is not None:
                reference[f"{m1} self"] = 100 * own.iloc[0]["self"]
        section.figure(plots.lines(series, "Cross-prediction accuracy by training rows", "training rows",
                                   "accuracy (%)", reference=reference), "Data scaling", "figures/scaling.png")
    if not tables["calibration_mad"].empty:
        section.heading("Calibration")
        section.paragraph("Mean absolute deviation (percentage points) between object-level and hypothetical "
                          "probabilities of the most likely, second and third most likely object-level values, from "
                          "temperature-1 samples. Lower is better calibrated.", "note")
        section.table(tables["calibration_mad"], ())
        curve = tables["calibration_curve"]
        series = {f"{p} ({r})": (list(part["p_hypothetical"]), list(part["p_object"]))
                  for (p, r), part in curve.groupby(["predictor", "role"], sort=False)}
        section.figure(plots.lines(series, "Calibration", "hypothetical probability", "object-level probability",
                                   diagonal=True), "Calibration curves", "figures/calibration.png")
    if not tables["behaviour_change"].empty:
        section.heading("Behaviour change")
        section.paragraph("The self-trained M1 fine-tuned on another model's object-level answers: on items where its "
                          "behaviour changed, does it predict its new behaviour or its old one? The entropy-matched "
                          "row drops items until the new behaviour is as varied as the old.", "note")
        section.table(tables["behaviour_change"], PERCENT)

