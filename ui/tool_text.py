"""The tools' answers as plain text: the answer first, then notes, what ran and the time; the raw JSON
and the heatmaps (where each word looked, and its map on a coarse grid of digits) only when asked for.
Each function runs its tab's own handler, so a tool and the page give the same result."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gradio import processing_utils

from . import (
    ask_tab,
    batch_tab,
    caption_tab,
    collection,
    controls,
    formatting,
    match_tab,
    search_tab,
    zeroshot_tab,
)
from .decoding import DEFAULTS
from .errors import user_message
from .services import Services

MAX_URLS = 64  # pictures fetched for one tool call
MAX_EXPLAINED_TEXTS = 8  # heatmaps of at most this many texts per answer (classify: the best labels)
GRID_CELLS = 6  # the coarse grid a word's map is written on
REGIONS = (("top-left", "top", "top-right"), ("left", "centre", "right"),
           ("bottom-left", "bottom", "bottom-right"))  # fmt: skip
KIND_NAMES = {"gradcam": "Grad-CAM", "attention": "attention"}
HEATMAPS_LEGEND = (
    f"Where the model looked, per word (mean of all layers and heads): the ninth of the picture holding "
    f"most of the word's map and its share of it, then the map averaged onto a {GRID_CELLS}x{GRID_CELLS} "
    f"grid, rows top to bottom, each cell 0-9 relative to the strongest. Grad-CAM weighs attention by how "
    f"much the result depended on it; attention is what the word read."
)


def where_it_looked(heat: np.ndarray, cells: int = GRID_CELLS) -> str:
    """A map as text: the ninth of the picture holding most of it, its share, and the map averaged onto
    a ``cells`` x ``cells`` grid with each cell 0-9 relative to the strongest ("centre 41% · 000/.../000").
    """
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0.0, None)  # attention and Grad-CAM are >= 0
    total = heat.sum()
    if total <= 0:
        return "nowhere in particular (an empty map)"
    ninths = np.array([[part.sum() for part in np.array_split(band, 3, axis=1)]
                       for band in np.array_split(heat, 3, axis=0)])  # fmt: skip
    row, col = np.unravel_index(int(np.argmax(ninths)), ninths.shape)
    n = min(cells, *heat.shape)
    coarse = np.array([[part.mean() for part in np.array_split(band, n, axis=1)]
                       for band in np.array_split(heat, n, axis=0)])  # fmt: skip
    digits = np.round(9 * coarse / coarse.max()).astype(int)
    grid = "/".join("".join(str(d) for d in line) for line in digits)
    return f"{REGIONS[row][col]} {ninths[row, col] / total:.0%} · {grid}"


def heatmaps_text(state: dict[str, Any] | None) -> str:
    """The heatmaps a tab's function explained (its viewer state), one line per word."""
    if not state:
        return "Heatmaps: none (no text with words to explain)."
    texts = state["texts"]
    lines = [HEATMAPS_LEGEND]
    for label, maps in texts[:MAX_EXPLAINED_TEXTS]:
        kind = "gradcam" if "gradcam" in maps.kinds() else "attention"
        lines.append(f"{label} ({KIND_NAMES[kind]}):")
        lines += [
            f"  {word.text}: {where_it_looked(maps.grid_map(word=i, kind=kind))}"
            for i, word in enumerate(maps.words)
        ]
    if len(texts) > MAX_EXPLAINED_TEXTS:
        lines.append(f"(heatmaps of the first {MAX_EXPLAINED_TEXTS} of {len(texts)} texts only)")
    return "\n".join(lines)


def details(raw: dict[str, Any], what_ran: str) -> str:
    """The lines after the answer: notices (the offline demo model first), then what ran and its time."""
    lines = [f"Note: {notice}" for notice in raw.get("notices", [])]
    seconds = formatting.seconds(raw.get("timings", {}).get("total", 0.0))
    lines.append(" · ".join(part for part in (f"model {raw['model']}", what_ran, seconds) if part))
    return "\n".join(lines)


def assemble(
    answer: str,
    about: str,
    raw: Any,
    state: dict[str, Any] | None,
    include_heatmaps: bool,
    include_json: bool,
) -> str:
    """The answer first, then the details, then the heavy parts that were asked for."""
    parts = [answer, about]
    if include_heatmaps:
        parts.append(heatmaps_text(state))
    if include_json:
        parts.append("Raw result (JSON):\n" + json.dumps(raw, ensure_ascii=False))
    return "\n\n".join(part for part in parts if part)


