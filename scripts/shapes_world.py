"""A seeded synthetic "shapes world": scenes of coloured shapes with captions, questions and hard
negatives, for training a tiny BLIP demo model and evaluating what it learned.

Each scene holds one or two shapes (circle, square, triangle, star) in one of four named colours and two
sizes, placed in one cell of a 3 x 3 layout. The world is domain-randomised so that the demo models see
shapes the way a class draws them:

* canvases of many sizes and aspect ratios (the model sees them through the engine's square resize);
* backgrounds of any colour (dark, light, saturated): plain, gradient, noisy, paper-like, tiled, striped
  or lit from a point;
* shape sizes on a continuum, the size word decided by the shape's extent relative to the canvas;
* centres jittered inside their cell, the position word decided by the cell the centre is in;
* filled or outlined shapes, crisp (aliased) or anti-aliased, neat or hand-drawn (wobbly outlines, as
  a mouse draws on a sketchpad); squares, triangles and stars at any rotation;
* colours jittered around each named colour, kept only where a person would agree on the name and
  could tell the shape from its background (ambiguous draws are rejected and drawn again).

The texts come from a small grammar whose every word is a whole token of BLIP's bert-base vocabulary:

    caption    "a small red circle at the top left and a large blue star on the right"
    questions  "what colour is the circle?" -> "red", "how many shapes are there?" -> "2", ...
    negatives  the caption with one attribute of one shape changed ("... a large green star ..."),
               for contrastive (image-text matching) training and evaluation

Each shape's bounding box (in canvas pixels) is recorded for the pointing game. A seed fixes everything.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 96  # the demo models' input side; canvases are resized to it by the normal preprocessing
CANVAS_SIDE = (64, 176)  # range of the canvas's geometric-mean side, in pixels
ASPECT = (0.7, 1.45)  # range of width / height
NUM_SHAPES = (1, 2)
SHAPES = ("circle", "square", "triangle", "star")
# Named colours: (hue in degrees, hue jitter, saturation range, value range). The ranges keep each draw
# one that a person would call by that name (no pink "red", no olive "yellow", no teal "green").
COLOUR_FAMILIES = {
    "red": (0.0, 10.0, (0.65, 1.0), (0.6, 1.0)),
    "green": (125.0, 18.0, (0.55, 1.0), (0.45, 0.95)),
    "blue": (222.0, 14.0, (0.6, 1.0), (0.55, 1.0)),
    "yellow": (53.0, 6.0, (0.7, 1.0), (0.85, 1.0)),
}
COLOURS = {"red": (210, 45, 45), "green": (45, 165, 70), "blue": (45, 90, 215), "yellow": (235, 200, 35)}
# Shape extent (its longer box side before rotation) over the canvas's geometric-mean side. The gap
# between the two ranges is the ambiguous band the world never draws.
SIZES = {"small": (0.13, 0.2), "large": (0.27, 0.37)}
# 3 x 3 layout, in reading order (the caption's canonical order): (column, row) of each cell.
POSITIONS = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "centre": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}
CELL_JITTER = 0.3  # centre offset from its cell's centre, as a fraction of the cell, each axis
MARGIN = 2  # pixels between a shape and the canvas edge, and between two shapes' boxes
MIN_CONTRAST = 110.0  # RGB distance between a shape's colour and the background under it
STAR_INNER_RATIO = 0.45
BACKGROUNDS = ("plain", "gradient", "noise", "paper", "tiles", "waves", "radial")
SUPERSAMPLE = 4  # anti-aliased shapes are drawn this many times larger, then averaged down

# Curriculum stages, easiest first: neat (filled, upright, smooth-edged) shapes on a plain light ground,
# neat shapes on any ground, then the whole world. Evaluation always draws the whole world.
NEAT_ON_PLAIN, NEAT, FULL = 0, 1, 2

COLOUR_QUESTION = "what colour is the {kind}?"
SIZE_QUESTION = "what size is the {kind}?"
SHAPE_QUESTION = "what shape is {phrase}?"
COUNT_QUESTION = "how many shapes are there?"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of a scene.

    ``box`` is (x0, y0, x1, y1) in canvas pixels, as PIL's ``getbbox`` gives it: x1 and y1 are one past
    the last pixel. ``style`` says how it was drawn ("filled" or "outlined"; "hand-drawn" when wobbly).
    """

    kind: str  # one of SHAPES
    colour: str  # a key of COLOURS
    size: str  # a key of SIZES
    position: str  # a key of POSITIONS
    box: Box
    style: str = "filled"


