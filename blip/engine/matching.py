"""The retrieval model's tasks: how well texts match a picture (ITM and ITC), and zero-shot
classification over labels put into a template."""

from __future__ import annotations

import torch
from PIL import Image

from ..explain import gradcam
from ..explain.maps import Heatmaps
from ..generation.tasks import MAX_TEXT_TOKENS
from ..loading.load import LoadedModel
from ..loading.tokenizer import CLS_ID
from ..model.task_models import RetrievalModel
from .core import EngineCore
from .inputs import first_token_id, readable, text_notices
from .results import ClassifyResult, LabelScore, MatchResult, MatchRow, Stopwatch

SCORINGS = ("itc", "itm", "itc+itm")
MAX_LABELS = 100
MAX_TEXTS = 32


class Matching(EngineCore):
    def match(
        self,
        image: Image.Image,
        texts: list[str],
        model: str = "itm-base-coco",
        first_token: str = "[ENC]",
        explain_words: bool = False,
        itc: bool = True,
    ) -> MatchResult:
        """ITM match probability and ITC cosine of ``image`` with each text (one text per row).

        ``itc=False`` skips the ITC cosines (a second pass of every text through the text encoder)
        and leaves them None, for callers that only want the match probabilities."""
        texts = [t for t in map(readable, texts) if t]
        if not texts:
            raise ValueError("give at least one text to match")
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts at once (got {len(texts)})")
        clock = Stopwatch()
        loaded = self.typed(model, RetrievalModel, "matching")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        ids, mask, notices = self._encode_texts(loaded, texts, first_token)
        if explain_words:
            logits, maps, cams = gradcam.itm_explanation(loaded.gradient_model, embeds, ids, mask)
        if not explain_words or loaded.explainer is not None:  # the scores come from the model that runs
            with torch.inference_mode():
                logits, _ = loaded.model.itm_logits(embeds, ids, mask)
        cosines = _itc_cosines(loaded.model, embeds, ids, mask) if itc else None
        probabilities = logits.float().softmax(dim=-1)[:, 1]
        rows = [
            MatchRow(
                text=text,
                itm_probability=float(probabilities[i]),
                itc_cosine=float(cosines[i]) if cosines is not None else None,
                heatmaps=self._text_heatmaps(loaded, ids, maps, cams, i) if explain_words else None,
            )
            for i, text in enumerate(texts)
        ]
        clock.mark("text")
        result = MatchResult(
            model=model,
            timings=clock.timings,
            image_cached=cached,
            notices=notices,
            first_token=first_token,
            rows=rows,
        )
        return self.finish(result, loaded)

    def classify(
        self,
        image: Image.Image,
        labels: list[str],
        model: str = "itm-base-coco",
        template: str = "a picture of {}",
        scoring: str = "itc",
        temperature: float = 0.07,
        shortlist: int = 5,
        first_token: str = "[ENC]",
        explain_labels: bool = False,
    ) -> ClassifyResult:
        """Zero-shot classification: which of ``labels`` (put into ``template``) fits the image?

        Scoring: "itc" (softmax of cosines / temperature), "itm" (softmax over labels of the match
        logit), or "itc+itm" (ITC keeps the ``shortlist`` best labels; ITM re-ranks them; the rest get 0).
        """
        labels = list(dict.fromkeys(label for label in map(readable, labels) if label))
        if not labels:
            raise ValueError("give at least one label")
        notices = []
        if len(labels) > MAX_LABELS:
            notices.append(f"only the first {MAX_LABELS} of {len(labels)} labels were used")
            labels = labels[:MAX_LABELS]
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}")
        if "{}" not in template:
            raise ValueError("the template needs a {} where the label goes")
        if not 0.001 <= temperature <= 10.0:
            raise ValueError("temperature must be between 0.001 and 10")
        if not 1 <= shortlist <= MAX_LABELS:
            raise ValueError(f"shortlist must be between 1 and {MAX_LABELS}")
        clock = Stopwatch()
        loaded = self.typed(model, RetrievalModel, "zero-shot classification")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        prompts = [template.replace("{}", label) for label in labels]
        ids, mask, cut = self._encode_texts(loaded, prompts, first_token, "label")
        notices += cut
        m, n = loaded.model, len(labels)
        cosines = itm = None
        if scoring in ("itc", "itc+itm"):
            cosines = _itc_cosines(m, embeds, ids, mask)
        probs = torch.zeros(n)
        if scoring == "itc":
            probs = (cosines / temperature).softmax(dim=0).cpu()
        else:
            chosen = torch.arange(n) if scoring == "itm" else cosines.topk(min(shortlist, n)).indices.cpu()
            with torch.inference_mode():
                logits, _ = m.itm_logits(embeds, ids[chosen], mask[chosen])
            itm = torch.full((n,), float("nan"))
            itm[chosen] = logits[:, 1].float().cpu()
            probs[chosen] = logits[:, 1].float().softmax(dim=0).cpu()
        heat = [None] * n
        if explain_labels:
            _, maps, cams = gradcam.itm_explanation(loaded.gradient_model, embeds, ids, mask)
            heat = [self._text_heatmaps(loaded, ids, maps, cams, i) for i in range(n)]
        scores = [
            LabelScore(
                label=labels[i],
                probability=float(probs[i]),
                itc_cosine=float(cosines[i]) if cosines is not None else None,
                itm_logit=float(itm[i]) if itm is not None and not torch.isnan(itm[i]) else None,
                heatmaps=heat[i],
            )
            for i in range(n)
        ]
        clock.mark("text")
        result = ClassifyResult(
            model=model,
            timings=clock.timings,
            image_cached=cached,
            notices=notices,
            scoring=scoring,
            template=template,
            temperature=temperature,
            labels=sorted(scores, key=lambda s: s.probability, reverse=True),
        )
        return self.finish(result, loaded)

    @staticmethod
    def _encode_texts(
        loaded: LoadedModel, texts: list[str], first_token: str, what: str = "text"
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Token ids and mask (B, T) on the model's device, first token set, with the texts' notices."""
        ids, mask = loaded.tokenizer.encode_batch(texts, max_length=MAX_TEXT_TOKENS)
        ids[:, 0] = first_token_id(first_token)
        notices = text_notices(loaded.tokenizer, texts, what)
        return ids.to(loaded.device), mask.to(loaded.device), notices

    def _text_heatmaps(self, loaded: LoadedModel, ids, maps, cams, row: int) -> Heatmaps:
        """Row ``row`` of a batch of matched texts: per layer (B, heads, T, N) -> per token."""
        return Heatmaps.build(
            loaded.tokenizer.convert_ids_to_tokens(ids[row].tolist()),
            self.grid(loaded),
            [m[row].transpose(0, 1) for m in maps],
            [c[row].transpose(0, 1) for c in cams],
            source="itm",
        )


def _itc_cosines(model: RetrievalModel, embeds: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """Cosine of one image with each text. ITC encodes a text on its own, so it starts with [CLS]
    as in training (whatever first token the image-grounded ITM pass used)."""
    itc_ids = ids.clone()
    itc_ids[:, 0] = CLS_ID
    with torch.inference_mode():
        return model.itc_similarity(embeds, itc_ids, mask)[0].float()
