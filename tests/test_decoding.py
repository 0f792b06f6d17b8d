"""Our decoding loop against transformers' ``generate``: identical tokens, identical filtered
distributions; plus the loop's own promises (cache, attention path, seeds, ranking)."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import random_image
from oracle_checkpoints import load_oracle, oracle_tokenizer

import blip
from blip.generation import DecodingOptions
from blip.generation.logits import process_scores
from blip.generation.tasks import answer, caption, encode_question, rank_answers

pytestmark = pytest.mark.parity
SEP = 102
PROMPT = "a picture of"
SEEDS, IMAGES = range(5), range(4)  # 20 (weights, image) cases per configuration


def _oracle_ids(output: torch.Tensor, prompt_len: int) -> list[list[int]]:
    """New tokens of each row of ``generate``'s output, trailing padding removed."""
    rows = []
    for row in output[:, prompt_len:].tolist():
        end = row.index(SEP) + 1 if SEP in row else len(row)
        # Greedy pads finished rows with [PAD]; beam search fills with [SEP] (its "pad or eos" is 102
        # because pad id 0 is falsy).
        assert all(t in (0, SEP) for t in row[end:]), row
        rows.append(row[:end])
    return rows


def _configs(case: int) -> list[tuple[DecodingOptions, dict, bool]]:
    """(our options, the oracle's generate kwargs, use the caption prompt) for one test case."""
    beams = 2 + case % 4  # 2..5 beams
    penalty = (0.6, 1.0, 1.8)[case % 3]  # length penalty below, at and above 1
    early = (False, True, "never")[case % 3]
    return [
        (DecodingOptions(max_new_tokens=20), dict(max_new_tokens=20), False),
        (DecodingOptions(max_new_tokens=12), dict(max_new_tokens=12), True),
        (
            DecodingOptions(strategy="beam", num_beams=beams, length_penalty=penalty, num_sequences=beams),
            dict(num_beams=beams, length_penalty=penalty, num_return_sequences=beams, max_new_tokens=20),
            False,
        ),
        (
            DecodingOptions(strategy="beam", num_beams=3, early_stopping=early, max_new_tokens=15),
            dict(num_beams=3, early_stopping=early, max_new_tokens=15),
            True,
        ),
        (
            DecodingOptions(repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=4),
            dict(repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=4, max_new_tokens=20),
            False,
        ),
        (
            DecodingOptions(
                strategy="beam",
                num_beams=beams,
                repetition_penalty=1.3,
                no_repeat_ngram_size=3,
                min_new_tokens=3,
            ),
            dict(
                num_beams=beams,
                repetition_penalty=1.3,
                no_repeat_ngram_size=3,
                min_new_tokens=3,
                max_new_tokens=20,
            ),
            True,
        ),
    ]


@torch.no_grad()
def test_caption_tokens_match_reference_generate(checkpoints):
    prompt_ids = oracle_tokenizer()(PROMPT, return_tensors="pt").input_ids
    lengths, compared = set(), 0
    for seed in SEEDS:
        directory = checkpoints.decoding("caption", seed)
        loaded, oracle = blip.load(directory), load_oracle(directory, "caption")
        for image_index in IMAGES:
            case = seed * len(IMAGES) + image_index
            pixels = loaded.pixels(random_image(100 + case))
            image_embeds = loaded.model.encode_image(pixels)
            for options, kwargs, prompted in _configs(case):
                ours = caption(
                    loaded.model, loaded.tokenizer, image_embeds, PROMPT if prompted else "", options
                )
                extra = dict(input_ids=prompt_ids.clone()) if prompted else {}
                reference = oracle.generate(pixel_values=pixels, do_sample=False, **kwargs, **extra)
                plen = prompt_ids.shape[1] - 1 if prompted else 1  # [DEC] + prompt without its [SEP]
                expected = _oracle_ids(reference, plen)
                got = [t.sequence.token_ids for t in ours]
                assert got == expected, f"seed {seed} image {image_index} {options}"
                lengths.update(len(ids) for ids in got)
                compared += 1
    # The cases must exercise both endings: [SEP] at varied lengths and the length limit.
    assert compared == len(SEEDS) * len(IMAGES) * 6
    assert min(lengths) < 10 and max(lengths) == 20 and len(lengths) >= 6, sorted(lengths)


