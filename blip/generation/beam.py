"""Beam search: keep the ``num_beams`` best partial texts, extend them all, keep the best again.

The bookkeeping follows the reference implementation exactly, because small differences (how many
candidates survive a step, when a finished text may still be beaten, how length is counted) change
which caption comes out:

* each step ranks all ``num_beams x vocab`` extensions by accumulated log-probability and keeps the top
  ``2 * num_beams`` candidates, so that enough unfinished ones remain when some end in [SEP];
* a candidate among the top ``num_beams`` that ends (with [SEP], or at the length limit) joins the
  finished list with score ``sum log p / generated_length ** length_penalty``, where the generated
  length counts the new tokens including [SEP];
* the best ``num_beams`` unfinished candidates continue;
* the search stops when every candidate hits the limit, or (``early_stopping=False``) when the best
  running beam, scored at its current length, cannot beat the worst of a full finished list;
  ``True`` stops as soon as the list is full; ``"never"`` assumes the best possible length.
"""

from __future__ import annotations

import torch

from ..loading.tokenizer import PAD_ID, SEP_ID
from .logits import process_scores
from .options import DecodingOptions, GeneratedSequence
from .stepper import RowHistory, Stepper, to_sequence

_FAR_BELOW = -1.0e9  # "never pick this": added to scores of excluded entries, as the reference does


def beam_search(stepper: Stepper, prompt: torch.Tensor, options: DecodingOptions) -> list[GeneratedSequence]:
    """Run beam search from ``prompt`` (1, P); return the ``num_sequences`` best finished texts."""
    device = prompt.device
    beams, keep = options.num_beams, 2 * options.num_beams
    plen, steps, k = prompt.shape[1], options.max_new_tokens, options.top_alternatives
    max_length = plen + steps
    penalty, early = options.length_penalty, options.early_stopping

    running = torch.full((beams, max_length), PAD_ID, dtype=torch.long, device=device)
    running[:, :plen] = prompt
    running_scores = torch.zeros(beams, device=device)
    running_scores[1:] = _FAR_BELOW  # all beams start identical: only the first may expand at step one
    running_history = RowHistory.empty(beams, steps, k)
    finished = running.clone()
    finished_scores = torch.full((beams,), _FAR_BELOW, device=device)
    finished_lengths = torch.zeros(beams, dtype=torch.long)
    finished_history = RowHistory.empty(beams, steps, k)
    is_finished = torch.zeros(beams, dtype=torch.bool, device=device)
    can_improve = True
    top_beams = torch.arange(keep, device=device) < beams  # only these candidates may finish
    attention_steps: list[torch.Tensor] | None = [] if options.output_attentions else None

    logits, cross = stepper.start(prompt, beams)  # every beam starts from the same prompt state

    for step in range(steps):
        cur = plen + step
        raw = logits.log_softmax(dim=-1)  # (beams, vocab)
        scores = process_scores(
            raw,
            running[:, :cur],
            step,
            stop_token=SEP_ID,
            repetition=options.repetition_penalty,
            ngram=options.no_repeat_ngram_size,
            min_new_tokens=options.min_new_tokens,
        )
        vocab = scores.shape[-1]
        totals = (scores + running_scores[:, None]).reshape(-1)  # (beams * vocab)
        cand_scores, flat = torch.topk(totals, keep)
        source, tokens = flat // vocab, flat % vocab  # which beam each candidate extends, and with what
        candidates = running[source].clone()
        candidates[:, cur] = tokens
        cand_history = running_history.select(source.cpu())
        cand_history.record(step, source.cpu(), raw.cpu(), tokens.cpu(), k)
        if attention_steps is not None:
            attention_steps.append(cross)
        ends = (tokens == SEP_ID) | (cur + 1 >= max_length)

        # The best unfinished candidates run on.
        running_candidates = cand_scores + ends.to(torch.float32) * _FAR_BELOW
        chosen = torch.topk(running_candidates, beams).indices
        running, running_scores = candidates[chosen], running_candidates[chosen]
        running_history = cand_history.select(chosen.cpu())

        # Candidates that just ended compete with the finished list, scored with the length penalty.
        just_finished = ends & top_beams
        final = cand_scores / ((cur + 1 - plen) ** penalty)
        full = bool(is_finished.all()) and early is True
        final = final + float(full) * _FAR_BELOW
        final = final + float(not can_improve) * _FAR_BELOW
        final = final + (~just_finished) * _FAR_BELOW
        merged_scores = torch.cat([finished_scores, final])
        best = torch.topk(merged_scores, beams).indices
        finished = torch.cat([finished, candidates])[best]
        finished_scores = merged_scores[best]
        finished_lengths = torch.cat([finished_lengths, torch.full((keep,), step + 1)])[best.cpu()]
        finished_history = finished_history.cat(cand_history).select(best.cpu())
        is_finished = torch.cat([is_finished, just_finished])[best]

        # Could a running beam still beat the worst finished text?
        if early == "never" and penalty > 0.0:
            best_length = max_length - plen
        else:
            best_length = cur + 1 - plen
        best_running = running_scores[:1] / (best_length**penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(), _FAR_BELOW)
        can_improve = can_improve and bool((best_running > worst_finished).any())
        open_beam = not (bool(is_finished.all()) and early is True)
        if not (can_improve and open_beam and not bool(ends.all())):
            break
        stepper.reorder(source[chosen])
        logits, cross = stepper(running[:, : cur + 1])

    return [
        to_sequence(
            finished[i, plen:],
            finished_history,
            i,
            int(finished_lengths[i]),
            float(finished_scores[i]),
            attention_steps,
        )
        for i in range(options.num_sequences)
    ]
