"""What if the model had chosen another word? Decoding continued from forced token ids: the model's own
first tokens give back its own text (greedy), a forced prefix is the start beam search continues from
(as transformers' ``generate`` does from the same prefix), and every reported probability is the
teacher-forced one."""

from __future__ import annotations

import pytest
import torch
from conftest import random_image
from oracle_checkpoints import load_oracle

import blip
from blip.generation import DecodingOptions
from blip.generation.forcing import teacher_forced
from blip.generation.tasks import answer, caption, encode_question

pytestmark = pytest.mark.unit
SEP, DEC = 102, 30522
PROMPT = "a picture of"
GREEDY = [
    DecodingOptions(max_new_tokens=20),
    DecodingOptions(repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4, max_new_tokens=16),
]
BEAM = [
    DecodingOptions(strategy="beam", num_beams=3),
    DecodingOptions(strategy="beam", num_beams=4, num_sequences=2, length_penalty=0.6, early_stopping=True),
    DecodingOptions(
        strategy="beam", num_beams=2, length_penalty=1.8, repetition_penalty=1.3, min_new_tokens=3
    ),
    DecodingOptions(strategy="beam", num_beams=5, length_penalty=-0.5, no_repeat_ngram_size=2),
]


def _prefix(loaded, prompt: str) -> list[int]:
    return [DEC, *loaded.tokenizer.encode(prompt)[1:-1]] if prompt else [DEC]


def _teacher_logprobs(loaded, embeds, prefix: list[int], ids: list[int]) -> torch.Tensor:
    """log p of each of ``ids`` after ``prefix``, from one independent pass of decoder_logits."""
    full = torch.tensor([prefix + ids])
    logits, _ = loaded.model.decoder_logits(embeds, full)
    return (
        logits[0, len(prefix) - 1 : -1].log_softmax(-1).gather(-1, full[0, len(prefix) :, None]).squeeze(-1)
    )


@torch.no_grad()
@pytest.mark.parametrize("options", GREEDY, ids=["plain", "penalties"])
@pytest.mark.parametrize("prompt", ["", PROMPT])
def test_greedy_from_its_own_first_tokens_writes_the_same_caption(checkpoints, options, prompt):
    forced_any = 0
    for seed in (0, 1):
        loaded = blip.load(checkpoints.decoding("caption", seed))
        for image in range(3):
            embeds = loaded.model.encode_image(loaded.pixels(random_image(300 + 10 * seed + image)))
            (original,) = caption(loaded.model, loaded.tokenizer, embeds, prompt, options)
            ids = original.sequence.token_ids
            for k in range(1, len(ids) + 1):  # k = len(ids): the whole text is forced
                (again,) = caption(loaded.model, loaded.tokenizer, embeds, prompt, options, forced=ids[:k])
                seq = again.sequence
                assert seq.token_ids == ids and again.text == original.text, (seed, image, k)
                assert seq.forced == k and seq.finished == original.sequence.finished
                assert seq.token_logprobs == pytest.approx(original.sequence.token_logprobs, abs=1e-5)
                assert seq.score == pytest.approx(original.sequence.score, abs=1e-4)
                assert [[i for i, _ in a] for a in seq.alternatives] == [
                    [i for i, _ in a] for a in original.sequence.alternatives
                ]
                forced_any += 1
    assert forced_any >= 30


