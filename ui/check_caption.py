"""Check a caption, in the Caption tab: does the matcher agree (its ITM probability and ITC cosine), and
how likely does the captioner find the text, token by token (one teacher-forced pass)? The text starts
as the generated caption 1; a student can type their own and compare."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from .errors import friendly
from .heatmaps import explained
from .services import Services


def check(
    services: Services,
    image_path: str | None,
    caption_model: str,
    matcher: str,
    prompt: str,
    text: str,
    heatmaps: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """The matcher's verdict on ``text`` and the captioner's likelihood of it.

    Returns:
        (verdict markdown, token highlights, token table, summary markdown, heatmap state, raw dict)
    """
    if not (text or "").strip():
        raise ValueError("type a caption to check (or caption the image first)")
    image = services.prepare(image_path, matcher, "Asking the matcher", progress)
    verdict = services.engine.check_caption(image, text, model=matcher, explain_words=bool(heatmaps))
    if progress:
        progress(0.7, desc=f"Scoring the caption with {caption_model}")
    likely = services.engine.caption_likelihood(
        image, text, model=caption_model, prompt=prompt or "", explain_words=bool(heatmaps)
    )
    agrees = "yes, it matches" if verdict.matches else "no, it does not match"
    markdown = (
        f"### Does the matcher agree? {agrees}\n"
        f"ITM match probability **{verdict.itm_probability:.3f}** · ITC cosine "
        f"**{verdict.itc_cosine:.3f}** (`{matcher}`)\n\n"
        f"### How likely does the captioner find it?\n"
        f"log-likelihood **{likely.log_likelihood:.3f}** over {len(likely.tokens)} tokens · "
        f"mean log-probability {likely.mean_logprob:.3f} · perplexity **{likely.perplexity:.2f}** "
        f"(`{caption_model}`; lower perplexity: the model finds the text more natural)"
    )
    state = explained(
        image,
        [
            (f"captioner reading: {likely.text}", likely.heatmaps),
            (f"matcher reading: {verdict.text}", verdict.heatmaps),
        ],
        model=caption_model,  # the rollout view explains the captioner's vision tower
    )
    summary = formatting.summary(verdict) + (  # the offline-demo banner once, then the second timing
        f"\n\n**Time (likelihood):** {formatting.timing_text(likely.timings, likely.image_cached)}"
        f" · model `{caption_model}`"
    )
    raw = {"check": verdict.to_dict(), "likelihood": likely.to_dict()}
    return markdown, formatting.token_highlights(likely), formatting.token_rows(likely), summary, state, raw


def _first_caption(table) -> str:
    """Caption 1's text from the captions table (a DataFrame or a list of rows)."""
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    return str(rows[0][1]) if rows and len(rows[0]) > 1 else ""


class CheckSection:
    """The section's controls; build inside the tab, then :meth:`connect` once the tab's state exists."""

    def __init__(self, services: Services):
        matchers = services.models["retrieval"]
        with gr.Accordion("Check a caption: does the matcher agree? how likely is it?", open=False):
            with gr.Row():
                self.text = gr.Textbox(
                    label="Caption to check (caption 1, or type your own)", scale=3, elem_id="check-text"
                )
                self.matcher = controls.dropdown(matchers, value=matchers[0], label="Matcher model")
                self.run = gr.Button("Check", elem_id="check-run")
            self.verdict = gr.Markdown(elem_id="check-verdict")
            self.tokens = gr.HighlightedText(label="Each token's probability under the captioner")
            self.table = gr.Dataframe(
                headers=["#", "token", "probability", "top alternatives"],
                interactive=False,
                label="What the captioner would have said instead",
            )
            self.summary = gr.Markdown()

    def connect(
        self,
        services: Services,
        image: gr.Image,
        model: gr.components.Component,
        prompt: gr.components.Component,
        heatmaps: gr.components.Component,
        captions: gr.components.Component,
        caption_event: Any,
        state: gr.State,
        raw: gr.JSON,
        after: Callable[[Any], Any],
    ) -> None:
        caption_event.then(
            _first_caption, inputs=[captions], outputs=[self.text], api_visibility="private", queue=False
        )

        @friendly
        def handler(image, model, matcher, prompt, text, heatmaps, progress=gr.Progress()):
            return check(services, image, model, matcher, prompt, text, heatmaps, progress)

        event = self.run.click(
            services.gpu(handler),
            inputs=[image, model, self.matcher, prompt, self.text, heatmaps],
            outputs=[self.verdict, self.tokens, self.table, self.summary, state, raw],
            api_name="check_caption",
            concurrency_id="caption",
            concurrency_limit=1,
        )
        after(event)
