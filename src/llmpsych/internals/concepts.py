"""Concept directions: what a model's residual stream holds when it is about to talk about a word.

A concept's direction at each layer is the activation at the last prompt token of "Tell me about <word>."
minus the mean of that activation over every word of the list (Lindsey 2025's baseline subtraction), so what
all the prompts share cancels. Its control is a random direction with the same norm at every layer: injecting
it perturbs the model as much without carrying the concept.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import UserError
from ..models.activations import CaptureRequest
from ..models.refs import ModelRef
from ..shipped import shipped
from ..yamlio import read_yaml
from .vectors import TraitVectors

PROMPT = "Tell me about {word}."


def load_concepts(spec: str | Path, source: str = "concepts") -> list[str]:
    """A shipped word list by name (`concepts`) or a researcher's YAML list of words, checked."""
    path = shipped("concepts", spec, source)
    words = read_yaml(path, "a YAML list of words")
    if not isinstance(words, list) or len(words) < 3:
        raise UserError(f"{path}: expected a YAML list of at least 3 words")
    for index, word in enumerate(words):
        if not isinstance(word, str) or not re.fullmatch(r"[A-Za-z][A-Za-z -]{0,39}", word):
            raise UserError(f"{path}: entry {index + 1}: expected a word or short phrase of letters, got {word!r}")
    duplicates = sorted({w for w in words if words.count(w) > 1})
    if duplicates:
        raise UserError(f"{path}: '{duplicates[0]}' is listed twice")
    return list(words)


def concept_vectors(runtime, ref: ModelRef, words: list[str]) -> dict[str, TraitVectors]:
    """word -> its direction per layer ([layers + 1, hidden], row 0 zero), with provenance."""
    import numpy as np

    readings = runtime.capture(ref, [CaptureRequest(({"role": "user", "content": PROMPT.format(word=w)},))
                                     for w in words], label="concept directions")
    stacked = np.stack([r.readouts["prompt_last"] for r in readings])  # [words, layers, hidden]
    directions = stacked - stacked.mean(axis=0, keepdims=True)
    zero = np.zeros((1, stacked.shape[2]), dtype=np.float32)
    return {word: TraitVectors(np.vstack([zero, directions[i]]).astype(np.float32),
                               {"concept": word, "prompt": PROMPT, "readout": "prompt_last", "baseline": "mean of "
                                f"{len(words)} words", "model": str(ref), "model_fingerprint": runtime.fingerprint(ref)})
            for i, word in enumerate(words)}


def matched_random(vectors: TraitVectors, seed: str) -> TraitVectors:
    """A random direction with the same norm as `vectors` at every layer (drawn from `seed`)."""
    import numpy as np

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    noise = rng.normal(size=vectors.vectors.shape).astype(np.float32)
    norms = np.linalg.norm(vectors.vectors, axis=1, keepdims=True)
    noise *= norms / np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    return TraitVectors(noise, {**vectors.info, "control": "random direction of the same norm per layer",
                                "seed": seed})
