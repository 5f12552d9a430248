"""Concept injection (Lindsey 2025; Macar, Lindsey et al. 2026): does a model notice a thought placed in its
activations, and can it say what the thought is about?

Method, as run here:

1. Concepts. A list of everyday words (shipped, or a researcher's YAML list). Each word's direction per layer
   is the activation at the last prompt token of "Tell me about <word>." minus the mean over all the words.
2. Trials. The model is told that a thought may have been placed in its activations and asked whether it
   notices one (two wordings), and which word it is about. On injected trials the concept's direction times
   a strength is added after a layer at every position; on matched trials a random direction of the same norm
   is added instead (a perturbation as large, without the concept); on control trials nothing is added.
3. Reading the answers, judge-free. Detection: P(Yes) against P(No), and detected when P(Yes) > 1/2.
   Identification: the probability of each concept word as the one-word answer; identified when the injected
   word is the most likely one (chance: one over the number of words). Optionally, with a judge, the model
   answers an open wording in free text (greedy): the judge says whether the reply claims to notice a thought
   (its agreement measured on labelled replies), and the reply names the concept when it contains the word.
4. Statistics. Rates per layer and strength with 95% bootstrap intervals over concepts, then wordings.
   Primary: P(Yes) on injected trials minus on control trials (all layers and strengths pooled); per layer and
   strength, injected minus matched random (paired by concept), exploratory and Holm-corrected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field

from ..analysis import plots
from ..analysis.contrasts import Contrast
from ..analysis.report import Analysis, Run, Section, nested_metrics
from ..analysis.stats import Levels, difference, summarise
from ..config import Strict
from ..errors import UserError
from ..internals.concepts import concept_vectors, load_concepts, matched_random
from ..judges.check import check_threshold_rubric, load_validation
from ..judges.judge import Judge
from ..judges.rubrics import load_rubrics
from ..models.engine import SamplingParams, ScoreRequest
from ..models.options import EngineOptions
from ..models.refs import DEFAULT_MODEL, ModelRef, parse_model_ref
from ..shipped import shipped, shipped_file
from ..study import Arm, Context, Probe, Study, recipe, refuse_api_model
from ..yamlio import read_yaml

NAME = "concept-injection"
PRIMARY_CONTRAST = "P(yes): injected - control"
LEVELS = Levels(unit="model", cluster="cluster", item="item", sample=None, name="concept")
KINDS = {"concept": "injected", "random": "random direction", "none": "control"}
LABELS = ("noticed", "not noticed")  # the judge's verdict on a free-text reply, and its labelled set's labels


class JudgeSection(Strict):
    model: str | None = Field(None, description="a judge of free-text replies to the open wording (None: judge-free "
                                                "readings only)")
    threshold: float = Field(50.0, ge=0, le=100, description="a reply claims to notice a thought at this rating")
    max_tokens: int = Field(40, ge=4, description="length of each free-text reply")
    check_file: str | None = Field(None, description="labelled replies (question, answer, expected: noticed or not "
                                                     "noticed) the judge is measured on; None: the shipped set")


class Config(Strict):
    recipe: Literal["concept-injection"] = NAME
    preset: str | None = None
    model: str = DEFAULT_MODEL
    concepts: str = Field("concepts", description="a YAML list of words, or the shipped list 'concepts'")
    count: int | None = Field(None, ge=3, description="use the first N words (None: all)")
    trials: str = Field("trials", description="the trial questions: a YAML file with detection and "
                                              "identification wordings, or the shipped 'trials'")
    layers: list[int] | None = Field(None, description="layers to inject at (None: at 1/3, 1/2 and 2/3 of depth)")
    strengths: list[float] = Field(default_factory=lambda: [2.0, 4.0, 8.0], description="multiples of the concept "
                                                                                       "direction added")
    judge: JudgeSection = Field(default_factory=JudgeSection)
    engine: EngineOptions = Field(default_factory=EngineOptions)
    primary_contrasts: list[str] = Field(default_factory=lambda: [PRIMARY_CONTRAST])
    out: str | None = None


PRESETS: dict[str, dict] = {
    "smoke": {"count": 4, "strengths": [8.0], "out": "runs/concept-injection-smoke"},
    "quick": {"out": "runs/concept-injection-quick"},
}


@dataclass(frozen=True)
class Trials:
    detection: list[str]        # answered Yes or No
    identification: list[str]   # answered with one word
    open: list[str]             # answered in free text, for a judge (optional in a file)


def load_trials(spec: str, source: str = "config: field 'trials'") -> Trials:
    """The trial wordings of a file, checked."""
    path = shipped("injection-trials", spec, source)
    data = read_yaml(path, "a mapping with detection, identification and optionally open")
    if not isinstance(data, dict) or not {"detection", "identification"} <= set(data) <= \
            {"detection", "identification", "open"} or not all(
            isinstance(data[k], list) and data[k] and all(isinstance(t, str) and t.strip() for t in data[k])
            for k in data):
        raise UserError(f"{path}: expected the fields detection and identification (and optionally open), each a "
                        "non-empty list of questions")
    return Trials(data["detection"], data["identification"], data.get("open", []))


def analyse(run: Run) -> Analysis:
    detection, identification = run.probe("detection"), run.probe("identification")
    keys = ["arm", "layer", "strength"]
    detected = summarise(detection, keys, "detected", LEVELS).rename(columns={"estimate": "detection_rate"})
    p_yes = summarise(detection, keys, levels=LEVELS)[keys + ["estimate", "ci_low", "ci_high"]].rename(
        columns={"estimate": "p_yes", "ci_low": "p_yes_low", "ci_high": "p_yes_high"})
    detection_table = detected.merge(p_yes, on=keys, how="left")
    identified = summarise(identification, keys, levels=LEVELS).rename(columns={"estimate": "identified"})
    injected, control = detection[detection["arm"] == "concept"], detection[detection["arm"] == "none"]
    contrasts = [Contrast.of(PRIMARY_CONTRAST, "detection", "concept",
                             difference(injected, control, levels=LEVELS, shared_clusters=False))]
    for (layer, strength), cell in detection[detection["arm"] != "none"].groupby(["layer", "strength"]):
        for probe, frame in (("P(yes)", cell), ("identified", identification[
                (identification["layer"] == layer) & (identification["strength"] == strength)])):
            contrasts.append(Contrast.of(f"{probe}: injected - random [layer {layer:g} x{strength:g}]",
                                         f"{probe} by cell", "concept",
                                         difference(frame[frame["arm"] == "concept"], frame[frame["arm"] == "random"],
                                                    levels=LEVELS)))
    judged, named = run.probe("judged-detection"), run.probe("named")
    judged_table = summarise(judged, keys, levels=LEVELS)
    named_table = summarise(named, keys, levels=LEVELS)
    if not judged.empty:
        family = "judged detection (free text)"
        contrasts += [Contrast.of(f"judged detection: {KINDS[arm]} - control", family, "concept",
                                  difference(judged[judged["arm"] == arm], judged[judged["arm"] == "none"],
                                             levels=LEVELS, shared_clusters=False)) for arm in ("concept", "random")]
        contrasts.append(Contrast.of("named in reply: injected - random", family, "concept",
                                     difference(named[named["arm"] == "concept"], named[named["arm"] == "random"],
                                                levels=LEVELS)))
    words = identification["cluster"].nunique() or None
    primary = Section()
    primary.heading("Detection and identification per layer and strength")
    primary.paragraph("Detection rate: trials where P(Yes) > P(No); p_yes: the probability itself. Identified: the "
                      f"injected word is the most likely of the {words} words (chance {1 / words:.0%}). Injected: the "
                      "concept's direction; random: a direction of the same norm; control: nothing added. 95% "
                      "intervals over concepts, then wordings." if words else "No identification trials.", "note")
    primary.table(detection_table, ("detection_rate", "ci_low", "ci_high", "p_yes", "p_yes_low", "p_yes_high"))
    primary.table(identified, ("identified", "ci_low", "ci_high"))
    for title, table, column, file in (("P(Yes) on injected trials", detection_table, "p_yes", "detection"),
                                       ("Identified on injected trials", identified, "identified", "identification")):
        concept = table[table["arm"] == "concept"]
        series = {f"layer {layer:g}": (list(g["strength"]), list(100 * g[column]))
                  for layer, g in concept.groupby("layer")}
        reference = {"control": 100 * float(table[table["arm"] == "none"][column].mean())} if column == "p_yes" \
            else ({"chance": 100 / words} if words else {})
        primary.figure(plots.lines(series, title, "strength", "%", reference=reference), title,
                       f"figures/{file}.png")
    if not judged_table.empty:
        primary.heading("Free-text replies, judged")
        primary.paragraph("Greedy replies to the open wording. Judged: the share the judge reads as claiming to notice "
                          f"a thought (rating at least {(run.config.get('judge') or {}).get('threshold', 50):g}; its "
                          "agreement with labelled replies is at the top of the report). Named: the share of replies "
                          "on injected trials that contain the injected word. 95% intervals over concepts.", "note")
        primary.table(judged_table, ("estimate", "ci_low", "ci_high"))
        primary.table(named_table, ("estimate", "ci_low", "ci_high"))
    return Analysis(
        title=f"Concept injection: {run.config.get('model')}",
        method=("Concept directions (activation on 'Tell me about <word>.' minus the mean over words) added after a "
                "layer; the model asked whether it notices an injected thought (P(Yes) against P(No)) and which word "
                "it is about (the probability of each concept word)."),
        contrasts=contrasts, tables={"detection": detection_table, "identification": identified,
                                     "judged_detection": judged_table, "named": named_table},
        primary=primary,
        metrics={"detection": nested_metrics(detection_table, ["arm", "layer", "strength"]),
                 "identification": nested_metrics(identified, ["arm", "layer", "strength"]),
                 "judged_detection": nested_metrics(judged_table, ["arm", "layer", "strength"])},
        expected_at_this_scale=(
            "Introspective detection was found in large models after preference training (and not in base models); "
            "a 135M model is not expected to show it. What it can show is the mechanics: whether an injection moves "
            "P(Yes) at all, and whether that is the concept or any perturbation (compare with the random "
            "direction of the same norm). An injected word becoming the likeliest answer is the concept leaking into "
            "the output, not evidence that the model noticed it."))


@recipe(NAME, aliases=["injection"], config=Config, presets=PRESETS, default_preset="quick", analyse=analyse)
def concept_injection(config: Config) -> Study:
    """Concepts -> directions on the model -> injected, random and control trials -> detection, identification."""
    base = parse_model_ref(config.model, "config: field 'model'")
    refuse_api_model(base)
    words = load_concepts(config.concepts, "config: field 'concepts'")[:config.count]         # 1. concepts
    wordings = load_trials(config.trials)
    judge_ref = parse_model_ref(config.judge.model, "config: field 'judge.model'") if config.judge.model else None
    if judge_ref and not wordings.open:
        raise UserError(f"config: field 'trials': '{config.trials}' has no open wordings; the judge (judge.model) "
                        "reads free-text replies to them")
    check_file = Path(config.judge.check_file) if config.judge.check_file else shipped_file("judge-data",
                                                                                            "injection-validation")
    if judge_ref:
        load_validation(check_file, LABELS)  # a bad labelled file stops the run before any trial

    def trials(ctx: Context) -> None:                                                           # 2-3. trials
        directions = concept_vectors(ctx.runtime, base, words)
        depth = next(iter(directions.values())).layers
        layers = config.layers or sorted({max(1, round(depth * f)) for f in (1 / 3, 1 / 2, 2 / 3)})
        if any(not 1 <= layer <= depth for layer in layers):
            raise UserError(f"config: field 'layers': expected layers between 1 and {depth}, got {layers}")
        files = {}
        for word, vectors in directions.items():
            files[("concept", word)] = vectors.save(ctx.store.path(f"vectors/concept-{word}.safetensors"))
            files[("random", word)] = matched_random(vectors, f"random:{word}").save(
                ctx.store.path(f"vectors/random-{word}.safetensors"))
        runs = [(base, "none", "none", None, None)] + [
            (base.with_steering(path, layer, strength), kind, word, layer, strength)
            for layer in layers for strength in config.strengths for (kind, word), path in files.items()]
        rows, replies = [], []
        for model, kind, word, layer, strength in runs:
            rows += _trial_rows(ctx, model, kind, word, layer, strength, words, wordings)
            if judge_ref:
                replies += _replies(ctx, model, kind, word, layer, strength, wordings.open, config.judge.max_tokens)
        if judge_ref:
            rows += _judged(ctx, Judge(ctx.runtime, judge_ref), replies, config.judge.threshold)
        ctx.write_results("trials", rows)

    def check(ctx: Context) -> dict:
        checked = {"injection judge": check_threshold_rubric(
            Judge(ctx.runtime, judge_ref), load_rubrics("injection")["noticed"], check_file, LABELS,
            config.judge.threshold, "injection")}
        ctx.store.write_json("judge_check.json", checked)
        return checked

    probes = [Probe("trials", trials)] + ([Probe("judge-check", check, arms=())] if judge_ref else [])
    return Study([Arm("base", "base", base)], probes)


def _trial_rows(ctx: Context, model: ModelRef, kind: str, word: str, layer: int | None, strength: float | None,
                words: list[str], wordings: Trials) -> list[dict]:
    """One trial: P(Yes) for each detection wording, and P(each word) for each identification wording."""
    import math

    detection, identification = wordings.detection, wordings.identification
    asked = [ScoreRequest(({"role": "user", "content": q},), ("Yes", "No"), closed="all") for q in detection] + \
            [ScoreRequest(({"role": "user", "content": q},), tuple(words), closed="all") for q in identification]
    where = "control" if layer is None else f"{word} layer {layer} x{strength:g}"
    scores = ctx.runtime.score(model, asked, label=f"{KINDS[kind]} {where}")
    common = {"model": "base", "arm": kind, "cluster": word, "variant": KINDS[kind], "layer": layer,
              "strength": strength}
    rows = []
    for index, (question, (yes, no)) in enumerate(zip(detection, scores[:len(detection)])):
        p_yes = math.exp(yes) / (math.exp(yes) + math.exp(no)) if math.exp(yes) + math.exp(no) > 0 else None
        rows.append({**common, "probe": "detection", "item": f"{word}/{index}", "question": question, "value": p_yes,
                     "detected": None if p_yes is None else float(p_yes > 0.5)})
    if kind == "none":
        return rows  # nothing was injected: there is nothing to identify
    for index, (question, row) in enumerate(zip(identification, scores[len(detection):])):
        probabilities = [math.exp(x) for x in row]
        total = sum(probabilities)
        rows.append({**common, "probe": "identification", "item": f"{word}/{index}", "question": question,
                     "value": float(max(range(len(words)), key=probabilities.__getitem__) == words.index(word))
                     if total > 0 else None, "p_concept": probabilities[words.index(word)] / total if total else None})
    return rows


def _replies(ctx: Context, model: ModelRef, kind: str, word: str, layer: int | None, strength: float | None,
             questions: list[str], max_tokens: int) -> list[dict]:
    """One trial's greedy free-text reply to each open wording."""
    where = "control" if layer is None else f"{word} layer {layer} x{strength:g}"
    answers = ctx.runtime.sample(model, [({"role": "user", "content": q},) for q in questions],
                                 SamplingParams(temperature=0.0, max_tokens=max_tokens), 1,
                                 label=f"replies {KINDS[kind]} {where}")
    return [{"model": "base", "arm": kind, "cluster": word, "variant": KINDS[kind], "layer": layer,
             "strength": strength, "item": f"{word}/open{index}", "question": question, "answer": completions[0].text}
            for index, (question, completions) in enumerate(zip(questions, answers))]


def _judged(ctx: Context, judge: Judge, replies: list[dict], threshold: float) -> list[dict]:
    """The judge's verdict on each reply (claims to notice a thought: 1, not: 0, unrated: missing), and on
    injected trials whether the reply names the concept (the word itself, judge-free)."""
    ratings = judge.rate(load_rubrics("injection")["noticed"], [(r["question"], r["answer"]) for r in replies],
                         label="judge replies")
    rows = []
    for reply, rating in zip(replies, ratings):
        rows.append({**reply, "probe": "judged-detection", "rating": rating.score,
                     "value": None if rating.score is None else float(rating.score >= threshold)})
        if reply["arm"] != "none":
            named = re.search(rf"\b{re.escape(reply['cluster'])}", reply["answer"], re.IGNORECASE) is not None
            rows.append({**reply, "probe": "named", "value": float(named)})
    return rows
