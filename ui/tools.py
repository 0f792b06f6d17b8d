"""Tools for assistants (MCP) and programs: one endpoint per task that answers in plain text.

The tabs' endpoints (``/caption``, ``/ask``, ...) return what the page draws: tables, token highlights,
the heatmap viewer's state, the raw result. An assistant connected over MCP needs a tool named for its
task, every parameter described, and the answer as text first. Each tool here runs its tab's function
and writes the result as text; the heavy parts (the raw JSON, the heatmaps) only when asked for.

Each tool has a single text output, not text + image + JSON: Gradio 6.31's MCP server hands a queued
endpoint's outputs back as separate items only when the client asked for progress notifications, and
otherwise as one text holding the Python repr of the whole tuple. So the heatmaps are written as text
too: where each word looked, and its map on a coarse grid (the page draws them).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from . import ask_tab, controls, match_tab, search_tab, tool_text, zeroshot_tab
from .decoding import BEAM, GREEDY, DecodingControls
from .errors import friendly
from .services import Services

# Tool name (what an MCP client sees) -> the API endpoint that serves it (the tabs own /caption etc.).
ENDPOINTS = {
    name: f"{name}_text" for name in ("caption", "ask", "match", "classify", "batch_caption", "search")
}
IMAGE = (
    "the picture, as an http(s) URL or a data:image/...;base64 URL (JPEG, PNG, GIF, WebP, BMP or TIFF, "
    "up to 25 MB)."
)
INCLUDE_HEATMAPS = (
    "also say where the model looked for each word (slower: explanations are computed); default false."
)
FIRST_TOKEN = (
    "the token the text encoder starts with: '[ENC]' (as BLIP was trained; default) or '[CLS]' "
    "(as Hugging Face transformers does)."
)


def _include_json(what: str) -> str:
    return f"also append the raw result as JSON ({what}); default false."


# --- descriptions (Gradio reads a tool's description and its parameters' from the docstring) ----------


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _span(slider: gr.Slider) -> str:
    return f"{_number(slider.minimum)} to {_number(slider.maximum)}"


def docstring(summary: str, args: dict[str, str], returns: str) -> str:
    """A Google-style docstring. Gradio keeps one line per parameter, so each description is one line."""
    return "\n".join([summary, "", "Args:", *(f"    {k}: {v}" for k, v in args.items()), "", "Returns:",
                      f"    {returns}"])  # fmt: skip


def decoding_args(c: DecodingControls, what: str) -> dict[str, str]:
    """The decoding parameters' descriptions, with the ranges and defaults of the controls ``c``."""

    def default(component: gr.components.Component) -> str:
        return _number(component.value)

    return {
        "decoding": f"how words are chosen: 'Greedy' (the likeliest word at each step), 'Beam search' "
        f"(keeps the `beams` likeliest partial {what}), 'Nucleus sampling (top-p)' or 'Top-k sampling' "
        f"(random draws shaped by temperature and top_p or top_k; repeatable with seed); "
        f"default '{c.decoding.value}'.",
        "beams": f"beam search only: partial {what} kept at each step, integer {_span(c.beams)}; "
        f"default {default(c.beams)}.",
        "top_p": f"nucleus sampling only: draw from the fewest words whose probabilities add up to top_p, "
        f"{_span(c.top_p)}; default {default(c.top_p)}.",
        "top_k": f"top-k sampling only: draw from the k likeliest words, integer {_span(c.top_k)}; "
        f"default {default(c.top_k)}.",
        "temperature": f"sampling only: below 1 sharpens, above 1 flattens the word probabilities, "
        f"{_span(c.temperature)}; default {default(c.temperature)}.",
        "min_new_tokens": f"wordpieces to write before the model may stop, integer {_span(c.min_new)}, "
        f"at most max_new_tokens; default {default(c.min_new)}.",
        "max_new_tokens": f"most wordpieces to write, integer {_span(c.max_new)}; "
        f"default {default(c.max_new)}.",
        "repetition_penalty": f"lowers the score of words already written (1 = off), "
        f"{_span(c.repetition)}; default {default(c.repetition)}.",
        "length_penalty": f"beam search only: above 0 favours longer {what}, below 0 shorter, "
        f"{_span(c.length_penalty)}; default {default(c.length_penalty)}.",
        "no_repeat_ngram_size": f"never repeat a run of this many wordpieces (0 = off), integer "
        f"{_span(c.no_repeat)}; default {default(c.no_repeat)}.",
        "count": f"how many {what} to return, best first, integer {_span(c.count)} (1 with greedy; at most "
        f"beams with beam search); default {default(c.count)}.",
        "seed": f"sampling only: the random seed, integer {_number(c.seed.minimum)} to "
        f"{_number(c.seed.maximum)} (the same seed gives the same draw); default {default(c.seed)}.",
    }


