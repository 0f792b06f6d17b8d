"""The task commands: caption, ask, match and classify, each one engine call per image."""

from __future__ import annotations

import argparse
from pathlib import Path

from .dataset import caption_dataset, dataset_mode
from .options import decoding_options, make_engine, open_image
from .output import emit, item_dict, write_heatmaps


def cmd_caption(args: argparse.Namespace) -> int:
    """Caption each image; several captions per image with --num-captions. Folders, globs, --out or
    --sidecar caption a dataset instead (:mod:`blip.cli.dataset`)."""
    options = decoding_options(args)
    if dataset_mode(args):
        return caption_dataset(args, options)
    images = [(path, open_image(path)) for path in args.images]
    engine, model = make_engine(args)
    for path, image in images:
        result = engine.caption(image, model, args.prompt, options, explain_tokens=bool(args.heatmaps))
        data = result.to_dict()
        data["captions"] = [item_dict(c, d) for c, d in zip(result.captions, data["captions"], strict=True)]
        prefix, label = (f"{Path(path).stem}-", f"{Path(path).name}: ") if len(images) > 1 else ("", "")
        data["heatmaps"] = write_heatmaps(args, image, "caption", [result.captions[0].heatmaps], prefix)
        lines = [
            f"{label}{c.text}  (score {c.score:.3f}{'' if c.finished else ', unfinished'})"
            for c in result.captions
        ]
        emit(args, result, data, lines, path)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer a question: generate freely, or rank the --candidates."""
    options = decoding_options(args)
    candidates = args.candidates.split(",") if args.candidates is not None else None
    image = open_image(args.image)
    engine, model = make_engine(args)
    result = engine.answer(
        image, args.question, model, options, candidates, args.first_token, bool(args.heatmaps)
    )
    data = result.to_dict()
    data["answers"] = [item_dict(a, d) for a, d in zip(result.answers, data["answers"], strict=True)]
    files = write_heatmaps(args, image, "question", [result.question_heatmaps])
    best = result.answers[0] if result.answers else result.ranked[0]
    files += write_heatmaps(args, image, "answer", [best.heatmaps])
    if result.answers:
        lines = [f"{a.text}  (score {a.score:.3f})" for a in result.answers]
    else:
        lines = [f"{r.probability:8.2%}  {r.answer}" for r in result.ranked]
    data["heatmaps"] = files
    emit(args, result, data, lines, args.image)
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    """ITM probability and ITC cosine of the image with each text."""
    image = open_image(args.image)
    engine, model = make_engine(args)
    result = engine.match(image, args.texts, model, args.first_token, explain_words=bool(args.heatmaps))
    data = result.to_dict()
    data["heatmaps"] = write_heatmaps(args, image, "text", [r.heatmaps for r in result.rows])
    lines = ["ITM prob  ITC cos  text"] + [
        f"{r.itm_probability:8.3f}  {r.itc_cosine:7.3f}  {r.text}" for r in result.rows
    ]
    emit(args, result, data, lines, args.image)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """Zero-shot classification over the labels, best first."""
    image = open_image(args.image)
    engine, model = make_engine(args)
    result = engine.classify(
        image, args.labels, model, args.template, args.scoring, args.temperature, args.shortlist,
        args.first_token, explain_labels=bool(args.heatmaps),
    )  # fmt: skip
    data = result.to_dict()
    data["heatmaps"] = write_heatmaps(args, image, "label", [s.heatmaps for s in result.labels])
    lines = [f"{s.probability:8.2%}  {s.label}" for s in result.labels]
    emit(args, result, data, lines, args.image)
    return 0
