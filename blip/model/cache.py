"""The key/value cache that makes token-by-token decoding cheap.

When the decoder generates word t it needs the keys and values of words 0..t-1 in every layer. Those
never change, so we keep them instead of recomputing them: each step then runs the network on one new
token. The cross-attention keys and values depend only on the image (or the question), so they are
computed once per request and shared by every beam and every sample.
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer keys and values of past tokens (self-attention) and of the encoder states (cross).

    Self-attention entries live in preallocated buffers (B, heads, capacity, head_dim) that grow by
    doubling, so appending a token is a slice assignment rather than a concatenation.
    """

    def __init__(self, num_layers: int, capacity: int = 32):
        self.num_layers = num_layers
        self.length = 0  # tokens already stored (the same in every layer)
        self._capacity = capacity
        self._keys: list[torch.Tensor | None] = [None] * num_layers
        self._values: list[torch.Tensor | None] = [None] * num_layers
        # Cross-attention keys/values per layer, (B, 1, or G images; heads, S, head_dim); filled on first use.
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new tokens' k, v (B, heads, T, head_dim) of ``layer``; return all keys and values.

        The new tokens count as stored only after :meth:`advance`, called once per forward pass.
        """
        end = self.length + k.shape[2]
        buf_k, buf_v = self._keys[layer], self._values[layer]
        if buf_k is None or buf_k.shape[2] < end:
            capacity = max(self._capacity, end)
            while capacity < end:
                capacity *= 2
            self._capacity = capacity
            shape = (k.shape[0], k.shape[1], capacity, k.shape[3])
            new_k, new_v = k.new_empty(shape), v.new_empty(shape)
            if buf_k is not None:
                new_k[:, :, : self.length] = buf_k[:, :, : self.length]
                new_v[:, :, : self.length] = buf_v[:, :, : self.length]
            buf_k, buf_v = self._keys[layer], self._values[layer] = new_k, new_v
        buf_k[:, :, self.length : end] = k
        buf_v[:, :, self.length : end] = v
        return buf_k[:, :, :end], buf_v[:, :, :end]

    def advance(self, num_tokens: int) -> None:
        """Mark ``num_tokens`` more positions as stored (after every layer has appended them)."""
        self.length += num_tokens

    def reorder(self, rows: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Keep batch rows ``rows`` (in that order), e.g. the beams that survived a beam-search step.

        ``groups``, when several images are decoded together, are the images (indices into the cross
        entries' batch) that still run: the others' cross-attention keys/values are dropped.
        """
        for i, (k, v) in enumerate(zip(self._keys, self._values, strict=True)):
            if k is not None:
                self._keys[i] = k.index_select(0, rows)
                self._values[i] = v.index_select(0, rows)
        if groups is not None:
            self.cross = [
                None if kv is None else (kv[0].index_select(0, groups), kv[1].index_select(0, groups))
                for kv in self.cross
            ]
