"""Attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928): where the ViT's class token gets its
information from, through all the layers at once.

One layer's attention says which tokens a token read *in that layer*; but what it read were themselves
mixtures made by the layers below. Rollout follows the mixing down to the patches:

1. average the heads of each layer: A_l (N, N);
2. add the identity and renormalise each row, A_l <- (A_l + I) / 2: the residual connection carries
   every token's own state past the attention, so half of each token is itself;
3. multiply through the layers, R_l = A_l @ R_{l-1} (R_0 = A_0): row i of R_l says how much of each
   input token ended up in token i after layer l.

Row 0 of R (the class token) over the patches is the map. It is a distribution: rows of a product of
row-stochastic matrices still sum to one. Rollout explains the vision tower alone, for any task model;
the text side's cross-attention maps (:mod:`.maps`) answer the different question of which image
tokens a word read.
"""

from __future__ import annotations

import numpy as np
import torch


def rollout(attentions: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The rollout after each layer.

    Args:
        attentions: per layer, (B, heads, N, N) self-attention probabilities (rows sum to one).

    Returns:
        (layers, B, N, N): entry [l, b, i, j] is how much of input token j reaches token i after layer l.
    """
    result, steps = None, []
    for probs in attentions:
        mixed = probs.float().mean(dim=1)  # (B, N, N): heads averaged
        eye = torch.eye(mixed.shape[-1], device=mixed.device, dtype=mixed.dtype)
        mixed = mixed + eye  # the residual stream keeps each token's own state
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # rows sum to one again
        result = mixed if result is None else mixed @ result  # (B, N, N)
        steps.append(result)
    return torch.stack(steps)


def class_token_maps(
    attentions: list[torch.Tensor] | tuple[torch.Tensor, ...], grid: tuple[int, int]
) -> np.ndarray:
    """The class token's rollout over the patch grid after each layer, each map summing to one.

    Args:
        attentions: per layer, (1, heads, 1 + patches, 1 + patches) for one image.
        grid: the (rows, columns) the patches fold into.

    Returns:
        (layers, rows, columns) float32. The class token's share of itself is left out and the patches'
        shares renormalised, so that each map is a distribution over the picture.
    """
    rolled = rollout(attentions)[:, 0, 0]  # (layers, N): the class token's row, for the one image
    patches = rolled[:, 1:]
    if patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[-1]} image patches do not fold into a {grid[0]}x{grid[1]} grid")
    patches = patches / patches.sum(dim=-1, keepdim=True)
    return patches.reshape(-1, *grid).cpu().numpy()  # (layers, rows, columns)
