"""Activation capture against scoring the same responses (the issue's bound: capture at most ~1.5x scoring's
time) and against a plain loop of transformers forward passes with output_hidden_states.

The workload is every EM question with each of the judging bench's canned answers: several answers per
question, as trait-vector extraction reads them.
"""

from __future__ import annotations

from common import em_prompts, stopwatch
from judging import ANSWERS


def _workload(args: dict):
    from llmpsych.models import load_engine
    from llmpsych.models.activations import CaptureRequest
    from llmpsych.models.hf import EngineOptions

    engine = load_engine(args.get("model", "smollm2-135m-instruct"), EngineOptions(dtype=args.get("dtype", "auto")))
    questions = em_prompts(args.get("questions", 8))
    requests = [CaptureRequest(q, a) for q in questions for a in ANSWERS[:args.get("answers", 4)]]
    return engine, requests


def _result(engine, requests, seconds: float) -> dict:
    tokens = sum(len(engine.backend.prompt_ids(r.messages)) + len(engine.backend.tokenizer(r.response)["input_ids"])
                 for r in requests)
    return {"responses": len(requests), "tokens": tokens, "seconds": seconds, "rate": len(requests) / seconds,
            "unit": "responses/s"}


def engine(args: dict) -> dict:
    engine_, requests = _workload(args)
    engine_.capture(requests[:2])  # warm-up
    with stopwatch() as time:
        engine_.capture(requests)
    return _result(engine_, requests, time["seconds"])


def scoring(args: dict) -> dict:
    """The engine's scorer on the same responses (each the one continuation of its prompt)."""
    from llmpsych.models import ScoreRequest

    engine_, requests = _workload(args)
    scores = [ScoreRequest(r.messages, (r.response,)) for r in requests]
    engine_.score(scores[:2])
    with stopwatch() as time:
        engine_.score(scores)
    return _result(engine_, requests, time["seconds"])


def hidden_states(args: dict) -> dict:
    """One forward pass per response with every hidden state returned, then the three means taken by hand."""
    import torch

    engine_, requests = _workload(args)
    backend = engine_.backend

    def read(request):
        prompt = backend.prompt_ids(request.messages)
        response = backend.tokenizer(request.response, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            states = backend.model(torch.tensor([prompt + response]), output_hidden_states=True).hidden_states[1:]
        return [(h[0, :len(prompt)].mean(0), h[0, len(prompt):].mean(0), h[0, len(prompt) - 1]) for h in states]

    read(requests[0])
    with stopwatch() as time:
        for request in requests:
            read(request)
    return _result(engine_, requests, time["seconds"])
