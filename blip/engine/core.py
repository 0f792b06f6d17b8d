"""What every task of the engine stands on: the model store, the cache of image encodings, and the
steps each request repeats (a model of the right kind, the image tokens, the demo notice)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image

from ..loading.load import LoadedModel, load
from ..loading.preprocess import map_pictures
from ..model.task_models import BlipBase
from .recent import Recent, image_key
from .results import Result
from .store import DEMO_NOTICE, ModelStore, default_device

QUESTION_CROSS_CACHE = 4  # images; about 42 MB each for a base model (12 layers x keys and values)
R = TypeVar("R", bound=Result)


class EngineCore:
    """Loads models on first use and remembers the image tokens it computed. The tasks build on it
    (:mod:`.captioning`, :mod:`.answering`, :mod:`.matching`); :class:`~blip.engine.Engine` has them all.

    Args:
        device: "cpu", "cuda", ...; default CUDA when present, else CPU.
        dtype: parameter dtype; default float32 (bit-compatible with the reference).
        max_models: models kept in memory; the least recently used is dropped beyond that.
        image_cache_size: image encodings kept (per model and picture).
        local_models: extra model names mapped to checkpoint directories (given at launch; users can
            only pick names, never paths).
        loader: how a model is loaded (tests count calls through it).
        demo: "fallback" serves a table model whose checkpoint cannot be had (Hub unreachable, nothing
            cached) with the offline demo model of the same task; "always" serves every table model
            with it (``--offline-demo``); "never" lets the error through.
        fast: the CPU fast mode (``blip.kernels.fastmode``): True or "auto" runs linear layers in the
            formats this CPU is fastest at (int8; bfloat16 where it has the instructions and they win),
            "int8"/"bfloat16" forces one; outputs close to but not identical with float32; heatmaps'
            gradients use a float32 copy.
    """

    def __init__(
        self,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        max_models: int = 3,
        image_cache_size: int = 32,
        local_models: dict[str, str | Path] | None = None,
        loader: Callable[..., LoadedModel] = load,
        demo: str = "fallback",
        fast: bool | str = False,
    ):
        if image_cache_size < 0:
            raise ValueError("max_models must be >= 1 and image_cache_size >= 0")
        self.device = device or default_device()
        self.dtype = dtype
        self.image_cache_size = image_cache_size
        local = {name: Path(path) for name, path in (local_models or {}).items()}
        self.models = ModelStore(self.device, dtype, max_models, local, loader, demo, fast)
        self._images = Recent(image_cache_size)  # (model name, image key) -> image tokens
        # The VQA question encoder's cross-attention keys/values of recent images (per layer), so that
        # a second question on a picture skips projecting its 577 tokens in every layer.
        self._question_cross = Recent(QUESTION_CROSS_CACHE if image_cache_size else 0)
        self._count_lock = threading.Lock()
        self.vision_runs = 0

    # --- the model store, as the app and the command line see it ------------------------------------------

    @property
    def demo(self) -> str:
        return self.models.demo

    @property
    def fast(self) -> bool:
        return self.models.fast

    def fast_mode(self) -> str | None:
        """What the fast mode runs in, for the status line (None when off)."""
        plan = self.models.fast_plan()
        return plan.describe() if plan else None

    @property
    def local_models(self) -> dict[str, Path]:
        return self.models.local_models

    @property
    def load_counts(self) -> Counter[str]:
        return self.models.load_counts

    def model_names(self) -> list[str]:
        return self.models.names()

    def loaded_models(self) -> list[str]:
        return self.models.loaded()

    def model_status(self) -> list[dict]:
        """What is in memory: for each loaded model, its name, folder and whether the demo stands in."""
        return self.models.status()

    def model(self, name: str) -> LoadedModel:
        """The loaded model for ``name``, loading it on first use (once, even under concurrency)."""
        return self.models.get(name)

    # --- steps every task takes ---------------------------------------------------------------------------

    def typed(self, name: str, kind: type[BlipBase] | tuple[type[BlipBase], ...], task: str) -> LoadedModel:
        """The model ``name``, which must be a ``kind`` (a clear error names the task otherwise)."""
        loaded = self.model(name)
        if not isinstance(loaded.model, kind):
            kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ValueError(f"model {name!r} is a {type(loaded.model).__name__}; {task} needs a {kinds}")
        return loaded

    def image_embeds(
        self, loaded: LoadedModel, image: Image.Image, key: str | None = None
    ) -> tuple[torch.Tensor, bool]:
        """Image tokens (1, N, D) for ``image`` under ``loaded``'s ViT; True if they came from the cache.

        ``key`` is the picture's :func:`~blip.engine.recent.image_key` when the caller already has it.
        """
        embeds, cached = self.image_embeds_many(loaded, [image], None if key is None else [key])
        return embeds, cached[0]

    def image_embeds_many(
        self,
        loaded: LoadedModel,
        images: list[Image.Image],
        keys: list[str] | None = None,
        remember: bool = True,
    ) -> tuple[torch.Tensor, list[bool]]:
        """Image tokens (G, N, D) for G pictures, those not cached encoded in one vision pass; and for
        each, whether it came from the cache. ``remember=False`` leaves the cache as it was (a dataset's
        pictures are seen once and would only push out the ones a user is exploring)."""
        keys = keys or map_pictures(image_key, images)
        found = [self._images.get((loaded.name, key)) for key in keys]
        missing = [i for i, embeds in enumerate(found) if embeds is None]
        if missing:
            with torch.inference_mode():
                fresh = loaded.model.encode_image(loaded.pixels([images[i] for i in missing]))
            with self._count_lock:
                self.vision_runs += 1
            for row, i in enumerate(missing):
                found[i] = fresh[row : row + 1]
                if remember:
                    self._images.put((loaded.name, keys[i]), found[i])
        embeds = found[0] if len(found) == 1 else torch.cat(found)
        return embeds, [i not in missing for i in range(len(images))]

    @staticmethod
    def grid(loaded: LoadedModel) -> tuple[int, int]:
        """The image's patch grid (24 x 24 for a base model at 384 px)."""
        side = loaded.image_size // loaded.model.config.vision.patch_size
        return side, side

    @staticmethod
    def finish(result: R, loaded: LoadedModel) -> R:
        """Say plainly when the offline demo model answered."""
        result.offline_demo = loaded.offline_demo
        if loaded.offline_demo:
            result.notices.insert(0, DEMO_NOTICE)
        return result