@torch.no_grad()
def test_vqa_answer_tokens_match_reference_generate(checkpoints):
    tokenizer = oracle_tokenizer()
    questions = ["what is in the picture?", "how many dogs are there?", "is it red?", "where is the cat?"]
    for seed in SEEDS:
        directory = checkpoints.decoding("vqa", seed)
        loaded, oracle = blip.load(directory), load_oracle(directory, "vqa")
        for image_index, question in enumerate(questions):
            pixels = loaded.pixels(random_image(200 + seed * 4 + image_index))
            states = encode_question(
                loaded.model, loaded.tokenizer, loaded.model.encode_image(pixels), question
            )
            q_ids = tokenizer(question, return_tensors="pt").input_ids
            for options, kwargs, _ in _configs(seed * 4 + image_index)[::2]:
                ours = answer(loaded.model, loaded.tokenizer, states, options)
                reference = oracle.generate(input_ids=q_ids, pixel_values=pixels, do_sample=False, **kwargs)
                assert [t.sequence.token_ids for t in ours] == _oracle_ids(reference, 1), (
                    seed,
                    question,
                    options,
                )


@pytest.mark.fullsize
@torch.no_grad()
def test_full_size_caption_and_vqa_match_reference(checkpoints):
    prompt_ids = oracle_tokenizer()(PROMPT, return_tensors="pt").input_ids
    directory = checkpoints.get("caption", "base")
    loaded, oracle = blip.load(directory), load_oracle(directory, "caption")
    pixels = loaded.pixels(random_image(7, size=(640, 480)))
    image_embeds = loaded.model.encode_image(pixels)
    cases = [
        (DecodingOptions(max_new_tokens=20), dict(max_new_tokens=20), False),
        (DecodingOptions(strategy="beam", num_beams=3), dict(num_beams=3, max_new_tokens=20), False),
        (DecodingOptions(strategy="beam", num_beams=3), dict(num_beams=3, max_new_tokens=20), True),
        (
            DecodingOptions(repetition_penalty=1.5, no_repeat_ngram_size=2, max_new_tokens=10),
            dict(repetition_penalty=1.5, no_repeat_ngram_size=2, max_new_tokens=10),
            True,
        ),
    ]
    for options, kwargs, prompted in cases:
        ours = caption(loaded.model, loaded.tokenizer, image_embeds, PROMPT if prompted else "", options)
        extra = dict(input_ids=prompt_ids.clone()) if prompted else {}
        reference = oracle.generate(pixel_values=pixels, do_sample=False, **kwargs, **extra)
        plen = prompt_ids.shape[1] - 1 if prompted else 1
        assert [t.sequence.token_ids for t in ours] == _oracle_ids(reference, plen), options

    directory = checkpoints.get("vqa", "base")
    loaded, oracle = blip.load(directory), load_oracle(directory, "vqa")
    question = "how many dogs are in the picture?"
    states = encode_question(loaded.model, loaded.tokenizer, loaded.model.encode_image(pixels), question)
    q_ids = oracle_tokenizer()(question, return_tensors="pt").input_ids
    for options, kwargs, _ in cases[:2]:
        ours = answer(loaded.model, loaded.tokenizer, states, options)
        reference = oracle.generate(input_ids=q_ids, pixel_values=pixels, do_sample=False, **kwargs)
        assert [t.sequence.token_ids for t in ours] == _oracle_ids(reference, 1), options


def _oracle_processors(oracle, prompt_len: int, **settings):
    from transformers import GenerationConfig

    config = GenerationConfig(eos_token_id=SEP, pad_token_id=0, bos_token_id=30522, **settings)
    decoder = oracle.text_decoder
    decoder._prepare_special_tokens(config, kwargs_has_attention_mask=False, device="cpu")
    return decoder._get_logits_processor(
        generation_config=config, input_ids_seq_length=prompt_len, device="cpu"
    )


SAMPLING_SETTINGS = [
    dict(temperature=0.7, top_k=0, top_p=0.9),
    dict(temperature=1.0, top_k=40, top_p=1.0),
    dict(
        temperature=1.3, top_k=25, top_p=0.8, repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=3
    ),
    dict(temperature=0.5, top_k=0, top_p=0.5, repetition_penalty=0.8, min_new_tokens=6),
]


