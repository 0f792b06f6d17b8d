"""BLIP's image encoder: a plain pre-LayerNorm Vision Transformer (ViT, arXiv 2010.11929).

The image is cut into 16 x 16 patches, each patch becomes a token, a learned class token is put in
front, and a stack of transformer layers mixes them. At 384 x 384 pixels that is 24 x 24 = 576 patch
tokens plus the class token: 577 tokens of width 768 (ViT-B) or 1024 (ViT-L). Every BLIP task reads the
final, layer-normed tokens; the text side looks at all of them through cross-attention, and the
contrastive (ITC) head uses the class token alone.

Module and parameter names mirror the checkpoint keys under ``vision_model.`` so loading is a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.linear import project
from .attention import attend
from .config import VisionConfig


@dataclass
class VisionOutput:
    """What one pass of the vision tower returns. Attention maps are only filled on request."""

    hidden_states: torch.Tensor  # (B, 1 + patches, D), after the final LayerNorm
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, heads, 1 + patches, 1 + patches)


class VisionEmbeddings(nn.Module):
    """Pixels -> patch tokens, with the class token in front and positions added."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        d = config.hidden_size
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        # A strided convolution is exactly "flatten each patch and apply one linear layer".
        self.patch_embedding = nn.Conv2d(3, d, kernel_size=config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(torch.empty(1, 1, d))
        self.position_embedding = nn.Parameter(torch.empty(1, config.num_positions, d))

    def positions_for(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings for a grid_h x grid_w patch grid, (1, 1 + grid_h * grid_w, D).

        The checkpoint stores positions for its training grid (24 x 24). For other input sizes the
        patch part is resized as a 2-D image with bicubic interpolation; the class row is kept.
        """
        if grid_h == grid_w == self.grid_size:
            return self.position_embedding
        cls_pos, patch_pos = self.position_embedding[:, :1], self.position_embedding[:, 1:]
        d = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid_size, self.grid_size, d).permute(
            0, 3, 1, 2
        )  # (1, D, g, g)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, d)  # (1, h*w, D)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b = pixel_values.shape[0]
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # (B, D, h, w)
        grid_h, grid_w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2)  # (B, h*w, D), row-major over the grid
        cls = self.class_embedding.expand(b, 1, -1)
        tokens = torch.cat([cls, patches], dim=1)  # (B, 1 + h*w, D)
        return tokens + self.positions_for(grid_h, grid_w)


class VisionAttention(nn.Module):
    """Self-attention over image tokens; q, k and v come from one fused linear layer."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.projection = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, need_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attended tokens (B, N, D), and with ``need_probs`` the attention (B, heads, N, N) from the
        written-out path (the fused kernel never materialises it)."""
        b, n, d = x.shape
        # The checkpoint stacks q, k, v along the output dimension in that order.
        qkv = project(self.qkv, x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        context, probs = attend(q, k, v, need_probs=need_probs)  # no mask: every patch sees every patch
        context = context.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return project(self.projection, context), probs


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return project(self.fc2, F.gelu(project(self.fc1, x)))


class VisionLayer(nn.Module):
    """Pre-LayerNorm block: normalise, transform, add back (the residual stream is never normed)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = VisionAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)

    def forward(self, x: torch.Tensor, need_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.self_attn(self.layer_norm1(x), need_probs)
        x = x + attended
        return x + self.mlp(self.layer_norm2(x)), probs


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, x: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        maps = []
        for layer in self.layers:
            x, probs = layer(x, output_attentions)
            maps.append(probs)
        return x, tuple(maps) if output_attentions else None


class VisionModel(nn.Module):
    """Image (B, 3, H, W) -> image tokens (B, 1 + (H/16) * (W/16), D), class token first."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encode(pixel_values).hidden_states

    def encode(self, pixel_values: torch.Tensor, output_attentions: bool = False) -> VisionOutput:
        """The image tokens, and with ``output_attentions`` every layer's self-attention maps (returned,
        never kept on the modules: concurrent requests cannot see each other's maps)."""
        hidden, maps = self.encoder(self.embeddings(pixel_values), output_attentions)
        return VisionOutput(self.post_layernorm(hidden), maps)
