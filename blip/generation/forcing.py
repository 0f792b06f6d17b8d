"""Teacher forcing: what the decoder thinks of tokens it is *given* rather than tokens it chose.

Two classroom questions need it. "What if the caption had said *red* here?": the decoding loop
continues from a forced prefix of token ids, and those forced tokens get their own probabilities from
one teacher-forced pass. "How likely does the model find *my* caption?": the same pass over a whole
text a student typed. In a teacher-forced pass the decoder reads the full text at once; causal masking
means position t - 1 sees only the tokens before t, so its next-token distribution is exactly the one
the decoding loop would have had before writing token t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..loading.tokenizer import SEP_ID
from ..model.text import TextLMModel
from .logits import process_scores
from .options import DecodingOptions


@dataclass
class TeacherForced:
    """The decoder's view of given tokens, for each of G images (or questions).

    ``logprobs`` are the raw log-probabilities (before any penalty), as the decoding loop reports for the
    tokens it chooses. ``scores`` are what beam search would have added up for them: the same values
    after the repetition penalty and bans of the decoding settings. A token those settings forbid (a
    repeated n-gram, [SEP] before ``min_new_tokens``) keeps its raw log-probability there, so that a
    forced choice never turns a whole search's scores into minus infinity.
    """

    token_ids: list[int]
    logprobs: torch.Tensor  # (G, k)
    scores: torch.Tensor  # (G, k)
    blocked: torch.Tensor  # (G, k) bool: the decoding settings would have forbidden this token here
    alt_ids: torch.Tensor  # (G, k, top) the model's best tokens at each position
    alt_logprobs: torch.Tensor  # (G, k, top)
    cross_attentions: torch.Tensor | None = None  # (k, G, layers, heads, S), on request

    def per_image(self) -> list[list[tuple[int, float, float]]]:
        """Per image, each token as (id, raw log-probability, step score): what a search tree records."""
        return [
            list(zip(self.token_ids, logprobs.tolist(), scores.tolist(), strict=True))
            for logprobs, scores in zip(self.logprobs, self.scores, strict=True)
        ]


def check_forced(forced: Sequence[int], vocab_size: int, max_new_tokens: int) -> list[int]:
    """``forced`` as a list of ints, or a ``ValueError`` saying what is wrong with it.

    [SEP] ends a text, so it may only come last ("what if it had stopped here?")."""
    ids = [int(i) for i in forced]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"forced token ids must be between 0 and {vocab_size - 1} (got {bad[0]})")
    if SEP_ID in ids[:-1]:
        raise ValueError("[SEP] (102) ends the text: it may only be the last forced token")
    if len(ids) > max_new_tokens:
        raise ValueError(f"{len(ids)} forced tokens exceed max_new_tokens ({max_new_tokens})")
    return ids


def teacher_forced(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    prompt_ids: list[int],
    token_ids: list[int],
    options: DecodingOptions | None = None,
) -> TeacherForced:
    """One pass of the decoder over ``prompt_ids + token_ids``, read at the positions that predict
    ``token_ids``.

    Args:
        decoder: the image-grounded decoder with its LM head.
        encoder_states: (G, S, E) image tokens or question states; every row reads the same tokens.
        prompt_ids: [DEC] and the prompt's wordpieces (conditioned on, not scored).
        token_ids: the k tokens to score, in order (at least one).
        options: the decoding settings whose penalties and bans ``scores`` apply, and how many
            alternatives to keep (``top_alternatives``) and whether to return cross-attention.
    """
    options = options or DecodingOptions()
    if not token_ids:
        raise ValueError("teacher_forced needs at least one token to score")
    g, p, k = encoder_states.shape[0], len(prompt_ids), len(token_ids)
    ids = torch.tensor([prompt_ids + token_ids], device=encoder_states.device).expand(g, -1)  # (G, P + k)
    with torch.inference_mode():
        logits, out = decoder(ids, encoder_states, output_attentions=options.output_attentions)
        # Position t - 1 predicts the token at t: the k positions from P - 1 predict the given tokens.
        raw = logits[:, p - 1 : p + k - 1].float().log_softmax(dim=-1)  # (G, k, vocab)
        targets = ids[:, p:, None]  # (G, k, 1)
        logprobs = raw.gather(-1, targets).squeeze(-1)  # (G, k)
        processed = torch.stack(
            [
                process_scores(
                    raw[:, j],
                    ids[:, : p + j],
                    j,
                    stop_token=SEP_ID,
                    repetition=options.repetition_penalty,
                    ngram=options.no_repeat_ngram_size,
                    min_new_tokens=options.min_new_tokens,
                )
                for j in range(k)
            ],
            dim=1,
        )  # (G, k, vocab), beam search's view of each step
        scores = processed.gather(-1, targets).squeeze(-1)
        blocked = torch.isinf(scores)
        scores = torch.where(blocked, logprobs, scores)
        top = raw.topk(options.top_alternatives, dim=-1)
        cross = None
        if options.output_attentions:
            # per layer (G, heads, P + k, S) -> the predicting positions, (k, G, layers, heads, S)
            cross = torch.stack([layer[:, :, p - 1 : p + k - 1] for layer in out.cross_attentions], dim=1)
            cross = cross.permute(3, 0, 1, 2, 4)
    return TeacherForced(
        token_ids=list(token_ids),
        logprobs=logprobs.cpu(),
        scores=scores.cpu(),
        blocked=blocked.cpu(),
        alt_ids=top.indices.cpu(),
        alt_logprobs=top.values.cpu(),
        cross_attentions=cross,
    )
