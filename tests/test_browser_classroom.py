"""The classroom inputs and lesson in a real browser (Chromium, ``python app.py --offline-demo``): a
sketch drawn with the mouse becomes the shared image and is captioned, and the About tab's three
exercises are walked click by click, with a screenshot per step in ``artifacts/screenshots/``
(about-exercise-1.png, ...). Checks are on behaviour (a caption appears, the viewer's note names the
word or the rollout), not on the demo models' exact words, which retraining may change."""

from __future__ import annotations

import pytest
from test_browser import (
    RUN_TIMEOUT,
    SHOTS,
    demo_page,
    heatmap_shown,
    load_example,
    no_error_toast,
    open_tab,
    wait_done,
    wait_for_text,
)

pytestmark = pytest.mark.browser
# Chromium's stand-in camera (a moving test pattern) and no permission prompt, for the webcam test.
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with demo_page(tmp_path_factory, tuple(FAKE_CAMERA), permissions=["camera"]) as shown:
        yield shown


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _text_changes(page, selector: str, before: str) -> None:
    """Wait until the element's text is no longer ``before`` (a new result arrived)."""
    page.wait_for_function(
        "([s, b]) => { const e = document.querySelector(s); return !!e && e.innerText !== b; }",
        arg=[selector, before],
        timeout=RUN_TIMEOUT,
    )


def draw_a_square(page) -> None:
    """Open the sketchpad, take the brush and draw a square outline with mouse down, moves, up; then
    make the drawing the shared image."""
    accordion = page.locator("#sketchpad")
    if not accordion.is_visible():
        page.get_by_text("Draw a picture (sketchpad)").click()
    page.locator("#sketchpad button[aria-label='Clear canvas']").first.click()
    page.locator("#sketchpad button[aria-label='Brush']").first.click()
    box = page.locator("#sketchpad canvas").first.bounding_box()
    x, y, side = box["x"] + box["width"] / 2 - 40, box["y"] + box["height"] / 2 - 40, 80
    page.mouse.move(x, y)
    page.mouse.down()
    for cx, cy in ((x + side, y), (x + side, y + side), (x, y + side), (x, y)):
        page.mouse.move(cx, cy, steps=12)
    page.mouse.up()
    before = page.locator("#shared-image img").first.get_attribute("src") if _has_image(page) else None
    page.locator("#sketch-use").click()
    page.wait_for_function(  # the shared image now shows the drawing
        "([b]) => { const e = document.querySelector('#shared-image img'); return !!e && e.getAttribute('src') !== b; }",
        arg=[before],
        timeout=RUN_TIMEOUT,
    )


def _has_image(page) -> bool:
    return page.locator("#shared-image img").count() > 0


def caption_now(page) -> str:
    """Press Caption in the Caption tab and return the first caption once it has changed."""
    open_tab(page, "Caption")
    table = page.locator("#caption-table")
    before = table.inner_text()
    page.locator("#caption-run").click()
    _text_changes(page, "#caption-table", before)
    wait_done(page)
    rows = table.inner_text().split("finished", 1)[-1].split("\n")  # the cells after the header
    return max((cell.strip() for cell in rows), key=len)  # caption 1: its row's longest cell


def test_a_sketch_drawn_with_the_mouse_is_captioned(page):
    draw_a_square(page)
    caption = caption_now(page)
    assert len(caption.split()) >= 2, caption  # a caption of words appeared for the drawing
    heatmap_shown(page, "#caption-panel")
    no_error_toast(page)
    _shot(page, "sketch-captioned")


def test_a_webcam_photo_is_taken_unmirrored_and_captioned(page):
    mirrored = page.evaluate(  # the setting the browser got for the shared image's webcam
        "() => window.gradio_config.components.find(c => c.props.elem_id === 'shared-image')"
        ".props.webcam_options.mirror"
    )
    assert mirrored is False
    before = page.locator("#shared-image img").first.get_attribute("src") if _has_image(page) else None
    page.locator("#shared-image button[aria-label='Capture from camera']").first.click()
    try:
        page.get_by_text("Click to Access Webcam").click()
        page.wait_for_function(  # the stand-in camera is streaming frames
            "() => { const v = document.querySelector('#shared-image video'); return !!v && v.readyState >= 2; }",
            timeout=RUN_TIMEOUT,
        )
        page.locator("#shared-image button[aria-label='capture photo']").first.click(timeout=RUN_TIMEOUT)
        page.wait_for_function(  # the photo is shown from the server: its upload has finished
            "([b]) => { const e = document.querySelector('#shared-image img');"
            " return !!e && e.getAttribute('src') !== b && e.src.includes('file='); }",
            arg=[before],
            timeout=RUN_TIMEOUT,
        )
        assert caption_now(page)  # the photo is the shared image, and the model captions it
        no_error_toast(page)
        _shot(page, "webcam-captioned")
    finally:
        page.locator("#shared-image button[aria-label='Upload file']").first.click()  # back to uploads


