"""Batch tab: caption many images at once; a table, downloadable as CSV."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from . import controls
from .decoding import BEAM, DEFAULTS, GREEDY, decoding_options
from .errors import friendly, user_message
from .services import Services

MAX_IMAGES = 64
COLUMNS = ["file", "caption", "score", "seconds", "error"]


def batch_caption(
    services: Services,
    paths: list[str] | None,
    model: str,
    decoding: str,
    progress: Callable[..., Any] | None = None,
) -> tuple[list[list[Any]], str]:
    """Caption each image; an unreadable image gets its error in its row, the rest go on.

    Returns:
        (table rows, path of the CSV file with the same rows)
    """
    if not paths:
        raise ValueError("add some images first")
    if len(paths) > MAX_IMAGES:
        raise ValueError(f"at most {MAX_IMAGES} images at once (got {len(paths)})")
    if decoding not in (GREEDY, BEAM):
        raise ValueError(f"decoding must be {GREEDY} or {BEAM}")
    options = decoding_options(**(DEFAULTS | {"decoding": decoding}))
    if progress:
        progress(0.0, desc=f"Loading {model} (downloaded on first use)")
    services.engine.model(model)
    rows = []
    for n, path in enumerate(paths):
        if progress:
            progress(n / len(paths), desc=f"Captioning image {n + 1} of {len(paths)}")
        name = Path(path).name
        try:
            result = services.engine.caption(services.open_image(path), model=model, options=options)
        except (ValueError, OSError) as err:
            rows.append([name, "", None, None, user_message(err)])
            continue
        best = result.captions[0]
        rows.append([name, best.text, round(best.score, 4), round(result.timings["total"], 3), ""])
    out = Path(tempfile.mkdtemp(prefix="blip-batch-")) / "captions.csv"
    with out.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return rows, str(out)


def build(services: Services, after: Callable[[Any], Any]) -> None:
    models = services.models["caption"]
    files = gr.File(
        label=f"Images (up to {MAX_IMAGES})",
        file_count="multiple",
        file_types=["image"],
        elem_id="batch-files",
    )
    with gr.Row():
        model = controls.dropdown(models, value=models[0], label="Model")
        decoding = controls.radio([GREEDY, BEAM], value=BEAM, label="Decoding")
    run = gr.Button("Caption all", variant="primary", elem_id="batch-run")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Captions", elem_id="batch-table")
    download = gr.File(label="Download as CSV", interactive=False, elem_id="batch-csv")

    @friendly
    def handler(files, model, decoding, progress=gr.Progress()):
        return batch_caption(services, files, model, decoding, progress)

    event = run.click(
        services.gpu(handler),
        inputs=[files, model, decoding],
        outputs=[table, download],
        api_name="batch_caption",
        concurrency_id="caption",
        concurrency_limit=1,
    )
    after(event)
