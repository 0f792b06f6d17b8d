"""A linear layer whose weights are bfloat16: half float32's bytes, and on CPUs with AVX-512 BF16 or
AMX the matrix multiply runs on bfloat16 hardware (the issue measured 580 against 194 GFLOP/s on an
Intel Xeon with AMX). Inputs and outputs stay float32, so the rest of the model (LayerNorms,
attention, the residual stream) is untouched: only the weights and the multiply lose precision
(bfloat16 keeps 8 bits of mantissa). The bias stays float32 and is added after the multiply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bfloat16Linear(nn.Module):
    """``nn.Linear`` with bfloat16 weights, float32 in and out (no gradient: fast mode only)."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.register_buffer("weight", layer.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return out if self.bias is None else out + self.bias


def linears_to_bfloat16(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` (in place) by a :class:`Bfloat16Linear`."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, Bfloat16Linear(child))
        else:
            linears_to_bfloat16(child)
    return module
