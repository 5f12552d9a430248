"""Steering: direction files and the hooks that add them to a model's residual stream.

A direction file holds one vector of the model's hidden size, or one per layer as a [layers + 1, hidden]
array whose row l belongs to layer l (row 0 to the embeddings) -- transformers' hidden_states indexing, which
is also how persona-vector files are laid out, so theirs load unchanged. Formats: .safetensors (the tensor
named "vectors", else the only tensor), .pt (a tensor, saved with torch.save), .npy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from .refs import Steering

VECTORS_KEY = "vectors"


def read_directions(path: Path, source: str = "vector file"):
    """The file's array as float32 numpy: [hidden] or [layers + 1, hidden]."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{source}: '{path}' not found (expected a .safetensors, .pt or .npy direction file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            if VECTORS_KEY not in tensors and len(tensors) != 1:
                raise ValueError(f"holds {len(tensors)} tensors and none is named '{VECTORS_KEY}'")
            array = tensors.get(VECTORS_KEY, next(iter(tensors.values())))
        elif path.suffix == ".pt":
            import torch

            value = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"holds a {type(value).__name__}, not a tensor")
            array = value.float().numpy()
        elif path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            raise ValueError("unknown format")
    except UserError:
        raise
    except Exception as error:  # a damaged or foreign file is the user's to fix
        raise UserError(f"{source}: '{path}': could not read a direction ({str(error).splitlines()[0][:160]}; "
                        "expected a .safetensors, .pt or .npy file of one [hidden] or [layers + 1, hidden] "
                        "array)") from None
    array = np.asarray(array, dtype=np.float32)
    if array.ndim not in (1, 2) or not np.isfinite(array).all():
        raise UserError(f"{source}: '{path}': expected a finite [hidden] or [layers + 1, hidden] array, got shape "
                        f"{list(array.shape)}")
    return array


def direction(path: Path, layer: int, hidden: int, layers: int, source: str = "steering"):
    """The vector of `path` for `layer`, checked against the model's size."""
    array = read_directions(path, source)
    if array.ndim == 2:
        if array.shape[0] != layers + 1:
            raise UserError(f"{source}: '{path}' holds {array.shape[0]} rows; expected {layers + 1} (row l for layer "
                            f"l, row 0 the embeddings) for this model's {layers} layers, or one [hidden] vector")
        array = array[layer]
    if array.shape[-1] != hidden:
        raise UserError(f"{source}: '{path}' has vectors of size {array.shape[-1]}; this model's hidden size is "
                        f"{hidden}")
    return array


@contextlib.contextmanager
def steered(model, steering: tuple[Steering, ...]) -> Iterator:
    """`model` with each direction added after its block for the duration (no steering: the model as it is)."""
    if not steering:
        yield model
        return
    import torch

    from .activations import check_layers, decoder_layers

    blocks = decoder_layers(model)
    config = model.config.get_text_config()
    handles = []
    try:
        for steer in steering:
            layer = check_layers((steer.layer,), len(blocks), f"steering '{steer.vector}': layer")[0]
            vector = torch.from_numpy(direction(steer.vector, layer, config.hidden_size, len(blocks)).copy())
            shift = (steer.coefficient * vector).to(device=model.device, dtype=model.dtype)

            def add(_module, _inputs, output, shift=shift):
                if isinstance(output, tuple):
                    return (output[0] + shift,) + output[1:]
                return output + shift

            handles.append(blocks[layer - 1].register_forward_hook(add))
        yield model
    finally:
        for handle in handles:
            handle.remove()
