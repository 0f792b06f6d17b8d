"""From a model name or a folder to a ready model, and from a user's file or text to model inputs.

hub.py         the table of Hub checkpoints; resolving a name to files in the Hub cache
checkpoint.py  reading weights (safetensors or weights-only .bin), strictly, into a task model
load.py        ``load()``: model + tokenizer + preprocessing in one call
tokenizer.py   BLIP's BERT WordPiece tokenizer and its special tokens
preprocess.py  image -> normalised pixels, as the checkpoints were trained
uploads.py     opening an uploaded file safely, with a clear message for every bad one
"""

from .load import LoadedModel, load

__all__ = ["LoadedModel", "load"]
