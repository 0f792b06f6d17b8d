"""The command line: ``python -m blip caption|ask|match|classify|download|info``.

Each sub-command is one small function: it opens the images, makes one :class:`~blip.engine.Engine`
call and prints the result, for people (a line per caption, a table per match) or, with ``--json``,
for programs (one JSON object per image and line). Mistakes a user can make end in one line on stderr
and exit code 2 (the command line) or 1 (something failed while running), never in a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from . import hub, render
from .checkpoint import CheckpointError
from .config import ConfigError
from .decoding import STRATEGIES, DecodingOptions
from .engine import FIRST_TOKENS, SCORINGS, Engine, default_device
from .explain import Heatmaps
from .results import GeneratedItem, Result
from .uploads import UploadError, open_upload

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# DecodingOptions fields set by flags of the same name (--top-p), except where FLAGS says; not offered:
NOT_OFFERED = ("early_stopping", "top_alternatives", "output_attentions", "use_cache")
DECODING_FIELDS = tuple(f.name for f in fields(DecodingOptions) if f.name not in NOT_OFFERED)
FLAGS = {"num_beams": "--beams", "num_sequences": "--num-{count}"}  # --num-captions, --num-answers
ONLY_FOR = dict.fromkeys(("num_beams", "length_penalty"), "beam")  # flags other strategies would ignore
ONLY_FOR |= dict.fromkeys(("temperature", "top_k", "top_p", "seed"), "sample")


class UsageError(ValueError):
    """A mistake in the command line itself (exit code 2)."""


class RunError(RuntimeError):
    """Something a user can fix that failed while running, such as an unreadable image (exit code 1)."""


# --- shared helpers ----------------------------------------------------------------------------------


def open_image(path: str) -> Image.Image:
    """The picture at ``path`` (upright), or a :class:`RunError` saying why it cannot be read."""
    try:
        return open_upload(path)
    except UploadError as err:  # missing, empty, not an image, damaged, or too large
        raise RunError(f"cannot read image {path}: {err}") from None


def make_engine(args: argparse.Namespace) -> tuple[Engine, str]:
    """An engine for this run, and the model name to ask it for (a table name or a folder)."""
    name = args.model or args.default_model
    local = {}
    if Path(name).is_dir():
        local = {name: Path(name)}
    elif name not in hub.MODELS:
        raise hub.UnknownModelError(name)
    if not 0.0 <= args.opacity <= 1.0:  # checked now, not after the model has run
        raise UsageError(f"--opacity must be between 0 and 1 (got {args.opacity})")
    if args.device:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UsageError(f"--device {args.device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device} was asked for, but CUDA is not available")
    return Engine(device=args.device, dtype=DTYPES[args.dtype], max_models=1, local_models=local), name


def flag_of(field: str, count: str) -> str:
    """The flag that sets a DecodingOptions field; ``count`` names what is counted (captions, answers)."""
    return FLAGS.get(field, "--" + field.replace("_", "-")).format(count=count)


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """DecodingOptions from the flags that were given; flags the chosen strategy would ignore are errors."""
    given = {k: getattr(args, k) for k in DECODING_FIELDS if getattr(args, k) is not None}
    flags = {k: flag_of(k, args.count) for k in DECODING_FIELDS}
    strategy = given.get("strategy", "greedy")
    for name, needs in ONLY_FOR.items():
        if name in given and strategy != needs:
            raise UsageError(f"{flags[name]} only applies to --strategy {needs}")
    try:
        return DecodingOptions(**given)
    except ValueError as err:  # "top_p must be ...": say it with the flag's name
        field, _, rest = str(err).partition(" ")
        raise UsageError(f"{flags.get(field, field)} {rest}") from None


def item_dict(item: GeneratedItem, data: dict[str, Any]) -> dict[str, Any]:
    """A caption's or answer's dict, with its token ids and log-probabilities as plain lists."""
    return {**data, "token_ids": [t.token_id for t in item.tokens], "logprobs": item.logprobs}


def slug(word: str) -> str:
    """A file-name-safe form of a word ("dog's" -> "dog_s"; punctuation alone -> "sym")."""
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "sym"


def write_heatmaps(args, image, what: str, maps: list[Heatmaps | None], prefix: str = "") -> list[str]:
    """With --heatmaps, for the n-th text (a caption, label, ...) ``NN-WHAT.png`` for the whole text and
    ``NN-WHAT-MM-WORD.png`` per word; returns the paths written."""
    written = []
    for n, heat in enumerate(maps if args.heatmaps else []):
        if heat is None or not heat.words:
            continue
        kind = args.heatmap_kind if args.heatmap_kind in heat.kinds() else "attention"
        stem = Path(args.heatmaps) / f"{prefix}{n + 1:02d}-{what}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [(None, f"{stem}.png")]
        paths += [(i, f"{stem}-{i + 1:02d}-{slug(w.text)}.png") for i, w in enumerate(heat.words)]
        for word, path in paths:
            render.overlay(image, heat.grid_map(word=word, kind=kind), opacity=args.opacity).save(path)
        written += [path for _, path in paths]
    return written


def emit(args, result: Result, data: dict[str, Any], lines: list[str], image: str) -> None:
    """Print ``data`` as one JSON line (with --json), else the human-readable ``lines``."""
    if args.json:
        print(json.dumps({"image": image, **data}))
    else:
        files = data["heatmaps"]
        print("\n".join(lines + ([f"wrote {len(files)} heatmaps to {args.heatmaps}"] if files else [])))
    for notice in result.notices:
        print(f"note: {notice}", file=sys.stderr)


# --- sub-commands --------------------------------------------------------------------------------------


def cmd_caption(args: argparse.Namespace) -> int:
    """Caption each image; several captions per image with --num-captions."""
    options = decoding_options(args)
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


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch models into the Hub cache (asking the Hub for newer files even when cached)."""
    names = list(hub.MODELS) if args.all else args.names
    if not names:
        raise UsageError("name at least one model, or use --all")
    unknown = [n for n in names if n not in hub.MODELS]
    if unknown:
        raise hub.UnknownModelError(unknown[0])
    failed = 0
    for name in names:  # huggingface_hub draws its own progress bars on stderr
        try:
            print(f"{name}: {hub.download(name, cache_dir=hub.hub_cache_dir(), refresh=True)}")
        except hub.CheckpointUnavailableError as err:
            print(f"blip download: error: could not download {name}: {err.reason}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cached_state(entry: hub.HubModel, cache: Path) -> tuple[str, int]:
    """("yes" | "partial" | "no", bytes on disk) for one table model, from the cache alone."""
    from huggingface_hub import try_to_load_from_cache

    def has(filename: str) -> bool:
        found = try_to_load_from_cache(entry.repo, filename, cache_dir=cache, revision=entry.revision)
        return isinstance(found, str)

    folder = cache / f"models--{entry.repo.replace('/', '--')}"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    if has("config.json") and any(has(w) for w in hub.WEIGHT_FILES):
        return "yes", size
    return ("partial" if size else "no"), size


def cmd_info(args: argparse.Namespace) -> int:
    """The cache folder, which table models are in it, and the device and torch version in use."""
    cache = hub.hub_cache_dir()
    about = {"cache": str(cache), "device": default_device(), "torch": torch.__version__, "models": {}}
    for name, entry in hub.MODELS.items():
        cached, size = cached_state(entry, cache)
        about["models"][name] = {"repo": entry.repo, "task": entry.task, "cached": cached, "bytes": size}
    if args.json:
        print(json.dumps(about))
        return 0
    print(f"cache:  {cache}\ndevice: {about['device']} (torch {torch.__version__})\n")
    print(f"{'model':20} {'task':10} {'cached':8} size")
    for name, row in about["models"].items():
        size = f"{row['bytes'] / 2**20:.1f} MiB" if row["bytes"] else "-"
        print(f"{name:20} {row['task']:10} {row['cached']:8} {size}")
    return 0


# --- the parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``blip`` parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="blip", description="BLIP from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", metavar="NAME_OR_DIR", help=f"one of {', '.join(hub.MODELS)}, or a folder")
    common.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    common.add_argument("--dtype", choices=DTYPES, default="float32")
    common.add_argument("--json", action="store_true", help="one JSON object per image and line")
    common.add_argument("--heatmaps", metavar="DIR", help="write heatmap overlays (PNG) into DIR")
    common.add_argument("--heatmap-kind", choices=("attention", "gradcam"), default="gradcam")
    common.add_argument("--opacity", type=float, default=0.5, help="of the heatmap overlay, 0..1")

    def add(name: str, func, model: str, text: str, one_image: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=func, default_model=model)
        if one_image:  # ask, match and classify: one image, and a choice of how texts are encoded
            p.add_argument("image", metavar="IMAGE")
            p.add_argument("--first-token", choices=FIRST_TOKENS, default="[ENC]")
        return p

    def decoding(p: argparse.ArgumentParser, count: str) -> None:
        p.set_defaults(count=count)
        g, d = p.add_argument_group("decoding (flags left out keep their defaults)"), DecodingOptions()
        g.add_argument("--strategy", choices=STRATEGIES, help=f"default {d.strategy}")
        for name in DECODING_FIELDS[1:]:
            default, only = getattr(d, name), f"{ONLY_FOR[name]} only, " if name in ONLY_FOR else ""
            kind = float if isinstance(default, float) else int
            g.add_argument(
                flag_of(name, count), dest=name, type=kind, metavar="N", help=f"{only}default {default}"
            )

    p = add("caption", cmd_caption, "caption-base", "Describe images.", one_image=False)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--prompt", default="", help='text the caption continues, e.g. "a picture of"')
    decoding(p, "captions")
    p = add("ask", cmd_ask, "vqa-base", "Answer a question about an image.")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--candidates", metavar='"A,B,C"', help="rank these answers instead of generating")
    decoding(p, "answers")
    p = add("match", cmd_match, "itm-base-coco", "How well does each text match the image?")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p = add("classify", cmd_classify, "itm-base-coco", "Zero-shot classification over labels.")
    p.add_argument("labels", nargs="+", metavar="LABEL")
    p.add_argument("--template", default="a picture of {}", help="{} marks where the label goes")
    p.add_argument("--scoring", choices=SCORINGS, default="itc")
    p.add_argument("--temperature", type=float, default=0.07, help="ITC softmax temperature")
    p.add_argument("--shortlist", type=int, default=5, help="labels ITM re-ranks under itc+itm")
    p = sub.add_parser("download", help="Fetch models into the Hugging Face cache.")
    p.add_argument("names", nargs="*", metavar="NAME", help=", ".join(hub.MODELS))
    p.add_argument("--all", action="store_true", help="every model in the table")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("info", help="Show the cache, cached models, device and torch version.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed while running, 2 usage error)."""
    args = build_parser().parse_args(argv)
    where = f"blip {args.command}: error:"
    try:
        return args.func(args)
    except (RunError, hub.CheckpointUnavailableError, CheckpointError, ConfigError, OSError) as err:
        print(f"{where} {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # bad option values, unknown model, a model of the wrong task
        print(f"{where} {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
