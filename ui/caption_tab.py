"""Caption tab: every decoding control, captions with scores, each token's probability and alternatives,
a heatmap per generated word, "what if": the caption continued after another word at one position, and
a caption checked (see ``check_caption``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from . import what_if as what_ifs
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


def what_if(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    position: float | None,
    word: str,
    heatmaps: bool = False,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """What if caption 1 had another word at ``position``? The model writes caption 1 again (the image
    encoding is cached), then continues from its tokens before ``position`` and ``word``, with the same
    decoding settings.

    Args:
        position: 1-based, as in the token table.
        word: one of the alternatives listed at that position (its wordpiece), or any typed word.
        heatmaps: also explain the new caption's words (its maps go to the heatmap viewer).

    Returns:
        (original vs what-if table, the new caption's token highlights, its token table, summary markdown,
        heatmap state)
    """
    options = decoding_options(*decoding)
    image = services.prepare(image_path, model, "Captioning", progress)
    original = services.engine.caption(image, model=model, prompt=prompt or "", options=options)
    best = original.captions[0]
    forced = what_ifs.forced_ids(services, model, best, position, word)
    changed = services.engine.caption(
        image, model=model, prompt=prompt or "", options=options, forced=forced, explain_tokens=bool(heatmaps)
    )
    return what_ifs.outcome(image, best, changed, changed.captions[0], position, word)


SAMPLED_SEEDS = 6  # sampling's picture: this many seeds, from the chosen one (or 0) on


def beam_tree(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    show_pruned: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """The search drawn as a tree: beam search again with its tree recorded, or, for sampling, the
    paths the samples of several seeds took (the image encoding is cached either way).

    Returns:
        (the tree's picture, a markdown note)
    """
    options = decoding_options(*decoding)
    if options["strategy"] == "greedy":
        raise ValueError("greedy decoding has one path only: choose Beam search or a sampling method")
    if services.draw_beam_tree is None or services.draw_sampled_paths is None:
        raise ValueError("drawing the search tree is not available in this app")
    image = services.prepare(image_path, model, "Drawing the search", progress)
    if options["strategy"] == "sample":
        return _sampled_paths(services, image, model, prompt, options)
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


def _sampled_paths(services: Services, image: Any, model: str, prompt: str, options: dict) -> tuple:
    """Sample with ``SAMPLED_SEEDS`` seeds and draw every sampled caption's path in one tree."""
    first = options.get("seed") or 0
    paths, labels, texts = [], [], []
    for seed in range(first, first + SAMPLED_SEEDS):
        result = services.engine.caption(
            image, model=model, prompt=prompt or "", options=options | {"seed": seed}
        )
        for n, item in enumerate(result.captions):
            paths.append([(t.token, t.probability) for t in item.tokens])
            labels.append(f"seed {seed}" + (f" #{n + 1}" if len(result.captions) > 1 else ""))
            texts.append(item.text)
    picture = services.draw_sampled_paths(paths, labels)
    distinct = len(set(texts))
    note = (
        f"Sampling with seeds {first} to {first + SAMPLED_SEEDS - 1}: {len(texts)} captions, {distinct} different. "
        "Captions that start alike share their first nodes; a line is as thick as the number of samples "
        "that took it, and each node shows the probability of its word."
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
    what_if_section = what_ifs.WhatIfSection("whatif", "caption")
    with gr.Accordion("Search tree: which paths did beam search keep, where did samples go?", open=False):
        with gr.Row():
            show_pruned = gr.Checkbox(value=True, label="Also draw the pruned candidates")
            tree_run = gr.Button("Draw the search (beam search or sampling)", elem_id="tree-run")
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

    @friendly
    def what_if_handler(
        image, model, prompt, position, word, decoding, beams, top_p, top_k, temperature, min_new_tokens,
        max_new_tokens, repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed, heatmaps=True,
        progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return what_if(services, image, model, prompt, values, position, word, heatmaps, progress)

    what_if_section.connect(
        services, token_table, what_if_handler,
        [image, model, prompt, what_if_section.position, what_if_section.word, *decoding_controls.inputs, heatmaps],
        state, "what_if", "caption", after,
    )  # fmt: skip