@dataclass(frozen=True)
class Scene:
    """An image with its shapes (in caption order) and texts.

    ``questions`` maps a question type ("colour", "shape", "size", "count") to (question, answer) pairs.
    ``background`` names its kind and ``dark`` says whether its mean brightness is below a third of full
    scale.
    """

    image: Image.Image
    shapes: list[ShapeSpec]
    caption: str
    questions: dict[str, list[tuple[str, str]]]
    background: str = "plain"
    dark: bool = False
    coverage: np.ndarray | None = None  # (H, W) float32 in [0, 1]: how much of each pixel is shape

    @cached_property
    def negatives(self) -> list[str]:
        """Every hard negative caption (``negatives_for``), in a fixed order. Computed when first asked
        for: only the matcher and its eval use them, and they cost a tenth of drawing a scene."""
        return negatives_for(self.shapes)


def scene_of(
    pixels: np.ndarray,
    shapes: list[ShapeSpec],
    background: str,
    coverage: np.ndarray | None = None,
    dark: bool | None = None,
) -> Scene:
    """A Scene of float (H, W, 3) pixels and its shapes, with the texts the grammar gives them; ``dark``
    defaults to the image's mean brightness being below a third of full scale."""
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
    return Scene(
        image=image,
        shapes=shapes,
        caption=caption_for(shapes),
        questions=questions_for(shapes),
        background=background,
        dark=bool(np.asarray(image).mean() < 85) if dark is None else dark,
        coverage=coverage,
    )


def canonical_order(shapes: Iterable[ShapeSpec]) -> list[ShapeSpec]:
    """The shapes sorted by position in reading order: the order the caption names them."""
    order = list(POSITIONS)
    return sorted(shapes, key=lambda s: order.index(s.position))


def _check_layout(shapes: list[ShapeSpec]) -> None:
    positions = [s.position for s in shapes]
    if len(shapes) in NUM_SHAPES and len(set(positions)) == len(shapes) and set(positions) <= set(POSITIONS):
        return
    raise ValueError(f"not a valid layout: {positions} (one or two shapes, in distinct cells)")


def caption_for(shapes: Iterable[ShapeSpec]) -> str:
    """The caption of a scene with these shapes, in canonical position order, whatever order they come in.

    Raises:
        ValueError: if the layout is not one the world can produce.
    """
    shapes = list(shapes)
    _check_layout(shapes)
    return " and ".join(
        f"a {s.size} {s.colour} {s.kind} {POSITION_PHRASES[s.position]}" for s in canonical_order(shapes)
    )


def questions_for(shapes: list[ShapeSpec]) -> dict[str, list[tuple[str, str]]]:
    """VQA pairs. Colour and size questions name a shape by its kind, so they are asked only of a kind
    that occurs once in the scene; otherwise "the circle" would be ambiguous."""
    kinds = [s.kind for s in shapes]
    unique = [s for s in shapes if kinds.count(s.kind) == 1]
    return {
        "colour": [(COLOUR_QUESTION.format(kind=s.kind), s.colour) for s in unique],
        "shape": [(SHAPE_QUESTION.format(phrase=POSITION_PHRASES[s.position]), s.kind) for s in shapes],
        "size": [(SIZE_QUESTION.format(kind=s.kind), s.size) for s in unique],
        "count": [(COUNT_QUESTION, str(len(shapes)))],
    }


def negatives_for(shapes: list[ShapeSpec]) -> list[str]:
    """Captions of other valid scenes that differ from this one in exactly one attribute of one shape,
    plus, for two shapes, the positions swapped (a different caption, thanks to the canonical order)."""
    true_caption = caption_for(shapes)
    used = {s.position for s in shapes}
    variants: list[list[ShapeSpec]] = []
    for i, shape in enumerate(shapes):
        changes = [
            *({"colour": c} for c in COLOURS if c != shape.colour),
            *({"kind": k} for k in SHAPES if k != shape.kind),
            *({"size": z} for z in SIZES if z != shape.size),
            *({"position": p} for p in POSITIONS if p not in used),
        ]
        for change in changes:
            variants.append([*shapes[:i], replace(shape, **change), *shapes[i + 1 :]])
    if len(shapes) == 2:
        first, second = shapes
        variants.append([replace(first, position=second.position), replace(second, position=first.position)])
    captions = (caption_for(v) for v in variants)
    # Swapping two identically described shapes gives the true caption back; drop it (and any repeat).
    return list(dict.fromkeys(c for c in captions if c != true_caption))


