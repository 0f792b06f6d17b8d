"""blip.preprocess against transformers' PIL image processor: every pixel value identical (difference 0).

transformers facts these tests pin (5.24.0, Pillow 12):
- ``BlipImageProcessor.from_pretrained(..., backend="pil")`` raises when torchvision is absent; build the
  oracle as ``BlipImageProcessorPil`` or ``AutoImageProcessor.from_pretrained(dir, backend="pil")``.
- 16/32-bit and float modes (I;16, I, F) are clipped to 0..255 by ``convert("RGB")``, not rescaled, so
  a typical 16-bit photo comes out almost white. We match that.
- Mode "La" (premultiplied) is refused by transformers ("conversion from La to L not supported");
  ours un-premultiplies it to LA and composites onto white.
"""

import io
import multiprocessing
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, BlipImageProcessorPil
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from blip.loading.preprocess import (
    IMAGE_MEAN,
    IMAGE_STD,
    THREADED_PIXELS,
    load_image,
    map_pictures,
    normalised_batch,
    preprocess,
    to_rgb,
)

pytestmark = pytest.mark.parity


def _oracle(size: int = 384) -> BlipImageProcessorPil:
    return BlipImageProcessorPil(size={"height": size, "width": size})


def _expected(images, size: int = 384) -> torch.Tensor:
    return _oracle(size)(images, return_tensors="pt")["pixel_values"]


