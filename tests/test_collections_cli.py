"""``python -m blip embed / index / search`` on the offline demo retrieval model: files in Parquet and
.npz, unreadable files reported and skipped, a query naming a colour and a shape finds one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapes_world
from PIL import Image

from blip.cli import main

pytestmark = pytest.mark.unit
MODEL = str(Path(__file__).resolve().parents[1] / "assets" / "demo" / "retrieval")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Twelve one-shape scenes (three in a sub-folder, nine at the top) and broken files mixed in."""
    root = tmp_path_factory.mktemp("pictures")
    (root / "sub").mkdir()
    for i, scene in enumerate(shapes_world.scene_stream(31, 12, num_shapes=1)):
        shape = scene.shapes[0]
        (root / ("sub" if i % 4 == 0 else "") / f"{i:02d}-{shape.colour}-{shape.kind}.png").parent.mkdir(
            exist_ok=True
        )
        scene.image.save(root / ("sub" if i % 4 == 0 else "") / f"{i:02d}-{shape.colour}-{shape.kind}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 40)
    (root / "empty.jpg").write_bytes(b"")
    (root / "folder.png").mkdir()
    (root / "notes.txt").write_text("not a picture")
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_index_then_search_finds_what_the_query_names(capsys, folder, tmp_path, suffix):
    index = tmp_path / f"shapes{suffix}"
    code, out, err = run(capsys, "index", folder, "--recursive", "--out", index, "--model", MODEL, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["images"] == 12 and summary["model"] == MODEL
    assert sorted(Path(f["path"]).name for f in summary["failed"]) == ["broken.png", "empty.jpg"]
    assert "skipped" in err and "empty" in err
    names = [p.name for p in folder.rglob("*.png") if p.is_file() and p.name != "broken.png"]
    right = 0
    for name in names:
        colour, kind = name[3:-4].split("-")
        code, out, _ = run(capsys, "search", index, f"a {colour} {kind}", "--top", 3, "--json")
        hits = json.loads(out)["hits"]
        assert code == 0 and len(hits) == 3
        right += Path(hits[0]["path"]).name[3:-4] == f"{colour}-{kind}"
    assert right / len(names) >= 0.9, f"{right}/{len(names)}"
    picture = next(folder.glob("01-*.png"))
    code, out, _ = run(capsys, "search", index, "--image", picture, "--json")
    assert json.loads(out)["hits"][0]["path"] == str(picture)
    code, out, _ = run(capsys, "search", index, "a red circle", "--rerank", 5)
    assert code == 0 and "P(match)" in out.splitlines()[0] and len(out.splitlines()) == 11


def test_embed_writes_image_and_text_vectors(capsys, folder, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a red circle\n\na blue star\n")
    for suffix in (".npz", ".parquet"):
        out_file = tmp_path / f"vectors{suffix}"
        code, _, _ = run(capsys, "embed", folder, "--out", out_file, "--texts", texts, "--model", MODEL)
        assert code == 0
        if suffix == ".npz":
            data = np.load(out_file)
            vectors, paths, text_vectors = data["vectors"], list(data["paths"]), data["text_vectors"]
            assert list(data["texts"]) == ["a red circle", "a blue star"]
        else:
            table = pq.read_table(out_file).to_pydict()
            vectors, paths = np.array(table["vector"]), table["path"]
            assert set(table) == {"path", "width", "height", "model", "vector"}
            assert (table["width"][0], table["height"][0]) == Image.open(table["path"][0]).size
            text_vectors = np.array(pq.read_table(tmp_path / "vectors.texts.parquet").to_pydict()["vector"])
        assert len(paths) == vectors.shape[0] == 9  # the top folder only, broken files skipped
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        assert text_vectors.shape == (2, vectors.shape[1])


def test_collection_mistakes_are_explained(capsys, folder, tmp_path):
    code, _, err = run(capsys, "index", folder, "--out", tmp_path / "x.csv", "--model", MODEL)
    assert code == 2 and "must end in .parquet or .npz" in err
    code, _, err = run(
        capsys, "index", tmp_path / "nothing-here", "--out", tmp_path / "x.npz", "--model", MODEL
    )
    assert code == 2 and "no such file or folder" in err
    code, _, err = run(capsys, "search", tmp_path / "missing.npz", "a cat")
    assert code == 1 and "no such index" in err
    code, _, err = run(capsys, "search", tmp_path / "missing.npz")
    assert code == 1
