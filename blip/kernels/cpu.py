"""What the CPU at hand can do, read from the machine (never assumed from the last one): its name,
the instruction sets that matter for the kernels (AVX2, AVX-512, bfloat16, AMX), and the level
PyTorch's own kernels dispatch to."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch

# /proc/cpuinfo flag -> the name people know it by, in the order they arrived.
INSTRUCTION_SETS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX BF16",
    "amx_int8": "AMX INT8",
}


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8481C", ...)."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def instruction_sets() -> list[str]:
    """The kernel-relevant instruction sets this CPU reports, e.g. ["AVX2", "AVX-512", "AMX"]."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [name for flag, name in INSTRUCTION_SETS.items() if flag in flags]


def has_fast_bfloat16() -> bool:
    """Whether bfloat16 matrix multiplies run in hardware here (AVX-512 BF16 or AMX BF16)."""
    sets = instruction_sets()
    return "AVX-512 BF16" in sets or "AMX BF16" in sets


def describe() -> str:
    """One line for reports: name, instruction sets and PyTorch's dispatch level."""
    sets = instruction_sets()
    bf16 = "bfloat16 in hardware" if has_fast_bfloat16() else "no bfloat16 instructions"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu_name()} ({', '.join(sets) or 'no AVX2'}; {bf16}; PyTorch kernels: {capability})"