def _models(services: Services, task: str, what: str) -> str:
    names = services.models[task]
    return f"the {what} model: one of {', '.join(names)}; default {names[0]}."


# --- registration -------------------------------------------------------------------------------------


def _switches(*names: str) -> list[gr.Checkbox]:
    """The include_heatmaps / include_json inputs, off by default (they make the answer long)."""
    return [gr.Checkbox(value=False, label=name) for name in names or ("include_heatmaps", "include_json")]


def _register(
    services: Services, fn: Callable[..., str], doc: str, inputs: list, concurrency_id: str
) -> None:
    """Serve ``fn`` as endpoint ``/<name>_text`` and MCP tool ``<name>``, in its tab's concurrency group
    (one request at a time per task, shared with the tab)."""
    fn.__doc__ = doc
    tool = gr.mcp.tool()(services.gpu(friendly(fn)))  # the MCP tool takes its name from the function
    gr.on(
        triggers=[],  # nothing on the page runs it: an API and MCP endpoint only
        fn=tool,
        inputs=inputs,
        outputs=gr.Textbox(label="result"),
        api_name=ENDPOINTS[fn.__name__],
        concurrency_id=concurrency_id,
        concurrency_limit=1,
    )


def build(services: Services) -> None:
    """Register every tool. Their inputs are components in a hidden column, so that the API values go
    through the same checks as the page's (ranges and choices named in refusals, uploads opened safely)."""
    with gr.Column(visible=False):
        _caption_tool(services)
        _ask_tool(services)
        _match_tool(services)
        _classify_tool(services)
        _batch_caption_tool(services)
        _search_tool(services)


def _caption_tool(services: Services) -> None:
    models = services.models["caption"]
    inputs = [
        controls.image_path(label="Image"),
        controls.dropdown(models, value=models[0], label="Model"),
        gr.Textbox(value="", label="Prompt prefix"),
    ]
    c = DecodingControls("captions")
    inputs += [*c.inputs, *_switches()]

    def caption(
        image: str | None, model: str, prompt: str, decoding: str, beams: int, top_p: float, top_k: int,
        temperature: float, min_new_tokens: int, max_new_tokens: int, repetition_penalty: float,
        length_penalty: float, no_repeat_ngram_size: int, count: int, seed: int, include_heatmaps: bool,
        include_json: bool, progress: gr.Progress = gr.Progress(),
    ) -> str:  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return tool_text.caption_text(
            services, image, model, prompt, values, include_heatmaps, include_json, progress
        )

    doc = docstring(
        "Caption a picture with BLIP: a short English sentence saying what it shows.",
        {
            "image": IMAGE,
            "model": _models(services, "caption", "captioning"),
            "prompt": "optional start of the caption for the model to continue, e.g. 'a picture of'; "
            "default '' (none).",
            **decoding_args(c, "captions"),
            "include_heatmaps": INCLUDE_HEATMAPS,
            "include_json": _include_json("every score, the tokens with their probabilities, timings"),
        },
        "the caption on the first line (with count > 1, numbered captions with their scores, best first); "
        "then notes (such as the offline demo model answering), the model, the decoding that ran and the "
        "time; then, if asked, where the model looked for each word and the raw JSON.",
    )
    _register(services, caption, doc, inputs, "caption")


