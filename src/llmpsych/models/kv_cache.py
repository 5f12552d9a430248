"""A key/value cache that writes into preallocated buffers instead of growing by concatenation.

transformers' DynamicCache appends each decode step's keys and values with `torch.cat`, which copies
the whole cache of every layer at every step: 18% of CPU decode time in our sampling benchmark. Here
each layer allocates room for the prompt plus the token budget once and writes in place; attention
reads a view of the filled part. `left_padded` builds a batch's cache from prompts prefilled alone.
"""

from __future__ import annotations

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in buffers of `capacity` positions (batch, heads, capacity, dim)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys = self._values = None

    def lazy_initialization(self, key_states, value_states) -> None:
        import torch

        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        self._keys = torch.empty((batch, heads, self.capacity, dim), dtype=self.dtype, device=self.device)
        self._values = torch.empty((batch, heads, self.capacity, dim), dtype=value_states.dtype, device=self.device)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"key/value cache: {end} positions exceed the {self.capacity} allocated")
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        return self.keys, self.values

    @property
    def keys(self):
        return None if self._keys is None else self._keys[:, :, :self.length]

    @keys.setter
    def keys(self, value) -> None:  # the base class assigns None on init and reset
        if value is not None:
            raise AttributeError("PreallocatedLayer.keys is a view of its buffer")

    @property
    def values(self):
        return None if self._values is None else self._values[:, :, :self.length]

    @values.setter
    def values(self, value) -> None:
        if value is not None:
            raise AttributeError("PreallocatedLayer.values is a view of its buffer")

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0

    def batch_select_indices(self, indices) -> None:
        """Keep (or repeat) these batch rows; only the filled positions are copied."""
        if self.is_initialized:
            for name in ("_keys", "_values"):
                buffer = getattr(self, name)
                kept = buffer.new_empty((len(indices), *buffer.shape[1:]))
                kept[:, :, :self.length] = buffer[indices, :, :self.length]
                setattr(self, name, kept)

    def batch_repeat_interleave(self, repeats: int) -> None:
        import torch

        if self.is_initialized:
            rows = self._keys.shape[0]
            self.batch_select_indices(torch.arange(rows, device=self.device).repeat_interleave(repeats))


def decode_cache(model, capacity: int) -> Cache:
    """A cache for decoding up to `capacity` positions: preallocated where every layer attends to the
    whole context (or the context fits in every sliding window), else transformers' own."""
    config = model.config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    sliding = any(t != "full_attention" for t in layer_types)
    if sliding and (window is None or capacity > window):
        return DynamicCache(config=model.config)
    return Cache(layers=[PreallocatedLayer(capacity) for _ in layer_types])


def left_padded(prompts: list[Cache], owners: list[int], width: int, capacity: int) -> Cache:
    """The decode cache of a batch whose row r continues prompt `owners[r]`: that prompt's keys and values
    (from a preallocated cache that ran it alone) end at position `width`, the positions before them are
    zeros (masked by attention), and every layer has room for `capacity` positions in all."""
    import torch

    device = prompts[0].layers[0].device
    rows_of = {owner: torch.tensor([r for r, o in enumerate(owners) if o == owner], device=device)
               for owner in set(owners)}
    layers = []
    for index in range(len(prompts[0].layers)):
        first = prompts[0].layers[index]
        layer = PreallocatedLayer(capacity)
        layer.dtype, layer.device, layer.is_initialized, layer.length = first.dtype, first.device, True, width
        for name in ("_keys", "_values"):
            _, heads, _, dim = getattr(first, name).shape
            buffer = getattr(first, name).new_zeros((len(owners), heads, capacity, dim))
            for owner, rows in rows_of.items():
                part = prompts[owner].layers[index]
                buffer[rows, :, width - part.length:width] = getattr(part, name)[:, :, :part.length]
            setattr(layer, name, buffer)
        layers.append(layer)
    return Cache(layers=layers)
