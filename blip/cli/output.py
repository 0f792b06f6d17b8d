"""How a command's result is shown: lines for people, one JSON object per image for programs, heatmap
overlays written as PNG files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ..engine.results import GeneratedItem, Result
from ..explain import render
from ..explain.maps import Heatmaps


def item_dict(item: GeneratedItem, data: dict[str, Any]) -> dict[str, Any]:
    """A caption's or answer's dict, with its token ids and log-probabilities as plain lists."""
    return {**data, "token_ids": [t.token_id for t in item.tokens], "logprobs": item.logprobs}


def slug(word: str) -> str:
    """A file-name-safe form of a word ("dog's" -> "dog_s"; punctuation alone -> "sym")."""
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "sym"


def write_heatmaps(
    args, image: Image.Image, what: str, maps: list[Heatmaps | None], prefix: str = ""
) -> list[str]:
    """With --heatmaps, for the n-th text (a caption, label, ...) ``NN-WHAT.png`` for the whole text and
    ``NN-WHAT-MM-WORD.png`` per word; returns the paths written."""
    written = []
    for n, heat in enumerate(maps if args.heatmaps else []):
        if heat is None or not heat.words:
            continue
        kind = args.heatmap_kind if args.heatmap_kind in heat.kinds() else "attention"
        stem = Path(args.heatmaps) / f"{prefix}{n + 1:02d}-{what}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [(None, f"{stem}.png")]
        paths += [(i, f"{stem}-{i + 1:02d}-{slug(w.text)}.png") for i, w in enumerate(heat.words)]
        for word, path in paths:
            render.overlay(image, heat.grid_map(word=word, kind=kind), opacity=args.opacity).save(path)
        written += [path for _, path in paths]
    return written


def emit(args, result: Result, data: dict[str, Any], lines: list[str], image: str) -> None:
    """Print ``data`` as one JSON line (with --json), else the human-readable ``lines``."""
    if args.json:
        print(json.dumps({"image": image, **data}))
    else:
        files = data["heatmaps"]
        print("\n".join(lines + ([f"wrote {len(files)} heatmaps to {args.heatmaps}"] if files else [])))
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
