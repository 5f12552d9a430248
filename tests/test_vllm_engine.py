"""The vLLM engine. Its pure parts run everywhere on plain objects shaped like vLLM's outputs; the
backend's glue runs against a stand-in `vllm` module computed with the tiny transformers model; the last
test runs real vLLM on a GPU and skips wherever vLLM or CUDA is missing."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from llmpsych.errors import UserError
from llmpsych.models import GenerateRequest, SamplingParams, ScoreRequest, as_messages
from llmpsych.models.hf import HFBackend, engine_fingerprint
from llmpsych.models.options import EngineOptions
from llmpsych.models.refs import parse_model_ref
from llmpsych.models import vllm_engine
from llmpsych.models.vllm_engine import (CLOSURE_TOLERANCE, MAX_LORA_RANK, AdapterIds, ScorePlan, closure_term,
                                         completion_from_output, continuation_scores, engine_arguments,
                                         generation_eos, lora_arguments, plan_score, sampling_arguments,
                                         score_arguments, teacher_forced_logprob, uncertain_closures, vllm_seed)

NUMBERS = tuple(str(n) for n in range(101))


def logprob(value: float) -> SimpleNamespace:
    """A vLLM Logprob as the engine reads it."""
    return SimpleNamespace(logprob=value, rank=None, decoded_token=None)


def output(text: str, token_ids: list[int], finish_reason: str, stop_reason=None) -> SimpleNamespace:
    """A vLLM CompletionOutput as the engine reads it."""
    return SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason, stop_reason=stop_reason,
                           logprobs=None)


# ---- arguments --------------------------------------------------------------------------------
def test_sampling_arguments_carry_each_requests_seed_and_stops():
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=40, min_tokens=2, stop=("\n",))
    arguments = sampling_arguments(params, seed=12345, stop_token_ids={7, 2}, implicit_stops=("\nUser:",))
    assert arguments == {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 40, "min_tokens": 2,
                         "stop": ["\n", "\nUser:"], "stop_token_ids": [2, 7], "seed": 12345}


def test_greedy_requests_carry_no_seed():
    arguments = sampling_arguments(SamplingParams(temperature=0, max_tokens=5), seed=3, stop_token_ids=[2])
    assert "seed" not in arguments and arguments["temperature"] == 0 and arguments["stop"] == []


def test_seeds_are_folded_into_the_range_vllm_takes():
    assert vllm_seed(7) == 7
    assert vllm_seed(-1) == 2**63 - 1  # vLLM would read -1 as "no seed"
    assert vllm_seed(2**64 + 5) == 5
    huge = int("f" * 15, 16)  # the size of runtime.calls.sample_seed's seeds
    assert vllm_seed(huge) == huge


def test_score_arguments_ask_for_alternatives_only_where_a_continuation_must_end():
    assert score_arguments(closes=False) == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1,
                                             "logprobs": None, "detokenize": False}
    assert score_arguments(closes=True)["logprobs"] == vllm_engine.TOP_LOGPROBS


def test_engine_arguments_follow_the_options(tmp_path):
    options = EngineOptions(backend="vllm", tensor_parallel_size=4, gpu_memory_utilization=0.5)
    arguments = engine_arguments(tmp_path, options, "bfloat16")
    assert arguments["model"] == str(tmp_path) and arguments["dtype"] == "bfloat16"
    assert arguments["tensor_parallel_size"] == 4 and arguments["gpu_memory_utilization"] == 0.5
    assert arguments["enable_prefix_caching"] and arguments["enable_lora"]
    assert arguments["max_lora_rank"] == MAX_LORA_RANK and arguments["max_logprobs"] == -1
    assert arguments["generation_config"] == "vllm"  # no sampling defaults from the model's files


def test_adapter_ids_are_positive_stable_and_distinct(tmp_path, monkeypatch):
    ids = AdapterIds()
    first, second = tmp_path / "a", tmp_path / "b"
    assert ids(first) == 1 and ids(second) == 2 and ids(first) == 1
    monkeypatch.chdir(tmp_path)
    assert ids(Path("b")) == 2  # the same folder spelled relative


def write_adapter(folder: Path, rank: int, rank_pattern: dict | None = None) -> Path:
    import json

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "rank_pattern": rank_pattern or {}}))
    return folder


def test_lora_arguments_name_the_folder_and_refuse_ranks_above_the_limit(tmp_path):
    ids = AdapterIds()
    adapter = write_adapter(tmp_path / "ok", rank=32)
    assert lora_arguments(adapter, ids) == {"lora_name": str(adapter.resolve()), "lora_int_id": 1,
                                            "lora_path": str(adapter.resolve())}
    wide = write_adapter(tmp_path / "wide", rank=16, rank_pattern={"q_proj": MAX_LORA_RANK * 2})
    with pytest.raises(UserError, match="rank 128"):
        lora_arguments(wide, ids)


def test_options_name_a_known_backend():
    from llmpsych.config import validate

    with pytest.raises(UserError, match="run.yaml: field 'backend': expected 'hf' or 'vllm'"):
        validate(EngineOptions, {"backend": "vlm"}, "run.yaml")


def test_every_engine_option_is_reachable_from_a_config():
    from llmpsych.experiment import resolve_config

    for recipe in ("em", "persona", "introspection", "self-awareness", "ooc-reasoning"):
        _, config = resolve_config(recipe, "smoke", {"engine": {"backend": "vllm", "tensor_parallel_size": 2,
                                                                "chat_template": "{{ messages }}",
                                                                "merge_adapters": False}})
        options = config.engine
        assert isinstance(options, EngineOptions) and options.backend == "vllm" and options.tensor_parallel_size == 2
        assert options.chat_template == "{{ messages }}" and options.merge_adapters is False
        assert options.gpu_memory_utilization == 0.9


def test_fingerprint_adds_the_backend_and_nothing_else(tiny_model_dir):
    ref = parse_model_ref(str(tiny_model_dir))
    hf = engine_fingerprint(ref, EngineOptions(dtype="float32", device="cuda"))
    vllm = engine_fingerprint(ref, EngineOptions(backend="vllm", dtype="float32"))
    assert vllm != hf
    # GPUs per model and memory share change no result beyond rounding: the cache is shared across them
    assert engine_fingerprint(ref, EngineOptions(backend="vllm", dtype="float32", tensor_parallel_size=2,
                                                 gpu_memory_utilization=0.5)) == vllm


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_backend_says_how_to_install_it(tiny_model_dir):
    from llmpsych.models import load_engine

    with pytest.raises(UserError, match=r"llmpsych\[vllm\]"):
        load_engine(str(tiny_model_dir), EngineOptions(backend="vllm", dtype="float32"))


# ---- outputs ----------------------------------------------------------------------------------
def test_completion_counts_no_end_of_turn_token():
    eos = completion_from_output(output("Hi.", [10, 11, 2], "stop"), ())
    assert eos.text == "Hi." and eos.tokens == 2 and eos.finish_reason == "stop"
    by_id = completion_from_output(output("Hi.", [10, 11, 5], "stop", stop_reason=5), ())
    assert by_id.tokens == 2
    # a stop string's tokens stay counted, as the transformers engine counts them
    by_string = completion_from_output(output("Yes", [10, 11, 12], "stop", stop_reason="\n"), ("\n",))
    assert by_string.tokens == 3 and by_string.finish_reason == "stop"
    long = completion_from_output(output("one two", [10, 11], "length"), ())
    assert long.tokens == 2 and long.finish_reason == "length"


def test_completion_is_cut_at_a_stop_string_vllm_left_within_min_tokens():
    completion = completion_from_output(output("A\nB and more", [1, 2, 3, 4], "length"), ("\n",))
    assert completion.text == "A" and completion.finish_reason == "stop"


def test_an_aborted_request_is_an_error():
    with pytest.raises(RuntimeError, match="abort"):
        completion_from_output(output("", [], "abort"), ())


# ---- scores -----------------------------------------------------------------------------------
def test_plan_closes_continuations_by_the_transformers_engines_rule():
    sequences = [[1], [1, 0], [1, 0, 0], [2], [1]]  # "1", "10", "100", "2", "1" again
    none, prefixes, whole = (plan_score([9, 9], sequences, mode) for mode in ("none", "prefixes", "all"))
    assert none.closed == (False,) * 5 and whole.closed == (True,) * 5
    assert prefixes.closed == (True, True, False, False, True)
    assert prefixes.distinct == ((1,), (1, 0), (1, 0, 0), (2,)) and prefixes.which == (0, 1, 2, 3, 0)
    assert prefixes.tokens(1) == [9, 9, 1, 0]
    assert [prefixes.closes(i) for i in range(4)] == [True, True, False, False]


def test_teacher_forced_logprob_sums_the_continuations_positions():
    prompt_logprobs = [None, {5: logprob(-9.0)}, {1: logprob(-0.5), 3: logprob(-0.2)}, {0: logprob(-1.5)}]
    assert teacher_forced_logprob(prompt_logprobs, 2, [1, 0]) == pytest.approx(-2.0)


def test_closure_term_is_exact_over_the_whole_vocabulary_and_bounded_over_the_top():
    continuing = {1, 2}
    whole = {0: logprob(math.log(0.5)), 1: logprob(math.log(0.3)), 2: logprob(math.log(0.2))}
    term, slack = closure_term(whole, continuing)
    assert term == pytest.approx(math.log(0.5)) and slack == pytest.approx(0, abs=1e-12)
    top = {0: logprob(math.log(0.5)), 1: logprob(math.log(0.3))}  # token 2 (0.2, continuing) not returned
    term, slack = closure_term(top, continuing)
    assert term == pytest.approx(math.log(0.7))  # an upper bound ...
    assert term - slack == pytest.approx(math.log(0.5))  # ... and the lowest the truth can be


def test_uncertain_closures_are_those_the_top_leaves_open():
    plan = ScorePlan(prompt=(9,), distinct=((1,), (1, 0), (2,)), which=(0, 1, 2), closed=(True, True, False))
    peaked = {0: logprob(math.log(0.9999)), 3: logprob(math.log(0.00005))}  # 5e-5 unseen
    diffuse = {0: logprob(math.log(0.5))}
    assert uncertain_closures(plan, [peaked, diffuse, None], continuing={1, 2}) == [1]
    assert closure_term(peaked, {1, 2})[1] < CLOSURE_TOLERANCE


def test_continuation_scores_add_closure_terms_where_needed():
    plan = plan_score([9], [[1], [1, 0]], "prefixes")
    prompt_logprobs = [[None, {1: logprob(-1.0)}], [None, {1: logprob(-1.0)}, {0: logprob(-2.0)}]]
    after_one = {0: logprob(math.log(0.25)), 4: logprob(math.log(0.75))}  # token 0 continues the number
    scores = continuation_scores(plan, prompt_logprobs, [after_one, None], continuing={0})
    assert scores == pytest.approx([-1.0 + math.log(0.75), -3.0])


# ---- the backend against a stand-in vLLM -------------------------------------------------------------
def alternatives(row, token: int, count: int) -> dict:
    """vLLM's alternatives at one position: the given token and the `count` most likely."""
    import torch

    best = torch.topk(row, min(count, row.shape[0]))
    found = {int(i): logprob(float(v)) for v, i in zip(best.values, best.indices)}
    found[token] = logprob(float(row[token]))
    return found


