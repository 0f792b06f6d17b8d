"""The Ray Data path gives exactly the command line's rows for the same folder (a local Ray started by
the test: two CPUs, one actor, since on two cores a pool as big as the CPU count starves the reads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import shapes_world

from blip.cli import main

pytestmark = pytest.mark.unit
MODEL = str(Path(__file__).resolve().parents[1] / "assets" / "demo" / "caption")

try:
    import ray
except ImportError:  # an optional extra: fail loudly in CI, which installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_command_lines_rows(tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, scene in enumerate(shapes_world.scene_stream(53, 10)):
        scene.image.save(folder / f"scene-{i:02d}.png")
    (folder / "empty.jpg").write_bytes(b"")
    argv = ["caption", str(folder), "--model", MODEL, "--batch-size", "3", "--strategy", "beam"]
    assert main([*argv, "--out", str(tmp_path / "plain.jsonl")]) == 0
    assert main([*argv, "--out", str(tmp_path / "ray.jsonl"), "--ray", "--actors", "1"]) == 0
    assert "captioned 10, skipped 0 (already done), failed 1" in capsys.readouterr().out

    def rows(name: str) -> dict:
        return {r["path"]: r for r in map(json.loads, (tmp_path / name).read_text().splitlines())}

    assert rows("ray.jsonl") == rows("plain.jsonl") and len(rows("plain.jsonl")) == 11
    # Started again, the Ray run finds everything done.
    assert main([*argv, "--out", str(tmp_path / "ray.jsonl"), "--ray"]) == 0
    assert "captioned 0, skipped 11" in capsys.readouterr().out
