"""The benchmark's report logic: floors, ratios and verdicts from given timings (no timing here)."""

from __future__ import annotations

import bench  # scripts/, put on the path by conftest.py
import pytest
import torch

pytestmark = pytest.mark.unit

VISION = "vision tower (ViT-B/16 at 384)"


def timings(overrides: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """Medians in seconds per case: (ours, reference, int8); a plausible run, then ``overrides``."""
    med = {
        VISION: (1.0, 1.0, 0.6),
        "caption greedy, 20 tokens": (2.0, 2.2, 1.2),
        "caption 3 beams, 20 tokens": (2.4, 4.5, 1.4),
        "VQA greedy": (1.3, 1.3, 0.9),
        "VQA, second question on the same image": (0.2, 1.3, 0.12),
        "ITM, one image and 8 texts": (1.2, 8.4, 0.8),
        "zero-shot, 20 labels (ITC)": (1.1, None, None),
        bench.VISION_FLOOR: (0.9, None, None),
        bench.DECODER_FLOOR: (0.04, None, None),
    }
    med.update(overrides or {})
    return med


def row(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(f"| {start} |"))


def test_floors_add_up_the_work_that_cannot_be_skipped():
    med = timings()
    bounds = bench.floors(med, text_rows=72, bandwidth=30.0)
    rate = bench.vit_gflop() / 0.9
    image = 0.9 + bench.CROSS_KV_GFLOP / rate
    step_memory = bench.DECODER_STEP_BYTES / 30e9
    encoder = 0.04 * bench.ENCODER_PASS_BYTES / bench.DECODER_STEP_BYTES
    _, kernels, memory = bounds["caption greedy, 20 tokens"]
    assert kernels == pytest.approx(image + 20 * 0.04)
    assert memory == pytest.approx(image + 20 * step_memory)
    assert bounds["VQA, second question on the same image"][1] == pytest.approx(encoder + 3 * 0.04)
    texts = 2 * 72 * 12 * 14 * 768 * 768 / 1e9 / rate
    assert bounds["ITM, one image and 8 texts"][1] == pytest.approx(image + texts)


def test_limits_say_which_targets_are_met_reachable_or_out_of_reach():
    itm_met = timings({"ITM, one image and 8 texts": (1.0, 8.4, 0.8)})
    lines = bench.limits(itm_met, text_rows=72, bandwidth=30.0)
    # ITM: 8.4x now.
    assert row(lines, "ITM, one image and 8 texts").endswith("| 8.40x | >= 8x | met |")
    # Second question: 6.5x now; the floors allow 1.3 / (0.032 + 0.12) = 8.5x, short of 10x; with the
    # decoder passes at memory bandwidth they would allow it.
    assert row(lines, "VQA, second question on the same image").endswith(
        "out of reach with PyTorch's kernels |"
    )
    # VQA: the vision floor alone leaves no room for 1.8x.
    assert row(lines, "VQA greedy").endswith("out of reach in float32 on this CPU |")
    # Beams: 4.5 / (0.9 + 0.13 + 0.8) = 2.5x at the kernel floors, 3.3x at memory bandwidth.
    assert row(lines, "caption 3 beams, 20 tokens").endswith("out of reach with PyTorch's kernels |")
    assert row(lines, "per generated token").endswith("out of reach in float32 on this CPU |")
    fast_decoder = timings({bench.DECODER_FLOOR: (0.005, None, None)})
    assert row(bench.limits(fast_decoder, 72, 30.0), "per generated token").endswith(
        "reachable only at the floors |"
    )


def test_report_rows_ratios_and_verdicts():
    med = timings()
    report = bench.render(
        med, 72, 30.0, {"ours": 1.0, "reference": 3.0}, {"ours": 1200, "reference": 1300}, 5
    )
    lines = report.splitlines()
    assert row(lines, "caption 3 beams, 20 tokens") == (
        "| caption 3 beams, 20 tokens | 2400 | 4500 | 1.88x | >= 3x | not met | 1400 (3.21x) |"
    )
    assert row(lines, "ITM, one image and 8 texts").startswith(
        "| ITM, one image and 8 texts | 1200 | 8400 | 7.00x"
    )
    assert not any(line.startswith("| floor") for line in lines)  # floors are not cases of their own
    vision = next(line for line in lines if line.startswith("| vision tower vs this CPU's matmul floor"))
    assert "| 1.11x floor | 1.11x floor | <= 1.15x | met |" in vision
    assert "| import (fresh interpreter) | 1000 ms | 3000 ms | >= 2x faster | met (3.00x) |" in report
    assert "| 1200 MiB | 1300 MiB | <= reference | met |" in report
    med = {name: (*sides, sides[2] and sides[2] * 2) for name, sides in med.items()}
    fast = bench.render_fast(
        med,
        {"auto": {"full": DRIFT, "demo": DRIFT}, "bfloat16": {"full": DRIFT, "demo": DRIFT}},
        "int8 linear layers",
    )
    assert "| per generated token | 50.0 | 30.0 (1.67x) | 60.0 (0.83x) |" in fast
    assert "| caption 3 beams, 20 tokens | 2400 | 1400 (1.71x) | 2800 (0.86x) |" in fast
    assert any(line.startswith("| bfloat16 throughout | offline demo captioner") for line in fast)
    assert "the plan chosen: **int8 linear layers**" in "\n".join(fast)


DRIFT = {"logit cosine": 0.999, "token agreement": 0.9, "identical captions": 0.8}


def test_vit_matmul_floor_does_the_vits_flops():
    """The floor function runs the matrix multiplies ``vit_gflop`` counts (checked on a small ViT)."""
    n, d, layers, heads = 17, 32, 2, 4
    flops = 0

    def count(a, b, *rest, **kwargs):
        nonlocal flops
        flops += 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.dim() == 3 else 1)
        return real(a, b)

    run = bench.vit_matmuls(n, d, layers, heads)
    real = torch.Tensor.__matmul__
    try:
        torch.Tensor.__matmul__ = count
        run()
    finally:
        torch.Tensor.__matmul__ = real
    assert flops / 1e9 == pytest.approx(bench.vit_gflop(n, d, layers))


def test_a_new_report_keeps_the_hand_written_section(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    assert bench.kept_notes(report) == ""
    report.write_text("# Benchmarks\n\n| old | table |\n\n## Measured separately (GPU)\n\n- notes\n")
    assert bench.kept_notes(report) == "\n## Measured separately (GPU)\n\n- notes\n"
    report.write_text("# Benchmarks\n\n| old | table |\n")
    assert bench.kept_notes(report) == ""