@torch.no_grad()
def test_a_vqa_answer_from_its_own_first_tokens_is_the_same_answer(checkpoints):
    loaded = blip.load(checkpoints.decoding("vqa", 0))
    for image, question in enumerate(["what is it?", "how many dogs are there?", "is it red?"]):
        embeds = loaded.model.encode_image(loaded.pixels(random_image(320 + image)))
        states = encode_question(loaded.model, loaded.tokenizer, embeds, question)
        (original,) = answer(loaded.model, loaded.tokenizer, states)
        ids = original.sequence.token_ids
        for k in range(1, len(ids) + 1):
            (again,) = answer(loaded.model, loaded.tokenizer, states, forced=ids[:k])
            assert again.sequence.token_ids == ids and again.text == original.text
            assert again.sequence.score == pytest.approx(original.sequence.score, abs=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("options", BEAM, ids=lambda o: f"beams{o.num_beams}-lp{o.length_penalty}")
def test_beam_search_given_its_whole_caption_scores_it_as_the_search_did(checkpoints, options):
    """Forcing every token (the final [SEP] included) replays the search's own score: the forced
    tokens' step scores (penalties and bans re-applied) over the length penalty."""
    for seed in (0, 1):
        loaded = blip.load(checkpoints.decoding("caption", seed))
        for image in range(3):
            embeds = loaded.model.encode_image(loaded.pixels(random_image(340 + 10 * seed + image)))
            for text in caption(loaded.model, loaded.tokenizer, embeds, PROMPT, options):
                if not text.sequence.finished:
                    continue
                (again,) = caption(
                    loaded.model, loaded.tokenizer, embeds, PROMPT, options, forced=text.sequence.token_ids
                )
                assert again.sequence.token_ids == text.sequence.token_ids
                assert again.sequence.score == pytest.approx(text.sequence.score, rel=1e-5, abs=1e-5)


@torch.no_grad()
def test_beam_search_continues_a_forced_prefix_as_transformers_generate_does(checkpoints):
    """With a forced prefix, beam search starts from that one text; transformers' ``generate`` from
    the same prefix picks the same tokens. (Length penalty 0, so that both count lengths alike: ours
    counts the forced tokens as generated, transformers counts only what it adds.) Our scores include
    the forced tokens' own, so they differ from the reference's by that constant."""
    compared = changed = 0
    for seed in (0, 1, 2):
        directory = checkpoints.decoding("caption", seed)
        loaded, oracle = blip.load(directory), load_oracle(directory, "caption")
        for image in range(3):
            pixels = loaded.pixels(random_image(360 + 10 * seed + image))
            embeds = loaded.model.encode_image(pixels)
            for beams in (2, 3, 5):
                options = DecodingOptions(
                    strategy="beam", num_beams=beams, length_penalty=0.0, num_sequences=2
                )
                (best, _) = caption(loaded.model, loaded.tokenizer, embeds, "", options)
                steps = best.sequence.alternatives
                for k in (1, 2, 3):
                    if k >= len(best.sequence.token_ids):
                        continue
                    # Keep the model's first k - 1 tokens, then another of its choices at step k - 1.
                    chosen = best.sequence.token_ids[k - 1]
                    other = next(i for i, _ in steps[k - 1] if i not in (chosen, SEP))
                    forced = [*best.sequence.token_ids[: k - 1], other]
                    ours = caption(loaded.model, loaded.tokenizer, embeds, "", options, forced=forced)
                    ref = oracle.generate(
                        pixel_values=pixels,
                        input_ids=torch.tensor([[101, *forced, SEP]]),
                        num_beams=beams,
                        num_return_sequences=2,
                        length_penalty=0.0,
                        max_new_tokens=20 - k,
                        do_sample=False,
                        output_scores=True,
                        return_dict_in_generate=True,
                    )
                    expected = [forced + row for row in _new_tokens(ref.sequences, 1 + k)]
                    assert [t.sequence.token_ids for t in ours] == expected, (seed, image, beams, k)
                    offset = float(
                        teacher_forced(loaded.model.text_decoder, embeds, [DEC], forced).scores.sum()
                    )
                    for text, score in zip(ours, ref.sequences_scores.tolist(), strict=True):
                        assert text.sequence.score == pytest.approx(score + offset, abs=1e-4)
                        assert text.sequence.forced == k
                    changed += ours[0].sequence.token_ids != best.sequence.token_ids
                    compared += 1
    assert compared >= 20 and changed == compared  # another word always changes the text


def _new_tokens(output: torch.Tensor, start: int) -> list[list[int]]:
    rows = []
    for row in output[:, start:].tolist():
        rows.append(row[: row.index(SEP) + 1] if SEP in row else row)
    return rows


@torch.no_grad()
@pytest.mark.parametrize("options", [GREEDY[0], BEAM[0], DecodingOptions(strategy="sample", seed=3)], ids=str)
def test_a_forced_alternative_changes_the_text_and_reports_teacher_forced_probabilities(checkpoints, options):
    loaded = blip.load(checkpoints.decoding("caption", 3))
    changed = 0
    for image in range(4):
        embeds = loaded.model.encode_image(loaded.pixels(random_image(380 + image)))
        (original, *_) = caption(loaded.model, loaded.tokenizer, embeds, PROMPT, options)
        seq = original.sequence
        step = min(2, len(seq.token_ids) - 1)
        alternative = next(i for i, _ in seq.alternatives[step] if i not in (seq.token_ids[step], SEP))
        forced = [*seq.token_ids[:step], alternative]
        for text in caption(loaded.model, loaded.tokenizer, embeds, PROMPT, options, forced=forced):
            new = text.sequence
            assert new.token_ids[: len(forced)] == forced and new.forced == len(forced)
            changed += new.token_ids[len(forced) :] != seq.token_ids[len(forced) :]
            # Every reported log-probability, forced or chosen, is the teacher-forced one of the text.
            independent = _teacher_logprobs(loaded, embeds, _prefix(loaded, PROMPT), new.token_ids)
            assert torch.allclose(torch.tensor(new.token_logprobs), independent, atol=1e-5)
            if options.strategy != "beam":
                assert new.score == pytest.approx(float(independent.sum()), abs=1e-4)
    assert changed >= 2, "forcing another word should usually change what follows"


@torch.no_grad()
def test_forced_steps_carry_their_attention_maps(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 0))
    embeds = loaded.model.encode_image(loaded.pixels(random_image(390)))
    for options in (
        DecodingOptions(output_attentions=True),
        DecodingOptions(strategy="beam", output_attentions=True),
    ):
        (original,) = caption(loaded.model, loaded.tokenizer, embeds, "", options)
        forced = original.sequence.token_ids[:3]
        (again,) = caption(loaded.model, loaded.tokenizer, embeds, "", options, forced=forced)
        maps = again.sequence.cross_attentions  # (steps, layers, heads, image tokens)
        assert maps.shape[0] == len(again.sequence.token_ids)
        assert (maps[:3] - original.sequence.cross_attentions[:3]).abs().max() <= 1e-5
        assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize(
    ("forced", "message"),
    [
        ([SEP, 1037], "may only be the last"),
        ([40000], "between 0 and"),
        ([-1], "between 0 and"),
        ([1037] * 21, "exceed max_new_tokens"),
    ],
)
def test_bad_forced_ids_are_refused_clearly(checkpoints, forced, message):
    loaded = blip.load(checkpoints.decoding("caption", 0))
    embeds = loaded.model.encode_image(loaded.pixels(random_image(391)))
    with pytest.raises(ValueError, match=message):
        caption(loaded.model, loaded.tokenizer, embeds, "", DecodingOptions(), forced=forced)


