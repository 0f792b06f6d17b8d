"""Search tab: index a collection of pictures once, rank it for a text (ITC, optionally re-ranked by
ITM) or for one of its pictures ("more like this one"), and see where the model looked on a result.

The index is the engine's object, kept in the session's state as it is: the UI only passes it back
to the engine (it holds a tensor, which ``ui/`` never touches) and reads its pictures' names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from . import collection, controls, formatting
from .collection import MAX_PICTURES, Picture
from .errors import friendly, user_message
from .heatmaps import STATE_SECONDS, explained, heatmaps_and_raw_result
from .match_tab import FIRST_TOKENS
from .services import Services

THUMBNAIL = 256  # longest side of the pictures the galleries show (the originals may be 25 MB each)
TOP, MAX_TOP = 12, 50  # results shown: default, most
MAX_RERANK = 100  # the engine's limit for ITM re-ranking
COLUMNS = ["rank", "picture", "ITC cosine", "ITM probability"]
INTRO = """\
Index your pictures once (image files, a ZIP archive of them, or the bundled examples), then search them
with words: **ITC** ranks every picture by the cosine of its embedding with the text's (fast: one
product over the whole index); **ITM** can then re-read the best few *together* with the text for a
sharper order. Choose a result to see where the model looked for each word.
"""


@dataclass
class Collection:
    """One session's indexed pictures (kept in a ``gr.State``)."""

    index: Any  # the engine's ImageIndex: model name, picture names, vectors (opaque here)
    files: dict[str, str]  # picture name -> its file, to open it again (re-ranking, heatmaps)
    thumbs: dict[str, str] = field(default_factory=dict)  # picture name -> its small copy
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    ignored: list[str] = field(default_factory=list)  # archive entries that are not pictures
    folder: str | None = None  # unpacked archives and thumbnails: removed with the collection
    seconds: float = 0.0

    @property
    def model(self) -> str:
        return self.index.model

    def open(self, services: Services, name: str) -> Image.Image:
        if name not in self.files:
            raise ValueError(f"{name!r} is not a picture of the indexed collection")
        return services.open_image(self.files[name])


