"""Writing text: captions, answers and answer ranking on top of our own decoding loop.

options.py   what a caller asks for (DecodingOptions) and gets back (GeneratedSequence)
logits.py    penalties, bans and sampling filters applied to next-token scores
stepper.py   the loop's moving parts: one decoder step over the cache, each row's history
forcing.py   teacher forcing: forced prefixes ("what if?") and the likelihood of a given text
tree.py      beam search recorded as a tree, on request
beam.py      beam search
decoding.py  ``generate()``: greedy search and sampling, or beam search
tasks.py     captioning, question answering, answer ranking and caption scoring on a task model
"""

from .decoding import generate
from .options import STRATEGIES, DecodingOptions, GeneratedSequence

__all__ = ["STRATEGIES", "DecodingOptions", "GeneratedSequence", "generate"]
