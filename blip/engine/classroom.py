"""Classroom questions about a picture: is this caption right (the matcher's verdict)? how likely does
the captioner find the caption a student typed, word by word? where does the vision tower's class
token gather its information (attention rollout)? Plus the tokenizer's view of a text, so that a
caller can turn words into the token ids the "what if" calls take (``Engine.caption(..., forced=)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

from ..explain.rollout import class_token_maps
from ..generation import tasks
from ..generation.options import DecodingOptions
from ..model.task_models import CaptionModel
from .captioning import Captioning
from .inputs import readable, text_notices
from .matching import Matching
from .results import CaptionCheck, CaptionLikelihood, RolloutResult, Stopwatch, generated_items


class Classroom(Captioning, Matching):
    def check_caption(
        self,
        image: Image.Image,
        caption: str,
        model: str = "itm-base-coco",
        first_token: str = "[ENC]",
        explain_words: bool = False,
    ) -> CaptionCheck:
        """The matcher's verdict on ``caption``: ITM match probability and ITC cosine (the same numbers
        :meth:`match` gives for that one text), with per-word heatmaps on request."""
        caption = readable(caption)
        if not caption:
            raise ValueError("the caption to check is empty")
        matched = self.match(image, [caption], model, first_token, explain_words)
        row = matched.rows[0]
        return CaptionCheck(
            model=model,
            offline_demo=matched.offline_demo,
            timings=matched.timings,
            image_cached=matched.image_cached,
            notices=matched.notices,  # the demo notice included, when the demo model answered
            text=row.text,
            first_token=first_token,
            itm_probability=row.itm_probability,
            itc_cosine=row.itc_cosine,
            matches=row.itm_probability >= 0.5,
            heatmaps=row.heatmaps,
        )

    def caption_likelihood(
        self,
        image: Image.Image,
        text: str | Sequence[int],
        model: str = "caption-base",
        prompt: str = "",
        explain_words: bool = False,
        top_alternatives: int = 5,
    ) -> CaptionLikelihood:
        """How likely the captioner finds a caption: each token's probability under the model given
        the picture and everything before it (one teacher-forced pass), the model's own best
        alternatives at each step, the total log-likelihood, and per-word heatmaps on request.

        Args:
            text: the caption after ``prompt``, as text (its wordpieces and a final [SEP] are scored:
                the sentence as a whole, including the model's belief that it ends there), or as token
                ids (scored exactly as given, e.g. a generated caption's ``token_ids``).
            prompt: text the caption continues; it is conditioned on, not scored.
        """
        prompt = readable(prompt)
        clock = Stopwatch()
        loaded = self.typed(model, CaptionModel, "caption likelihood")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        notices = text_notices(loaded.tokenizer, [prompt], "the prompt") if prompt else []
        if isinstance(text, str):
            text = readable(text)
            if not text:
                raise ValueError("the caption to score is empty")
            ids = loaded.tokenizer.encode(text, max_length=tasks.MAX_TEXT_TOKENS)[1:]  # wordpieces + [SEP]
            notices += text_notices(loaded.tokenizer, [text], "the caption")
        else:
            ids = [int(i) for i in text]
            vocab = loaded.model.config.text.vocab_size
            if not ids or not all(0 <= i < vocab for i in ids):
                raise ValueError(f"token ids must be a non-empty list of ids between 0 and {vocab - 1}")
        options = DecodingOptions(top_alternatives=top_alternatives, output_attentions=explain_words)
        scored = tasks.score_caption(loaded.model, loaded.tokenizer, embeds, ids, prompt, options)
        clock.mark("text")
        maps = None
        if explain_words:
            maps = self._caption_heatmaps(
                loaded, embeds, tasks.caption_prompt_ids(loaded.tokenizer, prompt), scored
            )
        clock.mark("explain")
        item = generated_items(loaded.tokenizer, [scored], [maps])[0]
        total = scored.sequence.score
        result = CaptionLikelihood(
            model=model,
            timings=clock.timings,
            image_cached=cached,
            notices=notices,
            text=loaded.tokenizer.decode(ids),
            prompt=prompt,
            tokens=item.tokens,
            log_likelihood=total,
            mean_logprob=total / len(ids),
            perplexity=math.exp(-total / len(ids)),
            heatmaps=maps,
        )
        return self.finish(result, loaded)

    def vision_rollout(self, image: Image.Image, model: str = "caption-base") -> RolloutResult:
        """Attention rollout of the vision tower's class token after each layer (any task model: they
        all have the ViT). A fresh vision pass on the exact attention path; not cached."""
        clock = Stopwatch()
        loaded = self.model(model)
        clock.mark("load")
        explainer = loaded.gradient_model  # the float32 twin in fast mode, like every heatmap
        with torch.inference_mode():
            out = explainer.vision_model.encode(loaded.pixels(image), output_attentions=True)
        with self._count_lock:
            self.vision_runs += 1
        clock.mark("vision")
        maps = class_token_maps(out.attentions, self.grid(loaded))
        clock.mark("explain")
        return self.finish(RolloutResult(model=model, timings=clock.timings, maps=maps), loaded)

    def token_ids(self, text: str, model: str = "caption-base") -> list[int]:
        """The wordpiece ids ``model``'s tokenizer reads ``text`` as, without [CLS] and [SEP] (e.g. to
        force a caption to start with typed words)."""
        return self.model(model).tokenizer.encode(readable(text), max_length=tasks.MAX_TEXT_TOKENS)[1:-1]

    def token_names(self, ids: Sequence[int], model: str = "caption-base") -> list[str]:
        """The wordpieces of token ids, as the model's tokenizer names them."""
        return self.model(model).tokenizer.convert_ids_to_tokens([int(i) for i in ids])
