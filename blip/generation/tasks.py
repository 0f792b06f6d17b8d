"""Captions and answers as text: prompts in, decoded strings out, on top of :mod:`blip.generation.decoding`.

These functions take the image tokens from ``encode_image`` so that a caller (the engine) can encode an
image once and ask many things about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..loading.tokenizer import CLS_ID, DEC_ID, ENC_ID, PAD_ID, BlipTokenizer
from ..model.cache import KVCache
from ..model.task_models import CaptionModel, QuestionAnsweringModel
from .decoding import generate, generate_many
from .forcing import teacher_forced
from .options import MAX_POSITIONS, DecodingOptions, GeneratedSequence
from .stepper import RowHistory, to_sequence

MAX_TEXT_TOKENS = 64  # questions and answers are short; longer input is truncated (the caller is told)


@dataclass
class GeneratedText:
    """A decoded caption or answer with its token-level detail."""

    text: str  # the full text: for a prompted caption, the prompt and its continuation
    tokens: list[str]  # the generated wordpieces, for display
    sequence: GeneratedSequence  # ids, log-probabilities, alternatives, attention maps


@dataclass
class RankedAnswer:
    answer: str
    log_likelihood: float  # sum of log p over the answer's tokens and its final [SEP]
    probability: float  # softmax of the log-likelihoods over the candidates


def caption_prompt_ids(tokenizer: BlipTokenizer, prompt: str = "") -> list[int]:
    """[DEC] followed by the prompt's wordpieces (the reference drops [CLS] and the final [SEP])."""
    if not prompt.strip():
        return [DEC_ID]
    return [DEC_ID, *tokenizer.encode(prompt, max_length=MAX_TEXT_TOKENS)[1:-1]]


def _texts(
    tokenizer: BlipTokenizer, prefix: list[int], sequences: list[GeneratedSequence]
) -> list[GeneratedText]:
    for tree in {id(s.tree): s.tree for s in sequences if s.tree is not None}.values():
        tree.name_tokens(tokenizer.convert_ids_to_tokens([n.token_id for n in tree.nodes]))
    return [
        GeneratedText(
            text=tokenizer.decode(prefix + seq.token_ids),
            tokens=tokenizer.convert_ids_to_tokens(seq.token_ids),
            sequence=seq,
        )
        for seq in sequences
    ]


def caption(
    model: CaptionModel,
    tokenizer: BlipTokenizer,
    image_embeds: torch.Tensor,
    prompt: str = "",
    options: DecodingOptions | None = None,
    forced: Sequence[int] = (),
) -> list[GeneratedText]:
    """Caption one image given its tokens (1, N, D); the text continues ``prompt`` when one is given,
    and starts with the token ids ``forced`` when those are given (see :func:`~.decoding.generate`)."""
    if image_embeds.shape[0] != 1:
        raise ValueError("caption() takes one image's tokens (see caption_many)")
    return caption_many(model, tokenizer, image_embeds, prompt, options, forced)[0]


def caption_many(
    model: CaptionModel,
    tokenizer: BlipTokenizer,
    image_embeds: torch.Tensor,
    prompt: str = "",
    options: DecodingOptions | None = None,
    forced: Sequence[int] = (),
) -> list[list[GeneratedText]]:
    """Caption G images together given their tokens (G, N, D), all continuing the same ``prompt``
    (and ``forced`` token ids); each image gets the captions it would get alone."""
    prompt_ids = caption_prompt_ids(tokenizer, prompt)
    options = options or DecodingOptions()
    batches = generate_many(model.text_decoder, image_embeds, prompt_ids, options, forced)
    return [_texts(tokenizer, prompt_ids[1:], sequences) for sequences in batches]


