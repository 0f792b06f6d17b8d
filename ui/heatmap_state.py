"""What the heatmap viewer keeps of a result, and the plain choices it offers (no components here).

A tab stores what its last run explained in a ``gr.State`` made by :func:`explained`; the viewer only
reads it, so changing a control never reruns the text model. The one exception is the vision tower's
attention rollout, which no tab computes: the viewer asks the engine for it the first time it is shown.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from .services import Services

ALL = -1  # "mean of all" in the word / layer / head menus
ROLLOUT = "Rollout (vision tower)"
KINDS = {"Attention": "attention", "Grad-CAM": "gradcam", ROLLOUT: "rollout"}
SHOWN_SIZE = 512  # longest side of the picture the maps are drawn over
MODEL_SIZE = 768  # longest side kept for the rollout's vision pass (the models read 384 px at most)
# The task whose default model's vision tower a rollout uses when a tab did not say which model ran.
SOURCE_TASKS = {"caption": "caption", "itm": "retrieval", "vqa-question": "vqa", "vqa-answer": "vqa"}


def explained(
    image: Image.Image, texts: list[tuple[str, Any]], model: str | None = None
) -> dict[str, Any] | None:
    """State for the viewer: a downsized copy of the picture, (label, heatmaps) for each text, and the
    model that made them (whose vision tower the rollout view explains)."""
    texts = [(label, maps) for label, maps in texts if maps is not None and maps.words]
    if not texts:
        return None
    shown = image.copy()
    shown.thumbnail((SHOWN_SIZE, SHOWN_SIZE))
    if max(shown.size) < SHOWN_SIZE // 2:  # a tiny picture (the 96 px shapes): enlarge it, pixels kept sharp
        factor = SHOWN_SIZE // max(shown.size)
        shown = shown.resize((shown.width * factor, shown.height * factor), Image.Resampling.NEAREST)
    # The rollout needs the model's own view of the picture; a copy no larger than twice what the
    # models read keeps a session's state small (a 12 MP photo would be 36 MB) at no visible cost.
    model_view = image.copy()
    model_view.thumbnail((MODEL_SIZE, MODEL_SIZE))
    return {"image": shown, "texts": texts, "model": model, "model_view": model_view}


def menu(count: int, name: str, all_label: str) -> list[tuple[str, int]]:
    return [(all_label, ALL), *((f"{name} {i + 1}", i) for i in range(count))]


def index(value) -> int | None:
    """A menu value as an index; None for "mean of all"."""
    return None if value is None or int(value) == ALL else int(value)


def default_layer(maps, kind: str) -> tuple[int, str]:
    """The layer menu's value for ``kind`` maps (the measured best, ``Heatmaps.default_layer``) and the
    menu's info line saying so."""
    kind = kind if kind in maps.kinds() else "attention"
    layer = maps.default_layer(kind)
    where = "the mean over layers" if layer is None else f"layer {layer + 1}"
    name = "Grad-CAM" if kind == "gradcam" else "attention"
    # As blip/explain/layers.py records: the demo models' depth was measured with the pointing game;
    # the 12-layer real models could not be, and open on LAVIS's block or the mean.
    if maps.num_layers < 12:
        why = f"it pointed best at the named shape for {name} maps (pointing game on the demo models)"
    elif layer is not None:
        why = f"the block LAVIS's BLIP demo explains with {name}"
    else:
        why = "not measured for this model's depth, so the mean, which hides no layer"
    info = f"Opens on {where}: {why}. See the About tab."
    return (ALL if layer is None else layer), info


def chosen_maps(state: dict, text, kind: str):
    """The heatmaps of the chosen text, the kind of map to draw, and a note if it had to change."""
    maps = state["texts"][int(text)][1]
    chosen = KINDS.get(kind, "attention")
    if chosen not in (*maps.kinds(), "rollout"):
        return maps, "attention", "Grad-CAM is not available for this text; showing attention."
    return maps, chosen, ""


def prepare_rollout(services: Services, state: dict | None, kind: str) -> None:
    """Before the viewer draws the rollout: compute it (once per result, kept in the state). The only
    viewer step that runs a model, so only it asks for a GPU on ZeroGPU; drawing never does."""
    if state and KINDS.get(kind) == "rollout":
        rollout_maps(services, state)


def rollout_maps(services: Services, state: dict) -> tuple[Any, str, str]:
    """The rollout maps (layers, rows, columns) of the vision tower that saw this picture, the model's
    name and a note; computed once per result and kept in the state."""
    model = state.get("model")
    note = ""
    if not model:  # the tab did not say: the source's default model, named so nobody is misled
        source = state["texts"][0][1].source
        model = services.models.get(SOURCE_TASKS.get(source, "caption"), ["caption-base"])[0]
        note = f" (the tab did not record its model: this is `{model}`'s vision tower)"
    cached = state.get("rollout")
    if cached is None or cached[1] != model:
        result = services.engine.vision_rollout(state["model_view"], model=model)
        cached = (result.maps, model, note)
        state["rollout"] = cached  # kept for the redraws (a new result brings a new state)
    return cached
