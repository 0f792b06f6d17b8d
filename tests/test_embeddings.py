"""Embeddings: transformers' ``BlipModel`` checkpoints load as our FeatureModel with the reference's
features and logits (max |diff| <= 1e-4); the engine's batched features equal one-by-one; the
``embed`` command writes them."""

from __future__ import annotations

import json

import oracle_checkpoints
import pytest
import torch
from conftest import random_image
from oracle_checkpoints import load_oracle, oracle_image_processor, oracle_tokenizer

import blip
from blip.engine import Engine
from blip.model import FeatureModel, RetrievalModel
from blip.model.config import ConfigError, config_from_dict

TOL = 1e-4
TEXTS = ["a dog on the grass", "two cats", "a red circle on the left of a very long sentence"]
SIZES = ["tiny", pytest.param("base", marks=pytest.mark.fullsize)]


def _inputs(loaded, count: int):
    images = [random_image(30 + i, size=(90 + 11 * i, 70 + 7 * i)) for i in range(count)]
    pixels = loaded.pixels(images)
    assert torch.equal(
        pixels, oracle_image_processor(loaded.image_size)(images, return_tensors="pt").pixel_values
    )
    ids, mask = loaded.tokenizer.encode_batch(TEXTS)
    reference = oracle_tokenizer()(TEXTS, padding="longest", return_tensors="pt")
    assert torch.equal(ids, reference.input_ids) and torch.equal(mask, reference.attention_mask)
    return images, pixels, ids, mask


@pytest.mark.parity
@pytest.mark.parametrize("size", SIZES)
@torch.no_grad()
def test_blipmodel_checkpoints_give_the_reference_features(checkpoints, record_parity, size):
    directory = checkpoints.get("features", size)
    loaded, oracle = blip.load(directory), load_oracle(directory, "features")
    assert isinstance(loaded.model, FeatureModel)
    _, pixels, ids, mask = _inputs(loaded, 3)
    embeds = loaded.model.encode_image(pixels)

    def reference(output):  # transformers 5 returns a model output whose pooler_output is projected
        return output.pooler_output if hasattr(output, "pooler_output") else output

    checks = {
        "image features": (
            loaded.model.image_embeddings(embeds),
            reference(oracle.get_image_features(pixel_values=pixels)),
        ),
        "text features": (
            loaded.model.text_embeddings(ids, mask),
            reference(oracle.get_text_features(input_ids=ids, attention_mask=mask)),
        ),
        "logits per image": (
            loaded.model.logits_per_image(embeds, ids, mask),
            oracle(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image,
        ),
    }
    for name, (ours, theirs) in checks.items():
        assert ours.shape == theirs.shape, name
        diff = record_parity(f"{size} BlipModel {name}", ours, theirs)
        assert diff <= TOL, f"{name}: max |diff| {diff:.3e} > {TOL}"


@pytest.mark.parity
@torch.no_grad()
def test_blipmodel_without_cross_attention_loads_and_matches(tmp_path, record_parity):
    """``is_decoder: false`` in a BlipModel's text config: no cross-attention tensors in the file, none in
    our model, and the same features as the reference; a task model with such a config is refused."""
    from safetensors import safe_open

    directory = oracle_checkpoints.build_text_only(tmp_path / "text-only", "tiny")
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        names = f.keys()
    assert not [k for k in names if "crossattention" in k]  # the oracle really left them out
    loaded, oracle = blip.load(directory), load_oracle(directory, "features")
    assert not [k for k in loaded.model.state_dict() if "crossattention" in k]
    _, pixels, ids, mask = _inputs(loaded, 2)
    ours = loaded.model.logits_per_image(loaded.model.encode_image(pixels), ids, mask)
    theirs = oracle(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image
    assert record_parity("tiny BlipModel without cross-attention", ours, theirs) <= TOL

    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["BlipForImageTextRetrieval"]
    with pytest.raises(ConfigError, match="no cross-attention"):
        RetrievalModel(config_from_dict(config))


@pytest.mark.unit
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("task", ["retrieval", "features"])
def test_batched_features_equal_one_by_one(checkpoints, task, size):
    directory = checkpoints.get(task, size)
    engine = Engine(device="cpu", local_models={"m": directory}, demo="never", image_cache_size=0)
    images = [random_image(60 + i, size=(120, 90)) for i in range(5)]
    together = engine.image_features(images, "m", batch_size=4)  # a full batch and a partial one
    alone = torch.cat([engine.image_features([image], "m") for image in images])
    assert together.shape[0] == 5 and (together - alone).abs().max() <= 1e-5
    assert torch.allclose(together.norm(dim=-1), torch.ones(5), atol=1e-5)
    texts = engine.text_features(TEXTS, "m", batch_size=2)
    assert (texts - torch.cat([engine.text_features([t], "m") for t in TEXTS])).abs().max() <= 1e-5
    assert torch.allclose(texts.norm(dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.unit
def test_retrieval_features_are_its_itc_cosines(checkpoints):
    directory = checkpoints.get("retrieval", "tiny")
    engine = Engine(device="cpu", local_models={"m": directory}, demo="never")
    image = random_image(5)
    cosines = engine.image_features([image], "m") @ engine.text_features(TEXTS, "m").T
    match = engine.match(image, TEXTS, "m")
    assert torch.allclose(cosines[0], torch.tensor([r.itc_cosine for r in match.rows]), atol=1e-5)


@pytest.mark.unit
def test_bad_embedding_requests_are_explained():
    engine = Engine(device="cpu", demo="always")
    with pytest.raises(ValueError, match="give at least one image"):
        engine.image_features([])
    with pytest.raises(ValueError, match="no empty ones"):
        engine.text_features(["a cat", " "])
    with pytest.raises(ValueError, match="batch_size must be between 1 and 64"):
        engine.image_features([random_image(1)], batch_size=0)
    with pytest.raises(ValueError, match="embedding needs a RetrievalModel or FeatureModel"):
        engine.image_features([random_image(1)], model="caption-base")