def _ask_tool(services: Services) -> None:
    models = services.models["vqa"]
    inputs = [
        controls.image_path(label="Image"),
        gr.Textbox(label="Question"),
        controls.dropdown(models, value=models[0], label="Model"),
        gr.Textbox(value="", label="Candidate answers"),
        controls.radio(list(ask_tab.FIRST_TOKENS), value="[ENC]", label="First token"),
    ]
    c = DecodingControls("answers", min_new_tokens=1, max_new_tokens=10)
    inputs += [*c.inputs, *_switches()]

    def ask(
        image: str | None, question: str, model: str, candidates: str, first_token: str, decoding: str,
        beams: int, top_p: float, top_k: int, temperature: float, min_new_tokens: int, max_new_tokens: int,
        repetition_penalty: float, length_penalty: float, no_repeat_ngram_size: int, count: int, seed: int,
        include_heatmaps: bool, include_json: bool, progress: gr.Progress = gr.Progress(),
    ) -> str:  # fmt: skip
        values = [decoding, beams, top_p, top_k, temperature, min_new_tokens, max_new_tokens,
                  repetition_penalty, length_penalty, no_repeat_ngram_size, count, seed]  # fmt: skip
        return tool_text.ask_text(services, image, model, question, candidates, first_token, values,
                        include_heatmaps, include_json, progress)  # fmt: skip

    doc = docstring(
        "Answer a question about a picture with BLIP (visual question answering): a short answer "
        "written by the model, or your candidate answers ranked by probability.",
        {
            "image": IMAGE,
            "question": "the question in English, e.g. 'what colour is the circle?' (required).",
            "model": _models(services, "vqa", "question answering"),
            "candidates": "optional answers to rank instead of generating one, one per line (newline "
            "separated); default '' (generate an answer).",
            "first_token": FIRST_TOKEN.replace("text encoder", "question encoder"),
            **decoding_args(c, "answers"),
            "include_heatmaps": INCLUDE_HEATMAPS,
            "include_json": _include_json("every score, the tokens with their probabilities, timings"),
        },
        "the answer on the first line (with count > 1, numbered answers with their scores; with "
        "candidates, one 'answer: probability' line per candidate, best first); then notes, the model, "
        "what ran and the time; then, if asked, where the model looked for each word of the question and "
        "the answer, and the raw JSON.",
    )
    _register(services, ask, doc, inputs, "vqa")


def _match_tool(services: Services) -> None:
    models = services.models["retrieval"]
    inputs = [
        controls.image_path(label="Image"),
        gr.Textbox(label="Texts"),
        controls.dropdown(models, value=models[0], label="Model"),
        controls.radio(list(match_tab.FIRST_TOKENS), value="[ENC]", label="First token"),
        *_switches(),
    ]

    def match(
        image: str | None, texts: str, model: str, first_token: str, include_heatmaps: bool,
        include_json: bool, progress: gr.Progress = gr.Progress(),
    ) -> str:  # fmt: skip
        return tool_text.match_text(
            services, image, model, texts, first_token, include_heatmaps, include_json, progress
        )

    doc = docstring(
        "Score how well each of several texts describes a picture, with two BLIP scores: ITM, the "
        "probability (0 to 1) that the text matches, judged by reading it while looking at the picture, "
        "one text at a time; and ITC, the cosine similarity (-1 to 1) of picture and text embedded "
        "separately, meaningful only compared between texts.",
        {
            "image": IMAGE,
            "texts": "the texts to score, one per line (newline separated), at most 32 (required).",
            "model": _models(services, "retrieval", "matching"),
            "first_token": FIRST_TOKEN,
            "include_heatmaps": INCLUDE_HEATMAPS,
            "include_json": _include_json("every score and timing"),
        },
        "one line per text in the order given, 'text: ITM probability, ITC cosine'; then notes, the "
        "model and the time; then, if asked, where the model looked for each word and the raw JSON.",
    )
    _register(services, match, doc, inputs, "retrieval")


