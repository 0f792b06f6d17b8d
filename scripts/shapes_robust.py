"""A robustness eval set for the demo models, drawn by a different generator from the training world.

    python scripts/shapes_robust.py --save /tmp/robust 24     # writes a few scenes to look at

The training world (scripts/shapes_world.py) draws PIL polygons over numpy backgrounds. This one shares
only the grammar (the captions, questions, the 3 x 3 layout and the size and colour words) and draws
everything its own way, so that its figures are not the training distribution again:

* shapes are rasterised from numpy signed-distance functions (coverage = the distance clipped to one
  pixel, or a hard threshold), outlines are a band of the distance, and "hand-drawn" shapes warp the
  plane with smooth noise instead of bending an outline;
* colours come from a fixed palette of web and paint colours for each name (crimson, forest green,
  royal blue, gold, ...), not from jittered HSV;
* backgrounds are vignettes, checkerboards, stripes and blurred colour blobs, and a third of the scenes
  are dark; canvases are larger (120 to 300 pixels).

Every scene holds one shape. A held-out seed of its own keeps it apart from everything trained on.
"""

from __future__ import annotations

import argparse
import colorsys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from shapes_world import (
    POSITIONS,
    SHAPES,
    SIZES,
    STAR_INNER_RATIO,
    Scene,
    ShapeSpec,
    scene_of,
)

