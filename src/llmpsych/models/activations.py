"""Residual-stream activations of a local model, read with plain PyTorch forward hooks.

Hooks on the decoder blocks rather than nnsight or TransformerLens: they need no extra dependency, see
exactly the module that runs (a merged LoRA copy or a PEFT-wrapped base alike, so an adapter cannot be
silently dropped), and the same place is where steering adds its vector. Layer `l` (1-based) is the
residual stream after block `l`, as `hidden_states[l]` in transformers (the last block's output is read
before the final norm).

Each request is one teacher-forced pass over prompt + response. The hooks reduce as the pass runs, so a
batch keeps three [rows, hidden] sums per layer instead of every position:
  response_mean  the mean over the response's tokens (persona vectors' "response average");
  prompt_mean    the mean over the prompt's tokens (chat template included);
  prompt_last    the prompt's last token, where the model is about to answer.
A prefix shared by the whole batch (the same question under ten sampled answers, a long system prompt) runs
once and its key/value cache is repeated, as in scoring.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..errors import UserError
from .engine import Message

READOUTS = ("response_mean", "prompt_mean", "prompt_last")


@dataclass(frozen=True)
class CaptureRequest:
    """Activations of `response` read as the assistant's reply to `messages` (no response: the prompt only, and
    response_mean is missing). `layers` None means every block."""

    messages: tuple[Message, ...]
    response: str = ""
    layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Activations:
    """One request's readouts: for each readout a [len(layers), hidden] float32 array (None when it has no
    tokens: response_mean of an empty response)."""

    layers: tuple[int, ...]
    readouts: dict

    def at(self, layer: int, readout: str = "response_mean"):
        if layer not in self.layers:
            raise UserError(f"activations: layer {layer} was not captured (captured: {list(self.layers)})")
        values = self.readouts[readout]
        return None if values is None else values[self.layers.index(layer)]

    def to_json(self) -> dict:
        """A cache value: the arrays as base64 float32."""
        return {"layers": list(self.layers),
                "readouts": {name: None if a is None else {"shape": list(a.shape),
                                                           "data": base64.b64encode(a.tobytes()).decode()}
                             for name, a in self.readouts.items()}}

    @classmethod
    def from_json(cls, value: dict) -> "Activations":
        import numpy as np

        return cls(tuple(value["layers"]), {
            name: None if a is None else np.frombuffer(base64.b64decode(a["data"]), dtype=np.float32).reshape(a["shape"])
            for name, a in value["readouts"].items()})


def decoder_layers(model) -> list:
    """The model's decoder blocks in order, found as the module list with one entry per hidden layer (the same
    search works through PEFT's wrappers and for every architecture transformers names differently)."""
    import torch

    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    count = getattr(config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    raise UserError(f"model {type(model).__name__}: could not find its {count} decoder blocks to read or steer")


def check_layers(layers: tuple[int, ...] | None, count: int, source: str = "layers") -> tuple[int, ...]:
    """The layers asked for, checked against the model's block count (None: all of them)."""
    if layers is None:
        return tuple(range(1, count + 1))
    bad = [layer for layer in layers if not 1 <= layer <= count]
    if bad or not layers:
        raise UserError(f"{source}: expected layers between 1 and {count} (this model's blocks), got {list(layers)}")
    return tuple(layers)


def capture_batch(model, device: str, rows: list[tuple[list[int], list[int]]], layers: tuple[int, ...],
                  pad_id: int) -> list[Activations]:
    """Activations for (prompt ids, response ids) rows in one pass, sharing their common prefix."""
    import torch
    from transformers import DynamicCache

    blocks = decoder_layers(model)
    sequences = [prompt + response for prompt, response in rows]
    # The shared prefix stops before every row's last prompt token, so prompt_last is always read from the
    # batched pass.
    shared = _shared_prefix(sequences, min(len(prompt) for prompt, _ in rows) - 1)
    shared = shared if shared >= 16 else 0
    width = max(len(s) for s in sequences) - shared
    # Per-row weights over the batched positions (right padding: a padded row's real tokens never see its pads).
    prompt_weights = torch.zeros((len(rows), width))
    response_weights = torch.zeros((len(rows), width))
    last = torch.zeros(len(rows), dtype=torch.long)
    for row, (prompt, response) in enumerate(rows):
        prompt_weights[row, :len(prompt) - shared] = 1.0
        response_weights[row, len(prompt) - shared:len(prompt) + len(response) - shared] = 1.0
        last[row] = len(prompt) - shared - 1
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, :len(sequence) - shared] = torch.tensor(sequence[shared:])

    prefix_sums: dict[int, object] = {}  # layer -> [hidden] sum over the shared prefix
    sums: dict[int, tuple] = {}
    phase = {"prefix": bool(shared)}

    def hook(layer: int):
        def read(_module, _inputs, output):
            hidden = (output[0] if isinstance(output, tuple) else output).float()
            if phase["prefix"]:
                prefix_sums[layer] = hidden[0].sum(0)
            else:
                sums[layer] = (torch.einsum("rw,rwh->rh", prompt_weights.to(hidden.device), hidden),
                               torch.einsum("rw,rwh->rh", response_weights.to(hidden.device), hidden),
                               hidden[torch.arange(len(rows)), last.to(hidden.device)])
        return read

    handles = [blocks[layer - 1].register_forward_hook(hook(layer)) for layer in layers]
    try:
        with torch.inference_mode():
            cache = None
            if shared:
                cache = DynamicCache()
                model(input_ids=torch.tensor([sequences[0][:shared]], device=device), past_key_values=cache,
                      use_cache=True, logits_to_keep=1)
                cache.batch_repeat_interleave(len(rows))
                phase["prefix"] = False
            model(input_ids=input_ids.to(device), past_key_values=cache, use_cache=cache is not None,
                  logits_to_keep=1)
    finally:
        for handle in handles:
            handle.remove()

    prompt_counts = torch.tensor([len(p) for p, _ in rows], dtype=torch.float32)
    response_counts = torch.tensor([len(r) for _, r in rows], dtype=torch.float32)
    stacked = [torch.stack([sums[layer][k].cpu() for layer in layers], dim=1) for k in range(3)]  # [rows, L, H]
    if shared:
        prefix = torch.stack([prefix_sums[layer].cpu() for layer in layers])  # [L, H]
        stacked[0] = stacked[0] + prefix
    out = []
    for row in range(len(rows)):
        response_mean = None
        if response_counts[row] > 0:
            response_mean = (stacked[1][row] / response_counts[row]).numpy()
        out.append(Activations(layers, {"response_mean": response_mean,
                                        "prompt_mean": (stacked[0][row] / prompt_counts[row]).numpy(),
                                        "prompt_last": stacked[2][row].numpy()}))
    return out


def _shared_prefix(sequences: list[list[int]], limit: int) -> int:
    length = 0
    while length < limit and all(s[length] == sequences[0][length] for s in sequences):
        length += 1
    return length
