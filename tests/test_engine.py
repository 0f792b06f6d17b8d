"""The engine: caches, concurrency, explanations against independent computations, zero-shot maths."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_image
from oracle_checkpoints import load_oracle
from PIL import Image

import blip
from blip.engine import Engine
from blip.explain.render import overlay
from blip.generation import DecodingOptions
from blip.loading.hub import UnknownModelError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def local_models(checkpoints) -> dict[str, str]:
    return {
        "cap": checkpoints.decoding("caption", 0),
        "vqa": checkpoints.decoding("vqa", 0),
        "itm": checkpoints.get("retrieval"),
        "itm2": checkpoints.get("retrieval", seed=1),
    }


def _engine(local_models, **kwargs) -> Engine:
    return Engine(device="cpu", local_models=local_models, **kwargs)


def test_image_tokens_are_cached_per_picture_and_model(local_models):
    engine = _engine(local_models, image_cache_size=2)
    a, b, c = random_image(1), random_image(2), random_image(3)
    first = engine.answer(a, "what is it?", model="vqa")
    assert engine.vision_runs == 1 and not first.image_cached
    second = engine.answer(a.copy(), "what colour is it?", model="vqa")  # same content, new object
    assert (
        engine.vision_runs == 1 and second.image_cached and second.timings["vision"] < first.timings["vision"]
    )
    engine.answer(b, "what is it?", model="vqa")
    assert engine.vision_runs == 2
    engine.match(a, ["a dog"], model="itm")  # another model: its own encoding
    assert engine.vision_runs == 3
    engine.answer(c, "what is it?", model="vqa")  # bound 2: the oldest entry goes
    engine.answer(a, "what is it?", model="vqa")
    assert engine.vision_runs == 5


def test_exif_orientation_is_part_of_the_image_key(local_models):
    engine = _engine(local_models)
    image = random_image(4)
    rotated = image.copy()
    rotated.getexif()[0x0112] = 6
    engine.match(image, ["x"], model="itm")
    assert engine.match(rotated, ["x"], model="itm").image_cached is False


def test_model_cache_is_bounded_and_names_are_checked(local_models):
    engine = _engine(local_models, max_models=1)
    engine.match(random_image(0), ["a cat"], model="itm")
    engine.match(random_image(0), ["a cat"], model="itm2")
    assert engine.loaded_models() == ["itm2"]
    engine.match(random_image(0), ["a cat"], model="itm")
    assert engine.load_counts == {"itm": 2, "itm2": 1}
    with pytest.raises(UnknownModelError):
        engine.model("/etc")  # paths are not names: users cannot load arbitrary directories
    with pytest.raises(ValueError, match="captioning needs a CaptionModel"):
        engine.caption(random_image(0), model="itm")


def test_concurrent_mixed_requests_match_sequential_and_load_once(local_models):
    loads = []

    def slow_loader(*args, **kwargs):
        loads.append(args[0])
        time.sleep(0.3)  # widen the window in which a second load could start
        return blip.load(*args, **kwargs)

    images = [random_image(10 + i) for i in range(4)]
    jobs = []
    for i in range(16):
        image = images[i % 4]
        kind = i % 4
        if kind == 0:
            jobs.append(("caption", lambda e, im=image, s=i: e.caption(im, model="cap", options=DecodingOptions(
                strategy="beam" if s % 8 == 0 else "greedy"))))  # fmt: skip
        elif kind == 1:
            jobs.append(("answer", lambda e, im=image: e.answer(im, "what is this?", model="vqa")))
        elif kind == 2:
            jobs.append(
                ("match", lambda e, im=image: e.match(im, ["a dog", "two cats on a sofa"], model="itm"))
            )
        else:
            jobs.append(("classify", lambda e, im=image: e.classify(im, ["dog", "cat", "car"], model="itm")))

    def summary(kind, result):
        if kind == "caption":
            return [c.text for c in result.captions], [round(c.score, 4) for c in result.captions]
        if kind == "answer":
            return [a.text for a in result.answers]
        if kind == "match":
            return [(round(r.itm_probability, 5), round(r.itc_cosine, 5)) for r in result.rows]
        return [(s.label, round(s.probability, 5)) for s in result.labels]

    sequential = [summary(kind, job(_engine(local_models))) for kind, job in jobs]
    engine = _engine(local_models, loader=slow_loader)
    barrier = threading.Barrier(16)

    def run(index):
        barrier.wait()
        kind, job = jobs[index]
        return summary(kind, job(engine))

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(run, range(16)))
    assert concurrent == sequential
    assert sorted(map(str, loads)) == sorted(map(str, [local_models[n] for n in ("cap", "vqa", "itm")]))
    assert dict(engine.load_counts) == {"cap": 1, "vqa": 1, "itm": 1}


@pytest.mark.parity
def test_match_without_itc_gives_the_same_match_probabilities(local_models):
    engine = _engine(local_models)
    image, texts = random_image(31), ["a small red circle", "two dogs", "a blue square"]
    both = engine.match(image, texts, model="itm", first_token="[CLS]")
    itm_only = engine.match(image, texts, model="itm", first_token="[CLS]", itc=False)
    assert [r.itm_probability for r in itm_only.rows] == [r.itm_probability for r in both.rows]
    assert [r.itc_cosine for r in itm_only.rows] == [None] * 3
    assert all(-1.0 <= r.itc_cosine <= 1.0 for r in both.rows)


def test_match_attention_and_gradcam_equal_independent_computations(local_models):
    engine = _engine(local_models)
    image = random_image(30)
    texts = ["a small red circle", "two dogs"]
    result = engine.match(image, texts, model="itm", first_token="[CLS]", explain_words=True)
    loaded = engine.model("itm")
    oracle = load_oracle(local_models["itm"], "retrieval")
    pixels = loaded.pixels(image)
    ids, mask = loaded.tokenizer.encode_batch(texts)
    with torch.enable_grad():
        embeds = oracle.vision_model(pixels).last_hidden_state.detach().expand(len(texts), -1, -1)
        out = oracle.text_encoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=embeds,
            encoder_attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            output_attentions=True,
        )
        logits = oracle.itm_head(out.last_hidden_state[:, 0])
        grads = torch.autograd.grad(logits[:, 1].sum(), out.cross_attentions)
    for row, text in enumerate(texts):
        maps = result.rows[row].heatmaps
        assert maps.grid == (6, 6) and maps.attention.shape[-1] == 36
        real = int(mask[row].sum())
        attention = torch.stack([a[row] for a in out.cross_attentions]).permute(2, 0, 1, 3)[..., 1:]
        cam = torch.stack(
            [(a[row] * g[row].clamp(min=0)) for a, g in zip(out.cross_attentions, grads, strict=True)]
        )
        cam = cam.permute(2, 0, 1, 3)[..., 1:]
        np.testing.assert_allclose(maps.attention[:real], attention[:real].detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(maps.gradcam[:real], cam[:real].detach().numpy(), atol=1e-6)
        words = [w.text for w in maps.words]
        assert words == text.split()
        assert maps.grid_map().shape == (6, 6)
        assert maps.grid_map(word=0, layer=1, head=2, kind="gradcam").shape == (6, 6)


@pytest.mark.parity
def test_caption_gradcam_equals_independent_autograd(local_models):
    engine = _engine(local_models)
    image = random_image(31)
    result = engine.caption(image, model="cap", prompt="a picture of", explain_tokens=True)
    caption = result.captions[0]
    loaded = engine.model("cap")
    oracle = load_oracle(local_models["cap"], "caption")
    prefix = [30522, *loaded.tokenizer.encode("a picture of")[1:-1]]
    ids = torch.tensor([prefix + [t.token_id for t in caption.tokens]])
    with torch.enable_grad():
        embeds = oracle.vision_model(loaded.pixels(image)).last_hidden_state.detach()
        out = oracle.text_decoder(input_ids=ids, encoder_hidden_states=embeds, output_attentions=True)
        logprobs = out.logits[0].log_softmax(-1)
        for k in range(len(caption.tokens)):
            t = len(prefix) + k
            grads = torch.autograd.grad(logprobs[t - 1, ids[0, t]], out.cross_attentions, retain_graph=True)
            expected = torch.stack(
                [
                    a[0, :, t - 1] * g[0, :, t - 1].clamp(min=0)
                    for a, g in zip(out.cross_attentions, grads, strict=True)
                ]
            )[..., 1:]
            np.testing.assert_allclose(caption.heatmaps.gradcam[k], expected.detach().numpy(), atol=1e-6)
    # Per-word maps cover the generated words; the final [SEP] is not a word.
    pieces = [t.token for t in caption.tokens if t.token != "[SEP]"]
    words = [w.text for w in caption.heatmaps.words]
    assert "".join(words) == "".join(p.removeprefix("##") for p in pieces)
    assert len(words) == len([p for p in pieces if not p.startswith("##")])


def test_answer_heatmaps_cover_question_and_answer(local_models):
    engine = _engine(local_models)
    result = engine.answer(random_image(32), "what colour is the square?", model="vqa", explain_tokens=True)
    q = result.question_heatmaps
    assert [w.text for w in q.words] == ["what", "colour", "is", "the", "square", "?"]
    assert q.grid_map(word=4, kind="gradcam").shape == (6, 6)
    answer = result.answers[0]
    assert answer.heatmaps is not None and answer.heatmaps.attention.shape[0] == len(answer.tokens)
    routed = answer.heatmaps.attention  # attention routed through the question: still a distribution
    np.testing.assert_allclose(routed.sum(-1), np.ones(routed.shape[:-1]), atol=0.05)


@pytest.mark.parametrize("scoring", ["itc", "itm", "itc+itm"])
def test_zero_shot_probabilities_match_direct_computation(local_models, scoring):
    engine = _engine(local_models)
    image = random_image(40)
    labels = ["dog", "cat", "red car", "tree", "house", "boat", "cat"]  # a duplicate, removed
    result = engine.classify(image, labels, model="itm", scoring=scoring, temperature=0.1, shortlist=3)
    probs = {s.label: s.probability for s in result.labels}
    assert list(probs) == sorted(probs, key=probs.get, reverse=True) and len(probs) == 6
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)

    loaded = engine.model("itm")
    unique = list(dict.fromkeys(labels))
    texts = [f"a picture of {label}" for label in unique]
    with torch.no_grad():
        embeds = loaded.model.encode_image(loaded.pixels(image))
        ids, mask = loaded.tokenizer.encode_batch(texts)
        cos = loaded.model.itc_similarity(embeds, ids, mask)[0]
        enc = ids.clone()
        enc[:, 0] = 30523
        itm = loaded.model.itm_logits(embeds.expand(len(texts), -1, -1), enc, mask)[0][:, 1]
    if scoring == "itc":
        expected = (cos / 0.1).softmax(0)
    elif scoring == "itm":
        expected = itm.softmax(0)
    else:
        top = cos.topk(3).indices
        expected = torch.zeros(len(texts))
        expected[top] = itm[top].softmax(0)
    for label, p in zip(unique, expected.tolist(), strict=True):
        assert probs[label] == pytest.approx(p, abs=1e-5)


def test_overlay_has_the_picture_size_and_respects_opacity(local_models):
    engine = _engine(local_models)
    image = random_image(50, size=(173, 91))
    rows = engine.match(image, ["a blue sky"], model="itm", explain_words=True).rows
    heat = rows[0].heatmaps.grid_map(kind="gradcam")
    picture = overlay(image, heat, opacity=0.0)
    assert picture.size == image.size and np.array_equal(np.asarray(picture), np.asarray(image))
    assert overlay(image, heat, opacity=0.7, blur=2).size == image.size
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, heat, opacity=1.5)


def test_results_serialise_without_heatmaps(local_models):
    import json

    engine = _engine(local_models)
    result = engine.caption(random_image(60), model="cap", explain_tokens=True)
    data = result.to_dict()
    json.dumps(data)
    assert "heatmaps" not in data["captions"][0] and data["decoding"]["strategy"] == "greedy"
    assert data["captions"][0]["tokens"][0]["token_id"] == result.captions[0].tokens[0].token_id


def test_second_question_reuses_the_image_cross_attention_and_answers_the_same():
    shapes_dir = Path(__file__).resolve().parents[1] / "assets" / "examples" / "shapes"
    image = Image.open(sorted(shapes_dir.glob("*.png"))[1]).convert("RGB")
    warm, cold = Engine(device="cpu", demo="always"), Engine(device="cpu", demo="always")
    warm.answer(image, "how many shapes are there?")
    assert len(warm._question_cross) == 1
    for question in ("what colour is the circle?", "what shape is at the bottom?"):
        a = warm.answer(image, question, options={"strategy": "beam", "num_beams": 3}).answers[0]
        b = cold.answer(image, question, options={"strategy": "beam", "num_beams": 3}).answers[0]
        assert a.text == b.text and a.score == pytest.approx(b.score, abs=1e-6)
    assert len(warm._question_cross) == 1  # one picture, one entry
