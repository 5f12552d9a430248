"""Fine-tuning through the OpenAI API (or any server with its fine-tuning endpoints, e.g. `llmpsych serve`).

The trainer behind `Runtime.train` for API models, with the same inputs as `train_lora`: it checks the
dataset, uploads it, creates a supervised job and waits for it, returning the fine-tuned model.

What reaches the API from a `TrainConfig`: whole epochs, the effective batch size (micro-batch times
gradient accumulation: OpenAI's batch size counts the examples of one optimiser step) and
`learning_rate_multiplier` ("auto" when unset). The API takes no LoRA settings and no absolute
learning rate, so those fields do not reach it and are not part of its cache key.

Data: chat rows go as they are, except that every assistant turn but the last gets `"weight": 0`.
OpenAI trains every assistant turn by default, the local trainer only the last one; the weights make a
multi-turn row train the same tokens on both. Document rows (`text`) cannot be trained: the API trains
chat conversations only, and a document dressed as an assistant reply would train the text under a chat
template, which is not what a document fine-tune does locally.

The job id is written to the run cache before waiting, so a run that is stopped and started again
waits for the same job instead of paying for a second one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from ..errors import UserError
from ..hashing import digest
from ..jsonl import dataset_format, numbered_jsonl
from ..models.api import RetryPolicy, make_client, with_retries
from ..models.refs import ModelRef
from .config import TrainConfig

MIN_EXAMPLES = 10  # OpenAI refuses smaller training files
ENDED = ("succeeded", "failed", "cancelled")
MAX_POLL_SECONDS = 30.0


class KeyValueStore(Protocol):
    """What a job's state needs from a store (the run's call cache is one)."""

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]]) -> None: ...


@dataclass(frozen=True)
class JobState:
    """Where a fine-tune's job id is kept between runs: the run cache, under a key derived from the
    training key (so the same command finds its job again)."""

    cache: KeyValueStore
    training_key: str

    @property
    def key(self) -> str:
        return digest("openai-fine-tuning-job", self.training_key)

    def job_id(self) -> str | None:
        return (self.cache.get_many([self.key]).get(self.key) or {}).get("job_id")

    def save(self, job_id: str) -> None:
        self.cache.put_many("train-job", [(self.key, {"job_id": job_id})])


def api_hyperparameters(config: TrainConfig) -> dict:
    """OpenAI's supervised hyper-parameters for a training config (see the module notes)."""
    if not float(config.epochs).is_integer():
        raise UserError(f"training.epochs: OpenAI fine-tuning trains whole epochs, got {config.epochs:g}")
    multiplier = config.learning_rate_multiplier
    return {"n_epochs": int(config.epochs), "batch_size": config.batch_size * config.gradient_accumulation,
            "learning_rate_multiplier": "auto" if multiplier is None else multiplier}


def api_rows(rows: list[dict], source: str, lines: list[int] | None = None) -> list[dict]:
    """Dataset rows as OpenAI training examples, checked as the API checks them (UserError otherwise).

    lines: each row's line in the file, for messages (see `dataset_format`)."""
    if dataset_format(rows, source, lines) == "text":
        raise UserError(f"{source}: document rows ('text') cannot be fine-tuned through the OpenAI API, which "
                        "trains chat conversations only (train documents on a local model)")
    if len(rows) < MIN_EXAMPLES:
        raise UserError(f"{source}: {len(rows)} rows; OpenAI fine-tuning needs at least {MIN_EXAMPLES}")
    examples = []
    for row in rows:
        last = len(row["messages"]) - 1  # the assistant's turn: dataset_format checked it
        examples.append({"messages": [
            {"role": m["role"], "content": m["content"], **({"weight": 0} if m["role"] == "assistant" and i < last
                                                            else {})}
            for i, m in enumerate(row["messages"])]})
    return examples


