"""Decoding controls shared by the Caption and Ask tabs, and their mapping to the engine's options."""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import controls

# What the decoding menu offers, mapped to the engine's strategies by decoding_options.
GREEDY, BEAM, NUCLEUS, TOP_K = "Greedy", "Beam search", "Nucleus sampling (top-p)", "Top-k sampling"
DECODINGS = (GREEDY, BEAM, NUCLEUS, TOP_K)
# BLIP's own demo: beam search with 3 beams, 5 to 20 new tokens for captions.
DEFAULTS = {
    "decoding": BEAM,
    "beams": 3,
    "top_p": 0.9,
    "top_k": 50,
    "temperature": 1.0,
    "min_new_tokens": 5,
    "max_new_tokens": 20,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "count": 1,
    "seed": 0,
}


def decoding_options(
    decoding: str,
    beams: int,
    top_p: float,
    top_k: int,
    temperature: float,
    min_new_tokens: int,
    max_new_tokens: int,
    repetition_penalty: float,
    length_penalty: float,
    no_repeat_ngram_size: int,
    count: int,
    seed: float | None,
) -> dict[str, Any]:
    """The engine's decoding options for a menu choice. Controls the choice does not use are left out;
    the engine validates the rest and names any value out of range."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of: {', '.join(DECODINGS)}")
    options: dict[str, Any] = {
        "min_new_tokens": int(min_new_tokens),
        "max_new_tokens": int(max_new_tokens),
        "repetition_penalty": float(repetition_penalty),
        "no_repeat_ngram_size": int(no_repeat_ngram_size),
        "num_sequences": int(count),
    }
    if decoding == GREEDY:
        options["strategy"] = "greedy"
    elif decoding == BEAM:
        options |= {"strategy": "beam", "num_beams": int(beams), "length_penalty": float(length_penalty)}
    else:
        options |= {"strategy": "sample", "temperature": float(temperature)}
        options["seed"] = None if seed is None or seed == "" else int(seed)
        if decoding == NUCLEUS:
            options |= {"top_p": float(top_p), "top_k": 0}
        else:
            options |= {"top_k": int(top_k), "top_p": 1.0}
    return options


class DecodingControls:
    """The decoding menu plus an "Advanced decoding" section; ``inputs`` lists them in the order
    :func:`decoding_options` takes them."""

    def __init__(self, what: str, **overrides: Any):
        values = DEFAULTS | overrides
        self.decoding = controls.radio(list(DECODINGS), value=values["decoding"], label="Decoding")
        with gr.Accordion("Advanced decoding", open=False):
            with gr.Row():
                self.beams = controls.slider(
                    1, 10, value=values["beams"], step=1, label="Beams (beam search)"
                )
                self.length_penalty = controls.slider(
                    -2.0, 2.0, value=values["length_penalty"], step=0.1, label="Length penalty (beam search)"
                )
                self.count = controls.slider(1, 5, value=values["count"], step=1, label=f"Number of {what}")
            with gr.Row():
                self.top_p = controls.slider(
                    0.05, 1.0, value=values["top_p"], step=0.05, label="Top-p (nucleus sampling)"
                )
                self.top_k = controls.slider(
                    1, 200, value=values["top_k"], step=1, label="Top-k (top-k sampling)"
                )
                self.temperature = controls.slider(
                    0.1, 2.0, value=values["temperature"], step=0.05, label="Temperature (sampling)"
                )
                self.seed = controls.number(
                    value=values["seed"],
                    precision=0,
                    minimum=0,
                    maximum=2**32 - 1,
                    label="Seed (sampling; empty = random)",
                )
            with gr.Row():
                self.min_new = controls.slider(
                    0, 50, value=values["min_new_tokens"], step=1, label="Min new tokens"
                )
                self.max_new = controls.slider(
                    1, 100, value=values["max_new_tokens"], step=1, label="Max new tokens"
                )
                self.repetition = controls.slider(
                    1.0, 3.0, value=values["repetition_penalty"], step=0.05, label="Repetition penalty"
                )
                self.no_repeat = controls.slider(
                    0,
                    5,
                    value=values["no_repeat_ngram_size"],
                    step=1,
                    label="No-repeat n-gram size (0 = off)",
                )

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [
            self.decoding, self.beams, self.top_p, self.top_k, self.temperature, self.min_new,
            self.max_new, self.repetition, self.length_penalty, self.no_repeat, self.count, self.seed,
        ]  # fmt: skip
