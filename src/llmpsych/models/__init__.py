"""Model references and engines. `load_engine` is the one door: it shares a loaded base model
between every adapter on top of it, so evaluating ten fine-tunes loads the base once."""

from __future__ import annotations

from .engine import Completion, Engine, GenerateRequest, SamplingParams, ScoreRequest, as_messages
from .refs import DEFAULT_MODEL, ModelRef, parse_model_ref

_BACKENDS: dict = {}


def load_engine(ref: ModelRef | str, options=None) -> Engine:
    """An engine for `ref` (a ModelRef or a reference string)."""
    from .hf import HFBackend, HFEngine
    from .options import EngineOptions

    if isinstance(ref, str):
        ref = parse_model_ref(ref)
    options = options or EngineOptions()
    if ref.kind == "openai":
        from .openai_engine import OpenAIEngine

        return OpenAIEngine(ref, options)
    backend_class, engine_class = HFBackend, HFEngine
    if options.backend == "vllm":
        from .vllm_engine import VLLMBackend as backend_class, VLLMEngine as engine_class
    key = (ref.base, options)
    if key not in _BACKENDS:
        _BACKENDS[key] = backend_class(ref.base, options)
    return engine_class(ref, _BACKENDS[key])


def unload_all() -> None:
    """Forget every loaded model (frees memory; the next load_engine loads afresh)."""
    _BACKENDS.clear()


__all__ = ["Completion", "DEFAULT_MODEL", "Engine", "GenerateRequest", "ModelRef", "SamplingParams",
           "ScoreRequest", "as_messages", "load_engine", "parse_model_ref", "unload_all"]
