"""The GPU fast path's parts that a CPU can check: the static KV cache gives the dynamic cache's tokens
and logits, and the graph-capture code falls back to the eager static step (silently without CUDA,
with a warning when recording fails). A stand-in "graph" that replays by re-running the step from the
same buffers checks the plumbing a real CUDA graph relies on (inputs written in place, outputs read
after the replay)."""

from __future__ import annotations

import logging
import threading

import pytest
import torch
from conftest import random_image

import blip
from blip.generation import DecodingOptions, graphed
from blip.generation.tasks import answer, caption, caption_many, encode_question
from blip.model.cache import KVCache
from blip.model.static_cache import StaticKVCache, static_forward

PROMPT = "a picture of"


def _run(loaded, embeds, options, prompt=PROMPT):
    texts = caption_many(loaded.model, loaded.tokenizer, embeds, prompt, options)
    return [[t.sequence for t in image] for image in texts]


def _assert_same(static, dynamic):
    for s_image, d_image in zip(static, dynamic, strict=True):
        for s, d in zip(s_image, d_image, strict=True):
            assert s.token_ids == d.token_ids
            assert s.token_logprobs == pytest.approx(d.token_logprobs, abs=1e-5)
            assert [a for a, _ in s.alternatives[0]] == [a for a, _ in d.alternatives[0]]
            if d.cross_attentions is not None:
                assert torch.allclose(s.cross_attentions, d.cross_attentions, atol=1e-5)


@pytest.fixture(scope="module")
def decoder_case(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 1))
    with torch.no_grad():
        embeds = torch.cat(
            [loaded.model.encode_image(loaded.pixels(random_image(500 + i))) for i in range(4)]
        )
    return loaded, embeds


@torch.no_grad()
def test_static_forward_logits_equal_the_dynamic_cache_step_by_step(decoder_case):
    loaded, embeds = decoder_case
    decoder = loaded.model.text_decoder
    ids = torch.tensor([[30522, 1037, 3861, 1997, 1037, 2417, 4937]] * 2)  # [DEC] and six words
    states = embeds[:2]
    cache = StaticKVCache(decoder, 2, 32, states.shape[1], torch.float32, "cpu")
    cache.fill_cross(decoder, states)
    dynamic = KVCache(decoder.bert.config.num_hidden_layers)
    # A 3-token prompt, then one token at a time: the shapes of a real decode.
    chunks = [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7)]
    for a, b in chunks:
        ours, _ = static_forward(decoder, cache, ids[:, a:b], torch.tensor([a]))
        reference, _ = decoder(ids[:, a:b], states, cache=dynamic, last_only=True)
        assert torch.allclose(ours, reference[:, -1], atol=1e-5), (a, (ours - reference[:, -1]).abs().max())
        assert ours.argmax(-1).tolist() == reference[:, -1].argmax(-1).tolist()


@pytest.mark.parametrize("prompt", ["", PROMPT])
@torch.no_grad()
def test_static_greedy_gives_the_dynamic_caches_tokens(decoder_case, prompt):
    loaded, embeds = decoder_case
    plain = DecodingOptions(max_new_tokens=20)
    for options in (plain, DecodingOptions(output_attentions=True, repetition_penalty=1.3)):
        dynamic = _run(loaded, embeds, options, prompt)
        static = _run(loaded, embeds, DecodingOptions(**{**vars(options), "static_cache": True}), prompt)
        _assert_same(static, dynamic)
    # Rows that finish early leave the loop while their slots keep running: lengths must differ.
    assert len({len(image[0].token_ids) for image in dynamic}) > 1


@torch.no_grad()
def test_static_vqa_answers_match(checkpoints):
    loaded = blip.load(checkpoints.decoding("vqa", 0))
    pixels = loaded.pixels(random_image(42))
    states = encode_question(loaded.model, loaded.tokenizer, loaded.model.encode_image(pixels), "what is it?")
    dynamic = answer(loaded.model, loaded.tokenizer, states, DecodingOptions())
    static = answer(loaded.model, loaded.tokenizer, states, DecodingOptions(static_cache=True))
    _assert_same([[t.sequence for t in static]], [[t.sequence for t in dynamic]])


@pytest.mark.fullsize
@torch.no_grad()
def test_full_size_static_greedy_matches(checkpoints):
    loaded = blip.load(checkpoints.get("caption", "base"))
    embeds = loaded.model.encode_image(loaded.pixels(random_image(7, size=(640, 480))))
    options = DecodingOptions(max_new_tokens=12)
    for prompt in ("", PROMPT):
        dynamic = _run(loaded, embeds, options, prompt)
        _assert_same(
            _run(loaded, embeds, DecodingOptions(max_new_tokens=12, static_cache=True), prompt), dynamic
        )


