"""Several images decoded together give each image exactly what it gets alone: the same token ids,
log-probabilities, scores and attention maps, for greedy and beam search, with and without a prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_image
from PIL import Image

import blip
from blip.generation import DecodingOptions
from blip.generation.tasks import caption, caption_many

pytestmark = pytest.mark.unit
PROMPT = "a picture of"
ROOT = Path(__file__).resolve().parents[1]

OPTIONS = [
    DecodingOptions(max_new_tokens=20),
    DecodingOptions(max_new_tokens=20, repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=3),
    DecodingOptions(strategy="beam", num_beams=3, max_new_tokens=20),
    DecodingOptions(strategy="beam", num_beams=4, num_sequences=2, length_penalty=0.6, early_stopping=True),
    DecodingOptions(strategy="beam", num_beams=2, early_stopping="never", repetition_penalty=1.2),
    DecodingOptions(strategy="sample", seed=5, num_sequences=2, top_k=20),
]


def _same(alone, together) -> None:
    """Two lists of GeneratedText for one image: identical ids, matching details."""
    assert [t.sequence.token_ids for t in together] == [t.sequence.token_ids for t in alone]
    assert [t.text for t in together] == [t.text for t in alone]
    for a, b in zip(alone, together, strict=True):
        assert b.sequence.finished == a.sequence.finished
        assert b.sequence.score == pytest.approx(a.sequence.score, abs=1e-4)
        assert torch.allclose(
            torch.tensor(b.sequence.token_logprobs), torch.tensor(a.sequence.token_logprobs), atol=1e-4
        )
        assert [[i for i, _ in step] for step in b.sequence.alternatives] == [
            [i for i, _ in step] for step in a.sequence.alternatives
        ]
        if a.sequence.cross_attentions is not None:
            assert (b.sequence.cross_attentions - a.sequence.cross_attentions).abs().max() <= 1e-5


@torch.no_grad()
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o.strategy}-{o.num_beams}-{o.num_sequences}")
@pytest.mark.parametrize("prompt", ["", PROMPT])
def test_a_batch_gives_each_image_its_own_captions(checkpoints, options, prompt):
    lengths = set()
    for seed in (0, 1):
        loaded = blip.load(checkpoints.decoding("caption", seed))
        images = [random_image(500 + seed * 10 + i) for i in range(5)]
        embeds = loaded.model.encode_image(loaded.pixels(images))  # (5, N, D): one vision pass
        together = caption_many(loaded.model, loaded.tokenizer, embeds, prompt, options)
        assert len(together) == len(images)
        for i in range(len(images)):
            alone = caption(loaded.model, loaded.tokenizer, embeds[i : i + 1], prompt, options)
            _same(alone, together[i])
            lengths.update(len(t.sequence.token_ids) for t in alone)
    # Rows finish at different steps, so images leave the batch while others still run.
    assert len(lengths) >= 3, sorted(lengths)


@torch.no_grad()
@pytest.mark.parametrize(
    "options",
    [
        DecodingOptions(output_attentions=True),
        DecodingOptions(strategy="beam", num_beams=3, output_attentions=True),
    ],
    ids=["greedy", "beam"],
)
def test_a_batch_returns_each_image_its_attention_and_runs_without_cache(checkpoints, options):
    loaded = blip.load(checkpoints.decoding("caption", 2))
    images = [random_image(600 + i) for i in range(4)]
    embeds = loaded.model.encode_image(loaded.pixels(images))
    together = caption_many(loaded.model, loaded.tokenizer, embeds, PROMPT, options)
    uncached = caption_many(
        loaded.model,
        loaded.tokenizer,
        embeds,
        PROMPT,
        DecodingOptions(**{**vars(options), "use_cache": False}),
    )
    for i in range(len(images)):
        alone = caption(loaded.model, loaded.tokenizer, embeds[i : i + 1], PROMPT, options)
        _same(alone, together[i])
        assert [t.sequence.token_ids for t in uncached[i]] == [t.sequence.token_ids for t in alone]


@pytest.mark.fullsize
@torch.no_grad()
def test_full_size_batch_matches_one_by_one(checkpoints):
    loaded = blip.load(checkpoints.get("caption", "base"))
    images = [random_image(700 + i, size=(320, 240)) for i in range(3)]
    embeds = loaded.model.encode_image(loaded.pixels(images))
    for options, prompt in [
        (DecodingOptions(max_new_tokens=20), ""),
        (DecodingOptions(strategy="beam", num_beams=3), ""),
        (DecodingOptions(strategy="beam", num_beams=3), PROMPT),
    ]:
        together = caption_many(loaded.model, loaded.tokenizer, embeds, prompt, options)
        for i in range(len(images)):
            _same(caption(loaded.model, loaded.tokenizer, embeds[i : i + 1], prompt, options), together[i])


def test_engine_caption_batch_streams_each_images_own_captions_in_order():
    from blip.engine import Engine

    engine = Engine(device="cpu", demo="always")
    scenes = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
    images = [Image.open(path).convert("RGB") for path in scenes] * 2  # repeats: cached or not, same
    for options in (None, {"strategy": "beam", "num_beams": 3}, {"strategy": "sample", "seed": 1}):
        alone = [engine.caption(image, options=options).captions for image in images]
        runs = engine.vision_runs
        results = list(engine.caption_batch(iter(images), options=options, prompt="", batch_size=3))
        assert engine.vision_runs - runs <= -(-len(images) // 3)  # at most one vision pass per batch
        assert [[c.text for c in r.captions] for r in results] == [[c.text for c in a] for a in alone]
        assert all(r.offline_demo and r.timings["total"] > 0 for r in results)
    with pytest.raises(ValueError, match="batch_size must be between 1 and 64"):
        engine.caption_batch(images, batch_size=0)
    with pytest.raises(ValueError, match="captioning needs a CaptionModel"):
        engine.caption_batch(images, model="vqa-base")
