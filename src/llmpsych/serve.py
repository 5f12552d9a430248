"""`llmpsych serve MODEL`: an OpenAI-compatible HTTP server over the local engine.

Any OpenAI client (a notebook, Inspect, llmcomp, the OpenAI engine's own tests) can then query an
embedded model, a local folder or a fine-tune with its adapter. Endpoints:

* GET  /v1/models: the one served model;
* POST /v1/chat/completions: messages, n, temperature, top_p, max_tokens (or max_completion_tokens),
  seed, stop, logprobs and top_logprobs (at most 20, as OpenAI allows).

Sample i of a request with seed s is drawn with seed s + i, so the same request gives the same replies.
Requests are served one at a time: the model is not thread-safe, and a CPU has no spare capacity anyway.
Bad requests get OpenAI-style error bodies (status 400 or 404) naming the field.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .models.engine import GenerateRequest, SamplingParams, as_messages
from .errors import UserError

MAX_TOP_LOGPROBS = 20


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status and the offending field."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def chat_completion(engine, model_id: str, body: dict) -> dict:
    """The OpenAI chat.completion object for one request body (RequestError when it is malformed)."""
    if body.get("model") not in (None, model_id):
        raise RequestError(f"model '{body.get('model')}' is not served here (this server has '{model_id}')", 404,
                           "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise RequestError("'messages' must be a non-empty list of {role, content} objects with string content",
                           param="messages")
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
                                stop=stop)
    except UserError as error:
        raise RequestError(str(error)) from None
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise RequestError("'seed' must be an integer", param="seed")
    base_seed = seed if seed is not None else random.randrange(2**31)
    conversation = as_messages(messages)
    completions = engine.generate([GenerateRequest(conversation, params, base_seed + i) for i in range(n)])
    choices = []
    for index, completion in enumerate(completions):
        choice = {"index": index, "message": {"role": "assistant", "content": completion.text},
                  "finish_reason": completion.finish_reason, "logprobs": None}
        if body.get("logprobs"):
            tokens = engine.token_logprobs(conversation, completion.text, top)
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


def _number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be between {low} and {high}, got {value}", param=name)
    return kind(value)


def make_server(engine, model_id: str, host: str = "127.0.0.1", port: int = 8000, log=sys.stderr) -> ThreadingHTTPServer:
    """A server (not yet serving: call serve_forever) for one engine; port 0 picks a free port."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0,
                                                             "owned_by": "llmpsych"}]})
            else:
                self._error(RequestError(f"no route {self.path}", 404))

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(RequestError(f"no route {self.path}", 404))
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise RequestError("the request body must be a JSON object")
                with lock:
                    answer = chat_completion(engine, model_id, body)
            except json.JSONDecodeError as error:
                return self._error(RequestError(f"the request body is not JSON: {error}"))
            except RequestError as error:
                return self._error(error)
            self._send(200, answer)

        def _error(self, error: RequestError) -> None:
            kind = "invalid_request_error" if error.status == 400 else "not_found_error"
            self._send(error.status, {"error": {"message": str(error), "type": kind, "param": error.param,
                                                "code": None}})

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # one line per request, never the body (it may hold secrets)
            print(f"serve: {self.address_string()} {format % args}", file=log)

    return ThreadingHTTPServer((host, port), Handler)
