"""The caption task: text for a picture, with each word's probability, alternatives and heatmaps."""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from PIL import Image

from ..explain import gradcam
from ..explain.maps import Heatmaps
from ..generation import tasks
from ..generation.options import DecodingOptions
from ..loading.load import LoadedModel
from ..model.task_models import CaptionModel
from .core import EngineCore
from .inputs import decoding_options, readable, text_notices
from .results import CaptionResult, Stopwatch, generated_items


class Captioning(EngineCore):
    def caption(
        self,
        image: Image.Image,
        model: str = "caption-base",
        prompt: str = "",
        options: DecodingOptions | dict | None = None,
        explain_tokens: bool = False,
    ) -> CaptionResult:
        """Caption ``image``; with ``explain_tokens``, attention and Grad-CAM maps for every word."""
        options = decoding_options(options)
        prompt = readable(prompt)
        clock = Stopwatch()
        loaded = self.typed(model, CaptionModel, "captioning")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        if explain_tokens and not options.output_attentions:
            options = replace(options, output_attentions=True)
        texts = tasks.caption(loaded.model, loaded.tokenizer, embeds, prompt, options)
        clock.mark("decode")
        prefix = tasks.caption_prompt_ids(loaded.tokenizer, prompt)
        maps = [self._caption_heatmaps(loaded, embeds, prefix, t) if explain_tokens else None for t in texts]
        clock.mark("explain")
        result = CaptionResult(
            model=model,
            timings=clock.timings,
            image_cached=cached,
            prompt=prompt,
            notices=text_notices(loaded.tokenizer, [prompt], "the prompt") if prompt else [],
            captions=generated_items(loaded.tokenizer, texts, maps),
            decoding=asdict(options),
        )
        return self.finish(result, loaded)

    def _caption_heatmaps(
        self, loaded: LoadedModel, embeds: torch.Tensor, prefix: list[int], text: tasks.GeneratedText
    ) -> Heatmaps:
        """Each generated word's cross-attention (recorded while decoding) and Grad-CAM."""
        seq = text.sequence
        ids = torch.tensor([prefix + seq.token_ids], device=embeds.device)
        cams = gradcam.decoder_gradcam(loaded.gradient_model.text_decoder, embeds, ids, len(prefix))
        return Heatmaps.build(text.tokens, self.grid(loaded), seq.cross_attentions, cams)
