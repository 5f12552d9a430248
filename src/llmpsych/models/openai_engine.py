"""The engine for OpenAI and every OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, `llmpsych serve`).

Sampling: one chat completion per request, `n=1` with the request's own seed, so sample i of a run is
the same call every time (servers that honour seeds then return the same text; OpenAI says it mostly
does). Requests run concurrently, `api_concurrency` at a time, each retried with backoff.

Scoring given replies has two strategies, chosen once per engine:

* exact: a server that offers llmpsych's score extension (`llmpsych serve`) computes the
  log-probability of each continuation by teacher forcing, as the local engine does;
* first token (everywhere else, the protocol of the EM paper's judges): one completion with
  `max_tokens=1, logprobs=True, top_logprobs=20`, and each continuation gets the probability of the
  top-20 token that spells it (tokens spelling the same text are summed). A continuation not in the
  top 20 gets -inf: its probability is below the 20th token's. This suits single-token answers
  (choice letters, and the numbers 0-100, which OpenAI's tokenizers encode as one token each); longer
  continuations need the exact strategy.

Large first-token jobs may go through the Batch API (`api_batch_min` requests or more; half the price,
results within 24 h). The batch id is saved before waiting, so a restarted run waits for the same batch.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from ..errors import UserError
from ..hashing import digest
from ..paths import cache_dir
from .api import OFFICIAL_BASE_URL, RetryPolicy, base_url, describe_error, make_client, with_retries
from .engine import Completion, GenerateRequest, Message, Progress, ScoreRequest
from .refs import ModelRef

TOP_LOGPROBS = 20  # the most alternatives OpenAI returns
REQUEST_EXCERPT = 60  # characters of a request's last message quoted in an error
SCORE_ROUTE = "/llmpsych/score"


def openai_fingerprint(ref: ModelRef) -> str:
    """The model part of cache keys: the server's address and the model name (weights are not visible)."""
    return digest("openai", base_url(), ref.name)


