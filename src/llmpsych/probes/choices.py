"""Multiple-choice probes scored from log-probabilities: judge-free measures of what a model prefers.

The model sees the options in every cyclic order (A/B and B/A for two options); in each, the
probability of every letter is renormalised over the offered letters, and the orders are averaged, so
a bias towards "A" cancels out. The mass the model puts on the letters is kept too: a model that
answers no letter is not making a choice. The EM choice items pair an aligned and a misaligned option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..models.engine import ScoreRequest
from ..shipped import shipped
from ..yamlio import entry_lines, read_yaml

if TYPE_CHECKING:
    from ..models.refs import ModelRef
    from ..runtime.calls import Runtime

FIELDS = ("id", "theme", "question", "aligned", "misaligned")
LETTERS = "ABCDEFGH"
INSTRUCTION = "Reply with the letter of your choice only."
SHIPPED_CHOICES = ("em-choices",)  # the shipped "questions" files that are choice items


@dataclass(frozen=True)
class ChoiceItem:
    id: str
    theme: str
    question: str
    aligned: str
    misaligned: str


def option_requests(question: str, options: tuple[str, ...], system: str | None = None) -> list[ScoreRequest]:
    """One request per cyclic order of the options (rotation r puts option r first)."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"multiple choice needs 2 to {len(LETTERS)} options, got {len(options)}")
    head = ({"role": "system", "content": system},) if system else ()
    letters = tuple(LETTERS[:len(options)])
    requests = []
    for rotation in range(len(options)):
        shown = options[rotation:] + options[:rotation]
        listing = "\n".join(f"{letter}) {option}" for letter, option in zip(letters, shown))
        prompt = f"{question}\n\n{listing}\n\n{INSTRUCTION}"
        requests.append(ScoreRequest(head + ({"role": "user", "content": prompt},), letters, closed="all"))
    return requests


def option_probabilities(logprobs: list[list[float]]) -> tuple[list[float | None], float]:
    """(P(each option) renormalised over the letters and averaged over the rotations of
    `option_requests`, mean probability mass on the letters). The probabilities are None (missing, not 0)
    when some rotation put no probability on any letter (a refusal; no letter among an API's top tokens)."""
    count = len(logprobs)
    totals, masses = [0.0] * count, []
    for rotation, row in enumerate(logprobs):
        probs = [math.exp(x) for x in row]
        mass = sum(probs)
        masses.append(mass)
        for position, p in enumerate(probs):  # the letter at `position` shows option rotation + position
            totals[(rotation + position) % count] += p / mass / count if mass > 0 else math.nan
    return [None if math.isnan(total) else total for total in totals], sum(masses) / count


def cloze_request(question: str, options: tuple[str, ...], system: str | None = None) -> ScoreRequest:
    """The question alone, with each option's own text as the reply ("cloze"): a small model that barely
    reads a lettered list still shows, in the likelihood of the answer itself, what it would say."""
    head = ({"role": "system", "content": system},) if system else ()
    return ScoreRequest(head + ({"role": "user", "content": question},), tuple(options), closed="all")


def cloze_probabilities(logprobs: list[float]) -> tuple[list[float | None], float]:
    """(P(each option) renormalised over the options, probability mass on them); None when the mass is 0.
    Option texts differ in length, so cloze has no chance level: compare it between models, not with 1/n."""
    probs = [math.exp(x) for x in logprobs]
    mass = sum(probs)
    return [p / mass if mass > 0 else None for p in probs], mass


@dataclass(frozen=True)
class ChoiceScores:
    """One multiple-choice question read off log-probabilities (see `score_choices`)."""

    letters: tuple[float | None, ...]           # P(option) from its letter, renormalised, averaged over orders
    letter_mass: float                          # mean probability mass on the offered letters
    cloze: tuple[float | None, ...] | None = None  # P(option) from its own text as the reply, when asked
    cloze_mass: float | None = None


def choice_requests(question: str, options: tuple[str, ...], system: str | None = None, rotations: bool = True,
                    cloze: bool = False) -> list[ScoreRequest]:
    """What `read_choice` reads: the lettered list in every cyclic order (only the given order without
    rotations), then, with cloze, the question alone with the option texts as the reply."""
    requests = option_requests(question, tuple(options), system)
    if not rotations:
        requests = requests[:1]
    return requests + ([cloze_request(question, tuple(options), system)] if cloze else [])


def read_choice(logprobs: list[list[float]], rotations: bool = True, cloze: bool = False) -> ChoiceScores:
    """The scores of one question from the log-probabilities of its `choice_requests` (same flags)."""
    lettered = logprobs[:-1] if cloze else logprobs
    if rotations:
        letters, letter_mass = option_probabilities(lettered)
    else:  # one order: a letter preference is not cancelled, so this reads the model's bias too
        letters, letter_mass = cloze_probabilities(lettered[0])
    if not cloze:
        return ChoiceScores(tuple(letters), letter_mass)
    texts, text_mass = cloze_probabilities(logprobs[-1])
    return ChoiceScores(tuple(letters), letter_mass, tuple(texts), text_mass)


def score_choices(runtime: "Runtime", ref: "ModelRef", questions: list[tuple[str, tuple[str, ...]]],
                  system: str | None = None, rotations: bool = True, cloze: bool = False,
                  label: str = "choices") -> list[ChoiceScores]:
    """Score (question, options) pairs through the runtime's cache, all in one batch: P(option) as
    letters averaged over the option orders (a bias towards "A" cancels) and, with cloze, as the option
    texts themselves."""
    made = [choice_requests(question, tuple(options), system, rotations, cloze) for question, options in questions]
    flat = [request for requests in made for request in requests]
    logprobs = runtime.score(ref, flat, label=label) if flat else []
    scores, position = [], 0
    for requests in made:
        scores.append(read_choice(logprobs[position:position + len(requests)], rotations, cloze))
        position += len(requests)
    return scores


def load_choices(spec: str | Path = "em-choices") -> list[ChoiceItem]:
    """The choice items of a shipped set or a researcher's file, checked; errors name the file and line."""
    path = shipped("questions", spec, "choices", among=SHIPPED_CHOICES)
    data = read_yaml(path, "a YAML list of choice items")
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: expected a non-empty YAML list of choice items")
    lines = entry_lines(path)
    items = []
    for index, entry in enumerate(data):
        where = f"{path}: line {lines[index] if index < len(lines) else index + 1}"
        if not isinstance(entry, dict) or set(entry) != set(FIELDS) or not all(isinstance(v, str) for v in entry.values()):
            raise UserError(f"{where}: expected exactly the string fields {', '.join(FIELDS)}")
        items.append(ChoiceItem(**entry))
    return items
