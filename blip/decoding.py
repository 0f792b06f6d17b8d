"""Our own decoding loop: greedy search and sampling here, beam search in ``beam.py``.

BLIP writes text one token at a time. At every step the decoder turns everything so far into scores
for the next token, :mod:`blip.logits` reshapes them (penalties, bans, sampling filters) and a strategy
picks the token. The choices match the reference implementation's ``generate`` token for token.

Speed comes from three habits: the :class:`~blip.cache.KVCache` keeps past keys and values so each step
runs one token; the image (or question) keys and values are computed once and shared by every row;
and all rows (beams or samples) advance together as one batch.

Besides the tokens, the loop returns what an explorer wants: each token's log-probability, the best
alternatives at each step, and on request where the decoder looked (cross-attention) for each token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cache import KVCache
from .logits import process_scores
from .text import TextLMModel
from .tokenizer import PAD_ID, SEP_ID

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


@dataclass
class GeneratedSequence:
    """One generated text, token by token. Token ids exclude the prompt."""

    token_ids: list[int]  # generated tokens; the final [SEP] is included when the model produced it
    token_logprobs: list[float]  # log p(token | everything before) under the model, before any penalty
    alternatives: list[list[tuple[int, float]]]  # per step, the model's best (token id, probability)
    score: float  # what the strategy ranked by: the beam score, else the sum of token_logprobs
    finished: bool  # ended with [SEP] rather than at max_new_tokens
    cross_attentions: torch.Tensor | None = None  # (steps, layers, heads, encoder tokens), on request


class Stepper:
    """Runs the decoder over the tokens it has not seen yet and returns next-token scores.

    Rows may be reordered between steps (beam search), or multiplied after the prompt (all beams and
    samples start from the same prompt, which is run once).
    """

    def __init__(self, decoder: TextLMModel, encoder_states: torch.Tensor, options: DecodingOptions):
        self.decoder = decoder
        self.encoder_states = encoder_states  # (1, S, E): shared by every row, never copied
        self.output_attentions = options.output_attentions
        layers = decoder.bert.config.num_hidden_layers
        self.cache = KVCache(layers, capacity=64) if options.use_cache else None

    def __call__(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores (rows, vocab) in float32 for the position after ``sequences`` (rows, length), and the
        cross-attention of that position (rows, layers, heads, S) when requested."""
        new = sequences[:, self.cache.length :] if self.cache is not None else sequences
        logits, out = self.decoder(
            new,
            self.encoder_states,
            cache=self.cache,
            output_attentions=self.output_attentions,
            last_only=True,
        )
        cross = None
        if self.output_attentions:
            cross = torch.stack([layer[:, :, -1] for layer in out.cross_attentions], dim=1)
        return logits[:, -1].float(), cross

    def reorder(self, rows: torch.Tensor) -> None:
        """Continue with ``rows`` (indices into the current rows) as the new batch."""
        if self.cache is not None:
            self.cache.reorder(rows)

    def start(self, prompt: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the prompt (1, P) once and give each of ``rows`` rows (beams, samples) its state."""
        logits, cross = self(prompt)
        if rows > 1:
            self.reorder(torch.zeros(rows, dtype=torch.long, device=prompt.device))
            logits = logits.expand(rows, -1)
            cross = cross.expand(rows, *cross.shape[1:]) if cross is not None else None
        return logits, cross


@dataclass
class RowHistory:
    """Per-row records that travel with the rows when beam search reorders or finishes them."""

    rows: torch.Tensor  # (R, steps) int: which running row produced the token at each step
    logprobs: torch.Tensor  # (R, steps) the token's raw log-probability
    alt_ids: torch.Tensor  # (R, steps, k)
    alt_logprobs: torch.Tensor  # (R, steps, k)

    @classmethod
    def empty(cls, rows: int, steps: int, k: int) -> RowHistory:
        return cls(
            torch.zeros(rows, steps, dtype=torch.long),
            torch.zeros(rows, steps),
            torch.zeros(rows, steps, k, dtype=torch.long),
            torch.zeros(rows, steps, k),
        )

    def select(self, index: torch.Tensor) -> RowHistory:
        return RowHistory(
            self.rows[index], self.logprobs[index], self.alt_ids[index], self.alt_logprobs[index]
        )

    def cat(self, other: RowHistory) -> RowHistory:
        return RowHistory(
            torch.cat([self.rows, other.rows]),
            torch.cat([self.logprobs, other.logprobs]),
            torch.cat([self.alt_ids, other.alt_ids]),
            torch.cat([self.alt_logprobs, other.alt_logprobs]),
        )

    def record(self, step: int, rows: torch.Tensor, raw: torch.Tensor, tokens: torch.Tensor, k: int) -> None:
        """Fill ``step`` for every row: its source running row, raw log-prob of its token, alternatives.

        Args:
            rows: (R,) running row each entry comes from.
            raw: (running rows, vocab) raw log-probabilities of this step.
            tokens: (R,) the token each entry chose.
        """
        self.rows[:, step] = rows
        self.logprobs[:, step] = raw[rows, tokens]
        if k:
            best = raw.topk(k, dim=-1)
            self.alt_ids[:, step] = best.indices[rows]
            self.alt_logprobs[:, step] = best.values[rows]


def to_sequence(
    tokens: torch.Tensor,
    history: RowHistory,
    row: int,
    steps: int,
    score: float | None,
    attention_steps: list[torch.Tensor] | None,
) -> GeneratedSequence:
    """Package row ``row`` of the histories (its first ``steps`` tokens) as a :class:`GeneratedSequence`."""
    ids = tokens[:steps].tolist()
    logprobs = history.logprobs[row, :steps].tolist()
    alternatives = [
        list(zip(history.alt_ids[row, s].tolist(), history.alt_logprobs[row, s].exp().tolist(), strict=True))
        for s in range(steps)
    ]
    cross = None
    if attention_steps is not None:
        cross = torch.stack([attention_steps[s][history.rows[row, s]] for s in range(steps)])
    return GeneratedSequence(
        token_ids=ids,
        token_logprobs=logprobs,
        alternatives=alternatives,
        score=sum(logprobs) if score is None else score,
        finished=bool(ids) and ids[-1] == SEP_ID,
        cross_attentions=cross,
    )


def generate(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    prompt_ids: list[int],
    options: DecodingOptions,
) -> list[GeneratedSequence]:
    """Continue ``prompt_ids`` (starting with [DEC]) while attending to ``encoder_states``.

    Args:
        decoder: the image-grounded decoder with its LM head.
        encoder_states: (1, S, E) image tokens (captioning) or question states (VQA).
        prompt_ids: the tokens to continue: [DEC] alone, or [DEC] + a caption prompt.
        options: strategy and controls.

    Returns:
        ``options.num_sequences`` sequences, best first for beam search.
    """
    if encoder_states.shape[0] != 1:
        raise ValueError("generate() decodes for one image or question at a time")
    if len(prompt_ids) + options.max_new_tokens > MAX_POSITIONS:
        raise ValueError(f"prompt plus max_new_tokens exceeds the {MAX_POSITIONS}-token limit")
    prompt = torch.tensor([prompt_ids], device=encoder_states.device)
    stepper = Stepper(decoder, encoder_states, options)
    with torch.inference_mode():
        if options.strategy == "beam":
            from .beam import beam_search

            return beam_search(stepper, prompt, options)
        return _greedy_or_sample(stepper, prompt, options)


def _greedy_or_sample(
    stepper: Stepper, prompt: torch.Tensor, options: DecodingOptions
) -> list[GeneratedSequence]:
    """Greedy search (one row) or independent samples (``num_sequences`` rows), with the reference's
    per-step order: scores -> penalties/filters -> argmax or draw -> stop rows that produced [SEP]."""
    sample = options.strategy == "sample"
    rows = options.num_sequences if sample else 1
    plen, steps, k = prompt.shape[1], options.max_new_tokens, options.top_alternatives
    generator = None
    if sample:
        generator = torch.Generator(device=prompt.device)
        generator.manual_seed(options.seed if options.seed is not None else torch.seed())

    sequences = torch.full((rows, plen + steps), PAD_ID, dtype=torch.long, device=prompt.device)
    sequences[:, :plen] = prompt
    history = RowHistory.empty(rows, steps, k)
    attention_steps: list[torch.Tensor] | None = [] if options.output_attentions else None
    running = torch.ones(rows, dtype=torch.bool, device=prompt.device)
    lengths = torch.full((rows,), steps, dtype=torch.long)
    every_row = torch.arange(rows, device=prompt.device)

    logits, cross = stepper.start(prompt, rows)
    for step in range(steps):
        cur = plen + step
        raw = logits.log_softmax(dim=-1)
        scores = process_scores(
            logits,
            sequences[:, :cur],
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
        tokens = torch.where(running, tokens, PAD_ID)  # finished rows only pad
        sequences[:, cur] = tokens
        history.record(step, every_row, raw, tokens, k)
        if attention_steps is not None:
            attention_steps.append(cross)
        just_done = running & (tokens == SEP_ID)
        lengths[just_done.cpu()] = step + 1
        running &= tokens != SEP_ID
        if not running.any() or step + 1 == steps:
            break
        logits, cross = stepper(sequences[:, : cur + 1])

    return [
        to_sequence(sequences[r, plen:], history, r, int(lengths[r]), None, attention_steps)
        for r in range(rows)
    ]