def numbered(items: list[tuple[str, str]]) -> str:
    """One item as itself; several as a numbered list with a note each ("1. text (score -0.41)")."""
    if len(items) == 1:
        return items[0][0]
    return "\n".join(f"{i + 1}. {text} ({note})" for i, (text, note) in enumerate(items))


def caption_text(
    services: Services,
    image_path: str | None,
    model: str,
    prompt: str,
    decoding: list[Any],
    include_heatmaps: bool = False,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Caption the image (:func:`ui.caption_tab.caption`) and write the result as text."""
    rows, _tokens, _token_rows, _summary, state, raw = caption_tab.caption(
        services, image_path, model, prompt, decoding, include_heatmaps, progress
    )
    items = [(text + ("" if done == "yes" else " [cut at the token limit]"), f"score {score}")
             for _, text, score, done in rows]  # fmt: skip
    about = details(raw, formatting.decoding_text(raw["decoding"]))
    return assemble(numbered(items), about, raw, state, include_heatmaps, include_json)


def ask_text(
    services: Services,
    image_path: str | None,
    model: str,
    question: str,
    candidates: str,
    first_token: str,
    decoding: list[Any],
    include_heatmaps: bool = False,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Answer the question (:func:`ui.ask_tab.ask`): generated, or the candidates (one per line) ranked."""
    mode = ask_tab.RANK if (candidates or "").strip() else ask_tab.GENERATE
    _answer, rows, _tokens, _summary, state, raw = ask_tab.ask(
        services, image_path, model, question, mode, candidates, first_token, decoding, include_heatmaps,
        progress,
    )  # fmt: skip
    if mode == ask_tab.RANK:
        answer = "\n".join(f"{text}: {probability}" for text, probability, _ in rows)
        what_ran = f"{len(rows)} candidates ranked by likelihood"
    else:
        answer = numbered([(text or "(empty answer)", f"score {score}") for text, _, score in rows])
        what_ran = formatting.decoding_text(raw["decoding"])
    about = details(raw, f"{what_ran} · question read from {raw['first_token']}")
    return assemble(answer, about, raw, state, include_heatmaps, include_json)


def match_text(
    services: Services,
    image_path: str | None,
    model: str,
    texts: str,
    first_token: str,
    include_heatmaps: bool = False,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Score each line of ``texts`` against the image (:func:`ui.match_tab.match`)."""
    rows, _summary, state, raw = match_tab.match(
        services, image_path, model, texts, first_token, include_heatmaps, progress
    )
    answer = "\n".join(f"{text}: ITM {itm}, ITC {itc}" for text, itm, itc in rows)
    about = details(raw, f"texts read from {raw['first_token']}")
    return assemble(answer, about, raw, state, include_heatmaps, include_json)


def classify_text(
    services: Services,
    image_path: str | None,
    model: str,
    labels: str,
    template: str,
    scoring: str,
    temperature: float,
    include_heatmaps: bool = False,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Classify the image among the labels (:func:`ui.zeroshot_tab.classify`), best first."""
    _probabilities, rows, _summary, state, raw = zeroshot_tab.classify(
        services, image_path, model, labels, template, scoring, temperature, include_heatmaps, progress
    )
    answer = "\n".join(f"{label}: {probability}" for label, probability, *_ in rows)
    what_ran = f"scoring {scoring}" + (
        "" if raw["scoring"] == "itm" else f", temperature {raw['temperature']:g}"
    )
    about = details(raw, f"{what_ran} · prompts like '{raw['template'].replace('{}', rows[0][0])}'")
    return assemble(answer, about, raw, state, include_heatmaps, include_json)


def image_urls(text: str) -> list[str]:
    """The image URLs in ``text``, one per line (at most ``MAX_URLS``)."""
    urls = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not urls:
        raise ValueError("give the images' URLs, one per line")
    if len(urls) > MAX_URLS:
        raise ValueError(f"at most {MAX_URLS} images at once (got {len(urls)})")
    return urls


def fetch_images(urls: list[str], folder: Path) -> list[str | Exception]:
    """Each image URL saved under ``folder``: its path, or why it could not be fetched.

    http(s) URLs go through Gradio's SSRF-protected download (addresses on this machine or a private
    network are refused), as an uploaded image URL does; data URLs are decoded."""
    fetched: list[str | Exception] = []
    for n, url in enumerate(urls):
        target = folder / str(n)  # one folder per image: two URLs may end in the same file name
        try:
            if url.startswith("data:"):
                fetched.append(processing_utils.save_base64_to_cache(url, str(target)))
            elif url.startswith(("http://", "https://")):
                fetched.append(processing_utils.ssrf_protected_download(url, str(target)))
            else:
                fetched.append(ValueError("not an http(s) or data: URL"))
            if isinstance(fetched[-1], str) and collection.is_archive(fetched[-1]):
                fetched[-1] = ValueError("a ZIP archive: give the URLs of the pictures in it")
        except Exception as err:  # refused, unreachable, not found, not base64: that image's row says so
            fetched.append(ValueError(controls.fetch_failure(url, err)))
    return fetched


def batch_caption_text(
    services: Services,
    images: str,
    model: str,
    decoding: str,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Caption each image URL (one per line) with :func:`ui.batch_tab.batch_caption`, one line each."""
    urls = image_urls(images)
    with tempfile.TemporaryDirectory(prefix="blip-batch-tool-") as folder:
        fetched = fetch_images(urls, Path(folder))
        paths = [f for f in fetched if isinstance(f, str)]
        records: list[dict[str, Any]] = []
        if paths:
            values = list((DEFAULTS | {"decoding": decoding}).values())
            done = batch_tab.batch_caption(services, paths, model, "", values, progress=progress)
            records = done.records
            shutil.rmtree(Path(done.files[0]).parent)  # the tab's downloads; a tool answers in text
    captioned = iter(records)
    rows = [
        next(captioned) if isinstance(f, str) else {"caption": "", "score": None, "seconds": None,
                                                    "error": user_message(f)}
        for f in fetched
    ]  # fmt: skip
    lines = [f"could not be read: {r['error']}" if r["error"] else r["caption"] for r in rows]
    answer = "\n".join(f"{n + 1}. {line}" for n, line in enumerate(lines))
    demo = any(m["name"] == model and m["offline_demo"] for m in services.engine.model_status())
    table = [{"image": n + 1, **{k: r[k] for k in ("caption", "score", "seconds", "error")}}
             for n, r in enumerate(rows)]  # fmt: skip
    raw = {"model": model, "offline_demo": demo, "decoding": decoding, "rows": table}
    notes = (
        ["Note: the offline demo model (a tiny BLIP trained on coloured shapes) answered."] if demo else []
    )
    about = "\n".join([*notes, f"model {model} · {decoding}"])
    return assemble(answer, about, raw, None, False, include_json)


def _url_name(url: str, n: int) -> str:
    """How a picture given by URL is named in a ranking: its file name and its place in the list."""
    segment = urllib.parse.urlparse(url).path.rsplit("/", 1)[-1] if url.startswith("http") else ""
    segment = urllib.parse.unquote(segment)[:80]
    return f"{segment} (picture {n + 1})" if segment else f"picture {n + 1}"


def search_text(
    services: Services,
    query: str,
    images: str,
    model: str,
    top: int,
    rerank: int,
    first_token: str,
    include_json: bool = False,
    progress: Callable[..., Any] | None = None,
) -> str:
    """Index the pictures at ``images`` (URLs, one per line; none: the bundled examples) and rank them for
    ``query`` (:func:`ui.search_tab.find`): one 'rank. name: scores' line per hit, best first."""
    with tempfile.TemporaryDirectory(prefix="blip-search-tool-") as folder:
        if (images or "").strip():
            urls = image_urls(images)
            pictures = [
                collection.Picture(_url_name(url, n), f) if isinstance(f, str)
                else collection.Picture(_url_name(url, n), error=user_message(f))
                for n, (url, f) in enumerate(zip(urls, fetch_images(urls, Path(folder)), strict=True))
            ]  # fmt: skip
            source = f"{len(urls)} pictures given"
        else:
            examples = [path for _, paths in services.examples.values() for path in paths]
            pictures = collection.gather([], Path(folder), examples).pictures
            source = "the bundled examples"
        found = search_tab.index_collection(services, pictures, model, None, progress)
        result = search_tab.find(services, found, query, top, rerank, first_token)
    lines = []
    for rank, hit in enumerate(result.hits, 1):
        itm = "" if hit.itm_probability is None else f", ITM {hit.itm_probability:.4f}"
        lines.append(f"{rank}. {hit.path}: ITC {hit.itc_cosine:.4f}{itm}")
    unread = [f"Could not read {name}: {why}" for name, why in found.unreadable]
    ran = f"ITC over {result.indexed} pictures ({source})"
    if result.reranked:
        ran += f", the best {result.reranked} re-ranked by ITM (query read from {first_token})"
    raw = search_tab.raw_result(result) | {
        "unreadable": [{"picture": n, "error": e} for n, e in found.unreadable]
    }
    about = "\n".join([*unread, details(raw, ran)])
    return assemble("\n".join(lines), about, raw, None, False, include_json)
