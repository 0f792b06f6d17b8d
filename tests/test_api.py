"""Every API endpoint of the running app, called through ``gradio_client`` as a program would."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from live_app import API_DECODING, running_app

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app("--offline-demo", log=log) as url:
        yield Client(url, verbose=False)


def rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def test_every_task_has_a_named_endpoint(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/caption", "/ask", "/match", "/classify", "/batch_caption"} <= names


def test_caption_endpoint(client):
    out = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", heatmaps=False, **API_DECODING,
        api_name="/caption",
    )  # fmt: skip
    captions, _tokens, _token_table, summary, raw = out
    assert rows(captions)[0][1] == "a small red circle in the centre"
    assert raw["decoding"]["strategy"] == "greedy" and raw["offline_demo"] is True
    assert "Offline demo model" in summary


def test_ask_endpoint(client):
    answer, _table, _tokens, _summary, raw = client.predict(
        image=handle_file(str(SHAPES[0])), model="vqa-base", question="what colour is the circle?",
        mode="Generate an answer", candidates="", first_token="[ENC]", heatmaps=False, **API_DECODING,
        api_name="/ask",
    )  # fmt: skip
    assert answer == "## red" and raw["answers"][0]["text"] == "red"


def test_match_endpoint(client):
    table, _summary, _raw = client.predict(
        image=handle_file(str(SHAPES[0])), model="itm-base-coco",
        texts="a small red circle in the centre\na large blue star at the top", first_token="[ENC]",
        heatmaps=True, api_name="/match",
    )  # fmt: skip
    first, second = rows(table)
    assert first[1] > second[1] and first[2] > second[2]


def test_classify_endpoint(client):
    label, table, _summary, _raw = client.predict(
        image=handle_file(str(SHAPES[0])), model="itm-base-coco", labels="red, green, blue, yellow",
        template="a {} shape", scoring="ITC (cosine, fast)", temperature=0.07, heatmaps=False,
        api_name="/classify",
    )  # fmt: skip
    assert label["label"] == "red" and rows(table)[0][0] == "red"


def test_batch_caption_endpoint(client):
    table, csv_path, _jsonl, _sidecars = client.predict(
        files=[handle_file(str(p)) for p in SHAPES[:2]], model="caption-base", decoding="Greedy",
        api_name="/batch_caption",
    )  # fmt: skip
    assert [r[1] for r in rows(table)] == [
        "a small red circle in the centre",
        "a large blue circle at the top and a small green triangle at the bottom",
    ]
    assert Path(csv_path).read_text().splitlines()[0] == "file,caption,score,seconds,error"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decoding": "Beam search", "beams": 0}, r"Beams \(beam search\) must be between 1 and 10 \(got 0\)"),
        ({"decoding": "Beam search", "beams": -3}, r"Beams \(beam search\) must be between 1 and 10 \(got -3\)"),
        ({"decoding": "Beam search", "beams": 1000}, r"Beams \(beam search\) must be between 1 and 10 \(got 1000\)"),
        ({"decoding": "Nucleus sampling (top-p)", "top_p": 0}, r"Top-p \(nucleus sampling\) must be between 0.05 and 1 \(got 0\)"),
        ({"decoding": "Nucleus sampling (top-p)", "top_p": 1.5}, r"Top-p \(nucleus sampling\) must be between 0.05 and 1 \(got 1.5\)"),
        ({"decoding": "Top-k sampling", "temperature": 0}, r"Temperature \(sampling\) must be between 0.1 and 2 \(got 0\)"),
        ({"max_new_tokens": 3, "min_new_tokens": 9}, r"Min new tokens must be between 0 and Max new tokens \(3\)"),
        ({"max_new_tokens": "many"}, r"Max new tokens must be between 1 and 100 \(got 'many'\)"),
        ({"seed": -1}, r"Seed \(sampling; empty = random\) must be between 0 and 4294967295"),
        ({"count": 2}, r"Number of outputs must be 1 for greedy search"),  # the engine's rule
        ({"decoding": "Telepathy"}, r"Decoding must be one of 'Greedy', 'Beam search'"),
    ],
)  # fmt: skip
def test_out_of_range_parameters_are_refused_naming_the_parameter(client, changes, message):
    with pytest.raises(Exception, match=message):
        client.predict(
            image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", heatmaps=False,
            **{**API_DECODING, **changes}, api_name="/caption",
        )  # fmt: skip


@pytest.mark.parametrize("model", ["caption-huge", "../../etc", str(ROOT / "assets" / "demo" / "caption")])
def test_only_offered_model_names_are_accepted(client, model):
    with pytest.raises(Exception, match=r"Model must be one of 'caption-base'"):
        client.predict(
            image=handle_file(str(SHAPES[0])), model=model, prompt="", heatmaps=False, **API_DECODING,
            api_name="/caption",
        )  # fmt: skip
