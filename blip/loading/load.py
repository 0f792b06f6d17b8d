"""``load()``: one call from a model name (or folder) to a ready model with its matching preprocessing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..model.task_models import BlipBase
from .checkpoint import load_checkpoint
from .hub import resolve
from .preprocess import preprocess
from .tokenizer import BlipTokenizer


@dataclass
class LoadedModel:
    """A task model together with the tokenizer and image size its checkpoint was trained with."""

    name: str  # what the caller asked for: a table name or a directory
    path: Path  # the checkpoint directory the files were read from
    model: BlipBase
    tokenizer: BlipTokenizer
    image_size: int
    offline_demo: bool = False  # the engine served the offline demo model in place of a Hub checkpoint
    explainer: BlipBase | None = None  # float32 twin of an int8 ``model`` (fast mode), for gradients

    @property
    def gradient_model(self) -> BlipBase:
        """The model Grad-CAM differentiates: the float32 twin in fast mode, else ``model`` itself."""
        return self.explainer if self.explainer is not None else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixels(self, images: Image.Image | list[Image.Image]) -> torch.Tensor:
        """PIL image(s) -> normalised pixel tensor (B, 3, S, S) on the model's device."""
        return preprocess(images, self.image_size, device=self.device)


def _image_size(directory: Path, default: int) -> int:
    """The resize target from ``preprocessor_config.json`` (its ``size``), else the vision config's."""
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return default
    size = json.loads(path.read_text(encoding="utf-8")).get("size", default)
    if isinstance(size, dict):
        height, width = size.get("height", default), size.get("width", default)
        if height != width:
            raise ValueError(f"{path}: non-square size {height}x{width} is not supported")
        return int(height)
    return int(size)


def load(
    name_or_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Load a BLIP checkpoint by table name (downloading on first use) or from a local directory.

    Args:
        name_or_dir: a name from ``blip.loading.hub.MODELS`` (e.g. "caption-base") or a checkpoint folder.
        device: "cpu", "cuda", ...
        dtype: parameter dtype (float32 is bit-compatible with the reference).
        cache_dir: Hub cache to use instead of the standard one.
    """
    directory = resolve(name_or_dir, cache_dir=cache_dir)
    model = load_checkpoint(directory, device=device, dtype=dtype)
    return LoadedModel(
        name=str(name_or_dir),
        path=directory,
        model=model,
        tokenizer=BlipTokenizer.from_checkpoint_dir(directory),
        image_size=_image_size(directory, model.config.vision.image_size),
    )
