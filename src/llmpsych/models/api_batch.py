"""The OpenAI Batch API: many chat completions as one file, answered within 24 hours at half the price.

`run_batch` uploads the requests, creates the batch, and waits for it. The batch id is written to a
state file named by the requests' content before waiting, so a run that is killed and restarted waits
for the same batch instead of paying for a second one. Only ids are stored, never keys or answers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import UserError
from ..hashing import digest
from .api import RetryPolicy, base_url, with_retries
from .engine import Progress

ENDPOINT = "/v1/chat/completions"
FINISHED = {"completed", "failed", "expired", "cancelled"}


def run_batch(client, bodies: list[dict], state_dir: Path, what: str, policy: RetryPolicy = RetryPolicy(),
              progress: Progress | None = None, poll_seconds: float = 1.0,
              max_poll_seconds: float = 60.0) -> list[dict | None]:
    """The response body of each request, in order; None for a request the batch could not answer."""
    lines = [{"custom_id": f"request-{i}", "method": "POST", "url": ENDPOINT, "body": body}
             for i, body in enumerate(bodies)]
    content = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
    state_file = Path(state_dir) / f"{digest('batch', base_url(), content.decode())[:32]}.json"
    batch = _resume(client, state_file, what, policy)
    if batch is None:
        upload = with_retries(lambda: client.files.create(file=("requests.jsonl", content), purpose="batch"),
                              f"{what}: uploading {len(lines)} requests", policy)
        batch = with_retries(lambda: client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT,
                                                           completion_window="24h"),
                             f"{what}: creating the batch", policy)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = state_file.with_name(f".{state_file.name}.{os.getpid()}.tmp")  # a torn file would lose the id
        partial.write_text(json.dumps({"batch_id": batch.id, "requests": len(lines)}))
        partial.replace(state_file)
    done = 0
    while batch.status not in FINISHED:
        time.sleep(poll_seconds)
        poll_seconds = min(poll_seconds * 1.5, max_poll_seconds)
        batch = with_retries(lambda: client.batches.retrieve(batch.id), f"{what}: polling batch {batch.id}", policy)
        completed = (batch.request_counts.completed + batch.request_counts.failed) if batch.request_counts else 0
        if progress and completed > done:
            progress(completed - done)
            done = completed
    if batch.status != "completed":
        state_file.unlink(missing_ok=True)  # a rerun starts a fresh batch
        raise UserError(f"{what}: batch {batch.id} ended '{batch.status}'"
                        f"{': ' + str(batch.errors) if getattr(batch, 'errors', None) else ''}")
    answers: list[dict | None] = [None] * len(lines)
    if batch.output_file_id:
        text = with_retries(lambda: client.files.content(batch.output_file_id).text,
                            f"{what}: downloading batch {batch.id}", policy)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                index = int(str(row["custom_id"]).rsplit("-", 1)[1])
            except (ValueError, KeyError, IndexError, TypeError):
                raise UserError(f"{what}: batch {batch.id} output line {number} is not a batch result "
                                "(expected JSON with custom_id and response)") from None
            response = row.get("response") or {}
            if response.get("status_code") == 200 and 0 <= index < len(lines):
                answers[index] = response.get("body")
    if progress and len(lines) > done:
        progress(len(lines) - done)
    state_file.unlink(missing_ok=True)
    return answers


def _resume(client, state_file: Path, what: str, policy: RetryPolicy):
    """The batch a previous run started for the same requests, unless it ended without answers."""
    if not state_file.is_file():
        return None
    try:
        batch_id = json.loads(state_file.read_text())["batch_id"]
    except (ValueError, KeyError):
        return None
    batch = with_retries(lambda: client.batches.retrieve(batch_id), f"{what}: resuming batch {batch_id}", policy)
    return None if batch.status in FINISHED - {"completed"} else batch
