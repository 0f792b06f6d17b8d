"""Image preprocessing for BLIP (Li et al., 2022, "BLIP: Bootstrapping Language-Image Pre-training",
arXiv 2201.12086), as plain functions.

BLIP's vision transformer sees a square image, normalised with the OpenAI CLIP statistics:

    any PIL image -> RGB (transparency composited onto white) -> bicubic resize to a square
    -> values in [0, 1] -> (x - mean) / std per channel -> (3, H, W) float32

Every step matches transformers' PIL image processor (``BlipImageProcessorPil``) bit for bit, so the
model sees exactly the pixels it was evaluated with. One deliberate difference: ``to_rgb`` applies the
EXIF orientation tag (phone photos), which transformers' processor ignores on a PIL image.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

# The OpenAI CLIP statistics BLIP was trained with (one value per RGB channel).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

R = TypeVar("R")

# White, fully opaque: the background that transparent pixels are composited onto.
_WHITE = (255, 255, 255, 255)


def load_image(path_or_bytes: str | os.PathLike | bytes) -> Image.Image:
    """Open an image file, upright (EXIF orientation applied); animated images give their first frame.

    Args:
        path_or_bytes: a file path, or the encoded file's bytes (an upload).
    """
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as image:
        image.seek(0)  # first frame of a GIF / APNG / WebP animation
        # exif_transpose always returns a new, fully loaded image, so the file can be closed.
        return ImageOps.exif_transpose(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` upright and in RGB mode, compositing any transparency onto white.

    Pixel for pixel what transformers does for every mode it accepts: an image with an alpha band
    (RGBA, LA, PA) or a ``transparency`` entry (palette or colour-key tRNS) becomes RGBA and is
    composited onto white; every other mode goes through ``Image.convert("RGB")``, which clips the
    16/32-bit and float modes (I;16, I, F) to 0..255 (it does not rescale them).

    Args:
        image: a PIL image of any mode.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "La":
        # Premultiplied luminance + alpha: PIL only converts it to LA (un-premultiplying); transformers
        # raises here. Treat it as the LA image it stands for.
        image = image.convert("LA")
    # The band is named "A" only for straight alpha: RGBa (premultiplied) goes through convert("RGB"),
    # as in transformers.
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if not has_alpha:
        return image.convert("RGB")
    # A plain convert("RGB") would drop alpha and reveal whatever colour hides under transparent pixels.
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def preprocess(
    images: Image.Image | Sequence[Image.Image],
    image_size: int = 384,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Turn PIL images into the normalised pixel batch BLIP's vision encoder takes.

    Args:
        images: one PIL image or a sequence of them, any mode and size.
        image_size: side of the square the images are resized to (384 for the released BLIP models;
            read it from the checkpoint's ``preprocessor_config.json``).
        device: where the batch is wanted (default the CPU). Another device gets the resized
            pictures as bytes and scales them itself: a quarter of the float32 batch to copy, and the
            arithmetic off a busy CPU. The values are the same bits on every device.

    Returns:
        float32 tensor of shape (B, 3, image_size, image_size).
    """
    if isinstance(images, Image.Image):
        images = [images]
    if len(images) == 0:
        raise ValueError("preprocess() needs at least one image")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")

    def resized(image: Image.Image) -> np.ndarray:
        # A square warp, not an aspect-preserving resize plus crop: BLIP was trained this way.
        return np.asarray(to_rgb(image).resize((image_size, image_size), Image.Resampling.BICUBIC))

    on_cpu = device is None or torch.device(device).type == "cpu"
    if on_cpu and threaded(images):
        # Each picture is finished in its worker (NumPy releases the GIL as Pillow does).
        return torch.from_numpy(np.stack(map_pictures(lambda image: _normalised(resized(image)), images)))
    # One batch of bytes, scaled where it is wanted: on another device, a quarter of the float32
    # batch to copy there.
    return normalised_batch(torch.from_numpy(np.stack(map_pictures(resized, images))).to(device))


def normalised_batch(batch: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 on any device -> (B, 3, H, W) float32 there: the bits of :func:`_normalised`."""
    scaled = (batch.to(torch.float64) * (1 / 255)).to(torch.float32)
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=batch.device)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32, device=batch.device)
    return ((scaled - mean) / std).permute(0, 3, 1, 2).contiguous()


_MEAN, _STD = np.array(IMAGE_MEAN, dtype=np.float32), np.array(IMAGE_STD, dtype=np.float32)


def _normalised(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in BLIP's normalisation, as a transposed view. Each step
    is one IEEE operation per value, so NumPy here and PyTorch on another device give the same bits."""
    # Scale in float64, then cast: (x * (1/255)) in float64 rounds differently from x / 255 in float32,
    # and transformers does the former.
    scaled = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    scaled -= _MEAN
    scaled /= _STD
    return scaled.transpose(2, 0, 1)  # a view: the batch's stack makes the one copy


# Below about a megapixel in all, handing pictures to threads costs more than it saves (the demo
# models' 96-pixel scenes); above it, Pillow's resize runs in parallel (it releases the GIL).
THREADED_PIXELS = 1_000_000
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child (ZeroGPU's and Ray's workers can be): the parent's threads did not come along,
    and its lock may have been held, so the child starts its own of both."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def threaded(images: Sequence[Image.Image]) -> bool:
    """Whether :func:`map_pictures` hands these pictures to threads."""
    return len(images) > 1 and sum(image.width * image.height for image in images) >= THREADED_PIXELS


def map_pictures(fn: Callable[[Image.Image], R], images: Sequence[Image.Image]) -> list[R]:
    """``[fn(image) for image in images]``, in order; on a shared pool of threads (one per CPU, at
    most 8) when there are several pictures and a megapixel or more in all. For work that releases
    the GIL: Pillow's resizing, hashing a picture's bytes."""
    global _POOL
    if not threaded(images):
        return [fn(image) for image in images]
    with _POOL_LOCK:
        if _POOL is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            _POOL = ThreadPoolExecutor(max_workers=min(8, cpus or 1), thread_name_prefix="blip-prep")
    return list(_POOL.map(fn, images))
