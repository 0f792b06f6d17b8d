"""The ``/rollout`` API endpoint: the vision tower's attention rollout for a picture, as the viewer's
"Rollout (vision tower)" view draws it, for programs (``gradio_client``). Not on the page: in the app
the viewer shows it for any tab's result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls
from .errors import friendly
from .services import Services


def rollout(
    services: Services,
    image_path: str | None,
    model: str,
    opacity: float = 0.5,
    colormap: str | None = None,
    blur: float = 0.0,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """The class token's rollout through the whole tower over the picture, and the raw result (its
    per-layer maps, each summing to one).

    Returns:
        (PIL overlay, raw result dict)
    """
    image = services.prepare(image_path, model, "Rolling out the vision tower's attention", progress)
    result = services.engine.vision_rollout(image, model=model)
    style = {"colormap": colormap or services.colormaps[0], "blur": float(blur)}
    return services.overlay(image, result.grid_map(), opacity=float(opacity), **style), result.to_dict()


def build(services: Services) -> None:
    """Register ``/rollout`` with inputs checked like the page's (hidden components)."""
    names = list(dict.fromkeys(name for models in services.models.values() for name in models))
    with gr.Column(visible=False):
        inputs = [
            controls.image_path(label="Image"),
            controls.dropdown(names, value=names[0], label="Model"),
            controls.slider(0.0, 1.0, value=0.5, label="Heatmap opacity"),
            controls.dropdown(list(services.colormaps), value=services.colormaps[0], label="Colormap"),
            controls.slider(0.0, 2.0, value=0.0, label="Blur"),
        ]
        outputs = [gr.Image(type="pil", label="Rollout"), gr.JSON(label="Raw result")]

    @friendly
    def handler(image, model, opacity, colormap, blur, progress=gr.Progress()):
        return rollout(services, image, model, opacity, colormap, blur, progress)

    gr.on(
        triggers=[],  # nothing on the page runs it: an API endpoint only
        fn=services.gpu(handler),
        inputs=inputs,
        outputs=outputs,
        api_name="rollout",
        concurrency_id="rollout",
        concurrency_limit=1,
    )
