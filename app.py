"""BLIP Explorer: caption, ask, match and classify images with BLIP, and see where it looked.

    python app.py                  # http://127.0.0.1:7860
    python app.py --offline-demo   # the tiny shapes model only (no downloads)

This file only reads flags, builds the engine and the UI, and launches. Importing it does nothing else:
no model is loaded and no connection is opened until ``main()`` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "assets" / "examples"
DEFAULT_MODELS = {"caption": "caption-base", "vqa": "vqa-base", "retrieval": "itm-base-coco"}
DTYPES = ("float32", "bfloat16", "float16")
MAX_UPLOAD = "25mb"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_space = bool(os.environ.get("SPACE_ID"))
    parser = argparse.ArgumentParser(description="BLIP Explorer web app")
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Hugging Face Space)")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--fast", action="store_true",
                        help="int8 or bfloat16 linear layers on the CPU, chosen per part by timing: faster, outputs close to float32's but not identical")  # fmt: skip
    parser.add_argument("--preload", action="store_true", help="load the default models before serving")
    parser.add_argument("--offline-demo", action="store_true",
                        help="serve only the tiny offline demo models trained on shapes (no downloads)")  # fmt: skip
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="also offer a local checkpoint directory under NAME (repeatable)")  # fmt: skip
    parser.add_argument("--mcp", action="store_true", help="also serve the tasks as MCP tools")
    parser.add_argument("--queue-size", type=int, default=64,
                        help="requests waiting at most; more are refused with 'queue is full' (default 64)")  # fmt: skip
    parser.add_argument("--max-sessions", type=int, default=200,
                        help="sessions whose last results (heatmaps) are kept; the oldest are dropped (default 200)")  # fmt: skip
    parser.add_argument(
        "--share", action="store_true", help="open a public gradio.live link (off by default)"
    )
    return parser.parse_args(argv)


def local_models(specs: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` flags as a dict, each directory checked to exist."""
    found = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        if not sep or not name or not Path(directory).is_dir():
            raise SystemExit(f"--model expects NAME=DIR with an existing directory (got {spec!r})")
        found[name] = Path(directory)
    return found


def on_zerogpu() -> bool:
    """Whether this is a ZeroGPU Space (which sets ``SPACES_ZERO_GPU``; the ``spaces`` package reads it)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_decorator(loaded=None):
    """Wraps the handlers that run models: ``spaces.GPU`` with a duration sized from each request
    where the ``spaces`` package is importable (it does nothing off ZeroGPU), else nothing.

    Args:
        loaded: () -> names of the loaded models; a request for another one is given time to load it.
    """
    if importlib.util.find_spec("spaces") is None:
        return lambda fn: fn
    import spaces

    from ui.gpu_time import duration_for

    return lambda fn: spaces.GPU(duration=duration_for(fn, loaded))(fn)


def build(args: argparse.Namespace):
    """The engine and the Blocks app for these flags."""
    import torch

    from blip.engine import Engine, default_device
    from blip.explain import render
    from blip.explain.beam_tree import draw_beam_tree, draw_sampled_paths
    from blip.loading import hub
    from blip.loading.uploads import open_upload
    from ui import Services, build_app

    local = local_models(args.model)
    zerogpu = on_zerogpu()
    if zerogpu:
        # ZeroGPU's documented pattern: models go to "cuda" at start-up, outside the decorated calls
        # (CUDA is emulated there until a call borrows a GPU). Each call may run in a fresh worker, so
        # CUDA graphs recorded in one would not be kept: decode eagerly (no torch.compile either).
        os.environ.setdefault("BLIP_CUDA_GRAPHS", "0")
        args.device, args.preload = args.device or "cuda", True
    device = args.device or default_device()
    engine = Engine(
        device=device,
        dtype=getattr(torch, args.dtype),
        local_models=local,
        demo="always" if args.offline_demo else "fallback",
        fast=args.fast,
    )
    models = {task: [name for name, m in hub.MODELS.items() if m.task == task] for task in DEFAULT_MODELS}
    for task, default in DEFAULT_MODELS.items():
        models[task].remove(default)
        models[task].insert(0, default)
    for name in local:  # offered under every task; the engine says if a checkpoint does not fit one
        for names in models.values():
            names.append(name)
    shapes = sorted(str(p) for p in (EXAMPLES / "shapes").glob("*.png"))
    photos = sorted(str(p) for p in (EXAMPLES / "photos").glob("*.jpg"))
    examples = {
        "shapes": ("Shapes (what the offline demo model knows)", shapes),
        "photos": ("Photographs (CC0 / public domain)", photos),
    }
    if not args.offline_demo:
        examples = dict(reversed(examples.items()))
    services = Services(
        engine=engine,
        open_image=open_upload,
        overlay=render.overlay,
        models=models,
        device=str(device),
        dtype=args.dtype,  # the status line names what the fast mode chose
        examples=examples,
        gpu=gpu_decorator(engine.loaded_models),
        draw_beam_tree=draw_beam_tree,
        draw_sampled_paths=draw_sampled_paths,
        colormaps=render.COLORMAPS,
        lavis_blur=render.LAVIS_BLUR,
    )
    if args.preload:
        for name in DEFAULT_MODELS.values():
            logging.info("preloading %s", name)
            engine.model(name)
    return engine, build_app(services)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _, app = build(args)
    mcp = args.mcp and importlib.util.find_spec("mcp") is not None
    if args.mcp and not mcp:
        logging.warning("--mcp needs Gradio's MCP extra: pip install 'gradio[mcp]'; serving without it")
    app.queue(default_concurrency_limit=1, max_size=args.queue_size)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_UPLOAD,
        mcp_server=mcp,
        allowed_paths=[str(EXAMPLES)],
        state_session_capacity=args.max_sessions,
        show_error=False,
    )


if __name__ == "__main__":
    main()
