"""Scaled dot-product attention, written out once for students and once fused for speed.

Both towers and every attention block in BLIP use the same arithmetic::

    probs = softmax(q @ k^T / sqrt(head_dim) + mask)      # (B, heads, T_query, T_key)
    out   = probs @ v                                      # (B, heads, T_query, head_dim)

Masks are *additive*: 0 where a key may be seen, the most negative float where it may not (what the
reference implementation does, so fully masked rows behave identically). The explicit path also hands
back ``probs`` (the attention maps behind every heatmap); the fused path asks PyTorch's
``scaled_dot_product_attention`` for the same numbers without materialising them when nobody looks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    need_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention over already split heads.

    Args:
        q: queries (B, heads, T, head_dim).
        k: keys (K, heads, S, head_dim) with K = B; or K = 1, shared by every query row; or K = G < B
            groups (several images decoded together), each shared by B / G consecutive rows.
        v: values, shaped like ``k``.
        mask: additive mask broadcastable to (B, heads, T, S) (or (G, heads, 1, S) with groups), or None.
        need_probs: also return the attention probabilities (B, heads, T, S).

    Returns:
        The context (B, heads, T, head_dim) and the probabilities or None.
    """
    if 1 < k.shape[0] < q.shape[0]:
        return _attend_grouped(q, k, v, mask, need_probs)
    if not need_probs:
        if k.shape[0] != q.shape[0]:
            # The fused kernel wants matching batch sizes; expand is a view, nothing is copied.
            k = k.expand(q.shape[0], -1, -1, -1)
            v = v.expand(q.shape[0], -1, -1, -1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None

    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, heads, T, S)
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1)
    return torch.matmul(probs, v), probs


def _attend_grouped(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, need_probs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows in G groups that share keys/values: the beams of G images decoded together. Each group's
    rows become one longer query sequence, so the image's keys and values are read once per group
    rather than copied for every row."""
    b, heads, t, d = q.shape
    g = k.shape[0]
    r = b // g  # rows per group
    grouped = q.view(g, r, heads, t, d).transpose(1, 2).reshape(g, heads, r * t, d)  # (G, heads, R*T, d)
    context, probs = attend(grouped, k, v, mask, need_probs)
    context = context.view(g, heads, r, t, d).transpose(1, 2).reshape(b, heads, t, d)  # (B, heads, T, d)
    if probs is not None:
        s = probs.shape[-1]
        probs = probs.view(g, heads, r, t, s).transpose(1, 2).reshape(b, heads, t, s)  # (B, heads, T, S)
    return context, probs


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Turn a (B, S) 1/0 key mask into an additive (B, 1, 1, S) mask."""
    blocked = attention_mask[:, None, None, :] == 0
    return torch.zeros(blocked.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        blocked, torch.finfo(dtype).min
    )


def causal_mask(
    query_len: int,
    key_len: int,
    dtype: torch.dtype,
    device: torch.device,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Additive mask letting query i (the last ``query_len`` of ``key_len`` positions) see keys <= i.

    Args:
        query_len: new positions being computed (T).
        key_len: all positions, cached ones included (S >= T).
        dtype: the scores' dtype (its minimum marks blocked entries).
        device: where to build the mask.
        attention_mask: optional (B, S) 1/0 padding mask over the keys.

    Returns:
        (1 or B, 1, T, S) additive mask.
    """
    offset = key_len - query_len
    rows = torch.arange(query_len, device=device)[:, None] + offset
    cols = torch.arange(key_len, device=device)[None, :]
    blocked = (cols > rows)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        blocked = blocked | (attention_mask[:, None, None, :] == 0)
    return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)
