"""A static key/value cache: every buffer allocated once, at its final size, and written in place.

The ordinary :class:`~blip.model.cache.KVCache` grows as tokens arrive and hands attention exactly the
keys seen so far. That is the cheapest on a CPU, but every step's tensors then have a new shape, and a
GPU cannot record a step once and replay it (a CUDA graph replays fixed kernels on fixed addresses).
Here instead:

* each layer's keys and values live in one (B, heads, capacity, head_dim) buffer, allocated up front;
* the positions being written are a *tensor* (not a Python int), so the same recorded kernels write
  token 5 on one replay and token 6 on the next;
* attention always reads all ``capacity`` keys, and an additive mask hides the ones not written yet
  (``softmax`` gives them exactly zero weight, so the result equals attending to the written keys
  alone, up to the order floats are summed in);
* the cross-attention keys and values (from the image or question) are copied into fixed buffers
  once per request.

:func:`static_forward` runs the decoder through such a cache. It reuses the decoder's own layers
(:class:`~blip.model.text.TextLayer` calls ``cache.append`` like it does with a ``KVCache``), so there
is one definition of the network, not two.
"""

from __future__ import annotations

import torch

from .text import TextLMModel


class StaticKVCache:
    """Fixed-size per-layer buffers for ``batch`` rows and up to ``capacity`` positions.

    Args:
        decoder: the decoder whose layers will use this cache (for the sizes).
        batch: rows decoded together (B).
        capacity: positions the buffers hold (prompt + new tokens, at most the position table).
        cross_len: encoder tokens each row attends to (S: 577 image tokens at 384 px, or a question).
        dtype, device: those of the decoder's weights.
    """

    def __init__(
        self,
        decoder: TextLMModel,
        batch: int,
        capacity: int,
        cross_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ):
        config = decoder.bert.config
        heads = config.num_attention_heads
        head_dim = config.hidden_size // heads
        self.num_layers = config.num_hidden_layers
        self.capacity = capacity

        def zeros(length: int) -> list[torch.Tensor]:
            # Zeros, not empty: a masked key gets weight 0, and 0 * garbage could be NaN.
            return [torch.zeros(batch, heads, length, head_dim, dtype=dtype, device=device) for _ in range(self.num_layers)]  # fmt: skip

        self.keys, self.values = zeros(capacity), zeros(capacity)
        self.cross_keys, self.cross_values = zeros(cross_len), zeros(cross_len)
        # TextLayer reads ``cache.cross[i]`` and, finding it set, never projects the encoder states.
        self.cross = list(zip(self.cross_keys, self.cross_values, strict=True))
        # The positions the current forward pass writes, (T,) long; set by static_forward.
        self.positions = torch.zeros(1, dtype=torch.long, device=device)

    def reset(self) -> None:
        """Forget every stored token (a new request reuses the buffers)."""
        for buf in self.keys + self.values:
            buf.zero_()

    def fill_cross(self, decoder: TextLMModel, encoder_states: torch.Tensor) -> None:
        """Project ``encoder_states`` (B, S, E) into every layer's cross-attention keys and values."""
        states = encoder_states.to(self.cross_keys[0].dtype)
        for i, layer in enumerate(decoder.bert.encoder.layer):
            k, v = layer.crossattention.self.keys_values(states)  # (B, heads, S, head_dim)
            self.cross_keys[i].copy_(k)
            self.cross_values[i].copy_(v)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' k, v (B, heads, T, head_dim) at ``self.positions``; return the whole
        buffers (B, heads, capacity, head_dim): the mask hides the positions not written yet."""
        self.keys[layer].index_copy_(2, self.positions, k)
        self.values[layer].index_copy_(2, self.positions, v)
        return self.keys[layer], self.values[layer]


def static_forward(
    decoder: TextLMModel,
    cache: StaticKVCache,
    input_ids: torch.Tensor,
    start: torch.Tensor,
    need_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the decoder over ``input_ids`` (B, T) placed at positions ``start`` ... ``start + T - 1``.

    Every shape depends only on B, T and the cache's sizes, never on ``start`` (a (1,) long tensor),
    so with T = 1 one call can be recorded as a CUDA graph and replayed for every later token.

    Returns:
        The last position's logits (B, vocab) in the weights' dtype, and with ``need_probs`` its
        cross-attention (B, layers, heads, S); else None.
    """
    bert = decoder.bert
    t, device = input_ids.shape[1], input_ids.device
    positions = start + torch.arange(t, device=device)  # (T,)
    cache.positions = positions
    emb = bert.embeddings
    x = emb.LayerNorm(emb.word_embeddings(input_ids) + emb.position_embeddings(positions))  # (B, T, hidden)

    # Query at position p sees keys 0..p: later slots hold nothing yet (or an earlier request's tokens).
    keys = torch.arange(cache.capacity, device=device)
    blocked = (keys[None, :] > positions[:, None])[None, None]  # (1, 1, T, capacity)
    mask = torch.zeros(blocked.shape, dtype=x.dtype, device=device).masked_fill(
        blocked, torch.finfo(x.dtype).min
    )

    cross_maps = []
    # ``encoder_states`` only has to be "not None" for the layer to run cross-attention: the keys and
    # values come from ``cache.cross``, already filled.
    placeholder = x[:, :0]
    for i, layer in enumerate(bert.encoder.layer):
        x, _, cross_probs = layer(x, mask, placeholder, None, cache, i, need_probs)
        if need_probs:
            cross_maps.append(cross_probs[:, :, -1])  # (B, heads, S) for the last position
    logits = decoder.cls.predictions(x[:, -1])  # (B, vocab)
    return logits, torch.stack(cross_maps, dim=1) if need_probs else None
