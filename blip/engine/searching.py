"""Searching a collection of pictures: each picture is indexed once as its unit-length ITC vector; a
text (or a picture) ranks them all by cosine with one matrix product, and the matcher (ITM) may
re-rank the best few, reading each of those pictures with the query (LAVIS's search method).

Exact search is one (N, 256) x (256,) product: 100,000 pictures take about 100 MB of float32 and a few
milliseconds, so an approximate index (FAISS) only pays off from millions of pictures on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from ..generation.tasks import MAX_TEXT_TOKENS
from ..loading.load import LoadedModel
from ..loading.uploads import open_upload
from ..model.task_models import RetrievalModel
from .embedding import Embedding
from .inputs import first_token_id, readable, text_notices
from .results import SearchHit, SearchResult, Stopwatch

MAX_RERANK = 100
DEMO_LABEL = " (offline demo)"  # how saved vectors say the offline demo model made them


@dataclass
class ImageIndex:
    """Pictures by name with their ITC vectors under one retrieval model."""

    model: str
    paths: list[str] = field(default_factory=list)
    vectors: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))  # (N, D) unit length, CPU
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each picture
    # True when the offline demo model stood in for ``model``: its vectors live in another space.
    offline_demo: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def label(self) -> str:
        """The model as saved files name it: ``NAME (offline demo)`` when the demo model made the vectors."""
        return self.model + (DEMO_LABEL if self.offline_demo else "")

    @classmethod
    def from_label(cls, label: str, **fields) -> ImageIndex:
        """An index whose model is read back from :attr:`label`."""
        demo = label.endswith(DEMO_LABEL)
        return cls(model=label.removesuffix(DEMO_LABEL), offline_demo=demo, **fields)


class Searching(Embedding):
    def index_images(
        self,
        pictures: Iterable[tuple[str, Image.Image]],
        model: str = "itm-base-coco",
        batch_size: int = 16,
        progress: Callable[[int], None] | None = None,
    ) -> ImageIndex:
        """Index (name, picture) pairs: one vision pass per ``batch_size`` pictures; ``progress`` is
        told how many are done after each batch. A retrieval or a ``BlipModel`` checkpoint."""
        loaded = self.embedding_model(model)
        index = ImageIndex(model=model, offline_demo=loaded.offline_demo)

        def names_noted() -> Iterator[Image.Image]:
            for name, picture in pictures:
                index.paths.append(name)
                index.sizes.append(picture.size)
                yield picture

        vectors = list(self.image_feature_batches(loaded, names_noted(), batch_size, progress))
        if vectors:
            index.vectors = torch.cat(vectors)
        return index

    def search(
        self,
        index: ImageIndex,
        query: str | Image.Image,
        top: int = 10,
        rerank: int = 0,
        first_token: str = "[ENC]",
        open_image: Callable[[str], Image.Image] = open_upload,
    ) -> SearchResult:
        """Rank the indexed pictures for ``query`` (a text, or a picture: "more like this one").

        Args:
            index: from :meth:`index_images`; its model scores the query.
            top: hits returned, best first.
            rerank: the best ``rerank`` by ITC are re-ranked by the matcher's P(match) (text queries);
                each of them is opened with ``open_image`` and read by the ViT again.
            first_token: how the matcher reads the query ("[ENC]" as BLIP was trained, or "[CLS]").
        """
        if not len(index):
            raise ValueError("the index is empty: add some pictures first")
        if top < 1:
            raise ValueError(f"top must be at least 1 (got {top})")
        if not 0 <= rerank <= MAX_RERANK:
            raise ValueError(f"rerank must be between 0 and {MAX_RERANK} (got {rerank})")
        clock = Stopwatch()
        loaded = self.embedding_model(index.model)
        if loaded.offline_demo != index.offline_demo:
            made = "the offline demo model" if index.offline_demo else "the real model"
            now = "the offline demo model" if loaded.offline_demo else "the real model"
            raise ValueError(
                f"this index was made by {made} for {index.model}, but {now} answers for it now: their "
                "vectors live in different spaces and cannot be compared; index the pictures again"
            )
        if rerank and not isinstance(loaded.model, RetrievalModel):
            raise ValueError(f"re-ranking needs a retrieval model's matcher; {index.model} has none")
        clock.mark("load")
        by_text = isinstance(query, str)
        notices: list[str] = []
        if by_text:
            query = readable(query)
            if not query:
                raise ValueError("the query is empty")
            notices = text_notices(loaded.tokenizer, [query], "the query")
            vector = self.text_features([query], index.model)[0]
        else:
            embeds, _ = self.image_embeds(loaded, query)
            with torch.inference_mode():
                vector = loaded.model.image_features(embeds).float().cpu()[0]
        cosines = index.vectors @ vector  # (N,)
        rerank = min(rerank, len(index)) if by_text else 0
        # Only the best max(top, rerank) are ever shown or re-read: a partial sort, not a full one.
        order = cosines.topk(min(len(index), max(top, rerank))).indices.tolist()
        clock.mark("itc")
        probabilities: dict[int, float] = {}
        if rerank:
            shortlist = order[:rerank]
            probabilities = self._match_probabilities(loaded, [index.paths[i] for i in shortlist], query,
                                                      first_token, open_image)  # fmt: skip
            probabilities = dict(zip(shortlist, probabilities, strict=True))
            order = sorted(shortlist, key=lambda i: -probabilities[i]) + order[rerank:]
        clock.mark("itm")
        hits = [SearchHit(index.paths[i], float(cosines[i]), probabilities.get(i)) for i in order[:top]]
        result = SearchResult(
            model=index.model,
            timings=clock.timings,
            notices=notices,
            query=query if by_text else "picture",
            indexed=len(index),
            reranked=rerank,
            hits=hits,
        )
        return self.finish(result, loaded)

    def _match_probabilities(
        self,
        loaded: LoadedModel,
        paths: list[str],
        text: str,
        first_token: str,
        open_image: Callable[[str], Image.Image],
    ) -> list[float]:
        """P(match) of ``text`` with each picture: one vision pass and one matcher pass for them all."""
        embeds, _ = self.image_embeds_many(loaded, [open_image(path) for path in paths])  # (k, N, D)
        ids, mask = loaded.tokenizer.encode_batch([text], max_length=MAX_TEXT_TOKENS)
        ids[:, 0] = first_token_id(first_token)
        k = len(paths)
        with torch.inference_mode():
            logits, _ = loaded.model.itm_logits(
                embeds, ids.expand(k, -1).to(loaded.device), mask.expand(k, -1).to(loaded.device)
            )
        return logits.float().softmax(dim=-1)[:, 1].tolist()
