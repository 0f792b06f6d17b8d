"""The cache commands: download models ahead of time, and show what is cached."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..engine import default_device
from ..loading import hub
from .options import UsageError


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch models into the Hub cache (asking the Hub for newer files even when cached)."""
    names = list(hub.MODELS) if args.all else args.names
    if not names:
        raise UsageError("name at least one model, or use --all")
    unknown = [n for n in names if n not in hub.MODELS]
    if unknown:
        raise hub.UnknownModelError(unknown[0])
    failed = 0
    for name in names:  # huggingface_hub draws its own progress bars on stderr
        try:
            print(f"{name}: {hub.download(name, cache_dir=hub.hub_cache_dir(), refresh=True)}")
        except hub.CheckpointUnavailableError as err:
            print(f"blip download: error: could not download {name}: {err.reason}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cached_state(entry: hub.HubModel, cache: Path) -> tuple[str, int]:
    """("yes" | "partial" | "no", bytes on disk) for one table model, from the cache alone."""
    from huggingface_hub import try_to_load_from_cache

    def has(filename: str) -> bool:
        found = try_to_load_from_cache(entry.repo, filename, cache_dir=cache, revision=entry.revision)
        return isinstance(found, str)

    folder = cache / f"models--{entry.repo.replace('/', '--')}"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    if has("config.json") and any(has(w) for w in hub.WEIGHT_FILES):
        return "yes", size
    return ("partial" if size else "no"), size


def cmd_info(args: argparse.Namespace) -> int:
    """The cache folder, which table models are in it, and the device and torch version in use."""
    cache = hub.hub_cache_dir()
    about = {"cache": str(cache), "device": default_device(), "torch": torch.__version__, "models": {}}
    for name, entry in hub.MODELS.items():
        cached, size = cached_state(entry, cache)
        about["models"][name] = {"repo": entry.repo, "task": entry.task, "cached": cached, "bytes": size}
    if args.json:
        print(json.dumps(about))
        return 0
    print(f"cache:  {cache}\ndevice: {about['device']} (torch {torch.__version__})\n")
    print(f"{'model':20} {'task':10} {'cached':8} size")
    for name, row in about["models"].items():
        size = f"{row['bytes'] / 2**20:.1f} MiB" if row["bytes"] else "-"
        print(f"{name:20} {row['task']:10} {row['cached']:8} {size}")
    return 0
