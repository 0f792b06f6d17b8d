"""Embeddings: unit-length vectors for pictures and texts in one shared space (ITC), to store, compare
and search. A retrieval checkpoint gives them through its ITC heads, a ``BlipModel`` checkpoint through
its projections; both read a batch of pictures in one vision pass."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from PIL import Image

from ..generation.tasks import MAX_TEXT_TOKENS
from ..loading.load import LoadedModel
from ..loading.tokenizer import CLS_ID
from ..model.task_models import FeatureModel, RetrievalModel
from .core import EngineCore
from .inputs import readable

EMBEDDING_MODELS = (RetrievalModel, FeatureModel)
MAX_BATCH = 64


class Embedding(EngineCore):
    def image_features(
        self, images: Iterable[Image.Image], model: str = "itm-base-coco", batch_size: int = 16
    ) -> torch.Tensor:
        """Unit-length vectors (N, D), float32 on the CPU, for the pictures in order; one vision pass
        per ``batch_size`` pictures (the seed's ``get_image_features``, normalised)."""
        loaded = self.embedding_model(model)
        vectors = list(self.image_feature_batches(loaded, images, batch_size))
        if not vectors:
            raise ValueError("give at least one image")
        return torch.cat(vectors)

    def text_features(
        self, texts: list[str], model: str = "itm-base-coco", batch_size: int = 64
    ) -> torch.Tensor:
        """Unit-length vectors (N, D), float32 on the CPU, for the texts in order (ITC reads each text
        on its own, starting with [CLS]); a text longer than 64 tokens is cut."""
        cleaned = [readable(text) for text in texts]
        if not cleaned or not all(cleaned):
            raise ValueError("give at least one text, and no empty ones")
        _check_batch(batch_size)
        loaded = self.embedding_model(model)
        vectors = []
        for start in range(0, len(cleaned), batch_size):
            ids, mask = loaded.tokenizer.encode_batch(
                cleaned[start : start + batch_size], max_length=MAX_TEXT_TOKENS
            )
            ids[:, 0] = CLS_ID
            with torch.inference_mode():
                features = loaded.model.text_features(ids.to(loaded.device), mask.to(loaded.device))
            vectors.append(features.float().cpu())  # (B, D)
        return torch.cat(vectors)

    def embedding_model(self, model: str) -> LoadedModel:
        """``model`` loaded, checked to be one that embeds (a retrieval or a BlipModel checkpoint)."""
        return self.typed(model, EMBEDDING_MODELS, "embedding")

    def image_feature_batches(
        self,
        loaded: LoadedModel,
        images: Iterable[Image.Image],
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Vectors (B, D) batch by batch, as the pictures come; ``progress`` hears how many are done."""
        _check_batch(batch_size)
        batch: list[Image.Image] = []
        done = 0

        def flush() -> torch.Tensor:
            nonlocal done
            embeds, _ = self.image_embeds_many(loaded, batch, remember=False)  # (B, N, D)
            with torch.inference_mode():
                vectors = loaded.model.image_features(embeds).float().cpu()
            done += len(batch)
            batch.clear()
            if progress:
                progress(done)
            return vectors

        for image in images:  # pictures are read as they come: a dataset need not fit in memory
            batch.append(image)
            if len(batch) == batch_size:
                yield flush()
        if batch:
            yield flush()


def _check_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH} (got {batch_size})")
