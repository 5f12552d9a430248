"""`llmpsych serve`: the OpenAI-compatible server on loopback, queried with the real `openai` client."""

from __future__ import annotations

import io
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from llmpsych.models import load_engine
from llmpsych.models.engine import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.serve import Faults, make_server


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    engine = load_engine(str(tiny_model_dir))
    model_id = str(tiny_model_dir)
    server = make_server(engine, model_id, port=0, log=io.StringIO())  # request lines are not needed here
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address
    client = openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key="unused", max_retries=0)
    yield engine, model_id, client
    server.shutdown()
    server.server_close()


def test_models_list_names_the_served_model(served):
    _, model_id, client = served
    assert [m.id for m in client.models.list()] == [model_id]


def test_greedy_replies_match_the_engine_and_seeds_reproduce(served):
    engine, model_id, client = served
    messages = [{"role": "user", "content": "Name a colour."}]
    greedy = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=8)
    direct = engine.generate([GenerateRequest(as_messages(messages), SamplingParams(temperature=0, max_tokens=8))])
    assert greedy.choices[0].message.content == direct[0].text
    assert greedy.usage.completion_tokens == direct[0].tokens
    first = client.chat.completions.create(model=model_id, messages=messages, n=3, seed=7, max_tokens=6)
    again = client.chat.completions.create(model=model_id, messages=messages, n=3, seed=7, max_tokens=6)
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    assert len({c.message.content for c in first.choices}) > 1  # a random model at T=1: samples differ


def test_logprobs_are_a_distribution_and_the_greedy_token_is_on_top(served):
    _, model_id, client = served
    reply = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Rate 0-100."}],
                                           temperature=0, max_tokens=1, logprobs=True, top_logprobs=20)
    content = reply.choices[0].logprobs.content
    assert len(content) == 1 and len(content[0].top_logprobs) == 20
    top = content[0].top_logprobs
    assert top[0].logprob == pytest.approx(content[0].logprob, abs=1e-4)  # greedy picked the most likely token
    assert [t.logprob for t in top] == sorted((t.logprob for t in top), reverse=True)
    assert 0 < sum(math.exp(t.logprob) for t in top) <= 1 + 1e-6


@pytest.mark.parametrize("bad, field", [({"messages": []}, "messages"), ({"n": 0}, "n"),
                                        ({"temperature": "hot"}, "temperature"), ({"top_logprobs": 5}, "top_logprobs")])
def test_bad_requests_get_an_openai_error_naming_the_field(served, bad, field):
    _, model_id, client = served
    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], **bad}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**body)
    assert f"'{field}'" in str(caught.value)


def test_an_unknown_model_is_not_found(served):
    _, _, client = served
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])


def test_the_score_extension_gives_the_engines_exact_logprobs(served):
    engine, model_id, client = served
    messages = [{"role": "user", "content": "Pick A or B."}]
    answer = client.post("/llmpsych/score", cast_to=object, body={
        "model": model_id, "messages": messages, "continuations": ["A", "B", "Apple"], "closed": "all"})
    direct = engine.score([ScoreRequest(as_messages(messages), ("A", "B", "Apple"), "all")])[0]
    assert answer["logprobs"] == pytest.approx(direct, abs=1e-5)
    with pytest.raises(openai.BadRequestError, match="'closed'"):
        client.post("/llmpsych/score", cast_to=object, body={"messages": messages, "continuations": ["A"],
                                                             "closed": "maybe"})


def test_concurrent_requests_are_batched_and_answer_as_if_alone(served):
    _, model_id, client = served
    prompts = [f"Say something about the number {i}." for i in range(6)]

    def ask(prompt):
        reply = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": prompt}],
                                               seed=3, max_tokens=6)
        return reply.choices[0].message.content

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def test_injected_faults_are_429_500_or_late_at_the_asked_rate(tiny_model_dir):
    engine = load_engine(str(tiny_model_dir))
    server = make_server(engine, "m", port=0, log=io.StringIO(), faults=Faults(rate=0.5, delay=0.3, seed=1))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="unused",
                           max_retries=0, timeout=0.2)
    outcomes = []
    for _ in range(40):
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
            outcomes.append("ok")
        except openai.RateLimitError as error:
            assert error.response.headers["retry-after"] == "0"
            outcomes.append("429")
        except openai.InternalServerError:
            outcomes.append("500")
        except openai.APITimeoutError:
            outcomes.append("slow")
    server.shutdown()
    server.server_close()
    assert {"ok", "429", "500", "slow"} <= set(outcomes)
    assert 10 <= outcomes.count("ok") <= 30  # about half, from a seeded draw