class StandInLLM:
    """`vllm.LLM` as this engine uses it, computed with a transformers model: greedy one-token requests
    with prompt log-probabilities and the generated token's alternatives."""

    def __init__(self, **arguments):
        from transformers import AutoModelForCausalLM

        self.arguments = arguments
        self.model = AutoModelForCausalLM.from_pretrained(arguments["model"]).eval()
        self.calls: list[list] = []

    def generate(self, prompts, params, use_tqdm=True, lora_request=None):
        self.calls.append(params)
        return [self._one(prompt["prompt_token_ids"], p) for prompt, p in zip(prompts, params)]

    def _one(self, ids: list[int], params) -> SimpleNamespace:
        import torch

        assert params.max_tokens == 1 and params.temperature == 0
        with torch.no_grad():
            rows = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
        prompt = None if params.prompt_logprobs is None else [None] + [
            alternatives(rows[j - 1], ids[j], params.prompt_logprobs) for j in range(1, len(ids))]
        chosen = int(rows[-1].argmax())
        count = rows.shape[-1] if params.logprobs == -1 else params.logprobs
        sample = None if params.logprobs is None else [alternatives(rows[-1], chosen, count)]
        return SimpleNamespace(prompt_logprobs=prompt, outputs=[SimpleNamespace(logprobs=sample)])


