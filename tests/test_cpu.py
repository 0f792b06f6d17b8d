"""The CPU description is read from the machine, never assumed."""

from __future__ import annotations

import pytest
import torch

from blip.kernels import cpu

pytestmark = pytest.mark.unit


def test_instruction_sets_come_from_the_flags(monkeypatch):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Chip X", "flags": "fpu avx2 sse4_2"})
    assert cpu.instruction_sets() == ["AVX2"] and not cpu.has_fast_bfloat16()
    assert cpu.describe().startswith("Chip X (AVX2; no bfloat16 instructions; PyTorch kernels: ")
    monkeypatch.setattr(
        cpu, "_cpuinfo", lambda: {"model name": "Chip Y", "flags": "avx2 avx512f amx_tile amx_bf16"}
    )
    assert cpu.instruction_sets() == ["AVX2", "AVX-512", "AMX", "AMX BF16"] and cpu.has_fast_bfloat16()


def test_this_machine_is_described():
    text = cpu.describe()
    assert cpu.cpu_name() in text and torch.backends.cpu.get_cpu_capability() in text
