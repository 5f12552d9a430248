"""The out-of-context reasoning analysis, from a run's result table alone.

Every value is the probability (multiple choice, training-format replies) or rate (free-form answers
checked by code) of the correct answer about a latent. Each seed trains on latents of its own; a latent
(a function, a coin, the hidden city) is the independent unit, and its paraphrases or inputs are the
readings of it. Estimates are means over seeds of means over latents of means over readings, with 95%
bootstrap intervals resampling each level. Every arm answers the same seed's questions, so differences
are paired by seed.
"""

from __future__ import annotations

import pandas as pd

from . import plots
from .contrasts import Contrast
from .report import Analysis, Run, Section, nested_metrics, on_embedded_model
from .stats import Levels, difference, summarise

LATENTS = Levels(unit="seed", sample=None, name="latent")
PERCENT = ("estimate", "ci_low", "ci_high", "chance", "answer_mass")
# Kinds that check the training data were learned (the training format, recalling the descriptions): not
# out-of-context reasoning, so they are manipulation checks rather than the study's claims.
LEARNING_CHECKS = ("in-distribution", "recall")
# Published GPT-3.5 numbers (Connecting the Dots, Fig. 3 and §3), P(correct), OOCR vs baseline where given.
PUBLISHED = {
    "functions/lambda": "0.43 vs 0.03 baseline", "functions/description": "0.74 vs 0.20 baseline",
    "functions/inversion": "0.60 vs 0.11 baseline", "locations/city": "56% name the city",
    "parity/value": "80% probability on the correct values",
}
# The claims each (task, kind) is tested on: (name, (arm, condition) minus (arm, condition)).
COMPARISONS = (
    ("fine-tuned - baseline", ("fine-tuned", "target"), ("fine-tuned", "baseline")),
    ("fine-tuned - untuned", ("fine-tuned", "target"), ("base", "target")),
    ("in-context - untuned", ("in-context", "target"), ("base", "target")),
    ("fine-tuned - in-context", ("fine-tuned", "target"), ("in-context", "target")),
)


def analyse(run: Run) -> Analysis:
    records = run.table  # every row is a reflection or in-distribution reading
    results = _results(records)
    config = run.config
    primary, secondary, samples = Section(), Section(), Section()
    if not results.empty:
        primary.paragraph("in-distribution: the training format itself (did the fine-tune learn the data?). "
                          "Published GPT-3.5 numbers for comparison: "
                          + "; ".join(f"{k}: {v}" for k, v in PUBLISHED.items()) + ".", "note")
        primary.table(results, PERCENT)
        frame = results.assign(measure=results["task"] + "/" + results["kind"],
                               series=results["arm"] + "/" + results["condition"])
        primary.figure(plots.grouped_bars(frame, "measure", "series", "estimate", "P(correct) by question and arm",
                                          "P(correct) (%)"), "Reflection results", "figures/results.png")
    if not records.empty:
        free = records[(records["mode"] == "free") & (records["condition"] == "target")]
        examples = free.groupby(["task", "kind", "arm"], sort=False).head(2)
        samples.preformatted("\n".join(f"[{r.arm} s{r.seed}] {r.task}/{r.kind} ({r.latent}): {r.answer!r} -> "
                                       f"{'correct' if r.value else 'wrong'}" for r in examples.itertuples()),
                             "Example free-form answers")
    return Analysis(
        title="Out-of-context reasoning: " + str(config.get("model")),
        method=(f"Tasks {', '.join(config.get('tasks') or [])}; {config.get('seeds')} fine-tunes, each with its own "
                "hidden values and names. Values are P(correct) for multiple choice and training-format replies, "
                "and the rate of correct greedy answers for free-form questions. The baseline asks about a name "
                "never seen in training, scored against the trained latent's answer. 95% bootstrap intervals over "
                "seeds, latents and their questions."),
        contrasts=_contrasts(records), tables={"results": results}, primary=primary, secondary=secondary,
        samples=samples,
        metrics={"results": nested_metrics(results.assign(measure=results["task"] + "/" + results["kind"],
                                                          arm_condition=results["arm"] + "/" + results["condition"])
                                           if not results.empty else results, ["measure", "arm_condition"])},
        extra={"published": PUBLISHED,
               "latents": {name: entry.get("latents") for name, entry in run.datasets.items()}},
        expected_at_this_scale=("At this scale in-distribution learning is expected, verbalised reflection is not "
                                "(GPT-3.5 was the papers' smallest model)." if on_embedded_model(config) else ""))


def _results(records: pd.DataFrame) -> pd.DataFrame:
    """P(correct) per task, question kind, arm and condition, with chance and the mass on the offered answers."""
    by = ["task", "kind", "arm", "condition"]
    if records.empty:
        return pd.DataFrame(columns=by + ["estimate", "ci_low", "ci_high"])
    table = summarise(records, by, levels=LATENTS)
    extra = records.groupby(by, sort=False).agg(chance=("chance", "mean"), answer_mass=("mass", "mean")).reset_index()
    return table.merge(extra, on=by, how="left")


def _contrasts(records: pd.DataFrame) -> list[Contrast]:
    """Every claim of COMPARISONS for every (task, kind) that has both sides, paired by seed."""
    contrasts = []
    for (task, kind), part in (records.groupby(["task", "kind"], sort=False) if not records.empty else []):
        for name, (arm_a, condition_a), (arm_b, condition_b) in COMPARISONS:
            a = part[(part["arm"] == arm_a) & (part["condition"] == condition_a)]
            b = part[(part["arm"] == arm_b) & (part["condition"] == condition_b)]
            if a.empty or b.empty:
                continue
            check = kind in LEARNING_CHECKS
            family = "learning checks" if check else ("reflection" if name == "fine-tuned - baseline"
                                                      else "reflection controls")
            label = f"{kind}: {name} [{task}]" if check else f"{name} [{task}/{kind}]"
            contrasts.append(Contrast.of(label, family, "latent", difference(a, b, levels=LATENTS, paired=True)))
    return contrasts
