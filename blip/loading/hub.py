"""Where checkpoints come from: the model table, and downloads into the standard Hub cache.

This is the only module that talks to the network. A user can only ask for names in :data:`MODELS` (or
a local directory the operator passes), so the server can never be made to fetch arbitrary repos.
Nothing happens at import time; ``huggingface_hub`` is imported when a download is actually needed.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PROBE_TIMEOUT = 3.0  # seconds to wait for a TCP connection to the Hub before calling it unreachable


@dataclass(frozen=True)
class HubModel:
    repo: str
    task: str  # "caption", "vqa" or "retrieval"
    revision: str | None = None  # a commit to pin; None follows "main" (no verified hashes from here)


MODELS: dict[str, HubModel] = {
    "caption-base": HubModel("Salesforce/blip-image-captioning-base", "caption"),
    "caption-large": HubModel("Salesforce/blip-image-captioning-large", "caption"),
    "vqa-base": HubModel("Salesforce/blip-vqa-base", "vqa"),
    "vqa-capfilt-large": HubModel("Salesforce/blip-vqa-capfilt-large", "vqa"),
    "itm-base-coco": HubModel("Salesforce/blip-itm-base-coco", "retrieval"),
    "itm-base-flickr": HubModel("Salesforce/blip-itm-base-flickr", "retrieval"),
    "itm-large-coco": HubModel("Salesforce/blip-itm-large-coco", "retrieval"),
    "itm-large-flickr": HubModel("Salesforce/blip-itm-large-flickr", "retrieval"),
}

# Weights in order of preference; the first one the repo (or the cache) has is used.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Small files fetched when present. tokenizer.json alone would do; the rest serve older repos.
OPTIONAL_FILES = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


class UnknownModelError(ValueError):
    """A model name that is neither in :data:`MODELS` nor an existing directory."""

    def __init__(self, name: str):
        super().__init__(
            f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (or a checkpoint directory)"
        )


class CheckpointUnavailableError(RuntimeError):
    """The Hub could not be reached (or refused) and no cached copy exists."""

    def __init__(self, name: str, repo: str, reason: str):
        self.name, self.repo, self.reason = name, repo, reason
        super().__init__(
            f"Model {name!r} ({repo}) is not in the local Hugging Face cache and could not be downloaded: "
            f"{reason}. Run `python -m blip download {name}` on a machine that can reach huggingface.co "
            f"(the cache is {hub_cache_dir()}), or pass a local checkpoint directory."
        )


def hub_cache_dir() -> Path:
    """The standard Hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE asks for cached files only (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_endpoint() -> str:
    """The Hub's address (HF_ENDPOINT, else https://huggingface.co), read at call time."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Can a TCP connection to the Hub be opened within ``timeout`` seconds? (Name lookup included.)"""
    url = urlsplit(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve(name_or_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local checkpoint directory for a model name or path, downloading what is missing.

    Args:
        name_or_dir: a name from :data:`MODELS`, or an existing checkpoint directory.
        cache_dir: Hub cache to use instead of the standard one.

    Raises:
        UnknownModelError: the name is not in the table and is not a directory.
        CheckpointUnavailableError: the Hub is unreachable (or offline mode is on) and nothing is cached.
    """
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    name = str(name_or_dir)
    if name not in MODELS:
        raise UnknownModelError(name)
    return download(name, cache_dir=cache_dir)


def download(name: str, cache_dir: str | Path | None = None, refresh: bool = False) -> Path:
    """Fetch one table model's files into the Hub cache; return the folder that holds them.

    A complete cached copy is used without touching the network (so a flaky or blocked Hub costs
    nothing once a model is cached); ``refresh=True`` asks the Hub for newer files first.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError

    entry = MODELS[name]
    if not refresh:
        try:
            return _fetch_all(entry, cache_dir, local_only=True)
        except (LocalEntryNotFoundError, CheckpointUnavailableError):
            pass  # not (fully) cached yet
    offline = offline_mode()
    if not offline and not hub_reachable():
        # Without this probe the Hub client retries with back-off for about 25 s per file.
        raise CheckpointUnavailableError(name, entry.repo, f"the Hub is unreachable ({hub_endpoint()})")
    try:
        return _fetch_all(entry, cache_dir, local_only=offline)
    except LocalEntryNotFoundError as err:
        reason = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hub is unreachable"
        raise CheckpointUnavailableError(name, entry.repo, reason) from err
    except CheckpointUnavailableError as err:
        raise CheckpointUnavailableError(name, entry.repo, err.reason) from None
    except OSError as err:  # network failures and HTTP errors from the Hub client
        raise CheckpointUnavailableError(name, entry.repo, str(err).splitlines()[0]) from err


def _fetch_all(entry: HubModel, cache_dir: str | Path | None, local_only: bool) -> Path:
    """Download (or, with ``local_only``, find in the cache) config, weights and tokenizer files."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def fetch(filename: str) -> Path | None:
        """The cached path of ``filename``; None if the repo does not have it."""
        try:
            path = hf_hub_download(
                entry.repo,
                filename,
                revision=entry.revision,
                cache_dir=cache_dir,
                local_files_only=local_only,
            )
        except LocalEntryNotFoundError:
            raise  # not cached and not downloadable (a subclass of EntryNotFoundError in new releases)
        except EntryNotFoundError:
            return None  # the Hub answered: no such file in this repo
        return Path(path)

    config = fetch("config.json")
    if config is None:
        raise CheckpointUnavailableError("", entry.repo, "the repository has no config.json")
    weights = None
    for filename in WEIGHT_FILES:
        try:
            weights = fetch(filename)
        except LocalEntryNotFoundError:
            continue  # not cached: maybe the other format is
        if weights is not None:
            break
    if weights is None:
        raise CheckpointUnavailableError("", entry.repo, "no weights file is available")
    for filename in OPTIONAL_FILES:
        # Optional: the tokenizer falls back to vocab.txt or the shipped copy.
        with contextlib.suppress(LocalEntryNotFoundError):
            fetch(filename)
    return config.parent
