"""Heatmap overlays: a patch-grid map laid over the original picture, at the picture's size."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..loading.preprocess import to_rgb


def overlay(
    image: Image.Image,
    heat: np.ndarray,
    opacity: float = 0.5,
    colormap: str = "jet",
    blur: float = 0.0,
) -> Image.Image:
    """Blend a (rows, columns) map over ``image``.

    The map is stretched to the image's size with bicubic interpolation (the model saw a square warp
    of the picture, so the grid stretches the same way), scaled to 0..1, optionally blurred, coloured
    with a matplotlib colormap and blended with the given opacity.

    Args:
        image: the original picture (any mode; shown upright).
        heat: the map, e.g. ``Heatmaps.grid_map(...)``.
        opacity: 0 shows only the picture, 1 only the map.
        colormap: a matplotlib colormap name.
        blur: Gaussian blur radius in pixels of the output (0 = none).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1 (got {opacity})")
    import matplotlib  # imported here: only rendering needs it, and it is slow to import

    base = to_rgb(image)
    heat = np.asarray(heat, dtype=np.float32)
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    layer = Image.fromarray(scaled, mode="F").resize(base.size, Image.Resampling.BICUBIC)
    values = np.clip(np.asarray(layer), 0.0, 1.0)
    if blur > 0:  # PIL blurs 8-bit images only; 256 levels are plenty for a colour map
        smooth = Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L")
        values = np.asarray(smooth.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255
    colours = matplotlib.colormaps[colormap](values)[..., :3]  # (H, W, 3) floats in 0..1
    blended = (1 - opacity) * (np.asarray(base, dtype=np.float32) / 255) + opacity * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8), mode="RGB")
