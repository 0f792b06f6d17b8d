"""A linear layer applied to the CPU's fastest kernel for its number of rows.

``F.linear`` (``x @ W^T``) is what the reference calls for every layer. Decoding feeds a layer very few
rows (1 for a greedy step, one per beam for beam search), and then a CPU is bound by how fast the
weights stream from memory, not by arithmetic; which kernel streams them best depends on the CPU:

- ``linear``: ``F.linear``, the reference's kernel;
- ``wxt``: ``W @ x^T``, which reads each weight row once for all the input rows (on an AMD EPYC, 3
  rows through a base decoder took 81 ms through ``F.linear`` and 44 ms this way);
- ``onednn``: oneDNN's linear kernel (a private op that PyTorch's own compiler uses), with plain
  weights. It has no gradient, so anything that will be differentiated keeps ``F.linear``.

Which one runs for 1, 2-64 and more rows is not written in here: :mod:`.choice` times them on first
use, on the CPU at hand, and remembers the answer. Every kernel gives ``F.linear``'s result up to float
rounding (the summation order differs), which keeps token ids identical to the reference's.
"""

from __future__ import annotations

import torch
from torch import nn

from .candidates import KERNELS, ONEDNN_LINEAR
from .choice import kernel_for


def project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a float32 ``nn.Linear`` on the CPU, through the kernel measured fastest here
    for that many rows. Any other layer (a quantised one, say) is simply called."""
    if type(layer) is not nn.Linear or x.device.type != "cpu" or x.dtype != torch.float32 or not x.shape[-1]:
        return layer(x)
    name = kernel_for(x.numel() // x.shape[-1])
    if name == "onednn" and not _onednn_ok(layer, x):
        name = "linear"
    return KERNELS[name](x, layer.weight, layer.bias)


def _onednn_ok(layer: nn.Linear, x: torch.Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    return ONEDNN_LINEAR and torch.backends.mkldnn.enabled and layer.weight.is_contiguous() and not needs_grad
