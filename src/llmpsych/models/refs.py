"""Model references: one string names any model the toolkit can use.

Syntax (``llmpsych models`` prints it too)::

    smollm2-135m-instruct          the embedded default (aliases: smollm2, embedded)
    gemma3-270m                    the second embedded model, a base model (alias: gemma3)
    ./path/to/hf-folder            a local Hugging Face folder (anything holding config.json)
    hf:Org/Name  or  Org/Name      a hub id (needs the hub to be reachable, or the model in the HF cache)
    openai:gpt-4o  or  gpt-4o-...  an OpenAI-style API model
    BASE+ADAPTER_DIR               any local or hub base with a LoRA adapter folder on top
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UserError

Kind = Literal["embedded", "local", "hub", "openai"]

# Embedded models ship inside PyPI packages, so they work without any model hub.
EMBEDDED_ALIASES = {
    "smollm2-135m-instruct": "smollm2-135m-instruct",
    "smollm2": "smollm2-135m-instruct",
    "embedded": "smollm2-135m-instruct",
    "gemma3-270m": "gemma3-270m",
    "gemma3": "gemma3-270m",
}
DEFAULT_MODEL = "smollm2-135m-instruct"

_OPENAI_NAME = re.compile(r"^(gpt-|o[1-9](-|$)|ft:|chatgpt-|davinci|babbage)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # after hf:, a legacy id without an org is fine too


@dataclass(frozen=True)
class Steering:
    """Add `coefficient` times a direction to the residual stream after block `layer`, at every position of
    every call (prompt and generated tokens). `vector` is a direction file (models/steering.py reads it)."""

    vector: Path
    layer: int
    coefficient: float

    def __str__(self) -> str:
        return f"{self.vector.name}@{self.layer}x{self.coefficient:g}"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference. `name` is the alias, path, hub id or API model name of the base."""

    kind: Kind
    name: str
    adapter: Path | None = None
    # In-context examples: (role, content) turns placed before every conversation the model is asked (after its
    # system prompt), so a model "learns" from examples with no weight update (EM's in-context arm).
    context: tuple[tuple[str, str], ...] = ()
    steering: tuple[Steering, ...] = ()

    @property
    def base(self) -> "ModelRef":
        """The same reference without its adapter (and in-context turns and steering)."""
        return ModelRef(self.kind, self.name)

    def with_adapter(self, adapter: Path) -> "ModelRef":
        if self.kind == "openai":
            raise UserError(f"model '{self}': adapters apply to local or hub models, not API models")
        return ModelRef(self.kind, self.name, Path(adapter), self.context, self.steering)

    def with_context(self, turns: list[dict] | tuple[dict, ...]) -> "ModelRef":
        """This model with `turns` (chat messages) in front of every conversation."""
        return ModelRef(self.kind, self.name, self.adapter, tuple((t["role"], t["content"]) for t in turns),
                        self.steering)

    def with_steering(self, vector: Path, layer: int, coefficient: float) -> "ModelRef":
        """This model with one more direction added to its residual stream (see Steering)."""
        if self.kind == "openai":
            raise UserError(f"model '{self}': steering needs a local model's weights; an API model does not expose "
                            "its residual stream")
        return ModelRef(self.kind, self.name, self.adapter, self.context,
                        self.steering + (Steering(Path(vector), int(layer), float(coefficient)),))

    @property
    def weights(self) -> "ModelRef":
        """The model itself: this reference without its in-context turns."""
        return ModelRef(self.kind, self.name, self.adapter, steering=self.steering)

    def __str__(self) -> str:
        prefix = {"embedded": "", "local": "", "hub": "hf:", "openai": "openai:"}[self.kind]
        text = prefix + self.name
        text = f"{text}+{self.adapter}" if self.adapter else text
        return "".join([text, *(f" steered {s}" for s in self.steering)])


def parse_steering(text: str, source: str = "steering") -> Steering:
    """FILE:LAYER:COEFFICIENT, as a command line gives it (`llmpsych serve --steer evil.safetensors:12:4`)."""
    parts = text.rsplit(":", 2)
    try:
        if len(parts) != 3 or not parts[0]:
            raise ValueError
        return Steering(Path(parts[0]).expanduser(), int(parts[1]), float(parts[2]))
    except ValueError:
        raise UserError(f"{source}: '{text}': expected FILE:LAYER:COEFFICIENT, such as evil.safetensors:12:4.0") from None


def parse_model_ref(text: str, source: str = "model") -> ModelRef:
    """Parse a model reference string; `source` names where it came from for error messages."""
    text = (text or "").strip()
    if not text:
        raise UserError(f"{source}: empty model name (expected e.g. '{DEFAULT_MODEL}', a folder, 'hf:Org/Name')")
    adapter: Path | None = None
    if "+" in text and not Path(text).exists():
        text, adapter_text = text.split("+", 1)
        adapter = Path(adapter_text).expanduser()
        _check_adapter(adapter, adapter_text, source)
    ref = _parse_base(text, source)
    return ref.with_adapter(adapter) if adapter else ref


def _check_adapter(adapter: Path, text: str, source: str) -> None:
    """What loading the adapter needs, checked before any model is loaded: a readable config and weights."""
    import json

    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise UserError(f"{source}: adapter folder '{text}' has no adapter_config.json "
                        "(expected a folder saved by llmpsych or PEFT)")
    try:
        settings = json.loads(config.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        line = f"line {error.lineno}: " if isinstance(error, json.JSONDecodeError) else ""
        raise UserError(f"{source}: {config}: {line}not valid JSON (expected the adapter's PEFT settings)") from None
    if not isinstance(settings, dict):
        raise UserError(f"{source}: {config}: expected a JSON object of PEFT settings, got {type(settings).__name__}")
    if not list(adapter.glob("adapter_model.*")):
        raise UserError(f"{source}: adapter folder '{text}' has no adapter_model.safetensors "
                        "(expected a folder saved by llmpsych or PEFT)")


def _parse_base(text: str, source: str) -> ModelRef:
    lowered = text.lower()
    if lowered in EMBEDDED_ALIASES:
        return ModelRef("embedded", EMBEDDED_ALIASES[lowered])
    if lowered.startswith("openai:"):
        name = text.split(":", 1)[1].strip()
        if not name or any(c.isspace() for c in name):
            raise UserError(f"{source}: '{text}': expected an API model name after 'openai:', such as openai:gpt-4o")
        return ModelRef("openai", name)
    if lowered.startswith("hf:"):
        name = text.split(":", 1)[1].strip()
        if not _HUB_NAME.match(name):
            raise UserError(f"{source}: '{text}': expected a hub id after 'hf:', such as hf:Org/Name")
        return ModelRef("hub", name)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{source}: folder '{text}' is not a Hugging Face model (no config.json in it)")
        return ModelRef("local", str(path.resolve()))
    if text.startswith((".", "/", "~")):
        raise UserError(f"{source}: folder '{text}' not found (expected a Hugging Face model folder)")
    if _OPENAI_NAME.match(lowered):
        return ModelRef("openai", text)
    if _HUB_ID.match(text):
        return ModelRef("hub", text)
    known = ", ".join(sorted(set(EMBEDDED_ALIASES)))
    raise UserError(f"{source}: unknown model '{text}' (expected one of {known}, an existing folder, "
                    "'hf:Org/Name' or 'openai:NAME'; run `llmpsych models` for the syntax)")