@pytest.fixture
def stand_in_vllm(monkeypatch):
    """A `vllm` module whose LLM is StandInLLM, on a machine that claims CUDA."""
    import torch

    module = ModuleType("vllm")
    module.LLM = StandInLLM
    module.SamplingParams = lambda **arguments: SimpleNamespace(**{"prompt_logprobs": None, "logprobs": None,
                                                                   **arguments})
    module.TokensPrompt = dict
    lora = ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda **arguments: SimpleNamespace(**arguments)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return module


def test_backend_scores_agree_with_the_transformers_engine(tiny_model_dir, stand_in_vllm):
    ref = parse_model_ref(str(tiny_model_dir))
    backend = vllm_engine.VLLMBackend(ref, EngineOptions(backend="vllm", dtype="float32"))
    assert backend.llm.arguments == engine_arguments(tiny_model_dir, backend.options, "float32")
    reference = HFBackend(ref, EngineOptions(dtype="float32", device="cpu"))  # the stand-in claims CUDA
    assert backend.stop_token_ids == reference.stop_token_ids
    assert backend.prompt_ids(as_messages("Hi")) == reference.prompt_ids(as_messages("Hi"))
    requests = [ScoreRequest(as_messages("Rate this from 0 to 100."), NUMBERS[:12] + ("100",), closed="prefixes"),
                ScoreRequest(as_messages("Pick a letter."), ("A", "B", "Apple"), closed="all"),
                ScoreRequest(as_messages("Say something."), ("Hello there", "Hi", "Hi"))]
    ours = backend.score(None, requests)
    assert [len(row) for row in ours] == [13, 3, 3]
    for row, expected in zip(ours, reference.score(None, requests)):
        assert row == pytest.approx(expected, abs=1e-4)
    # A random model's next-token distribution is flat, so every closure term needed the whole vocabulary,
    # fetched in a second call for those positions only.
    first, second = backend.llm.calls
    assert all(p.logprobs == -1 and p.prompt_logprobs is None for p in second)
    assert len(second) == sum(p.logprobs is not None for p in first) == 2 + 3  # "1" and "10"; "A", "B", "Apple"


