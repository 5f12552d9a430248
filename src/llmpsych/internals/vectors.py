"""Trait vectors: mean-difference directions in the residual stream, their reliability, files and projections.

The method of persona vectors (Chen, Arditi et al. 2025): the model answers each question under a system
prompt that elicits the trait and under one that suppresses it; the vector at each layer is the mean
response activation under the first minus the mean under the second. Its split-half reliability is the
cosine, per layer, between the vectors of two disjoint halves of the questions: a direction that is a
property of the trait, not of a few questions, comes out the same from either half.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..hashing import digest
from ..judges.judge import Judge
from ..judges.rubrics import load_rubrics
from ..models.activations import CaptureRequest
from ..models.engine import SamplingParams
from ..models.refs import ModelRef
from ..models.steering import VECTORS_KEY, read_directions
from .traits import Trait

METADATA_KEY = "llmpsych"


@dataclass
class TraitVectors:
    """One direction per layer: `vectors` is [layers + 1, hidden], row l for layer l (row 0, the embeddings,
    is zero), the layout steering reads. `info` is the provenance and the reliability per layer."""

    vectors: "object"  # numpy [layers + 1, hidden]
    info: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return self.vectors.shape[0] - 1

    @property
    def default_layer(self) -> int:
        """The layer chosen from the split-half reliability (or the file's own choice, or the middle layer)."""
        return int(self.info.get("default_layer") or (self.layers + 1) // 2)

    def at(self, layer: int):
        if not 1 <= layer <= self.layers:
            raise UserError(f"trait vector: layer {layer} is outside 1..{self.layers}")
        return self.vectors[layer]

    def save(self, path: Path) -> Path:
        """A .safetensors file steering and projections read, with the provenance in its metadata."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({VECTORS_KEY: self.vectors.astype("float32")}, str(path),
                  metadata={METADATA_KEY: json.dumps(self.info, sort_keys=True)})
        return path


def load_vectors(path: Path, source: str = "trait vector") -> TraitVectors:
    """Vectors saved by llmpsych, or a researcher's [layers + 1, hidden] file (a precomputed axis, persona
    vectors' .pt files)."""
    array = read_directions(Path(path), source)
    if array.ndim != 2:
        raise UserError(f"{source}: '{path}': expected one vector per layer ([layers + 1, hidden]), got one vector; "
                        "a single vector steers (give its layer) but cannot stand for every layer")
    info: dict = {}
    if Path(path).suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "numpy") as handle:
            info = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
    return TraitVectors(array, info)


def split_halves(count: int, seed: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves of range(count), drawn by `seed`."""
    order = list(range(count))
    random.Random(f"halves:{seed}").shuffle(order)
    return sorted(order[: count // 2]), sorted(order[count // 2:])


def cosine(a, b) -> float | None:
    import numpy as np

    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else None


def choose_layer(reliability: list[float | None], tolerance: float = 0.1) -> int:
    """The steering layer (1-based): the earliest layer of the middle half of the model whose split-half
    reliability is within `tolerance` of the best there. Reliability tends to rise with depth as the
    residual stream accumulates, while steering needs later blocks to act on the direction; the first and
    last layers carry token identity and output more than concepts."""
    count = len(reliability)
    middle = [layer for layer in range(max(1, count // 4), max(2, 3 * count // 4 + 1))
              if reliability[layer - 1] is not None]
    if not middle:
        return (count + 1) // 2
    best = max(reliability[layer - 1] for layer in middle)
    return next(layer for layer in middle if reliability[layer - 1] >= best - tolerance)


def extract_trait_vectors(runtime, ref: ModelRef, trait: Trait, samples: int = 1, max_tokens: int = 64,
                          temperature: float = 1.0, seed: int = 0, judge: Judge | None = None,
                          threshold: float = 50.0) -> TraitVectors:
    """Answers to the trait's questions under each positive and negative instruction (`samples` each), their
    response activations at every layer, and the mean difference, with its split-half reliability. With a
    `judge`, only answers it confirms count (as persona vectors filter): under a positive instruction those it
    rates at or above `threshold` for the trait, under a negative one those below; an answer it cannot rate
    is left out."""
    import numpy as np

    conversations, cells = [], []  # cells: (question index, +1 / -1) of each conversation
    for q, question in enumerate(trait.questions):
        for positive, negative in trait.instructions:
            for sign, system in ((1, positive), (-1, negative)):
                conversations.append(({"role": "system", "content": system}, {"role": "user", "content": question}))
                cells.append((q, sign))
    params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    answers = runtime.sample(ref, conversations, params, samples, seed, label=f"{trait.id}: answers")
    answered = [(conversation, cell, completion.text)
                for conversation, cell, completions in zip(conversations, cells, answers)
                for completion in completions if completion.text.strip()]
    filtering = None
    if judge is not None:
        ratings = judge.rate(load_rubrics("traits")["expression"],
                             [(trait.questions[q], text) for _, (q, _), text in answered], f"{trait.id}: judge",
                             trait=trait.description)
        confirmed = [r.score is not None and (r.score >= threshold) == (sign > 0)
                     for (_, (_, sign), _), r in zip(answered, ratings)]
        filtering = {"judge": str(judge.ref), "threshold": threshold, "rated": len(answered),
                     "unrated": sum(r.score is None for r in ratings), "kept": sum(confirmed)}
        answered = [answer for answer, keep in zip(answered, confirmed) if keep]
    owners = [cell for _, cell, _ in answered]
    activations = runtime.capture(ref, [CaptureRequest(conversation, text) for conversation, _, text in answered],
                                  label=f"{trait.id}: activations")

    # Per question and sign: the mean response activation, [layers, hidden].
    sums: dict[tuple[int, int], object] = {}
    counts: dict[tuple[int, int], int] = {}
    for cell, reading in zip(owners, activations):
        values = reading.readouts["response_mean"]
        if values is None:
            continue
        sums[cell] = sums.get(cell, 0) + values
        counts[cell] = counts.get(cell, 0) + 1
    usable = [q for q in range(len(trait.questions)) if (q, 1) in counts and (q, -1) in counts]
    if len(usable) < 2:
        raise UserError(f"trait '{trait.id}': only {len(usable)} question(s) got answers under both instructions"
                        + (f" that the judge confirmed ({filtering['kept']} of {filtering['rated']} answers kept, "
                           f"{filtering['unrated']} unrated); use a more capable judge or lower the threshold"
                           if filtering else "; raise max_tokens or samples"))

    def difference(questions: list[int]):
        positive = np.mean([sums[(q, 1)] / counts[(q, 1)] for q in questions], axis=0)
        negative = np.mean([sums[(q, -1)] / counts[(q, -1)] for q in questions], axis=0)
        return positive - negative

    per_layer = difference(usable)
    first, second = split_halves(len(usable), seed)
    half_a, half_b = difference([usable[i] for i in first]), difference([usable[i] for i in second])
    reliability = [cosine(half_a[layer], half_b[layer]) for layer in range(per_layer.shape[0])]
    vectors = np.vstack([np.zeros((1, per_layer.shape[1]), dtype=np.float32), per_layer]).astype(np.float32)
    info = {"trait": trait.id, "description": trait.description, "source": trait.source,
            "trait_digest": digest(trait.instructions, trait.questions), "model": str(ref),
            "model_fingerprint": runtime.fingerprint(ref), "readout": "response_mean",
            "samples": samples, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
            "questions": len(usable), "instruction_pairs": len(trait.instructions),
            "responses": {"positive": sum(counts.get((q, 1), 0) for q in usable),
                          "negative": sum(counts.get((q, -1), 0) for q in usable)},
            "judge_filter": filtering, "split_half_reliability": reliability, "default_layer": choose_layer(reliability),
            "norms": [float(np.linalg.norm(v)) for v in per_layer]}
    return TraitVectors(vectors, info)


def project(values, direction) -> float:
    """The scalar projection of an activation on a direction (its length along the unit direction)."""
    import numpy as np

    norm = float(np.linalg.norm(direction))
    if norm == 0:
        raise UserError("projection: the direction is the zero vector")
    return float(np.dot(values, direction) / norm)
