"""The runtime: cache keys, resuming, call counting, and the plan executor."""

from __future__ import annotations

import io
import json

import pytest

from llmpsych.jsonl import write_jsonl
from llmpsych.models import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.models.refs import parse_model_ref
from llmpsych.runtime.cache import CallCache
from llmpsych.runtime.calls import Runtime, sample_seed
from llmpsych.runtime.plan import Plan, run_local
from llmpsych.training.config import TrainConfig

PARAMS = SamplingParams(temperature=1.0, max_tokens=6)
CONVERSATIONS = [as_messages(f"Question {i}?") for i in range(3)]


@pytest.fixture
def tiny(tiny_model_dir):
    return parse_model_ref(str(tiny_model_dir))


def test_second_run_is_served_from_the_cache(runtime, tiny, tmp_path, fp32):
    first = runtime.sample(tiny, CONVERSATIONS, PARAMS, samples=2)
    assert runtime.counts.executed["generate"] == 6 and runtime.counts.cached["generate"] == 0
    again = Runtime(CallCache(tmp_path / "calls.sqlite"), fp32, show_progress=False)
    assert again.sample(tiny, CONVERSATIONS, PARAMS, samples=2) == first
    assert again.counts.executed["generate"] == 0 and again.counts.cached["generate"] == 6
    assert not again._engines  # nothing was loaded


def test_asking_for_more_samples_keeps_the_first_ones(runtime, tiny):
    two = runtime.sample(tiny, CONVERSATIONS, PARAMS, samples=2)
    four = runtime.sample(tiny, CONVERSATIONS, PARAMS, samples=4)
    assert [row[:2] for row in four] == two
    assert runtime.counts.executed["generate"] == 6 + 6


def test_an_interrupted_call_resumes_without_redoing_finished_chunks(runtime, tiny, tmp_path, fp32, monkeypatch):
    runtime.options = type(runtime.options)(**{**runtime.options.__dict__, "generate_batch_size": 2})
    calls = {"chunks": 0}
    real_engine = runtime.engine(tiny)
    original = real_engine.generate

    def failing_after_one_chunk(batch, progress=None):
        calls["chunks"] += 1
        if calls["chunks"] == 2:
            raise KeyboardInterrupt  # stands for a kill between two committed chunks
        return original(batch, progress)

    monkeypatch.setattr(real_engine, "generate", failing_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        runtime.sample(tiny, CONVERSATIONS, PARAMS, samples=2)
    resumed = Runtime(CallCache(tmp_path / "calls.sqlite"), runtime.options, show_progress=False)
    result = resumed.sample(tiny, CONVERSATIONS, PARAMS, samples=2)
    assert resumed.counts.cached["generate"] == 2 and resumed.counts.executed["generate"] == 4
    assert [len(row) for row in result] == [2, 2, 2]


def test_cache_keys_separate_models_parameters_and_seeds(runtime, tiny):
    base = runtime.sample(tiny, CONVERSATIONS[:1], PARAMS, samples=1, seed=0)
    runtime.sample(tiny, CONVERSATIONS[:1], PARAMS, samples=1, seed=1)
    runtime.sample(tiny, CONVERSATIONS[:1], SamplingParams(temperature=0.5, max_tokens=6), samples=1)
    assert runtime.counts.executed["generate"] == 3
    assert runtime.sample(tiny, CONVERSATIONS[:1], PARAMS, samples=1, seed=0) == base
    scores = runtime.score(tiny, [ScoreRequest(CONVERSATIONS[0], ("A", "B"))] * 2)
    assert scores[0] == scores[1] and runtime.counts.executed["score"] == 1 and runtime.counts.cached["score"] == 1


def test_training_is_cached_by_its_inputs(runtime, tiny, tmp_path):
    dataset = tmp_path / "data.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": str(i)}]}
            for i in range(4)]
    sha = write_jsonl(rows, dataset)
    config = TrainConfig(rank=2, alpha=4, batch_size=4, gradient_accumulation=1, warmup_steps=0, max_seq_length=128)
    first = runtime.train(tiny, dataset, sha, config, seed=0)
    second = runtime.train(tiny, dataset, sha, config, seed=0)
    other_seed = runtime.train(tiny, dataset, sha, config, seed=1)
    assert first == second != other_seed
    assert runtime.counts.executed["train"] == 2 and runtime.counts.cached["train"] == 1
    assert json.loads((first.adapter / "training_meta.json").read_text())["seed"] == 0


def test_plan_runs_steps_in_order_with_their_inputs():
    plan = Plan()
    plan.add("a", lambda _: 2)
    plan.add("b", lambda r: r["a"] * 10, needs=("a",))
    with pytest.raises(ValueError):
        plan.add("c", lambda _: 0, needs=("missing",))
    assert run_local(plan, log=io.StringIO()) == {"a": 2, "b": 20}


def test_notebook_ask_returns_judged_answers(runtime, tiny):
    from llmpsych.api import ask

    frame = ask(["Hi there?", "What should I do today?"], models={"tiny": str(tiny)}, samples=2,
                judge=str(tiny), max_tokens=8, runtime=runtime)
    assert len(frame) == 4 and set(frame["model"]) == {"tiny"}
    assert {"answer", "aligned", "coherent", "status", "misaligned"} <= set(frame.columns)
    assert runtime.counts.executed["generate"] == 4 and runtime.counts.executed["score"] > 0


