"""Compare side by side: ``Engine.compare`` is the two separate calls it stands for plus a diff, and says
when both sides ran the same weights (offline, every model name falls back to one demo model); the
Compare tab lays it out (changed words highlighted, score differences, two maps)."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import decoding_values

from blip.engine import Engine
from blip.engine.comparing import Side, word_diff
from blip.explain import render
from blip.loading.uploads import open_upload
from ui import compare_tab
from ui.decoding import BEAM, GREEDY
from ui.errors import friendly
from ui.services import Services

pytestmark = pytest.mark.unit
SHAPES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples" / "shapes").glob("*.png"))
TWO_SHAPES = SHAPES[1]  # "a large blue circle at the top and a small green triangle at the bottom"
TEXTS = "a large blue circle at the top and a small green triangle at the bottom\na red star"
MODELS = {"caption": ["caption-base", "caption-large"], "vqa": ["vqa-base", "vqa-capfilt-large"],
          "retrieval": ["itm-base-coco", "itm-base-flickr"]}  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(device="cpu", demo="always")


@pytest.fixture(scope="module")
def image():
    return open_upload(str(TWO_SHAPES))


def test_word_diff_marks_the_words_outside_the_common_runs():
    left, right = word_diff("a small red circle in the centre", "a small blue circle at the centre")
    assert [w for w, changed in left if changed] == ["red", "in"]
    assert [w for w, changed in right if changed] == ["blue", "at"]
    left, right = word_diff("a red circle", "a red circle at the top")
    assert not any(c for _, c in left) and [w for w, c in right if c] == ["at", "the", "top"]
    assert word_diff("", "") == ([], [])


GREEDY_OPTIONS = {"strategy": "greedy", "max_new_tokens": 6}
BEAM_OPTIONS = {"strategy": "beam", "num_beams": 3, "max_new_tokens": 20}


@pytest.mark.parametrize(
    ("task", "left", "right", "text"),
    [
        ("caption", Side("caption-base", GREEDY_OPTIONS), Side("caption-large", BEAM_OPTIONS), ""),
        ("caption", Side("caption-base", GREEDY_OPTIONS), Side("caption-base", BEAM_OPTIONS), "a picture of"),
        ("answer", Side("vqa-base", {"max_new_tokens": 3}), Side("vqa-base", None, "[CLS]"), "what shape is at the top?"),
        ("match", Side("itm-base-coco"), Side("itm-base-flickr", first_token="[CLS]"), TEXTS),
    ],
    ids=["models", "decodings", "first-tokens", "matchers"],
)  # fmt: skip
def test_a_comparison_agrees_with_the_separate_calls_it_stands_for(engine, image, task, left, right, text):
    comparison = engine.compare(image, task, left, right, text)
    for side, result in ((left, comparison.left_result), (right, comparison.right_result)):
        if task == "caption":
            alone = engine.caption(image, side.model, text, side.options).captions
            together = result.captions
        elif task == "answer":
            alone = engine.answer(image, text, side.model, side.options, first_token=side.first_token).answers
            together = result.answers
        else:
            alone = engine.match(image, text.splitlines(), side.model, side.first_token).rows
            assert [(r.text, r.itm_probability, r.itc_cosine) for r in result.rows] == [
                (r.text, r.itm_probability, r.itc_cosine) for r in alone
            ]
            continue
        assert [(c.text, c.score, [t.token_id for t in c.tokens]) for c in together] == [
            (c.text, c.score, [t.token_id for t in c.tokens]) for c in alone
        ]
    if task == "match":
        first = comparison.scores[0]
        assert (first.left, first.right) == (
            comparison.left_result.rows[0].itm_probability,
            comparison.right_result.rows[0].itm_probability,
        )
    else:
        items = [
            r.captions[0] if task == "caption" else r.answers[0]
            for r in (comparison.left_result, comparison.right_result)
        ]
        assert [
            " ".join(w for w, _ in words) for words in (comparison.left_words, comparison.right_words)
        ] == [i.text for i in items]
        assert comparison.scores[0].delta == pytest.approx(items[1].score - items[0].score)
    assert comparison.to_dict()["task"] == task


def test_attention_against_grad_cam_maps_are_those_of_the_separate_call(engine, image):
    left, right = (
        Side("caption-base", GREEDY_OPTIONS),
        Side("caption-base", GREEDY_OPTIONS, map_kind="gradcam"),
    )
    comparison = engine.compare(image, "caption", left, right, explain=True)
    maps = engine.caption(image, "caption-base", "", GREEDY_OPTIONS, explain_tokens=True).captions[0].heatmaps
    for kind, shown in zip(("attention", "gradcam"), comparison.maps, strict=True):
        expected = maps.grid_map(word=None, layer=maps.default_layer(kind), kind=kind)
        assert shown.shape == maps.grid and np.allclose(shown, expected, atol=1e-6)
    assert comparison.map_agreement is not None and -1 <= comparison.map_agreement < 0.999
    assert not comparison.differs  # same text and scores: only the kind of map differs
    with pytest.raises(ValueError, match="map_kind must be one of"):
        engine.compare(image, "caption", left, Side("caption-base", map_kind="rollout"))
    with pytest.raises(ValueError, match="task must be one of"):
        engine.compare(image, "classify", left, right)


def test_two_model_names_served_by_the_same_demo_weights_are_not_a_difference(engine, image, checkpoints):
    same = engine.compare(image, "caption", Side("caption-base"), Side("caption-large"))
    assert same.same_weights and not same.differs
    assert any("Same weights on both sides" in n and "offline demo model" in n for n in same.notes)
    assert any("nothing to compare" in n for n in same.notes)
    # Other settings still make a comparison: the note stays, "nothing to compare" does not.
    decodings = engine.compare(
        image, "caption", Side("caption-base", GREEDY_OPTIONS), Side("caption-large", BEAM_OPTIONS)
    )
    assert decodings.same_weights and decodings.differs
    assert any("Same weights" in n for n in decodings.notes) and not any(
        "nothing" in n for n in decodings.notes
    )
    # One side a real checkpoint, the other the demo: said, and not "the same weights".
    mixed_engine = Engine(
        device="cpu", demo="always", local_models={"mine": checkpoints.decoding("caption", 0)}
    )
    mixed = mixed_engine.compare(image, "caption", Side("caption-base"), Side("mine"))
    assert not mixed.same_weights
    assert any("offline demo model answered for caption-base but not for mine" in n for n in mixed.notes)


@pytest.fixture(scope="module")
def services(engine) -> Services:
    return Services(engine=engine, open_image=open_upload, overlay=render.overlay, models=MODELS)


def _values(
    model: str, decoding: str = GREEDY, first_token: str = "[ENC]", map_kind: str = "Attention", **changes
):
    return {
        "model": model,
        "first_token": first_token,
        "map": map_kind,
        "decoding": decoding_values(decoding, **changes),
    }


def test_the_compare_tab_highlights_the_changed_words_and_sets_the_scores_side_by_side(services):
    short = _values("caption-base", min_new_tokens=1, max_new_tokens=4)
    left, right, rows, summary, left_map, right_map, raw = compare_tab.compare(
        services, str(TWO_SHAPES), "Caption", "", False, short, _values("caption-base", BEAM)
    )
    assert "".join(w for w, _ in left) == "a large blue circle"
    assert (
        "".join(w for w, _ in right)
        == "a large blue circle at the top and a small green triangle at the bottom"
    )
    assert [w for w, label in right if label == compare_tab.CHANGED][:3] == ["at", "the", "top"]
    assert not [w for w, label in left if label == compare_tab.CHANGED]
    assert rows[0][0] == "caption 1 score" and rows[3] == ["caption 1 tokens", 4.0, 16.0, 12.0]
    assert (
        "greedy search" in summary and "beam search · 3 beams" in summary and "Offline demo model" in summary
    )
    assert left_map is None and right_map is None and raw["differs"]
    # ITM coco against flickr offline: the demo serves both, and the summary says so.
    left, right, rows, summary, *_ = compare_tab.compare(
        services, str(TWO_SHAPES), "Match", TEXTS, False, _values("itm-base-coco"), _values("itm-base-flickr")
    )
    assert "Same weights on both sides" in summary and all(r[3] == 0 for r in rows)
    first = next(w for w, _ in left if w != "\n")
    assert first.startswith(TEXTS.splitlines()[0]) and re.search(r": match \(0\.\d{3}\)$", first), first


def test_the_compare_tab_draws_both_maps(services):
    *_, summary, left_map, right_map, raw = compare_tab.compare(
        services, str(SHAPES[0]), "Ask", "what colour is the circle?", True,
        _values("vqa-base", max_new_tokens=3, min_new_tokens=1),
        _values("vqa-base", max_new_tokens=3, min_new_tokens=1, map_kind="Grad-CAM"),
    )  # fmt: skip
    assert left_map.size == right_map.size and max(left_map.size) == compare_tab.MAP_SIZE
    assert np.asarray(left_map).std() > 0 and np.asarray(left_map).tolist() != np.asarray(right_map).tolist()
    assert "correlation" in summary and raw["left"]["map_kind"] == "attention"


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("Ask", " ", "Type a question"),
        ("Match", "", "Type the texts"),
        ("Search", "x", "Task must be one of"),
        (
            "Ask",
            "what is it?",
            "question answering needs a QuestionAnsweringModel",
        ),  # the API takes any model
    ],
)
def test_the_compare_tab_says_what_is_wrong(services, task, text, message):
    with pytest.raises(gr.Error, match=message):
        friendly(compare_tab.compare)(services, str(TWO_SHAPES), task, text, False, _values("caption-base"),
                                      _values("caption-base"))  # fmt: skip
    with pytest.raises(gr.Error, match="Upload an image first"):
        friendly(compare_tab.compare)(services, None, "Caption", "", False, _values("caption-base"),
                                      _values("caption-base"))  # fmt: skip
