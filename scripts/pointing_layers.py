"""Which text layer's heatmap points best? The pointing game per layer and per kind of map, on the
offline demo models' held-out two-shape scenes, through the engine.

    python scripts/pointing_layers.py [--count 200]

For every shape word of a scene's text (the captioner's own caption, and the true caption under the
matcher) a map points at its shape when its maximum falls inside the shape's box dilated by one patch
(``shapes_eval._points_at``, the measure of ``assets/demo/README.md``). Each layer is scored alone,
and the mean over layers; heads are averaged. The best per (source, kind) goes into
``blip/explain/layers.py`` (DEFAULT_LAYERS); the figures are written there and in
``assets/demo/README.md`` by hand. Also printed: how the LAVIS-style blur changes pointing at the
default layer.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import shapes_world as shapes  # noqa: E402
from shapes_eval import _points_at  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.explain.maps import Heatmaps  # noqa: E402
from blip.explain.render import LAVIS_BLUR, blur_map  # noqa: E402
from blip.generation import DecodingOptions  # noqa: E402

SEED = 20261128  # held out (training used other seeds); shapes_eval's two-shape scenes use this one too
KINDS = ("attention", "gradcam")
BLURS = (0.0, LAVIS_BLUR, 1.0)


def shape_maps(heatmaps: Heatmaps, scene) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(word index, box) for each shape word of the text that names the scene's shapes in order."""
    words = [i for i, w in enumerate(heatmaps.words) if w.text in shapes.SHAPES]
    mentions = shapes.shape_mentions(scene)
    said = [heatmaps.words[i].text for i in words]
    return [(words[k], box) for k, (word, box) in enumerate(mentions) if k < len(said) and said[k] == word]


def measure(engine: Engine, count: int, seed: int = SEED) -> dict[tuple[str, str, str], float]:
    """Pointing accuracy per (source, kind, layer) with layer "0", "1", ... or "mean"; and per
    (source, kind, "blur S at L") for the blur settings at each kind's best layer."""
    hits: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    blurred: dict[tuple[str, str, int | None, float], list[bool]] = defaultdict(list)
    greedy = DecodingOptions(max_new_tokens=30)
    for scene in shapes.scene_stream(seed, count, num_shapes=2):
        caption = engine.caption(scene.image, model="caption-base", options=greedy, explain_tokens=True)
        matched = engine.match(scene.image, [scene.caption], model="itm-base-coco", explain_words=True)
        for source, maps in (("caption", caption.captions[0].heatmaps), ("itm", matched.rows[0].heatmaps)):
            layers: list[int | None] = [*range(maps.num_layers), None]
            for word, box in shape_maps(maps, scene):
                for kind in KINDS:
                    for layer in layers:
                        heat = maps.grid_map(word=word, layer=layer, kind=kind)
                        name = "mean" if layer is None else str(layer)
                        hits[(source, kind, name)].append(_points_at(heat, box, scene.image.size))
                        for sigma in BLURS[1:]:
                            smooth = blur_map(heat, sigma)
                            blurred[(source, kind, layer, sigma)].append(
                                _points_at(smooth, box, scene.image.size)
                            )
    figures = {key: float(np.mean(v)) for key, v in hits.items()}
    for source, kind in {(s, k) for s, k, _ in figures}:
        best = best_layer(figures, source, kind)
        for sigma in BLURS[1:]:
            key = (source, kind, None if best == "mean" else int(best), sigma)
            figures[(source, kind, f"blur {sigma:g} at {best}")] = float(np.mean(blurred[key]))
    figures[("count", "mentions", "caption")] = float(len(hits[("caption", "attention", "mean")]))
    figures[("count", "mentions", "itm")] = float(len(hits[("itm", "attention", "mean")]))
    return figures


def best_layer(figures: dict, source: str, kind: str) -> str:
    """The best-pointing layer ("0", "1", ... or "mean"); a tie goes to the mean (it hides no layer)."""
    layers = {
        name: v
        for (s, k, name), v in figures.items()
        if s == source and k == kind and not name.startswith("blur")
    }
    top = max(layers.values())
    return "mean" if layers.get("mean") == top else max(layers, key=layers.get)


def report(figures: dict) -> str:
    lines = []
    for source in ("caption", "itm"):
        for kind in KINDS:
            layers = sorted(
                (name, v)
                for (s, k, name), v in figures.items()
                if s == source and k == kind and not name.startswith("blur")
            )
            cells = "  ".join(f"{'layer ' + n if n != 'mean' else 'mean'} {v:6.1%}" for n, v in layers)
            blur = "  ".join(
                f"{name} {v:.1%}"
                for (s, k, name), v in figures.items()
                if s == source and k == kind and name.startswith("blur")
            )
            lines.append(
                f"{source:8s} {kind:9s}  {cells}  -> best {best_layer(figures, source, kind)}  ({blur})"
            )
    lines.append(
        f"shape words scored: caption {int(figures[('count', 'mentions', 'caption')])}, "
        f"ITM {int(figures[('count', 'mentions', 'itm')])}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="two-shape scenes")
    args = parser.parse_args()
    print(report(measure(Engine(device="cpu", demo="always"), args.count)))


if __name__ == "__main__":
    main()
