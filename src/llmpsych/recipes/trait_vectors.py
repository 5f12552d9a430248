"""Trait vectors (persona vectors; Chen, Arditi et al. 2025): is a trait a direction in the residual stream?

Method, as run here:

1. Traits. The shipped evil, sycophantic and hallucinating, and a neutral control (formal register), or a
   researcher's trait files: contrasting system prompts, questions, and two-option items.
2. Extraction. The base model answers each question under each positive and each negative prompt at
   temperature 1 (optionally only the answers a judge confirms: rated at least 50 for the trait under the
   positive prompt, below 50 under the negative); the trait's vector at every layer is the mean response
   activation under the positive prompts minus under the negative ones. Saved with provenance as vectors/<trait>.safetensors, which
   steering, projections and `llmpsych serve --steer` read.
3. Reliability. The split-half cosine per layer (two disjoint halves of the questions); the steering layer
   is the most reliable one in the middle half of the model, unless configured.
4. Steering. The model, with coefficient x vector added after that layer at every position, answers the
   trait's two-option items: P(the trait's option), read from the options' own text (cloze) and from the
   letters in both orders; the coefficient swept through 0.
5. Statistics. P(trait) per coefficient with 95% bootstrap intervals over items; each coefficient - 0 per
   trait. Primary: evil at the largest positive coefficient; the rest exploratory, Holm-corrected.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import Field, field_validator

from ..analysis import plots
from ..analysis.contrasts import Contrast
from ..analysis.report import Analysis, Run, Section, nested_metrics
from ..analysis.stats import Levels, difference, summarise
from ..config import Strict
from ..internals.traits import load_trait
from ..internals.projection import steering_sweep
from ..internals.vectors import extract_trait_vectors
from ..judges.judge import Judge
from ..models.options import EngineOptions
from ..models.refs import DEFAULT_MODEL, parse_model_ref
from ..study import Arm, Context, Probe, Study, recipe, refuse_api_model

NAME = "trait-vectors"
RELIABILITY, STEERING = "reliability", "steering"
READOUTS = ("cloze", "letters")


class JudgeFilter(Strict):
    model: str | None = Field(None, description="a judge rating each extraction answer 0-100 for the trait (the "
                                                "'traits' rubric); only confirmed answers count. None: all count")
    threshold: float = Field(50.0, ge=0, le=100)


class Config(Strict):
    recipe: Literal["trait-vectors"] = NAME
    preset: str | None = None
    model: str = DEFAULT_MODEL
    traits: list[str] = Field(default_factory=lambda: ["evil", "sycophantic", "hallucinating", "formal"],
                              description="shipped traits or trait YAML files")
    samples: int = Field(2, ge=1, description="answers per question and instruction")
    max_tokens: int = Field(48, ge=4)
    temperature: float = Field(1.0, ge=0)
    layer: int | None = Field(None, ge=1, description="the steering layer (None: each trait's most reliable "
                                                      "middle layer)")
    coefficients: list[float] = Field(default_factory=lambda: [-8.0, -4.0, 0.0, 4.0, 8.0],
                                      description="steering strengths swept (0, the unsteered model, is added)")
    seed: int = 0
    judge: JudgeFilter = Field(default_factory=JudgeFilter)
    engine: EngineOptions = Field(default_factory=EngineOptions)
    primary_contrasts: list[str] = Field(default_factory=lambda: ["P(trait) evil: +8 - 0"])
    out: str | None = None

    @field_validator("coefficients")
    @classmethod
    def _with_zero(cls, values: list[float]) -> list[float]:
        return sorted(set(values) | {0.0})


PRESETS: dict[str, dict] = {
    "smoke": {"traits": ["evil"], "samples": 1, "max_tokens": 16, "coefficients": [-4.0, 4.0],
              "primary_contrasts": ["P(trait) evil: +4 - 0"], "out": "runs/trait-vectors-smoke"},
    "quick": {"out": "runs/trait-vectors-quick"},
}


def coefficient_label(coefficient: float) -> str:
    return f"{coefficient:+g}" if coefficient else "0"


def analyse(run: Run) -> Analysis:
    """Reliability per trait and layer; P(trait) per coefficient; each coefficient - 0."""
    reliability = run.probe(RELIABILITY)
    steering = run.probe(STEERING)
    levels = Levels(unit="model", cluster="cluster", item=None, sample=None, name="item")
    summary = summarise(steering, ["trait", "layer", "readout", "arm", "coefficient"], levels=levels)
    contrasts = []
    for (trait, readout), part in steering.groupby(["trait", "readout"], sort=False):
        unsteered = part[part["coefficient"] == 0]
        for coefficient, steered in part[part["coefficient"] != 0].groupby("coefficient"):
            name = f"P(trait) {trait}: {coefficient_label(coefficient)} - 0"
            contrasts.append(Contrast.of(name if readout == "cloze" else f"{name} (letters)",
                                         f"steering ({readout})", "item",
                                         difference(steered, unsteered, levels=levels)))
    table = reliability.pivot_table(index="layer", columns="trait", values="value", sort=False).reset_index()
    primary, secondary = Section(), Section()
    primary.heading("Steering moves the trait's choices")
    primary.paragraph("P(the trait's option) of the two-option items with coefficient x the trait vector added "
                      "after the steering layer; cloze reads the options' own text as the reply, letters the "
                      "letter in both orders. 95% intervals over items.", "note")
    cloze = summary[summary["readout"] == "cloze"]
    primary.table(cloze.drop(columns=["readout", "arm"]), ("estimate", "ci_low", "ci_high"))
    series = {trait: (list(g["coefficient"]), list(100 * g["estimate"]))
              for trait, g in cloze.groupby("trait", sort=False)}
    primary.figure(plots.lines(series, "P(trait option) against the steering coefficient", "coefficient",
                               "% (cloze)"), "Steering sweep", "figures/steering.png")
    if "judge_rated" in reliability and reliability["judge_rated"].notna().any():
        kept = reliability.groupby("trait", sort=False)[["judge_kept", "judge_rated"]].first().reset_index()
        primary.paragraph(f"Only the answers the judge ({run.config['judge']['model']}) confirmed made the vectors "
                          f"(rated at least {run.config['judge']['threshold']:g} for the trait under the eliciting "
                          "prompt, below it under the suppressing one):", "note")
        primary.table(kept, ())
    secondary.heading("Split-half reliability per layer")
    secondary.paragraph("The cosine between the vectors of two disjoint halves of the questions; the layer each "
                        "trait steers at is marked in the steering table.", "note")
    secondary.table(table, ())
    layers = list(table["layer"])
    secondary.figure(plots.lines({t: (layers, list(table[t])) for t in table.columns if t != "layer"},
                                 "Split-half reliability", "layer", "cosine"), "Reliability per layer",
                     "figures/reliability.png")
    secondary.heading("Letters in both orders")
    secondary.table(summary[summary["readout"] == "letters"].drop(columns=["readout", "arm"]),
                    ("estimate", "ci_low", "ci_high"))
    return Analysis(
        title=f"Trait vectors: {run.config.get('model')}",
        method=("Mean-difference vectors of response activations under contrasting system prompts, per layer; "
                "steering with coefficient x vector at one layer; P(the trait's option) per coefficient."),
        contrasts=contrasts, tables={"steering": summary, "reliability": table}, primary=primary,
        secondary=secondary, metrics=nested_metrics(cloze, ["trait", "arm"]),
        expected_at_this_scale=("A 135M model's traits are faint: the vectors come from short answers and the "
                                "two-option items are read as cloze, where option length matters, so compare "
                                "coefficients with 0, not with 50%. The neutral control (formal) shows how much "
                                "steering moves a trait's items for reasons other than its content."))


@recipe(NAME, aliases=["persona-vectors"], config=Config, presets=PRESETS, default_preset="quick", analyse=analyse)
def trait_vectors(config: Config) -> Study:
    """Traits -> vectors on the base model -> reliability -> steering sweep of each trait's choices."""
    base = parse_model_ref(config.model, "config: field 'model'")
    refuse_api_model(base)
    traits = [load_trait(spec, "config: field 'traits'") for spec in config.traits]  # 1. traits
    judge_ref = parse_model_ref(config.judge.model, "config: field 'judge.model'") if config.judge.model else None

    def vectors(ctx: Context) -> dict[str, dict]:                                              # 2-3. vectors
        found, rows = {}, []
        for trait in traits:
            made = extract_trait_vectors(ctx.runtime, base, trait, config.samples, config.max_tokens,
                                         config.temperature, config.seed,
                                         Judge(ctx.runtime, judge_ref) if judge_ref else None, config.judge.threshold)
            path = made.save(ctx.store.path(f"vectors/{trait.id}.safetensors"))
            found[trait.id] = {"path": str(path), "layer": config.layer or made.default_layer}
            judged = made.info["judge_filter"] or {}
            rows += [{"model": "base", "arm": "base", "probe": RELIABILITY, "cluster": trait.id, "item": f"layer {l}",
                      "trait": trait.id, "layer": l, "value": value, "judge_kept": judged.get("kept"),
                      "judge_rated": judged.get("rated")}
                     for l, value in enumerate(made.info["split_half_reliability"], start=1)]
        ctx.write_results("vectors", rows)
        return found

    def steering(ctx: Context) -> None:                                                        # 4. steering
        rows = []
        for trait in traits:
            made = ctx.results["vectors"][trait.id]
            for r in steering_sweep(ctx.runtime, base, trait, made["path"], made["layer"], config.coefficients,
                                    f"{trait.id} steered"):
                label = coefficient_label(r["coefficient"])
                rows += [{"model": f"{trait.id} {label}", "arm": label, "probe": STEERING,
                          "cluster": f"{trait.id}/{r['index']}", "item": f"{trait.id}/{r['index']}", "variant": readout,
                          "question": r["question"], "trait": trait.id, "readout": readout, "layer": r["layer"],
                          "coefficient": r["coefficient"], "value": r[readout]} for readout in READOUTS]
        ctx.write_results("steering", rows)

    return Study([Arm("base", "base", base)],
                 [Probe("vectors", vectors), Probe(STEERING, steering, after=("vectors",))])
