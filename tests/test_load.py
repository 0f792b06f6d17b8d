"""Load on the running app through ``gradio_client``: many users at once get their own results, memory
settles, and the queue refuses what it cannot hold instead of falling over."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from live_app import API_DECODING, live_app

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
PHOTOS = sorted((ROOT / "assets" / "examples" / "photos").glob("*.jpg"))
ARTIFACTS = ROOT / "artifacts"
QUESTIONS = ["what colour is the circle?", "how many shapes are there?", "what shape is at the top?"]

pytestmark = pytest.mark.app


def mixed_requests() -> list[tuple[str, dict]]:
    """Sixteen different requests over the four task endpoints and eight images."""
    requests = []
    for path in [*SHAPES, *PHOTOS[:2]]:
        kwargs = {
            "image": str(path),
            "model": "caption-base",
            "prompt": "",
            "heatmaps": False,
            **API_DECODING,
        }
        requests.append(("/caption", kwargs))
    for i, path in enumerate(SHAPES[:3]):
        requests.append(("/ask", {
            "image": str(path), "model": "vqa-base", "question": QUESTIONS[i], "mode": "Generate an answer",
            "candidates": "", "first_token": "[ENC]", "heatmaps": False, **API_DECODING,
            "max_new_tokens": 10,
        }))  # fmt: skip
    for path in SHAPES[:3]:
        requests.append(("/match", {
            "image": str(path), "model": "itm-base-coco", "first_token": "[ENC]", "heatmaps": True,
            "texts": "a small red circle in the centre\na large blue circle at the top\na green star",
        }))  # fmt: skip
    for path in SHAPES[3:5]:
        requests.append(("/classify", {
            "image": str(path), "model": "itm-base-coco", "labels": "circle, square, triangle, star",
            "template": "a {}", "scoring": "ITC (cosine, fast)", "temperature": 0.07, "heatmaps": False,
        }))  # fmt: skip
    return requests


def comparable(api_name: str, output) -> object:
    """The part of an endpoint's output that must not depend on who else was being served."""
    raw = output[-1]
    if api_name == "/caption":
        return [c["text"] for c in raw["captions"]], [c["score"] for c in raw["captions"]]
    if api_name == "/ask":
        return [(a["text"], a["score"]) for a in raw["answers"]]
    if api_name == "/match":
        return [(r["text"], r["itm_probability"], r["itc_cosine"]) for r in raw["rows"]]
    return [(label["label"], label["probability"]) for label in raw["labels"]]


def call(client: Client, api_name: str, kwargs: dict):
    args = {**kwargs, "image": handle_file(kwargs["image"])}
    return comparable(api_name, client.predict(**args, api_name=api_name))


def test_concurrent_mixed_requests_get_their_own_results_and_memory_settles(tmp_path):
    requests = mixed_requests()
    figures: dict[str, float | int] = {}
    # At most 40 sessions are kept (each round opens 32 new ones), so memory must level off.
    with live_app("--offline-demo", "--max-sessions", "40", log=tmp_path / "app.log") as app:
        client = Client(app.url, verbose=False)
        expected = [call(client, name, kwargs) for name, kwargs in requests]  # one user at a time
        figures["rss_after_sequential_mib"] = app.rss_mib()
        rng = random.Random(0)
        for round_number in (1, 2, 3):
            order = [i for i in range(len(requests)) for _ in range(2)]  # every request twice: 32
            rng.shuffle(order)
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=len(order)) as pool:
                # One client per simulated user, all submitting at once.
                futures = [pool.submit(call, Client(app.url, verbose=False), *requests[i]) for i in order]
                results = [f.result(timeout=600) for f in futures]
            figures[f"round_{round_number}_seconds"] = round(time.monotonic() - start, 1)
            figures[f"rss_after_round_{round_number}_mib"] = app.rss_mib()
            mismatched = [requests[i][0] for i, got in zip(order, results, strict=True) if got != expected[i]]
            assert not mismatched, f"results differ from the sequential ones for {mismatched}"
        figures["requests_per_round"] = len(order)
        assert app.alive()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load_test.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(figures)
    # Caches are bounded: once warm, further identical rounds must not keep growing the server.
    growth = figures["rss_after_round_3_mib"] - figures["rss_after_round_2_mib"]
    assert growth < 16, f"memory grew by {growth:.0f} MiB between two identical rounds: {figures}"
    assert figures["rss_after_round_1_mib"] - figures["rss_after_sequential_mib"] < 300, figures


def test_a_full_queue_refuses_politely_and_recovers(tmp_path):
    images = [handle_file(str(p)) for p in (SHAPES * 3)[:16]]
    with live_app("--offline-demo", "--queue-size", "2", log=tmp_path / "app.log") as app:

        def batch() -> str:
            client = Client(app.url, verbose=False)
            try:
                table, *_downloads = client.predict(
                    files=images, model="caption-base", decoding="Beam search", api_name="/batch_caption"
                )
            except Exception as err:  # the client raises a plain Exception for app errors
                return f"error: {err}"
            return "ok" if len(table["data"] if isinstance(table, dict) else table) == 16 else "wrong"

        with ThreadPoolExecutor(max_workers=10) as pool:
            outcomes = list(pool.map(lambda _: batch(), range(10)))
        refused = [o for o in outcomes if o.startswith("error")]
        ARTIFACTS.mkdir(exist_ok=True)
        summary = {"jobs": len(outcomes), "completed": outcomes.count("ok"), "refused": len(refused)}
        (ARTIFACTS / "queue_test.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(summary)
        assert outcomes.count("ok") >= 1 and refused, outcomes
        assert all("queue is full" in o.lower() for o in refused), refused
        assert "wrong" not in outcomes
        assert app.alive()
        assert batch() == "ok"  # and it serves again once the queue has drained
