"""The decoding loop's moving parts, shared by every strategy: the :class:`Stepper` runs the decoder
over the tokens it has not seen yet (through the :class:`~blip.model.cache.KVCache`), the
:class:`RowHistory` records what each row chose and what it could have chosen, and :func:`to_sequence`
packages one finished row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..loading.tokenizer import SEP_ID
from ..model.cache import KVCache
from ..model.text import TextLMModel
from .forcing import TeacherForced
from .options import DecodingOptions, GeneratedSequence


class Stepper:
    """Runs the decoder over the tokens it has not seen yet and returns next-token scores.

    Rows may be reordered between steps (beam search), or multiplied after the prompt (all beams and
    samples start from the same prompt, which is run once per image). Several images (G groups) may
    be decoded together: the rows of each image are consecutive, and an image whose texts are all
    finished can be dropped.
    """

    def __init__(self, decoder: TextLMModel, encoder_states: torch.Tensor, options: DecodingOptions):
        self.decoder = decoder
        self.encoder_states = encoder_states  # (G, S, E): shared by every row of its image, never copied
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

    def reorder(self, rows: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Continue with ``rows`` (indices into the current rows) as the new batch; ``groups`` (indices
        into the current images) are the images still running, when some were dropped."""
        if self.cache is not None:
            self.cache.reorder(rows, groups)
        if groups is not None:
            self.encoder_states = self.encoder_states.index_select(0, groups)

    def start(self, prompt: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the prompt (1, P) once per image and give each image ``rows`` rows (beams, samples):
        image g's rows are g * rows ... (g + 1) * rows - 1."""
        images = self.encoder_states.shape[0]
        logits, cross = self(prompt.expand(images, -1))
        if rows > 1:
            source = torch.arange(images, device=prompt.device).repeat_interleave(rows)
            self.reorder(source)
            logits = logits[source] if images > 1 else logits.expand(rows, -1)
            if cross is not None:
                cross = cross[source] if images > 1 else cross.expand(rows, *cross.shape[1:])
        return logits, cross


@dataclass
class RowHistory:
    """Per-row records that travel with the rows when beam search reorders or finishes them."""

    rows: torch.Tensor  # (R, steps) int: which running row produced the token at each step
    logprobs: torch.Tensor  # (R, steps) the token's raw log-probability
    alt_ids: torch.Tensor  # (R, steps, k)
    alt_logprobs: torch.Tensor  # (R, steps, k)

    @classmethod
    def empty(cls, rows: int, steps: int, k: int, device: torch.device | str | None = None) -> RowHistory:
        """Blank records; on the model's ``device`` when the loop should not wait for the GPU at every
        step to copy them (greedy search keeps them there and moves them once, with :meth:`to`)."""
        return cls(
            torch.zeros(rows, steps, dtype=torch.long, device=device),
            torch.zeros(rows, steps, device=device),
            torch.zeros(rows, steps, k, dtype=torch.long, device=device),
            torch.zeros(rows, steps, k, device=device),
        )

    def to(self, device: torch.device | str) -> RowHistory:
        return RowHistory(
            *(t.to(device) for t in (self.rows, self.logprobs, self.alt_ids, self.alt_logprobs))
        )

    def fill_forced(self, prefix: TeacherForced, image_of_row: torch.Tensor) -> None:
        """The first k steps of every row are its image's forced tokens. There ``rows`` names the image:
        the forced steps' attention maps come from the teacher-forced pass, one row per image."""
        k = len(prefix.token_ids)
        self.rows[:, :k] = image_of_row[:, None]
        self.logprobs[:, :k] = prefix.logprobs[image_of_row]
        if self.alt_ids.shape[-1]:
            self.alt_ids[:, :k] = prefix.alt_ids[image_of_row]
            self.alt_logprobs[:, :k] = prefix.alt_logprobs[image_of_row]

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

    def record(
        self,
        step: int,
        rows: torch.Tensor,
        raw: torch.Tensor,
        tokens: torch.Tensor,
        k: int,
        at: torch.Tensor | None = None,
    ) -> None:
        """Fill ``step`` for every row (or the rows ``at``): its source running row, the raw log-prob of
        its token, its alternatives.

        Args:
            rows: (R,) running row each entry comes from.
            raw: (running rows, vocab) raw log-probabilities of this step.
            tokens: (R,) the token each entry chose.
            at: (R,) which records to fill, when only some rows still run; default all.
        """
        at = slice(None) if at is None else at
        here = self.rows.device  # the scores are where the model runs; the records may not be
        self.rows[at, step] = rows.to(here)
        self.logprobs[at, step] = raw[rows, tokens].to(here)
        if k:
            best = raw.topk(k, dim=-1)
            self.alt_ids[at, step] = best.indices[rows].to(here)
            self.alt_logprobs[at, step] = best.values[rows].to(here)


def to_sequence(
    tokens: torch.Tensor,
    history: RowHistory,
    row: int,
    steps: int,
    score: float | None,
    attention_steps: list[torch.Tensor] | None,
    forced: int = 0,
) -> GeneratedSequence:
    """Package row ``row`` of the histories (its first ``steps`` tokens, of which the first ``forced``
    were forced) as a :class:`GeneratedSequence`."""
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
        forced=forced,
    )
