"""Ask tab (visual question answering): a generated answer, or the user's candidate answers ranked by
probability; heatmaps for the question's words and the answer's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from . import controls, formatting
from . import what_if as what_ifs
from .decoding import DecodingControls, decoding_options
from .errors import friendly
from .heatmaps import explained, heatmaps_and_raw_result
from .services import Services

GENERATE, RANK = "Generate an answer", "Rank my candidate answers"
FIRST_TOKENS = ("[ENC]", "[CLS]")


def ask(
    services: Services,
    image_path: str | None,
    model: str,
    question: str,
    mode: str,
    candidates: str,
    first_token: str,
    decoding: list[Any],
    heatmaps: bool = True,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Answer ``question`` about the image.

    Args:
        mode: GENERATE or RANK (``candidates``: one answer per line).
        decoding: the decoding controls' values (used when generating).

    Returns:
        (answer markdown, answers table, token highlights, summary, heatmap state, raw result dict)
    """
    if mode not in (GENERATE, RANK):
        raise ValueError(f"mode must be one of: {GENERATE}, {RANK}")
    options = decoding_options(*decoding) if mode == GENERATE else None
    listed = [line.strip() for line in (candidates or "").splitlines() if line.strip()]
    if mode == RANK and not listed:
        raise ValueError("write the candidate answers, one per line, to rank them")
    image = services.prepare(image_path, model, "Answering", progress)
    result = services.engine.answer(
        image,
        question or "",
        model=model,
        options=options,
        candidates=listed if mode == RANK else None,
        first_token=first_token,
        explain_tokens=bool(heatmaps),
    )
    if mode == RANK:
        best, highlights = result.ranked[0], []
        rows = [[r.answer, round(r.probability, 4), round(r.log_likelihood, 4)] for r in result.ranked]
        answer, what_ran = best.answer, f"ranked {len(rows)} candidates by log-likelihood"
    else:
        best = result.answers[0]
        highlights = formatting.token_highlights(best)
        rows = [[a.text, None, round(a.score, 4)] for a in result.answers]
        answer, what_ran = best.text, formatting.decoding_text(result.decoding)
    texts = [(f"question: {question}", result.question_heatmaps), (f"answer: {answer}", best.heatmaps)]
    return (
        f"## {answer}" if answer else "## (empty answer)",
        rows,
        highlights,
        formatting.summary(result, what_ran),
        explained(image, texts, model=model),
        result.to_dict(),
    )


def ask_what_if(
    services: Services,
    image_path: str | None,
    model: str,
    question: str,
    first_token: str,
    decoding: list[Any],
    position: float | None,
    word: str,
    heatmaps: bool = False,
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """What if answer 1 had another word at ``position``? The model answers again (the image encoding
    and the question's image keys are cached), then continues from the answer's tokens before
    ``position`` and ``word``, with the same decoding settings.

    Returns:
        (original vs what-if table, the new answer's token highlights, its token table, summary markdown,
        heatmap state: the new answer's and the question's maps)
    """
    options = decoding_options(*decoding)
    image = services.prepare(image_path, model, "Answering", progress)
    original = services.engine.answer(
        image, question or "", model=model, options=options, first_token=first_token
    )
    best = original.answers[0]
    forced = what_ifs.forced_ids(services, model, best, position, word)
    changed = services.engine.answer(
        image, question or "", model=model, options=options, first_token=first_token,
        explain_tokens=bool(heatmaps), forced=forced,
    )  # fmt: skip
    question_maps = [(f"question: {changed.question}", changed.question_heatmaps)]
    return what_ifs.outcome(image, best, changed, changed.answers[0], position, word, question_maps)


def build(
    services: Services, image: gr.Image, after: Callable[[Any], Any], examples: list[list[str]] = ()
) -> None:
    models = services.models["vqa"]
    with gr.Row():
        model = controls.dropdown(models, value=models[0], label="Model")
        mode = controls.radio([GENERATE, RANK], value=GENERATE, label="Mode")
    question = gr.Textbox(label="Question", placeholder="what colour is the circle?", elem_id="ask-question")
    candidates = gr.Textbox(
        label="Candidate answers (rank mode; one per line)",
        lines=3,
        placeholder="red\ngreen\nblue",
        elem_id="ask-candidates",
    )
    if examples:
        gr.Examples(examples, inputs=[question], label="Example questions")
    decoding_controls = DecodingControls("answers", min_new_tokens=1, max_new_tokens=10)
    with gr.Accordion("Question encoding", open=False):
        first_token = controls.radio(
            list(FIRST_TOKENS),
            value="[ENC]",
            label="First token of the question ([ENC] as BLIP was trained; [CLS] as transformers does)",
        )
    heatmaps = gr.Checkbox(value=True, label="Compute heatmaps")
    run = gr.Button("Ask", variant="primary", elem_id="ask-run")
    answer = gr.Markdown(elem_id="ask-answer")
    table = gr.Dataframe(
        headers=["answer", "probability", "score / log-likelihood"],
        interactive=False,
        label="Answers",
        elem_id="ask-table",
    )
    tokens = gr.HighlightedText(label="Answer tokens, coloured by probability")
    summary = gr.Markdown()
    token_table = gr.Dataframe(
        headers=what_ifs.TOKEN_HEADERS, interactive=False, elem_id="ask-token-table",
        label="Answer 1's tokens and alternatives (click a row to try one of them below)",
    )  # fmt: skip
    what_if_section = what_ifs.WhatIfSection("ask-whatif", "answer")
    state, raw = heatmaps_and_raw_result(services)

    @friendly
    def handler(
        image, model, question, mode, candidates, first_token, heatmaps, decoding, beams, top_p, top_k,
        temperature, min_new_tokens, max_new_tokens, repetition_penalty, length_penalty,
        no_repeat_ngram_size, count, seed, progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return ask(
            services, image, model, question, mode, candidates, first_token, values, heatmaps, progress
        )

    event = run.click(
        services.gpu(handler),
        inputs=[image, model, question, mode, candidates, first_token, heatmaps, *decoding_controls.inputs],
        outputs=[answer, table, tokens, summary, state, raw],
        api_name="ask",
        concurrency_id="vqa",
        concurrency_limit=1,
    )
    after(event)
    # The token table comes from the raw result, so /ask keeps its outputs.
    event.then(lambda raw: what_ifs.token_rows_of(raw, "answers"), inputs=[raw], outputs=[token_table],
               api_visibility="private", queue=False)  # fmt: skip

    @friendly
    def what_if_handler(
        image, model, question, first_token, position, word, decoding, beams, top_p, top_k, temperature,
        min_new_tokens, max_new_tokens, repetition_penalty, length_penalty, no_repeat_ngram_size, count,
        seed, heatmaps=True, progress=gr.Progress(),
    ):  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return ask_what_if(
            services, image, model, question, first_token, values, position, word, heatmaps, progress
        )

    what_if_section.connect(
        services, token_table, what_if_handler,
        [image, model, question, first_token, what_if_section.position, what_if_section.word,
         *decoding_controls.inputs, heatmaps],
        state, "ask_what_if", "vqa", after,
    )  # fmt: skip
