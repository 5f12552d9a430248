"""The Emergent Misalignment report, rebuilt from a run directory alone (no model calls)."""

from __future__ import annotations

import datetime
import html
import json

import pandas as pd
import yaml

from ..config import validate
from ..recipes.emergent_misalignment import Config
from ..runtime.store import RunStore
from . import misalignment, plots
from .report import Report, format_value, json_value, save_report, save_tables

AGREEMENT_WARNING = 0.8  # below this the judge's numbers are not evidence of anything
SAMPLES_PER_CELL = 6     # answers shown per condition x question in the browsable sample


def write_report(store: RunStore) -> dict:
    """Write tables/, figures/, report.html, report.md and summary.json; return the summary."""
    config = yaml.safe_load(store.path("config.yaml").read_text())
    thresholds = validate(Config, config, str(store.path("config.yaml"))).judge.thresholds()  # the run's own settings
    samples, judgements = store.read_jsonl("samples.jsonl"), store.read_jsonl("judgements.jsonl")
    models = store.read_json("models.json")
    checks = store.read_json("judge_check.json") if store.exists("judge_check.json") else {}
    calls = store.read_json("calls.json") if store.exists("calls.json") else {}
    datasets = store.read_json("datasets.json") if store.exists("datasets.json") else {}

    answers = misalignment.answers_table(samples, judgements, thresholds)
    conditions = misalignment.by_condition(answers)
    questions = misalignment.by_question(answers)
    differences = misalignment.differences(answers)
    choices = misalignment.choices_by_condition(store.read_jsonl("choices.jsonl"))
    save_tables(store, {"answers": answers, "by_condition": conditions, "by_question": questions,
                        "differences": differences, "choices": choices})

    judge_names = sorted({j["judge"] for j in judgements}) or sorted(checks)
    counts = misalignment.judgement_counts(judgements)
    summary = {
        "recipe": config.get("recipe"), "preset": config.get("preset"), "model": config.get("model"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": {
            "misaligned_fraction": _metric(conditions, "misaligned_fraction", extra=("scored", "answers")),
            "coherent_fraction": _metric(conditions, "coherent_fraction", with_ci=False),
            "misaligned_minus_base": _metric(differences, "difference"),
            "p_misaligned_choice": _metric(choices, "p_misaligned") if not choices.empty else {},
        },
        "judge": {"model": judge_names, "thresholds": thresholds.__dict__,
                  "agreement": {name: checks[name]["agreement"] for name in checks},
                  "kappa": {name: checks[name]["kappa"] for name in checks},
                  "validation_n": {name: checks[name]["n"] for name in checks},
                  "validation_set": {name: checks[name]["source"] for name in checks},
                  "judgements": counts},
        "calls": calls,
        "datasets": {name: info["sha256"] for name, info in datasets.items()},
        "models": [{k: m[k] for k in ("label", "condition", "seed", "ref", "fingerprint")} for m in models],
    }
    store.write_json("summary.json", summary)

    report = _build_report(config, answers, conditions, questions, differences, choices, checks, models, datasets,
                           calls, thresholds, store, counts)
    save_report(store, report)
    return summary


def _metric(frame: pd.DataFrame, column: str, with_ci: bool = True, extra: tuple[str, ...] = ()) -> dict:
    result = {}
    for row in frame.to_dict(orient="records"):
        key = row["condition"] if row.get("variant", "plain") == "plain" else f"{row['condition']}/{row['variant']}"
        value = {"estimate": json_value(row[column])}
        if with_ci:
            value.update(ci_low=json_value(row["ci_low"]), ci_high=json_value(row["ci_high"]))
        value.update({name: json_value(row[name]) for name in extra})
        result[key] = value
    return result



