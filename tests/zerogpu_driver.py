"""Starts the app as on a ZeroGPU Space, with a stand-in ``spaces`` package, and prints what happened.

Run by tests/test_zerogpu.py in a subprocess (the stand-in and the patches stay out of the test
process): ``SPACES_ZERO_GPU=true`` and the stand-in on ``PYTHONPATH``. The engine records the device it
was asked for and every model it loads (then runs on the CPU: there is no GPU here), and
``Blocks.launch`` records that it was called instead of serving. Printed as JSON: the ordered events,
every Blocks function with whether ``spaces.GPU`` wrapped it and whether its code can reach a
model-running engine call, and the durations asked for sample requests.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
from pathlib import Path

import gradio as gr
import spaces  # the stand-in

import blip.engine as engine_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVENTS = spaces.EVENTS

# Engine methods that only report state (fast_mode names the CPU fast mode's plan: it never touches a
# GPU); every other public one (and Services.prepare) runs or loads a model.
REPORTING = {"demo", "fast", "fast_mode", "load_counts", "loaded_models", "local_models", "model_names", "model_status",
             "token_ids", "token_names", "grid", "finish"}  # fmt: skip
MODEL_RUNNING = {n for n in dir(engine_module.Engine) if not n.startswith("_")} - REPORTING | {"prepare"}


class RecordingEngine(engine_module.Engine):
    def __init__(self, device=None, **kwargs):
        EVENTS.append(["engine", str(device)])
        super().__init__(device="cpu", **kwargs)

    def model(self, name):
        EVENTS.append(["model", name])
        return super().model(name)


def launch(self, **kwargs):
    EVENTS.append(["launch"])
    APPS.append(self)


APPS: list = []
engine_module.Engine = RecordingEngine
gr.Blocks.launch = launch


def _functions(obj) -> list[types.FunctionType]:
    """The plain functions behind ``obj`` (a function, a bound method: its class's methods too)."""
    if isinstance(obj, types.MethodType):
        owner = type(obj.__self__)
        return [obj.__func__] + [f for f in vars(owner).values() if isinstance(f, types.FunctionType)]
    return [obj] if isinstance(obj, types.FunctionType) else []


def reachable_names(fn, seen: set | None = None) -> set[str]:
    """Every global and attribute name used by ``fn``, the ui/app functions it calls by name (or as
    ``module.function``), the functions in its closure, and the functions it wraps (``__wrapped__``),
    recursively."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    for f in _functions(fn):
        if id(f) in seen:
            continue
        seen.add(id(f))
        codes = [f.__code__]
        while codes:
            code = codes.pop()
            names |= set(code.co_names)
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        followed = [cell.cell_contents for cell in (f.__closure__ or ()) if _filled(cell)]
        followed += [f.__globals__[n] for n in f.__code__.co_names if n in f.__globals__]
        followed += [getattr(f, "__wrapped__", None)]
        for module in [m for m in followed if isinstance(m, types.ModuleType)]:  # tool_text.caption_text(...)
            followed += [getattr(module, n) for n in f.__code__.co_names if hasattr(module, n)]
        for other in followed:
            module = getattr(other, "__module__", "") or ""
            if module.startswith(("ui", "app")) or isinstance(other, types.MethodType):
                names |= reachable_names(other, seen)
    return names


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def gpu_duration(fn):
    """The stand-in's record on ``fn`` or anything it wraps: the duration given, or None if undecorated."""
    while fn is not None:
        if hasattr(fn, "zerogpu_duration"):
            return fn.zerogpu_duration
        fn = getattr(fn, "__wrapped__", None)
    return None


def positional(fn, **named):
    """Arguments for ``fn`` in signature order: ``named`` values, else the parameter defaults."""
    from ui.decoding import DEFAULTS

    values = []
    for name, parameter in inspect.signature(fn).parameters.items():
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        values.append(named.get(name, DEFAULTS.get(name, default)))
    return values


def main() -> None:
    import app

    app.main(sys.argv[1:])
    demo = APPS[0]
    handlers, by_api = [], {}
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None:
            continue
        duration = gpu_duration(fn)
        used = reachable_names(fn)
        handlers.append({
            "name": getattr(fn, "__qualname__", repr(fn)),
            "api_name": block_fn.api_name,
            "decorated": duration is not None,
            "callable_duration": callable(duration),
            "runs_model": sorted(used & MODEL_RUNNING),
        })  # fmt: skip
        if duration is not None:
            by_api[block_fn.api_name] = (fn, duration)

    def ask(api: str, **named) -> int | None:
        if api not in by_api:  # not decorated: the test names it
            return None
        fn, duration = by_api[api]
        return duration(*positional(fn, **named))

    zipped = Path(sys.argv[0]).with_name("pictures.zip")
    import zipfile

    with zipfile.ZipFile(zipped, "w") as archive:
        for i in range(64):
            archive.writestr(f"pictures/{i}.png", b"")
    files64 = [f"/nowhere/{i}.png" for i in range(64)]
    durations = {
        "caption_greedy": ask("caption", model="caption-base", decoding="Greedy", heatmaps=False),
        "caption_greedy_heatmaps": ask("caption", model="caption-base", decoding="Greedy", heatmaps=True),
        "caption_greedy_unloaded": ask("caption", model="caption-large", decoding="Greedy", heatmaps=False),
        "caption_beams": ask(
            "caption", model="caption-base", decoding="Beam search", beams=5, heatmaps=False
        ),
        "batch_64x5_beams": ask(
            "batch_caption",
            files=files64,
            model="caption-base",
            decoding="Beam search",
            beams=5,
            itm_check=False,
        ),
        "batch_zip_64x5_beams": ask(
            "batch_caption",
            files=[str(zipped)],
            model="caption-base",
            decoding="Beam search",
            beams=5,
            itm_check=False,
        ),
        "batch_1_greedy": ask(
            "batch_caption", files=files64[:1], model="caption-base", decoding="Greedy", itm_check=False
        ),
        "match_3_texts": ask("match", model="itm-base-coco", texts="a\nb\nc", heatmaps=False),
        "bad_arguments": by_api["caption"][1](*range(50)) if "caption" in by_api else None,
    }
    from blip.generation import DecodingOptions, graphed

    on_cuda = types.SimpleNamespace(is_cuda=True)  # what wants_static reads of the encoder states
    print(json.dumps({
        "events": EVENTS,
        "handlers": handlers,
        "durations": durations,
        "graphs_on_cuda": graphed.wants_static(on_cuda, DecodingOptions()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
