"""The MCP tool server (``python app.py --mcp``) as an assistant sees it: the real app started as a
subprocess, reached with the ``mcp`` package's client over Streamable HTTP, its answers compared with the
app's own API (``gradio_client``)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from live_app import API_DECODING, live_app

try:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
except ImportError:
    if os.environ.get("CI"):  # requirements-dev.txt installs gradio[mcp]: in CI this is a failure
        raise
    pytest.skip("needs the MCP client: pip install 'gradio[mcp]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
TOOLS = {"caption", "ask", "match", "classify", "batch_caption", "search"}
REQUIRED = {"caption": ["image"], "ask": ["image", "question"], "match": ["image", "texts"],
            "classify": ["image", "labels"], "batch_caption": ["images"], "search": ["query"]}  # fmt: skip
GREEDY = {k: v for k, v in API_DECODING.items() if k in ("decoding", "min_new_tokens", "max_new_tokens")}

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    log = tmp_path_factory.mktemp("mcp") / "app.log"
    with live_app("--offline-demo", "--mcp", log=log) as running:
        yield running


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def data_url(path: Path) -> str:
    """An image as an MCP client sends a local file: a base64 data URL."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def in_session(url: str, action):
    """Run ``await action(session)`` in a fresh MCP session with the app at ``url``."""

    async def run():
        async with (
            streamable_http_client(f"{url}gradio_api/mcp/") as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await action(session)

    return asyncio.run(run())


def call(url: str, tool: str, arguments: dict, progress: bool = False) -> tuple[bool, str]:
    """(is it an error, the text) of one tool call; ``progress`` asks for progress notifications, which
    sends Gradio's MCP server down its other path."""

    async def ignore(*_):
        pass

    result = in_session(
        url, lambda s: s.call_tool(tool, arguments, progress_callback=ignore if progress else None)
    )
    assert [c.type for c in result.content] == ["text"]  # one readable text, whatever the client
    return bool(result.isError), result.content[0].text


def test_tools_are_named_for_their_tasks_with_described_parameters(app):
    tools = {t.name: t for t in in_session(app.url, lambda s: s.list_tools()).tools}
    assert set(tools) == TOOLS  # the tabs' endpoints ("handler", "handler_1", ...) are not tools
    for name, tool in tools.items():
        assert "BLIP" in tool.description and " Returns: " in tool.description, name
        schema = tool.inputSchema
        assert schema.get("required") == REQUIRED[name]
        for parameter, spec in schema["properties"].items():
            described = spec.get("description", "")
            assert len(described) > 20, f"{name}.{parameter} is not described"
            assert "default" in described or parameter in REQUIRED[name], f"{name}.{parameter}: no default"
            for value in spec.get("enum", []):
                assert f"'{value}'" in described or value in described, f"{name}.{parameter}: {value}"
    assert "'[ENC]'" in tools["ask"].inputSchema["properties"]["first_token"]["description"]
    caption = tools["caption"].inputSchema["properties"]
    assert "integer 1 to 10; default 3" in caption["beams"]["description"]
    assert "ITM" in tools["match"].description and "ITC" in tools["match"].description


def test_view_api_describes_the_tools_with_the_same_text(app, client):
    tools = {t.name: t for t in in_session(app.url, lambda s: s.list_tools()).tools}
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in TOOLS:
        described = endpoints[f"/{name}_text"]["description"]
        assert described and tools[name].description.startswith(described)
    assert {"/caption", "/ask", "/match", "/classify", "/batch_caption"} <= set(endpoints)  # unchanged


@pytest.mark.parametrize("progress", [False, True], ids=["plain", "with-progress"])
def test_caption_through_mcp_is_the_apps_caption(app, client, progress):
    for path in SHAPES[:2]:
        *_, raw = client.predict(
            image=handle_file(str(path)), model="caption-base", prompt="", heatmaps=False, **API_DECODING,
            api_name="/caption",
        )  # fmt: skip
        error, text = call(app.url, "caption", {"image": data_url(path), **GREEDY}, progress)
        assert not error, text
        assert text.splitlines()[0] == raw["captions"][0]["text"]
        assert "Note: Offline demo model" in text and "greedy search" in text


def test_question_through_mcp_is_the_apps_answer(app, client):
    question = "what colour is the circle?"
    *_, raw = client.predict(
        image=handle_file(str(SHAPES[0])), model="vqa-base", question=question, mode="Generate an answer",
        candidates="", first_token="[ENC]", heatmaps=False, **API_DECODING, api_name="/ask",
    )  # fmt: skip
    error, text = call(app.url, "ask", {"image": data_url(SHAPES[0]), "question": question, **GREEDY})
    assert not error, text
    assert text.splitlines()[0] == raw["answers"][0]["text"] == "red"
    error, text = call(
        app.url, "ask", {"image": data_url(SHAPES[0]), "question": question, "candidates": "blue\nred"}
    )
    assert not error and text.splitlines()[0].startswith("red: ")


def test_heavy_parts_only_when_asked(app):
    image = data_url(SHAPES[0])
    error, light = call(app.url, "caption", {"image": image})
    assert not error and len(light) < 1000
    assert "Raw result" not in light and "Where the model looked" not in light
    error, heavy = call(app.url, "caption", {"image": image, "include_heatmaps": True, "include_json": True})
    assert not error and heavy.startswith(light.splitlines()[0] + "\n")
    raw = json.loads(heavy.split("Raw result (JSON):\n", 1)[1])
    assert raw["captions"][0]["text"] == "a small red circle in the centre"
    looked = heavy.split("Where the model looked", 1)[1]
    for word in raw["captions"][0]["text"].split():
        assert f"\n  {word}: " in looked  # a line per word: where it looked and its map on a grid
    assert "\n  circle: centre " in looked


def test_match_classify_and_batch_through_mcp(app):
    image = data_url(SHAPES[0])
    texts = "a small red circle in the centre\na star"
    error, text = call(app.url, "match", {"image": image, "texts": texts})
    assert not error
    first, second = text.splitlines()[:2]
    assert first.startswith("a small red circle in the centre: ITM ") and second.startswith("a star: ITM ")
    assert float(first.split("ITM ")[1].split(",")[0]) > float(second.split("ITM ")[1].split(",")[0])
    arguments = {"image": image, "labels": "red, green, blue, yellow", "template": "a {} shape"}
    error, text = call(app.url, "classify", arguments)
    assert not error and text.startswith("red: ")
    images = "\n".join([data_url(SHAPES[0]), data_url(SHAPES[1]), "data:image/png;base64,aGVsbG8="])
    error, text = call(app.url, "batch_caption", {"images": images, "decoding": "Greedy"})
    assert not error
    assert text.splitlines()[:3] == [
        "1. a small red circle in the centre",
        "2. a large blue circle at the top and a small green triangle at the bottom",
        "3. could not be read: This file is not an image that can be read (use JPEG, PNG, GIF, WebP, BMP or TIFF)",
    ]


def test_search_through_mcp(app):
    # No pictures given: the bundled examples are searched; a red circle is a red-circle shape.
    error, text = call(app.url, "search", {"query": "a red circle", "top": 3, "rerank": 3})
    assert not error, text
    lines = text.splitlines()
    assert re.fullmatch(
        r"1\. \d_a-small-red-circle-[a-z-]+\.png: ITC -?0\.\d{4}, ITM [01]\.\d{4}", lines[0]
    ), text
    assert lines[2].startswith("3. ") and "(the bundled examples)" in text
    # Pictures given by URL are named by their place in the list; an unreadable one is listed.
    images = "\n".join([data_url(SHAPES[5]), data_url(SHAPES[0]), "data:image/png;base64,aGVsbG8="])
    error, text = call(app.url, "search", {"query": "a red circle", "images": images, "include_json": True})
    assert not error, text
    assert [line.split(":")[0] for line in text.splitlines()[:2]] == ["1. picture 2", "2. picture 1"]
    assert "Could not read picture 3: This file is not an image that can be read" in text
    raw = json.loads(text.split("Raw result (JSON):\n", 1)[1])
    assert raw["indexed"] == 2 and raw["hits"][0]["picture"] == "picture 2"


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("caption", {"beams": 0}, r"Beams \(beam search\) must be between 1 and 10 \(got 0\)"),
        ("caption", {"decoding": "Telepathy"}, r"'Telepathy' is not one of \['Greedy'"),
        ("caption", {"model": "../../etc"}, r"'\.\./\.\./etc' is not one of \['caption-base'"),
        ("caption", {"image": "/etc/passwd"}, r"provide a url \('http://\.\.\.' or 'https://\.\.\.'\)"),
        ("caption", {"image": "data:image/png;base64,aGVsbG8="}, r"This file is not an image that can be read"),
        ("caption", {"image": "http://127.0.0.1:1/x.png"}, r"Could not fetch the image at http://127\.0\.0\.1:1/x\.png"),
        ("ask", {"question": ""}, r"The question is empty"),
        ("match", {"texts": ""}, r"Write at least one text to match"),
        ("classify", {"labels": "red", "template": "no slot"}, r"The template needs a \{\}"),
        ("batch_caption", {"images": ""}, r"Give the images' URLs, one per line"),
        ("search", {"query": " "}, r"The query is empty"),
        ("search", {"top": 0}, r"Results shown must be between 1 and 50 \(got 0\)"),
        ("search", {"images": "file:///etc/passwd"}, r"None of the pictures could be read \(picture 1: Not an http"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_message(app, tool, arguments, message):
    valid = {"image": data_url(SHAPES[0]), "question": "what?", "texts": "a", "labels": "a", "query": "a"}
    arguments = {name: valid[name] for name in REQUIRED[tool] if name in valid} | arguments
    error, text = call(app.url, tool, arguments)
    assert error and "Traceback" not in text
    assert re.search(message, text), text
    assert app.alive()  # and the server is still up
