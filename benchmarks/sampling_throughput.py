"""Sampling throughput: the llmpsych engine against a plain per-prompt `model.generate` loop.

Both sides use the same loaded model, dtype, prompts, samples per prompt and token budget, in one
run; the figure that matters is the ratio. Tokens are the generated tokens up to and including the
end-of-turn token (padding after it does not count).

    python benchmarks/sampling_throughput.py --samples 8 --max-tokens 96
"""

from __future__ import annotations

import argparse
import time

import torch

from llmpsych.models import GenerateRequest, SamplingParams, as_messages, load_engine
from llmpsych.models.hf import EngineOptions
from llmpsych.probes.questions import load_questions


def baseline(backend, prompts, samples: int, max_tokens: int) -> tuple[int, float]:
    """For each prompt, one `model.generate` call with num_return_sequences=samples (HF's sampler)."""
    tokens, started = 0, time.perf_counter()
    for messages in prompts:
        ids = torch.tensor([backend.prompt_ids(messages)])
        with torch.inference_mode():
            output = backend.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                            top_p=1.0, top_k=0, max_new_tokens=max_tokens,
                                            num_return_sequences=samples, pad_token_id=backend.tokenizer.pad_token_id)
        for row in output[:, ids.shape[1]:].tolist():
            stops = [i for i, t in enumerate(row) if t in backend.stop_token_ids]
            tokens += (stops[0] + 1) if stops else len(row)
    return tokens, time.perf_counter() - started


def engine_run(engine, prompts, samples: int, max_tokens: int) -> tuple[int, float]:
    """All prompts x samples as one request list: batched, finished rows dropped, per-sample seeds."""
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=max_tokens, min_tokens=0)
    requests = [GenerateRequest(m, params, seed=1000 * i + j) for i, m in enumerate(prompts) for j in range(samples)]
    started = time.perf_counter()
    completions = engine.generate(requests)
    elapsed = time.perf_counter() - started
    return sum(c.tokens + (c.finish_reason == "stop") for c in completions), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--prompts", type=int, default=8, help="how many of the EM questions to use")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    engine = load_engine(args.model, EngineOptions(dtype=args.dtype))
    questions = load_questions("em-main")[: args.prompts]
    prompts = [as_messages(q.paraphrases[0]) for q in questions]
    torch.manual_seed(0)
    engine_run(engine, prompts[:1], 2, 8)  # warm-up of both paths (first calls allocate)
    baseline(engine.backend, prompts[:1], 2, 8)

    base_tokens, base_seconds = baseline(engine.backend, prompts, args.samples, args.max_tokens)
    ours_tokens, ours_seconds = engine_run(engine, prompts, args.samples, args.max_tokens)
    base_rate, ours_rate = base_tokens / base_seconds, ours_tokens / ours_seconds
    print(f"model {args.model}, dtype {engine.backend.dtype}, {torch.get_num_threads()} threads, "
          f"{len(prompts)} prompts x {args.samples} samples, max_tokens {args.max_tokens}")
    print(f"model.generate per prompt: {base_tokens} tokens in {base_seconds:.1f} s = {base_rate:.0f} tokens/s")
    print(f"llmpsych engine:           {ours_tokens} tokens in {ours_seconds:.1f} s = {ours_rate:.0f} tokens/s")
    print(f"ratio: {ours_rate / base_rate:.2f}x")


if __name__ == "__main__":
    main()
