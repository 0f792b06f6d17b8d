"""Compare tab: one task on the shared picture in two columns with different settings (two models,
two decodings, [ENC] against [CLS], attention against Grad-CAM), run by one button; the words that
changed are highlighted and the scores set side by side. The comparison itself is the engine's
(``Engine.compare``): here only the controls, and its result laid out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image

from . import controls, formatting
from .decoding import BEAM, GREEDY, DecodingControls, decoding_options
from .errors import friendly
from .services import Services

TASKS = {"Caption": "caption", "Ask": "answer", "Match": "match"}
MODEL_KINDS = {"caption": "caption", "answer": "vqa", "match": "retrieval"}
MAPS = {"Attention": "attention", "Grad-CAM": "gradcam"}
FIRST_TOKENS = ("[ENC]", "[CLS]")
TEXT_LABEL = "Prompt prefix (Caption), question (Ask) or texts, one per line (Match)"
MAP_SIZE = 384
CHANGED = "changed"


def presets(models: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """The comparisons the tab offers ready-made: the task, the text, and what each side changes."""

    def two(kind: str) -> tuple[str, str]:
        names = models[kind]
        return names[0], names[1] if len(names) > 1 else names[0]

    coco = next((m for m in models["retrieval"] if "coco" in m), models["retrieval"][0])
    flickr = next((m for m in models["retrieval"] if "flickr" in m), models["retrieval"][-1])
    big = next((m for m in models["caption"] if "large" in m), two("caption")[1])
    texts = "a large blue circle at the top and a small green triangle at the bottom\na red star"
    return {
        "caption-base vs caption-large": {"task": "Caption", "text": "", "models": (models["caption"][0], big)},
        "Greedy vs beam search": {"task": "Caption", "text": "", "decodings": (GREEDY, BEAM)},
        "[ENC] vs [CLS] (matching)": {"task": "Match", "text": texts, "first_tokens": ("[ENC]", "[CLS]")},
        "ITM coco vs flickr": {"task": "Match", "text": texts, "models": (coco, flickr)},
        "Attention vs Grad-CAM": {"task": "Caption", "text": "", "maps": ("Attention", "Grad-CAM"), "heatmaps": True},
    }  # fmt: skip


def _side(values: dict[str, Any], task: str) -> dict[str, Any]:
    """The engine's ``Side`` fields from one column's control values."""
    return {
        "model": values["model"],
        "options": decoding_options(*values["decoding"]) if task != "match" else None,
        "first_token": values["first_token"],
        "map_kind": MAPS.get(values["map"], "attention"),
    }


def _highlights(words: list[tuple[str, bool]], task: str) -> list[tuple[str, str | None]]:
    """(text, label) spans for ``gr.HighlightedText``: changed words labelled, spaces (or, for the
    matched texts, line breaks) between them."""
    spans: list[tuple[str, str | None]] = []
    for i, (word, changed) in enumerate(words):
        if i:
            spans.append(("\n" if task == "match" else " ", None))
        spans.append((word, CHANGED if changed else None))
    return spans


def _shown(image: Image.Image) -> Image.Image:
    """The picture the maps are drawn over: at most MAP_SIZE a side, tiny ones enlarged, pixels sharp."""
    shown = image.convert("RGB")
    shown.thumbnail((MAP_SIZE, MAP_SIZE))
    if max(shown.size) < MAP_SIZE // 2:
        factor = MAP_SIZE // max(shown.size)
        shown = shown.resize((shown.width * factor, shown.height * factor), Image.Resampling.NEAREST)
    return shown


def _number(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _side_text(name: str, side: dict[str, Any], result: Any, task: str) -> str:
    what = [f"`{side['model']}`"]
    if task != "match":
        what.append(formatting.decoding_text(result.decoding))
    if task != "caption":
        what.append(f"first token {side['first_token']}")
    time = formatting.timing_text(result.timings, result.image_cached)
    return f"**{name}:** {' · '.join(what)} · {time}"


def compare(
    services: Services,
    image_path: str | None,
    task: str,
    text: str,
    heatmaps: bool,
    left: dict[str, Any],
    right: dict[str, Any],
    progress: Callable[..., Any] | None = None,
) -> tuple:
    """Run ``task`` with each column's settings and lay out what differs.

    Args:
        task: a key of TASKS ("Caption", "Ask", "Match").
        left, right: each column's values: ``model``, ``decoding`` (the decoding controls' values, in
            ``DecodingControls.inputs`` order), ``first_token``, ``map`` (a key of MAPS).

    Returns:
        (left words, right words, scores table, summary markdown, left map, right map, raw dict)
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of: {', '.join(TASKS)}")
    kind = TASKS[task]
    if kind == "answer" and not (text or "").strip():
        raise ValueError("type a question to compare the answers to it")
    if kind == "match" and not (text or "").strip():
        raise ValueError("type the texts to match, one per line")
    sides = [_side(left, kind), _side(right, kind)]
    image = services.image(image_path)
    if progress:
        progress(0.1, desc=f"Running {task} twice: {sides[0]['model']}, then {sides[1]['model']}")
    result = services.engine.compare(image, kind, sides[0], sides[1], text or "", explain=bool(heatmaps))
    rows = [[s.name, _number(s.left), _number(s.right), _number(s.delta)] for s in result.scores]
    results = (result.left_result, result.right_result)
    banner = formatting.notices_text(results[0] if results[0].offline_demo else results[1])
    lines = [banner] if banner else []
    lines += [f"> **{note}**" for note in result.notes]
    lines += [_side_text(n, s, r, kind) for n, s, r in zip(("Left", "Right"), sides, results, strict=True)]
    if result.map_agreement is not None:
        lines.append(
            f"**Maps:** correlation {result.map_agreement:.3f} between the two heatmaps "
            "(1: the same places, 0: unrelated)"
        )
    maps = []
    for name, side, grid in zip(("left", "right"), sides, result.maps, strict=True):
        maps.append(None if grid is None else services.overlay(_shown(image), grid, opacity=0.5))
        if heatmaps and grid is None:
            lines.append(f"No {side['map_kind']} map for the {name} side's text.")
    return (
        _highlights(result.left_words, kind),
        _highlights(result.right_words, kind),
        rows,
        "\n\n".join(lines),
        maps[0],
        maps[1],
        result.to_dict(),
    )


