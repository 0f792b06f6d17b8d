"""The synthetic shapes world: deterministic, drawn where its boxes say, and its texts consistent."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shapes_world import (
    COLOURS,
    IMAGE_SIZE,
    POSITION_JITTER,
    POSITIONS,
    SHAPES,
    SIDE_POSITIONS,
    SIZE_JITTER,
    SIZES,
    Scene,
    ShapeSpec,
    _shape_mask,
    all_words,
    caption_for,
    make_scene,
    scene_stream,
    shape_mentions,
)

pytestmark = pytest.mark.unit
VOCAB = Path(__file__).resolve().parents[1] / "blip" / "resources" / "vocab.txt"
CHROMA = 60  # max - min channel above this: a shape pixel (the grey background stays far below)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return list(scene_stream(seed=0, count=2000))


def _spec(kind: str, colour: str, size: str, position: str) -> ShapeSpec:
    return ShapeSpec(kind, colour, size, position, box=(0, 0, 0, 0))


def _describe(shapes) -> frozenset[tuple[str, str, str, str]]:
    return frozenset((s.kind, s.colour, s.size, s.position) for s in shapes)


def _all_valid_scenes() -> dict[str, frozenset]:
    """Every caption the world can produce, mapped to the shapes it describes."""
    looks = list(itertools.product(SHAPES, COLOURS, SIZES))
    layouts = [[p] for p in POSITIONS] + [list(pair) for pair in itertools.combinations(SIDE_POSITIONS, 2)]
    valid = {}
    for layout in layouts:
        for chosen in itertools.product(looks, repeat=len(layout)):
            shapes = [_spec(*look, position) for look, position in zip(chosen, layout, strict=True)]
            valid[caption_for(shapes)] = _describe(shapes)
    return valid


def _texts(scene: Scene) -> list[str]:
    pairs = [pair for pairs in scene.questions.values() for pair in pairs]
    return [scene.caption, *scene.negatives, *(text for pair in pairs for text in pair)]


def test_same_seed_same_scenes_and_other_seed_differs():
    first, again, other = (list(scene_stream(seed, 20)) for seed in (7, 7, 8))
    for a, b in zip(first, again, strict=True):
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.shapes, a.caption, a.questions, a.negatives) == (
            b.shapes,
            b.caption,
            b.questions,
            b.negatives,
        )
    assert [s.caption for s in first] != [s.caption for s in other]
    assert first[0].image.tobytes() != other[0].image.tobytes()


def test_every_word_is_a_whole_bert_token(scenes):
    vocab = set(VOCAB.read_text(encoding="utf-8").splitlines())
    words = all_words()
    assert {"centre", "colour", "?", "1", "2"} <= words
    assert sorted(words - vocab) == []
    used = {w for scene in scenes[:300] for text in _texts(scene) for w in text.replace("?", " ?").split()}
    assert sorted(used - words) == []


def test_caption_grammar_and_canonical_order():
    one = [_spec("triangle", "green", "large", "centre")]
    assert caption_for(one) == "a large green triangle in the centre"
    pair = [_spec("circle", "red", "small", "left"), _spec("star", "blue", "large", "right")]
    expected = "a small red circle on the left and a large blue star on the right"
    assert caption_for(pair) == caption_for(pair[::-1]) == expected
    pair = [_spec("square", "yellow", "large", "bottom"), _spec("circle", "green", "small", "top")]
    expected = "a small green circle at the top and a large yellow square at the bottom"
    assert caption_for(pair) == expected
    pair = [_spec("star", "red", "small", "bottom"), _spec("square", "blue", "small", "right")]
    assert caption_for(pair) == "a small blue square on the right and a small red star at the bottom"


@pytest.mark.parametrize(
    "positions", [[], ["left", "left"], ["left", "centre"], ["left", "right", "top"], ["middle"]]
)
def test_caption_refuses_layouts_the_world_cannot_draw(positions):
    with pytest.raises(ValueError, match="layout"):
        caption_for([_spec("circle", "red", "small", p) for p in positions])


def test_boxes_hold_exactly_their_shapes_pixels(scenes):
    nominal = np.array(list(COLOURS.values()))
    # Painted fraction of the box: a square fills it, a star about 0.4 (inner/outer radius 0.45).
    fill = {"square": (0.95, 1.0), "circle": (0.7, 0.85), "triangle": (0.45, 0.62), "star": (0.3, 0.5)}
    for scene in scenes[:200]:
        pixels = np.asarray(scene.image).astype(int)
        painted = pixels.max(axis=2) - pixels.min(axis=2) > CHROMA
        covered = np.zeros_like(painted)
        for shape in scene.shapes:
            x0, y0, x1, y1 = shape.box
            assert 0 < x0 < x1 < IMAGE_SIZE and 0 < y0 < y1 < IMAGE_SIZE  # never clipped by the canvas
            inside = painted[y0:y1, x0:x1]
            # Tight: every edge row and column of the box holds a painted pixel.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            low, high = fill[shape.kind]
            assert low <= inside.mean() <= high, (shape, inside.mean())
            rgb = pixels[y0:y1, x0:x1][inside]
            nearest = np.abs(rgb[:, None, :] - nominal[None]).sum(axis=2).argmin(axis=1)
            assert set(nearest.tolist()) == {list(COLOURS).index(shape.colour)}
            covered[y0:y1, x0:x1] = True
        # Nothing painted outside the boxes (so nothing spills over a box's edge).
        assert not (painted & ~covered).any()


def test_two_shape_boxes_never_intersect(scenes):
    def apart(a, b):
        return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]

    pairs = [scene.shapes for scene in scenes if len(scene.shapes) == 2]
    assert len(pairs) > 900
    assert all(apart(a.box, b.box) for a, b in pairs)

    # Worst case: every shape at the largest size, every jitter. The union of all boxes a side position
    # can produce must stay clear of every other side position's union (and inside the canvas).
    jitters = range(-POSITION_JITTER, POSITION_JITTER + 1)
    largest = max(SIZES.values()) + SIZE_JITTER
    reach = {}
    for position in SIDE_POSITIONS:
        cx, cy = POSITIONS[position]
        boxes = [
            _shape_mask(kind, (cx + dx, cy + dy), largest).getbbox()
            for kind in SHAPES
            for dx, dy in itertools.product(jitters, jitters)
        ]
        x0, y0, _, _ = np.min(boxes, axis=0)
        _, _, x1, y1 = np.max(boxes, axis=0)
        assert min(x0, y0) > 0 and max(x1, y1) < IMAGE_SIZE
        reach[position] = (x0, y0, x1, y1)
    for a, b in itertools.combinations(SIDE_POSITIONS, 2):
        assert apart(reach[a], reach[b]), (a, b, reach[a], reach[b])


def test_questions_agree_with_the_shapes(scenes):
    phrase_of = {"left": "on the left", "right": "on the right", "top": "at the top"}
    phrase_of |= {"bottom": "at the bottom", "centre": "in the centre"}
    for scene in scenes[:500]:
        shapes = scene.shapes
        kinds = Counter(s.kind for s in shapes)
        assert set(scene.questions) == {"colour", "shape", "size", "count"}
        assert scene.questions["count"] == [("how many shapes are there?", str(len(shapes)))]
        assert scene.questions["shape"] == [
            (f"what shape is {phrase_of[s.position]}?", s.kind) for s in shapes
        ]
        unique = [s for s in shapes if kinds[s.kind] == 1]
        assert scene.questions["colour"] == [(f"what colour is the {s.kind}?", s.colour) for s in unique]
        assert scene.questions["size"] == [(f"what size is the {s.kind}?", s.size) for s in unique]


def test_negatives_are_other_valid_scenes_one_change_away(scenes):
    valid = _all_valid_scenes()
    assert len(valid) == 4 * 4 * 2 * 5 + 6 * 32 * 32  # caption_for tells every scene apart
    for scene in scenes[:500]:
        truth = _describe(scene.shapes)
        assert valid[scene.caption] == truth
        assert len(scene.negatives) == len(set(scene.negatives))
        # One shape: 3 colours + 3 kinds + 1 size + 4 positions. Two: (3 + 3 + 1 + 2) each, and the swap,
        # unless both shapes look alike, when swapping changes nothing.
        if len(scene.shapes) == 1:
            assert len(scene.negatives) == 11
        else:
            a, b = scene.shapes
            alike = (a.kind, a.colour, a.size) == (b.kind, b.colour, b.size)
            assert len(scene.negatives) == (18 if alike else 19)
        for negative in scene.negatives:
            assert negative != scene.caption
            other = valid[negative]  # KeyError: not a caption of any valid scene
            removed, added = sorted(truth - other), sorted(other - truth)
            if len(removed) == 1:  # one attribute of one shape changed
                assert sum(x != y for x, y in zip(removed[0], added[0], strict=True)) == 1
            else:  # the two positions swapped
                assert [r[:3] for r in removed] == [a[:3] for a in added]
                assert {r[3] for r in removed} == {a[3] for a in added}


def test_shape_mentions_follow_the_caption(scenes):
    for scene in scenes[:200]:
        mentions = shape_mentions(scene)
        assert mentions == [(s.kind, s.box) for s in scene.shapes]
        # "a small red circle on the left and a ...": the fourth word of each clause is the shape.
        assert [clause.split()[3] for clause in scene.caption.split(" and ")] == [
            kind for kind, _ in mentions
        ]


def test_every_value_appears_roughly_balanced(scenes):
    def check(counts: Counter, values) -> None:
        fair = sum(counts.values()) / len(values)
        assert set(counts) == set(values)
        assert min(counts.values()) >= fair / 2, counts

    shapes = [s for scene in scenes for s in scene.shapes]
    check(Counter(s.kind for s in shapes), SHAPES)
    check(Counter(s.colour for s in shapes), COLOURS)
    check(Counter(s.size for s in shapes), SIZES)
    check(Counter(len(scene.shapes) for scene in scenes), (1, 2))
    # Centre is only used by one-shape scenes, so positions are balanced within each kind of scene.
    check(Counter(s.position for scene in scenes if len(scene.shapes) == 1 for s in scene.shapes), POSITIONS)
    check(
        Counter(s.position for scene in scenes if len(scene.shapes) == 2 for s in scene.shapes),
        SIDE_POSITIONS,
    )


def test_num_shapes_is_honoured_and_checked():
    assert {len(s.shapes) for s in scene_stream(seed=1, count=30, num_shapes=1)} == {1}
    assert {len(s.shapes) for s in scene_stream(seed=1, count=30, num_shapes=2)} == {2}
    with pytest.raises(ValueError, match="num_shapes"):
        make_scene(np.random.default_rng(0), num_shapes=3)
