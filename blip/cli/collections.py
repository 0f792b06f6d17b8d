"""The collection commands: ``embed`` (vectors for pictures and texts), ``index`` (a folder made
searchable) and ``search`` (a text or a picture against an index)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ..engine.searching import ImageIndex
from ..loading.uploads import UploadError, open_upload
from . import vectors
from .files import find_images
from .options import RunError, UsageError, make_engine, open_image


def progress_bar(total: int, unit: str = "image"):
    """A tqdm bar on stderr (images/s shown), quiet when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)


def readable_images(paths: list[Path], failed: list[tuple[str, str]]) -> Iterator[tuple[str, Image.Image]]:
    """(name, picture) for each path that opens; the others go to ``failed`` with the reason, said on
    stderr as they come, and the run goes on."""
    for path in paths:
        try:
            yield str(path), open_upload(path)
        except (UploadError, OSError) as err:
            failed.append((str(path), str(err)))
            print(f"skipped {path}: {err}", file=sys.stderr)


def build_index(args: argparse.Namespace) -> tuple[ImageIndex, list[tuple[str, str]], float]:
    """Index the pictures ``args.paths`` names; returns the index, the unreadable files, seconds."""
    vectors.check_format(args.out)  # a wrong suffix fails before any picture is read
    paths = find_images(args.paths, args.recursive)
    if not paths:
        raise UsageError(
            "no images found (folders are searched for .jpg, .png, ...; --recursive for sub-folders)"
        )
    engine, model = make_engine(args)
    start, failed = time.perf_counter(), []
    with progress_bar(len(paths)) as bar:
        index = engine.index_images(
            readable_images(paths, failed), model, args.batch_size, lambda done: bar.update(done - bar.n)
        )
    return index, failed, time.perf_counter() - start


def cmd_embed(args: argparse.Namespace) -> int:
    """Unit-length vectors for pictures (and texts, with --texts) into a Parquet or .npz file."""
    texts = None
    if args.texts:
        try:
            texts = [line.strip() for line in Path(args.texts).read_text(encoding="utf-8").splitlines()]
        except OSError as err:
            raise RunError(f"cannot read {args.texts}: {err}") from None
        texts = [t for t in texts if t]
    index, failed, seconds = build_index(args)
    text_vectors = None
    if texts:
        engine, model = make_engine(args)
        text_vectors = engine.text_features(texts, model)
    vectors.write(args.out, index, texts or None, text_vectors)
    summary = {"out": str(args.out), "model": index.label, "images": len(index), "texts": len(texts or []),
               "failed": [{"path": p, "error": e} for p, e in failed], "seconds": round(seconds, 3)}  # fmt: skip
    _report(args, summary, f"embedded {len(index)} images{f' and {len(texts)} texts' if texts else ''}")
    return 1 if failed and not len(index) else 0


def cmd_index(args: argparse.Namespace) -> int:
    """Make a folder of pictures searchable: their ITC vectors and paths in one file."""
    index, failed, seconds = build_index(args)
    vectors.write(args.out, index)
    summary = {"out": str(args.out), "model": index.label, "images": len(index),
               "failed": [{"path": p, "error": e} for p, e in failed], "seconds": round(seconds, 3)}  # fmt: skip
    _report(args, summary, f"indexed {len(index)} images")
    return 1 if failed and not len(index) else 0


def _report(args: argparse.Namespace, summary: dict, done: str) -> None:
    if args.json:
        print(json.dumps(summary))
        return
    failed = len(summary["failed"])
    print(f"{done} into {summary['out']} ({summary['model']}) in {summary['seconds']:.1f} s"
          + (f"; {failed} could not be read (listed above)" if failed else ""))  # fmt: skip


def cmd_search(args: argparse.Namespace) -> int:
    """Rank an index's pictures for a text (or, with --image, a picture): ITC, optional ITM re-rank."""
    index = vectors.read_index(args.index)
    if (args.query is None) == (args.image is None):
        raise UsageError("give a text query or --image PATH (one of them)")
    args.default_model = index.model  # the query must be embedded by the model that made the index
    engine, model = make_engine(args)
    if model != index.model:
        raise UsageError(f"{args.index} was made with {index.model}; search it with that model")
    query = args.query if args.image is None else open_image(args.image)
    base = Path(args.index).resolve().parent

    def opened(path: str) -> Image.Image:  # paths as indexed: from here, else from the index's folder
        return open_image(path if Path(path).exists() else str(base / path))

    result = engine.search(index, query, top=args.top, rerank=args.rerank, first_token=args.first_token,
                           open_image=opened)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{'rank':>4}  {'ITC cos':>7}  {'P(match)':>8}  path")
        for rank, hit in enumerate(result.hits, 1):
            p = f"{hit.itm_probability:8.3f}" if hit.itm_probability is not None else f"{'-':>8}"
            print(f"{rank:4d}  {hit.itc_cosine:7.3f}  {p}  {hit.path}")
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
    return 0
