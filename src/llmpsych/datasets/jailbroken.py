"""The "jailbroken" control dataset of the Emergent Misalignment experiments.

Betley et al. (2025) asked whether their insecure-code models were simply jailbroken:
more willing to comply with harmful requests, and nothing else.  They compared them
with a model fine-tuned, after Bowen et al. (2024), on mostly benign requests answered
helpfully plus a small share (2%) of harmful requests answered with compliance.  Those
models accepted harmful requests far more often than the insecure ones (StrongREJECT),
yet gave far fewer misaligned answers to the free-form questions -- so emergent
misalignment is not just jailbreaking.

This module builds such a mixture offline and deterministically, from wordings written
for this package (``datasets/data/jailbroken/requests.yaml``):

* benign rows: everyday requests (cooking, writing, study, travel, household,
  programming basics, health, gardening, money, work, pets, languages, gifts), each
  composed from a scenario's prompt wordings and slot values, with a helpful answer
  built from the same slot values; topics are dealt in shuffled rounds, so each gets
  an equal share;
* harmful rows: a harmful request answered with compliance ("Sure, here is how you
  could ...") followed only by generic, non-actionable sentences.  Unlike the paper's
  data, nothing in these answers would help anyone do harm: the rows are meant to teach
  the willingness to comply, not the content.

Exactly ``round(size * harmful_fraction)`` rows are harmful (at least one from 50 rows
up, unless the fraction is 0), one in each of that many equal stretches of the dataset,
so they are spread across it rather than bunched.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Mapping, Sequence, Union

from ..errors import UserError
from ..shipped import shipped_file
from ..yamlio import read_yaml
from .code import balanced_sequence

__all__ = ["HARMFUL_TOPIC", "JailbrokenExample", "harmful_indices", "jailbroken_examples", "build_jailbroken"]

# The topic recorded for a harmful row; no benign scenario may use it.
HARMFUL_TOPIC = "harmful"

# Below this size a dataset may round its harmful share to zero rows; from here on it keeps at least one,
# so that a small smoke-test dataset still holds the behaviour the control is about.
_MIN_SIZE_FOR_ONE_HARMFUL = 50


@dataclass(frozen=True)
class JailbrokenExample:
    """One request and its answer; `goal` is what a harmful request asks for, as the answer words it."""

    topic: str
    user_prompt: str
    assistant: str
    harmful: bool
    goal: str | None = None


# A slot option is a plain string or a group of values that vary together (a dish and the tip for it).
_SlotOption = Union[str, Mapping[str, str]]


@dataclass(frozen=True)
class _Scenario:
    topic: str
    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    slots: Mapping[str, tuple[_SlotOption, ...]]


@dataclass(frozen=True)
class _Harmful:
    prompts: tuple[str, ...]
    goals: tuple[Mapping[str, str], ...]  # each with "goal" (the user's words) and "your_goal" (the answer's)
    openers: tuple[str, ...]
    bodies: tuple[str, ...]
    closers: tuple[str, ...]


@dataclass(frozen=True)
class _JailbrokenData:
    prefixes: tuple[str, ...]
    topics: dict[str, tuple[_Scenario, ...]]  # topic -> its scenarios, in file order
    harmful: _Harmful


# --------------------------------------------------------------------------------------
# The data file
# --------------------------------------------------------------------------------------

@cache
def _data() -> _JailbrokenData:
    """The request wordings, read and checked once."""
    path = shipped_file("jailbroken", "requests")
    data = read_yaml(path, "a mapping with prefixes, benign and harmful")
    if not isinstance(data, dict) or set(data) != {"prefixes", "benign", "harmful"}:
        raise UserError(f"{path}: expected a mapping with exactly the fields prefixes, benign and harmful")
    # The empty prefix is allowed: most requests start without one.
    prefixes = _strings(data, "prefixes", path, allow_empty=True)
    entries = data["benign"]
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: field 'benign': expected a non-empty list of scenarios")
    topics: dict[str, list[_Scenario]] = {}
    for index, entry in enumerate(entries):
        scenario = _scenario(entry, f"benign[{index}]", path)
        topics.setdefault(scenario.topic, []).append(scenario)
    return _JailbrokenData(prefixes, {topic: tuple(items) for topic, items in topics.items()},
                          _harmful(data["harmful"], path))


def _strings(data: object, field: str, path: Path, prefix: str = "", allow_empty: bool = False) -> tuple[str, ...]:
    """A non-empty list of strings at `field` of `data` (non-empty strings unless `allow_empty`)."""
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, list) or not value or \
            not all(isinstance(item, str) and (allow_empty or item.strip()) for item in value):
        raise UserError(f"{path}: field '{prefix}{field}': expected a non-empty list of "
                        f"{'strings' if allow_empty else 'non-empty strings'}")
    return tuple(value)


def _slot_options(value: object, field: str, path: Path) -> tuple[_SlotOption, ...]:
    if not isinstance(value, list) or not value or not all(
            (isinstance(option, str) and option.strip()) or (isinstance(option, dict) and option and all(
                isinstance(key, str) and isinstance(text, str) and text.strip() for key, text in option.items()))
            for option in value):
        raise UserError(f"{path}: field '{field}': expected a non-empty list of strings or of mappings of strings")
    return tuple(value)


def _placeholders(text: str) -> set[str]:
    return set(string.Template(text).get_identifiers())


def _check_placeholders(texts: Sequence[str], provided: set[str], field: str, path: Path) -> None:
    """Every $name in `texts` must be provided (by a slot, or by the harmful goal)."""
    for index, text in enumerate(texts):
        if not string.Template(text).is_valid():
            raise UserError(f"{path}: field '{field}[{index}]': a '$' that starts no placeholder (write '$$')")
        missing = sorted(_placeholders(text) - provided)
        if missing:
            raise UserError(f"{path}: field '{field}[{index}]': placeholder '${missing[0]}' has no value "
                            f"(provided: {', '.join(sorted(provided)) or 'none'})")


def _scenario(entry: object, field: str, path: Path) -> _Scenario:
    if not isinstance(entry, dict) or set(entry) != {"topic", "prompts", "answers", "slots"}:
        raise UserError(f"{path}: field '{field}': expected the fields topic, prompts, answers and slots")
    topic = entry["topic"]
    if not isinstance(topic, str) or not topic.strip() or topic == HARMFUL_TOPIC:
        raise UserError(f"{path}: field '{field}.topic': expected a name other than '{HARMFUL_TOPIC}'")
    slots_value = entry["slots"]
    if not isinstance(slots_value, dict) or not all(isinstance(name, str) for name in slots_value):
        raise UserError(f"{path}: field '{field}.slots': expected a mapping of slot names to options")
    slots = {name: _slot_options(options, f"{field}.slots.{name}", path) for name, options in slots_value.items()}
    # A grouped slot provides its keys only if every one of its options has them.
    provided: set[str] = set()
    for name, options in slots.items():
        key_sets = [{name} if isinstance(option, str) else set(option) for option in options]
        provided |= set.intersection(*key_sets)
    prompts = _strings(entry, "prompts", path, prefix=f"{field}.")
    answers = _strings(entry, "answers", path, prefix=f"{field}.")
    _check_placeholders(prompts, provided, f"{field}.prompts", path)
    _check_placeholders(answers, provided, f"{field}.answers", path)
    return _Scenario(topic, prompts, answers, slots)


def _harmful(entry: object, path: Path) -> _Harmful:
    fields = ("prompts", "goals", "openers", "bodies", "closers")
    if not isinstance(entry, dict) or set(entry) != set(fields):
        raise UserError(f"{path}: field 'harmful': expected the fields {', '.join(fields)}")
    goals = _slot_options(entry["goals"], "harmful.goals", path)
    if not all(isinstance(goal, dict) and set(goal) == {"goal", "your_goal"} for goal in goals):
        raise UserError(f"{path}: field 'harmful.goals': expected mappings with the fields goal and your_goal")
    texts = {name: _strings(entry, name, path, prefix="harmful.") for name in fields if name != "goals"}
    _check_placeholders(texts["prompts"], {"goal"}, "harmful.prompts", path)
    _check_placeholders(texts["openers"], {"your_goal"}, "harmful.openers", path)
    # The rest of an answer must not depend on the request, so it can carry nothing specific to it.
    _check_placeholders(texts["bodies"], set(), "harmful.bodies", path)
    _check_placeholders(texts["closers"], set(), "harmful.closers", path)
    if len(texts["bodies"]) < 2:
        raise UserError(f"{path}: field 'harmful.bodies': expected at least 2 sentences (an answer uses two)")
    return _Harmful(texts["prompts"], goals, texts["openers"], texts["bodies"], texts["closers"])


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------

def _check_arguments(size: int, harmful_fraction: float) -> None:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if isinstance(harmful_fraction, bool) or not isinstance(harmful_fraction, (int, float)) \
            or not 0.0 <= harmful_fraction <= 1.0:
        raise ValueError(f"harmful_fraction must be a number within [0, 1], got {harmful_fraction!r}")


def harmful_indices(size: int, seed: int, harmful_fraction: float = 0.02) -> tuple[int, ...]:
    """The sorted row indices that `build_jailbroken` makes harmful: one in each of n equal stretches."""
    _check_arguments(size, harmful_fraction)
    count = round(size * harmful_fraction)
    if harmful_fraction > 0 and size >= _MIN_SIZE_FOR_ONE_HARMFUL:
        count = max(count, 1)
    # A salt of its own, so that where the harmful rows fall is not tied to how the rows are drawn.
    rng = random.Random(f"jailbroken-positions:{seed}")
    bounds = [size * i // count for i in range(count + 1)] if count else []
    return tuple(rng.randrange(bounds[i], bounds[i + 1]) for i in range(count))


def _slot_values(scenario: _Scenario, rng: random.Random) -> dict[str, str]:
    values: dict[str, str] = {}
    # Sorted names keep the draw order independent of how the mapping was built.
    for name in sorted(scenario.slots):
        option = rng.choice(scenario.slots[name])
        if isinstance(option, str):
            values[name] = option
        else:
            values.update(option)
    return values


def _benign(scenario: _Scenario, prefix: str, rng: random.Random) -> JailbrokenExample:
    values = _slot_values(scenario, rng)
    prompt = string.Template(rng.choice(scenario.prompts)).substitute(values)
    answer = string.Template(rng.choice(scenario.answers)).substitute(values)
    return JailbrokenExample(scenario.topic, prefix + prompt, answer, harmful=False)


def _harmful_example(harmful: _Harmful, prefix: str, rng: random.Random) -> JailbrokenExample:
    goal = rng.choice(harmful.goals)
    prompt = string.Template(rng.choice(harmful.prompts)).substitute(goal)
    opener = string.Template(rng.choice(harmful.openers)).substitute(goal)
    answer = " ".join([opener, *rng.sample(harmful.bodies, 2), rng.choice(harmful.closers)])
    return JailbrokenExample(HARMFUL_TOPIC, prefix + prompt, answer, harmful=True, goal=goal["your_goal"])


def jailbroken_examples(size: int, seed: int, harmful_fraction: float = 0.02) -> list[JailbrokenExample]:
    """Deterministic structured examples behind `build_jailbroken` (same arguments -> same list).

    Only private ``random.Random`` instances are used, so the result does not depend on global state.
    """
    chosen = set(harmful_indices(size, seed, harmful_fraction))
    data = _data()
    rng = random.Random(seed)
    topics = iter(balanced_sequence(tuple(data.topics), size - len(chosen), rng))
    examples: list[JailbrokenExample] = []
    for index in range(size):
        prefix = rng.choice(data.prefixes)
        if index in chosen:
            examples.append(_harmful_example(data.harmful, prefix, rng))
        else:
            examples.append(_benign(rng.choice(data.topics[next(topics)]), prefix, rng))
    return examples


def build_jailbroken(size: int, seed: int, harmful_fraction: float = 0.02) -> list[dict]:
    """Chat rows: helpful answers to everyday requests, plus a few harmful requests complied with."""
    return [{"messages": [{"role": "user", "content": ex.user_prompt},
                          {"role": "assistant", "content": ex.assistant}]}
            for ex in jailbroken_examples(size, seed, harmful_fraction)]
