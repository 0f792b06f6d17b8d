"""Checking a caption: the matcher's verdict is exactly what ``match`` says of that text, and a
caption's likelihood is a teacher-forced pass of the captioner (for the model's own caption, exactly
the log-probabilities decoding reported), with its heatmaps those of the same pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_image

from blip.engine import Engine
from blip.explain import gradcam

pytestmark = pytest.mark.unit
DEC = 30522


@pytest.fixture(scope="module")
def engine(checkpoints) -> Engine:
    local = {"cap": checkpoints.decoding("caption", 0), "itm": checkpoints.get("retrieval")}
    return Engine(device="cpu", local_models=local)


def test_check_caption_is_the_match_of_that_text(engine):
    image = random_image(40)
    for first_token in ("[ENC]", "[CLS]"):
        check = engine.check_caption(image, "  a red car\x00 ", model="itm", first_token=first_token)
        row = engine.match(image, ["a red car"], model="itm", first_token=first_token).rows[0]
        assert check.text == "a red car" and check.first_token == first_token
        assert check.itm_probability == row.itm_probability and check.itc_cosine == row.itc_cosine
        assert check.matches == (row.itm_probability >= 0.5) and not check.offline_demo
    explained = engine.check_caption(image, "a red car", model="itm", explain_words=True)
    assert [w.text for w in explained.heatmaps.words] == ["a", "red", "car"]
    with pytest.raises(ValueError, match="empty"):
        engine.check_caption(image, " \t", model="itm")
    with pytest.raises(ValueError, match="needs a RetrievalModel"):
        engine.check_caption(image, "a car", model="cap")


def _teacher(engine, image, prefix: list[int], ids: list[int]):
    """Independent: one pass of decoder_logits over the whole text, with attentions."""
    loaded = engine.model("cap")
    with torch.no_grad():
        embeds = loaded.model.encode_image(loaded.pixels(image))
        full = torch.tensor([prefix + ids])
        logits, out = loaded.model.decoder_logits(embeds, full, output_attentions=True)
    rows = logits[0, len(prefix) - 1 : -1].log_softmax(-1)
    return embeds, rows.gather(-1, full[0, len(prefix) :, None]).squeeze(-1), rows, out, full


@pytest.mark.parametrize("prompt", ["", "a picture of"])
def test_likelihood_of_a_typed_caption_is_a_teacher_forced_pass(engine, prompt):
    image = random_image(41)
    result = engine.caption_likelihood(image, "Two dogs on a bench", model="cap", prompt=prompt)
    loaded = engine.model("cap")
    ids = loaded.tokenizer.encode("two dogs on a bench")[1:]  # wordpieces and the final [SEP]
    prefix = [DEC, *loaded.tokenizer.encode(prompt)[1:-1]] if prompt else [DEC]
    _, expected, rows, _, _ = _teacher(engine, image, prefix, ids)
    assert [t.token_id for t in result.tokens] == ids and result.tokens[-1].token == "[SEP]"
    assert [t.logprob for t in result.tokens] == pytest.approx(expected.tolist(), abs=1e-5)
    assert result.log_likelihood == pytest.approx(float(expected.sum()), abs=1e-4)
    assert result.mean_logprob == pytest.approx(result.log_likelihood / len(ids))
    assert result.perplexity == pytest.approx(math.exp(-result.mean_logprob))
    best = rows.topk(5, dim=-1).indices.tolist()
    assert [t.alternative_ids for t in result.tokens] == best  # what the model would have written instead
    assert result.text == "two dogs on a bench" and result.prompt == prompt


def test_likelihood_of_the_models_own_caption_is_what_decoding_reported(engine):
    for seed in (42, 43, 44):
        image = random_image(seed)
        caption = engine.caption(image, model="cap", prompt="a picture of").captions[0]
        ids = [t.token_id for t in caption.tokens]
        scored = engine.caption_likelihood(image, ids, model="cap", prompt="a picture of")
        assert [t.token_id for t in scored.tokens] == ids
        assert [t.logprob for t in scored.tokens] == pytest.approx(caption.logprobs, abs=1e-5)
        assert scored.log_likelihood == pytest.approx(caption.score, abs=1e-4)  # greedy: the summed logprobs


def test_likelihood_heatmaps_are_the_teacher_forced_passs(engine):
    image = random_image(45)
    result = engine.caption_likelihood(image, "a dog", model="cap", explain_words=True)
    loaded = engine.model("cap")
    ids = loaded.tokenizer.encode("a dog")[1:]
    embeds, _, _, out, full = _teacher(engine, image, [DEC], ids)
    maps = result.heatmaps
    assert [w.text for w in maps.words] == ["a", "dog"] and maps.source == "caption"
    attention = torch.stack([a[0, :, :-1] for a in out.cross_attentions]).permute(2, 0, 1, 3)[..., 1:]
    np.testing.assert_allclose(maps.attention, attention.numpy(), atol=1e-5)
    cams = gradcam.decoder_gradcam(loaded.model.text_decoder, embeds, full, 1)
    np.testing.assert_allclose(maps.gradcam, torch.stack(cams, dim=1)[..., 1:].numpy(), atol=1e-6)


def test_likelihood_refuses_what_it_cannot_score(engine):
    image = random_image(46)
    with pytest.raises(ValueError, match="empty"):
        engine.caption_likelihood(image, "", model="cap")
    with pytest.raises(ValueError, match="token ids"):
        engine.caption_likelihood(image, [], model="cap")
    with pytest.raises(ValueError, match="token ids"):
        engine.caption_likelihood(image, [99999], model="cap")
    with pytest.raises(ValueError, match="needs a CaptionModel"):
        engine.caption_likelihood(image, "a dog", model="itm")
