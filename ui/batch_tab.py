"""Batch tab: caption many pictures (image files or ZIP archives of them) with every decoding control,
several pictures per model pass; a table, optionally with the matcher's verdict on each caption,
downloadable as CSV, JSONL and a ZIP of ``.txt`` sidecars (one ``name.txt`` per picture, the layout
image-model trainers read). A picture that cannot be read or captioned gets its reason in its row."""

from __future__ import annotations

import csv
import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr

from . import collection, controls
from .decoding import DEFAULTS, DecodingControls, decoding_options
from .errors import friendly, user_message
from .services import Services

MAX_IMAGES = collection.MAX_PICTURES
BATCH, MAX_BATCH = 8, 64  # pictures per model pass: default, and the engine's most
COLUMNS = ["file", "caption", "score", "seconds", "error"]
MORE = "more_captions"  # with more than one caption per picture: the others, best first
CHECK = ["itm_probability", "itc_cosine"]  # with the ITM check: the best caption against its picture


@dataclass
class Captioned:
    """A batch's outcome: the table (``columns``, ``rows``), a record per picture, the downloads."""

    columns: list[str]
    rows: list[list[Any]]
    records: list[dict[str, Any]]  # one JSONL line each
    files: list[str]  # captions.csv, captions.jsonl, captions-txt.zip


def columns(count: int, check: bool) -> list[str]:
    """The table's columns: the plain ones, with the other captions and the ITM check when asked for."""
    extra = ([MORE] if count > 1 else []) + (CHECK if check else [])
    return [*COLUMNS[:3], *extra, *COLUMNS[3:]]


def _record(name: str, result: Any) -> dict[str, Any]:
    """A picture's record from its caption result, or from the error it met."""
    if isinstance(result, Exception):
        return {"file": name, "caption": "", "score": None, "seconds": None, "error": user_message(result)}
    best = result.captions[0]
    record = {"file": name, "caption": best.text, "score": round(best.score, 4)}
    if len(result.captions) > 1:
        record["captions"] = [{"text": c.text, "score": round(c.score, 4)} for c in result.captions]
    return record | {"seconds": round(result.timings["total"], 3), "error": ""}


def _row(record: dict[str, Any], names: list[str]) -> list[Any]:
    row = []
    for column in names:
        if column == MORE:
            more = record.get("captions", [])[1:]
            row.append(" | ".join(f"{c['text']} ({c['score']})" for c in more))
        else:
            row.append(record.get(column))
    return row


def _sidecar_names(records: list[dict[str, Any]]) -> dict[str, str]:
    """Picture name -> its sidecar's name: ``cat.jpg`` -> ``cat.txt`` beside it (folders kept). When two
    pictures share a stem (``cat.jpg``, ``cat.png``) the later ones keep their suffix: ``cat.png.txt``."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for record in records:
        if record["score"] is None:  # not captioned (a failed ITM check alone still gets its sidecar)
            continue
        path = PurePosixPath(record["file"])
        name = str(path.with_suffix(".txt")) if path.suffix else f"{path}.txt"
        if name in taken:
            name = f"{path}.txt"
        taken.add(name)
        names[record["file"]] = name
    return names


def write_downloads(records: list[dict[str, Any]], names: list[str], rows: list[list[Any]]) -> list[str]:
    """captions.csv (the table), captions.jsonl (a record per picture) and captions-txt.zip (sidecars)."""
    out = Path(tempfile.mkdtemp(prefix="blip-batch-"))
    with (out / "captions.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        writer.writerows(rows)
    with (out / "captions.jsonl").open("w", encoding="utf-8") as file:
        file.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    by_name = {record["file"]: record for record in records}
    with zipfile.ZipFile(out / "captions-txt.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for picture, sidecar in _sidecar_names(records).items():
            archive.writestr(sidecar, by_name[picture]["caption"] + "\n")
    return [str(out / "captions.csv"), str(out / "captions.jsonl"), str(out / "captions-txt.zip")]


def _check(services: Services, image: Any, caption: str, model: str) -> dict[str, Any]:
    """The matcher's verdict on a caption: ITM probability and ITC cosine with its picture."""
    try:
        row = services.engine.match(image, [caption], model=model).rows[0]
    except (ValueError, OSError) as err:
        return {"error": f"ITM check: {user_message(err)}"}
    return {"itm_probability": round(row.itm_probability, 4), "itc_cosine": round(row.itc_cosine, 4)}