def outline(kind: str, extent: float, angle: float) -> np.ndarray:
    """(N, 2) closed outline of a shape ``extent`` across (before rotation), centred on its box centre,
    rotated by ``angle`` radians, densely sampled so that a wobble can bend every side."""
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        corners = np.stack([np.cos(t), np.sin(t)], axis=1) * extent / 2
    else:
        if kind == "square":
            a = np.pi / 4 + np.arange(4) * np.pi / 2
            radii = np.full(4, extent / 2 * np.sqrt(2))
        elif kind == "triangle":  # equilateral, point up
            a = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
            radii = np.full(3, extent / np.sqrt(3))
        elif kind == "star":
            a = -np.pi / 2 + np.arange(10) * np.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, extent / 2, extent / 2 * STAR_INNER_RATIO)
        else:
            raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")
        corners = np.stack([radii * np.cos(a), radii * np.sin(a)], axis=1)
        ends = np.roll(corners, -1, axis=0)
        steps = np.linspace(0, 1, 8, endpoint=False)[None, :, None]
        corners = (corners[:, None] + (ends - corners)[:, None] * steps).reshape(-1, 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = corners @ rotation.T
    return points - (points.min(axis=0) + points.max(axis=0)) / 2  # box centre at the origin


def wobble(points: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Bend an outline like a hand on a mouse: slow waves along it plus a little tremor."""
    n = len(points)
    t = np.arange(n) / n * 2 * np.pi
    offset = np.zeros((n, 2))
    for frequency in (2, 3, 5):
        phase = rng.uniform(0, 2 * np.pi, 2)
        offset += np.stack([np.sin(frequency * t + phase[0]), np.cos(frequency * t + phase[1])], axis=1)
    offset = offset / 3 * amount + rng.normal(0, amount * 0.15, (n, 2))
    return points + offset


def _mask(points: np.ndarray, size: tuple[int, int], stroke: float | None, smooth: bool) -> Image.Image:
    """An "L" mask of the polygon ``points`` (canvas pixels): filled, or stroked ``stroke`` pixels wide."""
    scale = SUPERSAMPLE if smooth else 1
    mask = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw = ImageDraw.Draw(mask)
    # Pixel centres sit at +0.5; PIL's polygon fills by pixel index, so shift to match either scale.
    xy = [(float(x), float(y)) for x, y in (points * scale + (scale - 1) / 2)]
    if stroke is None:
        draw.polygon(xy, fill=255)
    else:
        draw.line([*xy, xy[0], xy[1]], fill=255, width=max(1, round(stroke * scale)), joint="curve")
    return mask.reduce(scale) if smooth else mask


def _hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255


def shape_rgb(colour: str, rng: np.random.Generator) -> np.ndarray:
    """A colour a person would call ``colour``: jittered in hue, saturation and value."""
    hue, jitter, sat, val = COLOUR_FAMILIES[colour]
    h = (hue + rng.uniform(-jitter, jitter)) / 360
    return _hsv_rgb(h, rng.uniform(*sat), rng.uniform(*val))


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """(H, W) smooth noise in about [-1, 1]: a coarse random grid, resized bicubically."""
    coarse = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    smooth = Image.fromarray(coarse, "L").resize(size, Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) / 127.5 - 1


def background(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """(H, W, 3) float32 background of any colour and one of BACKGROUNDS, and its kind."""
    width, height = size
    tone = rng.integers(3)  # dark, light or free brightness; grey-ish, mid or saturated colour
    v = rng.uniform(0.03, 0.3) if tone == 0 else rng.uniform(0.75, 1.0) if tone == 1 else rng.uniform(0, 1)
    s = (rng.uniform(0, 0.12), rng.uniform(0.12, 0.5), rng.uniform(0.5, 1.0))[rng.integers(3)]
    base = _hsv_rgb(rng.uniform(0, 1), s, v).astype(np.float32)
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    pixels = np.broadcast_to(base, (height, width, 3)).copy()
    if kind == "gradient":
        other = np.clip(base + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs / width * np.cos(angle) + ys / height * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        pixels += ramp[..., None] * (other - base)
    elif kind == "noise":
        pixels += rng.standard_normal((height, width, 3), dtype=np.float32) * rng.uniform(6, 22)
    elif kind == "paper":  # blotchy fibres, fine grain and, sometimes, faint ruled lines
        pixels += _smooth_noise(rng, size, int(rng.integers(4, 10)))[..., None] * rng.uniform(6, 16)
        pixels += rng.standard_normal((height, width, 1), dtype=np.float32) * 4
        if rng.random() < 0.5:
            spacing = int(rng.integers(10, 20))
            line = np.where(base.mean() > 128, -40.0, 40.0)
            pixels[int(rng.integers(spacing)) :: spacing] += np.array([line, line, line * 0.3], np.float32)
    elif kind == "tiles":  # a repeating board, as on squared paper or a tiled floor, at any offset
        ys, xs = np.mgrid[0:height, 0:width]
        tile = int(rng.integers(6, 26))
        dx, dy = rng.integers(tile, size=2)
        parity = ((xs + dx) // tile + (ys + dy) // tile) % 2
        pixels += parity[..., None].astype(np.float32) * rng.uniform(-28, 28, 3).astype(np.float32)
    elif kind == "waves":  # soft stripes at any angle and period
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, 34)
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period + rng.uniform(0, 1)
        triangle = np.abs(2 * (phase - np.floor(phase)) - 1) * 2 - 1  # a triangle wave in [-1, 1]
        pixels += triangle[..., None] * rng.uniform(5, 20, 3).astype(np.float32)
    elif kind == "radial":  # light falling off from a point, as from a lamp or a vignetting lens
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        distance = np.hypot(xs - cx, ys - cy) / np.hypot(width, height)
        pixels *= 1 - rng.uniform(0.2, 0.7) * distance[..., None]
        pixels += rng.uniform(-15, 15)
    else:
        pixels += rng.standard_normal((height, width, 3), dtype=np.float32) * 2
    return np.clip(pixels, 0, 255), kind


def _canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    side = rng.uniform(*CANVAS_SIDE)
    aspect = np.exp(rng.uniform(np.log(ASPECT[0]), np.log(ASPECT[1])))
    return round(side * np.sqrt(aspect)), round(side / np.sqrt(aspect))


def _place(
    rng: np.random.Generator,
    kind: str,
    size: str,
    position: str,
    canvas: tuple[int, int],
    upright: bool = False,
) -> tuple[np.ndarray, float]:
    """A shape's outline in canvas pixels, jittered in its cell and kept inside the canvas, and its extent."""
    width, height = canvas
    extent = rng.uniform(*SIZES[size]) * np.sqrt(width * height)
    angle = rng.uniform(0, 2 * np.pi)
    angle = 0.0 if kind == "circle" or upright else angle
    points = outline(kind, extent, angle)
    column, row = POSITIONS[position]
    jitter = rng.uniform(-CELL_JITTER, CELL_JITTER, 2)
    centre = np.array([(column + 0.5 + jitter[0]) * width / 3, (row + 0.5 + jitter[1]) * height / 3])
    half = (points.max(axis=0) - points.min(axis=0)) / 2 + MARGIN + extent * 0.08
    centre = np.clip(centre, half, np.array([width, height]) - half)
    return points + centre, extent


def _stands_out(rgb: np.ndarray, under: np.ndarray) -> bool:
    """Far enough from the background in RGB, and not on a strongly coloured ground of its own hue
    (a blue star on a saturated blue field is hard to see and hard to name)."""
    if np.linalg.norm(rgb - under) < MIN_CONTRAST:
        return False
    h1, _, _ = colorsys.rgb_to_hsv(*(rgb / 255))
    h2, s2, v2 = colorsys.rgb_to_hsv(*(under / 255))
    hue_gap = min(abs(h1 - h2), 1 - abs(h1 - h2)) * 360
    return not (s2 > 0.35 and v2 > 0.25 and hue_gap < 35)


def _cell_of(x: float, y: float, canvas: tuple[int, int]) -> str:
    column, row = min(int(3 * x / canvas[0]), 2), min(int(3 * y / canvas[1]), 2)
    return next(name for name, cell in POSITIONS.items() if cell == (column, row))


def _apart(a: Box, b: Box) -> bool:
    return a[2] + MARGIN <= b[0] or b[2] + MARGIN <= a[0] or a[3] + MARGIN <= b[1] or b[3] + MARGIN <= a[1]


def _draw_shape(rng, kind, size, position, canvas, taken: list[Box], neat: bool = False):
    """Try to draw one shape; None when the draw must be rejected (off its cell, or touching another)."""
    points, extent = _place(rng, kind, size, position, canvas, upright=neat)
    style = "outlined" if rng.random() < 0.4 and not neat else "filled"
    hand = rng.random() < 0.5 and not neat
    if hand:
        points = wobble(points, extent * rng.uniform(0.02, 0.1), rng)
    # Strokes from a fine pen (about a pixel) to a fat marker.
    stroke = max(1.0, extent * rng.uniform(0.04, 0.18)) if style == "outlined" else None
    mask = _mask(points, canvas, stroke, smooth=rng.random() < 0.5)
    box = mask.getbbox()
    if box is None or _cell_of((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, canvas) != position:
        return None
    if box[0] < 1 or box[1] < 1 or box[2] > canvas[0] - 1 or box[3] > canvas[1] - 1:
        return None
    if not all(_apart(box, other) for other in taken):
        return None
    return mask, box, style + (" hand-drawn" if hand else "")


def make_scene(rng: np.random.Generator, num_shapes: int | None = None, stage: int = FULL) -> Scene:
    """Draw one random scene.

    Args:
        rng: the random source; the scene depends on nothing else.
        num_shapes: 1 or 2; None picks one of them with equal probability.
        stage: NEAT_ON_PLAIN, NEAT or FULL (the default): how much of the world's variety to draw.
    """
    if num_shapes is None:
        num_shapes = NUM_SHAPES[rng.integers(len(NUM_SHAPES))]
    if num_shapes not in NUM_SHAPES:
        raise ValueError(f"num_shapes must be 1, 2 or None, got {num_shapes}")
    canvas = _canvas_size(rng)
    pixels, kind_of_background = background(rng, canvas)
    if stage == NEAT_ON_PLAIN:
        pixels, kind_of_background = np.full_like(pixels, 225.0), "plain"
    while True:  # rejection sampling: a few tries at most, in practice
        positions = [list(POSITIONS)[i] for i in rng.choice(len(POSITIONS), size=num_shapes, replace=False)]
        shapes, masks = [], []
        for position in sorted(positions, key=list(POSITIONS).index):
            kind, size = SHAPES[rng.integers(len(SHAPES))], list(SIZES)[rng.integers(len(SIZES))]
            drawn = _draw_shape(rng, kind, size, position, canvas, [s.box for s in shapes], stage < FULL)
            if drawn is None:
                break
            mask, box, style = drawn
            under = pixels[box[1] : box[3], box[0] : box[2]].reshape(-1, 3).mean(axis=0)
            for _ in range(30):  # a named colour that stands out from the background under the shape
                colour = list(COLOURS)[rng.integers(len(COLOURS))]
                rgb = shape_rgb(colour, rng)
                if _stands_out(rgb, under):
                    break
            else:
                break
            shapes.append(ShapeSpec(kind, colour, size, position, box, style))
            masks.append((mask, rgb))
        if len(shapes) == num_shapes:
            break
    pixels, coverage = paint(pixels, masks)
    return scene_of(pixels, shapes, kind_of_background, coverage)


def paint(pixels: np.ndarray, masks: list[tuple[Image.Image, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Shapes laid over a float (H, W, 3) ground, each an "L" mask with its RGB colour, in order; also
    returns the (H, W) coverage map (how much of each pixel is shape)."""
    coverage = np.zeros(pixels.shape[:2], np.float32)
    for mask, rgb in masks:
        alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
        coverage = np.maximum(coverage, alpha[..., 0])
        pixels = pixels * (1 - alpha) + rgb.astype(np.float32) * alpha
    return pixels, coverage


def scene_stream(seed: int, count: int, num_shapes: int | None = None) -> Iterator[Scene]:
    """``count`` scenes from one seed; the same arguments always give the same scenes.

    Args:
        seed: seeds a fresh ``np.random.default_rng``.
        count: how many scenes to yield.
        num_shapes: 1 or 2 for every scene; None picks per scene.
    """
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield make_scene(rng, num_shapes)


def shape_mentions(scene: Scene) -> list[tuple[str, Box]]:
    """For each shape, its shape word and box, in caption order (for the pointing game)."""
    return [(s.kind, s.box) for s in canonical_order(scene.shapes)]


def _words(text: str) -> list[str]:
    """Split a text the way BERT's basic tokenizer does for our grammar: on spaces, with "?" apart."""
    return text.replace("?", " ?").split()


def all_words() -> set[str]:
    """Every word the grammar can produce, in captions, questions, answers and negatives."""
    texts = [
        "a",
        "and",
        COUNT_QUESTION,
        *(str(n) for n in NUM_SHAPES),
        *SHAPES,
        *COLOURS,
        *SIZES,
        *POSITION_PHRASES.values(),
    ]
    for kind in SHAPES:
        texts += [COLOUR_QUESTION.format(kind=kind), SIZE_QUESTION.format(kind=kind)]
    texts += [SHAPE_QUESTION.format(phrase=phrase) for phrase in POSITION_PHRASES.values()]
    return {word for text in texts for word in _words(text)}