class SideControls:
    """One column's controls."""

    def __init__(self, name: str, services: Services, model: str, decoding: str):
        every = [m for kind in ("caption", "vqa", "retrieval") for m in services.models[kind]]
        self.model = controls.dropdown(every, value=model, label=f"{name}: model")
        self.first_token = controls.radio(list(FIRST_TOKENS), value="[ENC]", label="First token (Ask, Match)")
        self.map = controls.radio(list(MAPS), value="Attention", label="Heatmap to compare")
        self.decoding = DecodingControls("outputs", decoding=decoding)

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.model, self.first_token, self.map, *self.decoding.inputs]


def _values(model, first_token, map_kind, *decoding) -> dict[str, Any]:
    return {"model": model, "first_token": first_token, "map": map_kind, "decoding": list(decoding)}


def build(services: Services, image: gr.Image, after: Callable[[Any], Any]) -> None:
    """The tab's layout and events; ``image`` is the shared picture."""
    ready = presets(services.models)
    gr.Markdown(
        "The same task on the shared picture, twice, with different settings: pick a ready-made "
        "comparison or set each side yourself, then **Compare**. Words that differ are highlighted."
    )
    with gr.Row():
        preset = gr.Dropdown(list(ready), value=None, label="Try a comparison", elem_id="compare-preset")
        task = controls.radio(list(TASKS), value="Caption", label="Task", elem_id="compare-task")
        heatmaps = gr.Checkbox(value=False, label="Compute heatmaps (needed to compare maps)")
    text = gr.Textbox(label=TEXT_LABEL, lines=2, elem_id="compare-text")
    with gr.Row():
        with gr.Column(elem_id="compare-left"):
            left = SideControls("Left", services, services.models["caption"][0], GREEDY)
        with gr.Column(elem_id="compare-right"):
            right = SideControls("Right", services, services.models["caption"][0], BEAM)
    run = gr.Button("Compare", variant="primary", elem_id="compare-run")
    summary = gr.Markdown(elem_id="compare-summary")
    with gr.Row():
        colours = {CHANGED: "#f59e0b"}
        shown = {"color_map": colours, "show_legend": True, "show_inline_category": False}
        left_words = gr.HighlightedText(label="Left", elem_id="compare-left-text", **shown)
        right_words = gr.HighlightedText(label="Right", elem_id="compare-right-text", **shown)
    with gr.Row():
        left_map = gr.Image(label="Left map", type="pil", interactive=False, elem_id="compare-left-map")
        right_map = gr.Image(label="Right map", type="pil", interactive=False, elem_id="compare-right-map")
    scores = gr.Dataframe(
        headers=["score", "left", "right", "difference (right - left)"], interactive=False,
        label="Scores", elem_id="compare-scores",
    )  # fmt: skip
    with gr.Accordion("Raw result (JSON)", open=False):
        raw = gr.JSON()

    def task_chosen(task_name: str) -> tuple:
        """The task's models on both sides, and its token limits (answers are short: 1 to 10)."""
        kind = TASKS.get(task_name, "caption")
        names = services.models[MODEL_KINDS[kind]]
        low, high = (1, 10) if kind == "answer" else (5, 20)
        return (*[gr.update(choices=names, value=names[0])] * 2, low, low, high, high)

    task.input(
        task_chosen, inputs=[task],
        outputs=[left.model, right.model, left.decoding.min_new, right.decoding.min_new, left.decoding.max_new,
                 right.decoding.max_new],
        api_visibility="private", queue=False,
    )  # fmt: skip

    def choose(name: str | None) -> tuple:
        """Set every control a ready-made comparison names; the rest to its defaults."""
        if name not in ready:
            return (gr.update(),) * 11
        chosen = ready[name]
        kind = MODEL_KINDS[TASKS[chosen["task"]]]
        default = services.models[kind][0]
        models = chosen.get("models", (default, default))
        decodings = chosen.get("decodings", (GREEDY, GREEDY))
        tokens = chosen.get("first_tokens", ("[ENC]", "[ENC]"))
        maps = chosen.get("maps", ("Attention", "Attention"))
        names = services.models[kind]
        return (
            chosen["task"], chosen["text"], chosen.get("heatmaps", False),
            *(gr.update(choices=names, value=m) for m in models), *decodings, *tokens, *maps,
        )  # fmt: skip

    preset.input(
        choose,
        inputs=[preset],
        outputs=[task, text, heatmaps, left.model, right.model, left.decoding.decoding, right.decoding.decoding,
                 left.first_token, right.first_token, left.map, right.map],
        api_visibility="private", queue=False,
    )  # fmt: skip

    @friendly
    def handler(
        image, task, text, heatmaps,
        left_model, left_first_token, left_map, left_decoding, left_beams, left_top_p, left_top_k,
        left_temperature, left_min_new_tokens, left_max_new_tokens, left_repetition_penalty,
        left_length_penalty, left_no_repeat_ngram_size, left_count, left_seed,
        right_model, right_first_token, right_map, right_decoding, right_beams, right_top_p, right_top_k,
        right_temperature, right_min_new_tokens, right_max_new_tokens, right_repetition_penalty,
        right_length_penalty, right_no_repeat_ngram_size, right_count, right_seed,
        progress=gr.Progress(),
    ):  # fmt: skip
        a = _values(left_model, left_first_token, left_map, left_decoding, left_beams, left_top_p, left_top_k,
                    left_temperature, left_min_new_tokens, left_max_new_tokens, left_repetition_penalty,
                    left_length_penalty, left_no_repeat_ngram_size, left_count, left_seed)  # fmt: skip
        b = _values(right_model, right_first_token, right_map, right_decoding, right_beams, right_top_p,
                    right_top_k, right_temperature, right_min_new_tokens, right_max_new_tokens,
                    right_repetition_penalty, right_length_penalty, right_no_repeat_ngram_size, right_count,
                    right_seed)  # fmt: skip
        return compare(services, image, task, text, heatmaps, a, b, progress)

    event = run.click(
        services.gpu(handler),
        inputs=[image, task, text, heatmaps, *left.inputs, *right.inputs],
        outputs=[left_words, right_words, scores, summary, left_map, right_map, raw],
        api_name="compare",
        concurrency_id="compare",
        concurrency_limit=1,
    )
    after(event)
