"""The command line end to end on tiny random-weight checkpoints: output shapes and numbers, heatmap
files, the cache commands, and one clear line (never a traceback) for every mistake a user can make."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image
from PIL import Image
from transformers import BertTokenizer

from blip.cli import main
from blip.engine import SCORINGS
from blip.loading.hub import MODELS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 40)  # not square, so a heatmap at the model's square size would show


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("images")
    paths = [folder / "first.png", folder / "second.jpg"]
    for seed, path in enumerate(paths):
        random_image(seed, SIZE).save(path)
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def models(checkpoints) -> dict[str, str]:
    return {
        "caption": str(checkpoints.decoding("caption")),
        "vqa": str(checkpoints.decoding("vqa")),
        "retrieval": str(checkpoints.get("retrieval")),
    }


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def check_generated(item: dict, tokenizer: BertTokenizer) -> None:
    """Token ids, per-token log-probabilities and the text agree with each other."""
    ids = item["token_ids"]
    assert ids and all(isinstance(i, int) for i in ids)
    assert ids == [t["token_id"] for t in item["tokens"]]
    assert len(item["logprobs"]) == len(ids)
    for logprob, token in zip(item["logprobs"], item["tokens"], strict=True):
        assert logprob <= 0 and math.exp(logprob) == pytest.approx(token["probability"], rel=1e-5)
    assert item["text"] == tokenizer.decode(ids, skip_special_tokens=True)
    assert item["finished"] == (ids[-1] == tokenizer.sep_token_id)


# --- caption and ask -----------------------------------------------------------------------------------


def test_caption_greedy_json(capsys, images, models):
    data = run_json(capsys, "caption", images[0], "--model", models["caption"], "--max-new-tokens", 12)
    assert data["image"] == images[0] and data["model"] == models["caption"]
    assert data["decoding"]["strategy"] == "greedy" and data["decoding"]["max_new_tokens"] == 12
    (caption,) = data["captions"]
    check_generated(caption, BertTokenizer.from_pretrained(models["caption"]))
    assert caption["score"] == pytest.approx(sum(caption["logprobs"]), abs=1e-4)  # greedy: the sum
    assert data["heatmaps"] == []


def test_caption_beam_json(capsys, images, models):
    argv = ["caption", images[0], "--model", models["caption"], "--strategy", "beam", "--beams", 4]
    data = run_json(capsys, *argv, "--num-captions", 3, "--length-penalty", 0)
    assert (data["decoding"]["num_beams"], data["decoding"]["num_sequences"]) == (4, 3)
    tokenizer = BertTokenizer.from_pretrained(models["caption"])
    captions = data["captions"]
    assert len(captions) == 3
    for caption in captions:
        check_generated(caption, tokenizer)
        # With length penalty 0 the beam score is the plain sum of the token log-probabilities.
        assert caption["score"] == pytest.approx(sum(caption["logprobs"]), abs=1e-4)
    assert [c["score"] for c in captions] == sorted((c["score"] for c in captions), reverse=True)


def test_caption_prompt_and_several_images(capsys, images, models):
    code, out, err = run(capsys, "caption", *images, "--model", models["caption"], "--prompt", "a picture of")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["first.png", "second.jpg"]
    assert all(": a picture of" in line and "(score -" in line for line in lines)


def test_ask_generate_json(capsys, images, models):
    data = run_json(capsys, "ask", images[0], "what is in the picture?", "--model", models["vqa"])
    assert data["question"] == "what is in the picture?" and data["ranked"] == []
    (answer,) = data["answers"]
    check_generated(answer, BertTokenizer.from_pretrained(models["vqa"]))


def test_ask_rank(capsys, images, models):
    argv = ["ask", images[0], "how many dogs?", "--model", models["vqa"], "--first-token", "[CLS]"]
    data = run_json(capsys, *argv, "--candidates", "one, two,three")
    ranked = data["ranked"]
    assert sorted(r["answer"] for r in ranked) == ["one", "three", "two"] and data["answers"] == []
    assert sum(r["probability"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
    assert [r["log_likelihood"] for r in ranked] == sorted(
        (r["log_likelihood"] for r in ranked), reverse=True
    )
    assert data["first_token"] == "[CLS]"
    code, out, _ = run(capsys, *argv, "--candidates", "one,two")
    assert code == 0 and len(out.splitlines()) == 2 and all("%" in line for line in out.splitlines())


# --- match and classify --------------------------------------------------------------------------------


def test_match(capsys, images, models):
    texts = ["a dog on a bench", "two cats", "a red car"]
    data = run_json(capsys, "match", images[1], *texts, "--model", models["retrieval"])
    assert [r["text"] for r in data["rows"]] == texts
    for row in data["rows"]:
        assert 0.0 <= row["itm_probability"] <= 1.0
        assert -1.0 <= row["itc_cosine"] <= 1.0
    code, out, _ = run(capsys, "match", images[1], *texts, "--model", models["retrieval"])
    assert code == 0 and out.splitlines()[0].split() == ["ITM", "prob", "ITC", "cos", "text"]
    assert len(out.splitlines()) == 1 + len(texts)


@pytest.mark.parametrize("scoring", SCORINGS)
def test_classify(capsys, images, models, scoring):
    labels = ["dog", "cat", "car", "tree"]
    argv = ["classify", images[0], *labels, "--model", models["retrieval"], "--scoring", scoring]
    data = run_json(capsys, *argv, "--shortlist", 2, "--template", "a photo of a {}")
    assert data["scoring"] == scoring and data["template"] == "a photo of a {}"
    probabilities = [s["probability"] for s in data["labels"]]
    assert sorted(s["label"] for s in data["labels"]) == sorted(labels)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities == sorted(probabilities, reverse=True)
    if scoring == "itc+itm":  # only the shortlist is re-ranked; the rest get nothing
        assert probabilities[2:] == [0.0, 0.0]


# --- heatmaps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "model", "stems"),
    [
        ("caption", [], "caption", ["01-caption"]),
        ("ask", ["what is it?"], "vqa", ["01-question", "01-answer"]),
        ("match", ["a dog", "two cats"], "retrieval", ["01-text", "02-text"]),
        ("classify", ["dog", "cat"], "retrieval", ["01-label", "02-label"]),
    ],
)
def test_heatmaps_are_written_at_the_image_size(
    capsys, tmp_path, images, models, command, args, model, stems
):
    out = tmp_path / "maps"
    argv = [command, images[0], *args, "--model", models[model], "--heatmaps", out, "--opacity", 0.4]
    data = run_json(capsys, *argv)
    files = sorted(out.iterdir())
    assert sorted(data["heatmaps"]) == [str(f) for f in files]
    for stem in stems:  # the whole-text map and at least one word map per text
        assert (out / f"{stem}.png").is_file()
        assert any(f.name.startswith(f"{stem}-01-") for f in files)
    for f in files:
        assert f.suffix == ".png"
        with Image.open(f) as png:
            assert png.size == SIZE and png.mode == "RGB"


def test_heatmap_names_follow_the_words(capsys, tmp_path, images, models):
    out = tmp_path / "maps"
    argv = ["match", images[0], "a dog's bone", "--model", models["retrieval"], "--heatmaps", out]
    code, stdout, err = run(capsys, *argv, "--heatmap-kind", "attention")
    assert code == 0, err
    names = sorted(f.name for f in out.iterdir())
    # BERT splits "dog's" into "dog", "'", "s"; the apostrophe gets a file-safe name.
    words = ["01-a", "02-dog", "03-sym", "04-s", "05-bone"]
    assert names == [f"01-text-{w}.png" for w in words] + ["01-text.png"]
    assert f"wrote 6 heatmaps to {out}" in stdout


def test_heatmap_overlay_options_and_the_rollout(capsys, tmp_path, images, models):
    base = ["caption", images[0], "--model", models["caption"], "--json"]
    written = {}
    for name, extra in {
        "auto": [],
        "mean": ["--layer", "mean"],
        "layer0": ["--layer", "0", "--heatmap-kind", "attention"],
        "styled": ["--blur", "0.48", "--colormap", "viridis", "--rollout"],
    }.items():
        out = tmp_path / name
        code, stdout, err = run(capsys, *base, "--heatmaps", out, *extra)
        assert code == 0, err
        written[name] = json.loads(stdout)["heatmaps"]
        for f in written[name]:
            with Image.open(f) as png:
                assert png.size == SIZE
    pixels = {k: np.asarray(Image.open(tmp_path / k / "01-caption.png")) for k in written}
    # The tiny test models' depth was never measured: "auto" opens on the mean over layers.
    assert np.array_equal(pixels["auto"], pixels["mean"]) and not np.array_equal(
        pixels["mean"], pixels["layer0"]
    )
    assert not np.array_equal(pixels["mean"], pixels["styled"])
    assert str(tmp_path / "styled" / "rollout.png") in written["styled"]


def test_what_if_flags_continue_from_forced_tokens(capsys, images, models):
    base = ["caption", images[0], "--model", models["caption"], "--max-new-tokens", 12]
    original = run_json(capsys, *base)["captions"][0]
    ids = original["token_ids"]
    again = run_json(capsys, *base, "--force-ids", ",".join(map(str, ids[:2])))
    assert again["forced_ids"] == ids[:2] and again["captions"][0]["forced"] == 2
    assert again["captions"][0]["token_ids"] == ids  # greedy from its own first tokens: the same caption
    words = run_json(capsys, *base, "--force", "two red")
    tokenizer = BertTokenizer.from_pretrained(models["caption"])
    assert words["forced_ids"] == tokenizer("two red", add_special_tokens=False).input_ids
    assert words["captions"][0]["text"].startswith("two red")
    code, out, _ = run(capsys, *base, "--force", "two red")
    assert code == 0 and "forced: two red" in out
    answer = run_json(
        capsys, "ask", images[0], "what is it?", "--model", models["vqa"], "--force-ids", "2417"
    )
    assert answer["answers"][0]["token_ids"][0] == 2417 and answer["answers"][0]["forced"] == 1


def test_trees_are_drawn(capsys, tmp_path, images, models):
    base = ["caption", images[0], "--model", models["caption"], "--max-new-tokens", 8]
    data = run_json(capsys, *base, "--strategy", "beam", "--tree", tmp_path / "beam.png")
    assert data["tree"] == str(tmp_path / "beam.png") and data["search_tree"]["num_beams"] == 3
    data = run_json(capsys, *base, "--strategy", "sample", "--num-captions", 3, "--tree", tmp_path / "s.png")
    assert data["tree"] == str(tmp_path / "s.png") and data["search_tree"] is None
    for name in ("beam.png", "s.png"):
        with Image.open(tmp_path / name) as png:
            assert png.width > 200


def test_likelihood(capsys, images, models):
    data = run_json(capsys, "likelihood", images[0], "two red cars", "--model", models["caption"])
    tokenizer = BertTokenizer.from_pretrained(models["caption"])
    assert [t["token_id"] for t in data["tokens"]] == tokenizer("two red cars").input_ids[1:]
    assert data["log_likelihood"] == pytest.approx(
        sum(math.log(t["probability"]) for t in data["tokens"]), abs=1e-4
    )
    code, out, _ = run(capsys, "likelihood", images[0], "two red cars", "--model", models["caption"])
    assert code == 0 and out.splitlines()[-1].startswith("log-likelihood")


# --- info and download ------------------------------------------------------------------------------


def test_info_with_an_empty_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, out, _ = run(capsys, "info")
    assert code == 0 and str(tmp_path) in out and "torch" in out
    rows = {parts[0]: parts for parts in map(str.split, out.splitlines()) if parts and parts[0] in MODELS}
    assert set(rows) == set(MODELS)
    assert all(row[2] == "no" for row in rows.values())
    data = run_json(capsys, "info")
    assert data["cache"] == str(tmp_path)
    assert {name: m["cached"] for name, m in data["models"].items()} == dict.fromkeys(MODELS, "no")


def test_info_sees_a_cached_model(capsys, tmp_path, monkeypatch):
    snapshot = tmp_path / "models--Salesforce--blip-vqa-base" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"0" * 3 * 2**20)
    (tmp_path / "models--Salesforce--blip-vqa-base" / "refs").mkdir()
    (tmp_path / "models--Salesforce--blip-vqa-base" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    data = run_json(capsys, "info")
    assert data["models"]["vqa-base"]["cached"] == "yes"
    assert data["models"]["vqa-base"]["bytes"] >= 3 * 2**20
    assert data["models"]["caption-base"]["cached"] == "no"


def test_download_offline_with_an_empty_cache_fails_clearly(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "download", "caption-base")
    assert code == 1 and out == ""
    reason = "could not download caption-base: offline mode is on (HF_HUB_OFFLINE)"
    assert one_line_error(err) == f"blip download: error: {reason}"
    assert not any(f.is_file() for f in tmp_path.rglob("*"))  # nothing was fetched


def test_download_needs_known_names(capsys):
    code, _, err = run(capsys, "download")
    assert code == 2 and "--all" in err
    code, _, err = run(capsys, "download", "caption-base", "caption-huge")
    assert code == 2 and "caption-huge" in err


# --- mistakes a user can make ------------------------------------------------------------------------


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_model_lists_the_valid_names(capsys, images):
    code, out, err = run(capsys, "caption", images[0], "--model", "caption-huge")
    line = one_line_error(err)
    assert code == 2 and out == ""
    assert "caption-huge" in line and all(name in line for name in MODELS)


def test_unreadable_image(capsys, tmp_path, models):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a picture")
    code, _, err = run(capsys, "caption", fake, "--model", models["caption"])
    expected = f"blip caption: error: cannot read image {fake}: this file is not an image that can be read"
    assert code == 1 and one_line_error(err).startswith(expected)
    code, _, err = run(capsys, "match", tmp_path / "missing.png", "a dog", "--model", models["retrieval"])
    assert code == 1 and "No such file" in one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["caption", "{img}", "--model", "{retrieval}"], "captioning needs a CaptionModel"),
        (["ask", "{img}", "why?", "--model", "{caption}"], "question answering needs"),
        (
            ["caption", "{img}", "--model", "{caption}", "--top-p", "0.5"],
            "--top-p only applies to --strategy sample",
        ),
        (
            ["caption", "{img}", "--model", "{caption}", "--strategy", "sample", "--top-p", "2"],
            "--top-p must be",
        ),
        (["caption", "{img}", "--model", "{caption}", "--num-captions", "2"], "--num-captions must be 1"),
        (
            ["ask", "{img}", "why?", "--model", "{vqa}", "--strategy", "beam", "--beams", "99"],
            "--beams must be",
        ),
        (
            ["classify", "{img}", "dog", "--model", "{retrieval}", "--template", "a dog"],
            "template needs a {}",
        ),
        (["match", "{img}", "a dog", "--model", "{retrieval}", "--opacity", "1.5"], "--opacity must be"),
        (["match", "{img}", "a dog", "--model", "{retrieval}", "--device", "warp-drive"], "--device"),
        (["match", "{img}", "a dog", "--model", "{retrieval}", "--blur", "-1"], "--blur must be"),
        (["match", "{img}", "a dog", "--model", "{retrieval}", "--layer", "top"], "--layer must be"),
        (["match", "{img}", "a dog", "--model", "{retrieval}", "--rollout"], "--rollout writes into"),
        (["caption", "{img}", "--model", "{caption}", "--tree", "t.png"], "--tree draws beam search"),
        (["caption", "{img}", "--model", "{caption}", "--force-ids", "1,x"], "--force-ids takes"),
        (["caption", "{img}", "--model", "{caption}", "--force-ids", "102,1037"], "may only be the last"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, images, models, argv, message):
    argv = [a.format(img=images[0], **models) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in one_line_error(err)


# --- as a program ------------------------------------------------------------------------------------


def test_python_dash_m_blip_json(images, models):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "blip", "caption", images[1], "--model", models["caption"], "--json"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    check_generated(data["captions"][0], BertTokenizer.from_pretrained(models["caption"]))
    argv = [sys.executable, "-m", "blip", "match", images[1], "a dog", "--model", "itm-huge"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert one_line_error(done.stderr).startswith("blip match: error: unknown model 'itm-huge'")