def _thumbnail(image: Image.Image, target: Path) -> str:
    """A small RGB copy for the galleries: PNG for tiny pictures (sharp edges), JPEG otherwise."""
    small = image.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    if small.mode in ("RGBA", "LA", "PA") or (small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")  # transparency over white, as the model sees it
        small = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    small = small.convert("RGB")
    path = target.with_suffix(".png" if max(small.size) <= 128 else ".jpg")
    small.save(path, quality=90)
    return str(path)


def index_collection(
    services: Services,
    pictures: list[Picture],
    model: str,
    folder: Path | None,
    progress: Callable[..., Any] | None = None,
) -> Collection:
    """Index the readable ``pictures`` under ``model``; thumbnails go to ``folder`` (None: no gallery).

    Raises:
        ValueError: none of the pictures could be read (each one's reason is in the message).
    """
    if progress:
        progress(0.0, desc=f"Loading {model} (downloaded on first use)")
    services.engine.model(model)
    unreadable = [(p.name, p.error) for p in pictures if p.error]
    readable = [p for p in pictures if not p.error]
    thumbs: dict[str, str] = {}

    def opened():
        """(name, picture) for each file that opens; the others are listed, not fatal."""
        for n, picture in enumerate(readable):
            try:
                image = services.open_image(picture.path)
            except (ValueError, OSError) as err:
                unreadable.append((picture.name, user_message(err)))
                continue
            if folder is not None:
                thumbs[picture.name] = _thumbnail(image, folder / f"thumb-{n:05d}")
            yield picture.name, image

    def indexed(done: int) -> None:
        if progress:
            progress(done / len(readable), desc=f"Indexed {done} of {len(readable)} pictures")

    start = time.monotonic()
    index = services.engine.index_images(opened(), model=model, progress=indexed)
    if not len(index):
        reasons = "; ".join(f"{name}: {why}" for name, why in unreadable[:5])
        raise ValueError(f"none of the pictures could be read ({reasons})")
    names = set(index.paths)
    files = {p.name: p.path for p in readable if p.name in names}
    work = None if folder is None else str(folder)
    return Collection(index, files, thumbs, unreadable, [], work, time.monotonic() - start)


def index_pictures(
    services: Services,
    paths: list[str] | None,
    examples: list[str] | None,
    model: str,
    progress: Callable[..., Any] | None = None,
) -> Collection:
    """Index uploaded files (images, ZIP archives) and the chosen example sets (``services.examples``
    keys) under ``model``; unpacked pictures and thumbnails live in a folder of their own."""
    if not paths and not examples:  # before loading a model
        raise ValueError(f"{collection.NO_PICTURES}, or choose some examples")
    unknown = [key for key in examples or [] if key not in services.examples]
    if unknown:
        raise ValueError(f"examples must be among {', '.join(services.examples)} (got {unknown[0]!r})")
    example_paths = [path for key in examples or [] for path in services.examples[key][1]]
    folder = collection.work_folder("search-")
    try:
        gathered = collection.gather(paths, folder, example_paths)
        found = index_collection(services, gathered.pictures, model, folder, progress)
    except BaseException:
        collection.remove(str(folder))
        raise
    found.ignored = gathered.ignored
    return found


def collection_text(services: Services, found: Collection) -> str:
    """What was indexed, what could not be read, and what was left out (markdown)."""
    took = formatting.seconds(found.seconds)
    parts = [f"**{len(found.files)} pictures indexed** with `{found.model}` in {took}."]
    if any(m["name"] == found.model and m["offline_demo"] for m in services.engine.model_status()):
        parts[0] += " (The offline demo model: it knows only coloured shapes.)"
    if found.unreadable:
        listed = [f"- {name}: {why}" for name, why in found.unreadable[:20]]
        if len(found.unreadable) > 20:
            listed.append(f"- ... and {len(found.unreadable) - 20} more")
        parts.append("\n".join([f"**Could not read {len(found.unreadable)}:**", *listed]))
    if found.ignored:
        shown = ", ".join(found.ignored[:10]) + (", ..." if len(found.ignored) > 10 else "")
        parts.append(f"Left out {len(found.ignored)} files of the archives that are not pictures: {shown}")
    return "\n\n".join(parts)


def gallery(found: Collection) -> list[tuple[str, str]]:
    return [(found.thumbs[name], name) for name in found.index.paths if name in found.thumbs]


def find(
    services: Services,
    found: Collection | None,
    query: str | Image.Image,
    top: int,
    rerank: int = 0,
    first_token: str = "[ENC]",
) -> Any:
    """The engine's search result for a text or a picture over the collection."""
    if found is None:
        raise ValueError(
            "index some pictures first (add files or the examples, then press 'Index the pictures'); "
            f"a collection is kept for {STATE_SECONDS // 60} minutes after its last search"
        )
    collection.touch(found.folder)
    return services.engine.search(
        found.index, query, top=int(top), rerank=int(rerank), first_token=first_token,
        open_image=lambda name: found.open(services, name),
    )  # fmt: skip


def raw_result(result: Any) -> dict[str, Any]:
    """The search result as JSON, each hit's picture under "picture": gradio_client takes any dict with a
    "path" key for a file to download, and a picture's name is not one."""
    raw = result.to_dict()
    raw["hits"] = [{"picture": hit.pop("path"), **hit} for hit in raw["hits"]]
    return raw


def _shown(found: Collection, result: Any, first_token: str, like: str | None = None, top: int = 0) -> tuple:
    """(results gallery, table rows, summary, raw dict, the last search for choosing a result); a search
    for pictures ``like`` one leaves that picture out and keeps the best ``top`` of the others."""
    if like is not None:
        result.hits = [hit for hit in result.hits if hit.path != like][:top]
    hits = result.hits
    results, rows = [], []
    for rank, hit in enumerate(hits, 1):
        itm = "" if hit.itm_probability is None else f" · ITM {hit.itm_probability:.3f}"
        label = f"{rank}. ITC {hit.itc_cosine:.3f}{itm} · {hit.path}"  # scores first: long names are cut
        results.append((found.thumbs.get(hit.path, found.files[hit.path]), label))
        rows.append([rank, hit.path, round(hit.itc_cosine, 4),
                     None if hit.itm_probability is None else round(hit.itm_probability, 4)])  # fmt: skip
    ran = f"ITC over {result.indexed} pictures"
    if result.reranked:
        ran += f", the best {result.reranked} re-ranked by ITM (read from {first_token})"
    what = f"pictures like **{like}**" if like is not None else f"**{result.query}**"
    summary = f"Results for {what}\n\n" + formatting.summary(result, ran, label="Ranking")
    last = {"query": None if result.query == "picture" else result.query, "first_token": first_token,
            "names": [hit.path for hit in hits]}  # fmt: skip
    return results, rows, summary, raw_result(result), last


def search(
    services: Services, found: Collection | None, query: str, top: int, rerank: int, first_token: str
) -> tuple:
    """Rank the collection for ``query``: (gallery, table rows, summary, raw dict, last search)."""
    if first_token not in FIRST_TOKENS:
        raise ValueError(f"first token must be one of {', '.join(FIRST_TOKENS)}")
    result = find(services, found, query or "", top, rerank, first_token)
    return _shown(found, result, first_token)


def more_like_this(services: Services, found: Collection | None, name: str, top: int) -> tuple:
    """Rank the collection by likeness to its picture ``name`` (which is left out of the results)."""
    if not name:
        raise ValueError("choose a result first: the search ranks pictures like it")
    picture = found.open(services, name) if found else None
    result = find(services, found, picture, int(top) + 1)  # one more: the picture itself comes first
    return _shown(found, result, "[ENC]", like=name, top=int(top))


def explain(
    services: Services, found: Collection | None, last: dict | None, position: int
) -> tuple[str, dict | None, str]:
    """The ``position``-th result of the last search: (its name, heatmap state, a note with its scores)."""
    if found is None or not last or not 0 <= position < len(last["names"]):
        raise ValueError("search first, then choose a result")
    name = last["names"][position]
    if last["query"] is None:
        note = f"**{name}**: this search was by a picture; search with words to see where the model looks."
        return name, None, note
    image = found.open(services, name)
    result = services.engine.match(
        image, [last["query"]], model=found.model, first_token=last["first_token"], explain_words=True
    )
    row = result.rows[0]
    note = (f"**{name}** for “{row.text}”: ITM probability {row.itm_probability:.3f}, ITC cosine "
            f"{row.itc_cosine:.3f}. The heatmaps below show where the model looked for each word.")  # fmt: skip
    return name, explained(image, [(row.text, row.heatmaps)], model=found.model), note


def build(services: Services, after: Callable[[Any], Any]) -> None:
    """The tab's layout and events; the collection lives in this session's state."""
    models = services.models["retrieval"]
    gr.Markdown(INTRO)
    with gr.Row():
        files = gr.File(
            label=f"Pictures: image files or ZIP archives of them (up to {MAX_PICTURES} pictures)",
            file_count="multiple", file_types=["image", ".zip"], elem_id="search-files",
        )  # fmt: skip
        with gr.Column():
            choices = [(title, key) for key, (title, _) in services.examples.items()]
            examples = controls.checkbox_group(choices, value=[], label="Examples", elem_id="search-examples")
            model = controls.dropdown(models, value=models[0], label="Model (indexes and searches)")
            index = gr.Button("Index the pictures", elem_id="search-index")
    indexed = gr.Markdown(label="Indexed", elem_id="search-indexed")
    with gr.Accordion("The collection", open=False):
        shelf = gr.Gallery(label="Indexed pictures", columns=8, height=260, elem_id="search-collection")
    with gr.Row():
        query = gr.Textbox(label="Search for", placeholder="a red circle", scale=4, elem_id="search-query")
        run = gr.Button("Search", variant="primary", elem_id="search-run")
    with gr.Row():
        top = controls.slider(1, MAX_TOP, value=TOP, step=1, label="Results shown")
        rerank = controls.slider(0, MAX_RERANK, value=0, step=1, label="Re-rank the best k by ITM (0 = off)")
        first_token = controls.radio(list(FIRST_TOKENS), value="[ENC]", label="First token (ITM)")
    results = gr.Gallery(
        label="Results: choose one to see where the model looked", columns=6, height=330,
        allow_preview=False, elem_id="search-results",
    )  # fmt: skip
    summary = gr.Markdown(label="Summary", elem_id="search-summary")
    with gr.Row():
        chosen = gr.Textbox(label="Chosen picture", interactive=False, scale=4, elem_id="search-chosen")
        similar = gr.Button("More like this one", elem_id="search-similar")
    note = gr.Markdown(elem_id="search-note")
    with gr.Accordion("Scores", open=False):
        table = gr.Dataframe(
            headers=COLUMNS, interactive=False, wrap=True, label="Scores", elem_id="search-table"
        )
    heat, raw = heatmaps_and_raw_result(services)
    # The index is small (1 KB a picture) but its folder of unpacked pictures and thumbnails is not:
    # both go when Gradio drops the state (30 minutes after its last use, or after the page is closed).
    kept = gr.State(time_to_live=STATE_SECONDS, delete_callback=lambda c: c and collection.remove(c.folder))
    last = gr.State(time_to_live=STATE_SECONDS)

    @friendly
    def index_handler(old, files=None, examples=None, model="", progress=gr.Progress()):
        # files=None makes the uploads optional for API clients (the examples alone are a collection)
        found = index_pictures(services, files, examples, model, progress)
        if old is not None:  # replaced: Gradio calls delete_callback only when it drops a session's state
            collection.remove(old.folder)
        return found, gallery(found), collection_text(services, found)

    # Each search hands the collection back to its state: its time to live then counts from this use.
    @friendly
    def search_handler(found, query, top, rerank, first_token):
        return *search(services, found, query, top, rerank, first_token), found

    @friendly
    def similar_handler(found, picture, top):
        return *more_like_this(services, found, picture, top), found

    @friendly
    def explain_handler(found, last, evt: gr.SelectData):
        return explain(services, found, last, int(evt.index))

    def cleared():
        return "", None, ""

    outputs = [results, table, summary, raw, last, kept]
    clear = {"fn": cleared, "outputs": [chosen, heat, note], "api_visibility": "private", "queue": False}
    retrieval = {"concurrency_id": "retrieval", "concurrency_limit": 1}
    event = index.click(services.gpu(index_handler), inputs=[kept, files, examples, model],
                        outputs=[kept, shelf, indexed], api_name="index", **retrieval)  # fmt: skip
    after(event.success(**clear))
    event = gr.on([run.click, query.submit], services.gpu(search_handler),
                  inputs=[kept, query, top, rerank, first_token], outputs=outputs, api_name="search",
                  **retrieval)  # fmt: skip
    after(event.success(**clear))
    event = similar.click(services.gpu(similar_handler), inputs=[kept, chosen, top], outputs=outputs,
                          api_name="more_like_this", **retrieval)  # fmt: skip
    after(event.success(**clear))
    event = results.select(services.gpu(explain_handler), inputs=[kept, last], outputs=[chosen, heat, note],
                           api_visibility="private", **retrieval)  # fmt: skip
    after(event)