def batch_caption(
    services: Services,
    paths: list[str] | None,
    model: str,
    prompt: str = "",
    decoding: list[Any] | None = None,
    batch_size: int = BATCH,
    check_model: str | None = None,
    progress: Callable[..., Any] | None = None,
) -> Captioned:
    """Caption every picture in ``paths`` (image files and ZIP archives), ``batch_size`` per model pass.

    Args:
        decoding: the decoding controls' values, in ``DecodingControls.inputs`` order (default: theirs).
        check_model: a retrieval model to score each best caption with (ITM and ITC); None: no check.
    """
    if not paths:  # before loading a model
        raise ValueError(collection.NO_PICTURES)
    options = decoding_options(*(decoding or DEFAULTS.values()))
    batch_size = int(batch_size)
    if progress:
        progress(0.0, desc=f"Loading {model} (downloaded on first use)")
    # The engine checks the options, prompt, batch size and model when the batch is set up: with no
    # pictures, so that a bad parameter refuses the request instead of filling every row with it.
    services.engine.caption_batch(
        [], model=model, prompt=prompt or "", options=options, batch_size=batch_size
    )
    if check_model:
        try:  # an empty index costs nothing and checks that the model can match (is a retrieval model)
            services.engine.index_images([], model=check_model)
        except ValueError as err:
            raise ValueError(f"the ITM check needs a retrieval model: {err}") from None
    folder = collection.work_folder("batch-")
    try:
        pictures = collection.gather(paths, folder).pictures
        records: list[dict[str, Any]] = [{}] * len(pictures)
        pending: list[tuple[int, Any]] = []  # (position, opened picture), captioned batch_size at a time

        def flush() -> None:
            images = [image for _, image in pending]
            try:
                results = list(services.engine.caption_batch(
                    images, model=model, prompt=prompt or "", options=options, batch_size=len(images)
                ))  # fmt: skip
            except (ValueError, RuntimeError, OSError):
                # One picture (or memory) spoiled the batch: one by one, only that picture's row says so.
                results = []
                for image in images:
                    try:
                        results.append(services.engine.caption(image, model=model, prompt=prompt or "",
                                                               options=options))  # fmt: skip
                    except (ValueError, RuntimeError, OSError) as err:
                        results.append(err)
            for (position, image), result in zip(pending, results, strict=True):
                record = _record(pictures[position].name, result)
                if check_model and not record["error"]:
                    record |= _check(services, image, record["caption"], check_model)
                records[position] = record
            pending.clear()
            if progress:
                done = sum(1 for r in records if r)
                progress(done / len(pictures), desc=f"Captioned {done} of {len(pictures)} pictures")

        for position, picture in enumerate(pictures):
            try:
                if picture.error:
                    raise ValueError(picture.error)
                pending.append((position, services.open_image(picture.path)))
            except (ValueError, OSError) as err:
                records[position] = _record(picture.name, err)
                continue
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
    finally:
        collection.remove(str(folder))  # unpacked archives: the captions are all that is kept
    names = columns(int(options["num_sequences"]), bool(check_model))
    rows = [_row(record, names) for record in records]
    return Captioned(names, rows, records, write_downloads(records, names, rows))


def build(services: Services, after: Callable[[Any], Any]) -> None:
    """The tab's layout and events: the same decoding controls as the Caption tab (built by the same
    class), the batch size and the optional ITM check."""
    models = services.models["caption"]
    files = gr.File(
        label=f"Pictures: image files or ZIP archives of them (up to {MAX_IMAGES} pictures)",
        file_count="multiple", file_types=["image", ".zip"], elem_id="batch-files",
    )  # fmt: skip
    with gr.Row():
        model = controls.dropdown(models, value=models[0], label="Model")
        batch_size = controls.slider(
            1, MAX_BATCH, value=BATCH, step=1, label="Batch size (pictures per pass)"
        )
    prompt = gr.Textbox(
        value="", label="Prompt prefix (optional: every caption continues it)", placeholder="a picture of"
    )
    decoding = DecodingControls("captions")
    with gr.Row():
        check = gr.Checkbox(value=False, label="ITM check: score each caption against its picture")
        retrieval = services.models["retrieval"]
        check_model = controls.dropdown(retrieval, value=retrieval[0], label="Retrieval model (ITM check)")
    run = gr.Button("Caption all", variant="primary", elem_id="batch-run")
    table = gr.Dataframe(
        headers=COLUMNS, interactive=False, wrap=True, column_widths=["24%", "30%"], label="Captions",
        elem_id="batch-table",
    )  # fmt: skip
    with gr.Row():
        csv_file = gr.File(label="CSV", interactive=False, elem_id="batch-csv")
        jsonl_file = gr.File(label="JSONL", interactive=False, elem_id="batch-jsonl")
        sidecars = gr.File(label="ZIP of .txt sidecars", interactive=False, elem_id="batch-sidecars")

    @friendly
    def handler(
        files, model, prompt, decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
        repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed, batch_size, itm_check,
        itm_model, progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        done = batch_caption(services, files, model, prompt, values, batch_size,
                             itm_model if itm_check else None, progress)  # fmt: skip
        failed = [record["file"] for record in done.records if record["score"] is None]
        if failed:  # their rows say why; the toast makes sure a long table's last column is not missed
            shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
            gr.Warning(
                f"{len(failed)} of {len(done.records)} pictures have no caption ({shown}): see the error column"
            )
        return {"headers": done.columns, "data": done.rows}, *done.files

    event = run.click(
        services.gpu(handler),
        inputs=[files, model, prompt, *decoding.inputs, batch_size, check, check_model],
        outputs=[table, csv_file, jsonl_file, sidecars],
        api_name="batch_caption",
        concurrency_id="caption",
        concurrency_limit=1,
    )
    after(event)
