"""Model configuration, read from a checkpoint's ``config.json``.

BLIP (Li et al., 2022, arXiv 2201.12086) pairs a ViT image encoder with a BERT-style text stack. The
Hub's ``config.json`` describes both halves in ``vision_config`` and ``text_config``. Files written in
2022 carry many keys we do not need (generation defaults, ``transformers_version``...): the reader takes
the fields it knows and ignores the rest. Sizes are *required*: falling back to a library default is how
a BLIP port ends up with 8 text heads instead of 12.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A ``config.json`` that does not describe a BLIP model we can build."""


@dataclass(frozen=True)
class VisionConfig:
    """The ViT image encoder (``vision_config``)."""

    hidden_size: int  # width D of every image token: 768 for ViT-B, 1024 for ViT-L
    intermediate_size: int  # MLP width, 4 * D in all official checkpoints
    num_hidden_layers: int  # 12 (base) or 24 (large)
    num_attention_heads: int  # 12 (base) or 16 (large)
    image_size: int = 384  # every official checkpoint was fine-tuned at 384 x 384
    patch_size: int = 16  # ViT-*/16
    layer_norm_eps: float = 1e-5  # Hub value; the original BLIP code used 1e-6

    @property
    def grid_size(self) -> int:
        """Patches per side at the trained resolution (24 for 384 / 16)."""
        return self.image_size // self.patch_size

    @property
    def num_positions(self) -> int:
        """Image tokens: one per patch plus the class token (577 at 384 / 16)."""
        return self.grid_size**2 + 1


@dataclass(frozen=True)
class TextConfig:
    """The BERT-base text stack (``text_config``), shared by encoders and decoders."""

    hidden_size: int  # 768 in every official checkpoint
    intermediate_size: int  # 3072
    num_hidden_layers: int  # 12
    num_attention_heads: int  # 12 on the Hub (the transformers class default of 8 is wrong for BLIP)
    encoder_hidden_size: int  # width of cross-attention keys/values: always the vision width
    vocab_size: int = 30524  # bert-base-uncased (30522) + [DEC] + [ENC]
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    bos_token_id: int = 30522  # [DEC]: the decoder's first token
    sep_token_id: int = 102  # [SEP]: generation stops here (not on eos_token_id = 2)
    pad_token_id: int = 0  # [PAD]
    # ``is_decoder`` in the file: transformers gives the text layers cross-attention unless it is false.
    # Every task model needs it; a BlipModel saved with it false has no ``crossattention`` tensors.
    cross_attention: bool = True


@dataclass(frozen=True)
class BlipConfig:
    """A whole BLIP checkpoint: both towers plus the retrieval projection width."""

    vision: VisionConfig
    text: TextConfig
    image_text_hidden_size: int = 256  # ITC projection width (vision_proj / text_proj)
    projection_dim: int = 512  # BlipModel's projection width (visual_projection / text_projection)
    architectures: tuple[str, ...] = field(default=())  # e.g. ("BlipForConditionalGeneration",)


_VISION_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
_TEXT_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
_VISION_OPTIONAL = ("image_size", "patch_size", "layer_norm_eps")
_TEXT_OPTIONAL = (
    "vocab_size",
    "max_position_embeddings",
    "layer_norm_eps",
    "bos_token_id",
    "sep_token_id",
    "pad_token_id",
)


def _pick(section: dict[str, Any], name: str, required: tuple[str, ...], optional: tuple[str, ...]):
    """Take the known fields of one config section; fail loudly on a missing required one."""
    missing = [key for key in required if section.get(key) is None]
    if missing:
        raise ConfigError(f"{name} is missing required field(s): {', '.join(missing)}")
    picked = {key: section[key] for key in required}
    picked.update({key: section[key] for key in optional if section.get(key) is not None})
    return picked


def _check_activation(section: dict[str, Any], name: str) -> None:
    # Our layers hard-wire exact (erf) GELU, the only activation BLIP uses.
    act = section.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConfigError(f"{name}.hidden_act is {act!r}; only 'gelu' is supported")


def config_from_dict(raw: dict[str, Any]) -> BlipConfig:
    """Build a :class:`BlipConfig` from the parsed JSON of a Hub ``config.json``.

    Args:
        raw: the parsed file. Unknown keys are ignored.
    """
    vision_raw = raw.get("vision_config") or raw.get("vision_config_dict")
    text_raw = raw.get("text_config") or raw.get("text_config_dict")
    if not isinstance(vision_raw, dict) or not isinstance(text_raw, dict):
        raise ConfigError("config.json needs 'vision_config' and 'text_config' sections")
    _check_activation(vision_raw, "vision_config")
    _check_activation(text_raw, "text_config")

    vision = VisionConfig(**_pick(vision_raw, "vision_config", _VISION_REQUIRED, _VISION_OPTIONAL))
    # The cross-attention width is derived, never read: files often omit it or carry a stale 768.
    text_fields = _pick(text_raw, "text_config", _TEXT_REQUIRED, _TEXT_OPTIONAL)
    cross_attention = text_raw.get("is_decoder") is not False  # only an explicit false removes it
    text = TextConfig(encoder_hidden_size=vision.hidden_size, cross_attention=cross_attention, **text_fields)

    for side, cfg in (("vision_config", vision), ("text_config", text)):
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ConfigError(
                f"{side}.hidden_size {cfg.hidden_size} is not divisible by "
                f"num_attention_heads {cfg.num_attention_heads}"
            )
    return BlipConfig(
        vision=vision,
        text=text,
        image_text_hidden_size=int(raw.get("image_text_hidden_size", 256)),
        projection_dim=int(raw.get("projection_dim", 512)),
        architectures=tuple(raw.get("architectures") or ()),
    )


def read_config(path: str | Path) -> BlipConfig:
    """Read ``config.json`` from a checkpoint directory (or the file itself).

    Args:
        path: a checkpoint directory or the path of its ``config.json``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no config.json at {path}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    return config_from_dict(raw)
