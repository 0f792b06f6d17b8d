"""Open an uploaded image file safely, or say in plain words why it cannot be used.

A public app receives every kind of file: empty ones, text files named .jpg, truncated downloads,
16-bit scans, animated GIFs, phone photos lying on their side, and files whose header claims a size
that would take gigabytes to decode. ``open_upload`` checks the header before decoding anything big,
decodes what is reasonable, and turns every failure into a ``ValueError`` whose message a user can act
on. The model itself sees the result through ``blip.loading.preprocess`` like any other image.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # refused beyond this (about 8000 x 8000), before decoding
MAX_SIDE = 4096  # larger images are downscaled to this longest side (the model sees 384 x 384 anyway)
FORMATS = "JPEG, PNG, GIF, WebP, BMP or TIFF"

# Modes holding more than 8 bits per channel; PIL's convert("RGB") would clip them, not rescale them.
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


class UploadError(ValueError):
    """An uploaded file that cannot be used as an image; the message says why."""


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} megapixels"


def _too_large(width: int | None, height: int | None, pixels: int) -> UploadError:
    size = f"{width} x {height} pixels ({_megapixels(pixels)})" if width else f"{_megapixels(pixels)}"
    return UploadError(
        f"the image is {size}; the limit is {_megapixels(MAX_PIXELS)} ({MAX_PIXELS:,} pixels). "
        "Please upload a smaller version."
    )


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit or float greyscale image to 8 bits (instead of clipping everything bright)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = float(values.max()) if values.size else 1.0
        scale = 255.0 / top if top > 1.0 else 255.0
    else:
        scale = 255.0 / 65535.0 if values.max(initial=0) <= 65535 else 255.0 / float(values.max())
    return Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), mode="L")


def open_upload(path: str | os.PathLike) -> Image.Image:
    """The image in ``path``, upright and fully decoded.

    EXIF orientation is applied (phone photos), animated images give their first frame, 16-bit and
    float greyscale is rescaled to 8 bits, and an image whose longest side exceeds ``MAX_SIDE`` is
    downscaled to it. Colour modes are left to ``blip.loading.preprocess.to_rgb``.

    Raises:
        UploadError: the file is missing, empty, not an image, damaged, or over ``MAX_PIXELS``.
    """
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise UploadError(f"the file could not be opened ({err.strerror or err})") from None
    if size == 0:
        raise UploadError("the file is empty (0 bytes)")
    return _decode(path)


def open_upload_bytes(data: bytes) -> Image.Image:
    """:func:`open_upload` for a file's bytes (read from any filesystem, e.g. by Ray Data)."""
    if not data:
        raise UploadError("the file is empty (0 bytes)")
    return _decode(io.BytesIO(data))


def _decode(source: str | os.PathLike | io.BytesIO) -> Image.Image:
    """Open, check and decode an image file that is not empty (see :func:`open_upload`)."""
    try:
        image = Image.open(source)
    except Image.DecompressionBombError as err:  # PIL's own hard limit, far above ours
        found = re.search(r"\((\d+) pixels\)", str(err))
        raise _too_large(None, None, int(found.group(1)) if found else MAX_PIXELS + 1) from None
    except UnidentifiedImageError:
        raise UploadError(f"this file is not an image that can be read (use {FORMATS})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UploadError(f"the image file could not be read ({err})") from None
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _too_large(width, height, width * height)
        if width < 1 or height < 1:
            raise UploadError("the image has no pixels")
        try:
            image.seek(0)  # first frame of a GIF / APNG / WebP animation
            if max(width, height) > MAX_SIDE:
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            image.load()
            upright = ImageOps.exif_transpose(image)  # a new, loaded image: the file can close
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            if "truncated" in str(err):
                raise UploadError(
                    "the image file is incomplete (truncated); please upload it again"
                ) from None
            raise UploadError(f"the image file is damaged and could not be decoded ({err})") from None
    if upright.mode in _WIDE_MODES:
        upright = _to_eight_bits(upright)
    if max(upright.size) > MAX_SIDE:
        upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return upright
