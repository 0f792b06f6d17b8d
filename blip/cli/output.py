"""How a command's result is shown: lines for people, one JSON object per image for programs, heatmap
overlays written as PNG files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engine import Engine
from ..engine.results import CaptionResult, GeneratedItem, Result
from ..explain import beam_tree, render
from ..explain.maps import Heatmaps
from .options import UsageError, layer_choice


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
        layer = layer_choice(args.layer)
        if layer == "auto":  # the layer measured to point best for this kind of map (explain/layers.py)
            layer = heat.default_layer(kind)
        elif layer is not None and layer >= heat.num_layers:
            raise UsageError(f"--layer {layer}: this model's text side has layers 0 to {heat.num_layers - 1}")
        stem = Path(args.heatmaps) / f"{prefix}{n + 1:02d}-{what}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [(None, f"{stem}.png")]
        paths += [(i, f"{stem}-{i + 1:02d}-{slug(w.text)}.png") for i, w in enumerate(heat.words)]
        for word, path in paths:
            heat_map = heat.grid_map(word=word, layer=layer, kind=kind)
            overlay(args, image, heat_map).save(path)
        written += [path for _, path in paths]
    return written


def overlay(args, image: Image.Image, heat: np.ndarray) -> Image.Image:
    """A map over the picture with the overlay flags (--opacity, --colormap, --blur)."""
    return render.overlay(image, heat, opacity=args.opacity, colormap=args.colormap, blur=args.blur)


def write_rollout(args, engine: Engine, model: str, image: Image.Image, prefix: str = "") -> list[str]:
    """With --rollout, ``rollout.png``: the vision tower's class-token rollout over the picture."""
    if not args.rollout:
        return []
    path = Path(args.heatmaps) / f"{prefix}rollout.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(args, image, engine.vision_rollout(image, model).grid_map()).save(path)
    return [str(path)]


def write_tree(args, result: CaptionResult, items: list[GeneratedItem], prefix: str = "") -> str | None:
    """With --tree PNG, the search drawn: beam search's tree, or the paths of the samples."""
    if not args.tree:
        return None
    path = Path(args.tree)
    path = path.with_name(prefix + path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if result.search_tree is not None:
        picture = beam_tree.draw_beam_tree(result.search_tree)
    else:
        paths = [[(t.token, t.probability) for t in item.tokens] for item in items]
        picture = beam_tree.draw_sampled_paths(paths, [f"sample {i + 1}" for i in range(len(items))])
    picture.save(path)
    return str(path)


def emit(args, result: Result, data: dict[str, Any], lines: list[str], image: str) -> None:
    """Print ``data`` as one JSON line (with --json), else the human-readable ``lines``."""
    if args.json:
        print(json.dumps({"image": image, **data}))
    else:
        files = data["heatmaps"]
        print("\n".join(lines + ([f"wrote {len(files)} heatmaps to {args.heatmaps}"] if files else [])))
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)
