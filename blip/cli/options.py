"""What every command shares: the options that set decoding, the engine a run uses, how an image is
opened, and the two kinds of error a user can cause."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import torch
from PIL import Image

from ..engine import Engine
from ..generation.options import DecodingOptions
from ..loading import hub
from ..loading.uploads import UploadError, open_upload

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# DecodingOptions fields set by flags of the same name (--top-p), except where FLAGS says; not offered:
NOT_OFFERED = ("early_stopping", "top_alternatives", "output_attentions", "use_cache", "record_tree",
               "static_cache")  # fmt: skip
DECODING_FIELDS = tuple(f.name for f in fields(DecodingOptions) if f.name not in NOT_OFFERED)
FLAGS = {"num_beams": "--beams", "num_sequences": "--num-{count}"}  # --num-captions, --num-answers
ONLY_FOR = dict.fromkeys(("num_beams", "length_penalty"), "beam")  # flags other strategies would ignore
ONLY_FOR |= dict.fromkeys(("temperature", "top_k", "top_p", "seed"), "sample")


class UsageError(ValueError):
    """A mistake in the command line itself (exit code 2)."""


class RunError(RuntimeError):
    """Something a user can fix that failed while running, such as an unreadable image (exit code 1)."""


def open_image(path: str) -> Image.Image:
    """The picture at ``path`` (upright), or a :class:`RunError` saying why it cannot be read."""
    try:
        return open_upload(path)
    except UploadError as err:  # missing, empty, not an image, damaged, or too large
        raise RunError(f"cannot read image {path}: {err}") from None


def make_engine(args: argparse.Namespace, also: str | None = None) -> tuple[Engine, str]:
    """An engine for this run, and the model name to ask it for (a table name or a folder); ``also``
    names a second model the run uses (a table name or a folder), kept loaded beside the first."""
    name = args.model or args.default_model
    local = {}
    for wanted in (name, also) if also else (name,):
        if Path(wanted).is_dir():
            local[wanted] = Path(wanted)
        elif wanted not in hub.MODELS:
            raise hub.UnknownModelError(wanted)
    if not 0.0 <= args.opacity <= 1.0:  # checked now, not after the model has run
        raise UsageError(f"--opacity must be between 0 and 1 (got {args.opacity})")
    if not 0.0 <= args.blur <= 10.0:
        raise UsageError(f"--blur must be between 0 (off) and 10 patches (got {args.blur})")
    layer_choice(args.layer)
    if args.rollout and not args.heatmaps:
        raise UsageError("--rollout writes into the --heatmaps folder: give --heatmaps DIR too")
    if args.device:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UsageError(f"--device {args.device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device} was asked for, but CUDA is not available")
    models = 2 if also else 1
    return Engine(device=args.device, dtype=DTYPES[args.dtype], max_models=models, local_models=local), name


def layer_choice(text: str) -> int | str | None:
    """--layer: "auto" (the measured default for each kind of map), "mean" (None) or a layer number."""
    if text in ("auto", "mean"):
        return None if text == "mean" else text
    if text.isdigit():
        return int(text)
    raise UsageError(f"--layer must be auto, mean or a layer number from 0 (got {text!r})")


def forced_ids(args: argparse.Namespace, engine: Engine, model: str) -> list[int]:
    """The token ids --force-ids gives, or the model's wordpieces of the words --force gives."""
    if args.force_ids is not None:
        try:
            return [int(i) for i in args.force_ids.replace(" ", "").split(",") if i]
        except ValueError:
            raise UsageError(
                f"--force-ids takes token ids separated by commas (got {args.force_ids!r})"
            ) from None
    if args.force is not None:
        return engine.token_ids(args.force, model)
    return []


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
