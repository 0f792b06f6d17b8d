"""How long a request may hold a ZeroGPU GPU: ``spaces.GPU(duration=...)`` computed from the request.

On a ZeroGPU Space every model-running handler borrows a GPU for at most ``duration`` seconds (60 by
default) and is cut off after that; shorter requests get better queue priority. :func:`duration_for`
turns a handler into the duration function ``spaces.GPU`` accepts: called with the handler's own
arguments, it reads them by name (the tabs share the names: ``image``, ``files``, ``beams``,
``max_new_tokens``, ``heatmaps`` ...) and adds up an allowance per image, decoding step, text scored
and heatmap. The allowances are upper bounds for an eager (not graphed) base or large model on a
ZeroGPU GPU, with margin: a duration too short kills the request, one too long only costs priority.
"""

from __future__ import annotations

import inspect
import math
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BEAM_LABEL = "Beam search"  # ui.decoding.BEAM; the tools also take "beam"
DEFAULT_SECONDS = 60  # what spaces.GPU gives when it is not told; used if a request cannot be read
SHORTEST, LONGEST = 5, 600  # seconds; LONGEST bounds a pathological request (500 pictures x 10 beams)

# Allowances, in seconds.
ATTACH = 5.0  # the GPU handed over, CUDA context and first kernels
LOAD = 30.0  # a model that was not loaded at start-up: read from disk and moved to the GPU
IMAGE = 0.15  # one image: decoding the file, preprocessing, the vision tower
STEP = 0.05  # one decoding step of one image's rows (launch-bound, so rows add little) ...
ROW = 0.02  # ... plus this per beam or sample
TEXT = 0.05  # one text scored by ITM or ITC, or one candidate answer ranked
HEATMAP = 0.25  # one Grad-CAM map (a backward pass) for a word or a text
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _count_pictures(files: Any) -> int:
    """Pictures in an upload list: image files count one, ZIP archives count their image entries."""
    if not files:
        return 0
    if isinstance(files, str):  # the tools take paths or URLs, one per line or comma-separated
        files = [p for p in files.replace(",", "\n").splitlines() if p.strip()]
    total = 0
    for item in files if isinstance(files, Iterable) else [files]:
        path = Path(str(getattr(item, "name", None) or getattr(item, "path", None) or item))
        if path.suffix.lower() == ".zip" and path.is_file():
            try:
                with zipfile.ZipFile(path) as archive:  # names only: nothing is decompressed
                    total += sum(n.lower().endswith(IMAGE_SUFFIXES) for n in archive.namelist())
            except (OSError, zipfile.BadZipFile):
                total += 1
        else:
            total += 1
    return total


def _lines(text: Any) -> int:
    if not isinstance(text, str):
        return len(text) if isinstance(text, list | tuple) else 0
    return sum(1 for part in text.replace(",", "\n").splitlines() if part.strip())


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def estimate(
    images: int = 1,
    rows: int = 1,
    tokens: int = 0,
    texts: int = 0,
    heatmaps: int = 0,
    load: bool = False,
) -> int:
    """Seconds of GPU time to ask for.

    Args:
        images: images encoded (and, with ``tokens``, each decoded for).
        rows: beams or samples decoded per image.
        tokens: decoding steps per image (max_new_tokens; 0 when nothing is generated).
        texts: texts scored (ITM / ITC / ranked answers), over all images.
        heatmaps: Grad-CAM maps computed.
        load: a model has to be loaded first.
    """
    seconds = ATTACH + (LOAD if load else 0.0)
    seconds += images * (IMAGE + tokens * (STEP + ROW * rows))
    seconds += texts * TEXT + heatmaps * HEATMAP
    return int(min(max(math.ceil(seconds), SHORTEST), LONGEST))


def request_size(arguments: dict[str, Any]) -> dict[str, Any]:
    """The :func:`estimate` arguments for a handler's arguments, read by name (missing names: defaults)."""
    get = arguments.get
    pictures = (
        _count_pictures(get("files")) + _count_pictures(get("images")) + _count_pictures(get("examples"))
    )
    images = pictures or (1 if "image" in arguments or "found" in arguments else 0)
    generates = "max_new_tokens" in arguments or "decoding" in arguments or "question" in arguments
    tokens = int(_number(get("max_new_tokens"), 20)) if generates else 0
    decoding = str(get("decoding") or "")
    beams = int(_number(get("beams"), 3)) if decoding.lower().startswith("beam") else 1
    rows = max(beams, int(_number(get("count"), 1)))
    texts = _lines(get("texts")) + _lines(get("labels")) + _lines(get("candidates"))
    texts += int(_number(get("rerank"), 0)) + int(_number(get("top"), 0))
    if get("itm_check"):
        texts += images * rows
    wants_maps = bool(get("heatmaps") or get("include_heatmaps"))
    heatmaps = (tokens * rows + texts if wants_maps else 0) + (1 if "evt" in arguments else 0)
    return {"images": images, "rows": rows, "tokens": tokens, "texts": texts, "heatmaps": heatmaps}


def duration_for(handler: Callable, loaded: Callable[[], Iterable[str]] | None = None) -> Callable[..., int]:
    """The ``duration`` callable for ``spaces.GPU``: same arguments as ``handler``, returns seconds.

    Args:
        handler: the function ``spaces.GPU`` wraps.
        loaded: the names of the models already loaded; a request for another one gets time to load it.
    """
    signature = inspect.signature(handler)

    def duration(*args: Any, **kwargs: Any) -> int:
        try:
            arguments = dict(signature.bind_partial(*args, **kwargs).arguments)
            for name, parameter in signature.parameters.items():
                if name not in arguments and parameter.default is not inspect.Parameter.empty:
                    arguments[name] = parameter.default
            size = request_size(arguments)
            names = ("model", "matcher", "itm_model") if arguments.get("itm_check") else ("model", "matcher")
            models = [arguments[n] for n in names if arguments.get(n)]
            known = set(loaded()) if loaded is not None else set()
            load = loaded is not None and any(m not in known for m in models)
            return estimate(**size, load=load)
        except Exception:  # a duration must never be why a request fails
            return DEFAULT_SECONDS

    return duration
