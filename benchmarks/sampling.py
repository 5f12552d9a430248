"""Sampling throughput: the llmpsych engine against plain `model.generate`, on the same loaded model,
prompts, samples per prompt, token budget and sampler settings.

Generated tokens count up to and including the end-of-turn token; padding after it does not count.
"""

from __future__ import annotations

from common import em_prompts, forward_flops_per_token, stopwatch

TEMPERATURE = 1.0


def _workload(args: dict):
    from llmpsych.models import load_engine
    from llmpsych.models.hf import EngineOptions

    engine = load_engine(args.get("model", "smollm2-135m-instruct"), EngineOptions(dtype=args.get("dtype", "auto")))
    return engine, em_prompts(args.get("prompts", 8)), args.get("samples", 8), args.get("max_tokens", 64)


def _generated(backend, rows) -> int:
    tokens = 0
    for row in rows:
        stops = [i for i, t in enumerate(row) if t in backend.stop_token_ids]
        tokens += (stops[0] + 1) if stops else len(row)
    return tokens


def _hf_generate(backend, prompt_rows: list[list[int]], samples: int, max_tokens: int):
    """One `model.generate` call (HF's own sampler, left padding) for these prompts x samples."""
    import torch

    width = max(len(p) for p in prompt_rows)
    pad = backend.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_rows])
    with torch.inference_mode():
        out = backend.model.generate(ids, attention_mask=mask, do_sample=True, temperature=TEMPERATURE, top_p=1.0,
                                     top_k=0, max_new_tokens=max_tokens, num_return_sequences=samples,
                                     pad_token_id=pad)
    return out[:, width:].tolist()


def _result(engine, tokens: int, seconds: float, prompts, max_tokens: int) -> dict:
    backend = engine.backend
    prompt_length = sum(len(backend.prompt_ids(m)) for m in prompts) / len(prompts)
    flops = forward_flops_per_token(backend.model, prompt_length + max_tokens / 2)
    return {"tokens": tokens, "seconds": seconds, "rate": tokens / seconds, "unit": "tokens/s",
            "flops": flops * tokens / seconds, "dtype": backend.dtype}


def engine(args: dict) -> dict:
    """Every prompt x sample as one request list (what a recipe's sampling step sends)."""
    from llmpsych.models import GenerateRequest, SamplingParams

    engine_, prompts, samples, max_tokens = _workload(args)
    params = SamplingParams(temperature=TEMPERATURE, max_tokens=max_tokens)
    requests = [GenerateRequest(m, params, seed=1000 * i + j) for i, m in enumerate(prompts) for j in range(samples)]
    engine_.generate(requests[:2])  # warm-up: first calls allocate
    with stopwatch() as time:
        completions = engine_.generate(requests)
    tokens = sum(c.tokens + (c.finish_reason == "stop") for c in completions)
    return _result(engine_, tokens, time["seconds"], prompts, max_tokens)


def _hf_baseline(args: dict, prompts_per_call) -> dict:
    """`model.generate` over the prompts, `prompts_per_call(backend, samples)` prompts x samples per call."""
    import torch

    engine_, prompts, samples, max_tokens = _workload(args)
    backend = engine_.backend
    torch.manual_seed(0)
    _hf_generate(backend, [backend.prompt_ids(prompts[0])], 2, 8)  # warm-up
    per_call = prompts_per_call(backend, samples)
    with stopwatch() as time:
        tokens = 0
        for start in range(0, len(prompts), per_call):
            rows = [backend.prompt_ids(m) for m in prompts[start:start + per_call]]
            tokens += _generated(backend, _hf_generate(backend, rows, samples, max_tokens))
    return _result(engine_, tokens, time["seconds"], prompts, max_tokens)


def per_prompt(args: dict) -> dict:
    """For each prompt, one `model.generate` call with num_return_sequences = samples."""
    return _hf_baseline(args, lambda backend, samples: 1)


def batched(args: dict) -> dict:
    """All prompts x samples in `model.generate` calls of as many rows as the engine's batch."""
    return _hf_baseline(args, lambda backend, samples: max(1, backend.options.generate_batch_size // samples))