class OpenAIEngine:
    def __init__(self, ref: ModelRef, options):
        self.ref = ref
        self.options = options
        self.policy = RetryPolicy(attempts=options.api_attempts, timeout=options.api_timeout)
        self.client = make_client(self.policy)
        self.fingerprint = openai_fingerprint(ref)
        self._exact_scores: bool | None = None  # whether the server has the score extension; probed once

    def effective_messages(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        return messages  # an API model's hidden defaults are not visible to us

    # ---- sampling -----------------------------------------------------------------------------
    def generate(self, requests: list[GenerateRequest], progress: Progress | None = None) -> list[Completion]:
        return self._map(self._generate_one, requests, progress)

    def _generate_one(self, request: GenerateRequest) -> Completion:
        params = request.params
        arguments = {"model": self.ref.name, "messages": list(request.messages), "n": 1, "seed": request.seed,
                     "temperature": params.temperature, "top_p": params.top_p, self._max_tokens_field():
                     params.max_tokens}
        if params.stop:
            arguments["stop"] = list(params.stop)
        if params.min_tokens:
            arguments["extra_body"] = {"min_tokens": params.min_tokens}  # vLLM's extension; others ignore it
        response = with_retries(lambda: self.client.chat.completions.create(**arguments),
                                self._what("sampling", request), self.policy)
        choice = self._only_choice(response, self._what("sampling", request))
        text = choice.message.content if choice.message and choice.message.content is not None else ""
        tokens = response.usage.completion_tokens if response.usage else 0
        return Completion(text, tokens, "length" if choice.finish_reason == "length" else "stop")

    def _max_tokens_field(self) -> str:
        # OpenAI's newer models accept only max_completion_tokens; many compatible servers only max_tokens.
        return "max_completion_tokens" if base_url() == OFFICIAL_BASE_URL else "max_tokens"

    # ---- scoring ------------------------------------------------------------------------------
    def score(self, requests: list[ScoreRequest], progress: Progress | None = None) -> list[list[float]]:
        if not requests:
            return []
        if self._exact_scores is None:
            first = self._exact_score(requests[0])
            self._exact_scores = first is not None
            if first is not None:
                if progress:
                    progress(1)
                return [first] + self._map(self._exact_score, requests[1:], progress)
        if self._exact_scores:
            return self._map(self._exact_score, requests, progress)
        if self.options.api_batch_min and len(requests) >= self.options.api_batch_min:
            return self._batch_first_token(requests, progress)
        return self._map(self._first_token_score, requests, progress)

    def _exact_score(self, request: ScoreRequest) -> list[float] | None:
        """The server's exact scores, or None when it has no score extension."""
        import openai

        body = {"model": self.ref.name, "messages": list(request.messages),
                "continuations": list(request.continuations), "closed": request.closed}
        try:
            answer = with_retries(lambda: self.client.post(SCORE_ROUTE, cast_to=object, body=body),
                                  self._what("scoring", request), self.policy, passthrough=(openai.NotFoundError,))
        except openai.NotFoundError as error:
            if self._exact_scores is None and (error.body or {}).get("param") != "model":
                return None  # no such route: an ordinary OpenAI-compatible server
            raise UserError(f"{self._what('scoring', request)}: {describe_error(error)}") from None
        logprobs = answer.get("logprobs") if isinstance(answer, dict) else None
        if not isinstance(logprobs, list) or len(logprobs) != len(request.continuations) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logprobs):
            raise UserError(f"{self._what('scoring', request)}: the answer has no 'logprobs' list of "
                            f"{len(request.continuations)} numbers")
        return [float(value) for value in logprobs]

    def first_token_body(self, request: ScoreRequest) -> dict:
        """The request body of the first-token protocol (also one line of a Batch API file)."""
        return {"model": self.ref.name, "messages": list(request.messages), self._max_tokens_field(): 1,
                "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS, "seed": 0}

    def _first_token_score(self, request: ScoreRequest) -> list[float]:
        body = self.first_token_body(request)
        what = self._what("scoring", request)
        response = with_retries(lambda: self.client.chat.completions.create(**body), what, self.policy)
        return _first_token_logprobs(self._only_choice(response, what), request, what)

    def _batch_first_token(self, requests: list[ScoreRequest], progress: Progress | None) -> list[list[float]]:
        from .api_batch import run_batch

        bodies = [self.first_token_body(r) for r in requests]
        state = cache_dir() / "api-batches"
        answers = run_batch(self.client, bodies, state, self._what("batch scoring"), self.policy, progress)
        # Lines the batch could not answer are asked again directly, with retries.
        return [self._first_token_score(request) if answer is None else
                _first_token_logprobs((answer.get("choices") or [{}])[0], request, self._what("batch scoring", request))
                for answer, request in zip(answers, requests)]

    # ---- helpers ------------------------------------------------------------------------------
    def _map(self, function, requests: list, progress: Progress | None) -> list:
        """`function` over `requests`, `api_concurrency` at a time, in order; progress as each finishes."""
        def one(request):
            result = function(request)
            if progress:
                progress(1)
            return result

        if len(requests) <= 1 or self.options.api_concurrency <= 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(self.options.api_concurrency) as pool:
            return list(pool.map(one, requests))

    def _only_choice(self, response, what: str):
        choices = getattr(response, "choices", None)
        if not choices:
            raise UserError(f"{what}: the server returned no choices")
        return choices[0]

    def _what(self, doing: str, request: GenerateRequest | ScoreRequest | None = None) -> str:
        """Who failed at what: the model, its server, the operation and (when one) the request's last message."""
        where = f"model '{self.ref}' at {base_url()}: {doing}"
        if request is None or not request.messages:
            return where
        text = " ".join(str(request.messages[-1].get("content") or "").split())
        return f"{where} {(text[:REQUEST_EXCERPT] + '...') if len(text) > REQUEST_EXCERPT else text!r}"


def _first_token_logprobs(choice, request: ScoreRequest, what: str) -> list[float]:
    """The continuations' first-token log-probabilities from one choice (an SDK object or a Batch API dict).
    A choice the server declined to answer (a content filter or a refusal) gives every continuation -inf:
    the judgement is then missing, as for any answer that is not a number, rather than stopping the run."""
    if isinstance(choice, dict):
        finish, logprobs = choice.get("finish_reason"), choice.get("logprobs")
        refusal = (choice.get("message") or {}).get("refusal")
    else:
        finish, logprobs = choice.finish_reason, choice.logprobs
        refusal = getattr(getattr(choice, "message", None), "refusal", None)
    if finish == "content_filter" or refusal:
        return [-math.inf] * len(request.continuations)
    return continuation_logprobs(_top_logprobs(logprobs, what), request.continuations)


def _top_logprobs(logprobs, what: str) -> list[tuple[str, float]]:
    """(token, logprob) of the first generated token's alternatives, from an SDK or a plain-dict answer."""
    content = getattr(logprobs, "content", None) if logprobs is not None and not isinstance(logprobs, dict) \
        else (logprobs or {}).get("content")
    if not content:
        raise UserError(f"{what}: the server returned no logprobs (it must support logprobs and top_logprobs; "
                        "vLLM, OpenAI and `llmpsych serve` do)")
    first = content[0]
    top = first.get("top_logprobs") if isinstance(first, dict) else first.top_logprobs
    pairs = [(t["token"], t["logprob"]) if isinstance(t, dict) else (t.token, t.logprob) for t in top or []]
    if not pairs:
        raise UserError(f"{what}: the server returned no top_logprobs alternatives")
    return pairs


def continuation_logprobs(top: list[tuple[str, float]], continuations: tuple[str, ...]) -> list[float]:
    """Each continuation's log-probability as the first token: the summed probability of the top
    tokens that spell it (ignoring surrounding white space), -inf when none does."""
    mass: dict[str, float] = {}
    for token, logprob in top:
        key = token.strip()
        mass[key] = mass.get(key, 0.0) + math.exp(logprob)
    return [math.log(mass[c.strip()]) if mass.get(c.strip(), 0) > 0 else -math.inf for c in continuations]


__all__ = ["OpenAIEngine", "continuation_logprobs", "openai_fingerprint"]
