"""BLIP (arXiv 2201.12086) in compact, readable PyTorch: load the official checkpoints, caption,
answer, match, and look inside.

    >>> import blip
    >>> loaded = blip.load("caption-base")          # or a local checkpoint directory
    >>> pixels = loaded.pixels(image)               # PIL image -> (1, 3, 384, 384)
    >>> tokens = loaded.model.encode_image(pixels)  # (1, 577, 768)
"""

from .checkpoint import CheckpointError, load_checkpoint
from .config import BlipConfig, ConfigError, TextConfig, VisionConfig, read_config
from .hub import MODELS, CheckpointUnavailableError, UnknownModelError
from .loading import LoadedModel, load
from .models import CaptionModel, QuestionAnsweringModel, RetrievalModel
from .preprocess import preprocess
from .tokenizer import BlipTokenizer

__all__ = [
    "MODELS",
    "BlipConfig",
    "BlipTokenizer",
    "CaptionModel",
    "CheckpointError",
    "CheckpointUnavailableError",
    "ConfigError",
    "LoadedModel",
    "QuestionAnsweringModel",
    "RetrievalModel",
    "TextConfig",
    "UnknownModelError",
    "VisionConfig",
    "load",
    "load_checkpoint",
    "preprocess",
    "read_config",
]
