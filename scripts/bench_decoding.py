"""Side-by-side decoding speed: our loop vs transformers' generate on the same full-size checkpoint.

Builds a random-weight full-size base captioning checkpoint (the tests' builder), then alternates the
two implementations on the same image: greedy and 3-beam captions of exactly 20 new tokens. Prints
medians and ratios (reference / ours). transformers is needed (it is the reference), so run this from a
development install: ``pip install -r requirements-dev.txt && python scripts/bench_decoding.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import oracle_checkpoints  # noqa: E402
from conftest import random_image  # noqa: E402

import blip  # noqa: E402
from blip.decoding import DecodingOptions  # noqa: E402
from blip.tasks import caption  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    with tempfile.TemporaryDirectory() as tmp:
        directory = oracle_checkpoints.build_tied(Path(tmp) / "caption-base", "caption", "base")
        ours = blip.load(directory)
        reference = oracle_checkpoints.load_oracle(directory, "caption")
        pixels = ours.pixels(random_image(0, size=(640, 480)))
        n = args.tokens

        def ours_caption(beams: int):
            embeds = ours.model.encode_image(pixels)
            strategy = "beam" if beams > 1 else "greedy"
            options = DecodingOptions(
                strategy=strategy, num_beams=max(beams, 1), max_new_tokens=n, min_new_tokens=n
            )
            return caption(ours.model, ours.tokenizer, embeds, "", options)[0].sequence.token_ids

        def reference_caption(beams: int):
            out = reference.generate(pixel_values=pixels, num_beams=beams, max_new_tokens=n, min_new_tokens=n)
            return out[0, 1:].tolist()

        for beams in (1, 3):  # warm-up, and the outputs must agree
            assert ours_caption(beams) == reference_caption(beams), f"token ids differ ({beams} beams)"

        cases = {
            "vision tower": (lambda: ours.model.encode_image(pixels), lambda: reference.vision_model(pixels)),
            f"caption greedy, {n} tokens": (lambda: ours_caption(1), lambda: reference_caption(1)),
            f"caption 3 beams, {n} tokens": (lambda: ours_caption(3), lambda: reference_caption(3)),
        }
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
        for _ in range(args.runs):  # interleaved, so machine noise hits both sides alike
            for name, (ours_fn, reference_fn) in cases.items():
                times[name][0].append(_timed(ours_fn))
                times[name][1].append(_timed(reference_fn))

    med = {name: (statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, median of {args.runs} runs"
    )
    print(f"{'measurement':32s} {'ours':>10s} {'reference':>10s} {'ratio':>7s}")
    for name, (a, b) in med.items():
        print(f"{name:32s} {a * 1000:8.0f}ms {b * 1000:8.0f}ms {b / a:6.2f}x")
    vision_ours, vision_ref = med["vision tower"]
    for label in (f"caption greedy, {n} tokens", f"caption 3 beams, {n} tokens"):
        a, b = med[label]
        per_ours, per_ref = (a - vision_ours) / n * 1000, (b - vision_ref) / n * 1000
        print(f"{label + ' per token':32s} {per_ours:8.1f}ms {per_ref:8.1f}ms {per_ref / per_ours:6.2f}x")
    print("token ids identical to the reference: yes (checked before timing)")


if __name__ == "__main__":
    main()
