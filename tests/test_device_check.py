"""scripts/device_check.sh and scripts/bench_gpu.py, as far as a CPU can check them: the script parses,
runs every step under a time limit, logs to $OUT, and reports failures (here: no CUDA) without
stopping; it runs the CUDA tests and the GPU bench; the bench runs end to end on toy models on the CPU
and keeps its section of BENCHMARKS.md apart from the CPU bench's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))


def test_the_script_parses_and_runs_the_cuda_tests_and_the_bench():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert "BLIP_DEVICE_CHECK=1" in text and "tests/test_cuda.py" in text
    assert "scripts/bench_gpu.py" in text and "scripts/profile_caption.py --device cuda" in text
    assert (ROOT / "tests" / "test_cuda.py").is_file()
    # Every test in test_cuda.py is gated on the variable the script sets.
    assert 'os.environ.get("BLIP_DEVICE_CHECK") != "1"' in (ROOT / "tests" / "test_cuda.py").read_text()


def test_without_a_gpu_every_step_reports_and_the_script_fails(tmp_path):
    env = os.environ | {"OUT": str(tmp_path), "PYTHON": sys.executable, "BLIP_DEVICE_CHECK_NO_PIP": "1",
                        "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    log = (tmp_path / "device_check.log").read_text()
    assert done.returncode == 1, log[-2000:]
    assert "PyTorch sees no CUDA device" in log
    assert (
        "--- CUDA tests: FAILED" in log
        and "--- GPU bench: FAILED" in log
        and "--- GPU profile: FAILED" in log
    )
    assert "FAILED: dependencies CUDA tests GPU bench GPU profile" in log


def test_the_bench_section_replaces_itself_and_survives_the_cpu_bench(tmp_path):
    import bench
    import bench_gpu

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nCPU table\n\n" + bench.NOTES + " (kept)\n\nhand notes\n")
    bench_gpu.write_section(out, f"{bench_gpu.START}\nfirst\n{bench_gpu.END}")
    bench_gpu.write_section(out, f"{bench_gpu.START}\nsecond\n{bench_gpu.END}")
    text = out.read_text()
    assert "second" in text and "first" not in text and text.count(bench_gpu.START) == 1
    assert text.index(bench.NOTES) < text.index(bench_gpu.START)  # in the part bench.py keeps
    assert bench_gpu.START in bench.kept_notes(out) and "hand notes" in bench.kept_notes(out)
    fresh = tmp_path / "new.md"
    bench_gpu.write_section(fresh, f"{bench_gpu.START}\nx\n{bench_gpu.END}")
    assert bench.NOTES in fresh.read_text()


def test_the_profile_runs_on_a_toy_model_on_the_cpu():
    command = [sys.executable, str(ROOT / "scripts" / "profile_caption.py"), "--device", "cpu", "--tiny"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    for dtype in ("float32", "bfloat16"):
        assert (
            f"{dtype}: caption 1 picture" in done.stdout
            and f"{dtype}: one caption, busiest calls" in done.stdout
        )


def test_the_bench_runs_end_to_end_on_toy_models_on_the_cpu(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--device", "cpu", "--tiny", "--runs", "1",
               "--dtypes", "float32", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "TOY-SIZE models (dry run, not a measurement)" in text
    assert "identical token ids and ITM within 1e-4 (checked)" in text
    for case in ("caption greedy, 20 tokens", "caption 3 beams", "VQA greedy", "ITM, one image and 8 texts",
                 "batch captioning, 1 per batch", "batch captioning, 8 per batch", "batch captioning, 32 per batch"):  # fmt: skip
        assert f"| {case}" in text, case


def test_the_bench_finds_where_greedy_parts_and_how_close_the_tie_was():
    import bench_gpu

    logits = [torch.zeros(2, 5) for _ in range(3)]
    logits[1][1, 2], logits[1][1, 3] = 1.0, 1.0 - 2e-6  # row 1, step 1: the reference's 2 beats our 3 by 2e-6
    ours, ref = [[4, 4, 4], [4, 3, 1]], [[4, 4, 4], [4, 2, 0]]
    parted = bench_gpu.first_partings(ours, ref, logits)
    assert [(row, step) for row, step, _ in parted] == [(1, 1)]
    assert parted[0][2] == pytest.approx(2e-6, abs=1e-7) and parted[0][2] <= bench_gpu.NEAR_TIE
    stopped_early = bench_gpu.first_partings([[4, 4]], [[4, 4, 4]], logits)
    assert stopped_early[0][1:] == (2, float("inf"))
    assert bench_gpu.first_partings(ref, ref, logits) == []
    assert "image 1 at token 2" in bench_gpu.describe_partings(parted)
