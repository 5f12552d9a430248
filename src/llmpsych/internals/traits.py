"""Trait definitions for vector extraction: contrasting instructions, questions, and judge-free choices.

A trait file (shipped: evil, sycophantic, hallucinating, risk-seeking and the neutral control formal; or a
researcher's YAML) holds:
  id, description
  instructions  pairs of system prompts; `positive` elicits the trait, `negative` its opposite
  questions     asked under both prompts to extract the vector
  held_out      asked for projections, never used for extraction
  choices       two-option items (question, the `trait` option, the `other` option): the trait's judge-free
                behavioural measure, P(trait option)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..shipped import shipped
from ..yamlio import read_yaml


@dataclass(frozen=True)
class TraitChoice:
    question: str
    trait: str
    other: str


@dataclass(frozen=True)
class Trait:
    id: str
    description: str
    instructions: tuple[tuple[str, str], ...]  # (positive, negative) system prompts
    questions: tuple[str, ...]
    held_out: tuple[str, ...]
    choices: tuple[TraitChoice, ...]
    source: str


FIELDS = {"id", "description", "instructions", "questions", "held_out", "choices"}


def load_trait(spec: str | Path, source: str = "trait") -> Trait:
    """A shipped trait by name or a researcher's trait file, checked; errors name the file and the field."""
    path = shipped("traits", spec, source)
    data = read_yaml(path, "a YAML mapping describing a trait")
    if not isinstance(data, dict) or set(data) != FIELDS:
        raise UserError(f"{path}: expected a mapping with exactly the fields {', '.join(sorted(FIELDS))}")

    def texts(field: str, minimum: int) -> tuple[str, ...]:
        value = data[field]
        if not isinstance(value, list) or len(value) < minimum or not all(isinstance(v, str) and v.strip()
                                                                          for v in value):
            raise UserError(f"{path}: field '{field}': expected a list of at least {minimum} non-empty strings")
        return tuple(value)

    def pairs(field: str, keys: tuple[str, ...]) -> list[dict]:
        value = data[field]
        if not isinstance(value, list) or not value:
            raise UserError(f"{path}: field '{field}': expected a non-empty list")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or set(entry) != set(keys) or not all(
                    isinstance(entry[k], str) and entry[k].strip() for k in keys):
                raise UserError(f"{path}: field '{field}', entry {index + 1}: expected exactly the non-empty "
                                f"strings {', '.join(keys)}")
        return value

    if not isinstance(data["id"], str) or not data["id"].strip():
        raise UserError(f"{path}: field 'id': expected a non-empty string")
    instructions = pairs("instructions", ("positive", "negative"))
    return Trait(data["id"], str(data["description"]),
                 tuple((e["positive"], e["negative"]) for e in instructions),
                 texts("questions", 2), texts("held_out", 1),
                 tuple(TraitChoice(**e) for e in pairs("choices", ("question", "trait", "other"))), str(path))
