"""Measure the offline demo models against their bars, on held-out scenes, through the engine.

    python scripts/shapes_eval.py [--count 200]      # prints every figure; used by tests too

Held-out scenes come from a seed the training never used; the robustness figures come from one-shape
scenes of scripts/shapes_robust.py, a different generator with its own held-out seed. Every figure goes
through the same engine calls the app makes (greedy decoding, [ENC] first token, heatmaps from
``Heatmaps.grid_map``). Besides the bars (floors), two ceilings: the share of captions that repeat a
token three times in a row, on each test set, must stay at zero.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shapes_robust as robust  # noqa: E402
import shapes_world as shapes  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.generation import DecodingOptions  # noqa: E402

DEMO = ROOT / "assets" / "demo"
HELD_OUT_SEED = 20261127
BARS = {
    "caption exact (one shape)": 0.90,
    "caption shape": 0.95,
    "caption colour": 0.95,
    "caption size": 0.95,
    "caption position": 0.95,
    "caption count": 0.95,
    "vqa colour": 0.95,
    "vqa shape": 0.95,
    "vqa count": 0.95,
    "itm true above hard negative": 0.95,
    "itc top-1 of 100": 0.90,
    "zero-shot shape": 0.95,
    "zero-shot colour": 0.95,
    "pointing: caption attention (two shapes)": 0.90,
    "pointing: ITM Grad-CAM (two shapes)": 0.85,
    "robust: caption colour and shape": 0.90,
    "robust: caption colour and shape, dark backgrounds": 0.90,
    "robust: caption colour and shape, outlined/hand-drawn": 0.80,
    "robust: vqa colour": 0.90,
    "robust: vqa shape": 0.90,
    "robust: zero-shot shape": 0.90,
}
# Shares that must not exceed these values.
CEILINGS = {
    "repeated-token captions (held-out)": 0.0,
    "repeated-token captions (robust)": 0.0,
}
_PHRASE = {phrase: position for position, phrase in shapes.POSITION_PHRASES.items()}
# Longest phrases first: "at the top left" must not stop at "at the top".
_PLACES = "|".join(sorted(shapes.POSITION_PHRASES.values(), key=len, reverse=True))
_MENTION = re.compile(rf"a (\w+) (\w+) (\w+) ({_PLACES})")


def demo_engine(directory: Path = DEMO) -> Engine:
    return Engine(
        device="cpu",
        local_models={task: directory / task for task in ("caption", "vqa", "retrieval")},
    )


def parse_caption(text: str) -> list[tuple[str, str, str, str]]:
    """(size, colour, kind, position) of each shape a caption mentions, in order."""
    return [(size, colour, kind, _PHRASE[where]) for size, colour, kind, where in _MENTION.findall(text)]


def repeats_a_token(text: str, times: int = 3) -> bool:
    """Does any word (or "?") occur ``times`` times in a row? Every grammar word is one token."""
    words = text.replace("?", " ?").split()
    return any(len(set(words[i : i + times])) == 1 for i in range(len(words) - times + 1))


def _points_at(heat: np.ndarray, box: tuple[int, int, int, int], image_size: tuple[int, int]) -> bool:
    """Is the map's maximum inside ``box`` dilated by one patch? ``image_size`` is the (width, height)
    of the image the box is in: the map covers it whole, squeezed to the model's square."""
    rows, cols = heat.shape
    width, height = image_size
    patch_x, patch_y = width / cols, height / rows
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    x, y = (c + 0.5) * patch_x, (r + 0.5) * patch_y
    x0, y0, x1, y1 = box
    return x0 - patch_x <= x <= x1 + patch_x and y0 - patch_y <= y <= y1 + patch_y


