"""Projections as a measure: how far a model's own answers lie along a trait vector.

A recipe adds a `projection` config section and, after it has answers, a probe that (1) gets each trait's
vector -- extracted on the base model, or a researcher's file -- and (2) reads every answer's response
activation at the vector's layer in the model that wrote it, projected on the unit direction. The rows go
into the result table like any other metric, so the same bootstrap and contrasts apply.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import Strict
from ..errors import UserError
from ..models.activations import CaptureRequest
from ..models.engine import Message
from ..models.refs import ModelRef
from .traits import load_trait
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


def check_projection(section: ProjectionSection) -> None:
    """Load every trait file and vector file the section names, so a bad one is a one-line error before any work."""
    for spec in section.traits:
        if spec in section.vectors:
            load_vectors(Path(section.vectors[spec]), f"config: field 'projection.vectors.{spec}'")
        else:
            load_trait(spec, "config: field 'projection.traits'")
    unused = sorted(set(section.vectors) - set(section.traits))
    if unused:
        raise UserError(f"config: field 'projection.vectors': '{unused[0]}' is not among projection.traits "
                        f"({', '.join(section.traits) or 'none'})")


def trait_vectors(runtime, base: ModelRef, section: ProjectionSection, folder: Path) -> dict[str, tuple[Path, int]]:
    """trait -> (vector file, layer): each configured trait's vector, extracted on `base` and saved in `folder`
    (or the researcher's file), with the layer projections read at."""
    found = {}
    for spec in section.traits:
        if spec in section.vectors:
            path = Path(section.vectors[spec])
            made: TraitVectors = load_vectors(path, f"config: field 'projection.vectors.{spec}'")
            name = spec
        else:
            trait = load_trait(spec)
            made = extract_trait_vectors(runtime, base, trait, section.samples, section.max_tokens)
            name = trait.id
            path = made.save(folder / f"{name}.safetensors")
        found[name] = (path, section.layer or made.default_layer)
    return found


def answer_projections(runtime, ref: ModelRef, answers: list[tuple[tuple[Message, ...], str]], vector: Path,
                       layer: int, label: str) -> list[float | None]:
    """Each (conversation, answer)'s mean response activation at `layer` in `ref`, projected on the vector's unit
    direction; None for an empty answer."""
    direction = load_vectors(vector).at(layer)
    readings = runtime.capture(ref, [CaptureRequest(messages, answer, layers=(layer,)) for messages, answer in answers],
                               label=label)
    return [None if reading.at(layer) is None else project(reading.at(layer), direction) for reading in readings]


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
