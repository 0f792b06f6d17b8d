"""A sketchpad as a source of the shared image: a class draws a shape, and "Use this drawing" makes
the drawing the picture every tab reads (as an upload or a webcam photo would be)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from .errors import friendly

CANVAS = 384  # pixels a side: the real models' input size (the demo models read a 96 px downscale)
PAPER = "white"
# Saturated colours, as in the shapes world the demo models were trained on; black for outlines.
COLOURS = ["#e41a1c", "#2ca02c", "#1f4fe0", "#f2c200", "#000000"]


def flatten(drawing: Any) -> Image.Image:
    """The sketchpad's value (a dict with "composite", or an image) as an RGB picture on white paper.

    Args:
        drawing: what ``gr.Sketchpad(type="pil")`` hands a handler.
    """
    picture = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if picture is None:
        raise ValueError("draw something on the sketchpad first")
    picture = picture.convert("RGBA")
    alpha = picture.getchannel("A")
    if alpha.getextrema()[1] == 0:  # only transparent pixels: nothing drawn
        raise ValueError("the sketchpad is empty: draw something first")
    paper = Image.new("RGBA", picture.size, PAPER)
    paper.alpha_composite(picture)  # strokes over white; untouched canvas stays white
    return paper.convert("RGB")


def build(image: gr.Image) -> None:
    """The sketchpad (in a closed accordion) and the button that puts its drawing into ``image``."""
    with gr.Accordion("Draw a picture (sketchpad)", open=False, elem_id="sketch-accordion"):
        pad = gr.Sketchpad(
            type="pil",
            image_mode="RGBA",
            canvas_size=(CANVAS, CANVAS),
            fixed_canvas=True,
            brush=gr.Brush(default_size=14, colors=COLOURS, default_color=COLOURS[0], color_mode="defaults"),
            layers=False,
            label="Sketchpad: draw a shape, then use it as the image",
            elem_id="sketchpad",
        )
        use = gr.Button("Use this drawing", elem_id="sketch-use")
    use.click(friendly(flatten), inputs=[pad], outputs=[image], api_visibility="private", queue=False)
