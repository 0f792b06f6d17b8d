"""The synthetic shapes world and the robustness generator: deterministic, drawn where their boxes and
words say, randomised over the promised range, and their texts consistent."""

from __future__ import annotations

import colorsys
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapes_robust
from shapes_eval import parse_caption, repeats_a_token
from shapes_world import (
    BACKGROUNDS,
    COLOUR_FAMILIES,
    COLOURS,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeSpec,
    _stands_out,
    all_words,
    caption_for,
    make_scene,
    scene_stream,
    shape_mentions,
    shape_rgb,
)

pytestmark = pytest.mark.unit
VOCAB = Path(__file__).resolve().parents[1] / "blip" / "resources" / "vocab.txt"


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return list(scene_stream(seed=0, count=800))


@pytest.fixture(scope="module")
def robust_scenes() -> list[Scene]:
    return list(shapes_robust.robust_stream(count=60))


def _spec(kind: str, colour: str, size: str, position: str) -> ShapeSpec:
    return ShapeSpec(kind, colour, size, position, box=(0, 0, 0, 0))


def _describe(shapes) -> frozenset[tuple[str, str, str, str]]:
    return frozenset((s.kind, s.colour, s.size, s.position) for s in shapes)


def _all_valid_scenes() -> dict[str, frozenset]:
    """Every caption the world can produce, mapped to the shapes it describes."""
    looks = list(itertools.product(SHAPES, COLOURS, SIZES))
    layouts = [[p] for p in POSITIONS] + [list(pair) for pair in itertools.combinations(POSITIONS, 2)]
    valid = {}
    for layout in layouts:
        for chosen in itertools.product(looks, repeat=len(layout)):
            shapes = [_spec(*look, position) for look, position in zip(chosen, layout, strict=True)]
            valid[caption_for(shapes)] = _describe(shapes)
    return valid


def _texts(scene: Scene) -> list[str]:
    pairs = [pair for pairs in scene.questions.values() for pair in pairs]
    return [scene.caption, *scene.negatives, *(text for pair in pairs for text in pair)]


def _cell(box, size) -> str:
    """The 3 x 3 cell of a box's centre: the position word the captions must use."""
    (x0, y0, x1, y1), (width, height) = box, size
    column, row = min(int(1.5 * (x0 + x1) / width), 2), min(int(1.5 * (y0 + y1) / height), 2)
    return next(name for name, cell in POSITIONS.items() if cell == (column, row))


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


def test_every_word_is_a_whole_bert_token(scenes, robust_scenes):
    vocab = set(VOCAB.read_text(encoding="utf-8").splitlines())
    words = all_words()
    assert {"centre", "colour", "?", "1", "2", "top", "left"} <= words
    assert sorted(words - vocab) == []
    used = {
        w
        for scene in scenes[:300] + robust_scenes
        for text in _texts(scene)
        for w in text.replace("?", " ?").split()
    }
    assert sorted(used - words) == []


def test_caption_grammar_and_canonical_order():
    one = [_spec("triangle", "green", "large", "centre")]
    assert caption_for(one) == "a large green triangle in the centre"
    pair = [_spec("star", "blue", "large", "right"), _spec("circle", "red", "small", "top left")]
    expected = "a small red circle at the top left and a large blue star on the right"
    assert caption_for(pair) == caption_for(pair[::-1]) == expected
    pair = [_spec("square", "yellow", "large", "bottom right"), _spec("circle", "green", "small", "bottom")]
    assert (
        caption_for(pair)
        == "a small green circle at the bottom and a large yellow square at the bottom right"
    )
    # The eval's parser reads every place back, the longer "at the top left" before "at the top".
    parsed = parse_caption("a small red circle at the top left and a large blue star at the top")
    assert parsed == [("small", "red", "circle", "top left"), ("large", "blue", "star", "top")]


@pytest.mark.parametrize("positions", [[], ["left", "left"], ["left", "right", "top"], ["middle"]])
def test_caption_refuses_layouts_the_world_cannot_draw(positions):
    with pytest.raises(ValueError, match="layout"):
        caption_for([_spec("circle", "red", "small", p) for p in positions])


