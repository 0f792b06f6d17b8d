"""The readable BLIP (arXiv 2201.12086): nothing here loads files, caches results or serves requests.

Read it top-down, smallest part first:

    config.py       the frozen configuration, read from a checkpoint's config.json
    attention.py    scaled dot-product attention written out, and its masks
    cache.py        the KV cache that lets decoding run one new token per step
    vision.py       the ViT image encoder
    text.py         the BERT text stack: self-attention, cross-attention to the image, the LM head
    task_models.py  the task models built from them: captioning, question answering, retrieval, and
                    BlipModel's two-tower embeddings
"""

from .cache import KVCache
from .config import BlipConfig, ConfigError, TextConfig, VisionConfig, config_from_dict, read_config
from .task_models import (
    TASK_MODELS,
    BlipBase,
    CaptionModel,
    FeatureModel,
    QuestionAnsweringModel,
    RetrievalModel,
)

__all__ = [
    "TASK_MODELS",
    "BlipBase",
    "BlipConfig",
    "CaptionModel",
    "ConfigError",
    "FeatureModel",
    "KVCache",
    "QuestionAnsweringModel",
    "RetrievalModel",
    "TextConfig",
    "VisionConfig",
    "config_from_dict",
    "read_config",
]