ROBUST_SEED = 20261129
CANVAS = (120, 300)  # side range in pixels
ASPECT = (0.75, 1.35)
PALETTE = {
    "red": [(220, 20, 60), (178, 34, 34), (255, 0, 0), (230, 57, 41), (200, 16, 46), (255, 69, 58)],
    "green": [(34, 139, 34), (0, 128, 0), (50, 205, 50), (0, 158, 60), (46, 184, 46), (20, 110, 40)],
    "blue": [(0, 0, 255), (65, 105, 225), (30, 60, 200), (0, 71, 171), (51, 102, 255), (25, 25, 160)],
    "yellow": [(255, 215, 0), (255, 255, 0), (250, 218, 94), (255, 236, 25), (240, 228, 66), (255, 204, 0)],
}
STYLES = ("filled", "outlined", "outlined hand-drawn")
CONTRAST = 120.0  # RGB distance from the background under the shape


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def _blobs(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Blurred soft blobs of colours near ``base``, a little like an out-of-focus photo."""
    image = Image.new("RGB", (w, h), tuple(int(c) for c in base))
    pixels = np.asarray(image, dtype=np.float32).copy()
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(3, 7)):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.15, 0.5) * min(w, h)
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))[..., None]
        pixels += weight * rng.uniform(-60, 60, 3)
    blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
    return np.asarray(blurred, dtype=np.float32)


def backdrop(rng: np.random.Generator, w: int, h: int, dark: bool) -> tuple[np.ndarray, str]:
    """(H, W, 3) float32: a vignette, checkerboard, stripes or blobs, dark or of any brightness."""
    value = rng.uniform(0.02, 0.22) if dark else rng.uniform(0.25, 1.0)
    base = _hsv(rng.uniform(0, 1), rng.choice([rng.uniform(0, 0.15), rng.uniform(0.3, 0.9)]), value)
    kind = ("vignette", "checker", "stripes", "blobs")[rng.integers(4)]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "vignette":
        r = np.hypot((xs - w / 2) / w, (ys - h / 2) / h)
        pixels = base * (1 - rng.uniform(0.2, 0.6) * r[..., None])
    elif kind == "checker":
        cell = rng.integers(8, 24)
        board = ((xs // cell + ys // cell) % 2)[..., None]
        pixels = base + board * rng.uniform(8, 25) * np.sign(128 - base.mean())
    elif kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(10, 30)
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period)[..., None]
        pixels = base + wave * rng.uniform(6, 18)
    else:
        pixels = _blobs(rng, h, w, base)
    return np.clip(pixels, 0, 255).astype(np.float32), kind


def _polygon_sdf(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance to a closed polygon (negative inside), by the even-odd rule and the nearest edge."""
    distance = np.full(px.shape, np.inf, dtype=np.float32)
    inside = np.zeros(px.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        ex, ey = bx - ax, by - ay
        t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0, 1)
        distance = np.minimum(distance, np.hypot(px - ax - t * ex, py - ay - t * ey))
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (py - ay) * ex / (by - ay)
        inside ^= crosses & (px < x_at)
    return np.where(inside, -distance, distance)


def shape_sdf(kind: str, px: np.ndarray, py: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Signed distance (pixels) to a shape centred at the origin: ``radius`` is half its width unrotated."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = c * px + s * py, -s * px + c * py  # rotate the plane, not the shape
    if kind == "circle":
        return np.hypot(x, y) - radius
    if kind == "square":
        qx, qy = np.abs(x) - radius, np.abs(y) - radius
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    if kind == "triangle":
        a = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        r = 2 * radius / np.sqrt(3)
        vertices = np.stack([r * np.cos(a), r * np.sin(a) + r / 4], axis=1)
    elif kind == "star":
        a = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * STAR_INNER_RATIO)
        vertices = np.stack([r * np.cos(a), r * np.sin(a) + radius * 0.1], axis=1)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return _polygon_sdf(x, y, vertices)


def _warp(rng: np.random.Generator, h: int, w: int, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field (pixels), for shapes that look drawn by hand."""
    fields = []
    for _ in range(2):
        coarse = rng.uniform(-1, 1, (12, 12)).astype(np.float32)
        smooth = Image.fromarray(coarse, "F").resize((w, h), Image.Resampling.BICUBIC)
        fields.append(np.asarray(smooth) * amount)
    return fields[0], fields[1]


def _visible(rgb: np.ndarray, under: np.ndarray) -> bool:
    """Would a person see the shape and name its colour? Far from the background in RGB, bright or dark
    enough against it unless very far in colour, and not on a strongly coloured ground of its own hue."""
    distance = float(np.linalg.norm(rgb - under))
    luma = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    if distance < CONTRAST or (abs(float((rgb - under) @ luma)) < 30 and distance < 170):
        return False
    h1, _, _ = colorsys.rgb_to_hsv(*(rgb / 255))
    h2, s2, v2 = colorsys.rgb_to_hsv(*(under / 255))
    return not (s2 > 0.35 and v2 > 0.25 and min(abs(h1 - h2), 1 - abs(h1 - h2)) * 360 < 30)


def _robust_scene(rng: np.random.Generator) -> Scene | None:
    side = rng.uniform(*CANVAS)
    aspect = rng.uniform(*ASPECT)
    w, h = int(side * np.sqrt(aspect)), int(side / np.sqrt(aspect))
    dark = rng.random() < 1 / 3
    pixels, kind_of_background = backdrop(rng, w, h, dark)
    kind, size = SHAPES[rng.integers(4)], list(SIZES)[rng.integers(2)]
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    style = STYLES[rng.integers(len(STYLES))]
    extent = rng.uniform(*SIZES[size]) * np.sqrt(w * h)
    column, row = POSITIONS[position]
    cx = (column + 0.5 + rng.uniform(-0.25, 0.25)) * w / 3
    cy = (row + 0.5 + rng.uniform(-0.25, 0.25)) * h / 3
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = xs + 0.5 - cx, ys + 0.5 - cy
    if style.endswith("hand-drawn"):
        dx, dy = _warp(rng, h, w, extent * 0.08)
        px, py = px + dx, py + dy
    angle = 0.0 if kind == "circle" else rng.uniform(0, 2 * np.pi)
    sdf = shape_sdf(kind, px, py, extent / 2, angle)
    if style != "filled":
        sdf = np.abs(sdf) - max(1.5, extent * rng.uniform(0.05, 0.09))
    crisp = rng.random() < 0.5
    coverage = (sdf <= 0).astype(np.float32) if crisp else np.clip(0.5 - sdf, 0, 1)
    ys_in, xs_in = np.nonzero(coverage > 0.5)
    if len(xs_in) == 0:
        return None
    box = (int(xs_in.min()), int(ys_in.min()), int(xs_in.max()) + 1, int(ys_in.max()) + 1)
    # Reject draws that leave the canvas, or whose box centre left the cell the caption will name.
    if box[0] < 2 or box[1] < 2 or box[2] > w - 2 or box[3] > h - 2:
        return None
    if (min(int(3 * (box[0] + box[2]) / 2 / w), 2), min(int(3 * (box[1] + box[3]) / 2 / h), 2)) != (
        column,
        row,
    ):
        return None
    colour = ("red", "green", "blue", "yellow")[rng.integers(4)]
    rgb = np.array(PALETTE[colour][rng.integers(len(PALETTE[colour]))], dtype=np.float32)
    under = pixels[box[1] : box[3], box[0] : box[2]].reshape(-1, 3).mean(axis=0)
    if not _visible(rgb, under):
        return None
    pixels = pixels * (1 - coverage[..., None]) + rgb * coverage[..., None]
    shapes = [ShapeSpec(kind, colour, size, position, box, style)]
    return scene_of(pixels, shapes, kind_of_background, dark=dark)


def robust_stream(seed: int = ROBUST_SEED, count: int = 200) -> Iterator[Scene]:
    """``count`` one-shape robustness scenes; rejected draws are drawn again from the same stream."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        scene = _robust_scene(rng)
        if scene is not None:
            made += 1
            yield scene


def main() -> None:
    parser = argparse.ArgumentParser(description="Write robustness scenes as PNG files, to look at.")
    parser.add_argument("--save", type=Path, required=True)
    parser.add_argument("count", type=int, nargs="?", default=24)
    args = parser.parse_args()
    args.save.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(robust_stream(count=args.count)):
        scene.image.save(args.save / f"{i:03d}.png")
        print(f"{i:03d}.png  {scene.caption}  ({scene.shapes[0].style}, {scene.background})")


if __name__ == "__main__":
    main()