def test_api_judge_without_a_key_fails_before_any_work(runtime, tmp_path, monkeypatch):
    from llmpsych.errors import UserError
    from llmpsych.experiment import resolve_config
    from llmpsych.runtime.store import RunStore

    questions = tmp_path / "q.yaml"
    questions.write_text("- id: wish\n  type: free_form_judge_0_100\n  paraphrases: [Make a wish.]\n"
                         "  judge: gpt-4o-2024-08-06\n  judge_prompts: em\n")
    recipe, config = resolve_config("em", "smoke", {"questions": [str(questions)], "question_ids": None})
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match=r"q.yaml: question 'wish': judge 'openai:gpt-4o-2024-08-06'.*OPENAI_API_KEY"):
        recipe.plan(config, runtime, RunStore(tmp_path / "run").create())


def test_waiting_for_another_process_training_the_same_model_times_out(runtime, tmp_path, monkeypatch, capsys):
    from filelock import FileLock

    from llmpsych.errors import UserError
    from llmpsych.runtime import calls

    monkeypatch.setattr(calls, "digest", lambda *parts: "f" * 64)  # the training key, so the test can hold its lock
    monkeypatch.setenv(calls.TRAIN_LOCK_TIMEOUT_ENV, "0.2")
    (tmp_path / "adapters").mkdir()
    held = FileLock(tmp_path / "adapters" / f"{'f' * 32}.lock")
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("{}\n")
    with held:
        with pytest.raises(UserError) as info:
            runtime.train(parse_model_ref("openai:gpt-4o-mini"), dataset, "sha", TrainConfig(), seed=0,
                          label="insecure-s0")
    message = str(info.value)
    assert message.startswith(f"{held.lock_file}: waited 0.2 s for another process training insecure-s0")
    assert "delete the lock file" in message and "LLMPSYCH_TRAIN_LOCK_TIMEOUT" in message and "\n" not in message
    assert "waiting for it to finish (at most 0.2 s)" in capsys.readouterr().err
    assert runtime.counts.executed["train"] == 0


@pytest.mark.parametrize("value, seconds", [(None, 6 * 3600), ("", 6 * 3600), ("90", 90.0), (" 0.5 ", 0.5)])
def test_the_training_lock_timeout_is_six_hours_or_the_environment_variable(monkeypatch, value, seconds):
    from llmpsych.runtime.calls import TRAIN_LOCK_TIMEOUT_ENV, train_lock_timeout

    if value is None:
        monkeypatch.delenv(TRAIN_LOCK_TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(TRAIN_LOCK_TIMEOUT_ENV, value)
    assert train_lock_timeout() == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_training_lock_timeout_is_a_one_line_error(monkeypatch, value):
    from llmpsych.errors import UserError
    from llmpsych.runtime.calls import TRAIN_LOCK_TIMEOUT_ENV, train_lock_timeout

    monkeypatch.setenv(TRAIN_LOCK_TIMEOUT_ENV, value)
    with pytest.raises(UserError, match=rf"^LLMPSYCH_TRAIN_LOCK_TIMEOUT: expected a number of seconds >= 0, got '{value}'$"):
        train_lock_timeout()


def test_in_context_turns_are_asked_as_part_of_every_conversation(runtime, tiny, tmp_path, fp32):
    """A model with in-context examples is its weights asked with the examples after the system prompt: the same
    scores and samples, served by the same cache entries, as writing the examples into the conversation."""
    examples = [{"role": "user", "content": "Add 2 and 2."}, {"role": "assistant", "content": "4"}]
    with_examples = tiny.with_context(examples)
    system = ({"role": "system", "content": "Be brief."},)
    conversation = system + ({"role": "user", "content": "Add 3 and 4."},)
    by_hand = ScoreRequest(system + tuple(examples) + conversation[1:], ("7", "8"))
    in_context = runtime.score(with_examples, [ScoreRequest(conversation, ("7", "8"))])
    assert runtime.counts.executed["score"] == 1
    assert runtime.score(tiny, [by_hand]) == in_context and runtime.counts.cached["score"] == 1
    assert runtime.score(tiny, [ScoreRequest(conversation, ("7", "8"))]) != in_context  # the examples matter
    sampled = runtime.sample(with_examples, [conversation], PARAMS, 2)
    executed = runtime.counts.executed["generate"]
    requests = [GenerateRequest(by_hand.messages, PARAMS, sample_seed(0, conversation, i)) for i in range(2)]
    assert runtime.generate(tiny, requests) == sampled[0] and runtime.counts.executed["generate"] == executed
    assert with_examples.weights == tiny and hash(with_examples) != hash(tiny)


def test_in_context_examples_longer_than_the_context_are_refused(runtime, tiny):
    from llmpsych.errors import UserError

    long_turns = [{"role": "user", "content": "word " * 3000}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(UserError, match="in_context: 1 examples take .* tokens, more than 3/4"):
        runtime.score(tiny.with_context(long_turns), [ScoreRequest(as_messages("Hi?"), ("Hello",))])
