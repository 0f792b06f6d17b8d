"""Which linear kernel (:mod:`.linear`) runs for how many rows, chosen by timing them on this CPU.

The fastest way to push 1, 3 or 140 rows through a weight matrix differs from one CPU to the next: on
an AMD EPYC ``W @ x^T`` beat ``F.linear`` by 1.6x for beam search's 3 rows, while on an Intel Xeon with
AMX it was no faster. So nothing here names a winner. The first time a layer sees one row, 2-64 rows
or more, every candidate is timed (well under a second, on weights too large for the caches, as a
decoder's are), and the fastest is used from then on: remembered for the process, and on disk per CPU
model, PyTorch version and thread count, so the next start on the same machine skips the timing.

``F.linear`` (the reference's kernel) stays unless another is clearly faster (``MARGIN``), so timing
noise alone never moves a layer off it.

Environment:
    BLIP_KERNELS: unset to measure; ``off`` for ``F.linear`` everywhere (no timing, no file); or fixed
        choices such as ``1=onednn,2-64=wxt,65+=linear`` (buckets not named are measured).
    BLIP_KERNEL_CACHE: the folder for the cache file (default: ``~/.cache/blip-explorer``, or under
        ``$XDG_CACHE_HOME``). A folder that cannot be written only means timing again next start.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import warnings
from pathlib import Path

import torch

from . import cpu
from .candidates import KERNELS

BUCKETS = ("1", "2-64", "65+")
MARGIN = 0.97  # another kernel must take under 97% of F.linear's time to replace it
ROUNDS = 5  # timed rounds per candidate after one warm-up (the best is kept)

_lock = threading.Lock()
_table: dict[str, str] = {}  # bucket -> kernel name, for this process


def bucket(rows: int) -> str:
    """The row-count bucket a kernel is chosen for: "1", "2-64" or "65+"."""
    return "1" if rows <= 1 else "2-64" if rows <= 64 else "65+"


def kernel_for(rows: int) -> str:
    """The kernel name for ``rows`` input rows (timed on first use of its bucket)."""
    name = _table.get(bucket(rows))
    return name if name is not None else _choose(bucket(rows))


def chosen() -> dict[str, str]:
    """The kernel of every bucket (timing those not yet chosen): for reports."""
    return {b: kernel_for(1 if b == "1" else 3 if b == "2-64" else 65) for b in BUCKETS}


def reset() -> None:
    """Forget this process's choices (the disk cache is kept): tests, or a changed environment."""
    with _lock:
        _table.clear()


def cache_file() -> Path:
    """This CPU's cache file, e.g. ``~/.cache/blip-explorer/kernels-amd-epyc-7b13.json``."""
    folder = os.environ.get("BLIP_KERNEL_CACHE")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "blip-explorer"
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.cpu_name().lower()).strip("-") or "unknown-cpu"
    return Path(folder) / f"kernels-{slug}.json"


def _setting() -> str:
    """What the choices in the cache file depend on besides the CPU."""
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def _choose(name: str) -> str:
    with _lock:
        if name in _table:
            return _table[name]
        fixed = _overrides(set(KERNELS))
        if fixed == "off":
            _table.update(dict.fromkeys(BUCKETS, "linear"))
            return "linear"
        kernel = fixed.get(name) or _from_disk(name, set(KERNELS))
        if kernel is None:
            times = measure(name)
            kernel = pick(times)
            _to_disk(name, kernel, times)
        _table[name] = kernel
        return kernel


def pick(times: dict[str, float]) -> str:
    """The fastest kernel, unless it beats ``F.linear`` by less than ``MARGIN`` (then ``linear``)."""
    best = min(times, key=times.__getitem__)
    return best if times[best] < MARGIN * times["linear"] else "linear"


def _overrides(known: set[str]) -> str | dict[str, str]:
    text = os.environ.get("BLIP_KERNELS", "").strip().lower()
    if text in ("off", "linear"):
        return "off"
    fixed = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        where, _, kernel = part.partition("=")
        if where.strip() in BUCKETS and kernel.strip() in known:
            fixed[where.strip()] = kernel.strip()
        else:
            warnings.warn(
                f"BLIP_KERNELS: ignoring {part!r} (buckets {BUCKETS}, kernels {sorted(known)})", stacklevel=2
            )
    return fixed


def _read() -> dict:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _from_disk(name: str, known: set[str]) -> str | None:
    entry = _read().get("choices", {}).get(_setting(), {}).get(name, {})
    kernel = entry.get("kernel") if isinstance(entry, dict) else None
    return kernel if kernel in known else None


def _to_disk(name: str, kernel: str, times: dict[str, float]) -> None:
    data = _read()
    data["cpu"] = cpu.cpu_name()
    entry = {"kernel": kernel, "ms": {k: round(t * 1000, 3) for k, t in times.items()}}
    data.setdefault("choices", {}).setdefault(_setting(), {})[name] = entry
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=1))
        partial.replace(path)  # atomic: another process never reads half a file
    except OSError:
        pass  # unwritable: the choice still holds for this process


def _workload(name: str) -> tuple[list[torch.Tensor], list[int]]:
    """Weights shaped like a base text layer's (4 of 768 x 768, 3072 x 768, 768 x 3072) and the row
    counts to time. Few rows are bound by memory, so three layers (100 MB, beyond any L3 cache) are
    streamed; many rows are bound by arithmetic, and part of one layer is enough."""
    if name == "65+":  # a text batch (20 labels of 7 tokens) and a ViT-B/16 at 384 px
        shapes, rows = [(768, 768), (3072, 768), (768, 3072)], [140, 577]
    else:
        shapes, rows = ([(768, 768)] * 4 + [(3072, 768), (768, 3072)]) * 3, [1] if name == "1" else [3, 8]
    weights = [torch.rand(shape) - 0.5 for shape in shapes]
    return weights, rows


def measure(name: str) -> dict[str, float]:
    """Seconds each candidate kernel takes on bucket ``name``'s workload.

    Every (kernel, weight, row count) call is repeated over ``ROUNDS`` rounds, kernels interleaved,
    and its fastest time kept; a kernel's time is the sum of those. On a shared machine a call is
    now and then stalled (a thread descheduled mid-multiply); per-call minima ignore such stalls where
    the minimum of whole passes would need one round with none."""
    weights, rows = _workload(name)
    inputs = {(n, w.shape[1]): torch.randn(n, w.shape[1]) for n in rows for w in weights}
    bias = {w.shape[0]: torch.zeros(w.shape[0]) for w in weights}
    calls = [(n, i) for n in rows for i in range(len(weights))]
    best = {(kernel, call): float("inf") for kernel in KERNELS for call in calls}
    with torch.no_grad():
        for round_ in range(ROUNDS + 1):
            for kernel, fn in KERNELS.items():
                for n, i in calls:
                    w = weights[i]
                    start = time.perf_counter()
                    fn(inputs[n, w.shape[1]], w, bias[w.shape[0]])
                    if round_:  # the first round is a warm-up
                        key = (kernel, (n, i))
                        best[key] = min(best[key], time.perf_counter() - start)
    return {kernel: sum(best[kernel, call] for call in calls) for kernel in KERNELS}
