"""The shipped offline demo models (assets/demo): their bars on held-out scenes, parity with the oracle
on the shipped files, and the engine's fallback to them when the Hub cannot be reached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from oracle_checkpoints import load_oracle

import blip
from blip.engine import DEMO_MODELS, DEMO_NOTICE, Engine
from blip.generation import tasks

ROOT = Path(__file__).resolve().parents[1]
import shapes_eval  # noqa: E402
import shapes_world as shapes  # noqa: E402

TASKS = {"caption": "caption", "vqa": "vqa", "retrieval": "retrieval"}


def test_demo_checkpoints_are_shipped():
    for task, directory in DEMO_MODELS.items():
        for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
            assert (directory / name).is_file(), f"missing {directory / name}: run scripts/train_shapes.py"
        assert blip.read_config(directory).vision.image_size == shapes.IMAGE_SIZE, task


def test_demo_checkpoints_fit_in_40_mib():
    total = sum((directory / "model.safetensors").stat().st_size for directory in DEMO_MODELS.values())
    assert total <= 40 * 2**20, f"demo weights take {total / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    return shapes_eval.evaluate(shapes_eval.demo_engine(), count=200)


@pytest.mark.parametrize("measure", list(shapes_eval.BARS))
def test_demo_model_meets_its_bar(figures, measure):
    assert figures[measure] >= shapes_eval.BARS[measure], shapes_eval.report(figures)


@pytest.mark.parametrize("measure", list(shapes_eval.CEILINGS))
def test_demo_model_stays_under_its_ceiling(figures, measure):
    assert figures[measure] <= shapes_eval.CEILINGS[measure], shapes_eval.report(figures)


@pytest.mark.parity
@pytest.mark.parametrize("task", list(TASKS))
@torch.no_grad()
def test_oracle_reproduces_our_outputs_on_the_shipped_files(task):
    directory = DEMO_MODELS[task]
    ours, oracle = blip.load(directory), load_oracle(directory, TASKS[task])
    scenes = list(shapes.scene_stream(7, 3))
    pixels = ours.pixels([s.image for s in scenes])
    embeds = ours.model.encode_image(pixels)
    assert (embeds - oracle.vision_model(pixels).last_hidden_state).abs().max() <= 1e-4
    if task == "caption":
        ids, mask = ours.tokenizer.encode_batch([s.caption for s in scenes])
        ids[:, 0] = 30522
        logits, _ = ours.model.decoder_logits(embeds, ids, mask)
        reference = oracle(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
        assert (logits - reference).abs().max() <= 1e-4
        generated = tasks.caption(ours.model, ours.tokenizer, embeds[:1])[0].sequence.token_ids
        expected = oracle.generate(pixel_values=pixels[:1], max_new_tokens=20)[0, 1:].tolist()
        assert generated == [t for t in expected if t != 0]
    elif task == "vqa":
        question = "what colour is the circle?"
        states = tasks.encode_question(ours.model, ours.tokenizer, embeds[:1], question, 101)
        generated = tasks.answer(ours.model, ours.tokenizer, states)[0].sequence.token_ids
        q_ids = torch.tensor([ours.tokenizer.encode(question)])
        expected = oracle.generate(input_ids=q_ids, pixel_values=pixels[:1], max_new_tokens=10)[
            0, 1:
        ].tolist()
        assert generated == [t for t in expected if t != 0]
    else:
        texts = [s.caption for s in scenes]
        ids, mask = ours.tokenizer.encode_batch(texts)
        itm, _ = ours.model.itm_logits(embeds, ids, mask)
        reference = oracle(input_ids=ids, pixel_values=pixels, attention_mask=mask).itm_score
        assert (itm - reference).abs().max() <= 1e-4
        itc = ours.model.itc_similarity(embeds, ids, mask)
        reference = oracle(
            input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False
        ).itm_score
        assert (itc - reference).abs().max() <= 1e-4


def test_red_circle_is_captioned_and_pointed_at():
    engine = shapes_eval.demo_engine()
    scene = next(
        s
        for s in shapes.scene_stream(99, 500, num_shapes=2)
        if any(x.kind == "circle" and x.colour == "red" for x in s.shapes)
    )
    result = engine.caption(scene.image, model="caption", explain_tokens=True)
    item = result.captions[0]
    assert item.text == scene.caption and "red circle" in item.text
    index = next(i for i, w in enumerate(item.heatmaps.words) if w.text == "circle")
    heat = item.heatmaps.grid_map(word=index)
    box = next(b for word, b in shapes.shape_mentions(scene) if word == "circle")
    assert shapes_eval._points_at(heat, box, scene.image.size)


def test_engine_falls_back_to_the_demo_model_when_the_hub_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    engine = Engine(device="cpu")
    scene = next(shapes.scene_stream(5, 1, num_shapes=1))
    result = engine.caption(scene.image, model="caption-base")
    assert result.offline_demo and result.notices[0] == DEMO_NOTICE
    assert result.captions[0].text == scene.caption
    colours = list(shapes.COLOURS)
    classified = engine.classify(scene.image, colours, model="itm-base-coco", template="a {} shape")
    assert classified.offline_demo and classified.labels[0].label == scene.shapes[0].colour
    with pytest.raises(blip.CheckpointUnavailableError):
        Engine(device="cpu", demo="never").caption(scene.image, model="caption-base")
    assert np.isfinite(result.timings["total"])
