"""Turn what can go wrong in a request into a message for the user (``gr.Error``), never a traceback."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

import gradio as gr

log = logging.getLogger("blip_explorer")

# Field names in engine messages -> the labels users see on the controls.
CONTROL_LABELS = {
    "num_sequences": "Number of outputs",
    "num_beams": "Beams",
    "max_new_tokens": "Max new tokens",
    "min_new_tokens": "Min new tokens",
    "top_p": "Top-p",
    "top_k": "Top-k",
    "temperature": "Temperature",
    "repetition_penalty": "Repetition penalty",
    "length_penalty": "Length penalty",
    "no_repeat_ngram_size": "No-repeat n-gram size",
    "strategy": "Decoding",
}


def user_message(err: Exception) -> str:
    """A one-line explanation, with engine parameter names replaced by control labels."""
    text = str(err) or type(err).__name__
    for name, label in CONTROL_LABELS.items():
        text = re.sub(rf"\b{name}\b", label, text)
    return text[:1].upper() + text[1:]


def friendly(fn: Callable) -> Callable:
    """Run ``fn``; user mistakes (ValueError, unreadable files) become a ``gr.Error`` with the reason,
    anything else is logged with its traceback and reported as an internal error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError) as err:  # bad input, bad parameters, unreadable or corrupt files
            raise gr.Error(user_message(err), print_exception=False) from None
        except Exception as err:  # a bug or an unavailable model: keep the server up and say so
            log.exception("request failed")
            raise gr.Error(
                f"Something went wrong ({type(err).__name__}): {err}", print_exception=False
            ) from None

    return wrapper
