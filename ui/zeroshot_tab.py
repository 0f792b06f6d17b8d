"""Zero-shot tab: which of the user's labels fits the image, with no training for those labels."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from .errors import friendly
from .heatmaps import explained, heatmaps_and_raw_result
from .services import Services

# Menu label -> the engine's scoring name.
SCORINGS = {
    "ITC (cosine, fast)": "itc",
    "ITM (match head, every label)": "itm",
    "ITC shortlist re-ranked by ITM": "itc+itm",
}
TEMPLATE = "a picture of {}"  # the prompt template's default


def temperature_slider() -> gr.Slider:
    """The ITC temperature control, shared with the classify tool: 0.01 to 1, default 0.07."""
    return controls.slider(0.01, 1.0, value=0.07, step=0.01, label="Temperature (ITC)")


def split_labels(text: str) -> list[str]:
    """Labels separated by commas or new lines, blanks dropped."""
    return [label.strip() for label in re.split(r"[,\n]", text or "") if label.strip()]


def classify(
    services: Services,
    image_path: str | None,
    model: str,
    labels: str,
    template: str,
    scoring: str,
    temperature: float,
    heatmaps: bool = False,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Classify the image among ``labels`` (comma- or line-separated), each put into ``template``.

    Returns:
        (label -> probability dict for gr.Label, table rows, summary markdown, heatmap state, raw dict)
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of: {', '.join(SCORINGS)}")
    names = split_labels(labels)
    if not names:
        raise ValueError("write at least one label (separate labels with commas or new lines)")
    image = services.prepare(image_path, model, f"Scoring {len(names)} labels", progress)
    result = services.engine.classify(
        image,
        names,
        model=model,
        template=template or "{}",
        scoring=SCORINGS[scoring],
        temperature=float(temperature),
        explain_labels=bool(heatmaps),
    )

    def num(value):
        return None if value is None else round(value, 4)

    rows = [[s.label, round(s.probability, 4), num(s.itc_cosine), num(s.itm_logit)] for s in result.labels]
    probabilities = {s.label: s.probability for s in result.labels}
    prompts = [(template.replace("{}", s.label), s.heatmaps) for s in result.labels]
    scoring_text = next(name for name, key in SCORINGS.items() if key == result.scoring)
    if result.scoring != "itm":
        scoring_text += f", temperature {result.temperature:g}"
    summary = formatting.summary(result, f"{scoring_text}; prompts like “{prompts[0][0]}”", "Scoring")
    return probabilities, rows, summary, explained(image, prompts, model=model), result.to_dict()


def build(
    services: Services, image: gr.Image, after: Callable[[Any], Any], examples: list[list[str]] = ()
) -> None:
    models = services.models["retrieval"]
    model = controls.dropdown(models, value=models[0], label="Model")
    labels = gr.Textbox(
        label="Labels (separated by commas or new lines)",
        lines=2,
        placeholder="circle, square, triangle, star",
        elem_id="zeroshot-labels",
    )
    with gr.Row():
        template = gr.Textbox(
            value=TEMPLATE, label="Prompt template ({} is the label)", elem_id="zeroshot-template"
        )
        scoring = controls.radio(list(SCORINGS), value=next(iter(SCORINGS)), label="Scoring")
        temperature = temperature_slider()
    if examples:
        gr.Examples(examples, inputs=[labels, template], label="Example labels and templates")
    heatmaps = gr.Checkbox(value=False, label="Compute heatmaps for every label")
    run = gr.Button("Classify", variant="primary", elem_id="zeroshot-run")
    output = gr.Label(label="Labels", num_top_classes=10, elem_id="zeroshot-label")
    table = gr.Dataframe(
        headers=["label", "probability", "ITC cosine", "ITM logit"], interactive=False, label="Scores"
    )
    summary = gr.Markdown(elem_id="zeroshot-summary")
    state, raw = heatmaps_and_raw_result(services)

    @friendly
    def handler(image, model, labels, template, scoring, temperature, heatmaps, progress=gr.Progress()):
        return classify(services, image, model, labels, template, scoring, temperature, heatmaps, progress)

    event = run.click(
        services.gpu(handler),
        inputs=[image, model, labels, template, scoring, temperature, heatmaps],
        outputs=[output, table, summary, state, raw],
        api_name="classify",
        concurrency_id="retrieval",
        concurrency_limit=1,
    )
    after(event)
