"""`llmpsych serve MODEL`: an OpenAI-compatible HTTP server over the local engine.

Any OpenAI client (a notebook, Inspect, llmcomp, the OpenAI engine's own tests) can then query an
embedded model, a local folder or a fine-tune with its adapter. Endpoints:

* GET  /v1/models: the served models;
* POST /v1/chat/completions: messages, n, temperature, top_p, max_tokens (or max_completion_tokens),
  seed, stop, logprobs and top_logprobs (at most 20, as OpenAI allows), and vLLM's min_tokens;
* POST /v1/llmpsych/score: an extension, {model, messages, continuations, closed} -> {"logprobs": [...]},
  the exact log-probability of each given reply (the engine's `score`). The OpenAI engine uses it when a
  server offers it, so a run through the API scores exactly as the same run on the local engine;
* files, fine-tuning jobs (a real LoRA fine-tune, then served as `ft:...`) and batches: see `serve.jobs`.

Sample i of a request with seed s is drawn with seed s + i, so the same request gives the same replies.
One worker thread owns the model (it is not thread-safe): it takes every generation request waiting
in the queue and runs them as one batch, so concurrent clients share forward passes.
Bad requests get OpenAI-style error bodies (status 400 or 404) naming the field.

For testing clients, `Faults` makes the server answer a fraction of requests with 429 (with a
Retry-After header), 500, or a reply that arrives late.
"""

from __future__ import annotations

import json
import queue
import random
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..models.engine import CLOSED, GenerateRequest, SamplingParams, ScoreRequest, as_messages

MAX_TOP_LOGPROBS = 20


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status and the offending field."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class Faults:
    """Answer `rate` of the POST requests with a fault: 429, 500 or a reply delayed by `delay` seconds."""

    rate: float = 0.0
    delay: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate < 1 or self.delay < 0:
            raise UserError(f"serve: fault rate must be in [0, 1) and delay >= 0, got {self.rate}, {self.delay}")


class EngineWorker:
    """The one thread that touches the models. Generation requests waiting together run as one batch."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="llmpsych-serve-engine").start()

    def generate(self, engine, requests: list[GenerateRequest]):
        return self._submit(("generate", engine, requests)).result()

    def call(self, function: Callable):
        """Run `function()` on the worker thread and return its result."""
        return self._submit(("call", None, function)).result()

    def _submit(self, job) -> Future:
        future: Future = Future()
        self._queue.put((job, future))
        return future

    def _loop(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while True:  # take everything already waiting
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_engine: dict[int, list] = {}
            for (kind, engine, payload), future in jobs:
                if kind == "generate":
                    by_engine.setdefault(id(engine), []).append((engine, payload, future))
                else:
                    _settle(future, payload)
            for group in by_engine.values():
                engine = group[0][0]
                flat = [request for _, requests, _ in group for request in requests]
                try:
                    completions = engine.generate(flat)
                except BaseException as error:  # noqa: BLE001 (handed to the waiting request)
                    for _, _, future in group:
                        future.set_exception(error)
                    continue
                start = 0
                for _, requests, future in group:
                    future.set_result(completions[start:start + len(requests)])
                    start += len(requests)


def _settle(future: Future, function: Callable) -> None:
    try:
        future.set_result(function())
    except BaseException as error:  # noqa: BLE001
        future.set_exception(error)


def _messages(body: dict) -> tuple:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise RequestError("'messages' must be a non-empty list of {role, content} objects with string content",
                           param="messages")
    return as_messages(messages)


def chat_completion(engine, model_id: str, body: dict, worker: EngineWorker) -> dict:
    """The OpenAI chat.completion object for one request body (RequestError when it is malformed)."""
    conversation = _messages(body)
    n = _number(body, "n", 1, int, 1, 128)
    top = _number(body, "top_logprobs", 0, int, 0, MAX_TOP_LOGPROBS)
    if top and not body.get("logprobs"):
        raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    try:
        params = SamplingParams(temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
                                top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0),
                                max_tokens=_number(body, "max_completion_tokens",
                                                   _number(body, "max_tokens", 256, int, 1, 32768), int, 1, 32768),
                                min_tokens=_number(body, "min_tokens", 0, int, 0, 32768), stop=stop)
    except UserError as error:
        raise RequestError(str(error)) from None
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("'seed' must be an integer", param="seed")
    base_seed = seed if seed is not None else random.randrange(2**31)
    completions = worker.generate(engine, [GenerateRequest(conversation, params, base_seed + i) for i in range(n)])
    choices = []
    for index, completion in enumerate(completions):
        choice = {"index": index, "message": {"role": "assistant", "content": completion.text},
                  "finish_reason": completion.finish_reason, "logprobs": None}
        if body.get("logprobs"):
            tokens = worker.call(lambda text=completion.text: engine.token_logprobs(conversation, text, top))
            choice["logprobs"] = {"content": [
                {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
                 "top_logprobs": [{"token": a, "logprob": lp, "bytes": list(a.encode())} for a, lp in t.top]}
                for t in tokens]}
        choices.append(choice)
    prompt_tokens = len(engine.backend.prompt_ids(conversation))
    completion_tokens = sum(c.tokens for c in completions)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model_id, "choices": choices, "system_fingerprint": engine.fingerprint[:16],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def score_completion(engine, model_id: str, body: dict, worker: EngineWorker) -> dict:
    """The extension: exact log-probabilities of given replies, as the engine's `score` computes them."""
    conversation = _messages(body)
    continuations = body.get("continuations")
    if not isinstance(continuations, list) or not continuations or not all(
            isinstance(c, str) and c for c in continuations):
        raise RequestError("'continuations' must be a non-empty list of non-empty strings", param="continuations")
    closed = body.get("closed", "none")
    if closed not in CLOSED:
        raise RequestError(f"'closed' must be one of {', '.join(CLOSED)}", param="closed")
    request = ScoreRequest(conversation, tuple(continuations), closed)
    try:
        logprobs = worker.call(lambda: engine.score([request])[0])
    except UserError as error:
        raise RequestError(str(error), param="continuations") from None
    return {"object": "llmpsych.score", "model": model_id, "logprobs": logprobs}


