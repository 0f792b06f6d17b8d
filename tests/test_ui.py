"""Handler-level tests of every tab, on the shipped offline demo models (they know the shapes world, so
results can be checked for being right, not only for having the right shape)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import decoding_values

from blip.engine import Engine
from blip.explain import layers, render
from blip.explain.beam_tree import draw_beam_tree, draw_sampled_paths
from blip.loading.uploads import open_upload
from ui import ask_tab, batch_tab, caption_tab, check_caption, match_tab, tool_text, zeroshot_tab
from ui.decoding import BEAM, DECODINGS, GREEDY, NUCLEUS, TOP_K, decoding_options
from ui.errors import friendly
from ui.heatmaps import ALL, KINDS, HeatmapViewer
from ui.services import Services
from ui.status import status_text

ROOT = Path(__file__).resolve().parents[1]
SHAPES = sorted((ROOT / "assets" / "examples" / "shapes").glob("*.png"))
RED_CIRCLE = str(SHAPES[0])  # "a small red circle in the centre"
TWO_SHAPES = str(SHAPES[1])  # "a large blue circle at the top and a small green triangle at the bottom"
MODELS = {"caption": ["caption-base"], "vqa": ["vqa-base"], "retrieval": ["itm-base-coco"]}


def truth(path: str) -> str:
    """The caption an example image was made from (its file name)."""
    return Path(path).stem.split("_", 1)[1].replace("_", " and ").replace("-", " ")


@pytest.fixture(scope="module")
def services() -> Services:
    engine = Engine(device="cpu", demo="always")
    return Services(
        engine=engine, open_image=open_upload, overlay=render.overlay, models=MODELS,
        draw_beam_tree=draw_beam_tree, draw_sampled_paths=draw_sampled_paths,
    )  # fmt: skip


def controls(decoding: str = BEAM, **changes) -> list:
    return decoding_values(decoding, **changes)


def test_decoding_choices_map_to_the_engine_strategies():
    assert decoding_options(*controls(GREEDY))["strategy"] == "greedy"
    beam = decoding_options(*controls(BEAM, beams=4, length_penalty=0.5))
    assert (beam["strategy"], beam["num_beams"], beam["length_penalty"]) == ("beam", 4, 0.5)
    nucleus = decoding_options(*controls(NUCLEUS, top_p=0.8, top_k=7, seed=3))
    assert (nucleus["strategy"], nucleus["top_p"], nucleus["top_k"], nucleus["seed"]) == ("sample", 0.8, 0, 3)
    top_k = decoding_options(*controls(TOP_K, top_p=0.8, top_k=7))
    assert (top_k["strategy"], top_k["top_p"], top_k["top_k"]) == ("sample", 1.0, 7)
    assert "num_beams" not in decoding_options(*controls(GREEDY))  # unused controls are not passed on
    assert decoding_options(*controls(NUCLEUS, seed=None))["seed"] is None
    with pytest.raises(ValueError, match="decoding must be one of"):
        decoding_options(*controls("Contrastive search"))


def test_caption_is_right_and_reports_what_ran(services):
    rows, tokens, token_rows, summary, state, raw = caption_tab.caption(
        services, RED_CIRCLE, "caption-base", "", controls(BEAM)
    )
    assert rows[0][1] == truth(RED_CIRCLE) == "a small red circle in the centre"
    assert raw["decoding"]["strategy"] == "beam" and raw["decoding"]["num_beams"] == 3
    assert "beam search · 3 beams" in summary and "Offline demo model" in summary
    assert "".join(text for text, _ in tokens) == rows[0][1]
    assert all(0 < p <= 1 for _, p in tokens)
    assert [r[1] for r in token_rows][-1] == "[SEP]" and token_rows[0][3]  # alternatives listed
    assert [label for label, _ in state["texts"]] == [f"caption 1: {rows[0][1]}"]


def test_what_if_continues_after_another_word_with_the_same_decoding(services):
    for choice in (GREEDY, BEAM):
        compared, tokens, token_rows, summary, _state = caption_tab.what_if(
            services, RED_CIRCLE, "caption-base", "", controls(choice), 3, "blue"
        )
        (_, original, original_score), (label, changed, changed_score) = compared
        assert original == truth(RED_CIRCLE) and label == "what if token 3 were 'blue'"
        assert changed.startswith("a small blue ") and changed != original
        assert changed_score < original_score  # the model preferred its own word
        assert "".join(text for text, _ in tokens) == changed and token_rows[2][1] == "blue"
        assert (
            "first 3 token(s)" in summary
            and ("beam search" if choice == BEAM else "greedy search") in summary
        )
    # a wordpiece from the alternatives list, and a typed word the tokenizer splits, both work
    (_, _, _), (_, larger, _) = caption_tab.what_if(
        services, RED_CIRCLE, "caption-base", "", controls(GREEDY), 2, "large"
    )[0]
    assert larger.startswith("a large ")


@pytest.mark.parametrize(
    ("position", "word", "message"),
    [(0, "blue", "Position must be between 1 and 8"), (9, "blue", "Position must be between 1 and 8"),
     (None, "blue", "Position must be"), (3, "  ", "Type a word")],
)  # fmt: skip
def test_what_if_says_what_is_wrong(services, position, word, message):
    handler = friendly(caption_tab.what_if)
    with pytest.raises(gr.Error, match=message):
        handler(services, RED_CIRCLE, "caption-base", "", controls(GREEDY), position, word)


def test_check_caption_gives_the_matchers_verdict_and_the_captioners_likelihood(services):
    def run(text, heatmaps=False):
        return check_caption.check(services, RED_CIRCLE, "caption-base", "itm-base-coco", "", text, heatmaps)

    right, tokens, token_rows, summary, state, raw = run(truth(RED_CIRCLE), heatmaps=True)
    wrong = run("a large blue star at the top")
    assert "yes, it matches" in right and "no, it does not match" in wrong[0]
    assert raw["check"]["itm_probability"] > 0.5 > wrong[5]["check"]["itm_probability"]
    assert raw["check"]["itc_cosine"] > wrong[5]["check"]["itc_cosine"]
    assert raw["likelihood"]["log_likelihood"] > wrong[5]["likelihood"]["log_likelihood"]
    assert [r[1] for r in token_rows] == ["a", "small", "red", "circle", "in", "the", "centre", "[SEP]"]
    assert "".join(text for text, _ in tokens) == truth(RED_CIRCLE) and "perplexity" in right
    assert [label.split(":")[0] for label, _ in state["texts"]] == ["captioner reading", "matcher reading"]
    assert wrong[4] is None and "Offline demo model" in summary
    with pytest.raises(gr.Error, match="Type a caption to check"):
        friendly(check_caption.check)(services, RED_CIRCLE, "caption-base", "itm-base-coco", "", "  ")


def test_the_search_is_drawn_for_beam_search_and_sampling_not_greedy(services, monkeypatch):
    picture, note = caption_tab.beam_tree(
        services, RED_CIRCLE, "caption-base", "", controls(BEAM, beams=4), True
    )
    assert picture.width > 200 and picture.height > 100 and len(picture.getcolors(1 << 16) or range(3)) > 2
    assert note.startswith("4 beams") and truth(RED_CIRCLE) in note
    smaller, _ = caption_tab.beam_tree(
        services, RED_CIRCLE, "caption-base", "", controls(BEAM, beams=4), False
    )
    assert smaller.size != picture.size  # without the pruned candidates
    with pytest.raises(gr.Error, match="choose Beam search or a sampling method"):
        friendly(caption_tab.beam_tree)(services, RED_CIRCLE, "caption-base", "", controls(GREEDY))

    # Sampling: the captions of seeds 5..10 (two each), exactly as separate calls sample them, drawn as paths.
    drawn = {}

    def recording(paths, labels):
        drawn.update(paths=paths, labels=labels)
        return draw_sampled_paths(paths, labels)

    monkeypatch.setattr(services, "draw_sampled_paths", recording)
    values = controls(TOP_K, top_k=5, temperature=1.5, seed=5, count=2)
    picture, note = caption_tab.beam_tree(services, TWO_SHAPES, "caption-base", "", values)
    options = decoding_options(*values)
    expected = []
    for seed in range(5, 5 + caption_tab.SAMPLED_SEEDS):
        result = services.engine.caption(
            open_upload(TWO_SHAPES), "caption-base", options=options | {"seed": seed}
        )
        expected += [[(t.token, t.probability) for t in item.tokens] for item in result.captions]
    assert drawn["paths"] == expected and len(expected) == 2 * caption_tab.SAMPLED_SEEDS
    assert drawn["labels"][:3] == ["seed 5 #1", "seed 5 #2", "seed 6 #1"]
    assert picture.width > 200 and note.startswith("Sampling with seeds 5 to 10: 12 captions")


def test_each_decoding_choice_changes_what_runs(services):
    def run(choice, **changes):
        out = caption_tab.caption(
            services, TWO_SHAPES, "caption-base", "", controls(choice, **changes), False
        )
        return [r[1] for r in out[0]], out[5]["decoding"]

    greedy, ran = run(GREEDY)
    assert ran["strategy"] == "greedy" and greedy == [truth(TWO_SHAPES)]
    beams, ran = run(BEAM, beams=4, count=3)
    assert ran["num_beams"] == 4 and len(beams) == 3 and len(set(beams)) == 3  # n-best: distinct captions
    # Hot sampling: random captions; the seed makes them repeatable, another seed changes them.
    hot = {"temperature": 2.0, "count": 3}
    first, ran = run(NUCLEUS, top_p=1.0, seed=1, **hot)
    assert ran["strategy"] == "sample" and ran["top_k"] == 0
    assert run(NUCLEUS, top_p=1.0, seed=1, **hot)[0] == first
    assert run(NUCLEUS, top_p=1.0, seed=2, **hot)[0] != first
    assert first != greedy * 3
    # top-k 1 is greedy whatever the temperature; top-p 0.05 keeps only the most likely token too.
    assert run(TOP_K, top_k=1, seed=5, temperature=2.0)[0] == greedy
    assert run(NUCLEUS, top_p=0.05, seed=5, temperature=2.0)[0] == greedy
    # Prompt prefix: the caption continues it.
    out = caption_tab.caption(services, RED_CIRCLE, "caption-base", "a small", controls(GREEDY), False)
    assert out[0][0][1].startswith("a small")
    # Token limits are obeyed.
    short, _ = run(GREEDY, max_new_tokens=3, min_new_tokens=0)
    assert short[0] == "a large blue"


def test_bad_controls_give_a_message_naming_the_control(services):
    handler = friendly(caption_tab.caption)
    with pytest.raises(gr.Error, match="Number of outputs must be 1 for greedy search"):
        handler(services, RED_CIRCLE, "caption-base", "", controls(GREEDY, count=2))
    with pytest.raises(gr.Error, match=r"Min new tokens must be between 0 and Max new tokens \(3\)"):
        handler(
            services, RED_CIRCLE, "caption-base", "", controls(GREEDY, min_new_tokens=9, max_new_tokens=3)
        )
    with pytest.raises(gr.Error, match="Upload an image first"):
        handler(services, None, "caption-base", "", controls())
    with pytest.raises(gr.Error, match="Unknown model 'caption-huge'"):
        handler(services, RED_CIRCLE, "caption-huge", "", controls())
    with pytest.raises(gr.Error, match="This file is not an image that can be read"):
        handler(services, str(ROOT / "README.md"), "caption-base", "", controls())


def test_ask_generates_and_ranks(services):
    answer, rows, tokens, _summary, state, _raw = ask_tab.ask(
        services, TWO_SHAPES, "vqa-base", "what colour is the circle?", ask_tab.GENERATE, "", "[ENC]",
        controls(BEAM, min_new_tokens=1, max_new_tokens=10),
    )  # fmt: skip
    assert answer == "## blue" and rows[0][0] == "blue" and tokens[0][0] == "blue"
    assert [label.split(":")[0] for label, _ in state["texts"]] == ["question", "answer"]
    answer, rows, *_ = ask_tab.ask(
        services, TWO_SHAPES, "vqa-base", "what shape is at the bottom?", ask_tab.RANK,
        "circle\ntriangle\n\nstar\n", "[ENC]", controls(),
    )  # fmt: skip
    assert answer == "## triangle" and next(r[0] for r in rows) == "triangle" and len(rows) == 3
    assert sum(r[1] for r in rows) == pytest.approx(1, abs=1e-3)
    with pytest.raises(ValueError, match="candidate answers"):
        ask_tab.ask(services, TWO_SHAPES, "vqa-base", "what?", ask_tab.RANK, " \n", "[ENC]", controls())
    with pytest.raises(ValueError, match="question is empty"):
        ask_tab.ask(services, TWO_SHAPES, "vqa-base", "  ", ask_tab.GENERATE, "", "[ENC]", controls())


def test_match_scores_every_line(services):
    right = truth(TWO_SHAPES)
    wrong = "a large green circle at the top and a small green triangle at the bottom"
    rows, _summary, state, _raw = match_tab.match(
        services, TWO_SHAPES, "itm-base-coco", f"{right}\n\n{wrong}\n", "[ENC]"
    )
    assert [r[0] for r in rows] == [right, wrong]
    assert rows[0][1] > 0.5 > rows[1][1] and rows[0][2] > rows[1][2]
    assert len(state["texts"]) == 2 and state["texts"][0][1].kinds() == ["attention", "gradcam"]
    first = match_tab.match(services, TWO_SHAPES, "itm-base-coco", right, "[CLS]", False)
    assert first[3]["first_token"] == "[CLS]" and first[2] is None  # no heatmaps asked for
    with pytest.raises(ValueError, match="at least one text"):
        match_tab.match(services, TWO_SHAPES, "itm-base-coco", "\n ", "[ENC]")


def test_zero_shot_labels(services):
    probabilities, rows, _summary, state, raw = zeroshot_tab.classify(
        services, RED_CIRCLE, "itm-base-coco", "red, green\nblue, yellow, red", "a {} shape",
        "ITC (cosine, fast)", 0.07,
    )  # fmt: skip
    assert max(probabilities, key=probabilities.get) == "red" and len(probabilities) == 4  # duplicate dropped
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert rows[0][3] is None  # no ITM logit with ITC scoring
    _, rows, _, state, raw = zeroshot_tab.classify(
        services, RED_CIRCLE, "itm-base-coco", "red, green, blue", "a {} shape", "ITM (match head, every label)",
        0.07, True,
    )  # fmt: skip
    assert raw["scoring"] == "itm" and rows[0][3] is not None and rows[0][2] is None
    assert next(label for label, _ in state["texts"]) == "a red shape"
    with pytest.raises(ValueError, match="at least one label"):
        zeroshot_tab.classify(
            services, RED_CIRCLE, "itm-base-coco", " , ", "a {}", "ITC (cosine, fast)", 0.07
        )


def test_heatmap_viewer_draws_the_chosen_map(services):
    state = caption_tab.caption(services, TWO_SHAPES, "caption-base", "", controls(GREEDY))[4]
    viewer = HeatmapViewer.__new__(HeatmapViewer)  # the drawing logic, without building components
    viewer.services = services
    menus = HeatmapViewer.menus(state)
    assert menus[4] == {"__type__": "update", "choices": [*KINDS], "value": "Attention"}
    assert menus[2]["value"] == layers.DEFAULT_LAYERS[("caption", "attention")][3]  # the measured best
    words = [w.text for w in state["texts"][0][1].words]
    circle = words.index("circle")
    image, gallery, note = viewer.render(state, 0, circle, ALL, ALL, "Attention", 0.5)
    assert image.size == (480, 480) and len(gallery) == len(words) and note == ""
    assert [caption for _, caption in gallery] == words
    other_layer = viewer.render(state, 0, circle, 0, 1, "Attention", 0.5)[0]
    gradcam = viewer.render(state, 0, circle, ALL, ALL, "Grad-CAM", 0.5)[0]
    plain = viewer.render(state, 0, circle, ALL, ALL, "Attention", 0.0)[0]
    assert len({image.tobytes(), other_layer.tobytes(), gradcam.tobytes(), plain.tobytes()}) == 4
    blurred = viewer.render(state, 0, circle, ALL, ALL, "Attention", 0.5, "jet", 0.48)[0]
    viridis, viridis_gallery, _ = viewer.render(state, 0, circle, ALL, ALL, "Attention", 0.5, "viridis", 0.0)
    assert len({image.tobytes(), blurred.tobytes(), viridis.tobytes()}) == 3
    assert viridis_gallery[0][0].tobytes() != gallery[0][0].tobytes()  # the gallery follows the style
    # Attention for "circle" is hottest on the circle (top half), not on the triangle (bottom half).
    hot = image.convert("RGB").getchannel("R").crop((0, 0, 480, 240)).getextrema()[1]
    assert hot >= image.convert("RGB").getchannel("R").crop((0, 240, 480, 480)).getextrema()[1]


def test_batch_captions_every_image_and_writes_csv(services, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    done = batch_tab.batch_caption(
        services, [*map(str, SHAPES[:3]), str(broken)], "caption-base", "", controls(GREEDY)
    )
    rows, path = done.rows, done.files[0]
    assert [r[1] for r in rows[:3]] == [truth(str(p)) for p in SHAPES[:3]]
    assert rows[3][0] == "broken.jpg" and "not an image that can be read" in rows[3][4]
    with open(path, newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    assert table[0] == batch_tab.COLUMNS and [r[1] for r in table[1:]] == [r[1] for r in rows]
    with pytest.raises(ValueError, match="add some images"):
        batch_tab.batch_caption(services, [], "caption-base", "", controls(GREEDY))


def test_status_line_names_the_demo_model(services):
    caption_tab.caption(services, RED_CIRCLE, "caption-base", "", controls(GREEDY), False)
    text = status_text(services)
    assert "Offline demo model" in text and "`caption-base` (offline demo model)" in text and "cpu" in text


def test_a_map_in_words_says_where_it_is():

    heat = np.zeros((24, 24))
    heat[16:, 20:] = 1.0  # all of it in the bottom-right corner: the last two rows of the 6x6 grid
    place, grid = tool_text.where_it_looked(heat).split(" · ")
    assert place == "bottom-right 100%"
    assert grid.split("/") == ["000000"] * 4 + ["000009"] * 2
    assert tool_text.where_it_looked(np.zeros((6, 6))) == "nowhere in particular (an empty map)"


def test_tools_answer_in_text_first(services):

    rows, *_, raw = caption_tab.caption(services, RED_CIRCLE, "caption-base", "", controls(GREEDY), False)
    text = tool_text.caption_text(services, RED_CIRCLE, "caption-base", "", controls(GREEDY))
    assert text.splitlines()[0] == rows[0][1] == raw["captions"][0]["text"]
    assert "Raw result" not in text and "Where the model looked" not in text
    text = tool_text.caption_text(
        services, RED_CIRCLE, "caption-base", "", controls(BEAM, count=2), True, True
    )
    assert [line[:3] for line in text.splitlines()[:2]] == ["1. ", "2. "]
    assert "\n  circle: centre " in text and json.loads(text.split("Raw result (JSON):\n")[1])["captions"]
    text = tool_text.ask_text(services, RED_CIRCLE, "vqa-base", "what colour is the circle?", "blue\nred",
                          "[ENC]", controls(GREEDY))  # fmt: skip
    assert text.splitlines()[0].startswith("red: ") and text.splitlines()[1].startswith("blue: ")


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def test_ui_imports_no_torch():
    assert _run("import sys, ui; print('torch' in sys.modules, 'blip' in sys.modules)") == "False False"


def test_importing_app_starts_nothing():
    code = (
        "import sys, threading, app; "
        "print(threading.active_count(), 'torch' in sys.modules, 'gradio' in sys.modules)"
    )
    assert _run(code) == "1 False False"
    assert list(DECODINGS) == [GREEDY, BEAM, NUCLEUS, TOP_K]


def test_app_flags_default_to_local_and_private(monkeypatch):
    import app

    monkeypatch.delenv("SPACE_ID", raising=False)
    args = app.parse_args([])
    assert (args.host, args.share, args.offline_demo, args.mcp) == ("127.0.0.1", False, False, False)
    monkeypatch.setenv("SPACE_ID", "someone/blip-explorer")
    assert app.parse_args([]).host == "0.0.0.0"
    with pytest.raises(SystemExit, match="NAME=DIR"):
        app.local_models(["no-directory-here"])
