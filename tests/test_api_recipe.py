"""A whole recipe through the OpenAI engine against `llmpsych serve` on loopback, with injected faults,
compared with the same run on the local engine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_integration_embedded import cli

pytestmark = pytest.mark.integration

# Base model only (no fine-tunes), no judge check: sampling, the choice probe and judging all run.
# Every sample decoded alone on both sides (generate batch size 1): a sample's rounding, and with it now and
# then a sampled token, depends on the rows batched with it (fp32 CPU matrix multiplies round differently with
# their row count; 1 in 83 answers of 40 tokens differed alone and batched), and the server batches whatever
# requests arrive together, retries included.
CONFIG = {"recipe": "emergent-misalignment", "preset": "smoke", "conditions": [], "judge": {"check": False},
          "engine": {"dtype": "float32", "generate_batch_size": 1, "api_timeout": 8, "api_attempts": 30}}
# What names the engine, not the results (the protocol audit shows the run's model reference).
IGNORED = {"created", "model", "fingerprint", "ref", "api_retries", "protocol"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def faulty_server(tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    env = {**os.environ, "LLMPSYCH_CACHE": str(tmp_path / "serve-cache")}
    process = subprocess.Popen([sys.executable, "-m", "llmpsych", "serve", "smollm2-135m-instruct", "--port", str(port),
                                "--dtype", "float32", "--batch-size", "1", "--inject-faults", "0.2", "--fault-delay", "10"],
                               stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
    yield url, tmp_path / "serve.log"
    process.terminate()
    process.wait(timeout=30)
    log.close()


def without(value, ignored=IGNORED):
    if isinstance(value, dict):
        return {k: without(v) for k, v in value.items() if k not in ignored}
    if isinstance(value, list):
        return [without(v) for v in value]
    return pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value


def rows(path: Path, *fields: str) -> list[tuple]:
    return [tuple(json.loads(line)[f] for f in fields) for line in path.read_text().splitlines()]


def test_a_recipe_through_the_api_with_20_percent_faults_reports_as_the_local_engine(tmp_path, faulty_server,
                                                                                    monkeypatch):
    url, server_log = faulty_server
    (tmp_path / "em.yaml").write_text(yaml.safe_dump(CONFIG))
    cli("run", "em.yaml", "--out", "local", cache=tmp_path / "cache-local", cwd=tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy-key-0123456789")
    cli("run", "em.yaml", "--model", "openai:smollm2-135m-instruct", "--out", "api", cache=tmp_path / "cache-api",
        cwd=tmp_path)
    local, api = tmp_path / "local", tmp_path / "api"
    calls = json.loads((api / "calls.json").read_text())
    assert calls["generate"]["executed"] > 0 and sum(calls["api_retries"].values()) > 0  # it ran, through faults
    assert " 500 " in server_log.read_text() or " 429 " in server_log.read_text()
    sample = ("id", "question_id", "answer")
    assert rows(api / "samples.jsonl", *sample) == rows(local / "samples.jsonl", *sample)  # nothing lost or changed
    judged = [json.loads(line) for line in (api / "judgements.jsonl").read_text().splitlines()]
    assert [without(j) for j in judged] == [without(json.loads(line)) for line in
                                            (local / "judgements.jsonl").read_text().splitlines()]
    assert without(json.loads((api / "summary.json").read_text())) == \
        without(json.loads((local / "summary.json").read_text()))
    for path in api.rglob("*"):  # the key never lands in the run directory
        assert not path.is_file() or b"sk-test-dummy-key" not in path.read_bytes(), path