@pytest.mark.parametrize("settings", SAMPLING_SETTINGS)
@torch.no_grad()
def test_sampling_distribution_matches_reference_processors(checkpoints, settings):
    """At every step of real samples, our filtered distribution equals the reference's within 1e-6."""
    directory = checkpoints.decoding("caption", 0)
    loaded, oracle = blip.load(directory), load_oracle(directory, "caption")
    names = dict(top_k="top_k", top_p="top_p", temperature="temperature")
    ours_kw = {names.get(k, k): v for k, v in settings.items()}
    ours_kw["repetition_penalty"] = ours_kw.pop("repetition_penalty", 1.0)
    worst, steps = 0.0, 0
    for image_index in range(3):
        image_embeds = loaded.model.encode_image(loaded.pixels(random_image(300 + image_index)))
        options = DecodingOptions(
            strategy="sample", seed=image_index, num_sequences=2, max_new_tokens=12, **ours_kw
        )
        for generated in caption(loaded.model, loaded.tokenizer, image_embeds, PROMPT, options):
            prefix = [30522, *loaded.tokenizer.encode(PROMPT)[1:-1]]
            ids = torch.tensor([prefix + generated.sequence.token_ids])
            logits, _ = loaded.model.decoder_logits(image_embeds, ids)
            processors = _oracle_processors(oracle, len(prefix), do_sample=True, **settings)
            for step in range(len(generated.sequence.token_ids)):
                cur = len(prefix) + step
                scores = logits[:, cur - 1].float()
                ours = process_scores(
                    scores.clone(),
                    ids[:, :cur],
                    step,
                    stop_token=SEP,
                    repetition=options.repetition_penalty,
                    ngram=options.no_repeat_ngram_size,
                    min_new_tokens=options.min_new_tokens,
                    temperature=options.temperature,
                    top_k=options.top_k,
                    top_p=options.top_p,
                )
                reference = processors(ids[:, :cur], scores.clone())
                assert torch.equal(torch.isinf(ours), torch.isinf(reference))
                worst = max(worst, (ours.softmax(-1) - reference.softmax(-1)).abs().max().item())
                steps += 1
    assert steps >= 20 and worst <= 1e-6, (steps, worst)


@torch.no_grad()
def test_sampling_is_reproducible_with_a_seed(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 1))
    image_embeds = loaded.model.encode_image(loaded.pixels(random_image(5)))

    def run(seed):
        options = DecodingOptions(
            strategy="sample", seed=seed, num_sequences=4, top_p=0.95, max_new_tokens=15
        )
        return [
            t.sequence.token_ids for t in caption(loaded.model, loaded.tokenizer, image_embeds, "", options)
        ]

    first = run(123)
    assert run(123) == first
    assert len({tuple(ids) for ids in first}) > 1, "four samples should not all be identical"
    assert run(124) != first


@torch.no_grad()
def test_cache_and_attention_paths_choose_the_same_tokens(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 2))
    strategies = [
        DecodingOptions(max_new_tokens=20),
        DecodingOptions(strategy="beam", num_beams=4, num_sequences=2, repetition_penalty=1.2),
        DecodingOptions(strategy="sample", seed=3, num_sequences=3, top_k=20),
    ]
    for image_index, options in itertools.product(range(3), strategies):
        image_embeds = loaded.model.encode_image(loaded.pixels(random_image(400 + image_index)))
        base = caption(loaded.model, loaded.tokenizer, image_embeds, PROMPT, options)
        uncached = caption(
            loaded.model,
            loaded.tokenizer,
            image_embeds,
            PROMPT,
            DecodingOptions(**{**vars(options), "use_cache": False}),
        )
        explained = caption(
            loaded.model,
            loaded.tokenizer,
            image_embeds,
            PROMPT,
            DecodingOptions(**{**vars(options), "output_attentions": True}),
        )
        ids = [t.sequence.token_ids for t in base]
        assert [t.sequence.token_ids for t in uncached] == ids
        assert [t.sequence.token_ids for t in explained] == ids
        for text in explained:
            maps = text.sequence.cross_attentions  # (steps, layers, heads, image tokens)
            assert maps.shape == (len(text.sequence.token_ids), 2, 4, image_embeds.shape[1])
            assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5)


