"""Many pictures in one go, for the Search and Batch tabs: uploaded image files and ZIP archives (checked
before anything is unpacked), as a list of named files; a file that cannot be used stays in the list
with the reason, so one bad picture never stops the rest.

A ZIP archive from the internet may be a zip bomb (a few kilobytes that unpack to gigabytes) or carry
names such as ``../../home/user/.bashrc`` meant to write outside the folder it is unpacked into. So an
archive is read entry by entry, never with ``extractall``: names are checked (one that leaves the archive
refuses the whole archive), sizes are checked against limits before and while reading, and each picture
is written under a name of our own (``00007.png``), so no name from the archive ever reaches the disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_PICTURES = 500  # pictures in one collection or one batch
MAX_ZIP_ENTRIES = 5_000  # entries of any kind in one archive (folders and other files included)
MAX_ENTRY_BYTES = 25 * 2**20  # one picture in an archive, unpacked: the same 25 MB as an upload
MAX_ZIP_BYTES = 256 * 2**20  # all the pictures of one archive, unpacked
# What counts as a picture inside an archive (by its name: other files, such as captions, are ignored).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
NO_PICTURES = "add some images first (image files or a ZIP archive of them)"
WORK_ROOT = Path(tempfile.gettempdir()) / "blip-collections"
STALE_SECONDS = 2 * 60 * 60  # a work folder untouched this long belongs to a session that has ended


@dataclass
class Picture:
    """One picture of a collection: its name as the user knows it, and its file or why it is unusable."""

    name: str  # unique in the collection: the uploaded file's name, or the path inside the archive
    path: str | None = None  # the file to open; None when ``error`` says why there is none
    error: str = ""


@dataclass
class Gathered:
    pictures: list[Picture]
    ignored: list[str]  # names of archive entries that are not pictures (captions, notes, ...)


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.0f} MB"


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``... if another picture already has it."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        stem, dot, suffix = name.rpartition(".")
        candidate = f"{stem} ({n}).{suffix}" if dot and stem else f"{name} ({n})"
    taken.add(candidate)
    return candidate


def _safe_name(archive: str, name: str) -> PurePosixPath:
    """The entry's path inside the archive, or a ValueError if it would leave the folder it is unpacked
    into (an absolute path, a drive letter, a ``..`` step; backslashes count as separators)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ValueError(
            f"the ZIP archive {archive} was refused: its entry {name!r} points outside the archive "
            "(a path traversal attempt); nothing was unpacked"
        )
    return path


def _is_junk(path: PurePosixPath) -> bool:
    """Entries that are never pictures: folders, macOS resource forks and hidden files."""
    return path.parts[:1] == ("__MACOSX",) or any(part.startswith(".") for part in path.parts)


def _archive_entries(zip_path: str, archive: str) -> tuple[zipfile.ZipFile, list, list[str]]:
    """The open archive, its picture entries (info, inner path) and the names of its other files,
    after the checks that refuse the whole archive."""
    try:
        opened = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{archive} is not a ZIP archive that can be read ({err})") from None
    infos = opened.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        opened.close()
        raise ValueError(
            f"the ZIP archive {archive} has {len(infos):,} entries; the limit is {MAX_ZIP_ENTRIES:,}"
        )
    pictures, ignored = [], []
    try:
        for info in infos:
            path = _safe_name(archive, info.filename)  # checked for every entry, folders included
            if info.is_dir() or _is_junk(path):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                pictures.append((info, path))
            else:
                ignored.append(str(path))
    except ValueError:
        opened.close()
        raise
    declared = sum(info.file_size for info, _ in pictures if info.file_size <= MAX_ENTRY_BYTES)
    if declared > MAX_ZIP_BYTES:
        opened.close()
        raise ValueError(
            f"the ZIP archive {archive} was refused: its pictures would unpack to {_megabytes(declared)} "
            f"(the limit is {_megabytes(MAX_ZIP_BYTES)}; a zip bomb?)"
        )
    return opened, pictures, ignored


