"""An optional fast CPU mode: every linear layer runs in int8 (dynamic quantisation).

A generated token reads every weight of the text decoder once, so on a CPU its time is set by memory
bandwidth: int8 weights are a quarter of float32's bytes. PyTorch's dynamic quantisation stores each
``nn.Linear`` weight as int8 (one scale per tensor) and quantises the activations on the fly, row by
row, with int32 accumulation. Embeddings, LayerNorms and attention itself stay in float32.

Outputs move: the logits are close (cosine near 1) but not identical, so greedy and beam search can
pick a different token where two candidates are nearly tied. The default mode stays float32 and
bit-compatible with the reference; ``scripts/bench.py`` reports this mode's speed-up and drift.
Quantised layers have no gradient, so Grad-CAM heatmaps are computed with the float32 model kept
alongside (``LoadedModel.explainer``).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def int8_supported() -> bool:
    """Whether this PyTorch build has a CPU engine for quantised linear layers."""
    return torch.backends.quantized.engine != "none" and bool(torch.backends.quantized.supported_engines)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (on the CPU) with every ``nn.Linear`` replaced by a dynamic int8 one."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("the int8 fast mode runs on the CPU only")
    if not int8_supported():
        raise ValueError("this PyTorch build has no quantised CPU engine (fast mode unavailable)")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # PyTorch marks the eager quantisation API as deprecated in favour of torchao, which is not a
        # dependency here; the API works and is pinned with torch.
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
    return quantized.eval()
