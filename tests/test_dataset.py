"""Captioning a dataset from the command line on the demo captioner: JSONL, CSV and sidecar outputs
complete for every good picture, bad files reported, an interrupted run resumed to the same output."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import shapes_world

from blip.cli import main

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "assets" / "demo" / "caption")
BAD = {"broken.png", "empty.jpg", "cut.png"}


def _folder(root: Path, count: int) -> Path:
    (root / "sub").mkdir(parents=True)
    for i, scene in enumerate(shapes_world.scene_stream(41, count)):
        scene.image.save(root / ("sub" if i % 5 == 0 else "") / f"scene-{i:03d}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 40)  # not an image
    (root / "empty.jpg").write_bytes(b"")
    whole = (root / "scene-001.png").read_bytes()
    (root / "cut.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (root / "folder.png").mkdir()  # a directory named like a picture
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return _folder(tmp_path / "pictures", 12)


def _good(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("scene-*.png")}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_jsonl_csv_and_sidecars_cover_every_good_picture(capsys, folder, tmp_path):
    out = tmp_path / "captions.jsonl"
    code, printed, err = run(
        capsys, "caption", folder, "--recursive", "--out", out, "--model", MODEL, "--batch-size", 4
    )
    assert code == 0 and "captioned 12, skipped 0 (already done), failed 3" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["path"] for r in rows if not r["error"]} == _good(folder)
    assert {Path(r["path"]).name for r in rows if r["error"]} == BAD
    assert all(r["caption"] for r in rows if not r["error"]) and all(n in err for n in BAD)

    table = tmp_path / "captions.csv"
    argv = ["caption", folder, "--recursive", "--out", table, "--model", MODEL, "--check", "--check-model",
            str(ROOT / "assets" / "demo" / "retrieval"), "--strategy", "beam", "--prompt", "a picture of"]  # fmt: skip
    assert run(capsys, *argv)[0] == 0
    with table.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "caption", "score", "itm_probability", "itc_cosine", "error"]
    good = [r for r in rows if not r["error"]]
    assert {r["path"] for r in good} == _good(folder) and all(
        r["caption"].startswith("a picture of") for r in good
    )
    assert all(0 <= float(r["itm_probability"]) <= 1 and -1 <= float(r["itc_cosine"]) <= 1 for r in good)

    assert run(capsys, "caption", folder, "--sidecar", ".txt", "--model", MODEL)[0] == 0
    top = {str(p) for p in folder.glob("scene-*.png")}
    assert {str(p.with_suffix(".png")) for p in folder.glob("*.txt")} == top  # no --recursive: top folder
    first = next(folder.glob("scene-*.txt"))
    first.write_text("edited by hand\n")
    code, printed, _ = run(capsys, "caption", folder, "--sidecar", ".txt", "--model", MODEL)
    assert "skipped 9" in printed and first.read_text() == "edited by hand\n"  # kept without --overwrite
    run(capsys, "caption", folder, "--sidecar", ".txt", "--model", MODEL, "--overwrite")
    assert first.read_text() != "edited by hand\n"


def test_an_interrupted_run_resumes_to_the_same_output(tmp_path):
    folder = _folder(tmp_path / "pictures", 40)
    argv = [sys.executable, "-m", "blip", "caption", str(folder), "--recursive", "--model", MODEL,
            "--batch-size", "2", "--strategy", "beam", "--max-new-tokens", "20"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole.jsonl"
    subprocess.run([*argv, "--out", str(whole)], env=env, check=True, capture_output=True, timeout=600)

    resumed = tmp_path / "resumed.jsonl"
    process = subprocess.Popen(
        [*argv, "--out", str(resumed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not resumed.exists() or resumed.read_text().count("\n") < 8):
        time.sleep(0.05)
    process.kill()  # mid-run: some batches written, the rest not
    process.wait()
    cut = resumed.read_text().count("\n")
    assert 8 <= cut < 43, cut
    result = subprocess.run(
        [*argv, "--out", str(resumed)], env=env, check=True, capture_output=True, text=True, timeout=600
    )
    assert f"skipped {cut} (already done)" in result.stdout  # every whole line written before the kill

    def rows(path: Path) -> list[dict]:
        return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["path"])

    assert rows(resumed) == rows(whole) and len(rows(whole)) == 43


def test_dataset_mistakes_are_explained(capsys, folder, tmp_path):
    code, _, err = run(capsys, "caption", folder, "--out", tmp_path / "x.txt", "--model", MODEL)
    assert code == 2 and "--out must end in .jsonl, .csv or .parquet" in err
    code, _, err = run(capsys, "caption", folder, "--sidecar", "txt", "--model", MODEL)
    assert code == 2 and "--sidecar takes a suffix such as .txt" in err
    code, _, err = run(
        capsys, "caption", folder, "--out", tmp_path / "x.jsonl", "--batch-size", 0, "--model", MODEL
    )
    assert code == 2 and "--batch-size must be between 1 and 64" in err