def _unpack(zip_path: str, archive: str, folder: Path, taken: set[str], budget: list[int]) -> Gathered:
    """The pictures of one archive, each written to ``folder`` under a name of our own."""
    opened, entries, ignored = _archive_entries(zip_path, archive)
    pictures = []
    with opened:
        for info, path in entries:
            name = _unique(str(path), taken)
            if info.file_size > MAX_ENTRY_BYTES:
                pictures.append(Picture(name, error=f"over {_megabytes(MAX_ENTRY_BYTES)} unpacked"))
                continue
            try:
                with opened.open(info) as source:  # read at most one byte past the limit: sizes can lie
                    data = source.read(MAX_ENTRY_BYTES + 1)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as err:
                pictures.append(Picture(name, error=f"could not be unpacked ({err})"))  # encrypted, damaged
                continue
            budget[0] += len(data)
            if budget[0] > MAX_ZIP_BYTES:
                raise ValueError(
                    f"the ZIP archive {archive} was refused: it unpacks to more than "
                    f"{_megabytes(MAX_ZIP_BYTES)} (a zip bomb?)"
                )
            if len(data) > MAX_ENTRY_BYTES:
                pictures.append(Picture(name, error=f"over {_megabytes(MAX_ENTRY_BYTES)} unpacked"))
                continue
            target = folder / f"{len(taken):05d}{path.suffix.lower()}"
            target.write_bytes(data)
            pictures.append(Picture(name, str(target)))
    return Gathered(pictures, ignored)


def is_archive(path: str) -> bool:
    """ZIP archives are told by their name: a picture may carry a ZIP inside it (a polyglot file)."""
    return Path(path).suffix.lower() == ".zip"


def _count(paths: list[str]) -> int:
    """How many pictures ``paths`` hold (an archive counts its picture entries), to refuse early."""
    total = 0
    for path in paths:
        if is_archive(path):
            opened, entries, _ = _archive_entries(path, Path(path).name)
            opened.close()
            total += len(entries)
        else:
            total += 1
    return total


def gather(
    paths: list[str] | None, folder: Path, examples: list[str] = (), limit: int | None = None
) -> Gathered:
    """The pictures in ``paths`` (image files and ZIP archives, in order) and ``examples`` (paths of the
    bundled examples), ZIP contents unpacked into ``folder``.

    Raises:
        ValueError: no pictures, more than ``limit`` (default ``MAX_PICTURES``), or an archive refused
            (too big, too many entries, a name leaving the archive, not a ZIP).
    """
    limit = MAX_PICTURES if limit is None else limit
    paths = [str(p) for p in paths or []]
    total = _count(paths) + len(examples)
    if total == 0:
        raise ValueError(NO_PICTURES)
    if total > limit:
        raise ValueError(f"at most {limit} pictures at once (got {total})")
    taken: set[str] = set()
    pictures: list[Picture] = []
    ignored: list[str] = []
    budget = [0]  # bytes unpacked so far, over all archives
    for path in paths:
        name = Path(path).name
        if is_archive(path):
            unpacked = _unpack(path, name, folder, taken, budget)
            pictures += unpacked.pictures
            ignored += unpacked.ignored
        else:
            pictures.append(Picture(_unique(name, taken), path))
    pictures += [Picture(_unique(Path(p).name, taken), str(p)) for p in examples]
    return Gathered(pictures, ignored)


def work_folder(prefix: str) -> Path:
    """A new folder for one collection's unpacked pictures and thumbnails, after removing folders left
    by sessions that ended without saying so (Gradio drops sessions over its capacity silently)."""
    WORK_ROOT.mkdir(exist_ok=True)
    now = time.time()
    for old in WORK_ROOT.iterdir():
        try:
            if now - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another request removed it first
            continue
    return Path(tempfile.mkdtemp(prefix=prefix, dir=WORK_ROOT))


def touch(folder: str | None) -> None:
    """Mark a work folder as in use (it is then not stale for another ``STALE_SECONDS``)."""
    if folder and os.path.isdir(folder):
        os.utime(folder)


def remove(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