def test_boxes_sit_in_their_cells_inside_the_canvas_and_apart(scenes):
    for scene in scenes:
        width, height = scene.image.size
        for shape in scene.shapes:
            x0, y0, x1, y1 = shape.box
            assert 0 < x0 < x1 < width and 0 < y0 < y1 < height  # never clipped by the canvas
            assert _cell(shape.box, scene.image.size) == shape.position
        if len(scene.shapes) == 2:
            a, b = (s.box for s in scene.shapes)
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_boxes_hold_their_shapes(scenes):
    """A filled shape covers its box centre, and the ring of pixels just outside its box is background:
    far from the shape's colour (a box that cut the shape would put shape pixels in that ring)."""
    for scene in [s for s in scenes if len(s.shapes) == 1 and s.shapes[0].style == "filled"][:150]:
        pixels = np.asarray(scene.image).astype(float)
        x0, y0, x1, y1 = scene.shapes[0].box
        if scene.shapes[0].kind == "star":  # a wobbly star's centre is painted; a tip may not reach it
            continue
        centre = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
        ring = np.concatenate(
            [
                pixels[y0 - 1, x0 - 1 : x1 + 1],
                pixels[y1, x0 - 1 : x1 + 1],
                pixels[y0:y1, x0 - 1],
                pixels[y0:y1, x1],
            ]
        )
        assert np.abs(ring - centre).sum(axis=1).min() > 60, scene.caption


def test_size_word_follows_the_extent_relative_to_the_canvas(scenes):
    """Unrotated neat filled circles: box width over the canvas's mean side falls in the word's range."""
    seen = Counter()
    for scene in scenes:
        for shape in scene.shapes:
            if shape.kind == "circle" and shape.style == "filled":
                width, height = scene.image.size
                relative = (shape.box[2] - shape.box[0]) / np.sqrt(width * height)
                low, high = SIZES[shape.size]
                assert low - 0.02 <= relative <= high + 0.02, (shape, relative)
                seen[shape.size] += 1
    assert min(seen.values()) > 20
    assert max(SIZES["small"]) < min(SIZES["large"])  # an ambiguous band between them is never drawn


def test_named_colours_stay_in_their_family():
    rng = np.random.default_rng(0)
    for colour, (hue, jitter, _, _) in COLOUR_FAMILIES.items():
        for _ in range(200):
            h, s, v = colorsys.rgb_to_hsv(*(shape_rgb(colour, rng) / 255))
            gap = min(abs(h * 360 - hue), 360 - abs(h * 360 - hue))
            assert gap <= jitter + 0.5 and s >= 0.5 and v >= 0.4, (colour, h, s, v)
    # Too close to the ground, or the same hue on a strongly coloured ground: rejected.
    red = np.array([220.0, 40, 40])
    assert not _stands_out(red, np.array([200.0, 60, 60]))
    assert not _stands_out(red, np.array([120.0, 0, 0]))
    assert _stands_out(red, np.array([20.0, 20, 20])) and _stands_out(red, np.array([240.0, 240, 240]))


def test_the_world_is_randomised_over_the_promised_range(scenes):
    sizes = [s.image.size for s in scenes]
    assert len(set(sizes)) > 200 and min(min(s) for s in sizes) < 80 and max(max(s) for s in sizes) > 150
    assert sum(w != h for w, h in sizes) > 0.8 * len(sizes)
    assert set(Counter(s.background for s in scenes)) == set(BACKGROUNDS)
    dark = sum(s.dark for s in scenes) / len(scenes)
    assert 0.15 < dark < 0.6, dark
    styles = Counter(shape.style for s in scenes for shape in s.shapes)
    assert set(styles) == {"filled", "outlined", "filled hand-drawn", "outlined hand-drawn"}
    assert min(styles.values()) > 0.1 * sum(styles.values())


def test_questions_agree_with_the_shapes(scenes):
    for scene in scenes[:500]:
        shapes = scene.shapes
        kinds = Counter(s.kind for s in shapes)
        assert set(scene.questions) == {"colour", "shape", "size", "count"}
        assert scene.questions["count"] == [("how many shapes are there?", str(len(shapes)))]
        assert scene.questions["shape"] == [
            (f"what shape is {POSITION_PHRASES[s.position]}?", s.kind) for s in shapes
        ]
        unique = [s for s in shapes if kinds[s.kind] == 1]
        assert scene.questions["colour"] == [(f"what colour is the {s.kind}?", s.colour) for s in unique]
        assert scene.questions["size"] == [(f"what size is the {s.kind}?", s.size) for s in unique]


