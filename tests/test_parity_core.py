"""Ours vs transformers on the same checkpoint files: every intermediate a task uses, float32, 1e-4.

Both sides read the same files (each Hub layout); images go through each side's own preprocessing and
texts through each side's own tokenizer, so the whole path from PIL image and string is compared.
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_image
from oracle_checkpoints import LAYOUTS, load_oracle, oracle_image_processor, oracle_tokenizer

import blip

pytestmark = pytest.mark.parity
TOL = 1e-4  # the product's bar: logits and states within 1e-4 of the reference
DEC, ENC = 30522, 30523

CASES = [(size, layout) for size in ("tiny",) for layout in LAYOUTS] + [
    pytest.param("base", "tied", marks=pytest.mark.fullsize),
    pytest.param("base", "bin", marks=pytest.mark.fullsize),
]


def _pair(checkpoints, task: str, size: str, layout: str):
    directory = checkpoints.get(task, size, layout)
    return blip.load(directory), load_oracle(directory, task)


def _images(loaded, count: int, seed: int = 0):
    images = [random_image(seed + i, size=(100 + 17 * i, 80 + 9 * i)) for i in range(count)]
    ours = loaded.pixels(images)
    reference = oracle_image_processor(loaded.image_size)(images, return_tensors="pt").pixel_values
    assert torch.equal(ours, reference), "preprocessing must be bit-exact before models are compared"
    return ours


def _tokens(loaded, texts: list[str]):
    ids, mask = loaded.tokenizer.encode_batch(texts)
    reference = oracle_tokenizer()(texts, padding="longest", return_tensors="pt")
    assert torch.equal(ids, reference.input_ids) and torch.equal(mask, reference.attention_mask)
    return ids, mask


def _check(record_parity, name: str, ours, reference) -> None:
    assert ours.shape == reference.shape, name
    diff = record_parity(name, ours, reference)
    assert diff <= TOL, f"{name}: max |diff| {diff:.3e} > {TOL}"


@pytest.mark.parametrize(("size", "layout"), CASES)
@torch.no_grad()
def test_captioning(checkpoints, record_parity, size, layout):
    loaded, oracle = _pair(checkpoints, "caption", size, layout)
    model = loaded.model
    pixels = _images(loaded, 2)

    image_embeds = model.encode_image(pixels)
    _check(
        record_parity, f"{size} vision output", image_embeds, oracle.vision_model(pixels).last_hidden_state
    )

    # Without a prompt the caption starts at [DEC]; with one, [DEC] replaces the prompt's [CLS].
    for label, texts in (
        ("no prompt", ["a dog running on the beach", "two cats"]),
        ("prompt", ["a picture of a woman and her dog", "a picture of"]),
    ):
        ids, mask = _tokens(loaded, texts)
        ids[:, 0] = DEC
        ours, _ = model.decoder_logits(image_embeds, ids, mask)
        reference = oracle(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
        _check(record_parity, f"{size} caption logits ({label})", ours, reference)

    # One image shared by several captions (no copy of its tokens) gives the same logits.
    ids, mask = _tokens(loaded, ["a red car", "a picture of a small house"])
    ids[:, 0] = DEC
    shared, _ = model.decoder_logits(image_embeds[:1], ids, mask)
    reference = oracle(
        pixel_values=pixels[:1].expand(2, -1, -1, -1), input_ids=ids, attention_mask=mask
    ).logits
    _check(record_parity, f"{size} caption logits (shared image)", shared, reference)


@pytest.mark.parametrize(("size", "layout"), CASES)
@torch.no_grad()
def test_question_answering(checkpoints, record_parity, size, layout):
    loaded, oracle = _pair(checkpoints, "vqa", size, layout)
    model = loaded.model
    pixels = _images(loaded, 2, seed=5)
    image_embeds = model.encode_image(pixels)
    _check(
        record_parity, f"{size} vision output", image_embeds, oracle.vision_model(pixels).last_hidden_state
    )

    q_ids, q_mask = _tokens(loaded, ["how many dogs are in the picture?", "what colour is it?"])
    ours_q = model.encode_question(image_embeds, q_ids, q_mask).hidden_states
    reference_q = oracle.text_encoder(
        input_ids=q_ids,
        attention_mask=q_mask,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
    ).last_hidden_state
    _check(record_parity, f"{size} VQA question states", ours_q, reference_q)

    a_ids, a_mask = _tokens(loaded, ["two", "light blue"])
    a_ids[:, 0] = DEC
    ours, _ = model.answer_logits(reference_q, a_ids, answer_mask=a_mask)
    # transformers 5.24 never applies a cross-attention mask (its cross-attention drops the argument),
    # so the answer decoder sees padded question positions whatever mask is passed; generate() passes
    # all ones anyway. Both calls are checked so a change in the reference is noticed here.
    for label, q_att in (("question mask", q_mask), ("all-ones mask", torch.ones_like(q_mask))):
        reference = oracle.text_decoder(
            input_ids=a_ids,
            attention_mask=a_mask,
            encoder_hidden_states=reference_q,
            encoder_attention_mask=q_att,
        ).logits
        _check(record_parity, f"{size} VQA answer logits (reference given {label})", ours, reference)


@pytest.mark.parametrize(("size", "layout"), CASES)
@torch.no_grad()
def test_retrieval(checkpoints, record_parity, size, layout):
    loaded, oracle = _pair(checkpoints, "retrieval", size, layout)
    model = loaded.model
    pixels = _images(loaded, 3, seed=11)
    image_embeds = model.encode_image(pixels)
    _check(
        record_parity, f"{size} vision output", image_embeds, oracle.vision_model(pixels).last_hidden_state
    )

    texts = ["a woman and her dog sitting on a beach", "a red bus", "two cats sleeping on a couch", "snow"]
    ids, mask = _tokens(loaded, texts)

    # ITM: one image against every text; ours shares the image tokens, the oracle repeats the image.
    ours_itm, _ = model.itm_logits(image_embeds[:1], ids, mask)
    reference_itm = oracle(
        input_ids=ids, pixel_values=pixels[:1].expand(len(texts), -1, -1, -1), attention_mask=mask
    ).itm_score
    _check(record_parity, f"{size} ITM logits", ours_itm, reference_itm)

    # BLIP's own convention puts [ENC] first; the arithmetic must agree for that input too.
    enc_ids = ids.clone()
    enc_ids[:, 0] = ENC
    ours_enc, _ = model.itm_logits(image_embeds[:1], enc_ids, mask)
    reference_enc = oracle(
        input_ids=enc_ids, pixel_values=pixels[:1].expand(len(texts), -1, -1, -1), attention_mask=mask
    ).itm_score
    _check(record_parity, f"{size} ITM logits ([ENC] first)", ours_enc, reference_enc)

    # ITC: the full image x text cosine matrix.
    ours_itc = model.itc_similarity(image_embeds, ids, mask)
    reference_itc = oracle(
        input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False
    ).itm_score
    assert ours_itc.shape == (3, len(texts))
    _check(record_parity, f"{size} ITC similarity", ours_itc, reference_itc)


@pytest.mark.parametrize(
    ("size", "shapes"),
    [
        ("tiny", [(64, 64), (40, 56)]),
        pytest.param("base", [(224, 224)], marks=pytest.mark.fullsize),
    ],
)
@torch.no_grad()
def test_other_input_sizes_interpolate_positions(checkpoints, record_parity, size, shapes):
    loaded, oracle = _pair(checkpoints, "caption", size, "tied")
    for h, w in shapes:
        pixels = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
        ours = loaded.model.encode_image(pixels)
        reference = oracle.vision_model(pixels, interpolate_pos_encoding=True).last_hidden_state
        patch = loaded.model.config.vision.patch_size
        assert ours.shape[1] == 1 + (h // patch) * (w // patch)
        _check(record_parity, f"{size} vision output at other sizes", ours, reference)
