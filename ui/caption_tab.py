"""Caption tab: every decoding control, captions with scores, each token's probability and alternatives,
and a heatmap per generated word."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
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
        image, [(f"caption {i + 1}: {c.text}", c.heatmaps) for i, c in enumerate(result.captions)]
    )
    return (
        rows,
        formatting.token_highlights(best),
        formatting.token_rows(best),
        summary,
        state,
        result.to_dict(),
    )


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
            headers=["#", "token", "probability", "top alternatives"], interactive=False, label="Alternatives"
        )
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
