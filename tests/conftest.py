"""Shared fixtures: a throwaway call cache, the embedded model, and a tiny random model for unit tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Calls, adapters and digests go to a per-session temporary cache; the materialised embedded model
# (a one-off 20-60 s conversion) is shared with the user's cache so repeated test runs stay quick.
if "LLMPSYCH_MODELS" not in os.environ:
    import platformdirs

    _default = Path(os.environ.get("LLMPSYCH_CACHE") or platformdirs.user_cache_dir("llmpsych"))
    os.environ["LLMPSYCH_MODELS"] = str(_default / "models")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llmpsych-cache")
    os.environ["LLMPSYCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def embedded_dir(session_cache) -> Path:
    from llmpsych.models.embedded import materialised_path

    return materialised_path("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-model")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (embedded_dir / name).exists():
            shutil.copy(embedded_dir / name, folder / name)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with no chat template: a base model, as Gemma-3-270M is."""
    import json

    folder = tmp_path_factory.mktemp("tiny-base") / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def fp32():
    """Engine options for exact comparisons (bf16 changes results in the third decimal)."""
    from llmpsych.models.options import EngineOptions

    return EngineOptions(dtype="float32")


@pytest.fixture
def runtime(tmp_path, fp32):
    """A runtime with its own empty cache, quiet progress and fp32 numerics."""
    from llmpsych.runtime.cache import CallCache
    from llmpsych.runtime.calls import Runtime

    return Runtime(CallCache(tmp_path / "calls.sqlite"), fp32, adapters_dir=tmp_path / "adapters",
                   show_progress=False)


@pytest.fixture(scope="session")
def crash_resume():
    """benchmarks/crash_resume.py as a module: runs the CLI watched, kills and resumes it, compares run dirs."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_resume.py"
    spec = importlib.util.spec_from_file_location("crash_resume", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_resume"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def em_smoke_reference(tmp_path_factory, crash_resume):
    """One uninterrupted `llmpsych run emergent-misalignment --preset smoke` at one torch thread, with a cache
    of its own: what the crash-resume test compares its run with, and what the end-to-end and Inspect
    export tests read (run once per session)."""
    root = tmp_path_factory.mktemp("em-smoke-reference")
    return crash_resume.run_reference(root / "run", root / "cache")
