"""Dataset captioning on Ray Data, for collections that outgrow one machine.

The pipeline: Ray reads the pictures' bytes (a local folder, or anything pyarrow's filesystems read:
``s3://``, ``gs://``, ...), ``map_batches`` sends batches to a pool of actors that each hold one
engine (and one GPU each when CUDA is there), and the rows stream back to this process, which writes
them with the same writers as ``python -m blip caption --out`` (so the output, and resuming, are the
same). On one machine ``ray.init`` starts a local Ray; ``--ray ADDRESS`` joins a cluster (``auto``
for the one this machine belongs to).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..generation.options import DecodingOptions
from ..loading.uploads import UploadError, open_upload_bytes
from .dataset import CHECK_COLUMNS, COLUMNS, caption_rows, open_output, summary_line
from .files import find_images
from .options import DTYPES, RunError, UsageError

LOCAL = "local"  # --ray with no address


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise RunError("--ray needs Ray: pip install -r requirements-ray.txt") from None
    return ray


class Captioner:
    """A Ray actor: one engine, captioning the batches Ray hands it (columns ``bytes`` and ``path``)."""

    def __init__(self, model: str, local: dict[str, str], device: str | None, dtype: str, prompt: str,
                 options: dict[str, Any], check_model: str | None):  # fmt: skip
        from ..engine import Engine

        self.engine = Engine(device=device, dtype=DTYPES[dtype], max_models=2, local_models=local)
        self.model, self.prompt, self.check_model = model, prompt, check_model
        self.options = DecodingOptions(**options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        pictures, rows = [], []
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            try:
                pictures.append((str(path), open_upload_bytes(bytes(data))))
            except UploadError as err:
                rows.append({"path": str(path), "caption": "", "score": "", "error": str(err)})
        if pictures:
            rows = (
                caption_rows(self.engine, self.model, pictures, self.prompt, self.options, self.check_model)
                + rows
            )
        return {"row": [json.dumps(row) for row in rows]}  # one JSON text per row: the same rows as the CLI


def caption_on_ray(args: argparse.Namespace, options: DecodingOptions) -> int:
    """``python -m blip caption ... --ray [ADDRESS]``: the dataset run, its work done by Ray actors."""
    ray = import_ray()
    if not args.out:
        raise UsageError("--ray writes rows: give --out captions.jsonl|.csv|.parquet")
    if args.actors < 1:
        raise UsageError(f"--actors must be at least 1 (got {args.actors})")
    columns = COLUMNS[:3] + (CHECK_COLUMNS if args.check else []) + COLUMNS[3:]
    output = open_output(args, columns)
    remote = [p for p in args.images if "://" in p]
    local = [str(p) for p in find_images([p for p in args.images if "://" not in p], args.recursive)]
    todo = [p for p in local if not output.has(Path(p))] + remote
    start = time.perf_counter()
    done = failed = 0
    if todo:
        ray.init(address=None if args.ray == LOCAL else args.ray, num_cpus=args.ray_cpus,
                 include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)  # fmt: skip
        gpus = 1 if _cuda() else 0
        models = {m: str(Path(m).resolve()) for m in (args.model, args.check_model) if m and Path(m).is_dir()}
        model = models.get(args.model or args.default_model, args.model or args.default_model)
        check = (models.get(args.check_model, args.check_model)) if args.check else None
        pictures = ray.data.read_binary_files(todo, include_paths=True, ignore_missing_paths=False)
        captioned = pictures.map_batches(
            Captioner, batch_size=args.batch_size, batch_format="numpy", concurrency=args.actors, num_gpus=gpus,
            fn_constructor_args=(model, {v: v for v in models.values()}, args.device, args.dtype, args.prompt,
                                 asdict(options), check),
        )  # fmt: skip
        for batch in captioned.iter_batches(batch_size=args.batch_size, batch_format="numpy"):
            rows = [json.loads(text) for text in batch["row"]]
            output.write(rows)
            done += sum(not r["error"] for r in rows)
            failed += sum(bool(r["error"]) for r in rows)
    output.close()
    print(summary_line(args, done, len(local) + len(remote) - len(todo), failed, time.perf_counter() - start))
    return 1 if failed and not done else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
