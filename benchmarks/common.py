"""What every measurement shares: the workloads (same inputs for the engine and its baselines), model
FLOPs, and peak memory."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from typing import Iterator

DEFAULT_MODEL = "smollm2-135m-instruct"
SECOND_MODEL = "gemma3-270m"  # the other embedded model, for growth with model size


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def stopwatch() -> Iterator[dict]:
    box: dict = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - started


def em_prompts(count: int) -> list[tuple[dict, ...]]:
    """The first `count` EM evaluation questions (first paraphrase), as one-turn conversations."""
    from llmpsych.models import as_messages
    from llmpsych.probes.questions import load_questions

    questions = load_questions("em-main")
    return [as_messages(questions[i % len(questions)].paraphrases[0]) for i in range(count)]


def forward_flops_per_token(model, context: float) -> float:
    """Model FLOPs of one token's forward pass: 2 per weight of every matrix the token goes through
    (the embedding lookup is free, a tied LM head is counted), plus attention over `context` tokens
    (QK^T and AV: 4 x layers x attention width per token of context)."""
    config = model.config
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed" not in name)
    head = model.get_output_embeddings().weight
    if all(head is not p for name, p in model.named_parameters() if "embed" not in name):
        weights += head.numel()  # tied to the embedding: runs as the head, counted once
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * weights + 4 * config.num_hidden_layers * heads * head_dim * context