# --- through the engine (the calls a Gradio handler makes) -------------------------------------------------


def _scene(index: int = 1):
    from pathlib import Path

    from PIL import Image

    folder = Path(__file__).resolve().parents[1] / "assets" / "examples" / "shapes"
    return Image.open(sorted(folder.glob("*.png"))[index]).convert("RGB")


def test_engine_what_if_another_colour_word():
    from blip.engine import Engine

    engine = Engine(device="cpu", demo="always")
    image = _scene()
    original = engine.caption(image).captions[0]
    position = next(i for i, t in enumerate(original.tokens) if t.token in ("red", "green", "blue", "yellow"))
    choice = next(
        i
        for i, name in zip(
            original.tokens[position].alternative_ids,
            engine.token_names(original.tokens[position].alternative_ids),
            strict=True,
        )
        if name in ("red", "green", "blue", "yellow") and i != original.tokens[position].token_id
    )
    forced = original.what_if_ids(position, choice)
    result = engine.caption(image, forced=forced, explain_tokens=True)
    item = result.captions[0]
    assert result.forced_ids == forced and item.forced == len(forced)
    assert [t.token_id for t in item.tokens[: len(forced)]] == forced and item.text != original.text
    assert item.heatmaps.attention.shape[0] == len(item.tokens)  # forced words have maps too
    # The forced tokens keep their own probabilities as the model saw them (teacher-forced): the kept
    # prefix the same as before, the new word its (lower) probability at that step.
    assert [t.probability for t in item.tokens[:position]] == pytest.approx(
        [t.probability for t in original.tokens[:position]], abs=1e-5
    )
    alternatives = dict(
        zip(original.tokens[position].alternative_ids, original.tokens[position].alternatives, strict=True)
    )
    assert item.tokens[position].probability == pytest.approx(alternatives[choice][1], abs=1e-5)
    assert engine.token_ids("a large green", model="caption-base") == [1037, 2312, 2665]
    with pytest.raises(ValueError, match="position must be between"):
        original.what_if_ids(len(original.tokens), choice)


def test_engine_what_if_for_answers_and_beam_trees_in_results():
    import json

    from blip.engine import Engine

    engine = Engine(device="cpu", demo="always")
    image = _scene()
    answer = engine.answer(image, "what colour is the circle?").answers[0]
    other = next(i for i in answer.tokens[0].alternative_ids if i not in (answer.tokens[0].token_id, SEP))
    result = engine.answer(image, "what colour is the circle?", forced=[other], explain_tokens=True)
    assert result.answers[0].tokens[0].token_id == other and result.answers[0].forced == 1
    assert result.answers[0].heatmaps is not None and result.forced_ids == [other]
    with pytest.raises(ValueError, match="cannot rank candidates"):
        engine.answer(image, "what colour is the circle?", forced=[other], candidates=["red"])
    beam = engine.caption(image, options={"strategy": "beam", "num_beams": 3, "record_tree": True})
    tree = beam.search_tree
    assert [n.token for n in tree.path(tree.finals()[0].id)] == [t.token for t in beam.captions[0].tokens]
    data = json.loads(json.dumps(beam.to_dict()))
    assert data["decoding"]["record_tree"] and data["search_tree"]["nodes"][0]["status"] == "prompt"
    assert engine.caption(image).search_tree is None
