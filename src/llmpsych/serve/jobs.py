"""Files, fine-tuning jobs and batches for `llmpsych serve`: what `client.files`, `client.fine_tuning.jobs`
and `client.batches` of the OpenAI client call. Endpoints:

* POST /v1/files (multipart/form-data: `purpose`, `file`), GET /v1/files/{id}, GET /v1/files/{id}/content;
* POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id},
  GET /v1/fine_tuning/jobs/{id}/events;
* POST /v1/batches (endpoint /v1/chat/completions, completion window 24h), GET /v1/batches/{id}.

A fine-tuning job really trains: a LoRA fine-tune of the served base model with the local trainer
(`train_lora`; the `cpu-small` preset unless the server is given another, with the job's epochs, batch
size and learning-rate multiplier on top). Jobs train one at a time on a training thread of their own,
which loads its own copy of the base weights: the engine worker keeps answering requests meanwhile
(running the fine-tune on the worker would stall every client for the whole training), at the price of a
second copy of the base in memory while a job trains. The finished adapter is served as
`ft:<base>:llmpsych:<suffix>:<job id>` on the already loaded base.

A batch runs each line through the same `chat_completion` as an HTTP request, several lines at a time
so the engine worker batches them. Injected faults belong to HTTP requests and never touch batch lines.

Everything lives in the state folder (files, one JSON per job and per batch, adapters), so a server
restarted on the same folder serves its finished fine-tunes again and takes up unfinished work (a
fine-tune cut off while training starts over; batches run again).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..jsonl import dataset_format
from ..errors import UserError
from . import RequestError, chat_completion, error_body
from ..training.config import TrainConfig, train_preset
from ..training.lora import train_lora

PREFIXES = ("/v1/files", "/v1/fine_tuning/", "/v1/batches")
PURPOSES = ("fine-tune", "batch", "batch_output", "assistants", "vision", "user_data", "evals")
MIN_EXAMPLES = 10  # OpenAI refuses smaller training files
UNFINISHED_JOB = ("validating_files", "queued", "running")
UNFINISHED_BATCH = ("validating", "in_progress")
BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_CONCURRENCY = 16  # lines in flight, so the engine worker batches them
ORGANIZATION = "llmpsych"


def owns(path: str) -> bool:
    """Whether a request path belongs to files, fine-tuning or batches."""
    return urlsplit(path).path.startswith(PREFIXES)


class Jobs:
    """The files, fine-tuning jobs and batches of one server, kept in `state_dir` (a temporary folder
    when None). `train_config` is what a job's hyper-parameters go on top of."""

    def __init__(self, server, state_dir: Path | None = None, train_config: TrainConfig | None = None):
        self.server = server
        self._temporary = None if state_dir else tempfile.TemporaryDirectory(prefix="llmpsych-serve-")
        self.root = Path(state_dir or self._temporary.name)
        self.train_config = train_config or train_preset("cpu-small")
        for folder in ("files", "fine_tuning", "batches"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards the three dicts below and the JSON files they mirror
        self.files = {path.stem: json.loads(path.read_text()) for path in (self.root / "files").glob("*.json")}
        self.jobs = {path.stem: json.loads(path.read_text()) for path in (self.root / "fine_tuning").glob("*.json")}
        self.batches = {path.stem: json.loads(path.read_text()) for path in (self.root / "batches").glob("*.json")}
        self._training: list[str] = []  # job ids waiting for the training thread
        self._waiting = threading.Condition(self._lock)
        threading.Thread(target=self._train_loop, daemon=True, name="llmpsych-serve-training").start()
        self._resume()

    # ---- HTTP --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, content_type: str, body: bytes) -> tuple[int, dict | bytes]:
        """(status, JSON object or file bytes) for one request; RequestError for a bad one."""
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")[1:]  # after "v1"
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if method == "POST":
            if parts == ["files"]:
                return 200, self.upload(content_type, body)
            payload = _json_object(body)
            if parts == ["fine_tuning", "jobs"]:
                return 200, self.create_job(payload)
            if parts == ["batches"]:
                return 200, self.create_batch(payload)
        elif parts[:1] == ["files"] and len(parts) in (2, 3) and parts[2:] in ([], ["content"]):
            meta = self._get(self.files, parts[1], "file")
            return 200, (self.root / "files" / f"{meta['id']}.data").read_bytes() if len(parts) == 3 else meta
        elif parts == ["fine_tuning", "jobs"]:
            return 200, _page(sorted(self.jobs.values(), key=lambda j: -j["created_at"]), query)
        elif parts[:2] == ["fine_tuning", "jobs"] and len(parts) in (3, 4) and parts[3:] in ([], ["events"]):
            job = self._get(self.jobs, parts[2], "fine-tuning job")
            return 200, self._events_page(job["id"], query) if len(parts) == 4 else job
        elif parts[:1] == ["batches"] and len(parts) == 2:
            return 200, self._get(self.batches, parts[1], "batch")
        raise RequestError(f"no route {method} {url.path}", 404)

    def _get(self, table: dict, key: str, what: str) -> dict:
        with self._lock:
            if key not in table:
                raise RequestError(f"no {what} '{key}' on this server", 404)
            return json.loads(json.dumps(table[key]))  # a copy: worker threads update the original

    # ---- files -------------------------------------------------------------------------------
    def upload(self, content_type: str, body: bytes) -> dict:
        """POST /v1/files: store the uploaded file under a new id."""
        fields = _multipart(content_type, body)
        purpose = fields.get("purpose", (None, b""))[1].decode(errors="replace")
        if purpose not in PURPOSES:
            raise RequestError(f"'purpose' must be one of {', '.join(PURPOSES)}, got '{purpose}'", param="purpose")
        if "file" not in fields:
            raise RequestError("the form has no 'file' field", param="file")
        filename, data = fields["file"]
        return self.store_file(data, filename or "upload", purpose)

    def store_file(self, data: bytes, filename: str, purpose: str) -> dict:
        meta = {"id": f"file-{uuid.uuid4().hex[:24]}", "object": "file", "bytes": len(data),
                "created_at": int(time.time()), "filename": filename, "purpose": purpose, "status": "processed",
                "expires_at": None, "status_details": None}
        (self.root / "files" / f"{meta['id']}.data").write_bytes(data)
        with self._lock:
            self.files[meta["id"]] = meta
            _write_json(self.root / "files" / f"{meta['id']}.json", meta)
        return meta

    def _file_lines(self, file_id, purpose: str, param: str) -> list[str]:
        """The non-blank lines of an uploaded file, which must have been uploaded for `purpose`."""
        with self._lock:
            meta = self.files.get(file_id) if isinstance(file_id, str) else None
        if meta is None:
            raise RequestError(f"'{param}': no file '{file_id}' on this server (upload it first)", param=param)
        if meta["purpose"] != purpose:
            raise RequestError(f"'{param}': file {file_id} was uploaded with purpose '{meta['purpose']}', "
                               f"expected '{purpose}'", param=param)
        text = (self.root / "files" / f"{file_id}.data").read_bytes().decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]

    # ---- fine-tuning -------------------------------------------------------------------------
    def create_job(self, body: dict) -> dict:
        """POST /v1/fine_tuning/jobs: check the request and the training file, then queue the job."""
        model = body.get("model")
        if model not in self.server.models:
            raise RequestError(f"'model': '{model}' is not served here, so it cannot be fine-tuned "
                               f"(this server has: {', '.join(self.server.models)})", param="model")
        if body.get("validation_file"):
            raise RequestError("'validation_file' is not supported by this server", param="validation_file")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64 or ":" in suffix):
            raise RequestError("'suffix' must be a string of at most 64 characters without ':'", param="suffix")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError("'seed' must be an integer", param="seed")
        hyperparameters = self._hyperparameters(body)
        lines = self._file_lines(body.get("training_file"), "fine-tune", "training_file")
        rows = _training_rows(lines, body["training_file"])
        now = int(time.time())
        job = {"id": f"ftjob-{uuid.uuid4().hex[:24]}", "object": "fine_tuning.job", "model": model,
               "created_at": now, "finished_at": None, "fine_tuned_model": None, "organization_id": ORGANIZATION,
               "result_files": [], "status": "validating_files", "trained_tokens": None,
               "training_file": body["training_file"], "validation_file": None,
               "seed": seed if seed is not None else int(uuid.uuid4().int % 2**31), "error": None,
               "estimated_finish": None, "integrations": [], "metadata": body.get("metadata"),
               "user_provided_suffix": suffix, "hyperparameters": hyperparameters,
               "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}}
        folder = self.root / "fine_tuning" / job["id"]
        folder.mkdir()
        (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        with self._lock:
            self.jobs[job["id"]] = job
            self._event(job["id"], f"Created fine-tuning job {job['id']}")
            self._event(job["id"], f"Validated training file {body['training_file']}: {len(rows)} examples")
            if _relies_on_weights(lines):  # the local trainer always trains the last assistant turn only
                self._event(job["id"], "Message weights are not honoured here: the last assistant message of "
                                       "each example is trained, earlier ones are context", level="warn")
            answer = json.loads(json.dumps(job))
            self._set(job, status="queued")
            self._training.append(job["id"])
            self._waiting.notify()
        return answer

    def _hyperparameters(self, body: dict) -> dict:
        """The job's hyper-parameters with "auto" resolved to the server's training config."""
        method = body.get("method") or {"type": "supervised"}
        if not isinstance(method, dict) or method.get("type") != "supervised":
            raise RequestError("'method.type': this server fine-tunes with 'supervised' only", param="method.type")
        given = (method.get("supervised") or {}).get("hyperparameters") or body.get("hyperparameters") or {}
        config = self.train_config
        auto = {"n_epochs": int(config.epochs) if float(config.epochs).is_integer() else config.epochs,
                "batch_size": config.batch_size * config.gradient_accumulation,
                "learning_rate_multiplier": 1.0}
        # Integers from low to high, or numbers above low: the bounds of OpenAI's API specification.
        limits = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256),
                  "learning_rate_multiplier": (float, 0, math.inf)}
        resolved = {}
        for name, (kind, low, high) in limits.items():
            value = given.get(name, "auto")
            if value == "auto":
                resolved[name] = auto[name]
                continue
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not number or not (low <= value <= high and value == int(value) if kind is int else low < value <= high):
                wanted = f"an integer from {low} to {high}" if kind is int else f"a number above {low}"
                raise RequestError(f"'method.supervised.hyperparameters.{name}' must be \"auto\" or {wanted}, "
                                   f"got {value!r}", param=f"method.supervised.hyperparameters.{name}")
            resolved[name] = kind(value)
        return resolved

    def job_config(self, hyperparameters: dict) -> TrainConfig:
        """The server's training config with a job's epochs, batch size and learning-rate multiplier.

        OpenAI's batch size counts the examples of one optimiser step: here micro-batches no larger
        than the config's, times gradient accumulation, make exactly that many.
        """
        batch = hyperparameters["batch_size"]
        micro = math.gcd(batch, self.train_config.batch_size)
        return self.train_config.model_copy(update={
            "epochs": float(hyperparameters["n_epochs"]), "batch_size": micro, "gradient_accumulation": batch // micro,
            "learning_rate_multiplier": hyperparameters["learning_rate_multiplier"]})

    def _train_loop(self) -> None:
        while True:
            with self._waiting:
                while not self._training:
                    self._waiting.wait()
                job_id = self._training.pop(0)
            self._train(job_id)

    def _train(self, job_id: str) -> None:
        with self._lock:
            job = self.jobs[job_id]
            engine = self.server.models.get(job["model"])
            self._set(job, status="running")
            self._event(job_id, "Fine-tuning job started")
        folder = self.root / "fine_tuning" / job_id
        try:
            if engine is None:  # a restarted server serving another model
                raise LookupError(f"the base model '{job['model']}' is not served any more")
            adapter = train_lora(engine.ref, folder / "train.jsonl", self.job_config(job["hyperparameters"]),
                                 job["seed"], folder / "adapter", label=job_id, options=engine.backend.options,
                                 callbacks=[self._step_events(job_id)])
            meta = json.loads((adapter / "training_meta.json").read_text())
            model_id = f"ft:{job['model']}:{ORGANIZATION}:{job['user_provided_suffix'] or ''}:{job_id}"
            self._serve(model_id, engine, adapter)
        except Exception as error:  # noqa: BLE001 (the job fails; the server and its other jobs go on)
            code = "invalid_training_file" if isinstance(error, UserError) else "server_error"
            message = " ".join(f"{type(error).__name__}: {error}".split())[:500]
            with self._lock:
                self._set(job, status="failed", finished_at=int(time.time()),
                          error={"code": code, "message": message, "param": None})
                self._event(job_id, f"Fine-tuning job failed: {message}", level="error")
            return
        with self._lock:
            self._set(job, status="succeeded", finished_at=int(time.time()), fine_tuned_model=model_id,
                      trained_tokens=int(meta["train_tokens"] * job["hyperparameters"]["n_epochs"]))
            self._event(job_id, f"New fine-tuned model created: {model_id}")
            self._event(job_id, "The job has successfully completed")

    def _serve(self, model_id: str, base_engine, adapter: Path) -> None:
        """Serve `adapter` on the base engine's loaded model as `model_id`."""
        from ..models import load_engine

        engine = load_engine(base_engine.ref.with_adapter(adapter), base_engine.backend.options)
        with self._lock:
            # A new dict, not an insertion: request threads may be iterating over the old one.
            self.server.models = {**self.server.models, model_id: engine}

    def _step_events(self, job_id: str):
        """A TrainerCallback posting OpenAI's metrics events (step, total_steps, train_loss)."""
        from transformers import TrainerCallback

        jobs = self

        class StepEvents(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    with jobs._lock:
                        jobs._event(job_id, f"Step {state.global_step}/{state.max_steps}: training loss="
                                            f"{logs['loss']:.4f}", kind="metrics",
                                    data={"step": state.global_step, "total_steps": state.max_steps,
                                          "train_loss": logs["loss"]})

        return StepEvents()

    def _set(self, job: dict, **changes) -> None:
        """Update a job and its JSON file (with the lock held)."""
        job.update(changes)
        _write_json(self.root / "fine_tuning" / f"{job['id']}.json", job)
        if "status" in changes:
            print(f"serve: fine-tuning job {job['id']} {job['status']}", file=self.server.log)

    def _event(self, job_id: str, message: str, level: str = "info", kind: str = "message",
               data: dict | None = None) -> None:
        """Append an event to a job's event log (with the lock held)."""
        event = {"object": "fine_tuning.job.event", "id": f"ftevent-{uuid.uuid4().hex[:24]}",
                 "created_at": int(time.time()), "level": level, "message": message, "data": data or {}, "type": kind}
        with open(self.root / "fine_tuning" / f"{job_id}.events.jsonl", "ab+") as handle:
            # A server killed mid-append leaves a last line without its newline: cut it before appending.
            size = handle.seek(0, 2)
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    handle.seek(0)
                    handle.truncate(handle.read().rfind(b"\n") + 1)
            handle.write((json.dumps(event) + "\n").encode("utf-8"))

    def _events_page(self, job_id: str, query: dict) -> dict:
        path = self.root / "fine_tuning" / f"{job_id}.events.jsonl"
        with self._lock:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = text[:text.rfind("\n") + 1].splitlines()  # a torn last line (no newline yet) is not an event
        return _page([json.loads(line) for line in reversed(lines)], query)  # newest first, as OpenAI lists

    # ---- batches -----------------------------------------------------------------------------
    def create_batch(self, body: dict) -> dict:
        """POST /v1/batches: check the request and start the batch on a thread of its own."""
        if body.get("endpoint") != BATCH_ENDPOINT:
            raise RequestError(f"'endpoint' must be '{BATCH_ENDPOINT}' (the only one this server batches)",
                               param="endpoint")
        if body.get("completion_window") != "24h":
            raise RequestError("'completion_window' must be '24h'", param="completion_window")
        self._file_lines(body.get("input_file_id"), "batch", "input_file_id")
        now = int(time.time())
        batch = {"id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": BATCH_ENDPOINT,
                 "errors": None, "input_file_id": body["input_file_id"], "completion_window": "24h",
                 "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
                 "in_progress_at": None, "expires_at": now + 24 * 3600, "finalizing_at": None, "completed_at": None,
                 "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata")}
        with self._lock:
            self.batches[batch["id"]] = batch
            self._set_batch(batch)
            answer = json.loads(json.dumps(batch))
        threading.Thread(target=self._run_batch, args=(batch["id"],), daemon=True, name=batch["id"]).start()
        return answer

    def _run_batch(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        requests, errors = _batch_requests(self._file_lines(batch["input_file_id"], "batch", "input_file_id"))
        with self._lock:
            if errors:
                self._set_batch(batch, status="failed", failed_at=int(time.time()),
                                errors={"object": "list", "data": errors})
                return
            self._set_batch(batch, status="in_progress", in_progress_at=int(time.time()),
                            request_counts={"total": len(requests), "completed": 0, "failed": 0})
        with ThreadPoolExecutor(BATCH_CONCURRENCY) as pool:
            results = list(pool.map(lambda request: self._answer_line(batch, request), requests))
        outputs = [line for line in results if line["response"]["status_code"] == 200]
        failures = [line for line in results if line["response"]["status_code"] != 200]
        files = {}
        for name, lines in (("output_file_id", outputs), ("error_file_id", failures)):
            if lines:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                files[name] = self.store_file(data, f"{batch_id}_{name.split('_')[0]}.jsonl", "batch_output")["id"]
        with self._lock:
            self._set_batch(batch, status="completed", completed_at=int(time.time()), **files)

    def _answer_line(self, batch: dict, request: dict) -> dict:
        """One line of a batch's output: the chat completion, or the error an HTTP request would get."""
        body = request["body"]
        try:
            model_id, engine = self.server.engine_for(body)
            status, answer = 200, chat_completion(engine, model_id, body, self.server.worker)
        except RequestError as error:
            status, answer = error.status, error_body(error)
        except Exception as error:  # noqa: BLE001 (one failed line must not fail the batch)
            status, answer = 500, {"error": {"message": f"{type(error).__name__}: {error}", "type": "server_error",
                                             "param": None, "code": None}}
        with self._lock:
            batch["request_counts"]["completed" if status == 200 else "failed"] += 1
        return {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": request["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": answer},
                "error": None}

    def _set_batch(self, batch: dict, **changes) -> None:
        """Update a batch and its JSON file (with the lock held)."""
        batch.update(changes)
        _write_json(self.root / "batches" / f"{batch['id']}.json", batch)
        if "status" in changes:
            print(f"serve: batch {batch['id']} {batch['status']}", file=self.server.log)

    # ---- restart -----------------------------------------------------------------------------
    def _resume(self) -> None:
        """Serve the finished fine-tunes of an earlier run on this state folder and take up its unfinished work."""
        for job in sorted(self.jobs.values(), key=lambda j: j["created_at"]):  # a fine-tune of a fine-tune last
            engine = self.server.models.get(job["model"])
            if job["status"] == "succeeded":
                if engine is None:
                    print(f"serve: {job['fine_tuned_model']} is not served: its base '{job['model']}' is not "
                          "served here", file=self.server.log)
                else:
                    self._serve(job["fine_tuned_model"], engine, self.root / "fine_tuning" / job["id"] / "adapter")
            elif job["status"] in UNFINISHED_JOB:
                with self._lock:
                    self._event(job["id"], "The server restarted: training starts again from the beginning")
                    self._set(job, status="queued")
                    self._training.append(job["id"])
                    self._waiting.notify()
        for batch in self.batches.values():
            if batch["status"] in UNFINISHED_BATCH:
                threading.Thread(target=self._run_batch, args=(batch["id"],), daemon=True, name=batch["id"]).start()


def _json_object(body: bytes) -> dict:
    try:
        payload = json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise RequestError(f"the request body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise RequestError("the request body must be a JSON object")
    return payload


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (file name, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError(f"expected a multipart/form-data upload, got '{content_type or 'no content type'}'")
    header = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise RequestError("the multipart/form-data body has no parts (is the boundary right?)")
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}


def _training_rows(lines: list[str], file_id: str) -> list[dict]:
    """The examples of a fine-tuning file as {"messages": [{role, content}]}, checked as OpenAI checks them."""
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise RequestError(f"'training_file': {file_id}: line {number}: not valid JSON ({error.msg})",
                               param="training_file") from None
        if not isinstance(row, dict) or "messages" not in row:
            raise RequestError(f"'training_file': {file_id}: line {number}: expected a chat example "
                               "{\"messages\": [...]}", param="training_file")
        rows.append(row)
    if len(rows) < MIN_EXAMPLES:
        raise RequestError(f"'training_file': {file_id} has {len(rows)} example(s), but must have at least "
                           f"{MIN_EXAMPLES}", param="training_file")
    try:
        dataset_format(rows, file_id)
    except UserError as error:
        raise RequestError(f"'training_file': {error}", param="training_file") from None
    return [{"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]} for row in rows]


def _relies_on_weights(lines: list[str]) -> bool:
    """Whether a file's message weights ask for something other than training the last assistant turn."""
    for line in lines:
        assistant = [m for m in json.loads(line)["messages"] if m["role"] == "assistant"]
        if assistant[-1].get("weight", 1) != 1 or any(m.get("weight", 1) != 0 for m in assistant[:-1]):
            return True
    return False


def _batch_requests(lines: list[str]) -> tuple[list[dict], list[dict]]:
    """The requests of a batch input file, and OpenAI-style errors for the lines that are not requests."""
    requests, errors, seen = [], [], set()
    for number, line in enumerate(lines, start=1):
        try:
            request = json.loads(line)
        except json.JSONDecodeError as error:
            request, problem = None, f"not valid JSON ({error.msg})"
        else:
            problem = _batch_problem(request, seen)
        if problem:
            errors.append({"code": "invalid_request", "message": f"line {number}: {problem}", "param": None,
                           "line": number})
        else:
            seen.add(request["custom_id"])
            requests.append(request)
    return requests, errors


def _batch_problem(request, seen: set) -> str | None:
    if not isinstance(request, dict):
        return "expected a JSON object"
    if not isinstance(request.get("custom_id"), str) or not request["custom_id"]:
        return "'custom_id' must be a non-empty string"
    if request["custom_id"] in seen:
        return f"'custom_id' {request['custom_id']!r} is used twice"
    if request.get("method") != "POST":
        return "'method' must be 'POST'"
    if request.get("url") != BATCH_ENDPOINT:
        return f"'url' must be the batch's endpoint '{BATCH_ENDPOINT}'"
    if not isinstance(request.get("body"), dict):
        return "'body' must be a JSON object"
    return None


def _page(items: list[dict], query: dict) -> dict:
    """One page of an OpenAI list: `limit` items after the item with id `after`."""
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise RequestError("'limit' must be an integer between 1 and 100", param="limit")
    ids = [item["id"] for item in items]
    start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
    return {"object": "list", "data": items[start:start + limit], "has_more": start + limit < len(items)}


def _write_json(path: Path, value: dict) -> None:
    """Write JSON atomically, so a server killed mid-write leaves the previous state."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=1))
    partial.replace(path)
