"""The ZeroGPU wiring, checked with a stand-in ``spaces`` package (the real one needs a Space).

tests/zerogpu_driver.py starts the app as a ZeroGPU Space would (``SPACES_ZERO_GPU=true``) in a
subprocess, with the stand-in below first on ``PYTHONPATH``; it records every ``spaces.GPU``
decoration with its duration, the device the engine was asked for, each model loaded, and the launch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = '''
"""Stand-in for the ``spaces`` package: GPU() records what it wraps and the duration it was given."""
import functools

EVENTS = []


def GPU(task=None, *, duration=None, size=None, **kwargs):
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            return fn(*args, **kw)

        wrapper.zerogpu_duration = 60 if duration is None else duration
        EVENTS.append(["decorate", getattr(fn, "__qualname__", repr(fn))])
        return wrapper

    return wrap(task) if task is not None else wrap
'''


@pytest.fixture(scope="module")
def zerogpu(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("zerogpu")
    (folder / "spaces").mkdir()
    (folder / "spaces" / "__init__.py").write_text(STAND_IN)
    env = os.environ | {
        "SPACES_ZERO_GPU": "true",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT), str(ROOT / "tests")]),
    }
    env.pop("BLIP_CUDA_GRAPHS", None)
    driver = folder / "driver.py"
    driver.write_text((ROOT / "tests" / "zerogpu_driver.py").read_text())
    done = subprocess.run(
        [sys.executable, str(driver), "--offline-demo"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_model_running_handler_is_decorated(zerogpu):
    handlers = zerogpu["handlers"]
    running = [h for h in handlers if h["runs_model"]]
    # The tabs' actions and the MCP tools: caption, what-if, beam tree, check, ask, match, classify,
    # batch, search (index, search, more like this, explain).
    for api in ("caption", "what_if", "beam_tree", "check_caption", "ask", "match", "classify",
                "batch_caption", "index", "search", "more_like_this", "explain_handler"):  # fmt: skip
        assert any(h["api_name"] == api for h in running), f"{api} not found among model-running handlers"
    undecorated = [h for h in running if not h["decorated"]]
    assert not undecorated, f"model-running handlers without spaces.GPU: {undecorated}"
    assert all(h["callable_duration"] for h in handlers if h["decorated"]), (
        "durations must be sized per request"
    )
    # Nothing that only redraws the page borrows a GPU.
    idle = [h["name"] for h in handlers if h["decorated"] and not h["runs_model"]]
    assert not idle, idle


def test_models_go_to_cuda_at_start_up_before_launch(zerogpu):
    events = zerogpu["events"]
    kinds = [e[0] for e in events]
    assert events[kinds.index("engine")] == ["engine", "cuda"]
    launched = kinds.index("launch")
    loaded = {e[1] for e in events[:launched] if e[0] == "model"}
    assert {"caption-base", "vqa-base", "itm-base-coco"} <= loaded
    assert kinds.index("decorate") < launched
    assert not zerogpu["graphs_on_cuda"], "each ZeroGPU call may be a new process: no CUDA graphs there"


def test_durations_follow_the_request(zerogpu):
    d = zerogpu["durations"]
    assert 5 <= d["caption_greedy"] <= 15, d  # short calls ask for little (better queue priority)
    assert d["caption_greedy"] < d["caption_beams"] < d["batch_64x5_beams"]
    assert d["caption_greedy"] < d["caption_greedy_heatmaps"]
    assert d["caption_greedy_unloaded"] > d["caption_greedy"]  # a model not loaded at start-up
    assert d["batch_64x5_beams"] > 60, "64 images x 5 beams must not be cut off at the default 60 s"
    assert d["batch_zip_64x5_beams"] == d["batch_64x5_beams"], "a ZIP's pictures are counted"
    assert d["batch_1_greedy"] < 60 and d["match_3_texts"] < 60
    assert d["bad_arguments"] == 60, "arguments that do not fit fall back to the default"


def test_no_torch_compile_in_the_app():
    sources = [ROOT / "app.py", *ROOT.glob("blip/**/*.py"), *ROOT.glob("ui/*.py")]
    offenders = [str(p) for p in sources if "torch.compile(" in p.read_text()]
    assert not offenders, f"ZeroGPU does not support torch.compile: {offenders}"


def test_the_zerogpu_requirements_pin_a_supported_torch_and_spaces():
    lines = (ROOT / "requirements-zerogpu.txt").read_text().splitlines()
    pins = {line.split("==")[0]: line.split("==")[1].split()[0] for line in lines if "==" in line}
    # ZeroGPU's supported list (huggingface/hub-docs docs/hub/spaces-zerogpu.md): 2.8.0 ... 2.11.0
    assert pins.get("torch") in ("2.8.0", "2.9.1", "2.10.0", "2.11.0"), pins
    assert any(line.startswith("spaces") for line in lines)
