"""Our own decoding loop: greedy search and sampling here, beam search in ``beam.py``.

BLIP writes text one token at a time. At every step the decoder turns everything so far into scores
for the next token, :mod:`~blip.generation.logits` reshapes them (penalties, bans, sampling filters) and a strategy
picks the token. The choices match the reference implementation's ``generate`` token for token.

Speed comes from three habits: the :class:`~blip.model.cache.KVCache` keeps past keys and values so each step
runs one token; the image (or question) keys and values are computed once and shared by every row;
and all rows (beams or samples) advance together as one batch.

Besides the tokens, the loop returns what an explorer wants: each token's log-probability, the best
alternatives at each step, and on request where the decoder looked (cross-attention) for each token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..loading.tokenizer import PAD_ID, SEP_ID
from ..model.text import TextLMModel
from .beam import beam_search
from .forcing import TeacherForced, check_forced, teacher_forced
from .graphed import graphed_stepper
from .logits import process_scores
from .options import MAX_POSITIONS, DecodingOptions, GeneratedSequence
from .stepper import RowHistory, Stepper, to_sequence
from .tree import TreeRecorder


def generate(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    prompt_ids: list[int],
    options: DecodingOptions,
    forced: Sequence[int] = (),
) -> list[GeneratedSequence]:
    """Continue ``prompt_ids`` (starting with [DEC]) while attending to ``encoder_states``.

    Args:
        decoder: the image-grounded decoder with its LM head.
        encoder_states: (1, S, E) image tokens (captioning) or question states (VQA).
        prompt_ids: the tokens to continue: [DEC] alone, or [DEC] + a caption prompt.
        options: strategy and controls.
        forced: token ids the text must start with ("what if it had chosen this word?"); decoding
            continues after them with the same settings. They count as generated tokens (for the
            token limits and the length penalty) and are reported like the others, with
            log-probabilities from a teacher-forced pass (:mod:`.forcing`).

    Returns:
        ``options.num_sequences`` sequences, best first for beam search (one, when ``forced`` leaves
        nothing to decode: it ends with [SEP] or fills ``max_new_tokens``).
    """
    if encoder_states.shape[0] != 1:
        raise ValueError("generate() decodes for one image or question at a time (see generate_many)")
    return generate_many(decoder, encoder_states, prompt_ids, options, forced)[0]


def generate_many(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    prompt_ids: list[int],
    options: DecodingOptions,
    forced: Sequence[int] = (),
) -> list[list[GeneratedSequence]]:
    """:func:`generate` for G images at once, (G, S, E): each image's texts, in order.

    Greedy and beam search run every image's rows as one batch (one weight read per step for all of
    them) and give each image exactly the tokens it gets alone. Sampling runs image by image, so that a
    seed gives the same samples as for the image alone.
    """
    if len(prompt_ids) + options.max_new_tokens > MAX_POSITIONS:
        raise ValueError(f"prompt plus max_new_tokens exceeds the {MAX_POSITIONS}-token limit")
    forced = check_forced(forced, decoder.bert.config.vocab_size, options.max_new_tokens)
    if options.strategy == "sample" and encoder_states.shape[0] > 1:
        return [generate(decoder, states[None], prompt_ids, options, forced) for states in encoder_states]
    prefix = teacher_forced(decoder, encoder_states, prompt_ids, forced, options) if forced else None
    if prefix is not None and (forced[-1] == SEP_ID or len(forced) == options.max_new_tokens):
        return _forced_only(prefix, prompt_ids[-1], options)
    prompt = torch.tensor([prompt_ids + forced], device=encoder_states.device)
    positions = prompt.shape[1] + options.max_new_tokens
    with torch.inference_mode(), graphed_stepper(decoder, encoder_states, options, positions) as static:
        # On CUDA, greedy steps replay a recorded graph over a static cache (see graphed.py).
        stepper = static or Stepper(decoder, encoder_states, options)
        if options.strategy == "beam":
            return beam_search(stepper, prompt, options, prefix)
        return _greedy_or_sample(stepper, prompt, options, prefix)


def _forced_only(
    prefix: TeacherForced, last_prompt_id: int, options: DecodingOptions
) -> list[list[GeneratedSequence]]:
    """Every token was forced: each image's one text is the forced one, scored as its strategy scores."""
    k, images = len(prefix.token_ids), prefix.logprobs.shape[0]
    history = RowHistory.empty(images, k, options.top_alternatives)
    history.fill_forced(prefix, torch.arange(images))
    steps = list(prefix.cross_attentions.unbind(0)) if prefix.cross_attentions is not None else None
    recorder = None
    if options.record_tree:
        recorder = TreeRecorder(
            images, options.num_beams, options.length_penalty, last_prompt_id, prefix.per_image()
        )
    results = []
    for i in range(images):
        score = None  # greedy and sampling rank by the plain sum of log-probabilities
        if options.strategy == "beam":
            score = float(prefix.scores[i].sum()) / (k**options.length_penalty)
        seq = to_sequence(torch.tensor(prefix.token_ids), history, i, k, score, steps, forced=k)
        seq.tree = recorder.forced_only(i) if recorder is not None else None
        results.append([seq])
    return results


