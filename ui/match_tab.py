"""Match tab: how well each of several texts fits the image, by ITM (probability) and ITC (cosine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from .errors import friendly
from .heatmaps import explained, heatmaps_and_raw_result
from .services import Services

FIRST_TOKENS = ("[ENC]", "[CLS]")
EXPLANATION = """\
**ITM probability** (image-text matching): the text encoder reads the text *while looking at the image*
(cross-attention in every layer) and a small head answers "do these belong together?". It is a
probability, judged one text at a time: several texts can all score near 1, or all near 0.

**ITC cosine** (image-text contrast): the image and the text are embedded *separately* and compared by the
cosine of their vectors. It is fast (texts and images can be indexed apart, which is how retrieval works)
but coarser: only comparisons between texts for the same image are meaningful, not the raw number.
"""


def match(
    services: Services,
    image_path: str | None,
    model: str,
    texts: str,
    first_token: str,
    heatmaps: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Score each line of ``texts`` against the image.

    Returns:
        (table rows, summary markdown, heatmap state, raw result dict)
    """
    lines = [line.strip() for line in (texts or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("write at least one text to match, one per line")
    image = services.prepare(image_path, model, "Matching", progress)
    result = services.engine.match(
        image, lines, model=model, first_token=first_token, explain_words=bool(heatmaps)
    )
    rows = [[r.text, round(r.itm_probability, 4), round(r.itc_cosine, 4)] for r in result.rows]
    state = explained(image, [(r.text, r.heatmaps) for r in result.rows], model=model)
    return rows, formatting.summary(result), state, result.to_dict()


def build(
    services: Services, image: gr.Image, after: Callable[[Any], Any], examples: list[list[str]] = ()
) -> None:
    models = services.models["retrieval"]
    with gr.Row():
        model = controls.dropdown(models, value=models[0], label="Model")
        first_token = controls.radio(
            list(FIRST_TOKENS),
            value="[ENC]",
            label="First token of the texts ([ENC] as BLIP was trained; [CLS] as transformers does)",
        )
    texts = gr.Textbox(
        label="Texts (one per line)",
        lines=4,
        placeholder="a small red circle on the left\na large blue star at the top",
        elem_id="match-texts",
    )
    if examples:
        gr.Examples(examples, inputs=[texts], label="Example texts")
    heatmaps = gr.Checkbox(value=True, label="Compute heatmaps (attention and ITM Grad-CAM per word)")
    run = gr.Button("Match", variant="primary", elem_id="match-run")
    table = gr.Dataframe(
        headers=["text", "ITM probability", "ITC cosine"],
        interactive=False,
        label="Scores",
        elem_id="match-table",
    )
    summary = gr.Markdown(elem_id="match-summary")
    with gr.Accordion("ITM or ITC: what is the difference?", open=False):
        gr.Markdown(EXPLANATION)
    state, raw = heatmaps_and_raw_result(services)

    @friendly
    def handler(image, model, texts, first_token, heatmaps, progress=gr.Progress()):
        return match(services, image, model, texts, first_token, heatmaps, progress)

    event = run.click(
        services.gpu(handler),
        inputs=[image, model, texts, first_token, heatmaps],
        outputs=[table, summary, state, raw],
        api_name="match",
        concurrency_id="retrieval",
        concurrency_limit=1,
    )
    after(event)
