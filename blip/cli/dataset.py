"""Captioning a dataset: folders in, one caption per picture out, as JSONL, CSV or a ``.txt`` file beside
each picture (the convention of image-model training tools).

Batched (``--batch-size`` pictures per vision pass and decoding loop), with a progress bar in
images/s. Resumable: rows are written and flushed batch by batch, and a run started again skips every
picture its output already has (a line cut short by a kill is dropped first); sidecars are written
whole or not at all. A picture that cannot be read is reported (its row says why, and stderr) and
skipped; the run goes on. ``--check`` adds each caption's ITM probability and ITC cosine under a
retrieval model, BLIP's own caption-filter idea (CapFilt).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from ..engine import Engine
from ..generation.options import DecodingOptions
from .collections import progress_bar, readable_images
from .files import find_images
from .options import UsageError, make_engine

T = TypeVar("T")
COLUMNS = ["path", "caption", "score", "error"]
CHECK_COLUMNS = ["itm_probability", "itc_cosine"]


def dataset_mode(args: argparse.Namespace) -> bool:
    """Whether ``caption`` runs over a dataset: an output was named, or a folder or glob given."""
    return bool(args.out or args.sidecar) or any(
        Path(p).is_dir() or any(c in p for c in "*?[") for p in args.images
    )


class RowsFile:
    """A JSONL or CSV file of rows, appended batch by batch; what it already holds is skipped."""

    def __init__(self, path: Path, columns: list[str], overwrite: bool):
        self.path, self.columns = path, columns
        self.csv = path.suffix.lower() == ".csv"
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise UsageError(f"{path}: --out must end in .jsonl, .csv or .parquet (or use --sidecar .txt)")
        if overwrite and path.exists():
            path.unlink()
        self.done = self._read_back()
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", encoding="utf-8", newline="")
        if self.csv and fresh:
            self._file.write(self._csv_line(columns))

    def _read_back(self) -> set[str]:
        """Paths already written; a last line without its newline (a kill mid-write) is cut off."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with self.path.open("r+b") as file:
                file.truncate(len(whole))
        text = whole.decode("utf-8")
        if self.csv:
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and rows[0].keys() != set(self.columns) and list(rows[0]) != self.columns:
                raise UsageError(
                    f"{self.path} has other columns than this run writes; use --overwrite or another file"
                )
            return {row["path"] for row in rows}
        return {json.loads(line)["path"] for line in text.splitlines() if line.strip()}

    def _csv_line(self, values: list[Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(values)
        return buffer.getvalue()

    def has(self, path: Path) -> bool:
        return str(path) in self.done

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if self.csv:
                self._file.write(self._csv_line([row.get(c, "") for c in self.columns]))
            else:
                self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class ParquetRows:
    """A Parquet file of rows (through pyarrow). Parquet cannot be appended to, so rows are kept and
    the file rewritten whole after every batch (a kill loses at most that batch, as with JSONL)."""

    def __init__(self, path: Path, columns: list[str], overwrite: bool):
        try:
            import pyarrow
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError("Parquet needs pyarrow (pip install pyarrow); or write .jsonl or .csv") from None
        self.path, self.columns, self._pa, self._pq = path, columns, pyarrow, pq
        self.rows: list[dict[str, Any]] = []
        if path.exists() and not overwrite:
            self.rows = pq.read_table(path).to_pylist()
        self.done = {row["path"] for row in self.rows}

    def has(self, path: Path) -> bool:
        return str(path) in self.done

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.rows += rows
        columns = {c: [_cell(row.get(c)) if c in ("score", *CHECK_COLUMNS) else row.get(c, "") for row in self.rows]
                   for c in self.columns}  # fmt: skip
        partial = self.path.with_name(self.path.name + ".partial")
        self._pq.write_table(self._pa.table(columns), partial)
        partial.replace(self.path)

    def close(self) -> None:
        pass


def _cell(value: Any) -> float | None:
    """A number column's value: the number, or None where a row has none (an unreadable picture)."""
    return None if value in ("", None) else float(value)


class Sidecars:
    """One text file beside each picture (``photo.jpg`` -> ``photo.txt``), written whole or not at all."""

    def __init__(self, suffix: str, overwrite: bool):
        if not suffix.startswith(".") or len(suffix) < 2 or "/" in suffix:
            raise UsageError(f"--sidecar takes a suffix such as .txt (got {suffix!r})")
        self.suffix, self.overwrite = suffix, overwrite

    def has(self, path: Path) -> bool:
        return not self.overwrite and path.with_suffix(self.suffix).exists()

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("error"):
                continue  # reported on stderr; no file for a picture that has no caption
            target = Path(row["path"]).with_suffix(self.suffix)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(row["caption"] + "\n", encoding="utf-8")
            partial.replace(target)  # atomic: a kill never leaves half a caption

    def close(self) -> None:
        pass


def open_output(args: argparse.Namespace, columns: list[str]) -> RowsFile | ParquetRows | Sidecars:
    """Where this run's captions go, knowing what an earlier run already wrote there."""
    if not args.out:
        return Sidecars(args.sidecar, args.overwrite)
    if Path(args.out).suffix.lower() == ".parquet":
        return ParquetRows(Path(args.out), columns, args.overwrite)
    return RowsFile(Path(args.out), columns, args.overwrite)


def caption_dataset(args: argparse.Namespace, options: DecodingOptions) -> int:
    """Caption every picture ``args.images`` names into ``--out`` rows or ``--sidecar`` files."""
    if args.heatmaps:
        raise UsageError("--heatmaps is for single images, not datasets")
    if not args.out and not args.sidecar:
        raise UsageError("name where the captions go: --out captions.jsonl|.csv, or --sidecar .txt")
    if not 1 <= args.batch_size <= 64:
        raise UsageError(f"--batch-size must be between 1 and 64 (got {args.batch_size})")
    columns = COLUMNS[:3] + (CHECK_COLUMNS if args.check else []) + COLUMNS[3:]
    output = (
        RowsFile(Path(args.out), columns, args.overwrite)
        if args.out
        else Sidecars(args.sidecar, args.overwrite)
    )
    paths = find_images(args.images, args.recursive)
    todo = [p for p in paths if not output.has(p)]
    engine, model = make_engine(args, also=args.check_model if args.check else None)
    start, failed, done, reported = time.perf_counter(), [], 0, 0
    with progress_bar(len(todo)) as bar:
        for batch in _batches(readable_images(todo, failed), args.batch_size):
            rows = caption_rows(
                engine, model, batch, args.prompt, options, args.check_model if args.check else None
            )
            rows += _error_rows(failed[reported:])
            output.write(rows)
            done += len(batch)
            bar.update(len(batch) + len(failed) - reported)
            reported = len(failed)
        output.write(_error_rows(failed[reported:]))  # unreadable pictures after the last batch
        bar.update(len(failed) - reported)
    output.close()
    print(summary_line(args, done, len(paths) - len(todo), len(failed), time.perf_counter() - start))
    return 1 if failed and not done else 0


def caption_rows(
    engine: Engine,
    model: str,
    batch: list[tuple[str, Image.Image]],
    prompt: str,
    options: DecodingOptions,
    check_model: str | None = None,
) -> list[dict[str, Any]]:
    """One output row per (name, picture): its best caption and score, and with ``check_model`` the
    matcher's verdict on it. Shared by the command line and the Ray pipeline, so both write the same."""
    results = engine.caption_batch([p for _, p in batch], model, prompt, options, len(batch))
    rows = []
    for (name, picture), result in zip(batch, results, strict=True):
        best = result.captions[0]
        row = {"path": name, "caption": best.text, "score": round(best.score, 4), "error": ""}
        if check_model:
            verdict = engine.match(picture, [best.text], check_model).rows[0]
            row |= {
                "itm_probability": round(verdict.itm_probability, 4),
                "itc_cosine": round(verdict.itc_cosine, 4),
            }
        rows.append(row)
    return rows


def summary_line(args: argparse.Namespace, done: int, skipped: int, failed: int, seconds: float) -> str:
    """The run's summary: a line for people, or one JSON object with --json."""
    rate = round(done / seconds, 3) if done and seconds else 0.0
    if args.json:
        return json.dumps({"done": done, "skipped": skipped, "failed": failed, "seconds": round(seconds, 3),
                           "images_per_second": rate})  # fmt: skip
    return (f"captioned {done}, skipped {skipped} (already done), failed {failed}, in {seconds:.1f} s "
            f"({rate:.2f} images/s)")  # fmt: skip


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Lists of up to ``size`` items, as they come."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _error_rows(failed: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"path": path, "caption": "", "score": "", "error": error} for path, error in failed]
