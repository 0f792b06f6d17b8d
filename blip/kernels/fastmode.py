"""The CPU fast mode's plan: which number format each part of a model runs its linear layers in,
chosen by what this CPU has and by timing the formats on it.

The parts differ in what bounds them. A decoding step pushes 1 row (a beam or two more) through
every weight of the text decoder: it is bound by memory, and the fewest bytes per weight win (int8,
a quarter of float32; bfloat16, a half). The vision tower (577 image tokens) and the text encoders
(a batch of texts) are bound by arithmetic, where bfloat16 hardware (AVX-512 BF16, AMX) can beat
int8's integer kernels. Which wins is a fact about the CPU, so ``plan_for`` times both on weights
shaped like BLIP's and picks per part; a CPU without bfloat16 instructions gets int8 throughout
(emulated bfloat16 is slower than float32), untimed.

Plans: ``"auto"`` (the above), ``"int8"`` or ``"bfloat16"`` (every part in that format, for
comparisons and tests).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import cpu
from .bf16 import Bfloat16Linear, linears_to_bfloat16
from .int8 import int8_supported, quantize_int8

FORMATS = ("int8", "bfloat16")
PLANS = ("auto", *FORMATS)
DECODER = "text_decoder"  # the task models' child that decodes; every other child is "many rows"


@dataclass(frozen=True)
class FastPlan:
    many_rows: str  # the vision tower, text encoders and heads: "int8" or "bfloat16"
    decoder: str  # the text decoder's steps: "int8" or "bfloat16"
    why: str  # how it was chosen, for the status line

    def describe(self) -> str:
        if self.many_rows == self.decoder:
            return f"{self.decoder} linear layers ({self.why})"
        return f"vision and text encoders in {self.many_rows}, decoder in {self.decoder} ({self.why})"


def plan_for(
    plan: str, instruction_sets: list[str], timer: Callable[[], dict[tuple[str, str], float]]
) -> FastPlan:
    """The plan named ``plan`` on a CPU with ``instruction_sets`` (as :func:`cpu.instruction_sets`
    gives them); ``timer`` (called only for "auto" on a CPU with bfloat16 instructions) returns the
    seconds of each (part, format), parts being "many rows" and "decoder"."""
    if plan not in PLANS:
        raise ValueError(f"fast mode must be one of {PLANS}, not {plan!r}")
    if plan != "auto":
        return FastPlan(plan, plan, "chosen by the caller")
    if not ({"AVX-512 BF16", "AMX BF16"} & set(instruction_sets)):
        return FastPlan("int8", "int8", "no bfloat16 instructions on this CPU")
    times = timer()
    many, step = (min(FORMATS, key=lambda f, p=part: times[p, f]) for part in ("many rows", "decoder"))
    return FastPlan(many, step, "faster on this CPU, timed")


_lock = threading.Lock()
_auto: list[FastPlan] = []  # the measured plan, once per process


def resolve(plan: str) -> FastPlan:
    """:func:`plan_for` on this CPU, timing "auto" once per process."""
    if plan != "auto":
        return plan_for(plan, cpu.instruction_sets(), time_formats)
    with _lock:
        if not _auto:
            _auto.append(plan_for("auto", cpu.instruction_sets(), time_formats))
        return _auto[0]


def time_formats(rounds: int = 3) -> dict[tuple[str, str], float]:
    """Seconds of a layer's worth of BLIP-shaped linear layers in each format: 577 rows (a ViT-B/16
    image) through one layer's weights, and 1 row through three layers' (100 MB in float32, beyond
    the caches, as a decoder's weights are). Best of ``rounds`` per call, formats interleaved."""
    shapes = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]
    work = {"many rows": (shapes, 577), "decoder": (shapes * 3, 1)}
    best: dict[tuple[str, str], float] = {}
    with torch.no_grad():
        for part, (layer_shapes, rows) in work.items():
            plain = nn.ModuleList(nn.Linear(i, o) for o, i in layer_shapes)
            made = {"int8": quantize_int8(plain), "bfloat16": linears_to_bfloat16(copy.deepcopy(plain))}
            inputs = [torch.randn(rows, layer.in_features) for layer in plain]
            calls = {(f, i): float("inf") for f in FORMATS for i in range(len(plain))}
            for round_ in range(rounds + 1):
                for f in FORMATS:
                    for i, layer in enumerate(made[f]):
                        start = time.perf_counter()
                        layer(inputs[i])
                        if round_:
                            calls[f, i] = min(calls[f, i], time.perf_counter() - start)
            for f in FORMATS:
                best[part, f] = sum(t for (g, _), t in calls.items() if g == f)
    return best


def apply_plan(model: nn.Module, plan: FastPlan) -> nn.Module:
    """A copy of ``model`` (on the CPU) with its linear layers in the plan's formats."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("the fast mode runs on the CPU only")
    if "int8" in (plan.many_rows, plan.decoder) and not int8_supported():
        raise ValueError("this PyTorch build has no quantised CPU engine (int8 fast mode unavailable)")
    fast = copy.deepcopy(model)
    for name, child in list(fast.named_children()):
        if (plan.decoder if name == DECODER else plan.many_rows) == "bfloat16":
            if type(child) is nn.Linear:
                setattr(fast, name, Bfloat16Linear(child))
            else:
                linears_to_bfloat16(child)
    # The remaining nn.Linear layers (Bfloat16Linear is not one) become int8.
    return quantize_int8(fast) if any(type(m) is nn.Linear for m in fast.modules()) else fast.eval()
