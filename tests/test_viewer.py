"""The heatmap viewer's teaching controls, through its handlers on the offline demo models: each kind
of map opens on the measured default layer, the rollout view shows the vision tower's class-token
rollout (the engine's own maps), the word slider moves the map word by word, and the sketchpad's
drawing becomes an RGB picture on white paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import decoding_values
from PIL import Image

from blip.engine import Engine
from blip.explain import layers, render
from blip.loading.uploads import open_upload
from ui import Services, caption_tab, match_tab
from ui.drawing import flatten
from ui.heatmap_state import ALL, ROLLOUT, default_layer, prepare_rollout
from ui.heatmaps import HeatmapViewer
from ui.rollout_api import rollout

pytestmark = pytest.mark.unit

SHAPES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples" / "shapes").glob("*.png"))
TWO_SHAPES = str(SHAPES[1])  # a large blue circle at the top and a small green triangle at the bottom
MODELS = {"caption": ["caption-base"], "vqa": ["vqa-base"], "retrieval": ["itm-base-coco", "itm-base-flickr"]}


@pytest.fixture(scope="module")
def services() -> Services:
    engine = Engine(device="cpu", demo="always")
    return Services(engine=engine, open_image=open_upload, overlay=render.overlay, models=MODELS)


@pytest.fixture(scope="module")
def viewer(services) -> HeatmapViewer:
    shown = HeatmapViewer.__new__(HeatmapViewer)  # the handlers, without building components
    shown.services = services
    return shown


@pytest.fixture(scope="module")
def caption_state(services) -> dict:
    return caption_tab.caption(services, TWO_SHAPES, "caption-base", "", decoding_values("Greedy"))[4]


def test_each_kind_opens_on_its_measured_layer(caption_state, monkeypatch):
    maps = caption_state["texts"][0][1]
    menus = HeatmapViewer.menus(caption_state)
    # The last layer won the pointing game for the demo captioner's attention (blip/explain/layers.py).
    assert menus[2]["value"] == 2
    assert "layer 3" in menus[2]["info"] and "pointed best" in menus[2]["info"]
    # Whatever the table says is what the viewer opens on, per kind of map.
    monkeypatch.setitem(layers.DEFAULT_LAYERS, ("caption", "gradcam"), {maps.num_layers: 1})
    chosen = HeatmapViewer.layer_for_kind(caption_state, 0, "Grad-CAM")
    assert chosen["value"] == 1 and "layer 2" in chosen["info"]
    assert HeatmapViewer.layer_for_kind(caption_state, 0, "Attention")["value"] == 2
    assert default_layer(maps, "gradcam")[0] == 1
    assert HeatmapViewer.layer_for_kind(caption_state, 0, ROLLOUT) == {"__type__": "update"}


def test_rollout_view_shows_the_engines_rollout_for_any_tab(services, viewer, caption_state):
    image = Image.open(TWO_SHAPES)
    for state, model in (
        (caption_state, "caption-base"),
        (match_tab.match(services, TWO_SHAPES, "itm-base-flickr", "a blue circle", "[ENC]", True)[2], "itm-base-flickr"),
    ):  # fmt: skip
        assert state["model"] == model
        # Drawing runs no model (only the rollout step does, the one viewer step that asks for a GPU).
        assert viewer.render({**state, "rollout": None}, 0, 0, ALL, ALL, ROLLOUT, 1.0, "gray", 0.0)[0] is None
        fresh = {**state, "rollout": None}
        prepare_rollout(services, fresh, "Attention")  # another kind of map: nothing computed
        assert fresh["rollout"] is None
        prepare_rollout(services, state, ROLLOUT)
        main, gallery, note = viewer.render(state, 0, 0, ALL, ALL, ROLLOUT, 1.0, "gray", 0.0)
        expected = services.engine.vision_rollout(image, model=model).maps
        assert f"`{model}`" in note and "every word" in note
        assert [label for _, label in gallery] == [f"vision layer {i + 1}" for i in range(len(expected))]
        np.testing.assert_allclose(
            state["rollout"][0], expected, atol=1e-5
        )  # the same maps, each a distribution
        np.testing.assert_allclose(state["rollout"][0].sum(axis=(1, 2)), 1.0, atol=1e-5)
        drawn = render.overlay(state["image"], expected[-1], opacity=1.0, colormap="gray")
        assert np.abs(np.asarray(main, dtype=int) - np.asarray(drawn, dtype=int)).max() <= 2
        # The same picture whichever word, layer or head is chosen.
        other = viewer.render_word(state, 0, 1, 0, 1, ROLLOUT, 1.0, "gray", 0.0)[0]
        assert other.tobytes() == main.tobytes()


def test_a_state_without_its_model_names_the_vision_tower_it_used(services, viewer, caption_state):
    state = {**caption_state, "model": None, "rollout": None}
    prepare_rollout(services, state, ROLLOUT)
    _, note = viewer.render_word(state, 0, 0, ALL, ALL, ROLLOUT, 0.5)
    assert "did not record its model" in note and "`caption-base`" in note


def test_the_word_slider_moves_the_map_word_by_word(viewer, caption_state):
    words = [w.text for w in caption_state["texts"][0][1].words]
    slider = HeatmapViewer.menus(caption_state)[5]
    assert slider["maximum"] == len(words) - 1 and slider["value"] == 0
    shown = []
    for step in range(len(words)):
        word, picture, note = viewer.slide(caption_state, step, 0, 0, ALL, ALL, "Attention", 0.5, "jet", 0.0)
        assert word["value"] == step and f"Word {step + 1} of {len(words)}: **{words[step]}**" in note
        assert (
            picture.tobytes()
            == viewer.render_word(caption_state, 0, step, ALL, ALL, "Attention", 0.5)[0].tobytes()
        )
        shown.append(picture.tobytes())
    assert len(set(shown)) >= len(words) - 1  # the map moves (two words may look alike)
    assert viewer.slide(caption_state, 99, 0, 0, ALL, ALL, "Attention", 0.5)[0]["value"] == len(words) - 1
    # Picking a word in the menu moves the slider to it; "all words" leaves it where it is.
    assert viewer.word_chosen(caption_state, 0, 2, ALL, ALL, "Attention", 0.5)[2]["value"] == 2
    assert "value" not in viewer.word_chosen(caption_state, 0, ALL, ALL, ALL, "Attention", 0.5)[2]


def test_a_drawing_becomes_an_rgb_picture_on_white_paper():
    canvas = Image.new("RGBA", (40, 30), (0, 0, 0, 0))  # the sketchpad's untouched canvas: transparent
    canvas.paste((228, 26, 28, 255), (10, 10, 20, 20))  # a red stroke
    picture = flatten({"background": None, "layers": [canvas], "composite": canvas})
    assert picture.mode == "RGB" and picture.size == (40, 30)
    assert picture.getpixel((0, 0)) == (255, 255, 255) and picture.getpixel((15, 15)) == (228, 26, 28)
    with pytest.raises(ValueError, match="empty"):
        flatten({"composite": Image.new("RGBA", (8, 8), (0, 0, 0, 0))})
    with pytest.raises(ValueError, match="draw something"):
        flatten(None)


def test_the_rollout_endpoint_handler_is_the_engines_rollout_over_the_picture(services):
    picture, raw = rollout(services, TWO_SHAPES, "vqa-base", 1.0, "gray", 0.0)
    expected = services.engine.vision_rollout(Image.open(TWO_SHAPES), model="vqa-base")
    np.testing.assert_allclose(np.asarray(raw["maps"]), expected.maps, atol=1e-5)
    np.testing.assert_allclose(np.asarray(raw["maps"]).sum(axis=(1, 2)), 1.0, atol=1e-5)
    drawn = render.overlay(Image.open(TWO_SHAPES), expected.grid_map(), opacity=1.0, colormap="gray")
    assert picture.size == drawn.size and np.abs(np.asarray(picture, int) - np.asarray(drawn, int)).max() <= 2
    with pytest.raises(ValueError, match="upload an image"):
        rollout(services, None, "vqa-base")
