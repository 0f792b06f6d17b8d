"""What the UI is given to work with: the engine and a few plain functions, passed in by ``app.py``.

The UI never imports ``torch`` (nor ``blip``, whose package imports it): everything model-side reaches
it through this object, as plain Python values, PIL images and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

TASKS = ("caption", "vqa", "retrieval")


def _unchanged(fn: Callable) -> Callable:
    return fn


@dataclass
class Services:
    """Dependencies of every tab.

    Attributes:
        engine: a ``blip.engine.Engine`` (caption / answer / match / classify, model status).
        open_image: file path -> upright PIL image, or an error saying why it cannot be read.
        overlay: (image, heat map, opacity) -> PIL image with the map blended over it.
        models: per task ("caption", "vqa", "retrieval"), the model names offered, default first.
        device: where the models run ("cpu", "cuda").
        dtype: the parameter dtype's name ("float32").
        examples: example image sets, key -> (title, image paths), shown in this order.
        gpu: wraps the functions that run models (``spaces.GPU`` on a ZeroGPU Space; else unchanged).
        draw_beam_tree: (search tree, show_pruned=) -> PIL image of a beam search (None: not offered).
        draw_sampled_paths: (paths, labels) -> PIL image of several sampled texts as one tree.
        colormaps: the heatmap viewer's colormap names (``overlay`` takes them), default first.
        lavis_blur: the heatmap blur (sigma in patches) LAVIS's demo uses, offered as a hint.
    """

    engine: Any
    open_image: Callable[[str], Image.Image]
    overlay: Callable[..., Image.Image]
    models: dict[str, list[str]]
    device: str = "cpu"
    dtype: str = "float32"
    examples: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    gpu: Callable[[Callable], Callable] = _unchanged
    draw_beam_tree: Callable[..., Image.Image] | None = None
    draw_sampled_paths: Callable[..., Image.Image] | None = None
    colormaps: tuple[str, ...] = ("jet",)
    lavis_blur: float = 0.48

    def image(self, path: str | None) -> Image.Image:
        """The shared image as a PIL image (a clear error if there is none)."""
        if not path:
            raise ValueError("upload an image first (or pick one of the examples)")
        return self.open_image(path)

    def prepare(
        self, path: str | None, model: str, doing: str, progress: Callable[..., Any] | None = None
    ) -> Image.Image:
        """Open the shared image and make sure ``model`` is loaded, telling the progress bar."""
        image = self.image(path)
        if progress:
            progress(0.1, desc=f"Loading {model} (downloaded on first use)")
        self.engine.model(model)
        if progress:
            progress(0.5, desc=doing)
        return image