def test_the_static_path_is_greedy_with_a_cache_and_on_cuda_by_default():
    cpu = torch.zeros(1, 3, 8)
    assert not graphed.wants_static(cpu, DecodingOptions())  # a CPU keeps the dynamic cache
    assert graphed.wants_static(cpu, DecodingOptions(static_cache=True))
    assert not graphed.wants_static(cpu, DecodingOptions(strategy="beam", static_cache=True))
    assert not graphed.wants_static(cpu, DecodingOptions(use_cache=False, static_cache=True))
    assert graphed.default_capture(torch.device("cpu")) is None
    assert graphed.default_capture(torch.device("cuda")) is graphed.cuda_graph_capture


def _stepper_modes(monkeypatch):
    """Record the mode of every GraphedStepper the loop builds."""
    seen = []
    real = graphed.GraphedStepper.start

    def start(self, prompt, rows):
        seen.append(self)
        return real(self, prompt, rows)

    monkeypatch.setattr(graphed.GraphedStepper, "start", start)
    return seen


@torch.no_grad()
def test_without_cuda_the_static_step_runs_eagerly(decoder_case, monkeypatch, caplog):
    loaded, embeds = decoder_case
    seen = _stepper_modes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        _run(loaded, embeds[:1], DecodingOptions(static_cache=True))
    assert [(s.mode, s.fallback_reason) for s in seen] == [("eager", None)]
    assert not caplog.records


@torch.no_grad()
def test_capture_failure_falls_back_to_eager_and_says_why(decoder_case, monkeypatch, caplog):
    loaded, embeds = decoder_case
    calls = []

    def broken(step):
        calls.append(step)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphed, "default_capture", lambda device: broken)
    seen = _stepper_modes(monkeypatch)
    options = DecodingOptions(static_cache=True, max_new_tokens=70)  # a capacity (96) no other test uses
    dynamic = _run(loaded, embeds, DecodingOptions(max_new_tokens=70))
    with caplog.at_level(logging.WARNING, logger="blip.generation.graphed"):
        static = _run(loaded, embeds, options)
        again = _run(loaded, embeds, options)
    _assert_same(static, dynamic)
    _assert_same(again, dynamic)
    assert len(calls) == 1, "a shape whose recording failed is not tried again"
    assert seen[0].mode == "eager" and "stream is capturing" in seen[0].fallback_reason
    assert any("capture failed" in r.getMessage() for r in caplog.records)


def _replaying_capture(recorded):
    """A stand-in for CUDA graph capture: run the step once, keep its outputs, and on replay re-run
    it and copy into those same tensors (what a graph replay does to its static outputs)."""

    def capture(step):
        outputs = step()
        recorded.append(step)

        def replay():
            for kept, fresh in zip(outputs, step(), strict=True):
                if kept is not None:
                    kept.copy_(fresh)

        return replay, outputs

    return capture


@torch.no_grad()
def test_recorded_step_replays_from_its_buffers_across_requests(decoder_case, monkeypatch):
    loaded, embeds = decoder_case
    recorded = []
    monkeypatch.setattr(graphed, "default_capture", lambda device: _replaying_capture(recorded))
    seen = _stepper_modes(monkeypatch)
    # 100 tokens: a capacity (128) that no other test's requests use, so this test records it.
    for options in (
        DecodingOptions(max_new_tokens=100),
        DecodingOptions(max_new_tokens=100, output_attentions=True),
    ):
        static_options = DecodingOptions(**{**vars(options), "static_cache": True})
        for prompt, images in (("", embeds), (PROMPT, embeds), (PROMPT, embeds.flip(0))):
            _assert_same(_run(loaded, images, static_options, prompt), _run(loaded, images, options, prompt))
    assert {s.mode for s in seen} == {"graph"}
    # One recording per shape (with and without maps), reused by the later requests.
    assert len(recorded) == 2 and len({id(s.runner) for s in seen}) == 2


@torch.no_grad()
def test_a_busy_shape_gets_private_buffers(decoder_case):
    loaded, embeds = decoder_case
    decoder, options = loaded.model.text_decoder, DecodingOptions(static_cache=True, max_new_tokens=60)
    held, inner = threading.Event(), []
    with graphed.graphed_stepper(decoder, embeds[:1], options, 64) as first:
        with graphed.graphed_stepper(decoder, embeds[:1], options, 64) as second:
            inner.append(second.runner)
        held.set()
    assert inner[0] is not first.runner and first.runner.lock.acquire(blocking=False)
    first.runner.lock.release()
    _assert_same(
        [[t.sequence for t in caption(loaded.model, loaded.tokenizer, embeds[:1], PROMPT, options)]],
        _run(loaded, embeds[:1], DecodingOptions(max_new_tokens=60)),
    )
