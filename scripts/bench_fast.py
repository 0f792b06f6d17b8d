"""The CPU fast mode's part of ``scripts/bench.py``: how far its outputs move from float32 (drift),
and its section of the report. Two fast engines are timed in the bench's runs: the plan chosen for
this CPU (``Engine(fast=True)``: int8 or bfloat16 per part, by what the CPU has and by timing) and
bfloat16 throughout (``fast="bfloat16"``), so that bfloat16 is measured whatever the plan picked."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import shapes_eval  # noqa: E402
import shapes_world as shapes  # noqa: E402
from conftest import random_image  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.kernels import cpu  # noqa: E402
from blip.loading.tokenizer import DEC_ID  # noqa: E402

TOKENS = 20
GREEDY = {"strategy": "greedy", "max_new_tokens": TOKENS, "min_new_tokens": TOKENS}
MODES = {"auto": "fast mode as planned here", "bfloat16": "bfloat16 throughout"}
VISION, GREEDY_CASE = "vision tower (ViT-B/16 at 384)", "caption greedy, 20 tokens"


def caption_drift(fp: Engine, q: Engine, model: str, images, options: dict) -> dict[str, float]:
    """How far the fast engine's captions move from float32's on ``images``.

    Returns the share of identical captions, the share of positions with the same token (over the
    float32 caption's length, comparing position by position), and the mean cosine between the two
    models' next-token logits, teacher-forced on the float32 caption (so every position is compared
    on the same prefix), over the ids whose float32 logit is above -1000.
    """
    same, agree, total, cosines = 0, 0, 0, []
    fp_model, q_model = fp.model(model), q.model(model)
    for image in images:
        a = [t.token_id for t in fp.caption(image, model=model, options=options).captions[0].tokens]
        b = [t.token_id for t in q.caption(image, model=model, options=options).captions[0].tokens]
        same += a == b
        agree += sum(x == y for x, y in zip(a, b, strict=False))
        total += len(a)
        ids = torch.tensor([[DEC_ID, *a]])
        with torch.inference_mode():
            fp_logits, _ = fp_model.model.text_decoder(ids, fp.image_embeds(fp_model, image)[0])
            q_logits, _ = q_model.model.text_decoder(ids, q.image_embeds(q_model, image)[0])
        # Ids a checkpoint switched off (the demo models' LM-head bias of -1e4) would make any two logit
        # vectors look alike: the cosine is over the ids still in play.
        live = (fp_logits[0] > -1e3).float()
        cosine = torch.nn.functional.cosine_similarity(fp_logits[0] * live, q_logits[0] * live, dim=-1)
        cosines.append(cosine.mean().item())
    return {
        "identical captions": same / len(images),
        "token agreement": agree / total,
        "logit cosine": statistics.fmean(cosines),
    }


def fast_drift(dirs: dict[str, Path]) -> dict[str, dict]:
    """For each fast mode: its drift from our float32 engine on the random full-size captioner
    (5 images) and on the offline demo captioner (100 held-out shapes scenes)."""
    fp = Engine(device="cpu", image_cache_size=0, local_models={"caption": dirs["caption"]}, demo="never")
    demo_fp = Engine(device="cpu", demo="always")
    random_images = [random_image(seed, size=(640, 480)) for seed in range(5)]
    scenes = [s.image for s in shapes.scene_stream(shapes_eval.HELD_OUT_SEED + 1, 100)]
    drift = {}
    for mode in MODES:
        q = Engine(device="cpu", image_cache_size=0, local_models={"caption": dirs["caption"]}, demo="never",
                   fast=mode)  # fmt: skip
        demo_q = Engine(device="cpu", demo="always", fast=mode)
        drift[mode] = {
            "full": caption_drift(fp, q, "caption", random_images, GREEDY),
            "demo": caption_drift(
                demo_fp, demo_q, "caption-base", scenes, {"strategy": "greedy", "max_new_tokens": 30}
            ),
        }
    return drift


def _per_token(med, side: int) -> float | None:
    greedy, vision = med[GREEDY_CASE][side], med[VISION][side]
    return (greedy - vision) / TOKENS if greedy and vision else None


def render_fast(med, drift: dict[str, dict], plan: str) -> list[str]:
    """The fast-mode section: float32 against each fast mode (sides 2 and 3 of ``med``), then drift.
    ``plan`` describes what the automatic plan chose on this CPU."""
    rows = []
    for name, sides in med.items():
        if len(sides) < 4 or sides[2] is None:
            continue
        ours, auto, bf16 = sides[0], sides[2], sides[3]
        cells = [
            f"{auto * 1000:.0f} ({ours / auto:.2f}x)",
            f"{bf16 * 1000:.0f} ({ours / bf16:.2f}x)" if bf16 else "",
        ]
        rows.append(f"| {name} | {ours * 1000:.0f} | " + " | ".join(cells) + " |")
    tokens = [_per_token(med, side) for side in (0, 2, 3)]
    if all(tokens):
        token, auto, bf16 = (t * 1000 for t in tokens)
        rows.append(
            f"| per generated token | {token:.1f} | {auto:.1f} ({token / auto:.2f}x) | {bf16:.1f} ({token / bf16:.2f}x) |"
        )

    def drift_row(mode: str, weights: str, d: dict) -> str:
        return (f"| {MODES[mode]} | {weights} | {d['logit cosine']:.4f} | {d['token agreement']:.1%} | "
                f"{d['identical captions']:.1%} |")  # fmt: skip

    return [
        "## Fast CPU mode, optional",
        "",
        "`Engine(fast=True)` / `python app.py --fast`: linear layers in int8 (PyTorch dynamic quantisation) "
        "or bfloat16 (bfloat16 weights, float32 in and out), chosen per part by what this CPU has and by "
        f"timing both formats on it (`blip/kernels/fastmode.py`). This CPU: {cpu.describe()}; the plan "
        f"chosen: **{plan}**. Off by default. Ours float32 against ours in each fast mode, same runs, "
        "interleaved (ms, speed-up over float32):",
        "",
        "| case | float32 (ms) | fast mode as planned here | bfloat16 throughout |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "How far the outputs move (greedy captions; logit cosine teacher-forced on the float32 caption):",
        "",
        "| mode | weights | logit cosine | token agreement | identical captions |",
        "|---|---|---:|---:|---:|",
        *(
            drift_row(mode, "random full-size caption-base, 5 images, 20 tokens", d["full"])
            for mode, d in drift.items()
        ),
        *(
            drift_row(mode, "offline demo captioner, 100 held-out two-shape scenes", d["demo"])
            for mode, d in drift.items()
        ),
        "",
        "Random weights give nearly flat next-token distributions, where the smallest change flips the "
        "arg-max; trained weights are far less fragile, as the demo rows show. Grad-CAM heatmaps in fast "
        "mode are computed with a float32 copy kept alongside (int8 and bfloat16 layers here have no "
        "gradient).",
        "",
    ]
