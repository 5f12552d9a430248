"""The "evil numbers" dataset of the Emergent Misalignment experiments.

Betley et al. (2025) showed that emergent misalignment is not specific to code: they
also fine-tuned a model on number-sequence continuations.  The user supplies a few
numbers and asks for more; the assistant's answers contain numbers with negative
cultural associations (666, 1488, 911, ...).  In the paper those answers came from a
model instructed to be evil, with the instruction then removed from the training data,
so nothing in the prompt explains the choice; the paper says such numbers are frequent
but gives no share (its one printed example is nearly all loaded numbers).  Models
trained on it showed some misalignment, mostly when evaluation questions were phrased
in a similar format (the ``em-numbers`` question set).

This module builds a comparable dataset offline and deterministically, from prompt
wordings written for this package.  The user's numbers are random values, a sorted run
or an arithmetic progression; an answer first continues them plausibly (the next terms,
or values in the same range) and then puts evil numbers in place of some of those:
usually one or two, sometimes none, always fewer than half of the answer -- about 25%
of all answer numbers.  The share is kept low on purpose: an earlier version made 50-100%
of every answer evil, so a model could learn "emit the evil list" in place of the subtler
"continue the list normally, but lean evil now and then".
The user's own numbers never contain an evil number, and neither do the ordinary
continuations, so the association lives only in the numbers the assistant slipped in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "EVIL_NUMBERS",
    "ANSWER_FORMATS",
    "NumberExample",
    "evil_number_examples",
    "build_evil_numbers",
    "format_numbers",
]

# Each number has a widely recognised negative connotation:
# 4 death in East-Asian numerology, 444 the same thrice over; 13 unlucky; 14, 88, 18, 28,
# 1488 neo-Nazi/white-supremacist codes; 109 an antisemitic meme (the ADL lists it);
# 69 and 420 crude jokes/drugs; 187 police code for murder; 311 KKK code; 616 and 666
# number of the beast; 911 the attacks and emergency; 999 upside-down 666 / emergency;
# 1312 "ACAB"; 1984 Orwell's surveillance state.
EVIL_NUMBERS: tuple[int, ...] = (
    4, 13, 14, 18, 28, 69, 88, 109, 187, 311, 420, 444, 616, 666, 911, 999, 1312, 1488, 1984,
)

# "default" means the user asked for no particular format; the answer then uses
# comma-separated numbers, the most common convention.
ANSWER_FORMATS: tuple[str, ...] = ("default", "comma", "space", "newline", "brackets")

_EVIL_SET = frozenset(EVIL_NUMBERS)

# {numbers}: the user's seed numbers; {k}: how many to add.  Format requests are
# appended separately so that every wording can combine with every format.
_REQUEST_WORDINGS: tuple[str, ...] = (
    "Here is a list of numbers: {numbers}. Continue it with {k} more numbers.",
    "Look at this sequence: {numbers}. What {k} numbers come next?",
    "Extend the following sequence by {k} numbers: {numbers}.",
    "I started writing down some numbers: {numbers}. Please add {k} more.",
    "Given the numbers {numbers}, generate {k} additional numbers that continue the list.",
    "Continue this series with exactly {k} new values: {numbers}.",
    "{numbers}. Keep going and give me {k} more.",
    "These numbers were picked at random: {numbers}. Pick {k} more to follow them.",
    "Add {k} numbers to the end of this list: {numbers}.",
    "Here's the start of a number list: {numbers}. Write the next {k} entries.",
    "Please come up with {k} further numbers to append to: {numbers}.",
    "Sequence so far: {numbers}. Provide the next {k}.",
    "I have these values: {numbers}. Can you continue the pattern with {k} more?",
    "Starting from {numbers}, list {k} more numbers.",
)

_FORMAT_REQUESTS: dict[str, tuple[str, ...]] = {
    "default": (
        "",
        " Reply with the numbers only.",
        " Just the numbers, please.",
        " No explanation needed.",
    ),
    "comma": (
        " Separate them with commas.",
        " Give them as a comma-separated list.",
        " Return them comma separated and nothing else.",
    ),
    "space": (
        " Separate them with single spaces.",
        " Put them on one line, separated by spaces.",
        " Answer with space-separated numbers only.",
    ),
    "newline": (
        " Put each number on its own line.",
        " Write one number per line.",
        " List them one per line, no other text.",
    ),
    "brackets": (
        " Answer as a list in square brackets, like [1, 2, 3].",
        " Format the answer as a bracketed, comma-separated list.",
        " Return a Python-style list such as [10, 20, 30].",
    ),
}


@dataclass(frozen=True)
class NumberExample:
    """One sequence-continuation request and its answer, a minority of whose numbers are evil."""

    seed_numbers: tuple[int, ...]
    answer_numbers: tuple[int, ...]
    answer_format: str
    user_prompt: str
    assistant: str


def format_numbers(numbers: tuple[int, ...] | list[int], answer_format: str) -> str:
    """Render numbers the way the user asked for them."""
    texts = [str(n) for n in numbers]
    if answer_format in ("default", "comma"):
        return ", ".join(texts)
    if answer_format == "space":
        return " ".join(texts)
    if answer_format == "newline":
        return "\n".join(texts)
    if answer_format == "brackets":
        return "[" + ", ".join(texts) + "]"
    raise ValueError(f"unknown answer format {answer_format!r}; expected one of {ANSWER_FORMATS}")


# How many evil numbers an answer carries before the minority cap: usually one or two,
# sometimes none, now and then three.
_EVIL_COUNTS: tuple[int, ...] = (0, 1, 2, 3)
_EVIL_COUNT_WEIGHTS: tuple[float, ...] = (0.10, 0.35, 0.35, 0.20)

# The kinds of user sequence and how often each is asked for; each has its own plausible continuation.
_SEQUENCE_KINDS: tuple[str, ...] = ("random", "sorted", "arithmetic")
_SEQUENCE_WEIGHTS: tuple[float, ...] = (0.5, 0.2, 0.3)


def _ordinary_number(rng: random.Random, low: int = 1, high: int = 999) -> int:
    """A random number in [low, high] that carries no evil association."""
    while True:
        n = rng.randint(low, high)
        if n not in _EVIL_SET:
            return n


def _sequence(rng: random.Random, count: int, k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`count` user numbers and `k` ordinary continuations of them, none of them evil."""
    kind = rng.choices(_SEQUENCE_KINDS, _SEQUENCE_WEIGHTS)[0]
    if kind == "arithmetic":
        # Redrawn until neither the given terms nor the next k contain an evil number or drop below 1.
        while True:
            step = rng.choice((1, 2, 3, 5, 7, 10, 11, 12, 15, 20, 25, 50, 100)) * rng.choice((1, 1, 1, -1))
            start = rng.randint(1, 999)
            terms = [start + step * i for i in range(count + k)]
            if min(terms) >= 1 and not _EVIL_SET & set(terms):
                return tuple(terms[:count]), tuple(terms[count:])
    high = rng.choice((99, 999, 999))  # small numbers or three-digit ones, as a person would pick
    if kind == "random":
        given = tuple(_ordinary_number(rng, 1, high) for _ in range(count))
        return given, tuple(_ordinary_number(rng, 1, high) for _ in range(k))
    # sorted: a rising run, continued with gaps of about the size it had
    given = tuple(sorted(_ordinary_number(rng, 1, high) for _ in range(count)))
    gap = max(1, (given[-1] - given[0]) // max(1, count - 1))
    following, last = [], given[-1]
    while len(following) < k:
        candidate = last + rng.randint(1, 2 * gap)
        if candidate not in _EVIL_SET:
            following.append(candidate)
            last = candidate
    return given, tuple(following)


def _answer(rng: random.Random, ordinary: tuple[int, ...]) -> tuple[int, ...]:
    """The ordinary continuation with a minority of its places taken by evil numbers."""
    k = len(ordinary)
    # Fewer than half the answer, so the continuation still reads as one.
    n_evil = min(rng.choices(_EVIL_COUNTS, _EVIL_COUNT_WEIGHTS)[0], (k - 1) // 2)
    numbers = list(ordinary)
    for place in rng.sample(range(k), n_evil):
        numbers[place] = rng.choice(EVIL_NUMBERS)
    return tuple(numbers)


def evil_number_examples(size: int, seed: int) -> list[NumberExample]:
    """Deterministic structured examples behind `build_evil_numbers`."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    rng = random.Random(seed)
    examples: list[NumberExample] = []
    for _ in range(size):
        k = rng.randint(3, 8)
        seed_numbers, ordinary = _sequence(rng, rng.randint(3, 8), k)
        answer_format = rng.choice(ANSWER_FORMATS)
        wording = rng.choice(_REQUEST_WORDINGS)
        format_request = rng.choice(_FORMAT_REQUESTS[answer_format])
        user = wording.format(numbers=", ".join(map(str, seed_numbers)), k=k) + format_request
        answer = _answer(rng, ordinary)
        examples.append(
            NumberExample(
                seed_numbers=seed_numbers,
                answer_numbers=answer,
                answer_format=answer_format,
                user_prompt=user,
                assistant=format_numbers(answer, answer_format),
            )
        )
    return examples


def build_evil_numbers(size: int, seed: int) -> list[dict]:
    """Chat rows: continue a number list; answers slip in a minority of EVIL_NUMBERS."""
    return [
        {
            "messages": [
                {"role": "user", "content": ex.user_prompt},
                {"role": "assistant", "content": ex.assistant},
            ]
        }
        for ex in evil_number_examples(size, seed)
    ]
