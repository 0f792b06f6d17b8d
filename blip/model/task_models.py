"""The BLIP task models, one per kind of checkpoint: the three on the Hub, and transformers' ``BlipModel``.

Each is a vision tower plus the text modules its task needs, named like the checkpoint's top-level
keys. Methods do one step each (encode the image, run the decoder, score a match...) and take the image
tokens as an argument, so callers can encode an image once and reuse it for many questions or texts.
Generation loops live in ``decoding.py``; these classes only compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .config import BlipConfig, ConfigError, TextConfig
from .text import TextLMModel, TextModel, TextOutput
from .vision import VisionModel


class BlipBase(nn.Module):
    """What every task model has: a config and the ViT."""

    # The ``architectures`` entry of config.json that this class loads.
    checkpoint_class = ""

    def __init__(self, config: BlipConfig):
        super().__init__()
        if not config.text.cross_attention and not isinstance(self, FeatureModel):
            raise ConfigError(
                f"{self.checkpoint_class} needs image-grounded text layers, but this config's text model "
                "has no cross-attention (text_config.is_decoder is false)"
            )
        self.config = config
        self.vision_model = VisionModel(config.vision)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (B, 3, H, W) -> image tokens (B, 1 + patches, D)."""
        return self.vision_model(pixel_values)


class CaptionModel(BlipBase):
    """Image captioning (``BlipForConditionalGeneration``): ViT + image-grounded decoder."""

    checkpoint_class = "BlipForConditionalGeneration"

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.text_decoder = TextLMModel(config.text)

    def decoder_logits(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, TextOutput]:
        """Teacher-forced next-token logits (B, T, vocab) for caption ids starting with [DEC].

        Args:
            image_embeds: (B or 1, N, D) from :meth:`encode_image`; a single image serves every row.
            input_ids: (B, T) caption tokens, the first being [DEC] (30522).
            attention_mask: (B, T) padding mask, or None.
            output_attentions: also return per-layer self- and cross-attention maps.
        """
        return self.text_decoder(
            input_ids, image_embeds, attention_mask=attention_mask, output_attentions=output_attentions
        )


class QuestionAnsweringModel(BlipBase):
    """Visual question answering (``BlipForQuestionAnswering``).

    The question is encoded *with* the image (cross-attention), and the answer decoder then attends
    to the encoded question, not to the image directly.
    """

    checkpoint_class = "BlipForQuestionAnswering"

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.text_encoder = TextModel(config.text)
        self.text_decoder = TextLMModel(config.text)

    def encode_question(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        cache: KVCache | None = None,
    ) -> TextOutput:
        """Question ids (B, T) -> image-grounded question states (B, T, 768).

        ``cache`` may carry the image's cross-attention keys and values from an earlier question on the
        same picture (``cache.cross``), which then need not be projected again.
        """
        return self.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            encoder_states=image_embeds,
            output_attentions=output_attentions,
            cache=cache,
        )

    def answer_logits(
        self,
        question_states: torch.Tensor,
        answer_ids: torch.Tensor,
        question_mask: torch.Tensor | None = None,
        answer_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, TextOutput]:
        """Teacher-forced next-token logits (B, T, vocab) of answers starting with [DEC].

        Args:
            question_states: (B or 1, Tq, 768) from :meth:`encode_question`.
            answer_ids: (B, T) answer tokens.
            question_mask: (B, Tq) mask over the question states, or None to attend to every
                position. transformers 5.24 never applies a cross-attention mask (padding included),
                so None is what matches it; the original BLIP code masks question padding.
            answer_mask: (B, T) padding mask of the answers.
        """
        return self.text_decoder(
            answer_ids,
            question_states,
            attention_mask=answer_mask,
            encoder_mask=question_mask,
            output_attentions=output_attentions,
        )


class RetrievalModel(BlipBase):
    """Image-text retrieval (``BlipForImageTextRetrieval``): matching (ITM) and contrast (ITC)."""

    checkpoint_class = "BlipForImageTextRetrieval"

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.text_encoder = TextModel(config.text)
        width = config.image_text_hidden_size
        self.vision_proj = nn.Linear(config.vision.hidden_size, width)
        self.text_proj = nn.Linear(config.text.hidden_size, width)
        self.itm_head = nn.Linear(config.text.hidden_size, 2)

    def itm_logits(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, TextOutput]:
        """Image-text matching logits (B, 2): [no match, match], read from the first token.

        Args:
            image_embeds: (B or 1, N, D); one image is shared by all B texts without copying.
            input_ids: (B, T) text tokens; the first is [CLS] (transformers) or [ENC] (BLIP's training).
            attention_mask: (B, T) padding mask.
            output_attentions: also return the cross-attention maps (for heatmaps).
        """
        out = self.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            encoder_states=image_embeds,
            output_attentions=output_attentions,
        )
        return self.itm_head(out.hidden_states[:, 0]), out

    def image_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Unit-length ITC image features (B, 256) from the class token."""
        return F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unit-length ITC text features (B, 256): the text encoder runs *without* the image."""
        out = self.text_encoder(input_ids, attention_mask=attention_mask)
        return F.normalize(self.text_proj(out.hidden_states[:, 0]), dim=-1)

    def itc_similarity(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cosine similarities (num_images, num_texts) between every image and every text."""
        return self.image_features(image_embeds) @ self.text_features(input_ids, attention_mask).T


class TextPooler(nn.Module):
    """BERT's pooler: the first token's state through a dense layer and tanh."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, T, H) -> (B, H)


class PooledTextModel(TextModel):
    """The text stack with BERT's pooler on top, as ``BlipModel`` checkpoints carry it."""

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self.pooler = TextPooler(config)


class FeatureModel(BlipBase):
    """Image and text embeddings only (transformers' ``BlipModel``, its ``get_image_features`` /
    ``get_text_features``): CLIP-style, two towers and two projections, no image-grounded text.

    Unlike the retrieval model's ITC heads, the image side reads the class token after the final
    LayerNorm *again* (the reference applies ``post_layernorm`` to the pooled token a second time), the
    text side reads BERT's pooler (dense + tanh), and neither projection has a bias.
    """

    checkpoint_class = "BlipModel"

    def __init__(self, config: BlipConfig):
        super().__init__(config)
        self.text_model = PooledTextModel(config.text)
        self.visual_projection = nn.Linear(config.vision.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # log(1 / 0.07); read from the checkpoint

    def image_embeddings(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings (B, P), not normalised (``get_image_features``)."""
        pooled = self.vision_model.post_layernorm(image_embeds[:, 0])  # (B, D)
        return self.visual_projection(pooled)

    def text_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected text embeddings (B, P), not normalised (``get_text_features``)."""
        out = self.text_model(input_ids, attention_mask=attention_mask)
        return self.text_projection(self.text_model.pooler(out.hidden_states))

    def image_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Unit-length image features (B, P)."""
        return F.normalize(self.image_embeddings(image_embeds), dim=-1)

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unit-length text features (B, P)."""
        return F.normalize(self.text_embeddings(input_ids, attention_mask), dim=-1)

    def logits_per_image(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled cosines (images, texts): ``exp(logit_scale)`` times every image-text cosine."""
        cosines = self.image_features(image_embeds) @ self.text_features(input_ids, attention_mask).T
        return self.logit_scale.exp() * cosines


TASK_MODELS: dict[str, type[BlipBase]] = {
    cls.checkpoint_class: cls for cls in (CaptionModel, QuestionAnsweringModel, RetrievalModel, FeatureModel)
}
