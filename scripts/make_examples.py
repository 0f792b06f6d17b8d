"""Write the shapes example images the app offers for the offline demo model (assets/examples/shapes/).

    python scripts/make_examples.py

Scenes come from scripts/shapes_world.py with a fixed seed, at the demo model's own size (96 x 96); each file is
named after its caption.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shapes_world as shapes  # noqa: E402

OUT = ROOT / "assets" / "examples" / "shapes"
SEED = 18  # fixed so the files never change; chosen to show every shape and colour
LAYOUT = (1, 2, 1, 2, 2, 1)  # shapes per example


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    for n, count in enumerate(LAYOUT):
        scene = shapes.make_scene(rng, count)
        name = scene.caption.replace(" and ", "_").replace(" ", "-")
        scene.image.save(OUT / f"{n + 1}_{name}.png")
        print(scene.caption)


if __name__ == "__main__":
    main()
