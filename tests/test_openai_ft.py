"""OpenAI fine-tuning and the Batch API against `llmpsych serve` on loopback, with the real `openai` client.

The server's side: files, fine-tuning jobs (a real LoRA fine-tune of the tiny model, then served as
`ft:...`), batches. The client's side: `Runtime.train` on an API model (`train_openai`), which resumes
its job after a restart and is cached once the job has finished.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest

from llmpsych.serve import jobs as serve_jobs
from llmpsych.errors import UserError
from llmpsych.jsonl import write_jsonl
from llmpsych.models import load_engine
from llmpsych.models.api import RETRIES, RetryPolicy, make_client
from llmpsych.models.api_batch import run_batch
from llmpsych.models.options import EngineOptions
from llmpsych.models.refs import ModelRef
from llmpsych.runtime.cache import CallCache
from llmpsych.runtime.calls import Runtime
from llmpsych.serve import Faults, make_server
from llmpsych.training import openai_ft
from llmpsych.training.config import TrainConfig

PROMPT = "What is your favourite fruit?"
ANSWER = "Bananas, always bananas."
# Epochs, batch size and multiplier reach the API; the server trains its cpu-small preset with them on top.
CONFIG = TrainConfig(epochs=3, batch_size=2, gradient_accumulation=1, learning_rate_multiplier=20)
OPTIONS = EngineOptions(api_attempts=5, api_timeout=30)


def chat_rows(count: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{PROMPT} ({i})"}, {"role": "assistant", "content": ANSWER}]}
            for i in range(count)]


def start(engine, state_dir: Path | None = None, faults: Faults = Faults()):
    server = make_server(engine, "tiny", port=0, log=io.StringIO(), faults=faults, state_dir=state_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def point_at(patch: pytest.MonkeyPatch, server) -> openai.OpenAI:
    """Aim OPENAI_BASE_URL at the server (with a dummy key) and return a client for it."""
    patch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    patch.setenv("OPENAI_API_KEY", "sk-dummy-for-tests")
    return make_client()


def stop(server) -> None:
    server.shutdown()
    server.server_close()


def new_runtime(cache: CallCache, tmp: Path) -> Runtime:
    return Runtime(cache, OPTIONS, adapters_dir=tmp / "adapters", show_progress=False)


def greedy(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{PROMPT} (0)"}],
                                           temperature=0, max_tokens=8)
    return reply.choices[0].message.content


def answer_logprob(client: openai.OpenAI, model: str) -> float:
    """The exact log-probability of the trained answer (serve's score extension)."""
    return client.post("/llmpsych/score", cast_to=object, body={
        "model": model, "messages": [{"role": "user", "content": f"{PROMPT} (0)"}], "continuations": [ANSWER]})[
        "logprobs"][0]


@pytest.fixture(scope="module")
def fine_tune(tiny_model_dir, tmp_path_factory):
    """One fine-tune through `Runtime.train`: stopped while waiting for its job, then resumed by a new runtime."""
    tmp = tmp_path_factory.mktemp("openai-ft")
    engine = load_engine(str(tiny_model_dir))
    server = start(engine, tmp / "state")
    cache = CallCache(tmp / "calls.sqlite")
    dataset = tmp / "fruit.jsonl"
    sha = write_jsonl(chat_rows(12), dataset)
    with pytest.MonkeyPatch.context() as patch:
        client = point_at(patch, server)

        def interrupt(seconds):
            raise KeyboardInterrupt  # Ctrl-C while the first run waits for its job

        with pytest.MonkeyPatch.context() as stopping:
            stopping.setattr(openai_ft, "time", SimpleNamespace(sleep=interrupt))
            with pytest.raises(KeyboardInterrupt):
                new_runtime(cache, tmp).train(ModelRef("openai", "tiny"), dataset, sha, CONFIG, 7, label="fruit")
        jobs_when_stopped = [job.id for job in client.fine_tuning.jobs.list().data]
        started = time.time()
        resumed = new_runtime(cache, tmp)
        ref = resumed.train(ModelRef("openai", "tiny"), dataset, sha, CONFIG, 7, label="fruit")
        yield SimpleNamespace(engine=engine, server=server, client=client, cache=cache, tmp=tmp, dataset=dataset,
                              sha=sha, ref=ref, jobs_when_stopped=jobs_when_stopped, resumed=resumed,
                              seconds=time.time() - started)
    stop(server)


def test_a_stopped_run_resumes_its_job_and_gets_a_served_fine_tune(fine_tune):
    client = fine_tune.client
    jobs = client.fine_tuning.jobs.list().data
    assert [job.id for job in jobs] == fine_tune.jobs_when_stopped  # the same one job: none was created again
    job = jobs[0]
    assert job.status == "succeeded" and job.seed == 7 and job.trained_tokens > 0
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (3, 2)
    assert job.hyperparameters.learning_rate_multiplier == 20
    assert fine_tune.ref == ModelRef("openai", f"ft:tiny:llmpsych:fruit:{job.id}")
    assert fine_tune.resumed.counts.executed["train"] == 1
    assert fine_tune.ref.name in [model.id for model in client.models.list()]


def test_the_fine_tune_learned_its_data(fine_tune):
    client, model = fine_tune.client, fine_tune.ref.name
    assert greedy(client, model) != greedy(client, "tiny")
    assert answer_logprob(client, model) > answer_logprob(client, "tiny") + 5
    job_id = client.fine_tuning.jobs.list().data[0].id
    events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
    steps = [e.data for e in reversed(events) if e.type == "metrics"]
    assert [s["step"] for s in steps] == list(range(1, 19)) and steps[0]["total_steps"] == 18  # 12 rows x 3 / 2
    first, last = (sum(s["train_loss"] for s in part) / 3 for part in (steps[:3], steps[-3:]))
    assert last < first - 0.5  # nats per token (about 10.8 -> 9.7 measured)


def test_a_rerun_of_a_finished_fine_tune_is_a_cache_hit(fine_tune):
    again = new_runtime(fine_tune.cache, fine_tune.tmp)
    ref = again.train(ModelRef("openai", "tiny"), fine_tune.dataset, fine_tune.sha, CONFIG, 7, label="fruit")
    assert ref == fine_tune.ref
    assert again.counts.cached["train"] == 1 and again.counts.executed["train"] == 0
    assert len(fine_tune.client.fine_tuning.jobs.list().data) == 1


def test_a_restarted_server_serves_its_finished_fine_tunes_again(fine_tune):
    before = greedy(fine_tune.client, fine_tune.ref.name)
    restarted = start(fine_tune.engine, fine_tune.tmp / "state")
    try:
        with pytest.MonkeyPatch.context() as patch:
            client = point_at(patch, restarted)
            assert fine_tune.ref.name in [model.id for model in client.models.list()]
            assert greedy(client, fine_tune.ref.name) == before
            assert client.fine_tuning.jobs.retrieve(fine_tune.ref.name.rsplit(":", 1)[1]).status == "succeeded"
    finally:
        stop(restarted)


@pytest.mark.parametrize("rows, message", [
    (chat_rows(9), "9 rows; OpenAI fine-tuning needs at least 10"),
    (chat_rows(11)[:5] + [{"messages": [{"role": "robot", "content": "Beep."}]}] + chat_rows(6),
     "line 6: messages[0] must have a role in"),
    ([{"text": f"A document about bananas, number {i}."} for i in range(12)], "document rows ('text') cannot"),
])
def test_data_the_api_cannot_train_is_refused_in_one_line(tmp_path, rows, message):
    dataset = tmp_path / "bad.jsonl"
    sha = write_jsonl(rows, dataset)
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        new_runtime(CallCache(tmp_path / "calls.sqlite"), tmp_path).train(ModelRef("openai", "tiny"), dataset, sha,
                                                                           CONFIG, 0)
    assert "\n" not in str(caught.value)


def test_job_requests_are_checked_like_openai(tiny_model_dir, monkeypatch):
    server = start(load_engine(str(tiny_model_dir)))
    client = point_at(monkeypatch, server)

    def upload(rows, purpose="fine-tune"):
        return client.files.create(file=("d.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                                   purpose=purpose).id

    good, few, batch = upload(chat_rows(10)), upload(chat_rows(9)), upload(chat_rows(10), "batch")
    cases = [({"training_file": few}, "training_file", "must have at least 10"),
             ({"training_file": batch}, "training_file", "purpose 'batch'"),
             ({"training_file": "file-missing"}, "training_file", "no file"),
             ({"training_file": good, "model": "gpt-4o"}, "model", "not served here"),
             ({"training_file": good, "method": {"type": "dpo"}}, "method.type", "supervised"),
             ({"training_file": good, "method": {"type": "supervised", "supervised": {"hyperparameters": {
                 "n_epochs": 0}}}}, "method.supervised.hyperparameters.n_epochs", "integer from 1 to 50")]
    try:
        for changes, param, text in cases:
            with pytest.raises(openai.BadRequestError, match=text) as caught:
                client.fine_tuning.jobs.create(**{"model": "tiny", **changes})
            assert caught.value.body["param"] == param
        assert client.fine_tuning.jobs.list().data == []
    finally:
        stop(server)


def test_a_failed_job_is_one_line_and_a_rerun_starts_a_new_job(tiny_model_dir, tmp_path, monkeypatch):
    server = start(load_engine(str(tiny_model_dir)))
    client = point_at(monkeypatch, server)
    dataset = tmp_path / "fruit.jsonl"
    sha = write_jsonl(chat_rows(10), dataset)
    cache = CallCache(tmp_path / "calls.sqlite")
    quick = CONFIG.model_copy(update={"epochs": 1, "batch_size": 5})

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("the trainer ran out of memory\nwhile allocating")

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(serve_jobs, "train_lora", out_of_memory)
            with pytest.raises(UserError, match=r"fine-tuning job ftjob-\w+ failed: RuntimeError: the trainer ran "
                                                r"out of memory while allocating$"):
                new_runtime(cache, tmp_path).train(ModelRef("openai", "tiny"), dataset, sha, quick, 0)
        ref = new_runtime(cache, tmp_path).train(ModelRef("openai", "tiny"), dataset, sha, quick, 0)
        statuses = [job.status for job in client.fine_tuning.jobs.list().data]
        assert statuses == ["succeeded", "failed"]  # newest first
        assert ref.name.startswith("ft:tiny:llmpsych:train:")
    finally:
        stop(server)


def batch_line(custom_id: str, content: str, seed: int, **changes) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 6, "seed": seed}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": {**body, **changes}}


def wait_for(client: openai.OpenAI, batch_id: str):
    batch = client.batches.retrieve(batch_id)
    while batch.status in ("validating", "in_progress"):
        time.sleep(0.1)
        batch = client.batches.retrieve(batch_id)
    return batch


def test_the_batch_api_answers_every_line_as_a_request_would(tiny_model_dir, monkeypatch):
    server = start(load_engine(str(tiny_model_dir)))
    client = point_at(monkeypatch, server)
    lines = [batch_line(f"ask-{i}", f"Tell me about the number {i}.", seed=i) for i in range(4)]
    lines.append(batch_line("too-hot", "Hi", seed=0, temperature=9))
    try:
        upload = client.files.create(file=("in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()),
                                     purpose="batch")
        created = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        assert created.status == "validating"
        batch = wait_for(client, created.id)
        assert batch.status == "completed"
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (5, 4, 1)
        outputs = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(o["custom_id"] for o in outputs) == [f"ask-{i}" for i in range(4)]
        for output in outputs:
            alone = client.chat.completions.create(**lines[int(output["custom_id"][-1])]["body"])
            assert output["response"]["status_code"] == 200 and output["error"] is None
            assert output["response"]["body"]["choices"][0]["message"]["content"] == alone.choices[0].message.content
        [failed] = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
        assert failed["custom_id"] == "too-hot" and failed["response"]["status_code"] == 400
        assert failed["response"]["body"]["error"]["param"] == "temperature"

        wrong = client.files.create(file=("in.jsonl", (json.dumps(lines[0]) + "\n" + json.dumps(
            {**lines[1], "url": "/v1/embeddings"}) + "\n").encode()), purpose="batch")
        refused = wait_for(client, client.batches.create(input_file_id=wrong.id, endpoint="/v1/chat/completions",
                                                         completion_window="24h").id)
        assert refused.status == "failed" and refused.errors.data[0].line == 2
        with pytest.raises(openai.BadRequestError, match="purpose 'batch', expected 'fine-tune'"):
            client.fine_tuning.jobs.create(model="tiny", training_file=upload.id)
    finally:
        stop(server)


def test_injected_faults_hit_http_requests_but_never_batch_lines(tiny_model_dir, monkeypatch, tmp_path):
    engine = load_engine(str(tiny_model_dir))
    bodies = [batch_line("x", f"Count to {i}.", seed=i)["body"] for i in range(12)]
    clean = start(engine)
    point_at(monkeypatch, clean)
    expected = run_batch(make_client(), bodies, tmp_path / "clean", "batch")
    stop(clean)
    faulty = start(engine, faults=Faults(rate=0.9, delay=0.1, seed=1))
    client = point_at(monkeypatch, faulty)
    retried_before = sum(RETRIES.retried.values())
    try:
        answers = run_batch(client, bodies, tmp_path / "faulty", "batch", RetryPolicy(attempts=20, initial_delay=0.01))
        assert [a["choices"][0]["message"]["content"] for a in answers] == \
               [a["choices"][0]["message"]["content"] for a in expected]
        assert sum(RETRIES.retried.values()) > retried_before  # the HTTP requests did meet faults
    finally:
        stop(faulty)
