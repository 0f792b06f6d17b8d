"""Every API endpoint of the running app, called through ``gradio_client`` as a program would."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from live_app import API_DECODING, demo_client, rows

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
RED_CIRCLES = {SHAPES[0].name, SHAPES[2].name}  # "a small red circle in the centre" / "at the top"

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with demo_client(tmp_path_factory) as started:
        yield started


def test_every_task_has_a_named_endpoint(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/caption", "/what_if", "/check_caption", "/beam_tree", "/ask", "/match", "/classify", "/batch_caption", "/index", "/search", "/more_like_this",
            "/search_text"} <= names  # fmt: skip


def test_caption_endpoint(client):
    out = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", heatmaps=False, **API_DECODING,
        api_name="/caption",
    )  # fmt: skip
    captions, _tokens, _token_table, summary, raw = out
    assert rows(captions)[0][1] == "a small red circle in the centre"
    assert raw["decoding"]["strategy"] == "greedy" and raw["offline_demo"] is True
    assert "Offline demo model" in summary


def test_what_if_endpoint(client):
    compared, _tokens, token_table, summary = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", position=3, word="blue",
        **API_DECODING, api_name="/what_if",
    )  # fmt: skip
    (_, original, _), (_, changed, _) = rows(compared)
    assert original == "a small red circle in the centre" and changed.startswith("a small blue ")
    assert rows(token_table)[2][1] == "blue" and "first 3 token(s)" in summary
    with pytest.raises(Exception, match="Position"):  # the control's own range check, by name
        client.predict(
            image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", position=0, word="blue",
            **API_DECODING, api_name="/what_if",
        )  # fmt: skip


def test_check_caption_endpoint(client):
    verdict, _tokens, token_table, _summary, raw = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", matcher="itm-base-coco", prompt="",
        text="a small red circle in the centre", heatmaps=False, api_name="/check_caption",
    )  # fmt: skip
    assert "yes, it matches" in verdict and raw["check"]["itm_probability"] > 0.5
    assert rows(token_table)[-1][1] == "[SEP]" and raw["likelihood"]["perplexity"] >= 1
    with pytest.raises(Exception, match="Type a caption to check"):
        client.predict(
            image=handle_file(str(SHAPES[0])), model="caption-base", matcher="itm-base-coco", prompt="",
            text=" ", heatmaps=False, api_name="/check_caption",
        )  # fmt: skip


def test_beam_tree_endpoint(client):
    decoding = API_DECODING | {"decoding": "Beam search"}
    picture, note = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", show_pruned=True, **decoding,
        api_name="/beam_tree",
    )  # fmt: skip
    assert Path(picture).stat().st_size > 1000 and "3 beams" in note
    with pytest.raises(Exception, match="choose Beam search"):
        client.predict(
            image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", show_pruned=True,
            **API_DECODING, api_name="/beam_tree",
        )  # fmt: skip
    sampled = API_DECODING | {"decoding": "Top-k sampling", "seed": 2}
    picture, note = client.predict(
        image=handle_file(str(SHAPES[0])), model="caption-base", prompt="", show_pruned=True, **sampled,
        api_name="/beam_tree",
    )  # fmt: skip
    assert Path(picture).stat().st_size > 1000 and note.startswith("Sampling with seeds 2 to 7")


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


def test_batch_caption_endpoint_takes_a_zip_and_every_control(client, tmp_path):
    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in SHAPES[:3]:
            zipped.write(path, f"set/{path.name}")
        zipped.writestr("set/broken.png", b"garbage")
    table, csv_path, jsonl_path, sidecars = client.predict(
        files=[handle_file(str(archive))], model="caption-base", prompt="a small", **API_DECODING,
        batch_size=2, itm_check=True, itm_model="itm-base-coco", api_name="/batch_caption",
    )  # fmt: skip
    table = rows(table)
    assert [r[1] for r in table[:3:2]] == [
        "a small red circle in the centre",
        "a small red circle at the top",
    ]
    assert table[3][0] == "set/broken.png" and "not an image that can be read" in table[3][-1]
    assert all(r[3] > 0.9 for r in table[:3:2])  # the ITM check: these captions fit their pictures
    assert all(0 <= r[3] <= 1 and -1 <= r[4] <= 1 for r in table[:3])
    header = Path(csv_path).read_text().splitlines()[0]
    assert header == "file,caption,score,itm_probability,itc_cosine,seconds,error"
    records = [json.loads(line) for line in Path(jsonl_path).read_text().splitlines()]
    assert [r["caption"] for r in records[:3]] == [r[1] for r in table[:3]]
    with zipfile.ZipFile(sidecars) as zipped:
        assert zipped.read(f"set/{SHAPES[0].stem}.txt").decode() == table[0][1] + "\n"
        assert len(zipped.namelist()) == 3  # no sidecar for the broken picture


def test_index_then_search_in_one_session(client):
    shelf, indexed = client.predict(examples=["shapes"], model="itm-base-coco", api_name="/index")
    assert "6 pictures indexed" in indexed and len(shelf) == 6
    for rerank in (0, 5):
        results, table, summary, raw = client.predict(
            query="a red circle", top=3, rerank=rerank, first_token="[ENC]", api_name="/search"
        )
        # Precision at app level: the best picture for "a red circle" is one of the two red circles.
        assert rows(table)[0][1] in RED_CIRCLES and raw["hits"][0]["picture"] in RED_CIRCLES
        assert len(results) == 3 and raw["reranked"] == rerank and "a red circle" in summary
    _results, table, _summary, raw = client.predict(picture=SHAPES[0].name, top=2, api_name="/more_like_this")
    assert rows(table)[0][1] == SHAPES[2].name and raw["query"] == "picture"


def test_a_search_uses_its_own_sessions_index(client, tmp_path):
    other = Client(client.src, verbose=False)  # another user: nothing indexed in their session
    with pytest.raises(Exception, match="Index some pictures first"):
        other.predict(query="a red circle", api_name="/search")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    _shelf, indexed = other.predict(
        files=[handle_file(str(SHAPES[5])), handle_file(str(broken))], api_name="/index"
    )
    assert "1 pictures indexed" in indexed and "broken.jpg: This file is not an image" in indexed
    _results, table, *_ = other.predict(query="a red circle", api_name="/search")
    assert [r[1] for r in rows(table)] == [SHAPES[5].name]


@pytest.mark.parametrize(
    ("endpoint", "arguments", "message"),
    [
        ("/index", {"examples": ["secrets"]}, r"Examples must be one of 'shapes', 'photos' \(got 'secrets'\)"),
        ("/index", {"examples": ["shapes"], "model": "caption-base"}, r"Model \(indexes and searches\) must be one of"),
        ("/index", {"files": "evil.zip"}, r"evil\.zip was refused: its entry '\.\./\.\./evil\.png' points outside"),
        ("/search", {"query": "a", "top": 0}, r"Results shown must be between 1 and 50 \(got 0\)"),
        ("/search", {"query": "a", "rerank": 101}, r"Re-rank the best k by ITM \(0 = off\) must be between 0 and 100"),
        ("/more_like_this", {"picture": "/etc/passwd"}, r"'/etc/passwd' is not a picture of the indexed collection"),
        ("/batch_caption", {"files": "shapes", "batch_size": 0}, r"Batch size \(pictures per pass\) must be between 1 and 64"),
        ("/batch_caption", {"files": "shapes", "itm_check": True, "itm_model": "../../etc"}, r"Retrieval model \(ITM check\) must be one of"),
    ],
)  # fmt: skip
def test_collection_parameters_are_checked_by_name(client, tmp_path, endpoint, arguments, message):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("fine.png", SHAPES[0].read_bytes())
        zipped.writestr("../../evil.png", b"x")
    files = {"evil.zip": [handle_file(str(evil))], "shapes": [handle_file(str(SHAPES[0]))]}
    if "files" in arguments:
        arguments = arguments | {"files": files[arguments["files"]]}
    if endpoint == "/more_like_this":
        client.predict(examples=["shapes"], api_name="/index")
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name=endpoint)


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
