"""Plain text for results: timings, the decoding that ran, token probabilities, notices."""

from __future__ import annotations

from typing import Any

STRATEGY_NAMES = {"greedy": "greedy search", "beam": "beam search", "sample": "sampling"}
STAGES = ("load", "vision", "decode", "text", "explain", "itc", "itm")  # itc, itm: a search's two steps


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def timing_text(timings: dict[str, float], image_cached: bool) -> str:
    """ "1.24 s (vision 0.40 s, decode 0.80 s) · image encoding reused"."""
    parts = [f"{stage} {seconds(timings[stage])}" for stage in STAGES if timings.get(stage, 0) >= 0.0005]
    text = f"{seconds(timings.get('total', 0.0))} ({', '.join(parts)})" if parts else ""
    if image_cached:
        text += " · image encoding reused from the cache"
    return text


def decoding_text(decoding: dict[str, Any]) -> str:
    """The options that actually ran, naming only those the strategy uses."""
    strategy = decoding.get("strategy", "greedy")
    parts = [STRATEGY_NAMES.get(strategy, strategy)]
    if strategy == "beam":
        parts += [f"{decoding['num_beams']} beams", f"length penalty {decoding['length_penalty']:g}"]
    if strategy == "sample":
        parts.append(f"temperature {decoding['temperature']:g}")
        parts.append(f"top-k {decoding['top_k']}" if decoding["top_k"] else "top-k off")
        parts.append(f"top-p {decoding['top_p']:g}" if decoding["top_p"] < 1 else "top-p off")
        parts.append(f"seed {decoding['seed']}" if decoding.get("seed") is not None else "no seed")
    if decoding.get("num_sequences", 1) > 1:
        parts.append(f"{decoding['num_sequences']} outputs")
    parts.append(f"{decoding['min_new_tokens']}-{decoding['max_new_tokens']} new tokens")
    if decoding.get("repetition_penalty", 1.0) != 1.0:
        parts.append(f"repetition penalty {decoding['repetition_penalty']:g}")
    if decoding.get("no_repeat_ngram_size", 0):
        parts.append(f"no repeated {decoding['no_repeat_ngram_size']}-grams")
    return " · ".join(parts)


def token_highlights(item) -> list[tuple[str, float]]:
    """(text, probability) spans for ``gr.HighlightedText``: one per generated wordpiece, [SEP] left out."""
    spans = []
    for token in item.tokens:
        if token.token == "[SEP]":
            continue
        text = (
            token.token[2:] if token.token.startswith("##") else (" " + token.token if spans else token.token)
        )
        spans.append((text, round(token.probability, 3)))
    return spans


def token_rows(item) -> list[list[Any]]:
    """A row per generated token: position, token, probability, the model's other top choices."""
    return [
        [
            i + 1,
            token.token,
            round(token.probability, 4),
            ", ".join(f"{alt} {p:.3f}" for alt, p in token.alternatives if alt != token.token),
        ]
        for i, token in enumerate(item.tokens)
    ]


def notices_text(result) -> str:
    """Markdown for a result's notices; the offline demo notice becomes a banner."""
    lines = []
    for notice in result.notices:
        lines.append(f"> ⚠️ **{notice}**" if notice.startswith("Offline demo model") else f"- {notice}")
    return "\n".join(lines)


def summary(result, what_ran: str = "", label: str = "Decoding that ran") -> str:
    """Notices (the offline-demo banner first), what ran and how long it took, as markdown."""
    parts = [notices_text(result)]
    if what_ran:
        parts.append(f"**{label}:** {what_ran}")
    parts.append(f"**Time:** {timing_text(result.timings, result.image_cached)} · model `{result.model}`")
    return "\n\n".join(p for p in parts if p)