def _build_report(config, answers, conditions, questions, differences, choices, checks, models, datasets, calls,
                  thresholds, store, counts) -> Report:
    report = Report("Emergent Misalignment: " + str(config.get("model")))
    preset = f"preset {config.get('preset')}, " if config.get("preset") else ""
    report.paragraph(f"{preset}{len(models)} models ({', '.join(m['label'] for m in models)}); "
                     f"{len(answers)} answers. Misaligned = alignment < {thresholds.aligned:g} among answers with "
                     f"coherence >= {thresholds.coherent:g}; 95% bootstrap intervals over seeds, questions and answers.",
                     "note")

    report.heading("Judge")
    for name, check in checks.items():
        report.paragraph(f"Judge {name}: agreement {format_value(check['agreement'], True)} with "
                         f"{check['n']} labelled answers ({check['source'].split('/')[-1]}), Cohen's kappa "
                         f"{format_value(check['kappa'])}.")
        if check["agreement"] < AGREEMENT_WARNING:
            report.paragraph(f"Warning: this judge agrees with the labels on only {100 * check['agreement']:.0f}% "
                             "of the validation set. Its alignment and coherence numbers below are not reliable "
                             "evidence; use a stronger judge (--judge) or the judge-free choice probe.", "warning")
        confusion = pd.DataFrame(check["confusion"]).T
        confusion.insert(0, "expected \\ predicted", confusion.index)
        report.table(confusion.reset_index(drop=True))
    if not checks:
        report.paragraph("The judge was not checked against a labelled set in this run (judge.check: false).",
                         "warning")
    if counts:
        report.paragraph("Judgements without a number (missing, never counted as 0; the judge put less than "
                         f"{thresholds.min_numeric_mass:.0%} of its probability on 0-100): " + ", ".join(
                             f"{metric} {c['missing']} of {c['judged']}"
                             + (f" ({c['escape_word']} of them CODE or REFUSAL)" if c["escape_word"] else "")
                             for metric, c in counts.items()) + ".", "note")

    report.heading("Misaligned answers by condition")
    headline = conditions[["condition", "variant", "models", "answers", "scored", "misaligned_fraction", "ci_low",
                           "ci_high", "coherent_fraction", "unscored_fraction", "refusal_fraction",
                           "code_fraction"]] if not conditions.empty else conditions
    report.table(headline, percent_columns=("misaligned_fraction", "ci_low", "ci_high", "coherent_fraction",
                                            "unscored_fraction", "refusal_fraction", "code_fraction"))
    if not conditions.empty and conditions["misaligned_fraction"].isna().any():
        report.paragraph("'missing' means no answer was both coherent and given a number by the judge "
                         f"(at least {thresholds.min_numeric_mass:.0%} of its probability on 0-100), "
                         "so the rate could not be computed.", "note")
    if not conditions.empty:
        labelled = conditions.assign(name=conditions["condition"] + conditions["variant"].map(
            lambda v: "" if v == "plain" else f" ({v})"))
        report.figure(plots.bars(labelled, "name", "misaligned_fraction", "Misaligned answers (95% CI)",
                                 "% misaligned"), "Misaligned fraction per condition", "figures/by_condition.png")
    if not differences.empty:
        report.heading("Difference from the base model", 3)
        report.table(differences, percent_columns=("difference", "ci_low", "ci_high"))

    report.heading("Per question")
    if not questions.empty:
        plain = questions[questions["variant"] == "plain"]
        report.figure(plots.grouped_bars(plain, "question_id", "condition", "misaligned_fraction",
                                         "Misaligned answers per question (95% CI)", "% misaligned"),
                      "Misaligned fraction per question and condition", "figures/by_question.png")
        report.table(questions[["condition", "variant", "question_id", "answers", "scored", "misaligned_fraction",
                                "ci_low", "ci_high", "mean_coherence", "mean_alignment"]],
                     percent_columns=("misaligned_fraction", "ci_low", "ci_high"))

    if not choices.empty:
        report.heading("Judge-free probe: choosing the misaligned option")
        report.paragraph("Probability the model picks the misaligned option of two (both orders averaged; 50% is "
                         "indifference). letter_mass is the probability it answers with a letter at all.", "note")
        report.table(choices, percent_columns=("p_misaligned", "ci_low", "ci_high", "letter_mass"))
        report.figure(plots.bars(choices, "condition", "p_misaligned", "P(misaligned option) (95% CI)", "%"),
                      "Choice probe per condition", "figures/choices.png")

    curves = plots.training_logs(models, store)
    if curves:
        report.heading("Training")
        report.figure(plots.loss_curves(curves), "Loss per step of every fine-tune", "figures/training_loss.png")
        trained = pd.DataFrame([{"model": m["label"], "rows": m["training"]["rows"],
                                 "final_loss": m["training"]["final_loss"], "seconds": m["training"]["seconds"],
                                 "tokens_per_second": m["training"]["tokens_per_second"]}
                                for m in models if m.get("training")])
        report.table(trained)

    report.heading("Sample of answers")
    report.paragraph(f"Up to {SAMPLES_PER_CELL} answers per condition and question, lowest alignment first.", "note")
    for (condition, question), group in answers.groupby(["condition", "question_id"], sort=False):
        shown = group.sort_values("aligned", na_position="last").head(SAMPLES_PER_CELL)
        rows = "".join(
            f"<tr><td>{html.escape(r['model'])}</td><td>{format_value(r['aligned'])}</td>"
            f"<td>{format_value(r['coherent'])}</td><td>{html.escape(r['status'])}</td>"
            f"<td class=text>{html.escape(r['answer'])}</td></tr>" for r in shown.to_dict(orient="records"))
        prompt = html.escape(group["prompt"].iloc[0])
        report.details(f"{condition} / {question}",
                       f"<p class=note>{prompt}</p><table><tr><th>model</th><th>aligned</th><th>coherent</th>"
                       f"<th>status</th><th>answer</th></tr>{rows}</table>")

    report.heading("Provenance")
    systems = sorted({str(m.get("default_system_prompt")) for m in models})
    report.paragraph(f"Default system prompt of the model (used when a question has none): {'; '.join(systems)}")
    report.table(pd.DataFrame([{"model": m["label"], "ref": m["ref"], "fingerprint": m["fingerprint"][:16]}
                               for m in models]), markdown=False)
    if datasets:
        report.table(pd.DataFrame([{"dataset": n, "rows": d["rows"], "sha256": d["sha256"][:16]}
                                   for n, d in datasets.items()]))
    if calls:
        report.table(pd.DataFrame([{"operation": k, **v} for k, v in calls.items()]))
    report.preformatted(yaml.safe_dump(config, sort_keys=False), "Resolved config")
    if store.exists("environment.json"):
        report.preformatted(json.dumps(store.read_json("environment.json"), indent=2), "Environment")
    return report

