"""The transformers engine on a tiny random model: scoring, sampling, templates, adapters."""

from __future__ import annotations

import math

import pytest
import torch

from llmpsych.models import GenerateRequest, SamplingParams, ScoreRequest, as_messages, load_engine
from llmpsych.models.options import EngineOptions
from llmpsych.models.refs import parse_model_ref

NUMBERS = tuple(str(n) for n in range(101))


@pytest.fixture(scope="module")
def engine(tiny_model_dir, fp32):
    return load_engine(parse_model_ref(str(tiny_model_dir)), fp32)


def teacher_forced(backend, messages, continuation: str) -> tuple[float, torch.Tensor]:
    """Reference: log P(continuation) by one plain forward pass, and the next-token distribution after it."""
    prompt = backend.prompt_ids(messages)
    tokens = backend._continuation_ids(continuation)
    with torch.no_grad():
        logits = backend.model(torch.tensor([prompt + tokens])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    total = sum(logprobs[len(prompt) - 1 + k, t].item() for k, t in enumerate(tokens))
    return total, logprobs[-1].exp()


def test_score_equals_teacher_forcing_for_multi_token_numbers(engine):
    messages = as_messages("Rate this from 0 to 100.")
    continuations = NUMBERS + ("CODE", "REFUSAL", "Hello there")
    assert len(engine.backend._continuation_ids("57")) == 2  # the tokenizer splits digits
    scores = engine.score([ScoreRequest(messages, continuations)])[0]
    for continuation in ("0", "7", "57", "100", "REFUSAL", "Hello there"):
        expected, _ = teacher_forced(engine.backend, messages, continuation)
        assert scores[continuations.index(continuation)] == pytest.approx(expected, abs=1e-4)


def test_closed_scores_exclude_continuing_tokens(engine):
    messages = as_messages("Pick a number.")
    candidates = ("5", "57", "A")
    plain, whole, prefixes = engine.score([ScoreRequest(messages, candidates, closed=mode)
                                           for mode in ("none", "all", "prefixes")])
    _, after = teacher_forced(engine.backend, messages, "5")
    continuing = engine.backend.word_continuation_mask()[: after.shape[0]]
    assert continuing[engine.backend._continuation_ids("0")[0]]  # a digit continues a number
    closed_five = plain[0] + math.log1p(-after[continuing].sum().item())
    assert whole[0] == pytest.approx(closed_five, abs=1e-4) and whole[0] < plain[0]
    # "prefixes" closes only "5" (it begins "57"); "57" and "A" count as plain continuations
    assert prefixes[0] == pytest.approx(closed_five, abs=1e-4)
    assert prefixes[1:] == pytest.approx(plain[1:], abs=1e-5)
    assert whole[1] < plain[1]


def test_shared_prefix_batch_equals_scoring_alone(engine):
    prefix = "You are grading answers. Reply with a number from 0 to 100 and nothing else. " * 3
    prompts = [as_messages(prefix + f"Answer {i}: " + "word " * i) for i in range(5)]
    together = engine.score([ScoreRequest(m, NUMBERS, closed="prefixes") for m in prompts])
    for messages, row in zip(prompts, together):
        alone = engine.score([ScoreRequest(messages, NUMBERS, closed="prefixes")])[0]
        assert row == pytest.approx(alone, abs=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampling_is_reproducible_and_independent_of_batch(tiny_model_dir, dtype):
    # Batched with its own prompt's other samples (which share its prefill) and with longer prompts (which
    # pad it), a sample is the same as when it runs alone, in bf16 too: a served model, which batches
    # whatever requests arrive together, answers as the same model run locally.
    engine = load_engine(parse_model_ref(str(tiny_model_dir)), EngineOptions(dtype=dtype))
    params = SamplingParams(temperature=1.0, max_tokens=12)
    target = GenerateRequest(as_messages("Tell me a story."), params, seed=7)
    siblings = [GenerateRequest(target.messages, params, seed=seed) for seed in (1, 2, 3)]
    others = [GenerateRequest(as_messages(f"Question number {i} is a longer one"), params, seed=i) for i in range(5)]
    alone = engine.generate([target])[0]
    assert engine.generate(others + siblings + [target])[-1] == alone
    assert engine.generate(siblings[:1] + [target])[-1] == alone
    assert engine.generate([GenerateRequest(target.messages, params, seed=8)])[0].text != alone.text


def test_greedy_matches_transformers_generate(engine):
    messages = as_messages("Hello!")
    ours = engine.generate([GenerateRequest(messages, SamplingParams(temperature=0, max_tokens=10))])[0]
    prompt = torch.tensor([engine.backend.prompt_ids(messages)])
    with torch.no_grad():
        reference = engine.backend.model.generate(prompt, do_sample=False, max_new_tokens=10,
                                                  pad_token_id=engine.backend.tokenizer.pad_token_id)
    expected = engine.backend.tokenizer.decode(reference[0, prompt.shape[1]:], skip_special_tokens=True)
    assert ours.text == expected


def test_batched_greedy_with_repeated_prompts_matches_generate_alone(engine):
    # Each prompt appears twice, prompts differ in length (padding) and the cache is preallocated; every
    # row must still decode exactly as transformers does for it alone.
    system = {"role": "system", "content": "You are a careful assistant who answers in one short sentence."}
    conversations = [(system, {"role": "user", "content": q}) for q in ("Hello!", "What is two plus two?", "Hi")]
    requests = [GenerateRequest(m, SamplingParams(temperature=0, max_tokens=10)) for m in conversations for _ in "ab"]
    backend = engine.backend
    for request, completion in zip(requests, engine.generate(requests)):
        prompt = torch.tensor([backend.prompt_ids(request.messages)])
        with torch.no_grad():
            reference = backend.model.generate(prompt, do_sample=False, max_new_tokens=10,
                                               pad_token_id=backend.tokenizer.pad_token_id)
        assert completion.text == backend.tokenizer.decode(reference[0, prompt.shape[1]:], skip_special_tokens=True)


def test_sampler_draws_each_token_with_its_probability_and_never_an_impossible_one():
    import random

    from llmpsych.models.hf import _draw

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 700, generator=generator) * 2
    logits[0, 3] = logits[0, 400:] = float("-inf")
    expected = logits.softmax(-1)[0]
    draws = torch.cat([_draw(logits.expand(2000, -1), SamplingParams(), [random.Random(k * 2000 + i) for i in range(2000)])
                       for k in range(20)])
    observed = torch.bincount(draws, minlength=700).float() / len(draws)
    assert observed[3] == 0 and observed[400:].sum() == 0
    assert 0.5 * (observed - expected).abs().sum() < 0.03  # total variation; about 0.01 expected from noise


def test_tiny_top_p_reduces_sampling_to_greedy(engine):
    messages = as_messages("Say something.")
    greedy = engine.generate([GenerateRequest(messages, SamplingParams(temperature=0, max_tokens=8))])[0]
    nucleus = engine.generate([GenerateRequest(messages, SamplingParams(temperature=1, top_p=1e-6, max_tokens=8),
                                               seed=s) for s in range(3)])
    assert all(c.text == greedy.text for c in nucleus)


def test_max_tokens_and_finish_reason(engine):
    completion = engine.generate([GenerateRequest(as_messages("Go on."), SamplingParams(max_tokens=5), seed=1)])[0]
    assert completion.tokens <= 5
    assert completion.finish_reason in ("stop", "length")
    assert completion.finish_reason == "length" or completion.tokens < 5


def test_default_system_prompt_is_made_explicit(engine):
    backend = engine.backend
    assert backend.default_system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    messages = as_messages("Hi")
    explicit = engine.effective_messages(messages)
    assert explicit[0] == {"role": "system", "content": backend.default_system_prompt}
    assert backend.render(explicit) == backend.render(messages)
    custom = ({"role": "system", "content": "You are Bob."},) + messages
    assert engine.effective_messages(custom) == custom


def test_base_model_without_chat_template_gets_plain_template(tiny_base_model_dir, fp32):
    engine = load_engine(parse_model_ref(str(tiny_base_model_dir)), fp32)
    rendered = engine.backend.render(({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}))
    assert rendered == "Be brief.\n\nUser: Hi\nAssistant:"
    assert engine.backend.default_system_prompt is None


def test_adapter_changes_scores_and_base_is_restored(engine, tiny_model_dir, tmp_path, fp32):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    adapted = load_engine(parse_model_ref(f"{tiny_model_dir}+{tmp_path / 'adapter'}"), fp32)
    assert adapted.backend is engine.backend  # one loaded base serves every adapter
    request = [ScoreRequest(as_messages("Pick a number."), ("1", "2", "3"))]
    before = engine.score(request)[0]
    with_adapter = adapted.score(request)[0]
    after = engine.score(request)[0]
    assert with_adapter != pytest.approx(before, abs=1e-3)
    assert after == pytest.approx(before, abs=1e-6)
    assert adapted.fingerprint != engine.fingerprint


def test_hub_id_resolves_from_the_local_hugging_face_cache(tiny_model_dir, tmp_path, monkeypatch, fp32):
    """A hub id works offline once the model is in the HF cache (here: a cache laid out by hand)."""
    import shutil

    import huggingface_hub.constants as hub_constants

    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-model" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model_dir, snapshot)
    refs = tmp_path / "hub" / "models--tiny-org--tiny-model" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123abcd")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = parse_model_ref("hf:tiny-org/tiny-model")
    assert ref.kind == "hub" and parse_model_ref("tiny-org/tiny-model") == ref
    engine = load_engine(ref, fp32)
    assert engine.backend.default_system_prompt.startswith("You are a helpful AI assistant named SmolLM")
    missing = parse_model_ref("hf:nobody/nothing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from llmpsych.errors import UserError

    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_engine(missing, fp32)


def test_scoring_batches_cut_where_a_long_shared_prefix_ends():
    from llmpsych.models.hf import _prefix_batches

    long_a, long_b = list(range(100)), list(range(1000, 1100))
    prompts = [long_a + [1], long_a + [2], long_a + [3], long_b + [1], long_b + [2]]
    assert list(_prefix_batches(list(range(5)), prompts, size=8)) == [[0, 1, 2], [3, 4]]
    assert list(_prefix_batches(list(range(5)), prompts, size=2)) == [[0, 1], [2, 3], [4]]
    short = [[7, 8, i] for i in range(5)]  # nothing long to protect: plain chunks of `size`
    assert list(_prefix_batches(list(range(5)), short, size=2)) == [[0, 1], [2, 3], [4]]


def test_stop_strings_end_the_completion_where_they_first_appear(engine):
    messages = as_messages("Tell me a story.")
    free = engine.generate([GenerateRequest(messages, SamplingParams(temperature=0, max_tokens=24))])[0]
    assert len(free.text) > 8
    stop = free.text[4:7]
    stopped = engine.generate([GenerateRequest(messages, SamplingParams(temperature=0, max_tokens=24,
                                                                        stop=(stop,)))])[0]
    assert stopped.text == free.text[:free.text.find(stop)]
    assert stopped.finish_reason == "stop" and stopped.tokens <= free.tokens


def test_stop_must_be_a_list_of_strings():
    from llmpsych.errors import UserError

    with pytest.raises(UserError, match="'stop'"):
        SamplingParams(stop="\n")
