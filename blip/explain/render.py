"""Heatmap overlays: a patch-grid map laid over the original picture, at the picture's size, optionally
smoothed and in a choice of colours."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..loading.preprocess import to_rgb

# Colour maps offered for overlays: "jet" as in BLIP's and LAVIS's demos; the perceptually uniform
# ones read more honestly (equal steps in value look like equal steps in colour) and survive greyscale
# printing; "gray" shows the map's brightness alone.
COLORMAPS = ("jet", "viridis", "inferno", "magma", "plasma", "cividis", "turbo", "gray")
# LAVIS blurs its maps with sigma = 0.02 x the picture's longer side, in pixels of the model's input:
# at 384 px with 16 px patches (a 24 x 24 grid) that is 0.48 patches.
LAVIS_BLUR = 0.48


def blur_map(heat: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a (rows, columns) map, ``sigma`` in patches (0 returns the map as it is).

    Separable: a 1-D kernel down the columns, then along the rows, cut at 4 sigma, with the edges
    mirrored (what scipy's ``gaussian_filter`` does by default), in float32 so no level is lost.
    """
    if sigma < 0:
        raise ValueError(f"blur must be 0 (off) or a positive number of patches (got {sigma})")
    heat = np.asarray(heat, dtype=np.float32)
    if sigma == 0:
        return heat
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = heat
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")  # mirrored edges: d c b a | a b c d | d c b a
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=axis)
        out = (windows * kernel).sum(axis=-1, dtype=np.float32)  # (rows, columns) again
    return out


def overlay(
    image: Image.Image,
    heat: np.ndarray,
    opacity: float = 0.5,
    colormap: str = "jet",
    blur: float = 0.0,
) -> Image.Image:
    """Blend a (rows, columns) map over ``image``.

    The map is optionally blurred on its grid, stretched to the image's size with bicubic interpolation
    (the model saw a square warp of the picture, so the grid stretches the same way), scaled to 0..1,
    coloured with a matplotlib colormap and blended with the given opacity.

    Args:
        image: the original picture (any mode; shown upright).
        heat: the map, e.g. ``Heatmaps.grid_map(...)``.
        opacity: 0 shows only the picture, 1 only the map.
        colormap: one of :data:`COLORMAPS` (any matplotlib colormap name works).
        blur: Gaussian blur sigma in patches (0 = none; :data:`LAVIS_BLUR` is LAVIS's demo setting).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1 (got {opacity})")
    import matplotlib  # imported here: only rendering needs it, and it is slow to import

    if colormap not in matplotlib.colormaps:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)} (got {colormap!r})")
    base = to_rgb(image)
    heat = blur_map(heat, blur)
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    layer = Image.fromarray(scaled, mode="F").resize(base.size, Image.Resampling.BICUBIC)
    values = np.clip(np.asarray(layer), 0.0, 1.0)
    colours = matplotlib.colormaps[colormap](values)[..., :3]  # (H, W, 3) floats in 0..1
    blended = (1 - opacity) * (np.asarray(base, dtype=np.float32) / 255) + opacity * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8), mode="RGB")