def _assert_identical(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert ours.dtype == expected.dtype == torch.float32
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() == 0.0
    assert torch.equal(ours, expected)


# ---- seeded test images, one builder per PIL mode ----------------------------------------------------


def _bytes(rng, width, height, channels):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _png_roundtrip(image: Image.Image, **save_args) -> Image.Image:
    """Save and reopen, so transparency arrives as a real PNG tRNS chunk does."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_args)
    buffer.seek(0)
    reopened = Image.open(buffer)
    reopened.load()
    return reopened


def _palette(rng, width, height):
    return Image.fromarray(_bytes(rng, width, height, 3)).quantize(colors=16)


def make_image(mode: str, width: int = 37, height: int = 23, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = width, height
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "LA", "PA", "La"):
        channels = len(Image.new(mode, (1, 1)).getbands())
        return Image.frombytes(mode, (w, h), _bytes(rng, w, h, channels).tobytes())
    if mode == "L":
        return Image.fromarray(_bytes(rng, w, h, 1)[..., 0])
    if mode == "1":
        return Image.fromarray(_bytes(rng, w, h, 1)[..., 0] > 127)
    if mode == "P":
        return _palette(rng, w, h)
    if mode == "P+tRNS":  # per-palette-entry alpha, as PNG stores it
        alphas = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
        return _png_roundtrip(_palette(rng, w, h), transparency=alphas)
    if mode == "P+index":  # one transparent palette index, as GIF stores it
        image = _palette(rng, w, h)
        image.info["transparency"] = 3
        return image
    if mode == "L+tRNS":
        return _png_roundtrip(Image.fromarray(_bytes(rng, w, h, 1)[..., 0]), transparency=7)
    if mode == "RGB+tRNS":
        pixels = _bytes(rng, w, h, 3) // 64 * 64  # few colours, so the keyed one occurs
        return _png_roundtrip(Image.fromarray(pixels), transparency=(64, 128, 0))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 400, (h, w), dtype=np.uint16))
    if mode == "I;16B":
        return Image.frombytes(
            mode, (w, h), rng.integers(0, 400, (h, w), dtype=np.uint16).astype(">u2").tobytes()
        )
    if mode == "I":
        return Image.fromarray(rng.integers(-100, 400, (h, w), dtype=np.int32))
    if mode == "F":
        return Image.fromarray(rng.uniform(-20.0, 280.0, (h, w)).astype(np.float32))
    raise ValueError(mode)


ORACLE_MODES = [
    "RGB", "RGBA", "LA", "PA", "P", "P+tRNS", "P+index", "L", "L+tRNS", "RGB+tRNS", "1", "CMYK",
    "I;16", "I;16B", "I", "F", "YCbCr", "LAB", "HSV", "RGBX", "RGBa",
]  # fmt: skip


def test_constants_are_openai_clip():
    assert tuple(OPENAI_CLIP_MEAN) == IMAGE_MEAN
    assert tuple(OPENAI_CLIP_STD) == IMAGE_STD


@pytest.mark.parametrize("mode", ORACLE_MODES)
def test_every_mode_matches(mode):
    image = make_image(mode)
    assert image.mode == mode.split("+")[0]
    if "+" in mode:
        assert image.info.get("transparency") is not None
    assert to_rgb(image).mode == "RGB"
    _assert_identical(preprocess(image), _expected(image))
    # The intermediate RGB image is the oracle's too.
    oracle_rgb = _oracle().convert_to_rgb(image)  # (H, W, 3) uint8
    assert np.array_equal(np.asarray(to_rgb(image)), oracle_rgb)


def test_transparency_becomes_white():
    image = Image.new("RGBA", (4, 2), (10, 200, 30, 0))  # invisible green
    image.putpixel((0, 0), (10, 200, 30, 255))
    rgb = np.asarray(to_rgb(image))
    assert rgb[0, 0].tolist() == [10, 200, 30]
    assert rgb[1, 3].tolist() == [255, 255, 255]


def test_premultiplied_la_is_refused_by_transformers_and_sensible_here():
    image = Image.frombytes("La", (3, 1), bytes([0, 0, 100, 255, 50, 128]))  # clear, opaque, half
    try:
        expected = _expected(image)
    except ValueError:  # transformers 5.24: "conversion from La to L not supported"
        expected = None
    rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert rgb[0, 1].tolist() == [100, 100, 100]  # opaque -> its grey
    # Premultiplied 50 at alpha 128 is grey 100; half of it over white: 100 * 128/255 + 255 * 127/255 = 177.
    assert 175 <= rgb[0, 2, 0] <= 179 and len(set(rgb[0, 2].tolist())) == 1
    ours = preprocess(make_image("La"))
    assert ours.shape == (1, 3, 384, 384) and torch.isfinite(ours).all()
    if expected is not None:  # should transformers start accepting La, demand identity
        _assert_identical(preprocess(image), expected)


@pytest.mark.parametrize(
    "size",
    [(1, 1), (2, 3), (3, 2), (3000, 2000), (500, 120), (120, 500), (384, 384), (383, 385)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_sizes_match(size):
    image = make_image("RGB", *size, seed=size[0] + size[1])
    _assert_identical(preprocess(image), _expected(image))


@pytest.mark.parametrize("image_size", [224, 64, 1])
def test_other_target_sizes_match(image_size):
    images = [make_image("RGB", 300, 200, seed=1), make_image("P+tRNS", 50, 90, seed=2)]
    ours = preprocess(images, image_size=image_size)
    assert ours.shape == (2, 3, image_size, image_size)
    _assert_identical(ours, _expected(images, image_size))


def test_mixed_batch_matches():
    images = [make_image(mode, 40 + i, 30 + 2 * i, seed=i) for i, mode in enumerate(ORACLE_MODES)]
    ours = preprocess(images)
    assert ours.shape == (len(images), 3, 384, 384)
    _assert_identical(ours, _expected(images))
    for i, image in enumerate(images):  # a batch is the stack of single images
        assert torch.equal(ours[i], preprocess(image)[0])


def test_large_batches_are_resized_on_threads_in_order_and_still_match():
    # 6 pictures of 640 x 480 (1.8 megapixels in all) take the threaded path.
    images = [make_image(mode, 640, 480, seed=i) for i, mode in enumerate(["RGB", "P", "L", "RGBA"] * 2)][:6]
    assert sum(i.width * i.height for i in images) >= THREADED_PIXELS
    names = map_pictures(lambda image: (image.size, threading.current_thread().name), images)
    assert all(name.startswith("blip-prep") for _, name in names)
    ours = preprocess(images)
    _assert_identical(ours, _expected(images))
    for i, image in enumerate(images):  # each picture in its own place
        assert torch.equal(ours[i], preprocess(image)[0])
    # What another device computes (the resized bytes sent there, scaled by PyTorch): the same bits.
    resized = np.stack([np.asarray(to_rgb(i).resize((384, 384), Image.Resampling.BICUBIC)) for i in images])
    assert torch.equal(normalised_batch(torch.from_numpy(resized)), ours)
    small = [make_image("RGB", 96, 96, seed=i) for i in range(16)]  # the demo models' scenes: no threads
    names = map_pictures(lambda image: threading.current_thread().name, small)
    assert set(names) == {threading.current_thread().name}


def test_a_forked_child_resizes_on_threads_of_its_own():
    images = [make_image("RGB", 640, 480, seed=i) for i in range(4)]
    expected = preprocess(images)  # the parent's pool now exists, with its threads
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # the parent's threads are not in the child: a stale pool would hang
        child = pool.apply_async(_preprocess_in_child, (images,)).get(timeout=60)
    assert torch.equal(torch.from_numpy(child), expected)


def _preprocess_in_child(images):
    return preprocess(images).numpy()


def test_hub_style_config_with_pil_backend(tmp_path):
    """The processor as an app would get it from a checkpoint's preprocessor_config.json."""
    (tmp_path / "preprocessor_config.json").write_text(
        '{"do_normalize": true, "do_resize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],'
        ' "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],'
        ' "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,'
        ' "size": {"height": 384, "width": 384}}'
    )
    processor = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert processor.backend == "pil"
    image = make_image("RGBA", 640, 480, seed=5)
    _assert_identical(preprocess(image), processor(image, return_tensors="pt")["pixel_values"])


def test_bad_arguments():
    with pytest.raises(ValueError):
        preprocess([])
    with pytest.raises(ValueError):
        preprocess(make_image("RGB"), image_size=0)


# ---- EXIF orientation and file loading ---------------------------------------------------------------


def _rotated_jpeg() -> bytes:
    """A 60x30 JPEG, left half red, right half blue, tagged orientation 6 (show it turned 90° clockwise)."""
    pixels = np.zeros((30, 60, 3), dtype=np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def _assert_upright(image: Image.Image) -> None:
    assert image.size == (30, 60)  # (width, height): portrait once turned
    pixels = np.asarray(image.convert("RGB")).astype(int)
    top, bottom = pixels[:25].mean(axis=(0, 1)), pixels[35:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50  # the stored left (red) is on top after turning clockwise
    assert bottom[2] > 200 and bottom[0] < 50


def test_exif_orientation_is_applied():
    data = _rotated_jpeg()
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (60, 30) and stored.getexif()[0x0112] == 6
    _assert_upright(to_rgb(stored))
    loaded = load_image(data)
    _assert_upright(loaded)
    _assert_upright(to_rgb(loaded))  # already upright: not turned twice
    # With the orientation applied, preprocess sees what transformers sees for the upright image.
    _assert_identical(preprocess(stored), _expected(to_rgb(stored)))


def test_load_image_from_path_and_animation(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_rotated_jpeg())
    _assert_upright(load_image(path))
    _assert_upright(load_image(str(path)))

    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    first = load_image(gif.read_bytes())
    assert getattr(first, "n_frames", 1) == 1  # a plain image, detached from the file
    assert first.size == (8, 6)
    assert to_rgb(first).getpixel((0, 0)) == (255, 0, 0)
