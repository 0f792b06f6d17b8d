"""The optional int8 fast mode and the skinny-input linear path: same answers as float32 where it
matters, and the heatmaps still work."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blip.engine import Engine
from blip.kernels.int8 import quantize_int8
from blip.kernels.linear import project
from blip.loading.uploads import open_upload

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("shape", [(1, 48), (1, 1, 48), (48,)])
def test_one_row_equals_linear_whatever_its_shape(shape):
    torch.manual_seed(len(shape))
    layer, x = nn.Linear(48, 80), torch.randn(shape)
    with torch.no_grad():
        out = project(layer, x)
    assert out.shape == (*shape[:-1], 80)
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 2, 3, 8, 64, 65, 200])
def test_project_equals_linear_for_every_row_count(rows):
    torch.manual_seed(rows)
    layer = nn.Linear(48, 80)
    x = torch.randn(rows, 48, requires_grad=True)
    ours = project(layer, x.view(1, rows, 48))
    assert ours.shape == (1, rows, 80) and ours.is_contiguous()
    torch.testing.assert_close(ours[0], F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(ours.sum(), x)  # heatmaps differentiate through it
    torch.testing.assert_close(grad, layer.weight.sum(dim=0).expand(rows, -1), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    return Engine(device="cpu", demo="always"), Engine(device="cpu", demo="always", fast="int8")


def test_fast_mode_quantises_every_linear_layer_and_keeps_a_float_twin(engines):
    _, fast = engines
    loaded = fast.model("caption-base")
    kinds = {type(m) for m in loaded.model.modules()}
    assert nn.Linear not in kinds and any("quantized" in k.__module__ for k in kinds)
    assert any(type(m) is nn.Linear for m in loaded.explainer.modules())
    assert loaded.gradient_model is loaded.explainer
    with pytest.raises(ValueError, match="CPU only"):
        quantize_int8(copy.deepcopy(loaded.explainer).to("meta"))


def test_fast_mode_gives_the_same_answers_on_the_demo_models(engines):
    full, fast = engines
    for path in SHAPES:
        image = open_upload(path)
        options = {"strategy": "beam", "num_beams": 3}
        assert (
            fast.caption(image, options=options).captions[0].text
            == full.caption(image, options=options).captions[0].text
        )
        question = "how many shapes are there?"
        assert fast.answer(image, question).answers[0].text == full.answer(image, question).answers[0].text
        texts = ["a small red circle in the centre", "a large blue star at the top"]
        a = [r.itm_probability for r in fast.match(image, texts).rows]
        b = [r.itm_probability for r in full.match(image, texts).rows]
        assert np.allclose(a, b, atol=0.02)


def test_fast_mode_heatmaps_include_gradcam(engines):
    full, fast = engines
    image = open_upload(SHAPES[1])
    text = ["a large blue circle at the top and a small green triangle at the bottom"]
    fast_row = fast.match(image, text, explain_words=True).rows[0]
    full_row = full.match(image, text, explain_words=True).rows[0]
    assert fast_row.heatmaps.gradcam is not None
    word = [w.text for w in fast_row.heatmaps.words].index("circle")
    fast_map = fast_row.heatmaps.grid_map(word=word, kind="gradcam")
    full_map = full_row.heatmaps.grid_map(word=word, kind="gradcam")
    assert np.argmax(fast_map) == np.argmax(full_map)
    caption = fast.caption(image, explain_tokens=True).captions[0]
    assert caption.heatmaps.gradcam is not None
