"""Collections figures besides captioning throughput (``bench_batch.py``): embedding throughput, search
latency over stored vectors, and the Ray path's overhead against the plain command line.

    python scripts/bench_collections.py        # about 5 minutes; prints Markdown tables

Embeddings: a full-size base retrieval checkpoint with random weights, 64 pictures of 640 x 480, batch
sizes 1 and 16. Search: 10,000 and 100,000 random unit vectors of 256 (the width of BLIP's ITC space),
the query embedded by that checkpoint's text encoder; median of 20 searches. Ray: the demo captioner on
64 shapes scenes, ``python -m blip caption DIR --out`` against the same with ``--ray --actors 1`` (a
fresh local Ray, its start-up included), each in a fresh process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import oracle_checkpoints  # noqa: E402
import shapes_world  # noqa: E402
from conftest import random_image  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.engine.searching import ImageIndex  # noqa: E402
from blip.kernels.cpu import describe  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    torch.set_grad_enabled(False)
    print(f"{describe()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        directory = oracle_checkpoints.build_tied(tmp / "retrieval", "retrieval", "base")
        engine = Engine(device="cpu", image_cache_size=0, local_models={"r": directory}, demo="never")
        images = [random_image(2000 + i, size=(640, 480)) for i in range(64)]
        engine.image_features(images[:4], "r")  # warm-up
        print("| embedding, 64 pictures | images/s |\n|---|---:|")
        for batch in (1, 16):
            t = seconds(lambda b=batch: engine.image_features(images, "r", batch_size=b))
            print(f"| batch {batch} | {64 / t:.2f} |")

        print("\n| search (query embedded + exact ranking) | median ms | of which ranking |\n|---|---:|---:|")
        for n in (10_000, 100_000):
            vectors = torch.nn.functional.normalize(torch.randn(n, 256), dim=-1)
            index = ImageIndex(
                model="r", paths=[f"p{i}" for i in range(n)], vectors=vectors, sizes=[(1, 1)] * n
            )
            query = engine.text_features(["a dog on grass"], "r")[0]
            total = statistics.median(
                seconds(lambda i=index: engine.search(i, "a dog on grass")) for _ in range(20)
            )
            ranking = statistics.median(
                seconds(lambda i=index, q=query: (i.vectors @ q).topk(10)) for _ in range(20)
            )
            print(f"| {n:,} stored vectors | {total * 1000:.1f} | {ranking * 1000:.1f} |")

        folder = tmp / "shapes"
        folder.mkdir()
        for i, scene in enumerate(shapes_world.scene_stream(7, 64)):
            scene.image.save(folder / f"{i:02d}.png")
        base = [sys.executable, "-m", "blip", "caption", str(folder), "--model", str(ROOT / "assets/demo/caption"),
                "--batch-size", "8"]  # fmt: skip
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        runs = {
            "command line": [*base, "--out", str(tmp / "plain.jsonl")],
            "Ray, 1 actor": [*base, "--out", str(tmp / "ray.jsonl"), "--ray", "--ray-cpus", "2"],
        }
        print("\n| 64 shapes scenes, demo captioner, fresh process | seconds |\n|---|---:|")
        for name, argv in runs.items():
            t = seconds(lambda a=argv: subprocess.run(a, env=env, check=True, capture_output=True))
            print(f"| {name} | {t:.1f} |")
        same = (tmp / "plain.jsonl").read_text().splitlines() == (tmp / "ray.jsonl").read_text().splitlines()
        print(f"\nRay's rows identical to the command line's: {same}")


if __name__ == "__main__":
    main()
