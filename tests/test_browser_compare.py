"""The Compare tab and the Ask tab's what-if in a real browser (Chromium driven by Playwright against
``python app.py --offline-demo``), with a screenshot of each under ``artifacts/screenshots/``."""

from __future__ import annotations

import pytest
from test_browser import (
    RUN_TIMEOUT,
    SHOTS,
    demo_page,
    load_example,
    no_error_toast,
    open_tab,
    wait_done,
    wait_for_text,
    wait_for_words,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with demo_page(tmp_path_factory) as shown:
        yield shown


def set_number(box, value: str) -> None:
    """Type ``value`` into a number box until it stays: a box in an accordion that has just opened can be
    re-rendered with its old value after the first keystrokes (seen in CI: min new tokens stayed 5)."""
    for _ in range(10):
        box.fill(value)
        box.press("Tab")
        box.page.wait_for_timeout(300)
        if box.input_value() == value:
            return
    raise AssertionError(f"the number box kept {box.input_value()!r} instead of {value!r}")


def test_compare_two_decodings_side_by_side(page):
    """Greedy stopped after 4 tokens on the left, beam search on the right: both captions shown, the
    right one's extra words highlighted, the scores side by side."""
    load_example(page, 1)  # a large blue circle at the top and a small green triangle at the bottom
    open_tab(page, "Compare")
    left = page.locator("#compare-left")
    right = page.locator("#compare-right")
    right.get_by_label("Beam search").check()
    left.get_by_text("Advanced decoding").click()
    for name, value in (("Min new tokens", "1"), ("Max new tokens", "4")):
        set_number(left.locator(f"input[type=number][aria-label*='{name}']").first, value)
    wait_done(page)  # the example and the settings have reached the server before the run starts
    page.locator("#compare-run").click()
    wait_for_words(page, "#compare-right-text", "triangle at the bottom")
    wait_done(page)
    assert page.locator("#compare-left-text .token").all_inner_texts()[0::2] == [
        "a",
        "large",
        "blue",
        "circle",
    ]
    # The words only the right side has are highlighted; the left side has none.
    marked = page.locator("#compare-right-text .token.highlighted").all_inner_texts()
    assert marked[:3] == ["at", "the", "top"] and "triangle" in marked
    assert page.locator("#compare-left-text .token.highlighted").count() == 0
    summary = page.locator("#compare-summary").inner_text()
    assert "greedy search" in summary and "beam search" in summary
    assert "caption 1 tokens" in page.locator("#compare-scores").inner_text()
    no_error_toast(page)
    page.locator("#compare-right-text").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_compare_says_when_both_models_are_the_demo(page):
    load_example(page, 1)
    open_tab(page, "Compare")
    page.locator("#compare-preset input").click()
    page.get_by_role("option", name="ITM coco vs flickr").click()
    page.wait_for_function(
        "() => (document.querySelector('#compare-text textarea')?.value || '').includes('a red star')",
        timeout=RUN_TIMEOUT,
    )
    page.locator("#compare-run").click()
    wait_for_text(page, "#compare-summary", "Same weights on both sides")
    wait_done(page)
    wait_for_words(page, "#compare-left-text", ": match (")
    no_error_toast(page)


def test_ask_what_if(page):
    """Ask, click the answer's token "red" in the table, pick the alternative "blue", see the new answer."""
    load_example(page, 0)  # a small red circle in the centre
    open_tab(page, "Ask")
    page.locator("#ask-question textarea, #ask-question input").first.fill("what colour is the circle?")
    page.locator("#ask-run").click()
    wait_for_text(page, "#ask-answer", "red")
    wait_done(page)
    table = page.locator("#ask-token-table")
    table.get_by_text("red", exact=True).first.click(timeout=RUN_TIMEOUT)
    page.locator("#ask-whatif-alternatives").get_by_label("blue", exact=True).check(timeout=RUN_TIMEOUT)
    page.wait_for_function(
        "() => document.querySelector('#ask-whatif-word textarea, #ask-whatif-word input')?.value === 'blue'",
        timeout=RUN_TIMEOUT,
    )
    page.locator("#ask-whatif-run").click()
    wait_for_text(page, "#ask-whatif-table", "what if token 1 were 'blue'")
    wait_done(page)
    assert "blue" in page.locator("#ask-whatif-tokens").inner_text()
    assert "first 1 token(s)" in page.locator("#ask-whatif-summary").inner_text()
    no_error_toast(page)
    page.locator("#ask-whatif-table").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "ask-what-if.png"), full_page=True)
