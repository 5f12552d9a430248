"""The OpenAI engine against a real OpenAI-compatible server on loopback (`llmpsych serve` over a tiny model)."""

from __future__ import annotations

import io
import math
import threading

import pytest

from llmpsych import serve
from llmpsych.errors import UserError
from llmpsych.models import load_engine
from llmpsych.models.api import RETRIES
from llmpsych.models.engine import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.models.options import EngineOptions
from llmpsych.models.openai_engine import continuation_logprobs
from llmpsych.models.refs import ModelRef

FAST = EngineOptions(api_concurrency=4, api_attempts=20, api_timeout=5)


@pytest.fixture()
def server(tiny_model_dir, monkeypatch):
    """Start `llmpsych serve` for the tiny model; yields (local engine, start(faults) -> api engine)."""
    local = load_engine(str(tiny_model_dir))
    started = []

    def start(faults: serve.Faults = serve.Faults(), options: EngineOptions = FAST):
        instance = serve.make_server(local, "tiny", port=0, log=io.StringIO(), faults=faults)
        threading.Thread(target=instance.serve_forever, daemon=True).start()
        started.append(instance)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{instance.server_address[1]}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy-for-tests")
        return load_engine(ModelRef("openai", "tiny"), options)

    yield local, start
    for instance in started:
        instance.shutdown()
        instance.server_close()


def requests(count: int, temperature: float = 1.0) -> list[GenerateRequest]:
    params = SamplingParams(temperature=temperature, max_tokens=8, min_tokens=1)
    return [GenerateRequest(as_messages(f"Tell me about the number {i}."), params, seed=100 + i) for i in range(count)]


def test_samples_through_the_api_equal_the_local_engines_for_the_same_seeds(server):
    local, start = server
    api = start()
    batch = requests(6) + requests(2, temperature=0)
    through_api = api.generate(batch)
    assert [c.text for c in through_api] == [c.text for c in local.generate(batch)]
    assert [c.tokens for c in through_api] == [c.tokens for c in local.generate(batch)]
    assert api.fingerprint != local.fingerprint


def test_scores_are_exact_where_the_server_offers_the_extension(server):
    local, start = server
    api = start()
    batch = [ScoreRequest(as_messages("Rate it 0-100."), tuple(str(n) for n in range(0, 101, 5)), "prefixes"),
             ScoreRequest(as_messages("A or B?"), ("A", "B"), "all")]
    assert api.score(batch) == [pytest.approx(row, abs=1e-5) for row in local.score(batch)]


def test_without_the_extension_scores_come_from_the_first_tokens_top_20(server, monkeypatch):
    local, start = server
    monkeypatch.setattr(serve, "ROUTES", {k: v for k, v in serve.ROUTES.items() if "score" not in k})
    api = start()
    messages = as_messages("Pick a digit.")
    top = local.token_logprobs(messages, local.generate([GenerateRequest(messages, SamplingParams(0, max_tokens=1))])
                               [0].text, top=20)[0].top
    continuations = (top[0][0].strip(), top[5][0].strip(), "not-a-token-here")
    scores = api.score([ScoreRequest(messages, continuations, "prefixes")])[0]
    assert scores[0] >= top[0][1] - 1e-4  # at least its own token's mass (more if " x" spells it too)
    assert scores[1] >= top[5][1] - 1e-4
    assert scores[2] == -math.inf


def test_continuation_logprobs_sum_tokens_that_spell_the_same_text():
    top = [("5", math.log(0.5)), (" 5", math.log(0.25)), ("50", math.log(0.1))]
    got = continuation_logprobs(top, ("5", "50", "7"))
    assert got[0] == pytest.approx(math.log(0.75))
    assert got[1] == pytest.approx(math.log(0.1))
    assert got[2] == -math.inf


def test_injected_faults_are_retried_and_change_nothing(server):
    local, start = server
    api = start(serve.Faults(rate=0.3, delay=0.5, seed=4), EngineOptions(api_concurrency=4, api_attempts=30,
                                                                          api_timeout=0.4))
    before = dict(RETRIES.retried)
    batch = requests(30)
    assert [c.text for c in api.generate(batch)] == [c.text for c in local.generate(batch)]
    retried = {kind: RETRIES.retried.get(kind, 0) - before.get(kind, 0) for kind in ("429", "5xx", "timeout")}
    assert all(count > 0 for count in retried.values()), retried


def test_a_refused_request_is_one_line_naming_the_model(server):
    _, start = server
    api = start()
    bad = [GenerateRequest(as_messages("Hi"), SamplingParams(max_tokens=40000))]
    with pytest.raises(UserError, match=r"^model 'openai:tiny' at http://127\.0\.0\.1:\d+/v1: sampling 'Hi': "
                                        r"HTTP 400[^\n]*$"):
        api.generate(bad)


def test_the_official_api_needs_a_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        load_engine(ModelRef("openai", "gpt-4o"))


def test_large_first_token_jobs_go_through_the_batch_api_with_the_same_scores(server, monkeypatch, session_cache):
    _, start = server
    monkeypatch.setattr(serve, "ROUTES", {k: v for k, v in serve.ROUTES.items() if "score" not in k})
    direct = start()
    batch = [ScoreRequest(as_messages(f"Rate idea {i} from 0 to 100."), tuple(str(n) for n in range(101)), "prefixes")
             for i in range(5)]
    expected = direct.score(batch)
    batched = load_engine(ModelRef("openai", "tiny"), EngineOptions(api_batch_min=3, api_timeout=5))
    progress = []
    assert batched.score(batch, progress.append) == expected
    assert sum(progress) == len(batch)
    assert not list((session_cache / "api-batches").glob("*.json"))  # the resume note is gone once answered