def _number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return kind(value)


class ModelServer(ThreadingHTTPServer):
    """The HTTP server; `models` maps served model ids to engines (more can be added while serving)."""

    daemon_threads = True
    request_queue_size = 128  # clients keep many requests in flight; the default backlog of 5 drops connections

    def __init__(self, address, handler, models: dict, faults: Faults, log):
        super().__init__(address, handler)
        self.models = models
        self.worker = EngineWorker()
        self.faults = faults
        self.fault_draws = random.Random(faults.seed)
        self.fault_lock = threading.Lock()
        self.log = log

    def engine_for(self, body: dict):
        """(model id, engine) named by the request; with one model served, naming it is optional."""
        name = body.get("model")
        if name is None and len(self.models) == 1:
            name = next(iter(self.models))
        if name not in self.models:
            raise RequestError(f"model '{name}' is not served here (this server has: {', '.join(self.models)})",
                               404, "model")
        return name, self.models[name]

    def draw_fault(self) -> str | None:
        if not self.faults.rate:
            return None
        with self.fault_lock:
            if self.fault_draws.random() >= self.faults.rate:
                return None
            return self.fault_draws.choice(("429", "500", "slow"))


ROUTES = {"/v1/chat/completions": chat_completion, "/v1/llmpsych/score": score_completion}


def error_body(error: RequestError) -> dict:
    """The OpenAI error object for a refused request."""
    kind = "invalid_request_error" if error.status == 400 else "not_found_error"
    return {"error": {"message": str(error), "type": kind, "param": error.param, "code": None}}


def make_server(engine, model_id: str, host: str = "127.0.0.1", port: int = 8000, log=sys.stderr,
                faults: Faults = Faults(), state_dir: Path | None = None) -> ModelServer:
    """A server (not yet serving: call serve_forever) for one engine; port 0 picks a free port.
    Uploaded files, fine-tuning jobs and batches live in `state_dir` (a temporary folder when None)."""
    from .jobs import Jobs, owns  # the jobs module builds on this one

    class Handler(BaseHTTPRequestHandler):
        server: ModelServer

        def do_GET(self):  # noqa: N802 (the http.server naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "llmpsych"}
                    for name in self.server.models]})
            elif owns(self.path):
                self._jobs("GET")
            else:
                self._error(RequestError(f"no route {self.path}", 404))

        def do_POST(self):  # noqa: N802
            route = ROUTES.get(self.path.rstrip("/"))
            if route is None and not owns(self.path):
                return self._error(RequestError(f"no route {self.path}", 404))
            fault = self.server.draw_fault()
            if fault == "429":
                return self._send(429, {"error": {"message": "injected fault: rate limited", "type": "rate_limit",
                                                  "param": None, "code": "rate_limit_exceeded"}},
                                  {"Retry-After": "0"})
            if fault == "500":
                return self._send(500, {"error": {"message": "injected fault: server error", "type": "server_error",
                                                  "param": None, "code": None}})
            if route is None:
                return self._jobs("POST", fault)
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise RequestError("the request body must be a JSON object")
                model_id, engine = self.server.engine_for(body)
                answer = route(engine, model_id, body, self.server.worker)
            except json.JSONDecodeError as error:
                return self._error(RequestError(f"the request body is not JSON: {error}"))
            except RequestError as error:
                return self._error(error)
            if fault == "slow":
                time.sleep(self.server.faults.delay)
            self._send(200, answer)

        def _jobs(self, method: str, fault: str | None = None) -> None:
            """Files, fine-tuning jobs and batches; they read their own bodies (uploads are multipart)."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
                status, answer = self.server.jobs.handle(method, self.path, self.headers.get("Content-Type") or "",
                                                         self.rfile.read(length))
            except RequestError as error:
                return self._error(error)
            if fault == "slow":
                time.sleep(self.server.faults.delay)
            self._send(status, answer)

        def _error(self, error: RequestError) -> None:
            self._send(error.status, error_body(error))

        def _send(self, status: int, payload: dict | bytes, headers: dict | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout); it will retry

        def log_message(self, format, *args):  # one line per request, never the body (it may hold secrets)
            print(f"serve: {self.address_string()} {format % args}", file=self.server.log)

    server = ModelServer((host, port), Handler, {model_id: engine}, faults, log)
    server.jobs = Jobs(server, state_dir)
    return server
