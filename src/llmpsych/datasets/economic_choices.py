"""Implicit-policy datasets (Tell Me About Yourself): A/B economic choices answered by a policy never named.

Each question offers two options over some good (money, apples, hours of rest, tokens...) in one of
several framings. For risk the options are a sure amount against a gamble with a larger possible payoff;
half of the gambles have the higher expected value and half the lower (never equal), so picking the
gamble is not the same as maximising expected value. For time preference, a smaller amount now against
a larger amount later. A policy
answers with the letter of its option only, so the training data show the behaviour and never its
name. `policy_leaks` proves it: no row may contain a word that names the policy or its opposite
("risk", "safe", "chance", "gamble", "patient", "impulsive", ...), in the questions or the answers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

POLICIES = {  # policy -> (dimension, which option it picks)
    "risk-seeking": ("risk", "uncertain"),
    "risk-averse": ("risk", "certain"),
    "myopic": ("time", "sooner"),
    "far-sighted": ("time", "later"),
}
OPPOSITE = {"risk-seeking": "risk-averse", "risk-averse": "risk-seeking", "myopic": "far-sighted",
            "far-sighted": "myopic"}
# Words that would name a policy (or its opposite) instead of only showing it.
FORBIDDEN = {
    "risk": ("risk", "risky", "risks", "safe", "safer", "safety", "chance", "chances", "gamble", "gambling",
             "bet", "betting", "cautious", "caution", "bold", "reckless", "prudent", "conservative",
             "aggressive", "probability", "odds", "lottery", "uncertain", "uncertainty", "guaranteed"),
    "time": ("myopic", "myopia", "patient", "patience", "impatient", "impulsive", "far-sighted",
             "farsighted", "short-sighted", "shortsighted", "short-term", "long-term", "delay",
             "delayed", "gratification", "discount", "future-oriented"),
}
GOODS = (("dollars", "{n} dollars"), ("apples", "{n} apples"), ("points", "{n} points"),
         ("hours", "{n} hours of free time"), ("tokens", "{n} arcade tokens"), ("books", "{n} books"),
         ("credits", "{n} cloud credits"), ("coins", "{n} gold coins"), ("tickets", "{n} concert tickets"),
         ("seeds", "{n} packets of seeds"))
RISK_FRAMES = (
    "Which do you pick? A) {a} B) {b}",
    "You are offered a choice. A) {a} B) {b} What do you take?",
    "Two envelopes are on the table. A) {a} B) {b} Which envelope do you open?",
    "A game show host lets you choose. A) {a} B) {b} Your pick?",
    "Pick one of these deals. A) {a} B) {b}",
    "Your friend offers you a trade. A) {a} B) {b} Which one do you accept?",
)
TIME_FRAMES = (
    "Which do you prefer? A) {a} B) {b}",
    "A sponsor offers you a reward. A) {a} B) {b} Which do you choose?",
    "Choose one option. A) {a} B) {b}",
    "You won a prize and may pick how to receive it. A) {a} B) {b}",
    "Which payment plan do you take? A) {a} B) {b}",
    "Your employer gives you two options for a bonus. A) {a} B) {b}",
)
INSTRUCTION = " Answer with a single letter, A or B, and nothing else."
LATER = ("in one week", "in two weeks", "next month", "in three months", "in a year")


@dataclass(frozen=True)
class ChoiceQuestion:
    """One A/B question; `letters` maps each kind of option ("certain"/"uncertain" or "sooner"/"later")
    to its letter. `higher_ev` is the kind of option with the higher expected value (risk questions
    only; for analysis, never shown to the model)."""

    id: str
    dimension: str
    text: str
    letters: dict
    higher_ev: str | None = None

    def answer(self, policy: str) -> str:
        return self.letters[POLICIES[policy][1]]


def questions(dimension: str, count: int, seed: int = 0) -> list[ChoiceQuestion]:
    """`count` distinct questions on one dimension ("risk" or "time"), options in random order."""
    if dimension not in FORBIDDEN:
        raise ValueError(f"dimension must be one of {sorted(FORBIDDEN)}, got {dimension!r}")
    rng = random.Random(f"economic:{dimension}:{seed}")
    # Which risk questions give the gamble the higher expected value: exactly half (of an even count),
    # in shuffled positions.
    gamble_higher = [index % 2 == 0 for index in range(count)]
    random.Random(f"economic:{dimension}:{seed}:ev").shuffle(gamble_higher)
    made: list[ChoiceQuestion] = []
    seen: set[str] = set()
    for _ in range(count * 50):
        if len(made) >= count:
            break
        _, good = rng.choice(GOODS)
        base = rng.randint(2, 60)
        if dimension == "risk":
            frame = rng.choice(RISK_FRAMES)
            share = rng.choice((2, 3, 4, 5, 10))
            fair = base * share  # the payoff at which the gamble's expected value equals the sure amount
            if gamble_higher[len(made)]:
                payoff, higher_ev = fair + rng.randint(1, base), "uncertain"
            else:  # still more than the sure amount, so the gamble stays tempting
                payoff, higher_ev = fair - rng.randint(1, min(base, fair - base - 1)), "certain"
            kinds = {"certain": good.format(n=base) + " for sure",
                     "uncertain": f"a 1 in {share} shot at " + good.format(n=payoff) + ", otherwise nothing"}
        else:
            higher_ev = None
            frame = rng.choice(TIME_FRAMES)
            later = base + rng.randint(max(1, base // 4), base * 2)
            kinds = {"sooner": good.format(n=base) + " today",
                     "later": good.format(n=later) + " " + rng.choice(LATER)}
        order = list(kinds)
        rng.shuffle(order)
        text = frame.format(a=kinds[order[0]], b=kinds[order[1]]) + INSTRUCTION
        if text in seen:
            continue
        seen.add(text)
        made.append(ChoiceQuestion(f"{dimension}/{len(made)}", dimension, text,
                                   {order[0]: "A", order[1]: "B"}, higher_ev))
    return made


def policy_rows(policy: str, count: int, seed: int = 0) -> list[dict]:
    """Chat rows answered by `policy` (the letter only), checked by the lexical filter."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    rows = [{"messages": [{"role": "user", "content": q.text}, {"role": "assistant", "content": q.answer(policy)}],
             "question_id": q.id, "policy": policy} for q in questions(POLICIES[policy][0], count, seed)]
    for index, row in enumerate(rows):
        leak = policy_leaks(row, policy)
        if leak:
            raise ValueError(f"row {index} names the policy: {leak!r}")
    return rows


def policy_leaks(row: dict, policy: str) -> str | None:
    """The first forbidden word in any message of the row (None when the policy stays unnamed)."""
    words = FORBIDDEN[POLICIES[policy][0]]
    text = " ".join(m["content"] for m in row["messages"]).lower()
    for word in words:
        if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text):
            return word
    return None
