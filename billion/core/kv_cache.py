"""A KV cache that writes into preallocated room instead of concatenating at every forward.

transformers' DynamicLayer grows by `torch.cat`, copying the whole cache (and allocating a new
buffer) at every forward of every layer. Here each full-attention layer keeps a buffer with spare
room, writes the new keys and values in place and hands attention a view of the filled part;
cropping (speculative rollback) only shortens the view. Outputs are bit-identical to DynamicCache.
Sliding-window layers keep transformers' own class.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: positions allocated at first; the buffer doubles when full
INITIAL_ROOM = 256


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views of a buffer with spare room."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def _filled(self) -> int:
        return self.keys.shape[-2] if self.keys is not None and self.keys.dim() == 4 else 0

    def _owns_keys(self) -> bool:
        # crop() slices the view, which keeps the buffer's storage; anything else replaced it.
        return (self._key_buffer is not None and self.keys is not None and self.keys.dim() == 4
                and self.keys.data_ptr() == self._key_buffer.data_ptr())

    def _grow(self, needed: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        room = max(INITIAL_ROOM, 2 * needed)
        batch, heads, _, dim = keys.shape
        key_buffer = keys.new_empty(batch, heads, room, dim)
        value_buffer = values.new_empty(batch, values.shape[1], room, values.shape[-1])
        filled = self._filled()
        if filled:
            key_buffer[:, :, :filled] = self.keys
            value_buffer[:, :, :filled] = self.values
        self._key_buffer, self._value_buffer = key_buffer, value_buffer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self._filled()
        end = start + key_states.shape[-2]
        if (start and not self._owns_keys()) or self._key_buffer is None or end > self._key_buffer.shape[-2]:
            self._grow(end, key_states, value_states)
        self._key_buffer[:, :, start:end] = key_states
        self._value_buffer[:, :, start:end] = value_states
        self.commit(end)
        return self.keys, self.values

    def reserve(self, rows: int, kv_heads: int, dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Room for `rows` more positions, for a kernel that writes them itself (lean_fused.py):
        (key buffer, value buffer, first new position). commit() then shows them."""
        template = torch.empty(1, kv_heads, rows, dim, dtype=dtype)
        if not self.is_initialized:
            self.lazy_initialization(template, template)
        start = self._filled()
        if (start and not self._owns_keys()) or self._key_buffer is None or start + rows > self._key_buffer.shape[-2]:
            self._grow(start + rows, template, template)
        return self._key_buffer, self._value_buffer, start

    def commit(self, end: int) -> None:
        """The buffers' first `end` positions are the cache now (after reserve and the kernel's writes)."""
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]

    def reset(self) -> None:
        super().reset()
        self._key_buffer = self._value_buffer = None


def new_cache(config=None) -> DynamicCache:
    """A DynamicCache for `config` whose full-attention layers write in place (see module doc).

    Without a config the layers are created as the model asks for them, all preallocated.
    """
    if config is None:
        cache = DynamicCache()
        cache.layer_class_to_replicate = PreallocatedLayer
        return cache
    cache = DynamicCache(config=config)
    cache.layers = [PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache

