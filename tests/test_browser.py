"""The real app in a real browser: Playwright drives the system Chromium against ``python app.py
--offline-demo`` started as a subprocess. Each tab: load an example, run, check what is visible, change a
control and check its effect; the shared image carries across tabs; no error toast appears. A screenshot
per tab goes to ``artifacts/screenshots/`` (kept by CI)."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from live_app import running_app

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run"]  # fmt: skip
RUN_TIMEOUT = 120_000  # ms: a run includes loading the model on first use

pytestmark = pytest.mark.browser


def _playwright():
    """Playwright's sync API, or a skip (a failure in CI, where these tests must run)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -r requirements-dev.txt)"
    else:
        if Path(CHROMIUM).exists():
            return sync_playwright
        reason = "no system Chromium (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@contextmanager
def demo_page(tmp_path_factory, flags: tuple[str, ...] = (), **context):
    """A page of a fresh offline-demo app in Chromium (extra browser ``flags``, context options)."""
    sync_playwright = _playwright()  # a failure in CI when Playwright or Chromium is missing
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app("--offline-demo", log=log) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *flags], headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 1600}, **context).new_page()
        page.goto(url)
        page.locator("#shared-image").wait_for()
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with demo_page(tmp_path_factory) as shown:
        yield shown


ERROR_TOAST = ".toast-body.error"


def no_error_toast(page) -> None:
    errors = page.locator(ERROR_TOAST)
    assert errors.count() == 0, errors.first.inner_text()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def load_example(page, index: int) -> None:
    """Click the index-th shapes example (they fill the shared image)."""
    page.locator("#examples-shapes .gallery-item").nth(index).click()
    page.locator("#shared-image img").first.wait_for()


def wait_done(page) -> None:
    """Wait until no component shows the running indicator."""
    page.wait_for_function(
        "() => !document.querySelector('.wrap.generating, .progress-text, .eta-bar')", timeout=RUN_TIMEOUT
    )


def wait_for_text(page, selector: str, text: str) -> None:
    """Wait until the element's visible text contains ``text``."""
    _wait_for_contents(page, selector, text, "e.innerText")


def wait_for_words(page, selector: str, words: str) -> None:
    """Wait until the element's words (its text with the whitespace between spans collapsed) contain
    ``words``: a ``gr.HighlightedText`` puts every word in its own span."""
    _wait_for_contents(page, selector, words, "e.textContent.replace(/\\s+/g, ' ')")


def _wait_for_contents(page, selector: str, text: str, read: str) -> None:
    """Wait until ``read`` (a JavaScript expression of the element ``e``) contains ``text``. An error
    toast ends the wait too, and then fails with its message instead of a timeout."""
    page.wait_for_function(
        "([s, t, error]) => { if (document.querySelector(error)) return true;"
        f" const e = document.querySelector(s); return !!e && {read}.includes(t); }}",
        arg=[selector, text, ERROR_TOAST],
        timeout=RUN_TIMEOUT,
    )
    no_error_toast(page)


def heatmap_shown(page, panel: str) -> None:
    """Wait until the panel's heatmap viewer shows a map (scrolled to: its image loads lazily, and the
    Caption tab's viewer sits below the fold)."""
    page.locator(f"{panel} .heatmap-overlay").first.scroll_into_view_if_needed()
    page.locator(f"{panel} .heatmap-overlay img").first.wait_for(timeout=RUN_TIMEOUT)


def test_caption_tab(page):
    load_example(page, 0)  # a small red circle in the centre
    open_tab(page, "Caption")
    page.locator("#caption-run").click()
    wait_for_text(page, "#caption-table", "a small red circle in the centre")
    wait_done(page)
    summary = page.locator("#caption-summary")
    assert "beam search · 3 beams" in summary.inner_text()
    assert "Offline demo model" in page.locator("#status").inner_text()
    assert page.locator("#caption-tokens").get_by_text("circle").count() >= 1
    caption_panel = page.locator("#caption-panel")
    heatmap_shown(page, "#caption-panel")
    # Change a control: greedy decoding, then the summary says so.
    caption_panel.get_by_label("Greedy").check()
    page.locator("#caption-run").click()
    wait_for_text(page, "#caption-summary", "greedy search")
    wait_done(page)
    heatmap_shown(page, "#caption-panel")
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "caption.png"), full_page=True)


def test_caption_what_if(page):
    """Caption, click the token "red" in the table, pick the alternative "blue", see the new caption."""
    load_example(page, 0)  # a small red circle in the centre
    open_tab(page, "Caption")
    page.locator("#caption-run").click()
    wait_for_text(page, "#caption-table", "a small red circle in the centre")
    wait_done(page)
    page.locator("#caption-token-table").get_by_text("red", exact=True).first.click()
    alternatives = page.locator("#whatif-alternatives")
    alternatives.get_by_label("blue", exact=True).check(timeout=RUN_TIMEOUT)
    page.wait_for_function(  # the picked alternative fills the word box
        "() => document.querySelector('#whatif-word textarea, #whatif-word input')?.value === 'blue'",
        timeout=RUN_TIMEOUT,
    )
    page.locator("#whatif-run").click()
    wait_for_text(page, "#whatif-table", "a small blue")
    wait_done(page)
    assert "a small red circle in the centre" in page.locator("#whatif-table").inner_text()
    assert "first 3 token(s)" in page.locator("#whatif-summary").inner_text()
    no_error_toast(page)
    page.locator("#whatif-table").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "caption-what-if.png"), full_page=True)


def test_caption_check(page):
    """After a caption, the check box holds caption 1; a student's own caption gets the matcher's verdict,
    its likelihood per token, and its heatmaps in the viewer."""
    load_example(page, 0)  # a small red circle in the centre
    open_tab(page, "Caption")
    page.locator("#caption-run").click()
    wait_for_text(page, "#caption-table", "a small red circle in the centre")
    wait_done(page)
    page.get_by_text("Check a caption: does the matcher agree?").click()
    box = page.locator("#check-text textarea, #check-text input").first
    page.wait_for_function(
        "() => document.querySelector('#check-text textarea, #check-text input')?.value"
        " === 'a small red circle in the centre'",
        timeout=RUN_TIMEOUT,
    )
    page.locator("#check-run").click()
    wait_for_text(page, "#check-verdict", "yes, it matches")
    wait_done(page)
    box.fill("a large blue star at the top")
    page.locator("#check-run").click()
    wait_for_text(page, "#check-verdict", "no, it does not match")
    wait_done(page)
    assert "perplexity" in page.locator("#check-verdict").inner_text()
    heatmap_shown(page, "#caption-panel")
    no_error_toast(page)
    page.locator("#check-verdict").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "caption-check.png"), full_page=True)


def test_caption_beam_tree(page):
    load_example(page, 0)
    open_tab(page, "Caption")
    page.locator("#caption-panel").get_by_label("Beam search").check()
    page.get_by_text("Search tree: which paths did beam search keep, where did samples go?").click()
    page.locator("#tree-run").click()
    wait_for_text(page, "#tree-note", "a small red circle in the centre")
    wait_done(page)
    page.locator("#tree-image").scroll_into_view_if_needed()
    page.locator("#tree-image img").first.wait_for(timeout=RUN_TIMEOUT)
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "caption-beam-tree.png"), full_page=True)


