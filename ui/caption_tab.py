"""Caption tab: every decoding control, captions with scores, each token's probability and alternatives,
a heatmap per generated word, "what if": the caption continued after another word at one position, and
a caption checked (see ``check_caption``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from .check_caption import CheckSection
from .decoding import DecodingControls, decoding_options
from .errors import friendly
from .heatmaps import explained, heatmaps_and_raw_result
from .services import Services


def caption(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    heatmaps: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Caption the image.

    Args:
        decoding: the decoding controls' values, in ``DecodingControls.inputs`` order.

    Returns:
        (captions table, token highlights, token table, summary markdown, heatmap state, raw result dict)
    """
    options = decoding_options(*decoding)
    image = services.prepare(image_path, model, "Captioning", progress)
    result = services.engine.caption(
        image, model=model, prompt=prompt or "", options=options, explain_tokens=bool(heatmaps)
    )
    rows = [
        [i + 1, c.text, round(c.score, 4), "yes" if c.finished else "no (token limit)"]
        for i, c in enumerate(result.captions)
    ]
    best = result.captions[0]
    summary = formatting.summary(result, formatting.decoding_text(result.decoding))
    state = explained(
        image,
        [(f"caption {i + 1}: {c.text}", c.heatmaps) for i, c in enumerate(result.captions)],
        model=model,
    )
    return (
        rows,
        formatting.token_highlights(best),
        formatting.token_rows(best),
        summary,
        state,
        result.to_dict(),
    )


def _forced_word(services: Services, model: str, token, word: str) -> list[int]:
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


