"""Reshaping next-token scores before a token is chosen: penalties, bans and sampling filters.

Each function takes ``scores`` (rows, vocab) for the next position and the token ids so far
(rows, length), and returns new scores; none of them loops over the vocabulary in Python. The order in
which :func:`process_scores` applies them, and each one's arithmetic, follow the reference
implementation exactly, so our decoders pick the same tokens.
"""

from __future__ import annotations

import torch

BLOCKED = float("-inf")


def repetition_penalty(scores: torch.Tensor, sequences: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already present in a row less likely (CTRL, arXiv 1909.05858).

    A positive score is divided by ``penalty``, a negative one multiplied by it, so the token always
    loses ground whatever the sign.
    """
    seen = scores.gather(1, sequences)  # (rows, length): the score of each earlier token
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, sequences, seen)  # repeated ids write the same value: harmless


def no_repeat_ngram(scores: torch.Tensor, sequences: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid any token that would complete an n-gram already present in the row."""
    length = sequences.shape[1]
    if length < n:
        return scores
    prefix = sequences[:, length - n + 1 :]  # (rows, n-1): what the next token would extend
    windows = sequences.unfold(1, n, 1)  # (rows, length-n+1, n): every n-gram so far
    matches = (windows[..., :-1] == prefix[:, None]).all(dim=-1)  # n-grams starting like the suffix
    banned = torch.zeros(scores.shape[0], scores.shape[1] + 1, dtype=torch.bool, device=scores.device)
    # Non-matching windows write into a spare last column, so they cannot unban anything.
    banned.scatter_(1, torch.where(matches, windows[..., -1], scores.shape[1]), True)
    return scores.masked_fill(banned[:, :-1], BLOCKED)


def forbid_token(scores: torch.Tensor, token: int) -> torch.Tensor:
    """Block one token (used to hold back [SEP] until the minimum length is reached)."""
    scores = scores.clone()
    scores[:, token] = BLOCKED
    return scores


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k best tokens of each row (ties with the k-th are kept too)."""
    k = min(k, scores.shape[-1])
    kth_best = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < kth_best, BLOCKED)


def top_p_filter(scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering (arXiv 1904.09751): keep the most likely tokens whose probabilities add up to p.

    Sorted from least to most likely, a token is dropped while the probability mass up to and including
    it stays within 1 - p; the ``min_keep`` most likely tokens always survive.
    """
    ascending, order = torch.sort(scores, descending=False)
    mass_below = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = mass_below <= (1 - p)
    drop_sorted[..., -min_keep:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
    return scores.masked_fill(drop, BLOCKED)


def process_scores(
    scores: torch.Tensor,
    sequences: torch.Tensor,
    new_tokens: int,
    *,
    stop_token: int,
    repetition: float = 1.0,
    ngram: int = 0,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_keep: int = 1,
) -> torch.Tensor:
    """Apply every configured change to the next-token scores, in the reference's order.

    Args:
        scores: (rows, vocab) logits (greedy, sampling) or log-probabilities (beam search).
        sequences: (rows, length) every token so far, prompt included.
        new_tokens: tokens generated so far (the prompt excluded).
        stop_token: the token that ends a sequence ([SEP]).
        repetition: repetition penalty (1 = off).
        ngram: no-repeat n-gram size (0 = off).
        min_new_tokens: [SEP] is blocked until this many tokens exist.
        temperature, top_k, top_p: sampling filters (1, 0, 1 = off); pass them only when sampling.
        min_keep: tokens top-p always keeps.
    """
    if repetition != 1.0:
        scores = repetition_penalty(scores, sequences, repetition)
    if ngram > 0:
        scores = no_repeat_ngram(scores, sequences, ngram)
    if new_tokens < min_new_tokens:
        scores = forbid_token(scores, stop_token)
    if temperature != 1.0:
        scores = scores / temperature
    if top_k > 0:
        scores = top_k_filter(scores, top_k)
    if top_p < 1.0:
        scores = top_p_filter(scores, top_p, min_keep)
    return scores
