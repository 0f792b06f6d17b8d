"""Write the shapes example images the app offers for the offline demo model (assets/examples/shapes/).

    python scripts/make_examples.py

Six fixed scenes, drawn with scripts/shapes_world.py's own shapes the way its first curriculum stage
draws them (filled, upright, smooth-edged, in the named colours, on a plain light ground) at the demo
model's own size (96 x 96), so that every size word is one the world uses without doubt. Each file is
named after its caption; the seed is fixed, so the files never change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shapes_world as shapes  # noqa: E402

OUT = ROOT / "assets" / "examples" / "shapes"
SEED = 18
GROUND = 225.0  # the light grey of the world's first curriculum stage
# (size, colour, kind, place) of each shape of each example: every shape and colour, one and two shapes.
EXAMPLES = (
    (("small", "red", "circle", "centre"),),
    (("large", "blue", "circle", "top"), ("small", "green", "triangle", "bottom")),
    (("small", "red", "circle", "top"),),
    (("large", "blue", "triangle", "left"), ("small", "yellow", "square", "top")),
    (("large", "blue", "square", "left"), ("large", "green", "triangle", "bottom")),
    (("large", "yellow", "star", "centre"),),
)


def draw_example(rng: np.random.Generator, specs) -> shapes.Scene:
    """A neat scene of exactly these shapes (drawn again until every shape lands in its own cell)."""
    canvas = (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
    while True:
        placed, masks = [], []
        for size, colour, kind, position in specs:
            drawn = shapes._draw_shape(rng, kind, size, position, canvas, [s.box for s in placed], neat=True)
            if drawn is None:
                break
            mask, box, style = drawn
            placed.append(shapes.ShapeSpec(kind, colour, size, position, box, style))
            masks.append((mask, np.array(shapes.COLOURS[colour], np.float32)))
        if len(placed) == len(specs):
            break
    pixels, coverage = shapes.paint(np.full((*canvas[::-1], 3), GROUND, np.float32), masks)
    return shapes.scene_of(pixels, placed, "plain", coverage)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    for n, specs in enumerate(EXAMPLES):
        scene = draw_example(rng, specs)
        name = scene.caption.replace(" and ", "_").replace(" ", "-")
        scene.image.save(OUT / f"{n + 1}_{name}.png")
        print(scene.caption)


if __name__ == "__main__":
    main()