def score_caption(
    model: CaptionModel,
    tokenizer: BlipTokenizer,
    image_embeds: torch.Tensor,
    token_ids: Sequence[int],
    prompt: str = "",
    options: DecodingOptions | None = None,
) -> GeneratedText:
    """How likely the captioner finds a given caption: each token's log-probability (teacher-forced),
    the model's own best alternatives at each step, and on request its cross-attention.

    Args:
        image_embeds: (1, N, D) one image's tokens.
        token_ids: the caption's wordpieces after the prompt (end them with [SEP] to score the
            caption as a whole sentence: the model's belief that it stops there).
        options: ``top_alternatives`` and ``output_attentions`` are read; penalties are not applied.

    Returns:
        A :class:`GeneratedText` as decoding would have made it had it chosen these tokens: its score
        is the total log-likelihood, and every token counts as forced.
    """
    ids = [int(i) for i in token_ids]
    if not ids:
        raise ValueError("the caption to score has no tokens")
    prompt_ids = caption_prompt_ids(tokenizer, prompt)
    if len(prompt_ids) + len(ids) > MAX_POSITIONS:
        raise ValueError(f"prompt and caption exceed the {MAX_POSITIONS}-token limit")
    options = options or DecodingOptions()
    plain = DecodingOptions(
        top_alternatives=options.top_alternatives, output_attentions=options.output_attentions
    )
    prefix = teacher_forced(model.text_decoder, image_embeds, prompt_ids, ids, plain)
    history = RowHistory.empty(1, len(ids), plain.top_alternatives)
    history.fill_forced(prefix, torch.zeros(1, dtype=torch.long))
    maps = list(prefix.cross_attentions.unbind(0)) if prefix.cross_attentions is not None else None
    seq = to_sequence(torch.tensor(ids), history, 0, len(ids), None, maps, forced=len(ids))
    return _texts(tokenizer, prompt_ids[1:], [seq])[0]


def question_ids(tokenizer: BlipTokenizer, question: str, first_token: int = CLS_ID) -> torch.Tensor:
    """(1, T) question ids; ``first_token`` ENC_ID gives BLIP's own convention, CLS_ID transformers'."""
    if first_token not in (CLS_ID, ENC_ID):
        raise ValueError("first_token must be [CLS] (101) or [ENC] (30523)")
    ids = tokenizer.encode(question, max_length=MAX_TEXT_TOKENS)
    ids[0] = first_token
    return torch.tensor([ids])


def encode_question(
    model: QuestionAnsweringModel,
    tokenizer: BlipTokenizer,
    image_embeds: torch.Tensor,
    question: str,
    first_token: int = CLS_ID,
    cache: KVCache | None = None,
) -> torch.Tensor:
    """Question states (1, T, 768), grounded in the image.

    ``cache``, when given, is a fresh :class:`KVCache` whose ``cross`` list holds the image's per-layer
    cross-attention keys and values from an earlier question on the same image (they are reused), or
    nothing yet (it is filled in, to keep for the next question). Projecting 577 image tokens in every
    layer is most of the work of encoding a short question.
    """
    ids = question_ids(tokenizer, question, first_token).to(image_embeds.device)
    with torch.inference_mode():
        return model.encode_question(image_embeds, ids, cache=cache).hidden_states


def answer(
    model: QuestionAnsweringModel,
    tokenizer: BlipTokenizer,
    question_states: torch.Tensor,
    options: DecodingOptions | None = None,
    forced: Sequence[int] = (),
) -> list[GeneratedText]:
    """Generate answers from question states (see :func:`encode_question`), starting with the token
    ids ``forced`` when those are given."""
    sequences = generate(model.text_decoder, question_states, [DEC_ID], options or DecodingOptions(), forced)
    return _texts(tokenizer, [], sequences)


def rank_answers(
    model: QuestionAnsweringModel,
    tokenizer: BlipTokenizer,
    question_states: torch.Tensor,
    candidates: list[str],
) -> list[RankedAnswer]:
    """Score each candidate answer by its log-likelihood under the answer decoder, best first.

    This is BLIP's "rank" inference for VQA: instead of generating freely, the decoder is asked how
    likely it finds each given answer; the probabilities are a softmax over the candidates only.
    """
    if not candidates:
        raise ValueError("rank_answers needs at least one candidate answer")
    ids, mask = tokenizer.encode_batch(candidates, max_length=MAX_TEXT_TOKENS)
    ids[:, 0] = DEC_ID
    ids, mask = ids.to(question_states.device), mask.to(question_states.device)
    with torch.inference_mode():
        logits, _ = model.answer_logits(question_states, ids, answer_mask=mask)
    # Position t predicts token t + 1: score every real token after [DEC], [SEP] included.
    logprobs = logits[:, :-1].float().log_softmax(dim=-1)
    targets = ids[:, 1:]
    token_logprobs = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    totals = (token_logprobs * (targets != PAD_ID)).sum(dim=1)
    probabilities = totals.softmax(dim=0)
    ranked = [
        RankedAnswer(text, float(total), float(prob))
        for text, total, prob in zip(candidates, totals, probabilities, strict=True)
    ]
    return sorted(ranked, key=lambda r: r.log_likelihood, reverse=True)
