"""What a request brings, checked and cleaned before any model runs: texts without control characters
(with notices where the model will cut or not know them), decoding options from plain dicts, the
first token of a matched text."""

from __future__ import annotations

import unicodedata
from dataclasses import fields

from ..generation.options import DecodingOptions
from ..generation.tasks import MAX_TEXT_TOKENS
from ..loading.tokenizer import CLS_ID, ENC_ID, UNK_ID, BlipTokenizer

FIRST_TOKENS = {"[ENC]": ENC_ID, "[CLS]": CLS_ID}  # [ENC]: as BLIP was trained; [CLS]: as transformers does


def decoding_options(options: DecodingOptions | dict | None) -> DecodingOptions:
    """Options as given, or built from a plain dict (the app and API speak dicts, not dataclasses)."""
    if options is None:
        return DecodingOptions()
    if isinstance(options, DecodingOptions):
        return options
    known = {f.name for f in fields(DecodingOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown decoding option(s): {', '.join(unknown)}")
    return DecodingOptions(**options)


def readable(text: str) -> str:
    """``text`` without control and format characters (NUL, escape codes, bidirectional marks), which
    the tokenizer would drop anyway, and without surrounding whitespace: "is it empty?" means this."""
    kept = (
        " " if ch in "\t\n\r" else ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t\n\r"
    )
    return "".join(kept).strip()


def text_notices(tokenizer: BlipTokenizer, texts: list[str], what: str) -> list[str]:
    """Notices for texts longer than the model reads or holding characters its vocabulary lacks."""
    notices = []
    for i, text in enumerate(texts):
        name = what if len(texts) == 1 else f"{what} {i + 1}"
        ids = tokenizer.encode(text)
        if len(ids) > MAX_TEXT_TOKENS:
            notices.append(f"{name} was cut to its first {MAX_TEXT_TOKENS} tokens (the model's limit)")
        if UNK_ID in ids:
            notices.append(f"{name} has characters the model's vocabulary does not know (read as [UNK])")
    return notices


def first_token_id(first_token: str) -> int:
    """The token id a matched text or question starts with: "[ENC]" or "[CLS]"."""
    if first_token not in FIRST_TOKENS:
        raise ValueError(f"first_token must be one of {', '.join(FIRST_TOKENS)}")
    return FIRST_TOKENS[first_token]
