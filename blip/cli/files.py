"""Which files a command works on: image files, folders (their images; sub-folders with
``--recursive``) and glob patterns, in a stable order, each named once."""

from __future__ import annotations

import glob
from pathlib import Path

from .options import UsageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def find_images(paths: list[str], recursive: bool = False) -> list[Path]:
    """The image files ``paths`` name. A file named outright is kept whatever its suffix (so a bad
    one gets its own message later); in a folder or a glob, only files with an image suffix count."""
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.update(dict.fromkeys(sorted(_images(path.glob(pattern)))))
        elif glob.has_magic(given):
            found.update(
                dict.fromkeys(sorted(_images(Path(p) for p in glob.glob(given, recursive=recursive))))
            )
        elif path.exists() or path.is_symlink():
            found[path] = None
        else:
            raise UsageError(f"{given}: no such file or folder")
    return list(found)


def _images(candidates) -> list[Path]:
    """Files (not folders, even one named like a picture) with an image suffix."""
    return [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
