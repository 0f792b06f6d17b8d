"""Faults and security on the running app: an unreachable Hub, a damaged cached weights file, a model
that fails to load, requests for files the app must not serve, oversized uploads."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from conftest import fake_hub_cache
from gradio_client import Client, handle_file
from live_app import API_DECODING, live_app

from blip.engine import Engine
from blip.loading.checkpoint import CheckpointError
from blip.loading.hub import MODELS
from blip.loading.uploads import open_upload

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))


def damaged_copy(source: Path, target: Path) -> Path:
    """A copy of a checkpoint folder whose weights file lost its second half (an interrupted download)."""
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def test_a_damaged_model_is_named_and_the_others_keep_working(tmp_path):
    weights = damaged_copy(DEMO / "caption", tmp_path / "broken")
    engine = Engine(device="cpu", local_models={"broken": tmp_path / "broken", "good": DEMO / "caption"})
    picture = open_upload(SHAPES[0])
    for _ in range(2):  # a failed load is not remembered as loaded, and fails the same way again
        with pytest.raises(CheckpointError, match=rf"the weights file {weights} is damaged or incomplete"):
            engine.caption(picture, model="broken")
    assert engine.caption(picture, model="good").captions[0].text == "a small red circle in the centre"
    assert engine.loaded_models() == ["good"]


@pytest.mark.app
def test_app_with_unreachable_hub_and_a_damaged_cache(tmp_path):
    """No --offline-demo: caption-base is cached but damaged, the other models are not cached and the Hub
    cannot be reached. Captioning names the damaged file; the other tabs run on the demo models."""
    cache = tmp_path / "hub"
    snapshot = fake_hub_cache(cache, MODELS["caption-base"].repo, DEMO / "caption")
    weights = snapshot / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    env = {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": ""}
    with live_app(log=tmp_path / "app.log", env=env) as app:
        client = Client(app.url, verbose=False)
        image = handle_file(str(SHAPES[0]))
        caption_args = {
            "image": image,
            "model": "caption-base",
            "prompt": "",
            "heatmaps": False,
            **API_DECODING,
        }
        with pytest.raises(Exception, match=r"model\.safetensors is damaged or incomplete.*Delete it"):
            client.predict(**caption_args, api_name="/caption")
        _answer, *_rest, raw = client.predict(
            image=image, model="vqa-base", question="what colour is the circle?", mode="Generate an answer",
            candidates="", first_token="[ENC]", heatmaps=False, **API_DECODING, api_name="/ask",
        )  # fmt: skip
        assert raw["offline_demo"] is True and raw["answers"][0]["text"] == "red"
        _table, summary, raw = client.predict(
            image=image, model="itm-base-coco", texts="a small red circle in the centre", first_token="[ENC]",
            heatmaps=False, api_name="/match",
        )  # fmt: skip
        assert raw["offline_demo"] is True and "Offline demo model" in summary
        with pytest.raises(Exception, match="damaged or incomplete"):  # still a message, not a crash
            client.predict(**caption_args, api_name="/caption")
        assert app.alive()
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log


@pytest.mark.app
def test_only_uploads_and_assets_are_served_and_uploads_are_capped(tmp_path):
    with live_app("--offline-demo", log=tmp_path / "app.log") as app:
        example = SHAPES[0].relative_to(ROOT)

        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(app.url + path, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

        assert status(f"gradio_api/file={SHAPES[0]}") == 200  # the examples are meant to be served
        for forbidden in (
            "gradio_api/file=/etc/passwd",
            f"gradio_api/file={ROOT / 'app.py'}",
            "gradio_api/file=app.py",
            f"gradio_api/file={ROOT / 'assets' / 'demo' / 'caption' / 'config.json'}",
            f"gradio_api/file={example.parent}/../../../app.py",
            "gradio_api/file=../../../../etc/passwd",
        ):
            assert status(forbidden) in (403, 404), forbidden
        big = tmp_path / "big.png"
        big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(26 * 1024 * 1024))
        with big.open("rb") as f:
            response = httpx.post(app.url + "gradio_api/upload", files={"files": f}, timeout=60)
        assert response.status_code == 413, response.text
        assert "maximum allowed size of 26214400 bytes" in response.text  # 25 MiB, named
        assert app.alive()
