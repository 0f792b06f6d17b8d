"""What if the model had chosen another word? Shared by the Caption and Ask tabs: turn a position of the
generated text and a word into forced token ids, lay out the original beside the continued text, and
the section's controls (position, word, the alternatives at that position, a button, the results)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image

from . import controls, formatting
from .heatmaps import explained
from .services import Services

TOKEN_HEADERS = ["#", "token", "probability", "top alternatives"]


def forced_word(services: Services, model: str, token: Any, word: str) -> list[int]:
    """Token ids for the word put at a position: one of the model's alternatives there (by its wordpiece,
    e.g. "##s"), else the wordpieces the tokenizer reads the typed word as."""
    word = (word or "").strip()
    if not word:
        raise ValueError("type a word, or pick one of the alternatives, to put at that position")
    for name, token_id in zip((a for a, _ in token.alternatives), token.alternative_ids, strict=False):
        if name == word:
            return [int(token_id)]
    ids = services.engine.token_ids(word, model)
    if not ids:
        raise ValueError(f"the tokenizer reads no word in {word!r}")
    return ids


def forced_ids(services: Services, model: str, item: Any, position: float | None, word: str) -> list[int]:
    """``item``'s tokens before ``position`` (1-based, as in the token table), then ``word``'s ids."""
    if position is None or not 1 <= int(position) <= len(item.tokens):
        raise ValueError(f"position must be between 1 and {len(item.tokens)} (got {position})")
    index = int(position) - 1
    return [t.token_id for t in item.tokens[:index]] + forced_word(services, model, item.tokens[index], word)


def outcome(
    image: Image.Image,
    original: Any,
    changed: Any,
    new: Any,
    position: float,
    word: str,
    texts: list[tuple[str, Any]] = (),
) -> tuple:
    """The section's outputs for a what-if run.

    Args:
        original: the first text of the unforced run (a ``GeneratedItem``).
        changed: the forced run's result; ``new`` its first text.
        texts: further (label, heatmaps) for the viewer after the new text's own (e.g. the question).

    Returns:
        (original vs what-if table, the new text's token highlights, its token table, summary markdown,
        heatmap state: the new text's maps, None without heatmaps)
    """
    rows = [
        ["original", original.text, round(original.score, 4)],
        [f"what if token {int(position)} were {word.strip()!r}", new.text, round(new.score, 4)],
    ]
    summary = formatting.summary(changed, formatting.decoding_text(changed.decoding))
    summary = (
        f"**Forced:** the first {new.forced} token(s) (their probabilities are teacher-forced); "
        f"the model chose the rest.\n\n{summary}"
    )
    state = explained(image, [(f"what if: {new.text}", new.heatmaps), *texts], model=changed.model)
    return rows, formatting.token_highlights(new), formatting.token_rows(new), summary, state


def token_rows_of(raw: dict | None, key: str) -> list[list[Any]]:
    """The token table of the first text in a raw result (``raw[key][0]``), for a tab whose run does
    not return one itself (Ask: its API outputs stay as they were)."""
    items = (raw or {}).get(key) or []
    if not items:
        return []
    return [
        [i + 1, t["token"], round(t["probability"], 4),
         ", ".join(f"{alt} {p:.3f}" for alt, p in t["alternatives"] if alt != t["token"])]
        for i, t in enumerate(items[0]["tokens"])
    ]  # fmt: skip


def _pick_row(table, evt: gr.SelectData):
    """A click on the token table: that row's position, and its alternatives to choose from."""
    row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    data = table.values.tolist() if hasattr(table, "values") else list(table)
    if not 0 <= int(row) < len(data):
        return gr.update(), gr.update()
    listed = str(data[row][3] or "")
    names = [part.rsplit(" ", 1)[0] for part in listed.split(", ") if part]
    return int(data[row][0]), gr.update(choices=names, value=None)


class WhatIfSection:
    """The section's controls and outputs; build inside a tab, then :meth:`connect` it.

    Args:
        prefix: the start of its elements' ids ("whatif" in the Caption tab, "ask-whatif" in Ask).
        what: what the text is ("caption", "answer"), for the labels.
    """

    def __init__(self, prefix: str, what: str):
        with gr.Accordion("What if? Put another word at one position", open=True):
            gr.Markdown(
                "Pick a position from the token table and one of its alternatives (or type any word): "
                "the model keeps the tokens before it, puts your word there, and continues with the same "
                "decoding settings."
            )
            with gr.Row():
                self.position = controls.number(
                    value=1, precision=0, minimum=1, maximum=100, label="Position (# in the token table)"
                )
                self.word = gr.Textbox(
                    label="Word to put there", placeholder="e.g. blue", elem_id=f"{prefix}-word"
                )
                self.alternatives = gr.Radio(
                    [], label="Alternatives at that position (click one)", elem_id=f"{prefix}-alternatives"
                )
                self.run = gr.Button("What if?", elem_id=f"{prefix}-run")
            self.compared = gr.Dataframe(
                headers=["", what, "score"], interactive=False, label="Original and what-if",
                elem_id=f"{prefix}-table",
            )  # fmt: skip
            self.summary = gr.Markdown(elem_id=f"{prefix}-summary")
            self.tokens = gr.HighlightedText(label=f"The what-if {what}'s tokens", elem_id=f"{prefix}-tokens")
            self.table = gr.Dataframe(headers=TOKEN_HEADERS, interactive=False, label="Alternatives")

    def connect(
        self,
        services: Services,
        token_table: gr.Dataframe,
        handler: Callable,
        inputs: list[gr.components.Component],
        state: gr.State,
        api_name: str,
        concurrency_id: str,
        after: Callable[[Any], Any],
    ) -> None:
        """Clicking a row of ``token_table`` picks its position and offers its alternatives; the button
        runs ``handler(*inputs, position, word, ...)`` (its inputs: ``inputs`` with position and word
        placed where the handler takes them, which the caller arranges)."""
        token_table.select(
            _pick_row, inputs=[token_table], outputs=[self.position, self.alternatives],
            api_visibility="private", queue=False,
        )  # fmt: skip
        self.alternatives.input(lambda chosen: chosen or "", inputs=[self.alternatives], outputs=[self.word],
                                api_visibility="private", queue=False)  # fmt: skip
        event = self.run.click(
            services.gpu(handler),
            inputs=inputs,
            outputs=[self.compared, self.tokens, self.table, self.summary, state],
            api_name=api_name,
            concurrency_id=concurrency_id,
            concurrency_limit=1,
        )
        after(event)
