"""The vLLM engine: local and hub models on CUDA GPUs, every LoRA adapter of a base on one loaded copy.

vLLM pins its own torch and transformers, so it lives in an environment of its own (`pip install
'llmpsych[vllm]'` there) and is imported only when a run asks for `engine: {backend: vllm}`. It answers
as the transformers engine does wherever vLLM allows:

* prompts: the same `ChatTokenizer` renders every conversation and vLLM is given the token ids, so both
  engines see the same tokens (vLLM's own chat rendering is not used);
* sampling: one vLLM request per GenerateRequest (n=1) carrying that request's seed, so a sample depends
  on its seed alone, not on the rest of the batch. vLLM draws other random numbers than the transformers
  engine, so sampled texts differ between the two; greedy texts agree up to kernel rounding. The same
  stop tokens and stop strings end a reply; the model's generation_config.json sets no sampling defaults;
* scores: a continuation's teacher-forced log-probability comes from vLLM's prompt log-probabilities of
  prompt + continuation. The closure term (ScoreRequest.closed) needs the probability that the next token
  goes on with a letter or digit, a sum over much of the vocabulary; vLLM returns the top TOP_LOGPROBS
  alternatives, which bound that sum. Where the bound leaves the term uncertain by more than
  CLOSURE_TOLERANCE, the whole next-token distribution at that one position is fetched.

Costs that differ: vLLM reads no prefix cache for requests that ask for prompt log-probabilities, so
scoring k continuations runs the prompt k times (the transformers engine runs it once, with a token trie).

The pure parts (argument mapping, adapter ids, scores from returned log-probabilities, completions) take
plain objects shaped like vLLM's, so they are tested without vLLM installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .chat import ChatTokenizer
from .engine import Completion, GenerateRequest, Progress, SamplingParams, ScoreRequest
from .hf import HFEngine, cut_at_stop, model_path
from .options import EngineOptions, resolve_dtype, template_kwargs
from .refs import ModelRef

TOP_LOGPROBS = 20  # alternatives per closure term: vLLM's default cap, and enough for peaked distributions
CLOSURE_TOLERANCE = 1e-3  # nats a closure term may be off (by unseen tokens) before the full distribution is fetched
MAX_LORA_RANK = 64  # the largest rank of the training presets; vLLM sizes its LoRA buffers by it
MAX_LORAS = 4  # adapters kept on the GPU at once: a call uses one, a few spare reloads when runs alternate

# One token's log-probability in the whole vocabulary, for the closure terms the top alternatives leave open.
_FULL_DISTRIBUTION = {"max_tokens": 1, "temperature": 0.0, "logprobs": -1, "detokenize": False}


# ---- engine and request arguments ---------------------------------------------------------------
def engine_arguments(folder: Path, options: EngineOptions, dtype: str) -> dict:
    """Keyword arguments of `vllm.LLM` for one base model."""
    return {
        "model": str(folder), "dtype": dtype, "seed": 0,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "enable_prefix_caching": True,
        # Always on: one engine serves every adapter on this base, and the first caller may be the base itself.
        "enable_lora": True, "max_lora_rank": MAX_LORA_RANK, "max_loras": MAX_LORAS,
        # Lifts the cap only: requests ask for TOP_LOGPROBS, or the whole vocabulary (-1) for one position.
        "max_logprobs": -1,
        # Sample as each request says, not with the defaults of the model's generation_config.json.
        "generation_config": "vllm",
    }


def vllm_seed(seed: int) -> int:
    """A request seed as vLLM takes it: in [0, 2**63) (vLLM reads -1 as "no seed")."""
    return seed % (1 << 63)


def sampling_arguments(params: SamplingParams, seed: int, stop_token_ids: Iterable[int],
                       implicit_stops: tuple[str, ...] = ()) -> dict:
    """Keyword arguments of `vllm.SamplingParams` for one GenerateRequest.

    `stop_token_ids` are the engine's end-of-turn tokens; `implicit_stops` the stop strings the chat
    template implies (a base model's next "User:" turn).
    """
    arguments = {"n": 1, "temperature": params.temperature, "top_p": params.top_p,
                 "max_tokens": params.max_tokens, "min_tokens": params.min_tokens,
                 "stop": list(params.stop + implicit_stops), "stop_token_ids": sorted(stop_token_ids)}
    if params.temperature > 0:  # greedy decoding draws no random numbers
        arguments["seed"] = vllm_seed(seed)
    return arguments


def score_arguments(closes: bool) -> dict:
    """Keyword arguments of `vllm.SamplingParams` for scoring one continuation given as prompt + its tokens.

    The prompt log-probabilities hold the continuation's own tokens (1 alternative, not 0: the prompt
    token's log-probability comes with any number); the one generated token's alternatives bound the
    closure term when the continuation must end there.
    """
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1,
            "logprobs": TOP_LOGPROBS if closes else None, "detokenize": False}


class AdapterIds:
    """A positive int per adapter folder, fixed for the engine's life: vLLM caches adapters by this id,
    so one id must never name two folders."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __call__(self, adapter: Path) -> int:
        return self._ids.setdefault(str(Path(adapter).resolve()), len(self._ids) + 1)


def lora_arguments(adapter: Path, ids: AdapterIds) -> dict:
    """Keyword arguments of `vllm.lora.request.LoRARequest` for an adapter folder."""
    folder = str(Path(adapter).resolve())
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    rank = max([config.get("r", 0), *(config.get("rank_pattern") or {}).values()])
    if rank > MAX_LORA_RANK:
        raise UserError(f"adapter '{adapter}': LoRA rank {rank} is above the vLLM engine's limit of {MAX_LORA_RANK} "
                        "(use engine backend 'hf' for it)")
    return {"lora_name": folder, "lora_int_id": ids(adapter), "lora_path": folder}


def generation_eos(folder: Path) -> int | list[int] | None:
    """The EOS id(s) of the model's generation config, as transformers reads it, without loading weights."""
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(folder).eos_token_id
    except OSError:  # no generation_config.json: transformers derives one from config.json
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder)).eos_token_id