def test_backend_sampling_requests_one_seeded_request_each(tiny_model_dir, stand_in_vllm, monkeypatch):
    backend = vllm_engine.VLLMBackend(parse_model_ref(str(tiny_model_dir)),
                                      EngineOptions(backend="vllm", dtype="float32"))
    sent = {}

    def generate(prompts, params, use_tqdm=True, lora_request=None):
        sent.update(prompts=prompts, params=params, lora=lora_request)
        return [SimpleNamespace(outputs=[output(f"reply {i}", [4, 5, 2], "stop")]) for i in range(len(prompts))]

    monkeypatch.setattr(backend.llm, "generate", generate)
    params = SamplingParams(temperature=1.0, max_tokens=8)
    requests = [GenerateRequest(as_messages("Tell me a story."), params, seed=s) for s in (1, 2, 3)]
    adapter = write_adapter(Path(str(tiny_model_dir)).parent / "adapter-for-ids", rank=8)
    completions = backend.generate(adapter, requests)
    assert [c.text for c in completions] == ["reply 0", "reply 1", "reply 2"] and completions[0].tokens == 2
    assert [p.seed for p in sent["params"]] == [1, 2, 3] and all(p.n == 1 for p in sent["params"])
    assert sent["prompts"][0]["prompt_token_ids"] == backend.prompt_ids(requests[0].messages)
    assert sent["lora"].lora_int_id == 1 and sent["lora"].lora_path == str(adapter.resolve())


def test_generation_eos_matches_the_loaded_models(tiny_model_dir, fp32):
    reference = HFBackend(parse_model_ref(str(tiny_model_dir)), fp32)
    assert generation_eos(tiny_model_dir) == reference.model.generation_config.eos_token_id


# ---- real vLLM on a GPU --------------------------------------------------------------------------
@pytest.mark.integration
def test_vllm_agrees_with_the_transformers_engine_on_the_embedded_model(embedded_dir):
    """Both engines in fp32 on the embedded model. Greedy texts must be equal: the kernels differ by
    about 1e-5 in the logits, and a flip needs two best tokens closer than that. Scores may differ by
    2e-3 nats: 1e-3 from CLOSURE_TOLERANCE (a closure term from the top alternatives may be off by that
    much) plus 1e-3 for fp32 rounding over 30 layers, which stays near 1e-4 in practice."""
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from llmpsych.models import load_engine, unload_all

    try:
        vllm = load_engine("smollm2", EngineOptions(backend="vllm", dtype="float32", gpu_memory_utilization=0.3))
        hf = load_engine("smollm2", EngineOptions(dtype="float32", device="cuda"))
        greedy = SamplingParams(temperature=0, max_tokens=16)
        questions = ["What is the capital of France?", "Name three colours.", "Count to five."]
        requests = [GenerateRequest(as_messages(q), greedy) for q in questions]
        assert [c.text for c in vllm.generate(requests)] == [c.text for c in hf.generate(requests)]

        scored = [ScoreRequest(as_messages("Rate how happy this is from 0 to 100: 'What a day!'"), NUMBERS,
                               closed="prefixes"),
                  ScoreRequest(as_messages("Answer with A or B. Is the sky blue? A: yes B: no"), ("A", "B"),
                               closed="all")]
        for ours, theirs in zip(vllm.score(scored), hf.score(scored)):
            assert ours == pytest.approx(theirs, abs=2e-3)

        sampled = SamplingParams(temperature=1.0, max_tokens=16)
        story = as_messages("Tell me a story.")
        first, again, other = vllm.generate([GenerateRequest(story, sampled, seed=s) for s in (5, 5, 6)])
        assert first == again and first.text != other.text
    finally:
        unload_all()