def test_about_lesson_exercise_1_words_gradcam_and_rollout(page):
    open_tab(page, "About")
    lesson = page.locator("#about-lesson").inner_text()
    assert "Exercise 1" in lesson and "Exercise 3" in lesson and "pointing game" in lesson
    _shot(page, "about-lesson")
    load_example(page, 1)  # two shapes
    caption_now(page)
    heatmap_shown(page, "#caption-panel")
    panel = page.locator("#caption-panel")
    step = panel.locator(".heatmap-step input[type=number]").first
    step.fill("2")
    step.press("Enter")
    wait_for_text(page, "#caption-panel .heatmap-note", "Word 3 of")
    panel.locator(".heatmap-step").first.scroll_into_view_if_needed()
    _shot(page, "about-exercise-1")
    shown = panel.locator(".heatmap-overlay img").first
    before = shown.get_attribute("src")
    panel.locator(".heatmap-kind").get_by_label("Grad-CAM", exact=True).check()
    page.wait_for_function(
        "([s]) => { const e = document.querySelector('#caption-panel .heatmap-overlay img');"
        " return !!e && e.getAttribute('src') !== s; }",
        arg=[before],
        timeout=RUN_TIMEOUT,
    )
    _shot(page, "about-exercise-1-gradcam")
    panel.locator(".heatmap-kind").get_by_label("Rollout (vision tower)", exact=True).check()
    wait_for_text(page, "#caption-panel .heatmap-note", "Attention rollout of")
    wait_for_text(page, "#caption-panel", "vision layer 1")  # the gallery: one map per vision layer
    no_error_toast(page)
    _shot(page, "about-exercise-1-rollout")


def test_about_lesson_exercise_2_what_if_check_and_tree(page):
    load_example(page, 0)  # one shape
    original = caption_now(page)
    third = original.split()[2]  # pick the third word's row in the token table
    page.locator("#caption-token-table").get_by_text(third, exact=True).first.click()
    alternatives = page.locator("#whatif-alternatives input[type=radio]")
    alternatives.first.wait_for(timeout=RUN_TIMEOUT)
    alternatives.first.check()
    page.locator("#whatif-run").click()
    wait_for_text(page, "#whatif-summary", "token(s)")
    wait_done(page)
    assert original in page.locator("#whatif-table").inner_text()  # the original beside the what-if
    page.locator("#whatif-table").scroll_into_view_if_needed()
    _shot(page, "about-exercise-2")
    page.get_by_text("Check a caption: does the matcher agree?").click()
    page.locator("#check-text textarea").fill("a large green star at the bottom")
    before = page.locator("#check-verdict").inner_text()
    page.locator("#check-run").click()
    _text_changes(page, "#check-verdict", before)
    wait_for_text(page, "#check-verdict", "perplexity")
    wait_done(page)
    page.locator("#check-verdict").scroll_into_view_if_needed()
    _shot(page, "about-exercise-2-check")
    page.locator("#caption-panel").get_by_label("Beam search").check()
    page.get_by_text("Search tree: which paths did beam search keep, where did samples go?").click()
    page.locator("#tree-run").click()
    page.locator("#tree-image img").first.wait_for(timeout=RUN_TIMEOUT)
    wait_done(page)
    page.locator("#tree-image").scroll_into_view_if_needed()
    no_error_toast(page)
    _shot(page, "about-exercise-2-tree")


def test_about_lesson_exercise_3_draw_caption_and_ask(page):
    draw_a_square(page)
    caption = caption_now(page)
    assert caption
    open_tab(page, "Ask")
    page.locator("#ask-question textarea").fill("what colour is the shape?")
    before = page.locator("#ask-answer").inner_text()
    page.locator("#ask-run").click()
    _text_changes(page, "#ask-answer", before)
    wait_done(page)
    assert page.locator("#ask-answer").inner_text().strip()  # an answer about the drawing
    no_error_toast(page)
    page.locator("#sketchpad").scroll_into_view_if_needed()
    _shot(page, "about-exercise-3")
