"""Watching beam search: the recorded tree holds every step's candidates, and following the returned
texts back through it gives exactly the beams, scores and probabilities the decoding returned; for
several images decoded together each image gets its own tree. Drawings of the tree and of sampled
paths come out as pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image

import blip
from blip.generation import DecodingOptions
from blip.generation.tasks import caption, caption_many

pytestmark = pytest.mark.unit


def _check_tree(texts, options: DecodingOptions) -> None:
    """The tree of one image's search against the texts that search returned."""
    tree = texts[0].sequence.tree
    assert tree is not None and all(t.sequence.tree is tree for t in texts)
    finals = tree.finals()
    assert [n.rank for n in finals] == list(range(len(texts)))
    for text, node in zip(texts, finals, strict=True):
        seq = text.sequence
        path = tree.path(node.id)
        assert [n.token_id for n in path] == seq.token_ids
        assert [n.token for n in path] == text.tokens  # named with the tokenizer
        assert [n.logprob for n in path] == pytest.approx(seq.token_logprobs, abs=1e-6)
        assert node.status == "finished" and node.penalised == pytest.approx(seq.score, rel=1e-6, abs=1e-6)
        assert all(n.status in ("kept", "forced") for n in path[:-1])  # the beams it grew from
    # Each step holds its 2 x num_beams candidates, num_beams of which run on (but at the last step).
    steps = max(n.step for n in tree.nodes)
    for step in range(steps + 1):
        nodes = tree.at_step(step)
        assert len(nodes) == 2 * options.num_beams
        if step < steps:
            assert sum(n.status == "kept" for n in nodes) == options.num_beams
        for n in nodes:
            parent = tree.nodes[n.parent]
            assert parent.step == step - 1 and parent.status in ("prompt", "kept")
            assert n.score == pytest.approx(n.penalised * (step + 1) ** options.length_penalty, rel=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("beams", [2, 3, 4, 5])
@pytest.mark.parametrize("penalty", [-0.5, 0.0, 1.0, 2.0])
def test_the_tree_reproduces_the_returned_beams_and_scores(checkpoints, beams, penalty):
    loaded = blip.load(checkpoints.decoding("caption", beams))
    images = [random_image(700 + beams * 10 + i) for i in range(3)]
    embeds = loaded.model.encode_image(loaded.pixels(images))
    options = DecodingOptions(
        strategy="beam", num_beams=beams, num_sequences=beams, length_penalty=penalty, record_tree=True
    )
    together = caption_many(loaded.model, loaded.tokenizer, embeds, "a picture of", options)
    for i, texts in enumerate(together):
        _check_tree(texts, options)
        alone = caption(loaded.model, loaded.tokenizer, embeds[i : i + 1], "a picture of", options)
        tree, own = texts[0].sequence.tree, alone[0].sequence.tree
        assert [(n.parent, n.token_id, n.status, n.rank) for n in tree.nodes] == [
            (n.parent, n.token_id, n.status, n.rank) for n in own.nodes
        ]
    assert len({id(t[0].sequence.tree) for t in together}) == len(images)  # each image its own tree


@torch.no_grad()
def test_trees_under_early_stopping_penalties_and_a_forced_prefix(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 1))
    embeds = loaded.model.encode_image(loaded.pixels(random_image(750)))
    for early in (True, False, "never"):
        options = DecodingOptions(
            strategy="beam",
            num_beams=3,
            num_sequences=2,
            early_stopping=early,
            repetition_penalty=1.3,
            no_repeat_ngram_size=2,
            min_new_tokens=2,
            record_tree=True,
        )
        texts = caption(loaded.model, loaded.tokenizer, embeds, "", options)
        _check_tree(texts, options)
        forced = texts[0].sequence.token_ids[:2]
        again = caption(loaded.model, loaded.tokenizer, embeds, "", options, forced=forced)
        tree = again[0].sequence.tree
        assert [n.status for n in tree.nodes[:3]] == ["prompt", "forced", "forced"]
        assert [n.token_id for n in tree.nodes[1:3]] == forced
        for text, node in zip(again, tree.finals(), strict=True):
            assert [n.token_id for n in tree.path(node.id)] == text.sequence.token_ids
            assert node.penalised == pytest.approx(text.sequence.score, rel=1e-6, abs=1e-6)


def test_recording_is_off_by_default_and_only_for_beam_search(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 0))
    with torch.no_grad():
        embeds = loaded.model.encode_image(loaded.pixels(random_image(760)))
    plain = caption(loaded.model, loaded.tokenizer, embeds, "", DecodingOptions(strategy="beam"))
    assert plain[0].sequence.tree is None
    assert DecodingOptions(**{"strategy": "beam", "record_tree": True}).record_tree
    with pytest.raises(ValueError, match="record_tree"):
        DecodingOptions(record_tree=True)
    with pytest.raises(ValueError, match="record_tree"):
        DecodingOptions(strategy="sample", record_tree=True)


def test_trees_and_sampled_paths_are_drawn(checkpoints):
    from blip.explain.beam_tree import BEST, draw_beam_tree, draw_sampled_paths

    loaded = blip.load(checkpoints.decoding("caption", 0))
    with torch.no_grad():
        embeds = loaded.model.encode_image(loaded.pixels(random_image(770)))
    options = DecodingOptions(
        strategy="beam", num_beams=3, num_sequences=2, record_tree=True, max_new_tokens=8
    )
    texts = caption(loaded.model, loaded.tokenizer, embeds, "", options)
    tree = texts[0].sequence.tree
    full, lean = draw_beam_tree(tree), draw_beam_tree(tree, show_pruned=False)
    assert full.mode == "RGB" and lean.height < full.height  # pruned candidates take rows
    red = tuple(int(BEST[i : i + 2], 16) for i in (1, 3, 5))
    pixels = np.asarray(full).reshape(-1, 3)
    assert (np.abs(pixels.astype(int) - red).sum(axis=1) < 30).sum() > 500  # the best text is drawn

    samples = [
        caption(loaded.model, loaded.tokenizer, embeds, "", DecodingOptions(strategy="sample", seed=s))[0]
        for s in range(4)
    ]
    paths = [list(zip(t.tokens, (np.exp(t.sequence.token_logprobs)).tolist(), strict=True)) for t in samples]
    picture = draw_sampled_paths(paths, [f"seed {s}" for s in range(4)])
    assert picture.mode == "RGB" and picture.width > 300
    with pytest.raises(ValueError, match="labels"):
        draw_sampled_paths(paths, ["one"])
    with pytest.raises(ValueError, match="at least one"):
        draw_sampled_paths([])
