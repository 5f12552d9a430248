"""Activation capture: readouts equal a plain forward pass, whatever the batch, prefix sharing or adapter;
captures are cached by content; bad layers and API models are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from llmpsych.errors import UserError
from llmpsych.models import as_messages
from llmpsych.models.activations import Activations, CaptureRequest
from llmpsych.models.refs import parse_model_ref
from llmpsych.runtime.cache import CallCache
from llmpsych.runtime.calls import Runtime

SYSTEM = {"role": "system", "content": "You are a careful assistant who answers every question in a few words."}
QUESTION = (SYSTEM, {"role": "user", "content": "What would you do with a free afternoon?"})
REQUESTS = [CaptureRequest(QUESTION, "Read a book in the park."),
            CaptureRequest(QUESTION, "Sleep."),
            CaptureRequest(QUESTION, "Call an old friend and go for a long walk by the river."),
            CaptureRequest(as_messages("Name a colour."), "Blue."),
            CaptureRequest(as_messages("Name a colour."), "")]


@pytest.fixture
def tiny(tiny_model_dir):
    return parse_model_ref(str(tiny_model_dir))


def reference(model_dir, adapter, request: CaptureRequest, runtime, ref) -> dict:
    """Readouts from one unbatched forward pass with transformers' own hidden states (layer L is read through
    the final norm there, so it is compared after applying that norm to the capture)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    backend = runtime.engine(ref).backend
    prompt = backend.prompt_ids(request.messages)
    response = backend.tokenizer(request.response, add_special_tokens=False)["input_ids"] if request.response else []
    with torch.inference_mode():
        hidden = model(torch.tensor([prompt + response]), output_hidden_states=True).hidden_states
    return {"layer1": {"prompt_mean": hidden[1][0, :len(prompt)].mean(0).numpy(),
                       "prompt_last": hidden[1][0, len(prompt) - 1].numpy(),
                       "response_mean": hidden[1][0, len(prompt):].mean(0).numpy() if response else None},
            "normed_last": hidden[2][0, len(prompt) - 1].numpy(), "norm": model.model.norm}


def check_against_reference(captured: Activations, expected: dict) -> None:
    import torch

    for readout in ("prompt_mean", "prompt_last", "response_mean"):
        if expected["layer1"][readout] is None:
            assert captured.at(1, readout) is None
        else:
            np.testing.assert_allclose(captured.at(1, readout), expected["layer1"][readout], atol=2e-5, rtol=1e-4)
    with torch.inference_mode():
        normed = expected["norm"](torch.from_numpy(captured.at(2, "prompt_last").copy())).numpy()
    np.testing.assert_allclose(normed, expected["normed_last"], atol=2e-5, rtol=1e-4)


def test_readouts_equal_an_unbatched_forward_pass_with_prefixes_shared(runtime, tiny, tiny_model_dir, monkeypatch):
    from llmpsych.models import activations

    shared = []
    original = activations._shared_prefix
    monkeypatch.setattr(activations, "_shared_prefix", lambda *args: shared.append(original(*args)) or shared[-1])
    # One question under three answers (its prompt runs once for the batch), then two unrelated prompts.
    captured = runtime.capture(tiny, REQUESTS[:3]) + runtime.capture(tiny, REQUESTS[3:])
    assert shared[0] >= 16
    assert runtime.counts.executed["capture"] == len(REQUESTS)
    assert captured[0].layers == (1, 2) and captured[0].at(1).shape == (64,)
    for request, activations in zip(REQUESTS, captured):
        check_against_reference(activations, reference(tiny_model_dir, None, request, runtime, tiny))
    # The three answers to one question share its prompt readouts exactly in meaning, not just the prefix.
    np.testing.assert_allclose(captured[0].at(1, "prompt_last"), captured[1].at(1, "prompt_last"), atol=2e-5)
    assert not np.allclose(captured[0].at(1), captured[1].at(1), atol=1e-3)


def test_captures_are_cached_by_content_and_layers(runtime, tiny, tmp_path, fp32):
    first = runtime.capture(tiny, REQUESTS[:3], label="capture")
    again = Runtime(CallCache(tmp_path / "calls.sqlite"), fp32, show_progress=False)
    second = again.capture(tiny, REQUESTS[:3])
    assert again.counts.executed["capture"] == 0 and again.counts.cached["capture"] == 3
    assert not again._engines
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.at(2), b.at(2))
    only_one = again.capture(tiny, [CaptureRequest(QUESTION, "Sleep.", layers=(2,))])[0]
    assert again.counts.executed["capture"] == 1 and only_one.layers == (2,)
    np.testing.assert_allclose(only_one.at(2), first[1].at(2), atol=2e-5)


def test_an_adapter_is_applied_to_the_activations(runtime, tiny, tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
                   ).save_pretrained(tmp_path / "adapter")
    adapted_ref = tiny.with_adapter(tmp_path / "adapter")
    base, adapted = runtime.capture(tiny, REQUESTS[:1])[0], runtime.capture(adapted_ref, REQUESTS[:1])[0]
    assert not np.allclose(base.at(1), adapted.at(1), atol=1e-3)
    check_against_reference(adapted, reference(tiny_model_dir, tmp_path / "adapter", REQUESTS[0], runtime, tiny))


def test_layers_outside_the_model_are_one_line(runtime, tiny):
    with pytest.raises(UserError, match=r"capture: layers: expected layers between 1 and 2 .*got \[3\]"):
        runtime.capture(tiny, [CaptureRequest(QUESTION, "Sleep.", layers=(3,))])


def test_an_api_model_has_no_activations(runtime):
    with pytest.raises(UserError, match="activations need a local model"):
        runtime.capture(parse_model_ref("openai:gpt-4o-mini"), REQUESTS[:1])
