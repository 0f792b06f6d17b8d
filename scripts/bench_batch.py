"""Collections throughput: captioning a folder in batches, ours against transformers' batched
``generate`` on the same checkpoint files in the same run; embedding throughput; exact search latency.

    python scripts/bench_batch.py                 # 64 images, batch sizes 1 4 8 16; about 10 minutes
    python scripts/bench_batch.py --images 16 --batch-sizes 1 8

Full-size base checkpoints with random weights (the tests' builder), 640 x 480 pictures, greedy
captions of exactly ``--tokens`` new tokens (random weights rarely say [SEP], so both sides do the same
work), preprocessing included on both sides. Before timing, the two sides' token ids are compared for
every picture. The sides alternate per batch size; prints a Markdown table with the CPU's name.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import oracle_checkpoints  # noqa: E402
from conftest import random_image  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.kernels.cpu import describe  # noqa: E402


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from transformers import BlipProcessor

    images = [random_image(1000 + i, size=(640, 480)) for i in range(args.images)]
    options = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        print("building a full-size random-weight caption checkpoint ...", flush=True)
        directory = oracle_checkpoints.build_tied(Path(tmp) / "caption", "caption", "base")
        reference = oracle_checkpoints.load_oracle(directory, "caption")
        processor = BlipProcessor.from_pretrained(directory)
        engine = Engine(device="cpu", image_cache_size=0, local_models={"caption": directory}, demo="never")
        engine.model("caption")

        def ours(batch_size: int, pictures=images) -> list[list[int]]:
            results = engine.caption_batch(pictures, "caption", options=options, batch_size=batch_size)
            return [[t.token_id for t in r.captions[0].tokens] for r in results]

        def theirs(batch_size: int, pictures=images) -> list[list[int]]:
            ids = []
            for start in range(0, len(pictures), batch_size):
                inputs = processor(images=pictures[start : start + batch_size], return_tensors="pt")
                out = reference.generate(**inputs, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
                ids += out[:, 1:].tolist()
            return ids

        for size in sorted(set(args.batch_sizes)):  # warm-up: allocator, oneDNN primitives, kernel timing
            ours(size, images[:size]), theirs(size, images[:size])
        for n, batch_size in enumerate(args.batch_sizes):
            sides = [("ours", ours), ("theirs", theirs)]
            if n % 2:
                sides.reverse()  # who goes first alternates
            times, ids = {}, {}
            for name, fn in sides:
                times[name], ids[name] = timed(lambda fn=fn, size=batch_size: fn(size))
                print(f"batch {batch_size}: {name} {times[name]:.1f} s", flush=True)
            same = sum(a == b for a, b in zip(ids["ours"], ids["theirs"], strict=True))
            rows.append((batch_size, times["ours"], times["theirs"], same))

    print(f"\n{describe()}, {torch.get_num_threads()} threads, torch {torch.__version__}, float32; ")
    print(f"{args.images} pictures of 640 x 480, greedy, {args.tokens} new tokens each\n")
    print("| batch size | ours (images/s) | transformers (images/s) | ratio | same token ids |")
    print("|---:|---:|---:|---:|---:|")
    for batch_size, ours_s, theirs_s, same in rows:
        n = args.images
        print(
            f"| {batch_size} | {n / ours_s:.2f} | {n / theirs_s:.2f} | {theirs_s / ours_s:.2f}x | {same}/{n} |"
        )


if __name__ == "__main__":
    main()