def _classify_tool(services: Services) -> None:
    models = services.models["retrieval"]
    scorings = list(zeroshot_tab.SCORINGS)
    inputs = [
        controls.image_path(label="Image"),
        gr.Textbox(label="Labels"),
        controls.dropdown(models, value=models[0], label="Model"),
        gr.Textbox(value=zeroshot_tab.TEMPLATE, label="Prompt template"),
        controls.radio(scorings, value=scorings[0], label="Scoring"),
        zeroshot_tab.temperature_slider(),
        *_switches(),
    ]

    def classify(
        image: str | None, labels: str, model: str, template: str, scoring: str, temperature: float,
        include_heatmaps: bool, include_json: bool, progress: gr.Progress = gr.Progress(),
    ) -> str:  # fmt: skip
        return tool_text.classify_text(services, image, model, labels, template, scoring, temperature,
                             include_heatmaps, include_json, progress)  # fmt: skip

    temperature = inputs[5]
    doc = docstring(
        "Classify a picture zero-shot with BLIP: which of your labels fits it best, with no training for "
        "those labels; each label is put into a prompt template and scored against the picture.",
        {
            "image": IMAGE,
            "labels": "the labels, separated by commas or new lines, e.g. 'cat, dog, bird'; duplicates "
            "dropped, at most 100 used (required).",
            "model": _models(services, "retrieval", "matching"),
            "template": "the prompt each label is put into, with {} where the label goes; default "
            f"'{inputs[3].value}'.",
            "scoring": f"'{scorings[0]}' (cosine of picture and prompt embeddings, softmax with the "
            f"temperature; default), '{scorings[1]}' (the match head reads every prompt with the picture; "
            f"slower, sharper) or '{scorings[2]}' (ITC keeps the 5 best labels, ITM re-ranks them, the "
            "rest get 0).",
            "temperature": f"softmax temperature for ITC scores (lower is more confident), "
            f"{_span(temperature)}; default {_number(temperature.value)}; not used by ITM alone.",
            "include_heatmaps": INCLUDE_HEATMAPS.replace(
                "each word", f"each word of the {tool_text.MAX_EXPLAINED_TEXTS} best prompts"
            ),
            "include_json": _include_json("every score and timing"),
        },
        "one 'label: probability' line per label, best first, probabilities adding up to 1; then notes, "
        "the model, the scoring and the time; then, if asked, where the model looked for each word and "
        "the raw JSON.",
    )
    _register(services, classify, doc, inputs, "retrieval")


def _batch_caption_tool(services: Services) -> None:
    models = services.models["caption"]
    # URLs in a text, not a gr.File list: Gradio 6.31's MCP server cannot take a list of files (the
    # schema it writes for one does not validate, and it converts only single file parameters).
    inputs = [
        gr.Textbox(label="Images"),
        controls.dropdown(models, value=models[0], label="Model"),
        controls.radio([GREEDY, BEAM], value=BEAM, label="Decoding"),
        *_switches("include_json"),
    ]

    def batch_caption(
        images: str, model: str, decoding: str, include_json: bool, progress: gr.Progress = gr.Progress()
    ) -> str:
        return tool_text.batch_caption_text(services, images, model, decoding, include_json, progress)

    doc = docstring(
        "Caption many pictures in one call with BLIP; a picture that cannot be fetched or read gets its "
        "reason and the rest go on.",
        {
            "images": f"the pictures' URLs, one per line (newline separated), each http(s) or "
            f"data:image/...;base64, at most {tool_text.MAX_URLS} (required).",
            "model": _models(services, "caption", "captioning"),
            "decoding": f"'{GREEDY}' (faster) or '{BEAM}' (3 beams, as the caption tool's default); "
            f"default '{BEAM}'.",
            "include_json": _include_json("each picture's caption, score, seconds and error"),
        },
        "one numbered line per picture in the order given, 'n. caption' or 'n. could not be read: reason'; "
        "then the model and decoding; then, if asked, the rows as JSON.",
    )
    _register(services, batch_caption, doc, inputs, "caption")


