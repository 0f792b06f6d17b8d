"""A linear layer applied to a few rows at a time, the shape of decoding.

Beam search feeds a text layer 3 rows per step (one per beam), batched answers a few more. For such
skinny inputs, ``F.linear`` (``x @ W^T``) runs a matrix-multiply kernel that streams the weight
poorly on a CPU: measured here with every weight of a base text decoder (492 MB, read from memory,
not cache), 3 rows took 81 ms through ``F.linear`` and 44 ms as ``W @ x^T``, which reads each weight
row once for all the input rows. Many rows (the vision tower's 577 tokens, batched texts) are as fast
or faster through ``F.linear``, so only 2 to 64 rows take that path. The results agree up to float
rounding (the summation order differs).

One row (a greedy step) goes to oneDNN's linear kernel where PyTorch has it: on a base decoder's
weights a greedy step took 54-56 ms through ``F.linear`` and 44-46 ms this way (same token ids),
measured side by side; oneDNN was not faster for 2 to 5 rows nor for the vision tower's 577. It has no
gradient, so anything that will be differentiated keeps ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SKINNY_ROWS = range(2, 65)


def _onednn_linear() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel (a private op that Inductor uses)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear()


def project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a float32 ``nn.Linear`` on the CPU: one row through oneDNN (when nothing will
    be differentiated), 2 to 64 rows as ``W @ x^T``, more through ``F.linear``. Any other layer (a
    quantised one, say) is simply called."""
    if type(layer) is not nn.Linear or x.device.type != "cpu" or x.dtype != torch.float32:
        return layer(x)
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if rows == 1 and _onednn_ok(layer, x):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), layer.weight, layer.bias, "none", [], "")
    if rows not in SKINNY_ROWS:
        return F.linear(x, layer.weight, layer.bias)
    columns = torch.mm(layer.weight, x.reshape(rows, x.shape[-1]).T)  # (out, rows)
    if layer.bias is not None:
        columns = columns + layer.bias[:, None]
    return columns.T.contiguous().view(*x.shape[:-1], layer.out_features)


def _onednn_ok(layer: nn.Linear, x: torch.Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    return ONEDNN_LINEAR and torch.backends.mkldnn.enabled and layer.weight.is_contiguous() and not needs_grad
