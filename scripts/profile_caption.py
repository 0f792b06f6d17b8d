"""Where a caption's time goes, stage by stage, on one device: preprocessing, the image's cache key,
the vision tower, decoding; then cProfile's busiest calls for one greedy caption.

    python scripts/profile_caption.py --device cuda     # on a GPU machine (full-size random weights)
    python scripts/profile_caption.py --device cpu --tiny

Pictures are 640 x 480, captions exactly 20 new tokens, medians of a few calls after a warm-up. On
CUDA it also times the float32 vision tower with TF32 matrix multiplies allowed, to show what exact
float32 costs there (the engine never allows TF32: float32 must choose the reference's token ids).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import oracle_checkpoints  # noqa: E402
from bench_gpu import timed  # noqa: E402
from conftest import random_image  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.engine.recent import image_key  # noqa: E402
from blip.loading.preprocess import map_pictures, preprocess  # noqa: E402

BATCH = 32


def median_ms(fn: Callable[[], object], device: str, runs: int = 3) -> float:
    return statistics.median(timed(fn, device) for _ in range(runs)) * 1000


def profile_dtype(directory: Path, dtype: torch.dtype, device: str, images: list) -> None:
    engine = Engine(
        device=device, dtype=dtype, image_cache_size=0, local_models={"caption": directory}, demo="never"
    )
    loaded = engine.model("caption")
    name = str(dtype).removeprefix("torch.")
    pixels = loaded.pixels(images)
    encode = loaded.model.encode_image
    with torch.inference_mode():
        to_device = median_ms(lambda: loaded.pixels(images), device)
        print(f"{name}: {BATCH} pictures preprocessed onto the device: {to_device:.1f} ms")
        one_tower, many_towers = (
            median_ms(lambda: encode(pixels[:1]), device),
            median_ms(lambda: encode(pixels), device),
        )
        print(f"{name}: vision tower, 1 / {BATCH} pictures: {one_tower:.1f} / {many_towers:.1f} ms")
        if dtype == torch.float32 and device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            print(
                f"{name}: vision tower, {BATCH} with TF32: {median_ms(lambda: encode(pixels), device):.1f} ms"
            )
            torch.backends.cuda.matmul.allow_tf32 = False
    options = {"max_new_tokens": 20, "min_new_tokens": 20}

    def one():
        return engine.caption(images[0], model="caption", options=options)

    def many():
        return list(engine.caption_batch(images, model="caption", options=options, batch_size=BATCH))

    one(), many()
    print(
        f"{name}: caption 1 picture {median_ms(one, device, 5):.1f} ms, {BATCH} in one batch {median_ms(many, device):.1f} ms"
    )
    print(
        f"{name}: stages of one caption (ms): { {k: round(v * 1000, 1) for k, v in one().timings.items()} }"
    )
    shares = {k: round(v * 1000, 1) for k, v in many()[0].timings.items()}
    print(f"{name}: stages of the batch, per picture (ms): {shares}")
    profile = cProfile.Profile()
    profile.enable()
    one()
    if device == "cuda":
        torch.cuda.synchronize()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(10)
    print(f"{name}: one caption, busiest calls\n" + "\n".join(text.getvalue().splitlines()[6:18]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy-size model (a dry run)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but PyTorch sees no CUDA device")
    images = [random_image(i, size=(640, 480)) for i in range(BATCH)]
    one, many = median_ms(lambda: preprocess(images[:1]), "cpu"), median_ms(lambda: preprocess(images), "cpu")
    print(f"preprocess on the CPU, 1 / {BATCH} pictures: {one:.1f} / {many:.1f} ms")
    keys = median_ms(lambda: map_pictures(image_key, images), "cpu")  # as the engine hashes them
    print(f"cache keys, {BATCH} pictures: {keys:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        size = "tiny" if args.tiny else "base"
        directory = oracle_checkpoints.build_tied(Path(tmp) / "caption", "caption", size)
        for dtype in (torch.float32, torch.bfloat16):
            profile_dtype(directory, dtype, args.device, images)


if __name__ == "__main__":
    main()
