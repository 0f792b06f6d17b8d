"""Handler-level tests of the Search and Batch tabs and the search tool, on the shipped offline demo
models: collections of files and ZIP archives (hostile ones included), ranking, heatmaps on a result,
batched captions with every decoding control, the ITM check and the three downloads."""

from __future__ import annotations

import csv
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from conftest import decoding_values
from PIL import Image

from blip.engine import Engine
from blip.explain import render
from blip.loading.uploads import open_upload
from ui import batch_tab, collection, search_tab, tool_text
from ui.decoding import BEAM, GREEDY, decoding_options
from ui.services import Services

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
PHOTOS = sorted((ROOT / "assets" / "examples" / "photos").glob("*.jpg"))
MODELS = {"caption": ["caption-base"], "vqa": ["vqa-base"], "retrieval": ["itm-base-coco"]}
RED_CIRCLES = {SHAPES[0].name, SHAPES[2].name}  # "a small red circle in the centre" / "at the top"


def truth(path: Path) -> str:
    """The caption an example image was made from (its file name)."""
    return path.stem.split("_", 1)[1].replace("_", " and ").replace("-", " ")


@pytest.fixture(scope="module")
def services() -> Services:
    examples = {
        "shapes": ("Shapes", [str(p) for p in SHAPES]),
        "photos": ("Photos", [str(p) for p in PHOTOS]),
    }
    return Services(
        engine=Engine(device="cpu", demo="always"), open_image=open_upload, overlay=render.overlay,
        models=MODELS, examples=examples,
    )  # fmt: skip


@pytest.fixture(scope="module")
def shapes(services):
    found = search_tab.index_pictures(services, [], ["shapes"], "itm-base-coco")
    yield found
    collection.remove(found.folder)


def make_zip(path: Path, entries: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return str(path)


# --- collections ------------------------------------------------------------------------------------


def test_a_zip_is_unpacked_under_names_of_our_own(tmp_path):
    archive = make_zip(tmp_path / "set.zip", {
        "pics/a.png": SHAPES[0].read_bytes(), "pics/b.png": SHAPES[1].read_bytes(), "notes.txt": b"hello",
        "__MACOSX/pics/._a.png": b"junk", "pics/": b"",
    })  # fmt: skip
    folder = tmp_path / "work"
    folder.mkdir()
    gathered = collection.gather([archive, str(SHAPES[0])], folder)
    assert [p.name for p in gathered.pictures] == ["pics/a.png", "pics/b.png", SHAPES[0].name]
    assert gathered.ignored == ["notes.txt"]
    unpacked = [Path(p.path) for p in gathered.pictures[:2]]
    assert all(p.parent == folder for p in unpacked) and unpacked[0].read_bytes() == SHAPES[0].read_bytes()
    # Two pictures of the same name stay apart.
    twice = collection.gather([str(SHAPES[0]), str(SHAPES[0])], folder).pictures
    assert [p.name for p in twice] == [SHAPES[0].name, SHAPES[0].name.replace(".png", " (2).png")]


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png", "..\\evil.png"]
)
def test_a_zip_with_a_path_leaving_it_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "evil.zip", {"fine.png": SHAPES[0].read_bytes(), name: b"x"})
    with pytest.raises(ValueError, match=r"evil\.zip was refused: its entry .* points outside the archive"):
        collection.gather([archive], tmp_path)
    assert not list(tmp_path.glob("0*"))  # nothing unpacked