def _search_tool(services: Services) -> None:
    """Stateless, unlike the tab: the pictures come with the query and are indexed for this call alone."""
    models = services.models["retrieval"]
    top = controls.slider(1, search_tab.MAX_TOP, value=10, step=1, label="Results shown")
    rerank = controls.slider(0, search_tab.MAX_RERANK, value=0, step=1, label="Re-rank the best k by ITM")
    first_token = controls.radio(list(match_tab.FIRST_TOKENS), value="[ENC]", label="First token")
    inputs = [gr.Textbox(label="Query"), gr.Textbox(value="", label="Images"),
              controls.dropdown(models, value=models[0], label="Model"), top, rerank, first_token,
              *_switches("include_json")]  # fmt: skip

    def search(
        query: str, images: str, model: str, top: int, rerank: int, first_token: str, include_json: bool,
        progress: gr.Progress = gr.Progress(),
    ) -> str:  # fmt: skip
        return tool_text.search_text(services, query, images, model, top, rerank, first_token, include_json,
                                     progress)  # fmt: skip

    examples = ", ".join(f"{len(paths)} {key}" for key, (_, paths) in services.examples.items())
    doc = docstring(
        "Search pictures with words using BLIP: rank them by how well each matches the query, best first "
        "(ITC: cosine of picture and text embeddings; optionally re-ranked by ITM, the match probability).",
        {
            "query": "what to look for, in English, e.g. 'a red circle' or 'a cat on a sofa' (required).",
            "images": f"the pictures to search: their URLs, one per line (newline separated), each http(s) "
            f"or data:image/...;base64, at most {tool_text.MAX_URLS}; default '' (the bundled examples: "
            f"{examples}).",
            "model": _models(services, "retrieval", "matching"),
            "top": f"how many of the best pictures to list, integer {_span(top)}; default {_number(top.value)}.",
            "rerank": f"re-rank this many of the best by ITM (sharper, slower: each is read again with the "
            f"query), integer {_span(rerank)}; default {_number(rerank.value)} (off).",
            "first_token": FIRST_TOKEN + " Used by the ITM re-ranking.",
            "include_json": _include_json("every hit's scores and the timings"),
        },
        "one 'rank. picture: ITC cosine[, ITM probability]' line per picture, best first (a picture given "
        "by URL is named by its file name and its place in the list, 'cat.jpg (picture 2)'); then the "
        "pictures that could not be read, notes, the model, what ran and the time; then, if asked, the JSON.",
    )
    _register(services, search, doc, inputs, "retrieval")


def keep_tabs_out_of_mcp(app: gr.Blocks) -> None:
    """Keep the tabs' endpoints out of the MCP tool list (they stay API endpoints for gradio_client).

    Gradio offers every public endpoint as an MCP tool named after its Python function (five tools
    called ``handler``) and has no switch for "API, not MCP". Its tool list skips functions whose
    ``_mcp_type`` (what ``gr.mcp.tool``, ``resource`` and ``prompt`` set) is not "tool", so every public
    function not marked as a tool gets another value. tests/test_mcp.py checks the list is the tools above.
    """
    for block_fn in app.fns.values():
        public = block_fn.fn is not None and block_fn.api_visibility == "public"
        if public and getattr(block_fn.fn, "_mcp_type", None) is None:
            block_fn.fn._mcp_type = "api"
