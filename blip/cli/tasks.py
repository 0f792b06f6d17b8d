"""The task commands: caption, ask, match, classify and likelihood, each one engine call per image
(plus, on request, the vision rollout and a drawing of the search)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..engine.results import GeneratedItem
from ..generation.options import DecodingOptions
from .dataset import caption_dataset, dataset_mode
from .distributed import caption_on_ray
from .options import UsageError, decoding_options, forced_ids, make_engine, open_image
from .output import emit, item_dict, write_heatmaps, write_rollout, write_tree


def tree_options(args: argparse.Namespace, options: DecodingOptions) -> DecodingOptions:
    """With --tree, beam search records its tree (sampling draws its samples' paths as they are)."""
    if not args.tree:
        return options
    if options.strategy == "greedy":
        raise UsageError("--tree draws beam search or samples: give --strategy beam or --strategy sample")
    return replace(options, record_tree=True) if options.strategy == "beam" else options


def describe(item: GeneratedItem, label: str = "") -> str:
    """One line per caption or answer: its text, score, and which of its first tokens were forced."""
    notes = [f"score {item.score:.3f}"] + ([] if item.finished else ["unfinished"])
    if item.forced:
        notes.append(f"forced: {' '.join(t.token for t in item.tokens[: item.forced])}")
    return f"{label}{item.text}  ({', '.join(notes)})"


def cmd_caption(args: argparse.Namespace) -> int:
    """Caption each image; several captions per image with --num-captions. Folders, globs, --out or
    --sidecar caption a dataset instead (:mod:`blip.cli.dataset`)."""
    options = tree_options(args, decoding_options(args))
    if args.ray:
        return caption_on_ray(args, options)
    if dataset_mode(args):
        return caption_dataset(args, options)
    images = [(path, open_image(path)) for path in args.images]
    engine, model = make_engine(args)
    forced = forced_ids(args, engine, model)
    for path, image in images:
        explain = bool(args.heatmaps)
        result = engine.caption(image, model, args.prompt, options, explain_tokens=explain, forced=forced)
        data = result.to_dict()
        data["captions"] = [item_dict(c, d) for c, d in zip(result.captions, data["captions"], strict=True)]
        prefix, label = (f"{Path(path).stem}-", f"{Path(path).name}: ") if len(images) > 1 else ("", "")
        data["heatmaps"] = write_heatmaps(args, image, "caption", [result.captions[0].heatmaps], prefix)
        data["heatmaps"] += write_rollout(args, engine, model, image, prefix)
        data["tree"] = write_tree(args, result, result.captions, prefix)
        lines = [describe(c, label) for c in result.captions]
        emit(args, result, data, lines, path)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer a question: generate freely, or rank the --candidates."""
    options = tree_options(args, decoding_options(args))
    candidates = args.candidates.split(",") if args.candidates is not None else None
    image = open_image(args.image)
    engine, model = make_engine(args)
    forced = forced_ids(args, engine, model)
    result = engine.answer(
        image, args.question, model, options, candidates, args.first_token, bool(args.heatmaps), forced
    )
    data = result.to_dict()
    data["answers"] = [item_dict(a, d) for a, d in zip(result.answers, data["answers"], strict=True)]
    files = write_heatmaps(args, image, "question", [result.question_heatmaps])
    best = result.answers[0] if result.answers else result.ranked[0]
    files += write_heatmaps(args, image, "answer", [best.heatmaps])
    files += write_rollout(args, engine, model, image)
    if result.answers:
        lines = [describe(a) for a in result.answers]
        data["tree"] = write_tree(args, result, result.answers)
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
    data["heatmaps"] += write_rollout(args, engine, model, image)
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
    data["heatmaps"] += write_rollout(args, engine, model, image)
    lines = [f"{s.probability:8.2%}  {s.label}" for s in result.labels]
    emit(args, result, data, lines, args.image)
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    """How likely the captioner finds a caption: each token's probability and the model's own pick."""
    image = open_image(args.image)
    engine, model = make_engine(args)
    result = engine.caption_likelihood(
        image, args.text, model, args.prompt, explain_words=bool(args.heatmaps)
    )
    data = result.to_dict()
    data["heatmaps"] = write_heatmaps(args, image, "caption", [result.heatmaps])
    data["heatmaps"] += write_rollout(args, engine, model, image)
    lines = [f"{'token':14s} {'prob':>7s}  the model's first choice"]
    for t in result.tokens:
        best = f"{t.alternatives[0][0]} ({t.alternatives[0][1]:.3f})" if t.alternatives else ""
        lines.append(f"{t.token:14s} {t.probability:7.3f}  {best}")
    lines.append(f"log-likelihood {result.log_likelihood:.3f}, perplexity {result.perplexity:.2f}")
    emit(args, result, data, lines, args.image)
    return 0
