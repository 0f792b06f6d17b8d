"""The CPU fast mode's plan: chosen from what the CPU has and how fast each format runs on it (faked
here), applied part by part, reported; and the bfloat16 format runs and stays close to float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from blip.engine import Engine
from blip.kernels import fastmode
from blip.kernels.bf16 import Bfloat16Linear
from blip.loading.tokenizer import DEC_ID
from blip.loading.uploads import open_upload

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
AVX2 = ["AVX2"]
BF16 = ["AVX2", "AVX-512", "AVX-512 BF16"]
AMX = ["AVX2", "AVX-512", "AMX", "AMX BF16"]

pytestmark = pytest.mark.unit


def never_timed():
    raise AssertionError("a CPU without bfloat16 instructions must not time bfloat16")


def timings(many: tuple[float, float], decoder: tuple[float, float]):
    """A fake timer: (int8, bfloat16) seconds for the many-rows parts and the decoder."""
    return lambda: {("many rows", "int8"): many[0], ("many rows", "bfloat16"): many[1],
                    ("decoder", "int8"): decoder[0], ("decoder", "bfloat16"): decoder[1]}  # fmt: skip


def test_a_cpu_without_bfloat16_gets_int8_untimed():
    plan = fastmode.plan_for("auto", AVX2, never_timed)
    assert (plan.many_rows, plan.decoder) == ("int8", "int8")
    assert plan.describe() == "int8 linear layers (no bfloat16 instructions on this CPU)"


@pytest.mark.parametrize("sets", [BF16, AMX])
def test_a_bfloat16_cpu_gets_the_faster_format_per_part(sets):
    plan = fastmode.plan_for("auto", sets, timings(many=(0.9, 0.4), decoder=(0.02, 0.03)))
    assert (plan.many_rows, plan.decoder) == ("bfloat16", "int8")
    assert plan.describe().startswith("vision and text encoders in bfloat16, decoder in int8")
    plan = fastmode.plan_for("auto", sets, timings(many=(0.3, 0.4), decoder=(0.02, 0.03)))
    assert (plan.many_rows, plan.decoder) == ("int8", "int8")


def test_a_named_plan_is_taken_as_is_and_a_wrong_one_refused():
    assert fastmode.plan_for("bfloat16", AVX2, never_timed).decoder == "bfloat16"
    with pytest.raises(ValueError, match="fast mode must be one of"):
        fastmode.plan_for("float8", AMX, never_timed)
    with pytest.raises(ValueError, match="fast must be"):
        Engine(device="cpu", demo="always", fast="float8")


def test_bfloat16_linear_is_close_to_float32():
    torch.manual_seed(0)
    layer, x = nn.Linear(64, 32), torch.randn(5, 64)
    with torch.no_grad():
        out = Bfloat16Linear(layer)(x)
        assert out.dtype == torch.float32 and out.shape == (5, 32)
        torch.testing.assert_close(out, layer(x), rtol=2e-2, atol=2e-2)


def test_a_mixed_plan_puts_each_part_in_its_format():
    model = Engine(device="cpu", demo="always").model("caption-base").model
    mixed = fastmode.apply_plan(model, fastmode.FastPlan("bfloat16", "int8", "test"))
    vision = {type(m) for m in mixed.vision_model.modules()}
    decoder = {type(m) for m in mixed.text_decoder.modules()}
    assert Bfloat16Linear in vision and nn.Linear not in vision
    assert Bfloat16Linear not in decoder and nn.Linear not in decoder
    assert any("quantized" in k.__module__ for k in decoder)
    assert any(type(m) is nn.Linear for m in model.modules())  # the original is untouched


def test_the_status_names_the_plan():
    assert Engine(device="cpu", demo="always").fast_mode() is None
    fast = Engine(device="cpu", demo="always", fast="bfloat16")
    assert fast.fast and fast.fast_mode() == "bfloat16 linear layers (chosen by the caller)"


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    return Engine(device="cpu", demo="always"), Engine(device="cpu", demo="always", fast="bfloat16")


# Measured on the demo captioner, 30 held-out shapes scenes, every position of the greedy caption:
# the lowest logit cosine was 0.999985 (int8's, for comparison, 0.99919).
COSINE_BAR = 0.9999


def test_bfloat16_mode_runs_and_stays_close(engines):
    full, fast = engines
    for path in SHAPES:
        image = open_upload(path)
        a = full.caption(image).captions[0]
        b = fast.caption(image).captions[0]
        assert b.text == a.text
        ids = torch.tensor([[DEC_ID, *[t.token_id for t in a.tokens]]])
        with torch.inference_mode():
            logits = [
                on.model("caption-base").model.text_decoder(
                    ids, on.image_embeds(on.model("caption-base"), image)[0]
                )[0][0]
                for on in (full, fast)
            ]
        live = (logits[0] > -1e3).float()  # ids the demo checkpoint switched off would flatter the cosine
        cosine = torch.nn.functional.cosine_similarity(logits[0] * live, logits[1] * live, dim=-1)
        assert cosine.min().item() >= COSINE_BAR
        question = "how many shapes are there?"
        assert fast.answer(image, question).answers[0].text == full.answer(image, question).answers[0].text


def test_bfloat16_mode_heatmaps_use_the_float32_twin(engines):
    _, fast = engines
    caption = fast.caption(open_upload(SHAPES[0]), explain_tokens=True).captions[0]
    assert caption.heatmaps.gradcam is not None
    assert fast.model("caption-base").gradient_model is fast.model("caption-base").explainer


def test_the_status_line_reports_the_plan(engines):
    from ui.services import Services
    from ui.status import status_text

    def services(engine: Engine) -> Services:
        return Services(engine=engine, open_image=open_upload, overlay=lambda *a, **k: None, models={})

    full, fast = engines
    assert "fast mode" not in status_text(services(full))
    assert "· **fast mode** bfloat16 linear layers (chosen by the caller)" in status_text(services(fast))
