"""BLIP (arXiv 2201.12086) in compact, readable PyTorch: load the official checkpoints, caption,
answer, match, and look inside.

    >>> import blip
    >>> loaded = blip.load("caption-base")          # or a local checkpoint directory
    >>> pixels = loaded.pixels(image)               # PIL image -> (1, 3, 384, 384)
    >>> tokens = loaded.model.encode_image(pixels)  # (1, 577, 768)
    >>> blip.Engine().caption(image).captions[0].text

The layers, each a sub-package, each importing only the ones above it in this list:

    kernels     how the linear layers run on this CPU or GPU
    model       the readable network: config, attention, KV cache, vision tower, text stack, task models
    loading     checkpoints, the Hub table, tokenizer, preprocessing, uploads
    generation  logits processing, the decoding loop, beam search, captions / answers / ranking
    explain     attention and Grad-CAM maps, rollout, default layers, overlays, decoding trees
    engine      the service: model store and caches, the tasks with timings and heatmaps, results
    cli         ``python -m blip ...``
"""

from .loading.checkpoint import CheckpointError, load_checkpoint
from .loading.hub import MODELS, CheckpointUnavailableError, UnknownModelError
from .loading.load import LoadedModel, load
from .loading.preprocess import preprocess
from .loading.tokenizer import BlipTokenizer
from .model import (
    BlipConfig,
    CaptionModel,
    ConfigError,
    FeatureModel,
    QuestionAnsweringModel,
    RetrievalModel,
    TextConfig,
    VisionConfig,
    read_config,
)

__all__ = [
    "MODELS",
    "BlipConfig",
    "BlipTokenizer",
    "CaptionModel",
    "CheckpointError",
    "CheckpointUnavailableError",
    "ConfigError",
    "Engine",
    "FeatureModel",
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


def __getattr__(name: str):
    # The engine (and what it pulls in) is imported on first use, so `import blip` stays light.
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module 'blip' has no attribute {name!r}")