def what_if(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    position: float | None,
    word: str,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """What if caption 1 had another word at ``position``? The model writes caption 1 again (the image
    encoding is cached), then continues from its tokens before ``position`` and ``word``, with the same
    decoding settings.

    Args:
        position: 1-based, as in the token table.
        word: one of the alternatives listed at that position (its wordpiece), or any typed word.

    Returns:
        (original vs what-if table, the new caption's token highlights, its token table, summary markdown)
    """
    options = decoding_options(*decoding)
    image = services.prepare(image_path, model, "Captioning", progress)
    original = services.engine.caption(image, model=model, prompt=prompt or "", options=options)
    best = original.captions[0]
    if position is None or not 1 <= int(position) <= len(best.tokens):
        raise ValueError(f"position must be between 1 and {len(best.tokens)} (got {position})")
    index = int(position) - 1
    forced = [t.token_id for t in best.tokens[:index]] + _forced_word(
        services, model, best.tokens[index], word
    )
    changed = services.engine.caption(image, model=model, prompt=prompt or "", options=options, forced=forced)
    new = changed.captions[0]
    rows = [
        ["original", best.text, round(best.score, 4)],
        [f"what if token {index + 1} were {word.strip()!r}", new.text, round(new.score, 4)],
    ]
    summary = formatting.summary(changed, formatting.decoding_text(changed.decoding))
    summary = (
        f"**Forced:** the first {new.forced} token(s) (their probabilities are teacher-forced); "
        f"the model chose the rest.\n\n{summary}"
    )
    return rows, formatting.token_highlights(new), formatting.token_rows(new), summary


def beam_tree(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    show_pruned: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Beam search again with its tree recorded (the image encoding is cached), drawn as a picture.

    Returns:
        (the tree's picture, a markdown note)
    """
    options = decoding_options(*decoding)
    if options["strategy"] != "beam":
        raise ValueError("the search tree is drawn for beam search: choose Beam search under Decoding")
    if services.draw_beam_tree is None:
        raise ValueError("drawing the search tree is not available in this app")
    image = services.prepare(image_path, model, "Beam search", progress)
    result = services.engine.caption(
        image, model=model, prompt=prompt or "", options=options | {"record_tree": True}
    )
    picture = services.draw_beam_tree(result.search_tree, show_pruned=bool(show_pruned))
    note = (
        f"{options['num_beams']} beams, length penalty {options['length_penalty']:g}: every step keeps "
        "the best beams among their candidates (2 per beam); the returned captions' paths are highlighted. "
        f"Caption 1: **{result.captions[0].text}**"
    )
    return picture, note


def build(services: Services, image: gr.Image, after: Callable[[Any], Any]) -> None:
    """The tab's layout and events; ``image`` is the shared picture, ``after`` chains the status update."""
    models = services.models["caption"]
    model = controls.dropdown(models, value=models[0], label="Model")
    decoding_controls = DecodingControls("captions")
    prompt = gr.Textbox(
        label="Prompt prefix (optional: the caption continues it)", placeholder="a picture of"
    )
    heatmaps = gr.Checkbox(value=True, label="Compute heatmaps for every word")
    run = gr.Button("Caption", variant="primary", elem_id="caption-run")
    captions = gr.Dataframe(
        headers=["#", "caption", "score", "finished"],
        label="Captions",
        interactive=False,
        elem_id="caption-table",
    )
    summary = gr.Markdown(elem_id="caption-summary")
    with gr.Accordion("Token probabilities (caption 1)", open=True):
        tokens = gr.HighlightedText(label="Each token, coloured by its probability", elem_id="caption-tokens")
        token_table = gr.Dataframe(
            headers=["#", "token", "probability", "top alternatives"],
            interactive=False,
            label="Alternatives (click a row to try one of them below)",
            elem_id="caption-token-table",
        )
    with gr.Accordion("What if? Put another word at one position", open=True):
        gr.Markdown(
            "Pick a position from the token table and one of its alternatives (or type any word): "
            "the model keeps the tokens before it, puts your word there, and continues with the same "
            "decoding settings."
        )
        with gr.Row():
            position = controls.number(
                value=1, precision=0, minimum=1, maximum=100, label="Position (# in the token table)"
            )
            word = gr.Textbox(label="Word to put there", placeholder="e.g. blue", elem_id="whatif-word")
            alternatives = gr.Radio(
                [], label="Alternatives at that position (click one)", elem_id="whatif-alternatives"
            )
            what_if_run = gr.Button("What if?", elem_id="whatif-run")
        compared = gr.Dataframe(
            headers=["", "caption", "score"], interactive=False, label="Original and what-if",
            elem_id="whatif-table",
        )  # fmt: skip
        what_if_summary = gr.Markdown(elem_id="whatif-summary")
        what_if_tokens = gr.HighlightedText(label="The what-if caption's tokens", elem_id="whatif-tokens")
        what_if_table = gr.Dataframe(
            headers=["#", "token", "probability", "top alternatives"], interactive=False, label="Alternatives"
        )
    with gr.Accordion("Beam search tree: which paths did the search keep?", open=False):
        with gr.Row():
            show_pruned = gr.Checkbox(value=True, label="Also draw the pruned candidates")
            tree_run = gr.Button("Draw the search tree (beam search)", elem_id="tree-run")
        tree_note = gr.Markdown(elem_id="tree-note")
        tree_image = gr.Image(label="Search tree", type="pil", interactive=False, elem_id="tree-image")
    checker = CheckSection(services)
    state, raw = heatmaps_and_raw_result(services)

    @friendly
    def handler(
        image, model, prompt, heatmaps, decoding, beams, top_p, top_k, temperature, min_new_tokens,
        max_new_tokens, repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed,
        progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return caption(services, image, model, prompt, values, heatmaps, progress)

    event = run.click(
        services.gpu(handler),
        inputs=[image, model, prompt, heatmaps, *decoding_controls.inputs],
        outputs=[captions, tokens, token_table, summary, state, raw],
        api_name="caption",
        concurrency_id="caption",
        concurrency_limit=1,
    )
    after(event)

    @friendly
    def tree_handler(
        image, model, prompt, show_pruned, decoding, beams, top_p, top_k, temperature, min_new_tokens,
        max_new_tokens, repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed,
        progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return beam_tree(services, image, model, prompt, values, show_pruned, progress)

    after(
        tree_run.click(
            services.gpu(tree_handler),
            inputs=[image, model, prompt, show_pruned, *decoding_controls.inputs],
            outputs=[tree_image, tree_note],
            api_name="beam_tree",
            concurrency_id="caption",
            concurrency_limit=1,
        )
    )
    checker.connect(services, image, model, prompt, heatmaps, captions, event, state, raw, after)

    def pick_row(table, evt: gr.SelectData):
        """A click on the token table: that row's position, and its alternatives to choose from."""
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        data = table.values.tolist() if hasattr(table, "values") else list(table)
        if not 0 <= int(row) < len(data):
            return gr.update(), gr.update()
        listed = str(data[row][3] or "")
        names = [part.rsplit(" ", 1)[0] for part in listed.split(", ") if part]
        return int(data[row][0]), gr.update(choices=names, value=None)

    token_table.select(
        pick_row,
        inputs=[token_table],
        outputs=[position, alternatives],
        api_visibility="private",
        queue=False,
    )
    alternatives.input(lambda chosen: chosen or "", inputs=[alternatives], outputs=[word],
                       api_visibility="private", queue=False)  # fmt: skip

    @friendly
    def what_if_handler(
        image, model, prompt, position, word, decoding, beams, top_p, top_k, temperature, min_new_tokens,
        max_new_tokens, repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed,
        progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return what_if(services, image, model, prompt, values, position, word, progress)

    event = what_if_run.click(
        services.gpu(what_if_handler),
        inputs=[image, model, prompt, position, word, *decoding_controls.inputs],
        outputs=[compared, what_if_tokens, what_if_table, what_if_summary],
        api_name="what_if",
        concurrency_id="caption",
        concurrency_limit=1,
    )
    after(event)
