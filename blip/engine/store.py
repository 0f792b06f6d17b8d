"""The model store: each model loaded once, on first use, thread-safely, keeping the few most recently
used; the offline demo model standing in where the settings say so; the CPU fast mode applied."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from ..kernels import fastmode
from ..loading.hub import MODELS, CheckpointUnavailableError, UnknownModelError
from ..loading.load import LoadedModel, load

# The offline demo models (trained on the shapes world by scripts/train_shapes.py), one per task.
DEMO_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo"
DEMO_MODELS = {"caption": DEMO_DIR / "caption", "vqa": DEMO_DIR / "vqa", "retrieval": DEMO_DIR / "retrieval"}
DEMO_NOTICE = (
    "Offline demo model: the Hugging Face checkpoint is not available here, so a tiny BLIP trained on "
    "coloured shapes answers instead. Try it on the shapes examples."
)
DEMO_SETTINGS = ("fallback", "always", "never")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelStore:
    """Loaded models by name, at most ``capacity`` of them (least recently used dropped first).

    Args:
        device, dtype: where and in what the models are loaded.
        capacity: models kept in memory.
        local_models: extra names mapped to checkpoint directories (users pick names, never paths).
        loader: how a model is loaded (tests count calls through it).
        demo: "fallback", "always" or "never" (see :class:`~blip.engine.Engine`).
        fast: the CPU fast mode (:mod:`blip.kernels.fastmode`): True or "auto" for the formats this CPU
            runs fastest (int8, or bfloat16 where it has bfloat16 instructions), "int8" or "bfloat16"
            for one format throughout; the float32 model is kept for gradients.
    """

    def __init__(
        self,
        device: str,
        dtype: torch.dtype,
        capacity: int,
        local_models: dict[str, Path],
        loader: Callable[..., LoadedModel] = load,
        demo: str = "fallback",
        fast: bool | str = False,
    ):
        if demo not in DEMO_SETTINGS:
            raise ValueError("demo must be 'fallback', 'always' or 'never'")
        if capacity < 1:
            raise ValueError("max_models must be >= 1")
        plan = "auto" if fast is True else fast or None
        if plan is not None and plan not in fastmode.PLANS:
            raise ValueError(f"fast must be True, False or one of {fastmode.PLANS}")
        if plan is not None and str(device) != "cpu":
            raise ValueError("the fast mode runs on the CPU only")
        self.device, self.dtype, self.capacity = device, dtype, capacity
        self.local_models, self.demo, self.fast_plan_name = local_models, demo, plan
        self._loader = loader
        self._lock = threading.Lock()  # guards the table and the counters
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._load_locks: dict[str, threading.Lock] = {}
        self.load_counts: Counter[str] = Counter()

    @property
    def fast(self) -> bool:
        return self.fast_plan_name is not None

    def fast_plan(self) -> fastmode.FastPlan | None:
        """The formats fast mode runs in here (timed once per process for "auto"), or None when off."""
        return fastmode.resolve(self.fast_plan_name) if self.fast else None

    def names(self) -> list[str]:
        return [*self.local_models, *MODELS]

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def status(self) -> list[dict]:
        """For each loaded model: its name, folder and whether the demo stands in."""
        with self._lock:
            return [
                {"name": name, "path": str(m.path), "offline_demo": m.offline_demo}
                for name, m in self._models.items()
            ]

    def get(self, name: str) -> LoadedModel:
        """The loaded model for ``name``, loading it on first use (once, even under concurrency)."""
        if name not in self.local_models and name not in MODELS:
            raise UnknownModelError(name)
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            lock = self._load_locks.setdefault(name, threading.Lock())
        with lock:  # one loader per name; others wait here and then find it loaded
            with self._lock:
                if name in self._models:
                    self._models.move_to_end(name)
                    return self._models[name]
            loaded = self._load(name)
            with self._lock:
                self._models[name] = loaded
                self.load_counts[name] += 1
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            return loaded

    def _load(self, name: str) -> LoadedModel:
        """Load ``name``, or the demo model of its task where the demo setting says so."""
        demo_path = DEMO_MODELS[MODELS[name].task] if name in MODELS and self.demo != "never" else None
        if demo_path is not None and self.demo == "always":
            loaded = self._loader(demo_path, device=self.device, dtype=self.dtype)
            loaded.offline_demo = True
        else:
            try:
                loaded = self._loader(self.local_models.get(name, name), device=self.device, dtype=self.dtype)
            except CheckpointUnavailableError:
                if demo_path is None:
                    raise
                loaded = self._loader(demo_path, device=self.device, dtype=self.dtype)
                loaded.offline_demo = True
        loaded.name = name
        if self.fast:
            loaded.explainer, loaded.model = loaded.model, fastmode.apply_plan(loaded.model, self.fast_plan())
        return loaded
