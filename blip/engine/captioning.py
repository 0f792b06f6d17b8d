"""The caption task: text for a picture, with each word's probability, alternatives and heatmaps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
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

MAX_BATCH = 64  # images per batch; a base ViT's attention over 64 images takes about 1 GB a layer


class Captioning(EngineCore):
    def caption(
        self,
        image: Image.Image,
        model: str = "caption-base",
        prompt: str = "",
        options: DecodingOptions | dict | None = None,
        explain_tokens: bool = False,
        forced: Sequence[int] | None = None,
    ) -> CaptionResult:
        """Caption ``image``; with ``explain_tokens``, attention and Grad-CAM maps for every word.

        What if the model had chosen another word? ``forced`` token ids (not text: the model's own
        wordpieces, e.g. from :meth:`GeneratedItem.what_if_ids`) make every caption start with them
        after the prompt; decoding continues with the same ``options``. The forced tokens count as
        generated (token limits, length penalty), and their probabilities come from a teacher-forced
        pass (``GeneratedItem.forced`` says how many lead each caption). With beam search all the beams
        continue that one start, so they may find a different ending than the unforced search did even
        when ``forced`` is the model's own first words; greedy search always finds the same one."""
        options, prompt = decoding_options(options), readable(prompt)
        clock = Stopwatch()
        loaded = self.typed(model, CaptionModel, "captioning")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        return self._captioned(
            model, loaded, embeds, [cached], prompt, options, explain_tokens, clock, list(forced or [])
        )[0]

    def caption_batch(
        self,
        images: Iterable[Image.Image],
        model: str = "caption-base",
        prompt: str = "",
        options: DecodingOptions | dict | None = None,
        batch_size: int = 8,
        explain_tokens: bool = False,
    ) -> Iterator[CaptionResult]:
        """Caption many images, ``batch_size`` at a time: one vision pass and one decoding loop per
        batch (every image's rows share each weight read). Results stream back in input order, each
        the captions :meth:`caption` gives that image alone; their timings are the batch's, shared
        out evenly over its images. Sampling runs image by image (a seed gives the same samples)."""
        options, prompt = decoding_options(options), readable(prompt)
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH} (got {batch_size})")
        self.typed(model, CaptionModel, "captioning")  # a wrong model fails now, not at the first image
        return self._caption_stream(images, model, prompt, options, batch_size, explain_tokens)

    def _caption_stream(
        self,
        images: Iterable[Image.Image],
        model: str,
        prompt: str,
        options: DecodingOptions,
        batch_size: int,
        explain: bool,
    ) -> Iterator[CaptionResult]:
        batch: list[Image.Image] = []
        for image in images:
            batch.append(image)
            if len(batch) == batch_size:
                yield from self._caption_batch(model, batch, prompt, options, explain)
                batch = []
        if batch:
            yield from self._caption_batch(model, batch, prompt, options, explain)

    def _caption_batch(
        self, model: str, images: list[Image.Image], prompt: str, options: DecodingOptions, explain: bool
    ) -> list[CaptionResult]:
        clock = Stopwatch()
        loaded = self.typed(model, CaptionModel, "captioning")
        clock.mark("load")
        embeds, cached = self.image_embeds_many(loaded, images, remember=False)
        clock.mark("vision")
        return self._captioned(model, loaded, embeds, cached, prompt, options, explain, clock)

    def _captioned(
        self,
        model: str,
        loaded: LoadedModel,
        embeds: torch.Tensor,
        cached: list[bool],
        prompt: str,
        options: DecodingOptions,
        explain: bool,
        clock: Stopwatch,
        forced: list[int] | None = None,
    ) -> list[CaptionResult]:
        """Decode G images' tokens (G, N, D) together and package one result per image."""
        if explain and not options.output_attentions:
            options = replace(options, output_attentions=True)
        texts = tasks.caption_many(loaded.model, loaded.tokenizer, embeds, prompt, options, forced or ())
        clock.mark("decode")
        prefix = tasks.caption_prompt_ids(loaded.tokenizer, prompt)
        maps = [
            [self._caption_heatmaps(loaded, embeds[i : i + 1], prefix, t) if explain else None for t in image]
            for i, image in enumerate(texts)
        ]
        clock.mark("explain")
        timings = {stage: seconds / len(texts) for stage, seconds in clock.timings.items()}
        notices = text_notices(loaded.tokenizer, [prompt], "the prompt") if prompt else []
        results = [
            CaptionResult(
                model=model,
                timings=dict(timings),
                image_cached=cached[i],
                prompt=prompt,
                notices=list(notices),
                captions=generated_items(loaded.tokenizer, texts[i], maps[i]),
                decoding=asdict(options),
                forced_ids=list(forced or []),
                search_tree=texts[i][0].sequence.tree,
            )
            for i in range(len(texts))
        ]
        return [self.finish(result, loaded) for result in results]

    def _caption_heatmaps(
        self, loaded: LoadedModel, embeds: torch.Tensor, prefix: list[int], text: tasks.GeneratedText
    ) -> Heatmaps:
        """Each generated word's cross-attention (recorded while decoding) and Grad-CAM."""
        seq = text.sequence
        ids = torch.tensor([prefix + seq.token_ids], device=embeds.device)
        cams = gradcam.decoder_gradcam(loaded.gradient_model.text_decoder, embeds, ids, len(prefix))
        return Heatmaps.build(text.tokens, self.grid(loaded), seq.cross_attentions, cams, source="caption")
