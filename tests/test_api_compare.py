"""/compare and /ask_what_if of the running app, through ``gradio_client`` as a program calls them."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file
from live_app import API_DECODING, demo_client, rows

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with demo_client(tmp_path_factory) as started:
        yield started


def spans(highlighted) -> list[tuple[str, str | None]]:
    """A ``gr.HighlightedText`` value as (text, label) pairs."""
    items = highlighted["data"] if isinstance(highlighted, dict) else highlighted
    return [(i["token"], i["class_or_confidence"]) if isinstance(i, dict) else tuple(i) for i in items]


def side(name: str, model: str, **changes) -> dict:
    """One column's parameters of /compare: model, first token, map, the twelve decoding parameters."""
    values = {"model": model, "first_token": "[ENC]", "map": "Attention", **API_DECODING, **changes}
    return {f"{name}_{key}": value for key, value in values.items()}


def test_both_endpoints_are_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/compare", "/ask_what_if", "/what_if"} <= names


def test_compare_endpoint(client):
    left, right, scores, summary, left_map, right_map, raw = client.predict(
        image=handle_file(str(SHAPES[1])), task="Caption", text="", heatmaps=False,
        **side("left", "caption-base", max_new_tokens=4), **side("right", "caption-base", decoding="Beam search"),
        api_name="/compare",
    )  # fmt: skip
    assert "".join(w for w, _ in spans(left)) == "a large blue circle"
    assert [w for w, label in spans(right) if label == "changed"][:3] == ["at", "the", "top"]
    assert rows(scores)[3] == ["caption 1 tokens", 4, 16, 12]
    assert raw["differs"] and left_map is None and right_map is None
    assert "Offline demo model" in summary and "Same weights" not in summary  # one model, two decodings
    # Two models served by the one demo model: said, not shown as a difference.
    *_, summary, _, _, raw = client.predict(
        image=handle_file(str(SHAPES[1])), task="Match",
        text="a large blue circle at the top and a small green triangle at the bottom", heatmaps=False,
        **side("left", "itm-base-coco"), **side("right", "itm-base-flickr"), api_name="/compare",
    )  # fmt: skip
    assert raw["same_weights"] and not raw["differs"] and "Same weights on both sides" in summary
    with pytest.raises(Exception, match="Type a question"):
        client.predict(
            image=handle_file(str(SHAPES[1])), task="Ask", text=" ", heatmaps=False,
            **side("left", "vqa-base"), **side("right", "vqa-base"), api_name="/compare",
        )  # fmt: skip


def test_ask_what_if_endpoint(client):
    decoding = API_DECODING | {"max_new_tokens": 10}
    compared, _tokens, token_table, summary = client.predict(
        image=handle_file(str(SHAPES[0])), model="vqa-base", question="what colour is the circle?",
        first_token="[ENC]", position=1, word="blue", **decoding, heatmaps=False, api_name="/ask_what_if",
    )  # fmt: skip
    (_, original, _), (label, changed, _) = rows(compared)
    assert original == "red" and changed.startswith("blue") and label == "what if token 1 were 'blue'"
    assert rows(token_table)[0][1] == "blue" and "first 1 token(s)" in summary
    with pytest.raises(Exception, match="Position must be between 1 and"):
        client.predict(
            image=handle_file(str(SHAPES[0])), model="vqa-base", question="what colour is the circle?",
            first_token="[ENC]", position=5, word="blue", **decoding, heatmaps=False, api_name="/ask_what_if",
        )  # fmt: skip