def test_caption_heatmap_blur(page):
    """The viewer's blur slider redraws the map (LAVIS's sigma, 0.48 patches)."""
    load_example(page, 0)
    open_tab(page, "Caption")
    page.locator("#caption-run").click()
    wait_for_text(page, "#caption-table", "a small red circle in the centre")
    wait_done(page)
    heatmap_shown(page, "#caption-panel")
    shown = page.locator("#caption-panel .heatmap-overlay img").first
    before = shown.get_attribute("src")
    blur = page.locator("#caption-panel .heatmap-blur input[type=number]").first
    blur.fill("0.48")
    blur.press("Enter")
    page.wait_for_function(
        "([s]) => { const e = document.querySelector('#caption-panel .heatmap-overlay img');"
        " return !!e && e.getAttribute('src') !== s; }",
        arg=[before],
        timeout=RUN_TIMEOUT,
    )
    no_error_toast(page)
    page.locator("#caption-panel .heatmap-overlay").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "caption-heatmap-blur.png"), full_page=True)


def test_ask_tab_reuses_the_image(page):
    open_tab(page, "Ask")
    page.locator("#ask-question textarea").fill("what colour is the circle?")
    page.locator("#ask-run").click()
    wait_for_text(page, "#ask-answer", "red")
    wait_done(page)
    # Change a control: rank candidates instead of generating.
    panel = page.locator("#ask-panel")
    panel.get_by_label("Rank my candidate answers").check()
    panel.locator("#ask-candidates textarea").fill("blue\nred\ngreen")
    page.locator("#ask-run").click()
    wait_for_text(page, "#ask-table", "green")
    wait_done(page)
    assert re.search(r"red\s+0\.9", page.locator("#ask-table").inner_text())
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "ask.png"), full_page=True)


def test_match_tab(page):
    load_example(page, 1)  # a large blue circle at the top and a small green triangle at the bottom
    open_tab(page, "Match")
    right = "a large blue circle at the top and a small green triangle at the bottom"
    page.locator("#match-texts textarea").fill(f"{right}\na small red star in the centre")
    page.locator("#match-run").click()
    wait_for_text(page, "#match-table", "a small red star in the centre")
    table = page.locator("#match-table")
    wait_done(page)
    assert right in table.inner_text()
    # Change a control: [CLS] first token shows in the raw result's summary.
    panel = page.locator("#match-panel")
    panel.get_by_label("[CLS]").check()
    page.locator("#match-run").click()
    wait_done(page)
    page.locator("#match-panel .heatmap-overlay img").first.wait_for(timeout=RUN_TIMEOUT)
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "match.png"), full_page=True)


def test_zeroshot_tab_reuses_the_image_encoding(page):
    open_tab(page, "Zero-shot")  # the picture from the Match tab, already encoded by the same model
    page.locator("#zeroshot-labels textarea").fill("circle, square, triangle, star")
    page.locator("#zeroshot-template textarea").fill("a {}")
    page.locator("#zeroshot-run").click()
    wait_for_text(page, "#zeroshot-label", "square")
    wait_done(page)
    assert top_label(page) in ("circle", "triangle")  # the two shapes in the picture
    assert "image encoding reused from the cache" in page.locator("#zeroshot-summary").inner_text()
    # Another picture and other labels change the output.
    load_example(page, 0)  # a small red circle in the centre
    page.locator("#zeroshot-labels textarea").fill("red, green, blue, yellow")
    page.locator("#zeroshot-template textarea").fill("a {} shape")
    page.locator("#zeroshot-run").click()
    wait_for_text(page, "#zeroshot-label", "yellow")
    wait_done(page)
    assert top_label(page) == "red"
    # Change the scoring control: the summary says what ran.
    page.locator("#zeroshot-panel").get_by_label("ITM (match head, every label)").check()
    page.locator("#zeroshot-run").click()
    wait_for_text(page, "#zeroshot-summary", "ITM (match head, every label)")
    assert top_label(page) == "red"
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "zeroshot.png"), full_page=True)


def top_label(page) -> str:
    return page.locator("#zeroshot-label h2, #zeroshot-label .output-class").first.inner_text().strip()