@torch.no_grad()
def test_cross_attention_maps_match_reference_output_attentions(checkpoints):
    """The map returned for each generated token is the reference's cross-attention at that position."""
    directory = checkpoints.decoding("caption", 3)
    loaded, oracle = blip.load(directory), load_oracle(directory, "caption")
    image_embeds = loaded.model.encode_image(loaded.pixels(random_image(9)))
    for options in (
        DecodingOptions(output_attentions=True),
        DecodingOptions(strategy="beam", output_attentions=True),
    ):
        result = caption(loaded.model, loaded.tokenizer, image_embeds, "", options)[0].sequence
        ids = torch.tensor([[30522, *result.token_ids]])
        out = oracle.text_decoder(input_ids=ids, encoder_hidden_states=image_embeds, output_attentions=True)
        reference = torch.stack(out.cross_attentions, dim=1)[0]  # (layers, heads, positions, image tokens)
        reference = reference.permute(2, 0, 1, 3)[: len(result.token_ids)]  # position t predicts token t + 1
        assert (result.cross_attentions - reference).abs().max().item() <= 1e-5


@torch.no_grad()
def test_returned_details_are_consistent(checkpoints):
    loaded = blip.load(checkpoints.decoding("caption", 4))
    image_embeds = loaded.model.encode_image(loaded.pixels(random_image(11)))
    text = caption(loaded.model, loaded.tokenizer, image_embeds, PROMPT, DecodingOptions(top_alternatives=3))[
        0
    ]
    seq = text.sequence
    assert text.text.startswith(PROMPT)
    assert len(seq.token_logprobs) == len(seq.alternatives) == len(seq.token_ids) == len(text.tokens)
    assert seq.score == pytest.approx(sum(seq.token_logprobs))
    for token, logprob, alternatives in zip(seq.token_ids, seq.token_logprobs, seq.alternatives, strict=True):
        assert len(alternatives) == 3
        # Greedy search without penalties picks the most likely token, which heads the alternatives.
        assert alternatives[0][0] == token and alternatives[0][1] == pytest.approx(
            torch.tensor(logprob).exp().item()
        )
    # Independent check of the per-token log-probabilities with a teacher-forced pass.
    prefix = [30522, *loaded.tokenizer.encode(PROMPT)[1:-1]]
    ids = torch.tensor([prefix + seq.token_ids])
    logits, _ = loaded.model.decoder_logits(image_embeds, ids)
    logprobs = (
        logits[0, len(prefix) - 1 : -1].log_softmax(-1).gather(-1, ids[0, len(prefix) :, None]).squeeze(-1)
    )
    assert torch.allclose(logprobs, torch.tensor(seq.token_logprobs), atol=1e-5)


@torch.no_grad()
def test_candidate_ranking_matches_teacher_forced_likelihoods(checkpoints):
    directory = checkpoints.decoding("vqa", 0)
    loaded, oracle = blip.load(directory), load_oracle(directory, "vqa")
    image_embeds = loaded.model.encode_image(loaded.pixels(random_image(21)))
    states = encode_question(loaded.model, loaded.tokenizer, image_embeds, "what colour is the car?")
    candidates = ["red", "dark blue", "a very light shade of green", "yes"]
    ranked = rank_answers(loaded.model, loaded.tokenizer, states, candidates)
    assert sorted(r.answer for r in ranked) == sorted(candidates)
    assert sum(r.probability for r in ranked) == pytest.approx(1.0)
    assert [r.log_likelihood for r in ranked] == sorted((r.log_likelihood for r in ranked), reverse=True)
    # Independent: the oracle's decoder on each candidate alone (no padding), summed log-probabilities.
    tokenizer = oracle_tokenizer()
    expected = {}
    for text in candidates:
        ids = tokenizer(text, return_tensors="pt").input_ids
        ids[:, 0] = 30522
        logits = oracle.text_decoder(input_ids=ids, encoder_hidden_states=states).logits
        expected[text] = logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None]).sum().item()
    for r in ranked:
        assert r.log_likelihood == pytest.approx(expected[r.answer], abs=1e-4)
    total = torch.tensor(list(expected.values())).logsumexp(0)
    for r in ranked:
        assert r.probability == pytest.approx((expected[r.answer] - total).exp().item(), abs=1e-5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_beams", 0),
        ("num_beams", 99),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("temperature", 0.0),
        ("max_new_tokens", 0),
        ("min_new_tokens", 50),
        ("strategy", "contrastive"),
        ("repetition_penalty", -1.0),
    ],
)
def test_invalid_options_name_the_parameter(field, value):
    with pytest.raises(ValueError, match=field):
        DecodingOptions(**{field: value})
