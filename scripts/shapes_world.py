"""A seeded synthetic "shapes world": small scenes of coloured shapes with captions, questions and
hard negatives, for training a tiny BLIP demo model and evaluating what it learned.

Each scene is a 96 x 96 RGB image holding one or two shapes (circle, square, triangle, star) in one of
four colours and two sizes, placed at a named position. The texts come from a small grammar whose every
word is a whole token of the bert-base-uncased vocabulary BLIP uses:

    caption    "a small red circle on the left and a large blue star on the right"
    questions  "what colour is the circle?" -> "red", "how many shapes are there?" -> "2", ...
    negatives  the caption with one attribute of one shape changed ("... a large green star ..."),
               for contrastive (image-text matching) training and evaluation

Each shape's bounding box is recorded, so attention or Grad-CAM maps can be scored with the "pointing
game": does the map for the word "star" peak inside the star's box? A seed fixes everything: the same
seed gives byte-identical images and identical texts.

Geometry. With the canvas at 96 px, the four side positions form a cross, so a left shape and a top
shape sit only ~31 px apart along each axis. Their boxes stay apart only while
``max size + 2 * position jitter < that distance``, which is why the positions sit near the edges and the
large size is 24 px across (the worst case leaves a gap of one pixel; ``tests/test_shapes.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 96
NUM_SHAPES = (1, 2)
SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (210, 45, 45), "green": (45, 165, 70), "blue": (45, 90, 215), "yellow": (235, 200, 35)}
SIZES = {"small": 15, "large": 24}  # pixels across, before jitter
# Shape centres before jitter, in canonical caption order. Centre is only used when a scene has one shape.
POSITIONS = {"left": (17, 48), "right": (79, 48), "top": (48, 17), "bottom": (48, 79), "centre": (48, 48)}
SIDE_POSITIONS = ("left", "right", "top", "bottom")
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}

SIZE_JITTER = 2  # +- pixels on the size
POSITION_JITTER = 2  # +- pixels on each coordinate of the centre
COLOUR_JITTER = 15  # +- per RGB channel, drawn per shape
BACKGROUND = 235  # light grey
BACKGROUND_TINT = 8  # +- per channel, drawn per scene
BACKGROUND_NOISE = 6.0  # standard deviation of the per-pixel Gaussian noise
STAR_INNER_RATIO = 0.45  # inner / outer radius; a little fatter than a regular star, to read at 13 px

COLOUR_QUESTION = "what colour is the {kind}?"
SIZE_QUESTION = "what size is the {kind}?"
SHAPE_QUESTION = "what shape is {phrase}?"
COUNT_QUESTION = "how many shapes are there?"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of a scene.

    ``box`` is (x0, y0, x1, y1) in pixels, as PIL's ``getbbox`` gives it: x1 and y1 are one past the last
    pixel, so ``np.asarray(image)[y0:y1, x0:x1]`` crops exactly the shape's painted pixels.
    """

    kind: str  # one of SHAPES
    colour: str  # a key of COLOURS
    size: str  # a key of SIZES
    position: str  # a key of POSITIONS
    box: Box


@dataclass(frozen=True)
class Scene:
    """An image with its shapes (in caption order) and texts.

    ``questions`` maps a question type ("colour", "shape", "size", "count") to (question, answer) pairs.
    ``negatives`` lists every hard negative caption, in a fixed order; sample from it as needed.
    """

    image: Image.Image
    shapes: list[ShapeSpec]
    caption: str
    questions: dict[str, list[tuple[str, str]]]
    negatives: list[str]


def canonical_order(shapes: Iterable[ShapeSpec]) -> list[ShapeSpec]:
    """The shapes sorted by position, left, right, top, bottom, centre: the order the caption names them."""
    order = list(POSITIONS)
    return sorted(shapes, key=lambda s: order.index(s.position))


def _check_layout(shapes: list[ShapeSpec]) -> None:
    positions = [s.position for s in shapes]
    if len(shapes) == 1 and positions[0] in POSITIONS:
        return
    if len(shapes) == 2 and len(set(positions)) == 2 and set(positions) <= set(SIDE_POSITIONS):
        return
    raise ValueError(f"not a valid layout: {positions} (one shape anywhere, or two at distinct sides)")


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


def _questions(shapes: list[ShapeSpec]) -> dict[str, list[tuple[str, str]]]:
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


