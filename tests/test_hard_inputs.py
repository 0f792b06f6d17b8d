"""Hard inputs, through the same handlers the app runs (on the shipped demo models): each bad file, text,
label list or parameter gets a message saying what is wrong (a ``gr.Error``), or a sensible result.

The corpus is generated here, in a temporary folder: truncated JPEG and PNG, an empty file, a text
file named .jpg, a 1 x 1 image, a header claiming 30000 x 30000 pixels, 16-bit PNG, CMYK JPEG, a
palette with transparency, LA, an animated GIF, an EXIF-rotated JPEG and a huge but legal image.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import decoding_values
from PIL import Image

from blip.engine import MAX_LABELS, Engine
from blip.explain import render
from blip.generation.tasks import MAX_TEXT_TOKENS
from blip.loading import uploads
from blip.loading.preprocess import to_rgb
from ui import ask_tab, caption_tab, match_tab, zeroshot_tab
from ui.decoding import GREEDY
from ui.errors import friendly
from ui.services import Services

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
RED_CIRCLE = SHAPES[0]  # "a small red circle in the centre"
TWO_SHAPES = SHAPES[1]  # "a large blue circle at the top and a small green triangle at the bottom"
MODELS = {"caption": ["caption-base"], "vqa": ["vqa-base"], "retrieval": ["itm-base-coco"]}
GREEDY_CONTROLS = decoding_values(GREEDY)


@pytest.fixture(scope="module")
def services() -> Services:
    engine = Engine(device="cpu", demo="always")
    return Services(engine=engine, open_image=uploads.open_upload, overlay=render.overlay, models=MODELS)


def caption_of(services: Services, path: Path | str) -> str:
    rows = friendly(caption_tab.caption)(services, str(path), "caption-base", "", GREEDY_CONTROLS, False)[0]
    return rows[0][1]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


# --- files that cannot be used: a message saying why ------------------------------------------------


def test_truncated_jpeg_and_png(services, tmp_path):
    photo = Image.open(RED_CIRCLE).convert("RGB").resize((400, 400))
    for suffix in ("jpg", "png"):
        whole = tmp_path / f"whole.{suffix}"
        photo.save(whole, quality=95) if suffix == "jpg" else photo.save(whole)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(gr.Error, match=r"incomplete \(truncated\)|damaged"):
            caption_of(services, cut)


def test_empty_file_and_text_named_jpg(services, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match=r"The file is empty \(0 bytes\)"):
        caption_of(services, empty)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n" * 20)
    with pytest.raises(gr.Error, match=r"This file is not an image that can be read \(use JPEG, PNG"):
        caption_of(services, text)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (9000, 9000)])
def test_header_claiming_too_many_pixels_is_refused_before_decoding(services, tmp_path, width, height):
    # The file holds no pixel data: reaching the size message proves nothing was decoded.
    bomb = png_header_only(tmp_path / "bomb.png", width, height)
    megapixels = round(width * height / 1e6)
    with pytest.raises(gr.Error, match=rf"{megapixels} megapixels.*the limit is 64 megapixels"):
        caption_of(services, bomb)


# --- files that are fine, if unusual: a sensible result -------------------------------------------------


def test_one_pixel_image_gets_a_caption(services, tmp_path):
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (210, 45, 45)).save(dot)
    assert uploads.open_upload(dot).size == (1, 1)
    assert caption_of(services, dot).strip()  # a caption (of a red square: the demo knows only shapes)


def test_sixteen_bit_png_is_rescaled_not_clipped(services, tmp_path):
    grey = (np.asarray(Image.open(RED_CIRCLE).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(grey).save(path)  # mode I;16
    assert Image.open(path).mode.startswith("I")
    opened = uploads.open_upload(path)
    assert opened.mode == "L"
    assert np.abs(np.asarray(opened, dtype=int) - grey // 257).max() <= 1  # same picture, 8 bits
    assert caption_of(services, path).startswith("a ")


def test_cmyk_palette_and_la_images_get_captions(services, tmp_path):
    base = Image.open(RED_CIRCLE).convert("RGB")
    cmyk = tmp_path / "cmyk.jpg"
    base.convert("CMYK").save(cmyk, quality=95)
    assert Image.open(cmyk).mode == "CMYK"
    assert caption_of(services, cmyk) == "a small red circle in the centre"

    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    corner = palette.getpixel((0, 0))
    palette.info["transparency"] = corner  # the background colour becomes transparent
    transparent = tmp_path / "palette.png"
    palette.save(transparent, transparency=corner)
    opened = uploads.open_upload(transparent)
    assert to_rgb(opened).getpixel((0, 0)) == (255, 255, 255)  # transparency composited onto white
    # A pure white background is new to the demo model (it was trained on grey noise), but the shape's
    # colour and size come through.
    assert caption_of(services, transparent).startswith("a small red")

    la = tmp_path / "la.png"
    base.convert("LA").save(la)
    assert caption_of(services, la).startswith("a ")


def test_animated_gif_uses_its_first_frame(services, tmp_path):
    first = Image.open(RED_CIRCLE).convert("RGB")
    second = Image.open(TWO_SHAPES).convert("RGB")
    gif = tmp_path / "moving.gif"
    first.save(gif, save_all=True, append_images=[second], duration=100, loop=0)
    assert caption_of(services, gif) == "a small red circle in the centre"


def test_exif_rotated_jpeg_is_used_upright(services, tmp_path):
    upright = Image.open(TWO_SHAPES).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    opened = uploads.open_upload(path)
    assert opened.size == upright.size

    def distance(a: Image.Image, b: Image.Image) -> float:
        return float(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean())

    # Upright up to JPEG noise, and nowhere near the other orientations.
    assert distance(opened, upright) < 6
    assert distance(opened, upright) * 3 < distance(opened, upright.transpose(Image.Transpose.ROTATE_180))
    assert caption_of(services, path) == caption_of(services, TWO_SHAPES)


def test_huge_legal_image_is_downscaled_not_refused(services, tmp_path):
    big = Image.open(RED_CIRCLE).convert("RGB").resize((6000, 6000), Image.Resampling.NEAREST)
    path = tmp_path / "huge.jpg"
    big.save(path, quality=90)
    opened = uploads.open_upload(path)
    assert max(opened.size) == uploads.MAX_SIDE
    assert caption_of(services, path) == "a small red circle in the centre"


# --- texts ---------------------------------------------------------------------------------------------


def ask(services, question: str, image: Path = TWO_SHAPES):
    answer_controls = decoding_values(GREEDY, min_new_tokens=1, max_new_tokens=10)
    return friendly(ask_tab.ask)(
        services, str(image), "vqa-base", question, ask_tab.GENERATE, "", "[ENC]", answer_controls, False
    )


@pytest.mark.parametrize("question", ["", "   \n\t ", "\x00\x07\x1b", "\u200f\u202e"])
def test_empty_questions_are_refused(services, question):
    with pytest.raises(gr.Error, match="The question is empty"):
        ask(services, question)


def test_control_characters_emoji_and_right_to_left_text(services):
    clean = ask(services, "what colour is the circle?")[-1]
    noisy = ask(services, "what colour\x00 is the\x07 circle?\x1b")[-1]
    assert noisy["answers"][0]["text"] == clean["answers"][0]["text"] == "blue"
    assert noisy["question"] == "what colour is the circle?"
    emoji = ask(services, "what colour is the circle? 🎨")[-1]
    assert emoji["answers"][0]["text"] == "blue"
    assert any("[UNK]" in n for n in emoji["notices"])
    for text in ("ما لون الدائرة؟", "מה הצבע של העיגול?"):
        assert ask(services, text)[-1]["answers"][0]["text"]  # an answer, whatever the script


def test_five_thousand_words_are_cut_with_a_notice(services):
    long_text = " ".join(["circle"] * 5000)
    raw = ask(services, long_text)[-1]
    assert f"the question was cut to its first {MAX_TEXT_TOKENS} tokens (the model's limit)" in raw["notices"]
    table, summary, _state, raw = friendly(match_tab.match)(
        services,
        str(RED_CIRCLE),
        "itm-base-coco",
        f"a small red circle in the centre\n{long_text}",
        "[ENC]",
        False,
    )
    assert len(table) == 2 and f"text 2 was cut to its first {MAX_TEXT_TOKENS} tokens" in summary
    with pytest.raises(gr.Error, match="Give at least one text"):
        friendly(match_tab.match)(services, str(RED_CIRCLE), "itm-base-coco", " \n\x00\n ", "[ENC]", False)


def classify(services, labels: str) -> tuple:
    return friendly(zeroshot_tab.classify)(
        services, str(RED_CIRCLE), "itm-base-coco", labels, "a {}", "ITC (cosine, fast)", 0.07, False
    )


def test_label_lists_none_one_duplicates_and_a_thousand(services):
    with pytest.raises(gr.Error, match="Write at least one label"):
        classify(services, " , ,\n")
    best, table, _summary, _state, _raw = classify(services, "circle")
    assert best == {"circle": 1.0} and len(table) == 1
    _, table, _summary, _state, _raw = classify(services, "circle, star, circle, circle , star")
    assert sorted(row[0] for row in table) == ["circle", "star"]
    many = ", ".join(["circle", "star"] + [f"label{i}" for i in range(998)])
    _, table, summary, _state, raw = classify(services, many)
    assert len(table) == MAX_LABELS
    assert f"only the first {MAX_LABELS} of 1000 labels were used" in raw["notices"]
    assert "only the first" in summary