def test_negatives_are_other_valid_scenes_one_change_away(scenes):
    valid = _all_valid_scenes()
    assert len(valid) == 4 * 4 * 2 * 9 + 36 * 32 * 32  # caption_for tells every scene apart
    for scene in scenes[:300]:
        truth = _describe(scene.shapes)
        assert valid[scene.caption] == truth
        assert len(scene.negatives) == len(set(scene.negatives))
        # One shape: 3 colours + 3 kinds + 1 size + 8 places. Two: (3 + 3 + 1 + 7) each, and the swap,
        # unless both shapes look alike, when swapping changes nothing.
        if len(scene.shapes) == 1:
            assert len(scene.negatives) == 15
        else:
            a, b = scene.shapes
            alike = (a.kind, a.colour, a.size) == (b.kind, b.colour, b.size)
            assert len(scene.negatives) == (28 if alike else 29)
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
        # "a small red circle at the top left and a ...": the fourth word of each clause is the shape.
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
    for count in (1, 2):
        check(
            Counter(s.position for scene in scenes if len(scene.shapes) == count for s in scene.shapes),
            POSITIONS,
        )


def test_num_shapes_is_honoured_and_checked():
    assert {len(s.shapes) for s in scene_stream(seed=1, count=30, num_shapes=1)} == {1}
    assert {len(s.shapes) for s in scene_stream(seed=1, count=30, num_shapes=2)} == {2}
    with pytest.raises(ValueError, match="num_shapes"):
        make_scene(np.random.default_rng(0), num_shapes=3)


def test_robust_set_is_seeded_one_shape_and_covers_its_subsets(robust_scenes):
    again = list(shapes_robust.robust_stream(count=10))
    assert [s.image.tobytes() for s in again] == [s.image.tobytes() for s in robust_scenes[:10]]
    valid = _all_valid_scenes()
    for scene in robust_scenes:
        assert len(scene.shapes) == 1 and valid[scene.caption] == _describe(scene.shapes)
        shape = scene.shapes[0]
        width, height = scene.image.size
        assert 0 < shape.box[0] < shape.box[2] < width and 0 < shape.box[1] < shape.box[3] < height
        assert _cell(shape.box, scene.image.size) == shape.position
        if scene.dark:
            assert np.asarray(scene.image).mean() < 85
    assert 0.2 < sum(s.dark for s in robust_scenes) / len(robust_scenes) < 0.5
    assert set(Counter(s.shapes[0].style for s in robust_scenes)) == set(shapes_robust.STYLES)
    assert set(Counter(s.background for s in robust_scenes)) == {"vignette", "checker", "stripes", "blobs"}
    assert {s.shapes[0].kind for s in robust_scenes} == set(SHAPES)


def test_robust_shapes_fill_where_their_distance_says():
    """The signed distance is negative inside: a square's centre, not its corner's outside."""
    xs = np.array([[0.0, 9.0, 11.0]])
    ys = np.zeros_like(xs)
    for kind in SHAPES:
        sdf = shapes_robust.shape_sdf(kind, xs, ys, 10.0, 0.0)
        assert sdf[0, 0] < 0, kind
    square = shapes_robust.shape_sdf("square", xs, ys, 10.0, 0.0)[0]
    assert square[1] < 0 < square[2]
    assert abs(shapes_robust.shape_sdf("circle", np.array([13.0]), np.array([0.0]), 10.0, 0.0)[0] - 3) < 1e-6


def test_repeated_tokens_are_detected():
    assert repeats_a_token("a square square square")
    assert repeats_a_token("what ? ? ?")
    assert not repeats_a_token("a small red square on the left and a small red square on the right")
    assert not repeats_a_token("") and not repeats_a_token("a a")


def test_curriculum_stages_draw_neat_shapes_first_and_the_whole_world_by_default():
    import shapes_world

    rng = np.random.default_rng(7)
    plain = [shapes_world.make_scene(rng, None, shapes_world.NEAT_ON_PLAIN) for _ in range(40)]
    neat = [shapes_world.make_scene(rng, None, shapes_world.NEAT) for _ in range(40)]
    full = [shapes_world.make_scene(rng) for _ in range(80)]
    for scene in plain:
        corner = np.asarray(scene.image)[0, 0]
        assert scene.background == "plain" and corner.tolist() == [225, 225, 225]
    assert {s.style for scene in plain + neat for s in scene.shapes} == {"filled"}
    assert len({scene.background for scene in neat}) > 1  # any ground from the second stage on
    styles = {s.style for scene in full for s in scene.shapes}
    assert {"outlined", "filled hand-drawn"} <= styles
    # Every scene keeps its shapes' coverage map, one value per canvas pixel.
    scene = full[0]
    assert scene.coverage.shape == scene.image.size[::-1] and 0 < scene.coverage.mean() < 0.5
