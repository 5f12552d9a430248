"""Steering: a direction added after a block changes exactly that block's output, moves scores in the sign's
direction, applies to generation, scoring and capture alike, keys the cache, and leaves no hook behind."""

from __future__ import annotations

import numpy as np
import pytest

from llmpsych.errors import UserError
from llmpsych.models import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.models.activations import CaptureRequest
from llmpsych.models.refs import parse_model_ref
from llmpsych.models.steering import read_directions

QUESTION = as_messages("Which letter comes first, A or B?")


@pytest.fixture
def tiny(tiny_model_dir):
    return parse_model_ref(str(tiny_model_dir))


def save_pt(path, array) -> str:
    import torch

    torch.save(torch.from_numpy(np.asarray(array, dtype=np.float32)), path)
    return str(path)


def letter_direction(runtime, tiny) -> np.ndarray:
    """The output embedding of " A" minus that of " B": added before the head, it favours A over B."""
    backend = runtime.engine(tiny).backend
    weight = backend.model.get_output_embeddings().weight.detach().float().numpy()
    a, b = (backend._continuation_ids(letter)[0] for letter in ("A", "B"))
    return weight[a] - weight[b]


def test_steering_adds_the_direction_after_its_block_and_nothing_before(runtime, tiny, tmp_path):
    rng = np.random.default_rng(0)
    vector = save_pt(tmp_path / "v.pt", rng.normal(size=64))
    plain = runtime.capture(tiny, [CaptureRequest(QUESTION, "A.")])[0]
    steered = runtime.capture(tiny.with_steering(vector, 1, 3.0), [CaptureRequest(QUESTION, "A.")])[0]
    direction = read_directions(tmp_path / "v.pt")
    for readout in ("prompt_last", "prompt_mean", "response_mean"):
        np.testing.assert_allclose(steered.at(1, readout) - plain.at(1, readout), 3.0 * direction, atol=1e-4)
    assert not np.allclose(steered.at(2), plain.at(2) + 3.0 * direction, atol=1e-3)  # later blocks react


def test_opposite_signs_move_a_score_in_opposite_directions(runtime, tiny, tmp_path):
    vector = save_pt(tmp_path / "a_minus_b.pt", letter_direction(runtime, tiny))
    request = [ScoreRequest(QUESTION, ("A", "B"), closed="all")]

    def margin(ref) -> float:
        a, b = runtime.score(ref, request)[0]
        return a - b

    before = margin(tiny)
    towards_a, towards_b = (margin(tiny.with_steering(vector, 2, c)) for c in (4.0, -4.0))
    assert towards_a > before + 1.0 and towards_b < before - 1.0
    assert margin(tiny) == pytest.approx(before, abs=1e-6)  # the hooks are gone afterwards


def test_generation_is_steered_and_keyed_apart(runtime, tiny, tmp_path):
    vector = save_pt(tmp_path / "a_minus_b.pt", letter_direction(runtime, tiny))
    steered_ref = tiny.with_steering(vector, 2, 30.0)
    request = [GenerateRequest(QUESTION, SamplingParams(temperature=0, max_tokens=6))]
    plain, steered = runtime.generate(tiny, request)[0], runtime.generate(steered_ref, request)[0]
    assert steered.text != plain.text and "A" in steered.text
    assert runtime.fingerprint(steered_ref) != runtime.fingerprint(tiny)
    assert runtime.fingerprint(tiny.with_steering(vector, 2, -30.0)) != runtime.fingerprint(steered_ref)
    assert runtime.counts.executed["generate"] == 2


def test_direction_files_in_every_format_and_per_layer(runtime, tiny, tmp_path):
    from safetensors.numpy import save_file

    rows = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)  # embeddings + 2 layers
    save_file({"vectors": rows}, str(tmp_path / "v.safetensors"))
    np.save(tmp_path / "v.npy", rows[2])
    from_table = runtime.capture(tiny.with_steering(tmp_path / "v.safetensors", 2, 1.0), [CaptureRequest(QUESTION)])
    from_vector = runtime.capture(tiny.with_steering(tmp_path / "v.npy", 2, 1.0), [CaptureRequest(QUESTION)])
    np.testing.assert_allclose(from_table[0].at(2, "prompt_last"), from_vector[0].at(2, "prompt_last"), atol=1e-5)


@pytest.mark.parametrize("array, message", [
    (np.zeros(63), "vectors of size 63; this model's hidden size is 64"),
    (np.zeros((2, 64)), "holds 2 rows; expected 3"),
    (np.full(64, np.nan), "expected a finite"),
])
def test_a_direction_that_does_not_fit_is_one_line(runtime, tiny, tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(UserError, match=message):
        runtime.score(tiny.with_steering(tmp_path / "bad.npy", 1, 1.0), [ScoreRequest(QUESTION, ("A",))])


def test_steering_needs_a_local_transformers_model(tiny, tmp_path):
    from llmpsych.models.vllm_engine import VLLMEngine

    with pytest.raises(UserError, match="steering needs a local model"):
        parse_model_ref("openai:gpt-4o").with_steering(tmp_path / "v.pt", 1, 1.0)
    with pytest.raises(UserError, match="steering needs engine backend 'hf'"):
        VLLMEngine(tiny.with_steering(tmp_path / "v.pt", 1, 1.0), backend=None)
    with pytest.raises(UserError, match="not found"):
        read_directions(tmp_path / "missing.pt")


def test_a_served_steered_model_answers_as_the_steered_engine(runtime, tiny, tmp_path):
    import io
    import threading

    import openai

    from llmpsych.models import load_engine
    from llmpsych.serve import make_server

    vector = save_pt(tmp_path / "a_minus_b.pt", letter_direction(runtime, tiny))
    engine = load_engine(tiny.with_steering(vector, 2, 30.0), runtime.options)
    server = make_server(engine, "steered", port=0, log=io.StringIO())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="unused", max_retries=0)
    try:
        reply = client.chat.completions.create(model="steered", messages=list(QUESTION), max_tokens=6, temperature=0)
    finally:
        server.shutdown()
        server.server_close()
    expected = engine.generate([GenerateRequest(QUESTION, SamplingParams(temperature=0, max_tokens=6))])[0].text
    assert reply.choices[0].message.content == expected
    assert expected != load_engine(tiny, runtime.options).generate(
        [GenerateRequest(QUESTION, SamplingParams(temperature=0, max_tokens=6))])[0].text
