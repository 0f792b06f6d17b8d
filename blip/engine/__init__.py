"""The engine: the service layer between BLIP and the app, the command line and the API.

store.py       models loaded once and kept (LRU), the offline demo model standing in
recent.py      a small thread-safe LRU and the key a picture is known by
inputs.py      cleaning and checking what a request brings (texts, options, first token)
results.py     plain dataclasses handed back, with timings
core.py        what every task stands on: the store, image encodings, a model of the right kind
captioning.py  answering.py  matching.py: the tasks, one module each (captioning also in batches)
embedding.py   unit-length image and text vectors (retrieval or BlipModel checkpoints), batched
searching.py   a collection indexed by its vectors, ranked for a text or a picture, ITM re-rank
classroom.py   a caption's check and likelihood, vision rollout, the tokenizer's view of a text
comparing.py   two settings of a task side by side, and what differs (words, scores, maps)
engine.py      ``Engine``: every task in one object
"""

from .engine import Engine
from .inputs import FIRST_TOKENS
from .matching import MAX_LABELS, MAX_TEXTS, SCORINGS
from .store import DEMO_MODELS, DEMO_NOTICE, default_device

__all__ = [
    "DEMO_MODELS",
    "DEMO_NOTICE",
    "FIRST_TOKENS",
    "MAX_LABELS",
    "MAX_TEXTS",
    "SCORINGS",
    "Engine",
    "default_device",
]
