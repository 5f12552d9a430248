"""Talking to OpenAI and OpenAI-compatible servers: the client, and retries with backoff.

The key and the address come from the environment only (OPENAI_API_KEY, OPENAI_BASE_URL), as the
`openai` client itself reads them; nothing here writes them anywhere. The client's own retries are
off: `with_retries` retries rate limits (429), server errors (5xx), timeouts and dropped connections
with exponential backoff and jitter, honours Retry-After, and counts what it retried.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from ..errors import UserError

OFFICIAL_BASE_URL = "https://api.openai.com/v1"
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # tries per request, the first included
    initial_delay: float = 0.5  # seconds before the first retry; doubles each time
    max_delay: float = 30.0
    timeout: float = 120.0  # seconds one HTTP request may take


def base_url() -> str:
    return (os.environ.get("OPENAI_BASE_URL") or OFFICIAL_BASE_URL).rstrip("/")


def make_client(policy: RetryPolicy = RetryPolicy()):
    """An `openai.OpenAI` client for the server named by the environment."""
    import openai

    url = base_url()
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        if url == OFFICIAL_BASE_URL:
            raise UserError("OPENAI_API_KEY is not set (export it, or point OPENAI_BASE_URL at an "
                            "OpenAI-compatible server such as `llmpsych serve`)")
        key = "not-needed"  # local servers (vLLM, llama.cpp, llmpsych serve) accept any key
    return openai.OpenAI(api_key=key, base_url=url, max_retries=0, timeout=policy.timeout)


def check_access(what: str) -> None:
    """Fail before any work when an API model cannot be reached for want of a key (no request is sent)."""
    try:
        make_client()
    except UserError as error:
        raise UserError(f"{what}: {error}") from None


class RetryCounter:
    """How many attempts failed transiently and were retried, by kind (thread-safe)."""

    def __init__(self):
        self.retried: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, kind: str) -> None:
        with self._lock:
            self.retried[kind] = self.retried.get(kind, 0) + 1


def transient_kind(error: Exception) -> str | None:
    """'429', '5xx', 'timeout' or 'connection' for errors worth retrying; None for the rest."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.RateLimitError):
        return "429"
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return "5xx"
    return None


# Every retry this process made, reported in a run's calls.json (a process-wide tally, like a log).
RETRIES = RetryCounter()


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy = RetryPolicy(),
                 counter: RetryCounter | None = RETRIES, passthrough: tuple[type, ...] = ()) -> T:
    """`call()`, retried on transient failures; a permanent failure becomes a one-line UserError, except
    errors of the `passthrough` types, which the caller handles."""
    import openai

    for attempt in range(policy.attempts):
        try:
            return call()
        except openai.APIError as error:
            if isinstance(error, passthrough):
                raise
            kind = transient_kind(error)
            if kind is None:
                raise UserError(f"{what}: {describe_error(error)}") from None
            if attempt == policy.attempts - 1:
                raise UserError(f"{what}: gave up after {policy.attempts} attempts ({describe_error(error)})") from None
            if counter:
                counter.add(kind)
            time.sleep(_delay(error, attempt, policy))
    raise AssertionError("unreachable")


def _delay(error: Exception, attempt: int, policy: RetryPolicy) -> float:
    """Retry-After when the server gives one, else exponential backoff with full jitter."""
    response = getattr(error, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        if header is not None:
            return min(float(header), policy.max_delay)
    except ValueError:
        pass  # an HTTP date: fall back to backoff
    return random.uniform(0, min(policy.max_delay, policy.initial_delay * 2 ** attempt))


def describe_error(error: Exception, limit: int = 300) -> str:
    """The server's error as one short line ("HTTP 401: ..."), with the API key blanked out should the server
    have echoed it (an HTML error page from a proxy becomes one line too)."""
    status = getattr(error, "status_code", None)
    body = getattr(error, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message or error).split())
    key = os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 8:
        text = text.replace(key, "[OPENAI_API_KEY]")
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"HTTP {status}: {text}" if status else text
