"""CUDA checks: float32 token ids identical to transformers on the GPU (through the recorded CUDA-graph
step), the graph against the eager step, batched captioning, and the drift of float16 / bfloat16.

They need a GPU, which CI does not have: they run only when ``BLIP_DEVICE_CHECK=1`` (set by
``scripts/device_check.sh`` on a GPU machine) and are otherwise skipped with that reason. With the
variable set and no CUDA device they fail rather than skip. ``BLIP_TEST_DEVICE=cpu`` runs them on the
CPU as a dry run of this file (the graph-specific assertions then check the eager fallback instead).
Drift figures are printed and, when ``$OUT`` is set, written to ``$OUT/cuda_drift.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import random_image
from oracle_checkpoints import load_oracle, oracle_tokenizer

import blip
from blip.engine import Engine
from blip.generation import DecodingOptions, graphed
from blip.generation.tasks import answer, caption, caption_many, encode_question

pytestmark = pytest.mark.cuda
# conftest.py does not collect this file unless BLIP_DEVICE_CHECK=1; named on the command line without it,
# it is skipped on a workstation and fails in CI, where nothing may skip.
if os.environ.get("BLIP_DEVICE_CHECK") != "1":
    reason = "GPU checks: run on a CUDA machine by scripts/device_check.sh (BLIP_DEVICE_CHECK=1)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; not in CI", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
DEVICE = os.environ.get("BLIP_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")
PROMPT = "a picture of"
SEP = 102


@pytest.fixture(scope="module", autouse=True)
def needs_cuda():
    if ON_CUDA and not torch.cuda.is_available():
        pytest.fail("BLIP_DEVICE_CHECK=1 but PyTorch sees no CUDA device")


def _oracle_ids(output: torch.Tensor, prompt_len: int) -> list[list[int]]:
    rows = []
    for row in output[:, prompt_len:].tolist():
        rows.append(row[: row.index(SEP) + 1] if SEP in row else [t for t in row if t != 0])
    return rows


def _graph_modes(decoder) -> set[str]:
    return {r.mode for r in graphed._RUNNERS.get(decoder, {}).values()}


def _assert_graphed(decoder) -> None:
    modes = _graph_modes(decoder)
    if ON_CUDA:
        reasons = {r.fallback_reason for r in graphed._RUNNERS.get(decoder, {}).values()}
        assert modes == {"graph"}, f"greedy did not replay a CUDA graph: {modes} {reasons}"


@torch.no_grad()
def test_float32_ids_match_the_reference_on_cuda(checkpoints):
    prompt_ids = oracle_tokenizer()(PROMPT, return_tensors="pt").input_ids.to(DEVICE)
    compared = 0
    for directory in [checkpoints.decoding("caption", s) for s in range(3)] + [
        checkpoints.get("caption", "base")
    ]:
        loaded = blip.load(directory, device=DEVICE)
        oracle = load_oracle(directory, "caption").to(DEVICE)
        decoder = loaded.model.text_decoder
        pixels = loaded.pixels([random_image(600 + i) for i in range(4)])
        embeds = loaded.model.encode_image(pixels)
        for options, kwargs in (
            (DecodingOptions(max_new_tokens=20), dict(max_new_tokens=20)),
            (DecodingOptions(strategy="beam", num_beams=3), dict(num_beams=3, max_new_tokens=20)),
        ):
            for prompted in (False, True):
                extra = dict(input_ids=prompt_ids.repeat(4, 1)) if prompted else {}
                reference = oracle.generate(pixel_values=pixels, do_sample=False, **kwargs, **extra)
                plen = prompt_ids.shape[1] - 1 if prompted else 1
                expected = _oracle_ids(reference, plen)
                batched = caption_many(
                    loaded.model, loaded.tokenizer, embeds, PROMPT if prompted else "", options
                )
                assert [image[0].sequence.token_ids for image in batched] == expected, (
                    directory.name,
                    options,
                )
                for i in range(2):  # and one image at a time
                    alone = caption(loaded.model, loaded.tokenizer, embeds[i : i + 1], PROMPT if prompted else "", options)  # fmt: skip
                    assert alone[0].sequence.token_ids == expected[i]
                compared += 1
        _assert_graphed(decoder)
    assert compared == 16


@torch.no_grad()
def test_vqa_float32_answers_match_the_reference_on_cuda(checkpoints):
    tokenizer = oracle_tokenizer()
    directory = checkpoints.decoding("vqa", 1)
    loaded, oracle = blip.load(directory, device=DEVICE), load_oracle(directory, "vqa").to(DEVICE)
    for i, question in enumerate(["what is in the picture?", "is it red?", "where is the cat?"]):
        pixels = loaded.pixels(random_image(700 + i))
        states = encode_question(loaded.model, loaded.tokenizer, loaded.model.encode_image(pixels), question)
        ours = answer(loaded.model, loaded.tokenizer, states, DecodingOptions())
        q_ids = tokenizer(question, return_tensors="pt").input_ids.to(DEVICE)
        reference = oracle.generate(input_ids=q_ids, pixel_values=pixels, do_sample=False, max_new_tokens=20)
        assert [t.sequence.token_ids for t in ours] == _oracle_ids(reference, 1), question
    _assert_graphed(loaded.model.text_decoder)


@torch.no_grad()
def test_the_graph_replays_what_the_eager_steps_compute(checkpoints):
    loaded = blip.load(checkpoints.get("caption", "base"), device=DEVICE)
    embeds = loaded.model.encode_image(loaded.pixels([random_image(800 + i) for i in range(8)]))
    for explain in (False, True):
        options = DecodingOptions(max_new_tokens=30, output_attentions=explain)
        graph = caption_many(loaded.model, loaded.tokenizer, embeds, "", options)
        dynamic = caption_many(
            loaded.model,
            loaded.tokenizer,
            embeds,
            "",
            DecodingOptions(**{**vars(options), "static_cache": False}),
        )
        for g, d in zip(graph, dynamic, strict=True):
            assert g[0].sequence.token_ids == d[0].sequence.token_ids
            assert g[0].sequence.token_logprobs == pytest.approx(d[0].sequence.token_logprobs, abs=1e-4)
            if explain:
                assert torch.allclose(
                    g[0].sequence.cross_attentions, d[0].sequence.cross_attentions, atol=1e-4
                )
    _assert_graphed(loaded.model.text_decoder)


def test_engine_batch_captions_on_cuda_equal_single_captions(checkpoints):
    engine = Engine(device=DEVICE, local_models={"c": checkpoints.get("caption", "base")}, demo="never")
    images = [random_image(900 + i) for i in range(8)]
    options = {"max_new_tokens": 20}
    batch = [
        r.captions[0].text for r in engine.caption_batch(images, model="c", options=options, batch_size=8)
    ]
    alone = [engine.caption(image, model="c", options=options).captions[0].text for image in images]
    assert batch == alone


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@torch.no_grad()
def test_half_precision_drift_is_measured(checkpoints, dtype):
    """Greedy token agreement with float32 and the cosine of teacher-forced logits, base random weights
    and a trained-looking decoding checkpoint; printed and saved, with loose sanity bounds."""
    figures = {}
    for label, directory in (("base", checkpoints.get("caption", "base")), ("decoding", checkpoints.decoding("caption", 0))):  # fmt: skip
        full = blip.load(directory, device=DEVICE)
        half = blip.load(directory, device=DEVICE, dtype=getattr(torch, dtype))
        images = [random_image(1000 + i) for i in range(8)]
        pixels = full.pixels(images)
        embeds32 = full.model.encode_image(pixels)
        embeds16 = half.model.encode_image(pixels.to(getattr(torch, dtype)))
        options = DecodingOptions(max_new_tokens=20)
        ids32 = [
            t[0].sequence.token_ids for t in caption_many(full.model, full.tokenizer, embeds32, "", options)
        ]
        ids16 = [
            t[0].sequence.token_ids for t in caption_many(half.model, half.tokenizer, embeds16, "", options)
        ]
        same = sum(a == b for x, y in zip(ids32, ids16, strict=True) for a, b in zip(x, y, strict=False))
        total = sum(len(x) for x in ids32)
        cosines = []
        for i, ids in enumerate(ids32):
            tokens = torch.tensor([[30522, *ids]], device=DEVICE)
            a, _ = full.model.text_decoder(tokens, embeds32[i : i + 1])
            b, _ = half.model.text_decoder(tokens, embeds16[i : i + 1])
            cosines.append(
                torch.nn.functional.cosine_similarity(a[0].float(), b[0].float(), dim=-1).min().item()
            )
        figures[label] = {"token_agreement": same / total, "worst_logit_cosine": min(cosines),
                          "identical_captions": sum(x == y for x, y in zip(ids32, ids16, strict=True)) / len(ids32)}  # fmt: skip
        _assert_graphed(half.model.text_decoder)
    print(f"\n{dtype} drift vs float32 on {DEVICE}: {json.dumps(figures)}")
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "cuda_drift.json"
        saved = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(saved | {dtype: figures}, indent=2))
    for values in figures.values():
        assert values["worst_logit_cosine"] > 0.98, figures
        assert values["token_agreement"] > 0.5, figures
