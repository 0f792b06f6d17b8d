"""Embedding files, and an index is one: vectors with the names of what they embed.

``.parquet`` (through pyarrow) has one row per picture, columns ``path``, ``width``, ``height``,
``model`` and ``vector`` (a list of float32), or per text ``text``, ``model``, ``vector``; ``.npz``
holds the arrays ``paths``, ``widths``, ``heights``, ``vectors`` (N, D) and ``model``, and for texts
``texts`` and ``text_vectors``. Vectors are unit length, so a dot product is a cosine. ``model`` reads
``NAME (offline demo)`` when the offline demo model stood in for NAME: those vectors are shapes-world
vectors, not comparable with the real model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..engine.searching import ImageIndex
from .options import RunError, UsageError

FORMATS = (".parquet", ".npz")


def check_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: the output must end in .parquet or .npz")
    return suffix


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RunError("Parquet needs pyarrow (pip install pyarrow), or write .npz instead") from None
    return pyarrow


def write(path: str | Path, index: ImageIndex, texts: list[str] | None = None, text_vectors=None) -> None:
    """Save the pictures' vectors (and, if given, texts' vectors) in the format ``path`` names."""
    vectors = index.vectors.numpy().astype(np.float32)
    widths = [w for w, _ in index.sizes]
    heights = [h for _, h in index.sizes]
    if check_format(path) == ".npz":
        extra = {}
        if texts is not None:
            extra = {
                "texts": np.array(texts, dtype=str),
                "text_vectors": text_vectors.numpy().astype(np.float32),
            }
        np.savez(path, paths=np.array(index.paths, dtype=str), widths=np.array(widths), heights=np.array(heights),
                 vectors=vectors, model=np.array(index.label), **extra)  # fmt: skip
        return
    pa = _pyarrow()
    table = pa.table({
        "path": index.paths, "width": widths, "height": heights, "model": [index.label] * len(index),
        "vector": pa.array(list(vectors), type=pa.list_(pa.float32())),
    })  # fmt: skip
    pa.parquet.write_table(table, path)
    if texts is not None:
        text_table = pa.table({
            "text": texts, "model": [index.label] * len(texts),
            "vector": pa.array(list(text_vectors.numpy().astype(np.float32)), type=pa.list_(pa.float32())),
        })  # fmt: skip
        pa.parquet.write_table(text_table, texts_path(path))


def texts_path(path: str | Path) -> Path:
    """Where a Parquet file's text vectors go: beside it, ``NAME.texts.parquet``."""
    path = Path(path)
    return path.with_name(path.stem + ".texts.parquet")


def read_index(path: str | Path) -> ImageIndex:
    """The pictures' vectors saved by :func:`write` (``embed`` or ``index``), as a searchable index."""
    suffix = check_format(path)
    if not Path(path).is_file():
        raise RunError(f"{path}: no such index (make one with `python -m blip index FOLDER --out {path}`)")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                paths, vectors = [str(p) for p in data["paths"]], data["vectors"]
                sizes = list(zip(data["widths"].tolist(), data["heights"].tolist(), strict=True))
                model = str(data["model"])
        else:
            table = _pyarrow().parquet.read_table(path).to_pydict()
            paths, sizes = table["path"], list(zip(table["width"], table["height"], strict=True))
            vectors = np.array(table["vector"], dtype=np.float32).reshape(len(paths), -1)
            model = table["model"][0] if paths else ""
    except (KeyError, ValueError, OSError) as err:
        raise RunError(f"{path} is not an index written by `blip index` or `blip embed` ({err})") from None
    vectors = torch.from_numpy(np.ascontiguousarray(vectors))
    return ImageIndex.from_label(model, paths=paths, vectors=vectors, sizes=sizes)
