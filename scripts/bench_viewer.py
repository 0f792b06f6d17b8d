"""How long the heatmap viewer takes to redraw, per kind of map, through its own handlers (no browser):
an attention or Grad-CAM redraw reads the stored maps; the rollout view runs one vision pass the first
time it is shown for a result and reuses it after; the word slider redraws one map.

    python scripts/bench_viewer.py [--repeats 5] [--model caption-base] [--offline-demo]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blip.engine import Engine  # noqa: E402
from blip.explain import render  # noqa: E402
from blip.loading.uploads import open_upload  # noqa: E402
from ui import Services, caption_tab  # noqa: E402
from ui.heatmap_state import ALL, ROLLOUT  # noqa: E402
from ui.heatmaps import HeatmapViewer  # noqa: E402

IMAGE = (
    ROOT
    / "assets"
    / "examples"
    / "shapes"
    / sorted(p.name for p in (ROOT / "assets/examples/shapes").glob("*.png"))[1]
)
GREEDY = ["Greedy", 3, 0.9, 50, 1.0, 1, 20, 1.0, 1.0, 0, 1, 0]  # the Caption tab's decoding controls


def _ms(fn, repeats: int) -> str:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return f"median {statistics.median(times):7.1f} ms  (min {min(times):.1f}, n={repeats})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="caption-base")
    parser.add_argument("--offline-demo", action="store_true", help="the tiny shapes models only")
    args = parser.parse_args()
    engine = Engine(device="cpu", demo="always" if args.offline_demo else "fallback")
    services = Services(engine=engine, open_image=open_upload, overlay=render.overlay,
                        models={"caption": [args.model]})  # fmt: skip
    state = caption_tab.caption(services, str(IMAGE), args.model, "", GREEDY)[4]
    viewer = HeatmapViewer.__new__(HeatmapViewer)
    viewer.services = services
    style = (0.5, "jet", 0.0)
    print(f"{args.model} ({'offline demo' if engine.model(args.model).offline_demo else 'checkpoint'}), "
          f"{len(state['texts'][0][1].words)} words, picture shown at {state['image'].size}")  # fmt: skip
    print(
        "attention, map + gallery:",
        _ms(lambda: viewer.render(state, 0, 0, ALL, ALL, "Attention", *style), args.repeats),
    )
    print(
        "grad-cam,  map + gallery:",
        _ms(lambda: viewer.render(state, 0, 0, ALL, ALL, "Grad-CAM", *style), args.repeats),
    )
    print(
        "word slider, one map:    ",
        _ms(lambda: viewer.slide(state, 1, 0, 0, ALL, ALL, "Attention", *style), args.repeats),
    )

    def first_rollout():
        state.pop("rollout", None)
        viewer.render(state, 0, 0, ALL, ALL, ROLLOUT, *style)

    print("rollout, first (vision pass):", _ms(first_rollout, args.repeats))
    print(
        "rollout, again (kept):       ",
        _ms(lambda: viewer.render(state, 0, 0, ALL, ALL, ROLLOUT, *style), args.repeats),
    )


if __name__ == "__main__":
    main()