# ---- outputs ------------------------------------------------------------------------------------
def completion_from_output(output, stops: tuple[str, ...]) -> Completion:
    """A Completion from a vLLM CompletionOutput (text, token_ids, finish_reason, stop_reason).

    The count leaves out the end-of-turn token that stopped the reply, which the transformers engine never
    appends. The text is cut at the earliest stop string once more because vLLM ignores stop strings
    within the first min_tokens tokens and the transformers engine does not (the count then still
    includes the tokens vLLM went on to generate).
    """
    if output.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM ended a request with finish_reason {output.finish_reason!r}")
    by_token = output.finish_reason == "stop" and not isinstance(output.stop_reason, str)
    text = cut_at_stop(output.text, stops)
    finish = "stop" if output.finish_reason == "stop" or text != output.text else "length"
    return Completion(text, len(output.token_ids) - (1 if by_token else 0), finish)


@dataclass(frozen=True)
class ScorePlan:
    """One ScoreRequest as vLLM requests: one per distinct continuation, prompt + its tokens."""

    prompt: tuple[int, ...]
    distinct: tuple[tuple[int, ...], ...]  # the distinct continuations' tokens, one vLLM request each
    which: tuple[int, ...]  # for each continuation, its index in `distinct`
    closed: tuple[bool, ...]  # for each continuation, whether it must end where it ends

    def tokens(self, index: int) -> list[int]:
        """The prompt of the vLLM request for distinct continuation `index`."""
        return list(self.prompt + self.distinct[index])

    def closes(self, index: int) -> bool:
        """Whether distinct continuation `index` needs its closure term."""
        return any(closed for which, closed in zip(self.which, self.closed) if which == index)