def test_zip_bombs_and_oversized_archives_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(collection, "MAX_ZIP_BYTES", 2**20)  # 1 MB instead of 256 MB: a small bomb
    bomb = make_zip(tmp_path / "bomb.zip", {f"{n}.png": bytes(600_000) for n in range(3)})
    assert Path(bomb).stat().st_size < 20_000
    with pytest.raises(
        ValueError, match=r"bomb\.zip was refused: its pictures would unpack to 2 MB .*zip bomb"
    ):
        collection.gather([bomb], tmp_path)
    monkeypatch.setattr(collection, "MAX_ZIP_ENTRIES", 3)
    many = make_zip(tmp_path / "many.zip", {f"{n}.png": b"x" for n in range(4)})
    with pytest.raises(ValueError, match=r"many\.zip has 4 entries; the limit is 3"):
        collection.gather([many], tmp_path)
    with pytest.raises(ValueError, match=r"at most 2 pictures at once \(got 3\)"):
        collection.gather([str(p) for p in SHAPES[:3]], tmp_path, limit=2)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"fake\.zip is not a ZIP archive that can be read"):
        collection.gather([str(fake)], tmp_path)


def test_a_picture_over_the_size_limit_inside_a_zip_is_listed_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(collection, "MAX_ENTRY_BYTES", 2**20)
    archive = make_zip(tmp_path / "set.zip", {"big.png": bytes(2**21), "ok.png": SHAPES[0].read_bytes()})
    pictures = collection.gather([archive], tmp_path).pictures
    assert [(p.name, p.error) for p in pictures] == [("big.png", "over 1 MB unpacked"), ("ok.png", "")]


# --- search -------------------------------------------------------------------------------------------


def test_a_red_circle_over_the_shapes_examples_finds_a_red_circle(services, shapes):
    assert len(shapes.files) == 6 and shapes.model == "itm-base-coco"
    assert "6 pictures indexed" in search_tab.collection_text(services, shapes)
    assert len(search_tab.gallery(shapes)) == 6
    for rerank in (0, 6):
        results, rows, summary, raw, last = search_tab.search(
            services, shapes, "a red circle", 4, rerank, "[ENC]"
        )
        assert rows[0][1] in RED_CIRCLES and {rows[0][1], rows[1][1]} == RED_CIRCLES, rows
        assert (
            len(results) == len(rows) == 4
            and results[0][1].startswith("1. ITC ")
            and rows[0][1] in results[0][1]
        )
        assert raw["reranked"] == rerank and raw["indexed"] == 6 and last["query"] == "a red circle"
        assert ("re-ranked by ITM" in summary) == bool(rerank) and "Offline demo model" in summary
        scores = [r[3] if rerank else r[2] for r in rows]
        assert scores == sorted(scores, reverse=True)


def test_choosing_a_result_shows_where_the_model_looked(services, shapes):
    *_, last = search_tab.search(services, shapes, "a red circle", 3, 0, "[ENC]")
    name, state, note = search_tab.explain(services, shapes, last, 0)
    assert name == last["names"][0] and "ITM probability" in note
    maps = state["texts"][0][1]
    assert state["texts"][0][0] == "a red circle" and maps.kinds() == ["attention", "gradcam"]
    assert [w.text for w in maps.words] == ["a", "red", "circle"]


def test_more_like_this_one_leaves_the_picture_out(services, shapes):
    _results, rows, _summary, raw, last = search_tab.more_like_this(services, shapes, SHAPES[0].name, 3)
    assert len(rows) == 3 and SHAPES[0].name not in last["names"]
    assert rows[0][1] == SHAPES[2].name  # the other small red circle
    assert raw["query"] == "picture" and last["query"] is None and len(raw["hits"]) == 3
    assert [hit["picture"] for hit in raw["hits"]] == [r[1] for r in rows]
    _name, state, note = search_tab.explain(services, shapes, last, 0)
    assert state is None and "search with words" in note


