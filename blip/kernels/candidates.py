"""The candidate kernels for a float32 linear layer on the CPU (see :mod:`.linear`), each computing
``F.linear(x, weight, bias)`` up to float rounding, by the names the cache file and BLIP_KERNELS use."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _onednn_linear() -> bool:
    """Whether this PyTorch build has oneDNN's linear kernel."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear()


def via_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, weight, bias)


def via_wxt(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    columns = torch.mm(weight, x.reshape(rows, x.shape[-1]).T)  # (out, rows)
    if bias is not None:
        columns = columns + bias[:, None]
    return columns.T.contiguous().view(*x.shape[:-1], weight.shape[0])


def via_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


# The candidates, by the names the cache file and the BLIP_KERNELS variable use.
KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "linear": via_linear,
    "wxt": via_wxt,
}
if ONEDNN_LINEAR:
    KERNELS["onednn"] = via_onednn
