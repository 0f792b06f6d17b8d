"""The heatmap viewer shared by every tab: pick a text, a word (or slide through them), a layer, a head
and a kind of map, and see it over the image, with a gallery of every word's map. The "rollout" kind
shows what the vision tower itself attends to instead, the same for every word.

What the viewer keeps of a result, and its plain choices, live in :mod:`.heatmap_state`.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from .errors import friendly
from .heatmap_state import (
    ALL,
    KINDS,
    chosen_maps,
    default_layer,
    explained,
    index,
    menu,
    prepare_rollout,
)
from .services import Services

__all__ = ["ALL", "KINDS", "HeatmapViewer", "explained", "heatmaps_and_raw_result"]
GALLERY_SIZE = 224
ROLLOUT_NOTE = (
    "**Attention rollout of `{model}`'s vision tower**{fallback}: where the class token (the picture's "
    "summary vector) gathered its information, through all {layers} layers at once (Abnar & Zuidema, "
    "2020). The image encoder reads the picture before any text, so this map is the same for every "
    "word; word, layer and head do not apply. The gallery shows the rollout after each vision layer."
)


class HeatmapViewer:
    """Controls and outputs of the viewer; build inside a layout, then :meth:`connect` to a state."""

    def __init__(self, services: Services, open_by_default: bool = True):
        self.services = services
        with gr.Accordion("Where did the model look? (heatmaps)", open=open_by_default):
            with gr.Row():
                self.text = gr.Dropdown(label="Text", choices=[], interactive=True, scale=2)
                self.word = gr.Dropdown(label="Word", choices=[], interactive=True)
                self.kind = gr.Radio(list(KINDS), value="Attention", label="Map", elem_classes="heatmap-kind")
            self.step = gr.Slider(
                0,
                1,
                value=0,
                step=1,
                label="Word by word: slide through the text",
                elem_classes="heatmap-step",
            )
            with gr.Row():
                self.layer = gr.Dropdown(
                    label="Layer", choices=[], interactive=True, elem_classes="heatmap-layer"
                )
                self.head = gr.Dropdown(label="Head", choices=[], interactive=True)
                self.opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heatmap opacity")
            with gr.Row():
                self.colormap = gr.Dropdown(
                    list(services.colormaps), value=services.colormaps[0], label="Colormap", interactive=True
                )
                self.blur = gr.Slider(
                    0.0,
                    2.0,
                    value=0.0,
                    step=0.02,
                    label=f"Blur (sigma in patches; 0 = off, LAVIS's demo uses {services.lavis_blur:g})",
                    elem_classes="heatmap-blur",
                )
            with gr.Row():
                self.overlay = gr.Image(
                    label="Heatmap", type="pil", interactive=False, height=360, elem_classes="heatmap-overlay"
                )
                self.gallery = gr.Gallery(label="Every word", columns=4, height=360, preview=False)
            self.note = gr.Markdown(elem_classes="heatmap-note")

    @property
    def controls(self) -> list[gr.components.Component]:
        return [
            self.text,
            self.word,
            self.layer,
            self.head,
            self.kind,
            self.opacity,
            self.colormap,
            self.blur,
        ]

    def connect(self, state: gr.State, rollout_step: Callable[[dict | None, str], None]) -> None:
        """Refresh the menus when ``state`` changes; redraw when any control changes. ``rollout_step``
        (state, kind) computes the rollout before it is first drawn: the one step that runs a model."""
        outputs = [self.overlay, self.gallery, self.note]
        quiet = {"api_visibility": "private"}
        draw = {"fn": friendly(self.render), "inputs": [state, *self.controls], "outputs": outputs, **quiet}
        menus = [self.text, self.word, self.layer, self.head, self.kind, self.step]
        state.change(friendly(self.menus), inputs=[state], outputs=menus, queue=False, **quiet).then(**draw)
        self.text.input(
            self.words_menu, inputs=[state, self.text], outputs=[self.word, self.step], queue=False, **quiet
        ).then(**draw)
        self.word.input(  # the gallery does not depend on the chosen word: redraw only the main map
            friendly(self.word_chosen),
            inputs=[state, *self.controls],
            outputs=[self.overlay, self.note, self.step],
            **quiet,
        )
        self.step.input(  # the slider picks the word: the menu follows, and the main map is redrawn
            friendly(self.slide),
            inputs=[state, self.step, *self.controls],
            outputs=[self.word, self.overlay, self.note],
            **quiet,
        )
        self.kind.input(  # each kind of map opens on its own measured best layer
            self.layer_for_kind,
            inputs=[state, self.text, self.kind],
            outputs=[self.layer],
            queue=False,
            **quiet,
        ).then(friendly(rollout_step), inputs=[state, self.kind], outputs=None, **quiet).then(**draw)
        for control in (self.layer, self.head, self.opacity, self.colormap, self.blur):
            control.input(**draw)

    @staticmethod
    def words_menu(state: dict | None, text: int | None) -> tuple[dict, dict]:
        """The word menu and the word slider for the chosen text (first word selected)."""
        if not state or text is None:
            return gr.update(choices=[], value=None), gr.update(value=0, maximum=1)
        maps = state["texts"][text][1]
        choices = [("all words", ALL), *((w.text, i) for i, w in enumerate(maps.words))]
        return gr.update(choices=choices, value=0), gr.update(value=0, maximum=max(len(maps.words) - 1, 1))

    @staticmethod
    def layer_for_kind(state: dict | None, text: int | None, kind: str) -> dict:
        """The layer menu set to the measured default of the chosen kind of map."""
        if not state or text is None or KINDS.get(kind) == "rollout":
            return gr.update()
        layer, info = default_layer(state["texts"][int(text)][1], KINDS.get(kind, "attention"))
        return gr.update(value=layer, info=info)

    @classmethod
    def menus(cls, state: dict | None) -> tuple:
        if not state:
            empty = gr.update(choices=[], value=None)
            return empty, empty, empty, empty, gr.update(value="Attention"), gr.update(value=0, maximum=1)
        texts = state["texts"]
        maps = texts[0][1]
        kinds = [label for label, kind in KINDS.items() if kind in (*maps.kinds(), "rollout")]
        layer, info = default_layer(maps, "attention")
        word, step = cls.words_menu(state, 0)
        return (
            gr.update(choices=[(label, i) for i, (label, _) in enumerate(texts)], value=0),
            word,
            gr.update(choices=menu(maps.num_layers, "layer", "mean of layers"), value=layer, info=info),
            gr.update(choices=menu(maps.num_heads, "head", "mean of heads"), value=ALL),
            gr.update(choices=kinds, value="Attention"),  # what the word read; the others one click away
            step,
        )

    def _draw(self, image, heat, opacity, colormap, blur):
        style = {"colormap": colormap or self.services.colormaps[0], "blur": float(blur or 0.0)}
        return self.services.overlay(image, heat, opacity=float(opacity), **style)

    def _rollout(self, state: dict) -> tuple:
        """The rollout computed by the viewer's rollout step (``prepare_rollout``): drawing runs no model."""
        cached = state.get("rollout")
        if cached is None:
            return None, "The rollout is not computed yet: choose the Rollout map again."
        maps, model, fallback = cached
        return maps, ROLLOUT_NOTE.format(model=model, fallback=fallback, layers=len(maps))

    def render_word(self, state, text, word, layer, head, kind, opacity, colormap=None, blur=0.0) -> tuple:
        """Only the chosen word's map over the picture (what a change of word needs), and a note."""
        if not state or text is None:
            return None, ""
        maps, chosen, note = chosen_maps(state, text, kind)
        if chosen == "rollout":
            rolled, note = self._rollout(state)
            if rolled is None:
                return None, note
            return self._draw(state["image"], rolled[-1], opacity, colormap, blur), note
        heat = maps.grid_map(word=index(word), layer=index(layer), head=index(head), kind=chosen)
        return self._draw(state["image"], heat, opacity, colormap, blur), note

    def word_chosen(self, state, text, word, *rest) -> tuple:
        """A word picked from the menu: its map, the note, and the slider moved to it."""
        shown, note = self.render_word(state, text, word, *rest)
        return shown, note, gr.update() if index(word) is None else gr.update(value=int(word))

    def slide(self, state, step, text, word, *rest) -> tuple:
        """The slider moved to word ``step``: the word menu follows, its map is drawn, the note names it."""
        if not state or text is None:
            return gr.update(), None, ""
        words = state["texts"][int(text)][1].words
        step = min(max(int(step or 0), 0), len(words) - 1)
        shown, note = self.render_word(state, text, step, *rest)
        where = f"Word {step + 1} of {len(words)}: **{words[step].text}**"
        return gr.update(value=step), shown, f"{where}\n\n{note}" if note else where

    def render(self, state, text, word, layer, head, kind, opacity, colormap=None, blur=0.0) -> tuple:
        """The chosen map over the picture, and every word's map (same layer, head, kind and style); for
        the rollout, the rollout after each vision layer."""
        if not state or text is None:
            return None, [], ""
        main, note = self.render_word(state, text, word, layer, head, kind, opacity, colormap, blur)
        maps, chosen, _ = chosen_maps(state, text, kind)
        small = state["image"].copy()
        small.thumbnail((GALLERY_SIZE, GALLERY_SIZE))
        if chosen == "rollout":
            rolled, _ = self._rollout(state)
            if rolled is None:
                return main, [], note
            return (
                main,
                [
                    (self._draw(small, heat, opacity, colormap, blur), f"vision layer {i + 1}")
                    for i, heat in enumerate(rolled)
                ],
                note,
            )
        gallery = [
            (
                self._draw(
                    small,
                    maps.grid_map(word=i, layer=index(layer), head=index(head), kind=chosen),
                    opacity,
                    colormap,
                    blur,
                ),
                w.text,
            )
            for i, w in enumerate(maps.words)
        ]
        return main, gallery, note


STATE_SECONDS = 30 * 60


def heatmaps_and_raw_result(services: Services) -> tuple[gr.State, gr.JSON]:
    """The end of every tab: the heatmap viewer over a new state, and the raw result as JSON."""
    # Heatmaps of a base model run to megabytes per result: each session keeps its last result's for
    # half an hour (Gradio then drops them), so memory stays bounded under many users.
    state = gr.State(time_to_live=STATE_SECONDS)
    viewer = HeatmapViewer(services)
    with gr.Accordion("Raw result (JSON)", open=False):
        raw = gr.JSON()

    def rollout_step(state: dict | None, kind: str) -> None:  # on the GPU under ZeroGPU; drawing is not
        prepare_rollout(services, state, kind)

    viewer.connect(state, services.gpu(rollout_step))
    return state, raw
