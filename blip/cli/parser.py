"""The ``blip`` argument parser: options every command shares, then one sub-parser per command."""

from __future__ import annotations

import argparse

from ..engine import FIRST_TOKENS, SCORINGS
from ..explain.render import COLORMAPS, LAVIS_BLUR
from ..generation.options import STRATEGIES, DecodingOptions
from ..loading import hub
from .cache import cmd_download, cmd_info
from .collections import cmd_embed, cmd_index, cmd_search
from .options import DECODING_FIELDS, DTYPES, ONLY_FOR, flag_of
from .tasks import cmd_ask, cmd_caption, cmd_classify, cmd_likelihood, cmd_match


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
    common.add_argument("--colormap", choices=COLORMAPS, default="jet", help="of the heatmap overlay")
    common.add_argument(
        "--blur", type=float, default=0.0, metavar="SIGMA", help=f"in patches (LAVIS: {LAVIS_BLUR}); 0 = off"
    )
    common.add_argument(
        "--layer",
        default="auto",
        help="text layer of the heatmaps: auto (measured default), mean, or 0, 1, ...",
    )
    common.add_argument("--rollout", action="store_true", help="also write the ViT's attention rollout")

    def add(name: str, func, model: str, text: str, one_image: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=func, default_model=model)
        if one_image:  # ask, match and classify: one image, and a choice of how texts are encoded
            p.add_argument("image", metavar="IMAGE")
            p.add_argument("--first-token", choices=FIRST_TOKENS, default="[ENC]")
        return p

    def decoding(p: argparse.ArgumentParser, count: str) -> None:
        p.set_defaults(count=count)
        forcing = p.add_mutually_exclusive_group()
        forcing.add_argument(
            "--force-ids", metavar="ID,ID", help="what if: start the text with these token ids (see --json)"
        )
        forcing.add_argument("--force", metavar="WORDS", help="what if: start the text with these words")
        p.add_argument("--tree", metavar="PNG", help="draw the beam search tree, or the samples' paths")
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
    g = p.add_argument_group("datasets (folders or globs, or any of these flags)")
    g.add_argument(
        "--out", metavar="FILE", help="write rows to FILE.jsonl or FILE.csv (resumes an unfinished run)"
    )
    g.add_argument("--sidecar", metavar=".txt", help="write each caption beside its picture (photo.txt)")
    g.add_argument("--overwrite", action="store_true", help="start --out afresh / replace existing sidecars")
    g.add_argument("--recursive", action="store_true", help="look in sub-folders too")
    g.add_argument("--batch-size", type=int, default=8, metavar="N", help="pictures per batch (default 8)")
    g.add_argument("--check", action="store_true", help="add each caption's ITM probability and ITC cosine")
    g.add_argument(
        "--check-model", default="itm-base-coco", metavar="NAME_OR_DIR", help="the matcher for --check"
    )
    g.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS", help="run on Ray (a local one, or ADDRESS)"
    )
    g.add_argument("--actors", type=int, default=1, metavar="N", help="--ray: engines working side by side")
    g.add_argument(
        "--ray-cpus", type=int, metavar="N", help="--ray without ADDRESS: CPUs the local Ray may use"
    )
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
    for name, func, text in (
        ("embed", cmd_embed, "Unit-length image (and text) vectors into a .parquet or .npz file."),
        ("index", cmd_index, "Make a folder of images searchable (an embeddings file)."),
    ):
        p = add(name, func, "itm-base-coco", text, one_image=False)
        p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
        p.add_argument(
            "--out", required=True, metavar="FILE", help="FILE.parquet (needs pyarrow) or FILE.npz"
        )
        p.add_argument("--recursive", action="store_true", help="look in sub-folders too")
        p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per vision pass")
        if name == "embed":
            p.add_argument("--texts", metavar="FILE", help="also embed these texts, one per line")
    p = add("search", cmd_search, "itm-base-coco", "Rank an index's images for a text or an image.", False)
    p.add_argument("index", metavar="INDEX", help="a file written by `blip index` or `blip embed`")
    p.add_argument("query", nargs="?", metavar="TEXT")
    p.add_argument("--image", metavar="PATH", help="search by example: images like this one")
    p.add_argument("--top", type=int, default=10, metavar="N", help="results shown")
    p.add_argument(
        "--rerank", type=int, default=0, metavar="K", help="re-rank the best K by ITM (text queries)"
    )
    p.add_argument("--first-token", choices=FIRST_TOKENS, default="[ENC]")
    p = add(
        "likelihood", cmd_likelihood, "caption-base", "How likely does the captioner find a caption?", False
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("text", metavar="CAPTION")
    p.add_argument("--prompt", default="", help="text the caption continues (conditioned on, not scored)")
    p = sub.add_parser("download", help="Fetch models into the Hugging Face cache.")
    p.add_argument("names", nargs="*", metavar="NAME", help=", ".join(hub.MODELS))
    p.add_argument("--all", action="store_true", help="every model in the table")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser("info", help="Show the cache, cached models, device and torch version.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    return parser