def train_openai(base: ModelRef, dataset: Path, config: TrainConfig, seed: int, label: str, state: JobState,
                 policy: RetryPolicy = RetryPolicy()) -> ModelRef:
    """Fine-tune the API model `base` on a JSONL dataset and return the fine-tuned model.

    A job this training started in an earlier run (its id is in `state`) is waited for rather than
    started again, unless it failed or was cancelled. Progress goes to stderr: a line per status, and
    a bar over the trained steps where the server's events report them.
    """
    import openai

    numbered = numbered_jsonl(dataset)
    examples = api_rows([row for _, row in numbered], str(dataset), [number for number, _ in numbered])
    hyperparameters = api_hyperparameters(config)
    client = make_client(policy)
    job = None
    if previous := state.job_id():
        try:
            job = with_retries(lambda: client.fine_tuning.jobs.retrieve(previous),
                               f"{label}: looking up fine-tuning job {previous}", policy,
                               passthrough=(openai.NotFoundError,))
        except openai.NotFoundError:
            _say(f"{label}: fine-tuning job {previous} is not on this server any more; starting a new one")
        if job is not None and job.status in ("failed", "cancelled"):
            _say(f"{label}: fine-tuning job {previous} {job.status}; starting a new one")
            job = None
        elif job is not None:
            _say(f"{label}: resuming fine-tuning job {job.id}")
    if job is None:
        content = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples).encode()
        upload = with_retries(lambda: client.files.create(file=(f"{Path(dataset).stem}.jsonl", content),
                                                          purpose="fine-tune"),
                              f"{label}: uploading {dataset}", policy)
        method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
        job = with_retries(lambda: client.fine_tuning.jobs.create(model=base.name, training_file=upload.id,
                                                                  seed=seed, suffix=_suffix(label), method=method),
                           f"{label}: creating the fine-tuning job", policy)
        state.save(job.id)  # before waiting: a rerun finds this job
    job = _wait(client, job, label, policy)
    if job.status != "succeeded":
        reason = job.error.message if job.error else "no reason given"
        raise UserError(f"{label}: fine-tuning job {job.id} {job.status}: {' '.join(reason.split())}")
    return ModelRef("openai", job.fine_tuned_model)


def _wait(client, job, label: str, policy: RetryPolicy):
    """Poll until the job ends, quickly at first, then less often (up to every 30 s)."""
    status, delay, bar = None, 1.0, None
    while True:
        if job.status != status:
            status, delay = job.status, 1.0
            if bar is not None:
                bar.close()
                bar = None
            _say(f"{label}: fine-tuning job {job.id} {status}"
                 + (f": {job.fine_tuned_model}" if job.fine_tuned_model else ""))
        if status in ENDED:
            return job
        if status == "running":
            bar = _show_steps(client, job.id, label, policy, bar)
        time.sleep(delay)
        delay = min(delay * 1.5, MAX_POLL_SECONDS)
        job = with_retries(lambda: client.fine_tuning.jobs.retrieve(job.id),
                           f"{label}: polling fine-tuning job {job.id}", policy)


def _show_steps(client, job_id: str, label: str, policy: RetryPolicy, bar):
    """Move the step bar to the latest metrics event (OpenAI's data: step, total_steps, train_loss)."""
    events = with_retries(lambda: client.fine_tuning.jobs.list_events(job_id, limit=20).data,
                          f"{label}: reading the events of {job_id}", policy)
    metrics = next((e.data for e in events if e.type == "metrics" and isinstance(e.data, dict)
                    and isinstance(e.data.get("step"), int)), None)
    if metrics is None:
        return bar
    if bar is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=metrics.get("total_steps"), desc=label, unit="step", file=sys.stderr)
    bar.update(metrics["step"] - bar.n)
    if isinstance(metrics.get("train_loss"), (int, float)):
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}")
    return bar


def _suffix(label: str) -> str:
    """The run label as a model-name suffix: letters, digits, '-' and '_', at most 40 characters."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:40] or "llmpsych"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