def _greedy_or_sample(
    stepper: Stepper, prompt: torch.Tensor, options: DecodingOptions, prefix: TeacherForced | None = None
) -> list[list[GeneratedSequence]]:
    """Greedy search (one row per image) or independent samples (``num_sequences`` rows, one image),
    with the reference's per-step order: scores -> penalties/filters -> argmax or draw -> stop rows
    that produced [SEP]. ``prompt`` (1, P + k) ends with the k forced tokens of ``prefix``, if any.

    A finished greedy row leaves the batch; finished samples stay in it and only pad, because the
    random draws of the other rows depend on how many rows draw."""
    sample = options.strategy == "sample"
    images = stepper.encoder_states.shape[0]
    rows = options.num_sequences if sample else images
    forced = len(prefix.token_ids) if prefix is not None else 0
    plen, steps, k = prompt.shape[1] - forced, options.max_new_tokens, options.top_alternatives
    generator = None
    if sample:
        generator = torch.Generator(device=prompt.device)
        generator.manual_seed(options.seed if options.seed is not None else torch.seed())

    # Everything the loop writes stays on the model's device, so that a step reads back from the GPU
    # once (is anything still running, did a row just finish) rather than for every record.
    device = prompt.device
    sequences = torch.full((rows, plen + steps), PAD_ID, dtype=torch.long, device=device)
    sequences[:, : plen + forced] = prompt
    history = RowHistory.empty(rows, steps, k, device=device)
    attention_steps: list[torch.Tensor] | None = [] if options.output_attentions else None
    if prefix is not None:  # the forced steps, as the teacher-forced pass saw them
        history.fill_forced(prefix, torch.zeros(rows, dtype=torch.long) if sample else torch.arange(rows))
        if attention_steps is not None:
            attention_steps.extend(prefix.cross_attentions.unbind(0))
    alive = torch.arange(rows, device=device)  # the rows still in the batch (all, for samples)
    running = torch.ones(rows, dtype=torch.bool, device=device)
    lengths = torch.full((rows,), steps, dtype=torch.long, device=device)

    logits, cross = stepper.start(prompt, 1 if not sample else rows)
    for step in range(forced, steps):
        cur = plen + step
        raw = logits.log_softmax(dim=-1)
        scores = process_scores(
            logits,
            sequences[alive, :cur],
            step,
            stop_token=SEP_ID,
            repetition=options.repetition_penalty,
            ngram=options.no_repeat_ngram_size,
            min_new_tokens=options.min_new_tokens,
            temperature=options.temperature if sample else 1.0,
            top_k=options.top_k if sample else 0,
            top_p=options.top_p if sample else 1.0,
        )
        if sample:
            tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        tokens = torch.where(running[alive], tokens, PAD_ID)  # finished rows only pad
        sequences[alive, cur] = tokens
        batch_rows = torch.arange(len(alive), device=device)
        history.record(step, batch_rows, raw, tokens, k, at=alive)
        if attention_steps is not None:
            attention_steps.append(cross)
        just_done = running[alive] & (tokens == SEP_ID)
        lengths[alive] = torch.where(just_done, step + 1, lengths[alive])
        running[alive] = running[alive] & ~just_done
        any_running, any_done = torch.stack([running.any(), just_done.any()]).tolist()
        if not any_running or step + 1 == steps:
            break
        if not sample and any_done:  # finished greedy rows (and their images) leave
            keep = (~just_done).nonzero().squeeze(1)
            alive = alive[keep]
            stepper.reorder(keep, groups=keep)
        logits, cross = stepper(sequences[alive, : cur + 1])

    history, sequences, lengths = history.to("cpu"), sequences[:, plen:].cpu(), lengths.tolist()
    texts = [
        to_sequence(sequences[r], history, r, lengths[r], None, attention_steps, forced) for r in range(rows)
    ]
    return [texts] if sample else [[text] for text in texts]