def test_unreadable_pictures_are_listed_and_bad_searches_explained(services, shapes, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    archive = make_zip(tmp_path / "set.zip", {"a.png": SHAPES[0].read_bytes(), "b.png": b"garbage"})
    found = search_tab.index_pictures(services, [str(broken), archive], [], "itm-base-coco")
    try:
        assert sorted(found.files) == ["a.png"] and Path(found.folder).is_dir()
        assert [name for name, _ in found.unreadable] == ["broken.jpg", "b.png"]
        assert "Could not read 2" in search_tab.collection_text(services, found)
    finally:
        collection.remove(found.folder)
    with pytest.raises(ValueError, match="none of the pictures could be read"):
        search_tab.index_pictures(services, [str(broken)], [], "itm-base-coco")
    with pytest.raises(ValueError, match="add some images first"):
        search_tab.index_pictures(services, [], [], "itm-base-coco")
    with pytest.raises(ValueError, match="examples must be among shapes, photos"):
        search_tab.index_pictures(services, [], ["secrets"], "itm-base-coco")
    with pytest.raises(ValueError, match="embedding needs a RetrievalModel or FeatureModel"):
        search_tab.index_pictures(services, [], ["shapes"], "caption-base")
    with pytest.raises(ValueError, match="index some pictures first"):
        search_tab.search(services, None, "a red circle", 3, 0, "[ENC]")
    with pytest.raises(ValueError, match="the query is empty"):
        search_tab.search(services, shapes, "  ", 3, 0, "[ENC]")
    with pytest.raises(ValueError, match="is not a picture of the indexed collection"):
        search_tab.more_like_this(services, shapes, "/etc/passwd", 3)
    with pytest.raises(ValueError, match="choose a result first"):
        search_tab.more_like_this(services, shapes, "", 3)


def test_the_search_tool_answers_in_text(services):
    text = tool_text.search_text(services, "a red circle", "", "itm-base-coco", 3, 3, "[ENC]")
    lines = text.splitlines()
    assert lines[0].split(": ")[0].removeprefix("1. ") in RED_CIRCLES and ", ITM " in lines[0]
    assert lines[2].startswith("3. ") and "11 pictures (the bundled examples)" in text
    assert "the best 3 re-ranked by ITM" in text and "Raw result" not in text


# --- batch --------------------------------------------------------------------------------------------


def test_batch_takes_a_zip_and_every_decoding_control(services, tmp_path):
    archive = make_zip(tmp_path / "set.zip", {
        f"shapes/{p.name}": p.read_bytes() for p in SHAPES[:3]
    } | {"shapes/broken.png": b"garbage", "shapes/readme.txt": b"not a picture"})  # fmt: skip
    values = decoding_values(BEAM, beams=4, count=2, max_new_tokens=12)
    done = batch_tab.batch_caption(services, [archive, str(SHAPES[3])], "caption-base", "a small", values, 2)
    assert done.columns == ["file", "caption", "score", "more_captions", "seconds", "error"]
    names = [r[0] for r in done.rows]
    assert names == [*(f"shapes/{p.name}" for p in SHAPES[:3]), "shapes/broken.png", SHAPES[3].name]
    broken = done.rows[3]
    assert broken[1] == "" and "not an image that can be read" in broken[-1]
    # Each caption is the one the Caption tab's engine call gives that picture alone, prompt included.
    for row, path in zip(done.rows[:3] + done.rows[4:], [*SHAPES[:3], SHAPES[3]], strict=True):
        alone = services.engine.caption(
            open_upload(path), model="caption-base", prompt="a small", options=decoding_options(*values)
        )
        assert row[1] == alone.captions[0].text and row[1].startswith("a small")
        assert row[3] == f"{alone.captions[1].text} ({round(alone.captions[1].score, 4)})"
    csv_path, jsonl_path, sidecars = done.files
    with open(csv_path, newline="", encoding="utf-8") as file:
        assert next(iter(csv.reader(file))) == done.columns
    records = [json.loads(line) for line in Path(jsonl_path).read_text().splitlines()]
    assert [r["file"] for r in records] == names and len(records[0]["captions"]) == 2
    with zipfile.ZipFile(sidecars) as archive:
        texts = {name: archive.read(name).decode() for name in archive.namelist()}
    assert sorted(texts) == sorted([f"shapes/{p.stem}.txt" for p in SHAPES[:3]] + [f"{SHAPES[3].stem}.txt"])
    assert texts[f"shapes/{SHAPES[0].stem}.txt"] == done.rows[0][1] + "\n"


def test_the_itm_check_scores_each_caption(services):
    done = batch_tab.batch_caption(services, [str(p) for p in SHAPES[:2]], "caption-base", "",
                                   decoding_values(GREEDY), 8, "itm-base-coco")  # fmt: skip
    assert done.columns == ["file", "caption", "score", "itm_probability", "itc_cosine", "seconds", "error"]
    assert [r[1] for r in done.rows] == [truth(p) for p in SHAPES[:2]]
    # Each true caption is judged a match (the demo matcher's one half is its calibrated equal-error point).
    assert all(r[3] > 0.5 and 0 < r[4] <= 1 for r in done.rows)
    with pytest.raises(ValueError, match="the ITM check needs a retrieval model"):
        batch_tab.batch_caption(services, [str(SHAPES[0])], "caption-base", "", None, 8, "caption-base")


@pytest.mark.parametrize(
    ("changes", "batch_size", "message"),
    [({}, 0, r"batch_size must be between 1 and 64 \(got 0\)"),
     ({"count": 2}, 8, "num_sequences must be 1 for greedy search")],
)  # fmt: skip
def test_bad_batch_parameters_refuse_the_whole_request(services, changes, batch_size, message):
    with pytest.raises(ValueError, match=message):
        batch_tab.batch_caption(services, [str(SHAPES[0])], "caption-base", "", decoding_values(GREEDY, **changes),
                                batch_size)  # fmt: skip


def test_sidecar_names_never_clash():
    records = [{"file": name, "score": -0.1} for name in ("cat.jpg", "cat.png", "a/cat.jpg", "noext")]
    assert batch_tab._sidecar_names([*records, {"file": "bad.jpg", "score": None}]) == {
        "cat.jpg": "cat.txt", "cat.png": "cat.png.txt", "a/cat.jpg": "a/cat.txt", "noext": "noext.txt",
    }  # fmt: skip


class FlakyEngine:
    """The demo engine, except that any batch holding a 13 x 13 picture fails, as does that picture."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def caption_batch(self, images, **kwargs):
        images = list(images)
        if any(image.size == (13, 13) for image in images):
            raise RuntimeError("the batch fell over")
        return self.engine.caption_batch(images, **kwargs)

    def caption(self, image, **kwargs):
        if image.size == (13, 13):
            raise ValueError("this picture breaks the model")
        return self.engine.caption(image, **kwargs)


def test_a_picture_that_fails_its_batch_fails_alone(services, tmp_path):
    odd = tmp_path / "odd.png"
    Image.new("RGB", (13, 13), "white").save(odd)
    flaky = Services(engine=FlakyEngine(services.engine), open_image=open_upload, overlay=render.overlay,
                     models=MODELS)  # fmt: skip
    paths = [str(SHAPES[0]), str(odd), str(SHAPES[1])]
    done = batch_tab.batch_caption(flaky, paths, "caption-base", "", decoding_values(GREEDY), 8)
    assert [r[1] for r in done.rows] == [truth(SHAPES[0]), "", truth(SHAPES[1])]
    assert done.rows[1][-1] == "This picture breaks the model"


def test_work_folders_of_ended_sessions_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(collection, "WORK_ROOT", tmp_path)
    old, recent = tmp_path / "search-old", tmp_path / "search-recent"
    old.mkdir()
    recent.mkdir()
    stale = time.time() - collection.STALE_SECONDS - 60
    os.utime(old, (stale, stale))
    new = collection.work_folder("batch-")
    assert new.parent == tmp_path and new.is_dir() and recent.is_dir() and not old.exists()
    collection.remove(str(new))
    assert not new.exists()