def plan_score(prompt: Sequence[int], continuations: Sequence[Sequence[int]], closed: str) -> ScorePlan:
    """Which requests score `continuations` (token ids) after `prompt`, and which need a closure term.

    The rule is the transformers engine's: "all" closes every continuation, "prefixes" those whose tokens
    begin another continuation's.
    """
    sequences = [tuple(c) for c in continuations]
    distinct = tuple(dict.fromkeys(sequences))

    def begins_another(sequence: tuple[int, ...]) -> bool:
        return any(len(other) > len(sequence) and other[:len(sequence)] == sequence for other in distinct)

    needs = tuple(closed == "all" or (closed == "prefixes" and begins_another(s)) for s in sequences)
    return ScorePlan(tuple(prompt), distinct, tuple(distinct.index(s) for s in sequences), needs)


def teacher_forced_logprob(prompt_logprobs: Sequence[Mapping | None], start: int, tokens: Sequence[int]) -> float:
    """The summed log-probability of `tokens`, which stand at positions start.. of a vLLM prompt."""
    return sum(prompt_logprobs[start + offset][token].logprob for offset, token in enumerate(tokens))


def closure_term(alternatives: Mapping, continuing: Container[int]) -> tuple[float, float]:
    """log P(the next token does not go on with the word or number), and how far off it may be.

    `alternatives` maps token ids to vLLM Logprob objects: the top alternatives, or the whole vocabulary.
    Tokens not among them hold the mass the alternatives leave; were it all continuing, the term would be
    lower by the second value (0 for the whole vocabulary). The clamp is the transformers engine's.
    """
    seen = going_on = 0.0
    for token, value in alternatives.items():
        probability = math.exp(value.logprob)
        seen += probability
        if token in continuing:
            going_on += probability
    unseen = max(0.0, 1.0 - seen)
    term = math.log1p(-min(going_on, 1 - 1e-7))
    return term, term - math.log1p(-min(going_on + unseen, 1 - 1e-7))


def uncertain_closures(plan: ScorePlan, next_logprobs: Sequence[Mapping | None],
                       continuing: Container[int]) -> list[int]:
    """The distinct continuations whose closure term the returned alternatives leave too uncertain."""
    return [index for index in range(len(plan.distinct)) if plan.closes(index)
            and closure_term(next_logprobs[index], continuing)[1] > CLOSURE_TOLERANCE]


def continuation_scores(plan: ScorePlan, prompt_logprobs: Sequence[Sequence[Mapping | None]],
                        next_logprobs: Sequence[Mapping | None], continuing: Container[int]) -> list[float]:
    """Each continuation's score: teacher-forced log-probability, plus the closure term where it must end.

    `prompt_logprobs[i]` and `next_logprobs[i]` are vLLM's prompt log-probabilities and the generated
    token's alternatives for the request of distinct continuation i.
    """
    scores = []
    for index, closed in zip(plan.which, plan.closed):
        score = teacher_forced_logprob(prompt_logprobs[index], len(plan.prompt), plan.distinct[index])
        if closed:
            score += closure_term(next_logprobs[index], continuing)[0]
        scores.append(score)
    return scores


