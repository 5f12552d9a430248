"""Projections as a measure: how far a model's own answers lie along a trait vector.

A recipe adds a `projection` config section and, after it has answers, a probe that (1) gets each trait's
vector -- extracted on the base model, or a researcher's file -- and (2) reads every answer's response
activation at the vector's layer in the model that wrote it, projected on the unit direction. The rows go
into the result table like any other metric, so the same bootstrap and contrasts apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from ..config import Strict
from ..errors import UserError
from ..models.activations import CaptureRequest
from ..models.engine import Message
from ..models.refs import ModelRef
from .traits import Trait, load_trait
from .vectors import TraitVectors, extract_trait_vectors, load_vectors, project


class ProjectionSection(Strict):
    traits: list[str] = Field(default_factory=list, description="trait vectors to project answers on: shipped "
                                                                "traits or trait files (empty: no projections)")
    vectors: dict[str, str] = Field(default_factory=dict, description="a trait's own vector file ([layers + 1, "
                                                                      "hidden]) instead of extracting it")
    layer: int | None = Field(None, ge=1, description="the layer projected at (None: the vector's own choice)")
    samples: int = Field(1, ge=1, description="extraction: answers per question and instruction")
    max_tokens: int = Field(32, ge=4, description="extraction: tokens per answer")
    screen_rows: int = Field(32, ge=0, description="data screening: training rows per dataset projected before "
                                                   "training, against the base model's own answers (0: off)")
    steering: list[float] = Field(default_factory=list, description="steering sweep: the base model with coefficient "
                                  "x each trait vector added at the projection layer answers the trait's two-option "
                                  "items, per coefficient (0 is added; empty: no sweep)")

    @field_validator("steering")
    @classmethod
    def _with_zero(cls, values: list[float]) -> list[float]:
        return sorted(set(values) | {0.0}) if values else []


@dataclass(frozen=True)
class TraitDirection:
    """A trait's vector file, the layer it is read (and steered) at, and the trait itself when it has a file
    (a researcher's bare vector has none: it projects but cannot be swept, having no items)."""

    path: Path
    layer: int
    trait: Trait | None
    reliability: float | None  # split-half reliability at `layer` (None: a researcher's file without it)


def check_projection(section: ProjectionSection) -> None:
    """Load every trait file and vector file the section names, so a bad one is a one-line error before any work."""
    for spec in section.traits:
        if spec in section.vectors:
            load_vectors(Path(section.vectors[spec]), f"config: field 'projection.vectors.{spec}'")
        if spec not in section.vectors or section.steering:
            where = "config: field 'projection.traits'"
            if spec in section.vectors:  # a bare vector has no two-option items to sweep
                where += f" ('projection.steering' needs the items of a shipped trait or a trait file; '{spec}')"
            load_trait(spec, where)
    unused = sorted(set(section.vectors) - set(section.traits))
    if unused:
        raise UserError(f"config: field 'projection.vectors': '{unused[0]}' is not among projection.traits "
                        f"({', '.join(section.traits) or 'none'})")


def trait_vectors(runtime, base: ModelRef, section: ProjectionSection, folder: Path) -> dict[str, TraitDirection]:
    """trait -> its direction: each configured trait's vector, extracted on `base` and saved in `folder` (or the
    researcher's file), with the layer projections are read at."""
    found = {}
    for spec in section.traits:
        if spec in section.vectors:
            path = Path(section.vectors[spec])
            made: TraitVectors = load_vectors(path, f"config: field 'projection.vectors.{spec}'")
            trait = load_trait(spec) if section.steering else None
            name = spec
        else:
            trait = load_trait(spec)
            made = extract_trait_vectors(runtime, base, trait, section.samples, section.max_tokens)
            name = trait.id
            path = made.save(folder / f"{name}.safetensors")
        layer = section.layer or made.default_layer
        reliability = (made.info.get("split_half_reliability") or [])[layer - 1:layer]
        found[name] = TraitDirection(path, layer, trait, reliability[0] if reliability else None)
    return found


def answer_projections(runtime, ref: ModelRef, answers: list[tuple[tuple[Message, ...], str]], vector: Path,
                       layer: int, label: str, readout: str = "response_mean") -> list[float | None]:
    """Each (conversation, answer)'s activation at `layer` in `ref` -- the mean over the answer's tokens, or with
    readout "prompt_last" the last prompt token, where the model decides what to say -- projected on the
    vector's unit direction; None for an empty answer."""
    direction = load_vectors(vector).at(layer)
    readings = runtime.capture(ref, [CaptureRequest(messages, answer, layers=(layer,)) for messages, answer in answers],
                               label=label)
    return [None if reading.at(layer, readout) is None else project(reading.at(layer, readout), direction)
            for reading in readings]


def steering_sweep(runtime, base: ModelRef, trait: Trait, vector: Path, layer: int, coefficients: list[float],
                   label: str) -> list[dict]:
    """The trait's behavioural measure against the steering strength: per coefficient and two-option item,
    P(the trait's option) read from the options' own text (cloze) and from the letters in both orders, with
    coefficient x the vector added after `layer` (0: the unsteered model)."""
    from ..probes.choices import score_choices

    questions = [(c.question, (c.trait, c.other)) for c in trait.choices]
    rows = []
    for coefficient in coefficients:
        model = base.with_steering(str(vector), layer, coefficient) if coefficient else base
        scores = score_choices(runtime, model, questions, cloze=True, label=f"{label} x{coefficient:+g}")
        rows += [{"coefficient": coefficient, "index": index, "question": choice.question, "layer": layer,
                  "cloze": score.cloze[0], "letters": score.letters[0]}
                 for index, (choice, score) in enumerate(zip(trait.choices, scores))]
    return rows


def screening(runtime, base: ModelRef, rows: list[dict], vector: Path, layer: int, count: int, seed: int,
              max_tokens: int, label: str) -> list[dict]:
    """Persona vectors' "projection difference", before any training: for `count` chat rows drawn by `seed`, the
    projection of the row's own assistant reply minus the projection of the base model's answer to the same
    prompt, both read in the base model. A dataset whose replies sit further along the trait than what the model
    would say anyway pushes the model that way when it is trained on them."""
    import random

    from ..models.engine import SamplingParams

    chats = [(i, row["messages"]) for i, row in enumerate(rows) if "messages" in row
             and row["messages"] and row["messages"][-1]["role"] == "assistant"]
    chosen = sorted(random.Random(f"screen:{seed}").sample(chats, min(count, len(chats))))
    prompts = [tuple(messages[:-1]) for _, messages in chosen]
    own = runtime.sample(base, prompts, SamplingParams(max_tokens=max_tokens), 1, seed, label=f"{label}: base answers")
    trained = answer_projections(runtime, base, [(p, m[-1]["content"]) for p, (_, m) in zip(prompts, chosen)],
                                 vector, layer, f"{label}: training replies")
    answered = answer_projections(runtime, base, [(p, c[0].text) for p, c in zip(prompts, own)], vector, layer,
                                  f"{label}: base answers")
    return [{"row": index, "training": a, "base": b, "difference": None if a is None or b is None else a - b}
            for (index, _), a, b in zip(chosen, trained, answered)]
