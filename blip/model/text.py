"""BLIP's text side: a BERT-base transformer that can look at an image through cross-attention.

BLIP uses one architecture for three jobs (arXiv 2201.12086, section 3.1):

* a *text encoder* (bidirectional self-attention, no image) for image-text contrast (ITC);
* an *image-grounded encoder* (bidirectional, plus cross-attention to the image tokens) for
  image-text matching (ITM) and for encoding VQA questions;
* an *image-grounded decoder* (causal self-attention, plus cross-attention) that writes captions
  and answers, followed by a language-model head.

Every layer therefore has a cross-attention block; it is simply skipped when no image is given.
Unlike the ViT this is a post-LayerNorm network (BERT style): each block adds its output to the
residual stream and *then* normalises.

Module and parameter names mirror the checkpoint keys (``text_decoder.bert.*``, ``text_encoder.*``,
``text_decoder.cls.*``), hence the BERT spellings ``LayerNorm`` and ``self``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.linear import project
from .attention import attend, causal_mask, padding_mask
from .cache import KVCache
from .config import TextConfig


@dataclass
class TextOutput:
    """What one pass of the text stack returns. Attention maps are only filled on request."""

    hidden_states: torch.Tensor  # (B, T, 768), the last layer's output
    self_attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, heads, T, T_total)
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, heads, T, S)


class TextEmbeddings(nn.Module):
    """Token + position embeddings, then LayerNorm (BLIP has no token-type embeddings)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        # Positions continue after the tokens already in the KV cache.
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions))


class TextSelfAttention(nn.Module):
    """Multi-head attention; keys and values come from the text itself or, for cross-attention,
    from the encoder states (image tokens, or the encoded question for the VQA answer decoder)."""

    def __init__(self, config: TextConfig, kv_width: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(kv_width, config.hidden_size)
        self.value = nn.Linear(kv_width, config.hidden_size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)

    def keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(project(self.key, states)), self.split_heads(project(self.value, states))

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        need_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.split_heads(project(self.query, x))
        context, probs = attend(q, k, v, mask, need_probs)
        b, _, t, _ = context.shape
        return context.transpose(1, 2).reshape(b, t, -1), probs  # (B, T, hidden)


class TextSelfOutput(nn.Module):
    """Project the attention context and close the residual: LayerNorm(x + dense(context))."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(project(self.dense, context) + residual)


class TextAttention(nn.Module):
    def __init__(self, config: TextConfig, kv_width: int):
        super().__init__()
        self.self = TextSelfAttention(config, kv_width)
        self.output = TextSelfOutput(config)


class TextIntermediate(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class TextOutputBlock(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class TextLayer(nn.Module):
    """Self-attention, then cross-attention (when encoder states are given), then the MLP."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.attention = TextAttention(config, config.hidden_size)
        if config.cross_attention:  # absent only from text-only stacks (TextConfig.cross_attention)
            self.crossattention = TextAttention(config, config.encoder_hidden_size)
        self.intermediate = TextIntermediate(config)
        self.output = TextOutputBlock(config)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None,
        encoder_states: torch.Tensor | None,
        encoder_mask: torch.Tensor | None,
        cache: KVCache | None,
        index: int,
        need_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        attn = self.attention.self
        k, v = attn.keys_values(x)
        if cache is not None:
            k, v = cache.append(index, k, v)  # past tokens' keys/values + the new ones
        context, self_probs = attn(x, k, v, self_mask, need_probs)
        x = self.attention.output(context, x)

        cross_probs = None
        if encoder_states is not None:
            cross = self.crossattention.self
            if cache is not None and cache.cross[index] is not None:
                k, v = cache.cross[index]
            else:
                k, v = cross.keys_values(encoder_states)
                if cache is not None:
                    cache.cross[index] = (k, v)
            context, cross_probs = cross(x, k, v, encoder_mask, need_probs)
            x = self.crossattention.output(context, x)

        hidden = F.gelu(project(self.intermediate.dense, x))
        x = self.output.LayerNorm(project(self.output.dense, hidden) + x)
        return x, self_probs, cross_probs


class TextEncoder(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.layer = nn.ModuleList(TextLayer(config) for _ in range(config.num_hidden_layers))


class TextModel(nn.Module):
    """The BERT stack. ``causal=True`` makes it the decoder; otherwise it is an encoder."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.encoder = TextEncoder(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_states: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        output_attentions: bool = False,
    ) -> TextOutput:
        """Run the stack over ``input_ids`` (B, T).

        Args:
            input_ids: token ids (B, T); with a cache, only the tokens not yet seen.
            attention_mask: (B, T_total) 1 for real tokens, 0 for padding (T_total counts cached ones).
            encoder_states: (B or 1, S, E) image tokens or question states to cross-attend to; None
                skips cross-attention (the ITC text encoder).
            encoder_mask: (B, S) 1/0 mask over ``encoder_states``; None means all visible.
            causal: decoder (each token sees only earlier ones) instead of bidirectional encoder.
            cache: a :class:`KVCache` to read past keys/values from and append the new ones to.
            output_attentions: return per-layer attention probabilities (slower exact path).
        """
        past = cache.length if cache is not None else 0
        x = self.embeddings(input_ids, start=past)
        t, dtype = input_ids.shape[1], x.dtype
        if causal:
            # One new token with no padding may see everything: skip building an all-zero mask.
            needs_mask = t > 1 or attention_mask is not None
            self_mask = causal_mask(t, past + t, dtype, x.device, attention_mask) if needs_mask else None
        else:
            self_mask = padding_mask(attention_mask, dtype) if attention_mask is not None else None
        cross_mask = padding_mask(encoder_mask, dtype) if encoder_mask is not None else None
        if encoder_states is not None:
            if not self.config.cross_attention:
                raise ValueError("this text stack has no cross-attention (is_decoder is false in its config)")
            encoder_states = encoder_states.to(dtype)

        self_maps, cross_maps = [], []
        for i, layer in enumerate(self.encoder.layer):
            x, self_probs, cross_probs = layer(
                x, self_mask, encoder_states, cross_mask, cache, i, output_attentions
            )
            self_maps.append(self_probs)
            cross_maps.append(cross_probs)
        if cache is not None:
            cache.advance(t)
        if not output_attentions:
            return TextOutput(x)
        return TextOutput(x, tuple(self_maps), tuple(cross_maps) if encoder_states is not None else None)


class PredictionTransform(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(project(self.dense, x)))


class PredictionHead(nn.Module):
    """Hidden state -> one logit per vocabulary entry (30524, [DEC] and [ENC] included)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.transform = PredictionTransform(config)
        # Usually shares its weight with the word embeddings (the loader ties them).
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return project(self.decoder, self.transform(x))


class LMHead(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.predictions = PredictionHead(config)


class TextLMModel(nn.Module):
    """The image-grounded decoder: the BERT stack run causally, plus the language-model head."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.bert = TextModel(config)
        self.cls = LMHead(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        output_attentions: bool = False,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, TextOutput]:
        """Next-token logits (B, T, vocab) for every input position (or only the last).

        Args:
            last_only: compute logits for the final position only (all that decoding needs).
        """
        out = self.bert(
            input_ids,
            attention_mask=attention_mask,
            encoder_states=encoder_states,
            encoder_mask=encoder_mask,
            causal=True,
            cache=cache,
            output_attentions=output_attentions,
        )
        hidden = out.hidden_states[:, -1:] if last_only else out.hidden_states
        return self.cls.predictions(hidden), out
