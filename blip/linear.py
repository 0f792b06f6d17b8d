"""A linear layer applied to a few rows at a time, the shape of decoding.

Beam search feeds a text layer 3 rows per step (one per beam), batched answers a few more. For such
skinny inputs, ``F.linear`` (``x @ W^T``) runs a matrix-multiply kernel that streams the weight
poorly on a CPU: measured here with every weight of a base text decoder (492 MB, read from memory,
not cache), 3 rows took 81 ms through ``F.linear`` and 44 ms as ``W @ x^T``, which reads each weight
row once for all the input rows. One row (greedy decoding) and many rows (the vision tower's 577
tokens, batched texts) are as fast or faster through ``F.linear``, so only 2 to 64 rows take the other
path. The two give the same numbers up to float rounding (the summation order differs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SKINNY_ROWS = range(2, 65)


def project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, computed as ``W @ x^T`` when ``layer`` is a float32 ``nn.Linear`` on the CPU and
    ``x`` holds 2 to 64 rows; any other layer (a quantised one, say) or shape is simply called."""
    if type(layer) is not nn.Linear or x.device.type != "cpu" or x.dtype != torch.float32:
        return layer(x)
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows not in SKINNY_ROWS:
        return F.linear(x, layer.weight, layer.bias)
    columns = torch.mm(layer.weight, x.reshape(rows, x.shape[-1]).T)  # (out, rows)
    if layer.bias is not None:
        columns = columns + layer.bias[:, None]
    return columns.T.contiguous().view(*x.shape[:-1], layer.out_features)