def _negatives(shapes: list[ShapeSpec]) -> list[str]:
    """Captions of other valid scenes that differ from this one in exactly one attribute of one shape,
    plus, for two shapes, the positions swapped (a different caption, thanks to the canonical order)."""
    true_caption = caption_for(shapes)
    used = {s.position for s in shapes}
    variants: list[list[ShapeSpec]] = []
    for i, shape in enumerate(shapes):
        if len(shapes) == 1:
            free_positions = [p for p in POSITIONS if p != shape.position]
        else:  # the other shape keeps its position, and centre would overlap it
            free_positions = [p for p in SIDE_POSITIONS if p not in used]
        changes = [
            *({"colour": c} for c in COLOURS if c != shape.colour),
            *({"kind": k} for k in SHAPES if k != shape.kind),
            *({"size": z} for z in SIZES if z != shape.size),
            *({"position": p} for p in free_positions),
        ]
        for change in changes:
            variants.append([*shapes[:i], replace(shape, **change), *shapes[i + 1 :]])
    if len(shapes) == 2:
        first, second = shapes
        variants.append([replace(first, position=second.position), replace(second, position=first.position)])
    captions = (caption_for(v) for v in variants)
    # Swapping two identically described shapes gives the true caption back; drop it (and any repeat).
    return list(dict.fromkeys(c for c in captions if c != true_caption))


def _shape_mask(kind: str, centre: tuple[int, int], size: int) -> Image.Image:
    """A black "L" image with the shape painted white: ``size`` pixels across, centred on ``centre``."""
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0 = centre[0] - size // 2, centre[1] - size // 2
    x1, y1 = x0 + size - 1, y0 + size - 1  # PIL's rectangle and ellipse include the far corner
    if kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif kind == "triangle":  # point up; as wide as it is tall
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    elif kind == "star":
        outer = (size - 1) / 2
        cx = (x0 + x1) / 2
        # A star's lowest points sit at outer * cos(36 deg) below its centre, its top point at ``outer``
        # above: shift it down by half the difference so its box is centred like the other shapes.
        cy = (y0 + y1) / 2 + outer * (1 - np.cos(np.pi / 5)) / 2
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5  # ten corners, first one pointing up
        radii = np.where(np.arange(10) % 2 == 0, outer, outer * STAR_INNER_RATIO)
        points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")
    return mask


def _background(rng: np.random.Generator) -> Image.Image:
    """Light grey with a subtle per-scene tint and per-pixel Gaussian noise."""
    tint = rng.integers(-BACKGROUND_TINT, BACKGROUND_TINT + 1, size=3)
    # float32 and in-place arithmetic: this is most of the time it takes to make a scene.
    pixels = rng.standard_normal((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    pixels *= BACKGROUND_NOISE
    pixels += (BACKGROUND + tint).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8), "RGB")


def make_scene(rng: np.random.Generator, num_shapes: int | None = None) -> Scene:
    """Draw one random scene.

    Args:
        rng: the random source; the scene depends on nothing else.
        num_shapes: 1 or 2; None picks one of them with equal probability.
    """
    if num_shapes is None:
        num_shapes = NUM_SHAPES[rng.integers(len(NUM_SHAPES))]
    if num_shapes == 1:
        positions = [list(POSITIONS)[rng.integers(len(POSITIONS))]]
    elif num_shapes == 2:
        positions = [SIDE_POSITIONS[i] for i in rng.choice(len(SIDE_POSITIONS), size=2, replace=False)]
    else:
        raise ValueError(f"num_shapes must be 1, 2 or None, got {num_shapes}")

    image = _background(rng)
    shapes = []
    for position in sorted(positions, key=list(POSITIONS).index):
        kind = SHAPES[rng.integers(len(SHAPES))]
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        size = list(SIZES)[rng.integers(len(SIZES))]
        pixels_across = SIZES[size] + int(rng.integers(-SIZE_JITTER, SIZE_JITTER + 1))
        dx, dy = rng.integers(-POSITION_JITTER, POSITION_JITTER + 1, size=2)
        centre = (POSITIONS[position][0] + int(dx), POSITIONS[position][1] + int(dy))
        rgb = np.clip(np.array(COLOURS[colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
        mask = _shape_mask(kind, centre, pixels_across)
        image.paste(tuple(int(v) for v in rgb), (0, 0, IMAGE_SIZE, IMAGE_SIZE), mask)
        shapes.append(ShapeSpec(kind, colour, size, position, mask.getbbox()))

    return Scene(
        image=image,
        shapes=shapes,
        caption=caption_for(shapes),
        questions=_questions(shapes),
        negatives=_negatives(shapes),
    )


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
