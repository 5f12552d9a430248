"""How to run a model: the one definition of the engine options, validated where a config names them.

A run's `engine:` section is this type, so every option a backend reads can be set from a config file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field

from ..config import Strict


class EngineOptions(Strict):
    """How to run a model. "auto" picks CUDA if present, and bf16 where the hardware has it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["hf", "vllm"] = Field("hf", description="local models: transformers, or vLLM (GPU, own env)")
    device: str = "auto"
    dtype: str = "auto"
    generate_batch_size: int = Field(64, ge=1)
    score_batch_size: int = Field(8, ge=1)
    chat_template: str | None = Field(None, description="a Jinja chat template replacing the tokenizer's "
                                                        "(e.g. for base models)")
    enable_thinking: bool | None = Field(None, description="chat templates with a thinking switch (Qwen3): think "
                                                          "before answering or not (None: the template's default)")
    merge_adapters: bool | Literal["auto"] = Field("auto", description="fold LoRA into a copy of the weights "
                                                                       "(auto: models under 3B)")
    api_concurrency: int = Field(8, ge=1, description="API models: requests in flight")
    api_attempts: int = Field(8, ge=1, description="API models: tries per request (429, 5xx, timeouts)")
    api_timeout: float = Field(120.0, gt=0, description="API models: seconds one request may take")
    api_batch_min: int = Field(0, ge=0, description="API models: use the Batch API for judge jobs of this "
                                                    "many requests or more (0: never)")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs one model is split across")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM: share of GPU memory it takes "
                                                                      "(lower it when the process also trains)")


def template_kwargs(options: EngineOptions) -> dict:
    """The extra variables every chat-template rendering gets (prompts and training rows alike)."""
    return {} if options.enable_thinking is None else {"enable_thinking": options.enable_thinking}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """bf16 on GPUs that support it and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32."""
    if dtype != "auto":
        return dtype
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if _cpu_has_native_bf16() else "float32"


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
