"""The question-answering task: a generated answer, or the given candidates ranked, with heatmaps of
the question words and the answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch
from PIL import Image

from ..explain import gradcam
from ..explain.maps import Heatmaps
from ..generation import tasks
from ..generation.options import DecodingOptions
from ..loading.load import LoadedModel
from ..model.cache import KVCache
from ..model.task_models import QuestionAnsweringModel
from .core import EngineCore
from .inputs import decoding_options, first_token_id, readable, text_notices
from .recent import image_key
from .results import AnswerResult, RankedAnswerItem, Stopwatch, generated_items


class Answering(EngineCore):
    def answer(
        self,
        image: Image.Image,
        question: str,
        model: str = "vqa-base",
        options: DecodingOptions | dict | None = None,
        candidates: list[str] | None = None,
        first_token: str = "[ENC]",
        explain_tokens: bool = False,
        forced: Sequence[int] | None = None,
    ) -> AnswerResult:
        """Answer ``question``: generate (default) or rank the given ``candidates``.

        ``forced`` token ids (e.g. an answer's first tokens with another word in place of one, see
        :meth:`GeneratedItem.what_if_ids`) make the generated answers start with them and continue
        with the same ``options``: the answers' first ``forced`` tokens carry their teacher-forced
        probabilities (``GeneratedItem.forced`` says how many)."""
        question = readable(question)
        if not question:
            raise ValueError("the question is empty")
        if forced and candidates is not None:
            raise ValueError("forced tokens continue a generated answer; they cannot rank candidates")
        options = decoding_options(options)
        clock = Stopwatch()
        loaded = self.typed(model, QuestionAnsweringModel, "question answering")
        clock.mark("load")
        picture = image_key(image)
        embeds, cached = self.image_embeds(loaded, image, picture)
        clock.mark("vision")
        token = first_token_id(first_token)
        notices = text_notices(loaded.tokenizer, [question], "the question")
        states = self._encode_question(loaded, embeds, picture, question, token)
        result = AnswerResult(
            model=model, question=question, first_token=first_token, image_cached=cached, notices=notices
        )
        if candidates is not None:
            candidates = [c for c in map(readable, candidates) if c]
            if not candidates:
                raise ValueError("give at least one candidate answer")
            ranked = tasks.rank_answers(
                loaded.model, loaded.tokenizer, states, list(dict.fromkeys(candidates))
            )
            result.ranked = [RankedAnswerItem(r.answer, r.probability, r.log_likelihood) for r in ranked]
            best_ids = loaded.tokenizer.encode(ranked[0].answer, max_length=tasks.MAX_TEXT_TOKENS)[1:]
        else:
            texts = tasks.answer(loaded.model, loaded.tokenizer, states, options, forced or ())
            result.decoding = asdict(options)
            result.answers = generated_items(loaded.tokenizer, texts, [None] * len(texts))
            result.forced_ids = list(forced or [])
            result.search_tree = texts[0].sequence.tree
            best_ids = texts[0].sequence.token_ids
        clock.mark("text")
        if explain_tokens and best_ids:
            q_ids = tasks.question_ids(loaded.tokenizer, question, token).to(embeds.device)
            q_maps, answer_maps = self._answer_heatmaps(loaded, embeds, q_ids, best_ids)
            result.question_heatmaps = q_maps
            best = result.answers[0] if result.answers else result.ranked[0]
            best.heatmaps = answer_maps
        clock.mark("explain")
        result.timings = clock.timings
        return self.finish(result, loaded)

    def _encode_question(
        self, loaded: LoadedModel, embeds: torch.Tensor, picture: str, question: str, token: int
    ) -> torch.Tensor:
        """The question's states, reusing the image's cross-attention keys/values from an earlier
        question on the same picture (they depend on the image alone)."""
        cache = KVCache(loaded.model.config.text.num_hidden_layers)
        image_keys_values = self._question_cross.get((loaded.name, picture))
        if image_keys_values is not None:
            cache.cross = list(image_keys_values)
        states = tasks.encode_question(loaded.model, loaded.tokenizer, embeds, question, token, cache)
        if image_keys_values is None:
            self._question_cross.put((loaded.name, picture), list(cache.cross))
        return states

    def _answer_heatmaps(
        self, loaded: LoadedModel, embeds: torch.Tensor, q_ids: torch.Tensor, answer_ids: list[int]
    ) -> tuple[Heatmaps, Heatmaps]:
        """Question words: their attention to the image and Grad-CAM of the answer's likelihood.
        Answer words: Grad-CAM through the question, and attention routed via the question tokens."""
        grid, tokenizer = self.grid(loaded), loaded.tokenizer
        a_ids = torch.tensor([[tasks.DEC_ID, *answer_ids]], device=embeds.device)
        q_att, q_cam, a_att, a_cam = gradcam.answer_explanation(loaded.gradient_model, embeds, q_ids, a_ids)
        q_pieces = tokenizer.convert_ids_to_tokens(q_ids[0].tolist())
        question = Heatmaps.build(q_pieces, grid, q_att, q_cam, source="vqa-question")
        answer = Heatmaps.build(tokenizer.convert_ids_to_tokens(answer_ids), grid, a_att, a_cam, "vqa-answer")
        return question, answer
