"""What a caller asks of the decoding loop (:class:`DecodingOptions`) and what it gets back
(:class:`GeneratedSequence`): the types every strategy and every task shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tree import SearchTree

STRATEGIES = ("greedy", "beam", "sample")
MAX_POSITIONS = 512  # BERT's position table


@dataclass(frozen=True)
class DecodingOptions:
    """Every knob of the decoding loop. Invalid values raise ``ValueError`` naming the parameter."""

    strategy: str = "greedy"  # "greedy", "beam" or "sample"
    max_new_tokens: int = 20
    min_new_tokens: int = 0
    num_beams: int = 3  # beam search only
    length_penalty: float = 1.0  # beam search: score = sum log p / length ** length_penalty
    early_stopping: bool | str = False  # beam search: True, False (heuristic) or "never"
    num_sequences: int = 1  # n-best beams, or independent samples
    temperature: float = 1.0  # sampling only
    top_k: int = 0  # sampling only; 0 = off
    top_p: float = 1.0  # sampling only; 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    seed: int | None = None  # sampling: same seed, same samples
    top_alternatives: int = 5  # alternatives reported per step
    output_attentions: bool = False  # return cross-attention maps (exact attention path)
    use_cache: bool = True  # False recomputes every position each step (for tests and teaching)
    record_tree: bool = False  # beam search only: keep every step's candidates (see tree.py)
    # Greedy only: decode through the static cache (graphed.py); None = on CUDA, where it is recorded
    # as a CUDA graph. True on a CPU runs the same static-cache step eagerly (tests, teaching).
    static_cache: bool | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {rule} (got {getattr(self, name)!r})")

        need(self.strategy in STRATEGIES, "strategy", f"one of {', '.join(STRATEGIES)}")
        need(
            1 <= self.max_new_tokens <= MAX_POSITIONS - 64,
            "max_new_tokens",
            f"between 1 and {MAX_POSITIONS - 64}",
        )
        need(
            0 <= self.min_new_tokens <= self.max_new_tokens,
            "min_new_tokens",
            f"between 0 and max_new_tokens ({self.max_new_tokens})",
        )
        need(1 <= self.num_beams <= 16, "num_beams", "between 1 and 16")
        need(-10.0 <= self.length_penalty <= 10.0, "length_penalty", "between -10 and 10")
        need(self.early_stopping in (True, False, "never"), "early_stopping", "True, False or 'never'")
        need(1 <= self.num_sequences <= 16, "num_sequences", "between 1 and 16")
        if self.strategy == "beam":
            need(self.num_sequences <= self.num_beams, "num_sequences", "at most num_beams")
        if self.strategy == "greedy":
            need(self.num_sequences == 1, "num_sequences", "1 for greedy search")
        need(0.01 <= self.temperature <= 100.0, "temperature", "between 0.01 and 100")
        need(0 <= self.top_k <= 30524, "top_k", "between 0 (off) and 30524")
        need(0.0 < self.top_p <= 1.0, "top_p", "above 0 and at most 1")
        need(0.5 <= self.repetition_penalty <= 10.0, "repetition_penalty", "between 0.5 and 10")
        need(0 <= self.no_repeat_ngram_size <= 10, "no_repeat_ngram_size", "between 0 (off) and 10")
        need(0 <= self.top_alternatives <= 20, "top_alternatives", "between 0 and 20")
        if self.record_tree:  # greedy search is a single path, and samples are drawn with draw_sampled_paths
            need(self.strategy == "beam", "record_tree", "False unless strategy is 'beam'")


@dataclass
class GeneratedSequence:
    """One generated text, token by token. Token ids exclude the prompt."""

    token_ids: list[int]  # generated tokens; the final [SEP] is included when the model produced it
    token_logprobs: list[float]  # log p(token | everything before) under the model, before any penalty
    alternatives: list[list[tuple[int, float]]]  # per step, the model's best (token id, probability)
    score: float  # what the strategy ranked by: the beam score, else the sum of token_logprobs
    finished: bool  # ended with [SEP] rather than at max_new_tokens
    cross_attentions: torch.Tensor | None = None  # (steps, layers, heads, encoder tokens), on request
    forced: int = 0  # how many leading tokens the caller forced (their log-probs are teacher-forced)
    tree: SearchTree | None = None  # the whole beam search, with record_tree (shared by the n-best)