# ---- the backend ----------------------------------------------------------------------------------
class VLLMBackend(ChatTokenizer):
    """One vLLM engine for one base model; every adapter on that base runs on it (multi-LoRA)."""

    def __init__(self, base: ModelRef, options: EngineOptions = EngineOptions(backend="vllm")):
        try:
            import vllm
        except ImportError:
            raise UserError("engine backend 'vllm': vLLM is not installed here; it pins its own torch, so install "
                            "it in an environment of its own: pip install 'llmpsych[vllm]'") from None
        import torch

        if options.device not in ("auto", "cuda") or not torch.cuda.is_available():
            raise UserError(f"engine backend 'vllm' runs on CUDA GPUs only (device {options.device!r}, CUDA "
                            f"{'available' if torch.cuda.is_available() else 'not available'}); pick GPUs with "
                            "CUDA_VISIBLE_DEVICES, or use backend 'hf'")
        folder = model_path(base)
        super().__init__(folder, options.chat_template, template_kwargs(options))
        self.base = base
        self.options = options
        self.dtype = resolve_dtype(options.dtype, "cuda")
        self.stop_token_ids = self.stop_tokens(generation_eos(folder))
        self.llm = vllm.LLM(**engine_arguments(folder, options, self.dtype))
        self._adapter_ids = AdapterIds()

    def generate(self, adapter: Path | None, requests: list[GenerateRequest],
                 progress: Progress | None = None) -> list[Completion]:
        outputs = self._run([self.prompt_ids(r.messages) for r in requests],
                            [sampling_arguments(r.params, r.seed, self.stop_token_ids, self.implicit_stops)
                             for r in requests], adapter)
        if progress:
            progress(len(requests))
        return [completion_from_output(output.outputs[0], request.params.stop + self.implicit_stops)
                for output, request in zip(outputs, requests)]

    def score(self, adapter: Path | None, requests: list[ScoreRequest],
              progress: Progress | None = None) -> list[list[float]]:
        continuing = self.word_continuation_ids()
        plans = [plan_score(self.prompt_ids(r.messages), [self._continuation_ids(c) for c in r.continuations],
                            r.closed) for r in requests]
        asked = [(p, index) for p, plan in enumerate(plans) for index in range(len(plan.distinct))]
        outputs = self._run([plans[p].tokens(i) for p, i in asked],
                            [score_arguments(plans[p].closes(i)) for p, i in asked], adapter)
        prompt_logprobs = [[None] * len(plan.distinct) for plan in plans]
        next_logprobs = [[None] * len(plan.distinct) for plan in plans]
        for (p, index), output in zip(asked, outputs):
            prompt_logprobs[p][index] = output.prompt_logprobs
            next_logprobs[p][index] = (output.outputs[0].logprobs or [None])[0]
        again = [(p, index) for p, plan in enumerate(plans)
                 for index in uncertain_closures(plan, next_logprobs[p], continuing)]
        if again:
            full = self._run([plans[p].tokens(i) for p, i in again], [_FULL_DISTRIBUTION] * len(again), adapter)
            for (p, index), output in zip(again, full):
                next_logprobs[p][index] = output.outputs[0].logprobs[0]
        if progress:
            progress(len(requests))
        return [continuation_scores(plan, prompt_logprobs[p], next_logprobs[p], continuing)
                for p, plan in enumerate(plans)]

    def _run(self, prompts: list[list[int]], arguments: list[dict], adapter: Path | None) -> list:
        """All prompts in one `llm.generate` call (vLLM batches them itself); outputs in prompt order."""
        if not prompts:
            return []
        from vllm import SamplingParams as VLLMSamplingParams, TokensPrompt
        from vllm.lora.request import LoRARequest

        lora = LoRARequest(**lora_arguments(adapter, self._adapter_ids)) if adapter else None
        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                                 [VLLMSamplingParams(**a) for a in arguments], use_tqdm=False, lora_request=lora)


class VLLMEngine(HFEngine):
    """An engine for one model reference: the shared vLLM backend plus the adapter to use (HFEngine's wrapper)."""

    def __init__(self, ref: ModelRef, backend: "VLLMBackend"):
        if ref.steering:  # vLLM has no hook into the residual stream; running unsteered would be silently wrong
            raise UserError(f"model '{ref}': steering needs engine backend 'hf' (vLLM cannot add to the residual "
                            "stream)")
        super().__init__(ref, backend)

    def token_logprobs(self, messages, text, top=0):
        raise UserError("per-token log-probabilities of a given reply (what `llmpsych serve` returns) need "
                        "engine backend 'hf'")


__all__ = ["VLLMBackend", "VLLMEngine"]