def evaluate(engine: Engine, count: int = 200, seed: int = HELD_OUT_SEED) -> dict[str, float]:
    """Every demo-model figure on ``count`` one-shape and ``count`` two-shape held-out scenes."""
    singles = list(shapes.scene_stream(seed, count, num_shapes=1))
    doubles = list(shapes.scene_stream(seed + 1, count, num_shapes=2))
    tally: dict[str, list[bool]] = {name: [] for name in [*BARS, *CEILINGS]}
    greedy = DecodingOptions(max_new_tokens=30)

    for scene in singles + doubles:
        result = engine.caption(
            scene.image, model="caption", options=greedy, explain_tokens=len(scene.shapes) > 1
        )
        item = result.captions[0]
        text = item.text
        tally["repeated-token captions (held-out)"].append(repeats_a_token(text))
        if len(scene.shapes) == 1:
            tally["caption exact (one shape)"].append(text == scene.caption)
        said = parse_caption(text)
        truth = [(s.size, s.colour, s.kind, s.position) for s in shapes.canonical_order(scene.shapes)]
        tally["caption count"].append(len(said) == len(truth))
        for i, (size, colour, kind, position) in enumerate(truth):
            got = said[i] if i < len(said) else (None,) * 4
            tally["caption size"].append(got[0] == size)
            tally["caption colour"].append(got[1] == colour)
            tally["caption shape"].append(got[2] == kind)
            tally["caption position"].append(got[3] == position)
        if len(scene.shapes) > 1:
            mentions = shapes.shape_mentions(scene)  # (word, box) in caption order
            kinds_said = [w for w in (w.text for w in item.heatmaps.words) if w in shapes.SHAPES]
            word_index = [i for i, w in enumerate(item.heatmaps.words) if w.text in shapes.SHAPES]
            for k, (word, box) in enumerate(mentions):
                if k < len(kinds_said) and kinds_said[k] == word:
                    heat = item.heatmaps.grid_map(word=word_index[k])
                    tally["pointing: caption attention (two shapes)"].append(
                        _points_at(heat, box, scene.image.size)
                    )

    for scene in singles[: count // 2] + doubles[: count // 2]:
        for kind, pairs in scene.questions.items():
            if f"vqa {kind}" not in tally:
                continue
            for question, expected in pairs:
                got = engine.answer(scene.image, question, model="vqa", options=greedy).answers[0].text
                tally[f"vqa {kind}"].append(got == expected)

    other_captions = [s.caption for s in shapes.scene_stream(seed + 2, 400)]
    for n, scene in enumerate(singles[: count // 2] + doubles[: count // 2]):
        negatives = scene.negatives
        rows = engine.match(scene.image, [scene.caption, *negatives], model="retrieval").rows
        tally["itm true above hard negative"] += [
            rows[0].itm_probability > r.itm_probability for r in rows[1:]
        ]
        distractors = [c for c in other_captions[n : n + 150] if c != scene.caption][:99]
        candidates = [scene.caption, *distractors]
        cosines = []
        for start in range(0, len(candidates), 32):  # the engine matches at most 32 texts at once
            rows = engine.match(scene.image, candidates[start : start + 32], model="retrieval").rows
            cosines += [r.itc_cosine for r in rows]
        tally["itc top-1 of 100"].append(int(np.argmax(cosines)) == 0)

    for scene in singles:
        shape = scene.shapes[0]
        by_shape = engine.classify(scene.image, list(shapes.SHAPES), model="retrieval", template="a {}")
        by_colour = engine.classify(
            scene.image, list(shapes.COLOURS), model="retrieval", template="a {} shape"
        )
        tally["zero-shot shape"].append(by_shape.labels[0].label == shape.kind)
        tally["zero-shot colour"].append(by_colour.labels[0].label == shape.colour)

    for scene in doubles[: count // 2]:
        row = engine.match(scene.image, [scene.caption], model="retrieval", explain_words=True).rows[0]
        word_index = [i for i, w in enumerate(row.heatmaps.words) if w.text in shapes.SHAPES]
        for k, (_, box) in enumerate(shapes.shape_mentions(scene)):
            heat = row.heatmaps.grid_map(word=word_index[k], kind="gradcam")
            tally["pointing: ITM Grad-CAM (two shapes)"].append(_points_at(heat, box, scene.image.size))

    _robustness(engine, count, tally)
    return {name: float(np.mean(hits)) if hits else float("nan") for name, hits in tally.items()}


def _robustness(engine: Engine, count: int, tally: dict[str, list[bool]]) -> None:
    """The robustness figures, on ``count`` one-shape scenes of the other generator."""
    greedy = DecodingOptions(max_new_tokens=30)
    for scene in robust.robust_stream(robust.ROBUST_SEED, count):
        shape = scene.shapes[0]
        text = engine.caption(scene.image, model="caption", options=greedy).captions[0].text
        tally["repeated-token captions (robust)"].append(repeats_a_token(text))
        said = parse_caption(text)
        right = len(said) >= 1 and said[0][1:3] == (shape.colour, shape.kind)
        tally["robust: caption colour and shape"].append(right)
        if scene.dark:
            tally["robust: caption colour and shape, dark backgrounds"].append(right)
        if shape.style != "filled":
            tally["robust: caption colour and shape, outlined/hand-drawn"].append(right)
        for kind in ("colour", "shape"):
            for question, expected in scene.questions[kind]:
                got = engine.answer(scene.image, question, model="vqa", options=greedy).answers[0].text
                tally[f"robust: vqa {kind}"].append(got == expected)
        by_shape = engine.classify(scene.image, list(shapes.SHAPES), model="retrieval", template="a {}")
        tally["robust: zero-shot shape"].append(by_shape.labels[0].label == shape.kind)


def meets(name: str, value: float) -> bool:
    """Is a figure on the right side of its bar (a floor) or ceiling?"""
    return value <= CEILINGS[name] if name in CEILINGS else value >= BARS[name]


def report(figures: dict[str, float]) -> str:
    lines = [f"{'measure':56s} {'result':>7s} {'bar':>7s}"]
    for name, value in figures.items():
        bar = f"<={CEILINGS[name]:.0%}" if name in CEILINGS else f"{BARS[name]:.0%}"
        lines.append(f"{name:56s} {value:7.1%} {bar:>7s}  {'ok' if meets(name, value) else 'MISSED'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--models", type=Path, default=DEMO)
    args = parser.parse_args()
    print(report(evaluate(demo_engine(args.models), args.count)))


if __name__ == "__main__":
    main()
