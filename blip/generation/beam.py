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
from .forcing import TeacherForced
from .logits import process_scores
from .options import DecodingOptions, GeneratedSequence
from .stepper import RowHistory, Stepper, to_sequence
from .tree import TreeRecorder

_FAR_BELOW = -1.0e9  # "never pick this": added to scores of excluded entries, as the reference does


def beam_search(
    stepper: Stepper, prompt: torch.Tensor, options: DecodingOptions, prefix: TeacherForced | None = None
) -> list[list[GeneratedSequence]]:
    """Run beam search from ``prompt`` (1, P) for each of the stepper's G images; return each image's
    ``num_sequences`` best finished texts.

    Every image keeps its own beams, finished list and stopping test, exactly as if it ran alone; the
    tensors below carry a leading image dimension (G, ...), and an image whose search has stopped
    leaves the batch.

    With a ``prefix`` of k forced tokens, ``prompt`` (1, P + k) ends with them: the search starts at
    step k from that one text, its score the forced tokens' summed step scores, as if those had been
    the only candidates allowed. With ``options.record_tree`` each image's sequences carry its
    :class:`~blip.generation.tree.SearchTree`.
    """
    device = prompt.device
    images = stepper.encoder_states.shape[0]
    beams, keep = options.num_beams, 2 * options.num_beams
    forced = len(prefix.token_ids) if prefix is not None else 0
    plen, steps, k = prompt.shape[1] - forced, options.max_new_tokens, options.top_alternatives
    max_length = plen + steps
    penalty, early = options.length_penalty, options.early_stopping

    running = torch.full((images, beams, max_length), PAD_ID, dtype=torch.long, device=device)
    running[:, :, : plen + forced] = prompt
    running_scores = torch.zeros(images, beams, device=device)
    running_scores[:, 1:] = _FAR_BELOW  # all beams start identical: only the first may expand at step one
    running_history = RowHistory.empty(images * beams, steps, k)  # image-major rows
    attention_steps: list[torch.Tensor] | None = [] if options.output_attentions else None
    recorder = None
    if prefix is not None:
        running_scores[:, 0] = prefix.scores.sum(dim=1).to(device)
        running_history.fill_forced(prefix, torch.arange(images).repeat_interleave(beams))
        if attention_steps is not None:
            attention_steps.extend(prefix.cross_attentions.unbind(0))
    if options.record_tree:
        rows = prefix.per_image() if prefix is not None else None
        recorder = TreeRecorder(images, beams, penalty, int(prompt[0, plen - 1]), rows)
    finished = running.clone()
    finished_scores = torch.full((images, beams), _FAR_BELOW, device=device)
    finished_lengths = torch.zeros(images, beams, dtype=torch.long)
    finished_history = RowHistory.empty(images * beams, steps, k)
    is_finished = torch.zeros(images, beams, dtype=torch.bool, device=device)
    can_improve = torch.ones(images, dtype=torch.bool, device=device)
    top_beams = torch.arange(keep, device=device) < beams  # only these candidates may finish
    alive = list(range(images))  # the images still searching, by their index in the input
    results: list[list[GeneratedSequence]] = [[] for _ in range(images)]

    logits, cross = stepper.start(prompt, beams)  # every beam of an image starts from its prompt state

    for step in range(forced, steps):
        cur = plen + step
        g = len(alive)
        raw = logits.log_softmax(dim=-1)  # (g * beams, vocab)
        scores = process_scores(
            raw,
            running[:, :, :cur].reshape(g * beams, cur),
            step,
            stop_token=SEP_ID,
            repetition=options.repetition_penalty,
            ngram=options.no_repeat_ngram_size,
            min_new_tokens=options.min_new_tokens,
        )
        vocab = scores.shape[-1]
        totals = (scores.view(g, beams, vocab) + running_scores[:, :, None]).view(g, beams * vocab)
        cand_scores, flat = torch.topk(totals, keep, dim=1)  # (g, keep)
        tokens = flat % vocab
        # Which running row (of all g * beams) each candidate extends, and with what token.
        source = _offset(flat // vocab, beams)  # (g, keep)
        candidates = running.view(g * beams, max_length)[source].clone()  # (g, keep, max_length)
        candidates[:, :, cur] = tokens
        cand_history = running_history.select(source.view(-1).cpu())
        cand_history.record(step, source.view(-1).cpu(), raw.cpu(), tokens.view(-1).cpu(), k)
        if attention_steps is not None:
            attention_steps.append(cross)
        ends = (tokens == SEP_ID) | (cur + 1 >= max_length)  # (g, keep)

        # The best unfinished candidates run on.
        running_candidates = cand_scores + ends.to(torch.float32) * _FAR_BELOW
        chosen = torch.topk(running_candidates, beams, dim=1).indices  # (g, beams)
        running = candidates.gather(1, chosen[:, :, None].expand(-1, -1, max_length))
        running_scores = running_candidates.gather(1, chosen)
        running_history = cand_history.select(_offset(chosen, keep).view(-1).cpu())

        # Candidates that just ended compete with the finished list, scored with the length penalty.
        just_finished = ends & top_beams
        final = cand_scores / ((cur + 1 - plen) ** penalty)
        full = is_finished.all(dim=1) & (early is True)  # (g,)
        final = final + full[:, None].to(torch.float32) * _FAR_BELOW
        final = final + (~can_improve)[:, None].to(torch.float32) * _FAR_BELOW
        final = final + (~just_finished) * _FAR_BELOW
        merged_scores = torch.cat([finished_scores, final], dim=1)  # (g, beams + keep)
        best = torch.topk(merged_scores, beams, dim=1).indices  # (g, beams)
        finished = torch.cat([finished, candidates], dim=1).gather(
            1, best[:, :, None].expand(-1, -1, max_length)
        )
        finished_scores = merged_scores.gather(1, best)
        new_lengths = torch.full((g, keep), step + 1, dtype=torch.long)
        finished_lengths = torch.cat([finished_lengths, new_lengths], dim=1).gather(1, best.cpu())
        # In the concatenated histories, image i's finished rows come first, its candidates after all.
        merged_rows = torch.where(best < beams, _offset(best, beams), g * beams + _offset(best - beams, keep))
        finished_history = finished_history.cat(cand_history).select(merged_rows.view(-1).cpu())
        is_finished = torch.cat([is_finished, just_finished], dim=1).gather(1, best)
        if recorder is not None:  # what became of each candidate, while the search still knows
            entered = torch.zeros_like(merged_scores, dtype=torch.bool).scatter(1, best, True)[:, beams:]
            entered = entered & (final > _FAR_BELOW / 2)
            recorder.step(
                step,
                *(t.tolist() for t in (source, tokens, cand_history.logprobs[:, step].view(g, keep))),
                *(t.tolist() for t in (cand_scores, ends, chosen, best, entered)),
            )

        # Could a running beam still beat the worst finished text?
        if early == "never" and penalty > 0.0:
            best_length = max_length - plen
        else:
            best_length = cur + 1 - plen
        best_running = running_scores[:, :1] / (best_length**penalty)  # (g, 1)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, _FAR_BELOW)
        can_improve = can_improve & (best_running > worst_finished).any(dim=1)
        open_beam = ~(is_finished.all(dim=1) & (early is True))
        searching = can_improve & open_beam & ~ends.all(dim=1)  # (g,)

        for i in (~searching).nonzero().squeeze(1).tolist():  # images whose search has stopped
            tree = recorder.finish(i, options.num_sequences) if recorder is not None else None
            results[alive[i]] = [
                to_sequence(
                    finished[i, n, plen:],
                    finished_history,
                    i * beams + n,
                    int(finished_lengths[i, n]),
                    float(finished_scores[i, n]),
                    attention_steps,
                    forced,
                )
                for n in range(options.num_sequences)
            ]
            for seq in results[alive[i]]:
                seq.tree = tree
        if not bool(searching.any()):
            break
        next_rows = source.gather(1, chosen)  # (g, beams): the running row each new beam continues
        if bool(searching.all()):
            stepper.reorder(next_rows.view(-1))
        else:  # stopped images leave the batch, with everything that tracks them
            stay = searching.nonzero().squeeze(1)
            rows = (stay[:, None] * beams + torch.arange(beams, device=device)).view(-1)
            stepper.reorder(next_rows[stay].view(-1), groups=stay)
            alive = [alive[i] for i in stay.tolist()]
            running, running_scores = running[stay], running_scores[stay]
            finished, finished_scores = finished[stay], finished_scores[stay]
            finished_lengths, is_finished = finished_lengths[stay.cpu()], is_finished[stay]
            can_improve = can_improve[stay]
            running_history = running_history.select(rows.cpu())
            finished_history = finished_history.select(rows.cpu())
            if recorder is not None:
                recorder.keep(stay.tolist())
        logits, cross = stepper(running[:, :, : cur + 1].reshape(len(alive) * beams, cur + 1))

    return results


def _offset(index: torch.Tensor, width: int) -> torch.Tensor:
    """(g, n) indices into each image's ``width`` entries -> indices into all g * width, image-major."""
    return index + torch.arange(index.shape[0], device=index.device)[:, None] * width