def test_search_tab(page):
    open_tab(page, "Search")
    panel = page.locator("#search-panel")
    panel.get_by_label("Shapes (what the offline demo model knows)").check()
    page.locator("#search-index").click()
    wait_for_text(page, "#search-indexed", "6 pictures indexed")
    wait_done(page)
    page.locator("#search-query textarea").fill("a red circle")
    page.locator("#search-run").click()
    wait_for_text(page, "#search-summary", "Results for")
    wait_done(page)
    first = page.locator("#search-results .thumbnail-item").first
    assert re.search(r"^1\. ITC .*_a-small-red-circle-", first.inner_text()), first.inner_text()
    # Choosing a result shows where the model looked for the query's words on it.
    first.click()
    page.wait_for_function(
        "() => document.querySelector('#search-chosen textarea')?.value.includes('red-circle')",
        timeout=RUN_TIMEOUT,
    )
    panel.locator(".heatmap-overlay img").first.wait_for(timeout=RUN_TIMEOUT)
    wait_done(page)
    assert "ITM probability" in page.locator("#search-note").inner_text()
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "search.png"), full_page=True)
    # More like this one: the other red circle comes first.
    chosen = page.locator("#search-chosen textarea").input_value()
    page.locator("#search-similar").click()
    wait_for_text(page, "#search-summary", f"pictures like {chosen}")
    wait_done(page)
    assert "_a-small-red-circle-" in page.locator("#search-results .thumbnail-item").first.inner_text()
    no_error_toast(page)


def test_batch_and_about_tabs(page):
    open_tab(page, "Batch")
    shapes = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))[:2]
    page.locator("#batch-files input[type=file]").set_input_files([str(p) for p in shapes])
    wait_for_text(page, "#batch-files", shapes[1].stem)  # uploaded (the name is shown without its suffix)
    page.locator("#batch-run").click()
    wait_for_text(page, "#batch-table", "a small red circle in the centre")
    wait_done(page)
    assert "a large blue circle at the top" in page.locator("#batch-table").inner_text()
    wait_for_text(page, "#batch-csv", "captions")  # captions.csv, ready to download
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "batch.png"), full_page=True)
    open_tab(page, "About")
    assert "Reading the heatmaps" in page.locator("#about-panel").inner_text()
    page.screenshot(path=str(SHOTS / "about.png"), full_page=True)


def test_batch_tab_with_a_zip_and_a_download(page, tmp_path):
    shapes = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))[:2]
    archive = tmp_path / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in shapes:
            zipped.write(path, f"train/{path.name}")
        zipped.writestr("train/broken.png", b"garbage")
    open_tab(page, "Batch")
    page.locator("#batch-files").get_by_label("Clear").click()  # the pictures of the test before
    page.locator("#batch-files input[type=file]").set_input_files([str(archive)])
    wait_for_text(page, "#batch-files", "dataset")
    assert (
        "dataset" in page.locator("#batch-files").inner_text()
        and "1_a" not in page.locator("#batch-files").inner_text()
    )
    panel = page.locator("#batch-panel")
    panel.get_by_label("Greedy").check()
    panel.get_by_label("ITM check: score each caption against its picture").check()
    page.locator("#batch-run").click()
    wait_for_text(page, "#batch-table", "itm_probability")
    wait_done(page)
    table = page.locator("#batch-table").inner_text()
    assert "a small red circle in the centre" in table and "not an image that can be read" in table
    warning = page.locator(".toast-body.warning").first  # the bad picture is also said out loud
    warning.wait_for(timeout=RUN_TIMEOUT)
    assert "1 of 3 pictures have no caption (train/broken.png)" in warning.inner_text()
    wait_for_text(page, "#batch-sidecars", "captions-txt")
    with page.expect_download() as download:
        page.locator("#batch-sidecars a").first.click()
    saved = tmp_path / "sidecars.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as zipped:
        assert sorted(zipped.namelist()) == [f"train/{p.stem}.txt" for p in shapes]
        assert zipped.read(f"train/{shapes[0].stem}.txt").decode() == "a small red circle in the centre\n"
    no_error_toast(page)
    page.screenshot(path=str(SHOTS / "batch_zip.png"), full_page=True)
