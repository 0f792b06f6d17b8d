"""The heatmap viewer shared by every tab: pick a text, a word, a layer, a head and a kind of map, and
see it over the image, with a gallery of every word's map.

A tab stores what its last run explained in a ``gr.State`` made by :func:`explained`; the viewer only
reads it, so changing a control never reruns the model.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from .services import Services

ALL = -1  # "mean of all" in the word / layer / head menus
KINDS = {"Attention": "attention", "Grad-CAM": "gradcam"}
SHOWN_SIZE = 512  # longest side of the picture the maps are drawn over
GALLERY_SIZE = 224


def explained(image: Image.Image, texts: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """State for the viewer: a downsized copy of the picture and (label, heatmaps) for each text."""
    texts = [(label, maps) for label, maps in texts if maps is not None and maps.words]
    if not texts:
        return None
    shown = image.copy()
    shown.thumbnail((SHOWN_SIZE, SHOWN_SIZE))
    if max(shown.size) < SHOWN_SIZE // 2:  # a tiny picture (the 96 px shapes): enlarge it, pixels kept sharp
        factor = SHOWN_SIZE // max(shown.size)
        shown = shown.resize((shown.width * factor, shown.height * factor), Image.Resampling.NEAREST)
    return {"image": shown, "texts": texts}


def _menu(count: int, name: str, all_label: str) -> list[tuple[str, int]]:
    return [(all_label, ALL), *((f"{name} {i + 1}", i) for i in range(count))]


class HeatmapViewer:
    """Controls and outputs of the viewer; build inside a layout, then :meth:`connect` to a state."""

    def __init__(self, services: Services, open_by_default: bool = True):
        self.services = services
        with gr.Accordion("Where did the model look? (heatmaps)", open=open_by_default):
            with gr.Row():
                self.text = gr.Dropdown(label="Text", choices=[], interactive=True, scale=2)
                self.word = gr.Dropdown(label="Word", choices=[], interactive=True)
                self.kind = gr.Radio(list(KINDS), value="Attention", label="Map")
            with gr.Row():
                self.layer = gr.Dropdown(label="Layer", choices=[], interactive=True)
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
            self.note = gr.Markdown()

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

    def connect(self, state: gr.State) -> None:
        """Refresh the menus when ``state`` changes; redraw when any control changes."""
        outputs = [self.overlay, self.gallery, self.note]
        state.change(
            self.menus,
            inputs=[state],
            outputs=[self.text, self.word, self.layer, self.head, self.kind],
            api_visibility="private",
            queue=False,
        ).then(self.render, inputs=[state, *self.controls], outputs=outputs, api_visibility="private")
        self.text.input(
            self.words_menu,
            inputs=[state, self.text],
            outputs=[self.word],
            api_visibility="private",
            queue=False,
        ).then(self.render, inputs=[state, *self.controls], outputs=outputs, api_visibility="private")
        self.word.input(  # the gallery does not depend on the chosen word: redraw only the main map
            self.render_word,
            inputs=[state, *self.controls],
            outputs=[self.overlay, self.note],
            api_visibility="private",
        )
        for control in self.controls[2:]:
            control.input(
                self.render, inputs=[state, *self.controls], outputs=outputs, api_visibility="private"
            )

    @staticmethod
    def words_menu(state: dict | None, text: int | None) -> dict:
        if not state or text is None:
            return gr.update(choices=[], value=None)
        maps = state["texts"][text][1]
        choices = [("all words", ALL), *((w.text, i) for i, w in enumerate(maps.words))]
        return gr.update(choices=choices, value=0)

    @classmethod
    def menus(cls, state: dict | None) -> tuple:
        if not state:
            empty = gr.update(choices=[], value=None)
            return empty, empty, empty, empty, gr.update(value="Attention")
        texts = state["texts"]
        maps = texts[0][1]
        kinds = [label for label, kind in KINDS.items() if kind in maps.kinds()]
        return (
            gr.update(choices=[(label, i) for i, (label, _) in enumerate(texts)], value=0),
            cls.words_menu(state, 0),
            gr.update(choices=_menu(maps.num_layers, "layer", "mean of layers"), value=ALL),
            gr.update(choices=_menu(maps.num_heads, "head", "mean of heads"), value=ALL),
            gr.update(choices=kinds, value="Attention"),  # what the word read; Grad-CAM is one click away
        )

    def _draw(self, image, heat, opacity, colormap, blur):
        style = {"colormap": colormap or self.services.colormaps[0], "blur": float(blur or 0.0)}
        return self.services.overlay(image, heat, opacity=float(opacity), **style)

    def render_word(self, state, text, word, layer, head, kind, opacity, colormap=None, blur=0.0) -> tuple:
        """Only the chosen word's map over the picture (what a change of word needs), and a note."""
        if not state or text is None:
            return None, ""
        maps, chosen, note = _chosen_maps(state, text, kind)
        heat = maps.grid_map(word=_index(word), layer=_index(layer), head=_index(head), kind=chosen)
        return self._draw(state["image"], heat, opacity, colormap, blur), note

    def render(self, state, text, word, layer, head, kind, opacity, colormap=None, blur=0.0) -> tuple:
        """The chosen map over the picture, and every word's map (same layer, head, kind and style)."""
        if not state or text is None:
            return None, [], ""
        main, note = self.render_word(state, text, word, layer, head, kind, opacity, colormap, blur)
        maps, chosen, _ = _chosen_maps(state, text, kind)
        small = state["image"].copy()
        small.thumbnail((GALLERY_SIZE, GALLERY_SIZE))
        gallery = [
            (
                self._draw(
                    small,
                    maps.grid_map(word=i, layer=_index(layer), head=_index(head), kind=chosen),
                    opacity,
                    colormap,
                    blur,
                ),
                w.text,
            )
            for i, w in enumerate(maps.words)
        ]
        return main, gallery, note


def _index(value) -> int | None:
    """A menu value as an index; None for "mean of all"."""
    return None if value is None or int(value) == ALL else int(value)


def _chosen_maps(state: dict, text, kind: str):
    """The heatmaps of the chosen text, the kind of map to draw, and a note if it had to change."""
    maps = state["texts"][int(text)][1]
    chosen = KINDS.get(kind, "attention")
    if chosen not in maps.kinds():
        return maps, "attention", "Grad-CAM is not available for this text; showing attention."
    return maps, chosen, ""


STATE_SECONDS = 30 * 60


def heatmaps_and_raw_result(services: Services) -> tuple[gr.State, gr.JSON]:
    """The end of every tab: the heatmap viewer over a new state, and the raw result as JSON."""
    # Heatmaps of a base model run to megabytes per result: each session keeps its last result's for
    # half an hour (Gradio then drops them), so memory stays bounded under many users.
    state = gr.State(time_to_live=STATE_SECONDS)
    viewer = HeatmapViewer(services)
    with gr.Accordion("Raw result (JSON)", open=False):
        raw = gr.JSON()
    viewer.connect(state)
    return state, raw
