"""What every engine offers: generate samples and score given continuations.

An engine answers requests for one model (base plus optional adapter). Requests are plain data, so
the run cache can key them; engines know nothing about caching, runs or recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..errors import UserError
from .refs import ModelRef

Message = dict[str, str]
Progress = Callable[[int], None]  # called with the number of requests just finished


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion. temperature 0 means greedy; `stop` strings end the completion
    (the stop string itself is cut off), as in the OpenAI API."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    min_tokens: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1 or self.min_tokens < 0:
            raise UserError(f"sampling: invalid parameters {self} (expected temperature >= 0, "
                            "0 < top_p <= 1, max_tokens >= 1, min_tokens >= 0)")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise UserError(f"sampling: 'stop' must be a list of non-empty strings, got {self.stop!r}")


@dataclass(frozen=True)
class GenerateRequest:
    """One sample of one conversation; `seed` fixes the randomness of this sample alone."""

    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    finish_reason: str  # "stop" (end-of-turn token or a stop string) or "length" (hit max_tokens)


CLOSED = ("none", "prefixes", "all")


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probabilities of each continuation as the assistant's reply to `messages`.

    `closed` says when a continuation counts as said:
      "none":     whenever the reply starts with its tokens (plain teacher forcing);
      "prefixes": a continuation that begins another one ("5" and "57", "10" and "100") counts only
                  when the model stops there (the next token does not go on with a letter or digit),
                  so the candidates are separate events: a 0-100 judge on any tokenizer;
      "all":      every continuation must end there, as a whole word ("A" must not go on as "Apple").
    """

    messages: tuple[Message, ...]
    continuations: tuple[str, ...]
    closed: str = "none"

    def __post_init__(self) -> None:
        if self.closed not in CLOSED:
            raise ValueError(f"ScoreRequest.closed must be one of {CLOSED}, got {self.closed!r}")


class Engine(Protocol):
    ref: ModelRef
    fingerprint: str  # identifies weights, adapter, template and numerics: the model part of cache keys

    def effective_messages(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        """The conversation as the model sees it, with any default system prompt made explicit."""

    def generate(self, requests: list[GenerateRequest], progress: Progress | None = None) -> list[Completion]:
        """One completion per request, in order."""

    def score(self, requests: list[ScoreRequest], progress: Progress | None = None) -> list[list[float]]:
        """For each request, the log-probability of each continuation, in order."""


def as_messages(messages: list[Message] | tuple[Message, ...] | str) -> tuple[Message, ...]:
    """Normalise a conversation (a string is one user turn) into an immutable tuple of role/content dicts."""
    if isinstance(messages, str):
        return ({"role": "user", "content": messages},)
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)
