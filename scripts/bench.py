"""Side-by-side speed and memory: our engine vs transformers 5.24 on the same checkpoint files.

    pip install -r requirements-dev.txt && python scripts/bench.py      # about 10 minutes; writes BENCHMARKS.md

Builds full-size random-weight checkpoints with the tests' builder (base captioning, VQA and retrieval;
large captioning for a subset), then times both implementations on the same picture, interleaved (so
machine noise hits both alike; who goes first alternates), median of ``--runs`` runs after a warm-up.
Both sides go from a PIL image to token ids (preprocessing included). Before timing, every generating
case checks that the two produce the same token ids (and the matching case the same probabilities), and
the report says so.

The optional int8 fast mode (``Engine(fast=True)``, ``python app.py --fast``) is timed against our
float32 engine in the same run, and its drift measured: logit cosine (teacher-forced on the float32
caption) and token agreement, on these random full-size weights and on the offline demo models'
held-out shapes scenes.

Also measured in the same run: this CPU's matrix-multiply throughput on the ViT's own shapes (the floor
for the vision tower), the time to import each package in a fresh interpreter, and the peak memory
(VmHWM, which unlike ru_maxrss is not inherited from the parent) of a fresh process that loads one
captioning model and captions one image.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import oracle_checkpoints  # noqa: E402
import shapes_eval  # noqa: E402
from conftest import random_image  # noqa: E402

from blip import shapes  # noqa: E402
from blip.engine import Engine  # noqa: E402
from blip.tokenizer import DEC_ID  # noqa: E402

TOKENS = 20
ANSWER_TOKENS = 3  # VQA answers are a word or two; random weights would otherwise run to the limit
QUESTION, SECOND_QUESTION = "what is in the picture?", "how many people are there?"
TEXTS = [f"a photo of {w}" for w in ("a dog", "a cat", "two people", "a red car", "the sea", "a house",
                                     "a plate of food", "a mountain at night")]  # fmt: skip
LABELS = ["dog", "cat", "car", "bus", "bird", "horse", "sheep", "cow", "boat", "train", "plane", "bike",
          "chair", "sofa", "table", "bottle", "person", "tree", "flower", "house"]  # fmt: skip
TARGETS = {  # reference / ours, at least (None: reported, no target)
    "caption greedy, 20 tokens": 2.0,
    "caption 3 beams, 20 tokens": 3.0,
    "VQA greedy": 1.8,
    "VQA, second question on the same image": 10.0,
    "ITM, one image and 8 texts": 8.0,
}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_gflops(runs: int) -> float:
    """Best sustained GFLOP/s of this CPU on the ViT-B/16-at-384 linear layers' shapes."""
    n, d = 577, 768
    shapes = [(n, d, 3 * d), (n, d, d), (n, d, 4 * d), (n, 4 * d, d)]
    mats = [(torch.randn(m, k), torch.randn(k, o)) for m, k, o in shapes]
    flops = sum(2 * m * k * o for m, k, o in shapes)
    best = float("inf")
    for _ in range(runs * 4):
        start = time.perf_counter()
        for a, b in mats:
            a @ b
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def read_bandwidth(runs: int) -> float:
    """Best GB/s of summing a 512 MiB float32 tensor: how fast weights can stream from memory."""
    data = torch.ones(128 * 2**20)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best / 1e9


# Bytes of float32 weights one greedy step of a base text decoder reads: 12 layers of self-attention
# (4 D^2), the cross-attention's query and output (2 D^2; its keys and values are cached), the MLP
# (8 D^2), and the 30,524 x 768 LM head.
DECODER_STEP_BYTES = 4 * (12 * 14 * 768 * 768 + 30524 * 768)


def vit_gflop(n: int = 577, d: int = 768, layers: int = 12, patch_pixels: int = 3 * 16 * 16) -> float:
    """Multiply-add FLOPs (x2) of a ViT forward pass: the linear layers, attention, patch embedding."""
    linear = 2 * n * (3 * d * d + d * d + 8 * d * d)
    attention = 2 * 2 * n * n * d  # q @ k^T and probabilities @ v
    return (layers * (linear + attention) + 2 * (n - 1) * patch_pixels * d) / 1e9


def fresh_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


IMPORT_OURS = "import time; t = time.perf_counter(); import blip; print(time.perf_counter() - t)"
IMPORT_REFERENCE = (
    "import time; t = time.perf_counter(); "
    "from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering, "
    "BlipForImageTextRetrieval, BlipProcessor; print(time.perf_counter() - t)"
)
PEAK_OURS = """
import sys
sys.path[:0] = ["{root}", "{root}/tests"]
from conftest import random_image
from blip.engine import Engine
from blip.decoding import DecodingOptions
engine = Engine(device="cpu", local_models={{"m": "{path}"}}, demo="never")
engine.caption(random_image(0, size=(640, 480)), model="m", options=DecodingOptions(max_new_tokens=20))
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""
PEAK_REFERENCE = """
import sys, torch
sys.path[:0] = ["{root}", "{root}/tests"]
from conftest import random_image
from transformers import BlipForConditionalGeneration, BlipProcessor
model = BlipForConditionalGeneration.from_pretrained("{path}", dtype=torch.float32).eval()
processor = BlipProcessor.from_pretrained("{path}")
with torch.no_grad():
    model.generate(**processor(images=random_image(0, size=(640, 480)), return_tensors="pt"), max_new_tokens=20)
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (the median is reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-large", action="store_true", help="skip the large captioning model")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from transformers import BlipProcessor

    image = random_image(0, size=(640, 480))
    with tempfile.TemporaryDirectory() as tmp:
        print("building full-size random-weight checkpoints ...", flush=True)
        sizes = {"caption": "base", "vqa": "base", "retrieval": "base"}
        if not args.no_large:
            sizes["caption-large"] = "large"
        dirs = {
            name: oracle_checkpoints.build_tied(Path(tmp) / name, name.split("-")[0], size)
            for name, size in sizes.items()
        }
        ref = {name: oracle_checkpoints.load_oracle(d, name.split("-")[0]) for name, d in dirs.items()}
        processor = BlipProcessor.from_pretrained(dirs["caption"])
        engine = Engine(device="cpu", image_cache_size=0, local_models=dirs, demo="never")
        cached = Engine(device="cpu", local_models={"vqa": dirs["vqa"]}, demo="never")
        for name in dirs:
            engine.model(name)

        def ours_caption(model: str, beams: int) -> list[int]:
            options = {"strategy": "beam" if beams > 1 else "greedy", "num_beams": beams,
                       "max_new_tokens": TOKENS, "min_new_tokens": TOKENS}  # fmt: skip
            item = engine.caption(image, model=model, options=options).captions[0]
            return [t.token_id for t in item.tokens]

        def ref_caption(model: str, beams: int) -> list[int]:
            inputs = processor(images=image, return_tensors="pt")
            out = ref[model].generate(**inputs, num_beams=beams, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
            return out[0, 1:].tolist()

        def ours_answer(question: str, on=engine) -> list[int]:
            options = {"max_new_tokens": ANSWER_TOKENS}
            item = on.answer(image, question, model="vqa", options=options, first_token="[CLS]").answers[0]
            return [t.token_id for t in item.tokens]

        def ref_answer(question: str) -> list[int]:
            inputs = processor(images=image, text=question, return_tensors="pt")
            return [
                t
                for t in ref["vqa"].generate(**inputs, max_new_tokens=ANSWER_TOKENS)[0, 1:].tolist()
                if t != 0
            ]

        def ours_itm():
            rows = engine.match(image, TEXTS, model="retrieval", first_token="[CLS]").rows
            return torch.tensor([r.itm_probability for r in rows])

        def ref_itm():
            inputs = processor(images=[image] * len(TEXTS), text=TEXTS, padding=True, return_tensors="pt")
            return ref["retrieval"](**inputs).itm_score.softmax(dim=-1)[:, 1]

        pixels = engine.model("caption").pixels(image)
        cases = {
            "vision tower (ViT-B/16 at 384)": (
                lambda: engine.model("caption").model.encode_image(pixels),
                lambda: ref["caption"].vision_model(pixels),
            ),
            "caption greedy, 20 tokens": (
                lambda: ours_caption("caption", 1),
                lambda: ref_caption("caption", 1),
            ),
            "caption 3 beams, 20 tokens": (
                lambda: ours_caption("caption", 3),
                lambda: ref_caption("caption", 3),
            ),
            "VQA greedy": (lambda: ours_answer(QUESTION), lambda: ref_answer(QUESTION)),
            "VQA, second question on the same image": (
                lambda: ours_answer(SECOND_QUESTION, cached),
                lambda: ref_answer(SECOND_QUESTION),
            ),
            "ITM, one image and 8 texts": (ours_itm, ref_itm),
            "zero-shot, 20 labels (ITC)": (
                lambda: engine.classify(image, LABELS, model="retrieval", template="a photo of a {}"),
                None,
            ),
        }
        if not args.no_large:
            cases["caption-large greedy, 20 tokens"] = (
                lambda: ours_caption("caption-large", 1),
                lambda: ref_caption("caption-large", 1),
            )
        print("checking that outputs agree ...", flush=True)
        for beams in (1, 3):
            assert ours_caption("caption", beams) == ref_caption("caption", beams), (
                f"caption ids differ ({beams})"
            )
        if not args.no_large:
            assert ours_caption("caption-large", 1) == ref_caption("caption-large", 1), (
                "large caption ids differ"
            )
        cached.answer(image, QUESTION, model="vqa", first_token="[CLS]")  # the image is now in its cache
        for question in (QUESTION, SECOND_QUESTION):
            assert ours_answer(question) == ref_answer(question), f"answer ids differ for {question!r}"
        assert (ours_itm() - ref_itm()).abs().max() <= 1e-4, "ITM probabilities differ"

        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
        for run in range(args.runs):
            print(f"timed run {run + 1}/{args.runs}", flush=True)
            for name, (ours_fn, ref_fn) in cases.items():
                pair = [(0, ours_fn), (1, ref_fn)]
                for side, fn in pair if run % 2 == 0 else pair[::-1]:  # alternate who goes first
                    if fn is not None:
                        times[name][side].append(timed(fn))
        gflops = matmul_gflops(args.runs)
        bandwidth = read_bandwidth(args.runs)
        print("import times and peak memory in fresh interpreters ...", flush=True)
        imports = {
            "ours": statistics.median(float(fresh_python(IMPORT_OURS)) for _ in range(args.runs)),
            "reference": statistics.median(float(fresh_python(IMPORT_REFERENCE)) for _ in range(args.runs)),
        }
        fill = {"root": ROOT, "path": dirs["caption"]}
        peak = {
            "ours": float(fresh_python(PEAK_OURS.format(**fill))),
            "reference": float(fresh_python(PEAK_REFERENCE.format(**fill))),
        }
        print("fast mode (int8) against float32 ...", flush=True)
        ref.clear()  # the reference models are done with: free their memory
        fast = fast_mode(dirs, image, args.runs)

    med = {n: (statistics.median(a), statistics.median(b) if b else None) for n, (a, b) in times.items()}
    report = render(med, gflops, bandwidth, imports, peak, args.runs) + "\n".join(render_fast(fast))
    print(report)
    args.out.write_text(report)
    print(f"wrote {args.out}")


GREEDY = {"strategy": "greedy", "max_new_tokens": TOKENS, "min_new_tokens": TOKENS}


def caption_drift(fp: Engine, q: Engine, model: str, images, options: dict) -> dict[str, float]:
    """How far the int8 engine's captions move from float32's on ``images``.

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


def fast_mode(dirs: dict[str, Path], image, runs: int) -> dict:
    """Speed-up and drift of the int8 fast mode against our float32 engine."""
    fp = Engine(device="cpu", image_cache_size=0, local_models={"caption": dirs["caption"]}, demo="never")
    q = Engine(device="cpu", image_cache_size=0, local_models={"caption": dirs["caption"]}, demo="never",
               fast=True)  # fmt: skip
    fp_model, q_model = fp.model("caption"), q.model("caption")
    pixels = fp_model.pixels(image)
    cases = {
        "vision tower": (
            lambda: fp_model.model.encode_image(pixels),
            lambda: q_model.model.encode_image(pixels),
        ),
        "caption greedy, 20 tokens": (
            lambda: fp.caption(image, model="caption", options=GREEDY),
            lambda: q.caption(image, model="caption", options=GREEDY),
        ),
    }
    for fn_pair in cases.values():  # warm-up
        fn_pair[0](), fn_pair[1]()
    times = {name: ([], []) for name in cases}
    for run in range(runs):
        for name, (a, b) in cases.items():
            pair = [(0, a), (1, b)]
            for side, fn in pair if run % 2 == 0 else pair[::-1]:
                times[name][side].append(timed(fn))
    speed = {name: (statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()}
    random_images = [random_image(seed, size=(640, 480)) for seed in range(5)]
    full = caption_drift(fp, q, "caption", random_images, GREEDY)
    demo_fp = Engine(device="cpu", demo="always")
    demo_q = Engine(device="cpu", demo="always", fast=True)
    scenes = [s.image for s in shapes.scene_stream(shapes_eval.HELD_OUT_SEED + 1, 100)]
    demo = caption_drift(
        demo_fp, demo_q, "caption-base", scenes, {"strategy": "greedy", "max_new_tokens": 30}
    )
    return {"speed": speed, "full": full, "demo": demo}


def render_fast(fast: dict) -> list[str]:
    rows = [
        f"| {name} | {a * 1000:.0f} | {b * 1000:.0f} | {a / b:.2f}x |"
        for name, (a, b) in fast["speed"].items()
    ]
    vision = fast["speed"]["vision tower"]
    greedy = fast["speed"]["caption greedy, 20 tokens"]
    per_token = [(g - v) / TOKENS * 1000 for g, v in zip(greedy, vision, strict=True)]

    def drift(name: str, d: dict) -> str:
        return (f"| {name} | {d['logit cosine']:.4f} | {d['token agreement']:.1%} | "
                f"{d['identical captions']:.1%} |")  # fmt: skip

    return [
        "## Fast CPU mode (int8), optional",
        "",
        "`Engine(fast=True)` / `python app.py --fast`: every linear layer in int8 (PyTorch dynamic "
        "quantisation; this CPU has AVX2 but no bfloat16 instructions, so int8 is the fast format here). "
        "Off by default. Ours float32 against ours int8, same run, interleaved, caption-base random weights:",
        "",
        "| case | float32 (ms) | int8 (ms) | speed-up |",
        "|---|---:|---:|---:|",
        *rows,
        f"| per generated token | {per_token[0]:.1f} | {per_token[1]:.1f} | {per_token[0] / per_token[1]:.2f}x |",
        "",
        "How far the outputs move (greedy captions; logit cosine teacher-forced on the float32 caption):",
        "",
        "| weights | logit cosine | token agreement | identical captions |",
        "|---|---:|---:|---:|",
        drift("random full-size caption-base, 5 images, 20 tokens", fast["full"]),
        drift("offline demo captioner, 100 held-out two-shape scenes", fast["demo"]),
        "",
        "Random weights give nearly flat next-token distributions, where the smallest change flips the "
        "arg-max; trained weights are far less fragile, as the demo row shows. Grad-CAM heatmaps in fast "
        "mode are computed with a float32 copy kept alongside (quantised layers have no gradient).",
        "",
    ]


def render(med, gflops: float, bandwidth: float, imports: dict, peak: dict, runs: int) -> str:
    vision, vision_ref = med["vision tower (ViT-B/16 at 384)"]
    floor = vit_gflop() / gflops
    rows = []
    for name, (ours, ref) in med.items():
        ratio = ref / ours if ref else None
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if ratio >= target else "not met")
        rows.append(
            f"| {name} | {ours * 1000:.0f} | {ref * 1000:.0f} | {ratio:.2f}x | "
            f"{f'>= {target:g}x' if target else ''} | {verdict} |"
            if ref
            else f"| {name} | {ours * 1000:.0f} | | | | |"
        )
    greedy, greedy_ref = med["caption greedy, 20 tokens"]
    per_token = (greedy - vision) / TOKENS * 1000
    per_token_ref = (greedy_ref - vision_ref) / TOKENS * 1000
    zero_shot = med["zero-shot, 20 labels (ITC)"][0]
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Benchmarks",
        "",
        f"`python scripts/bench.py` on {_cpu_name() or cpu}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, float32, median of {runs} interleaved runs after a warm-up (who goes "
        "first alternates); "
        "random-weight full-size checkpoints in the Hub layout, read by both sides from the same files. "
        "Times in milliseconds, from a PIL image to token ids (preprocessing included). "
        f"Captions are exactly {TOKENS} new tokens, VQA answers {ANSWER_TOKENS}. "
        "**Outputs identical**: the same token ids for every caption and answer (greedy, 3 beams, base "
        "and large), ITM probabilities within 1e-4, checked before timing.",
        "",
        "| case | ours (ms) | transformers (ms) | ratio | target | |",
        "|---|---:|---:|---:|---|---|",
        *rows,
        "",
        "| measure | ours | transformers | target | |",
        "|---|---:|---:|---|---|",
        f"| per generated token, greedy (caption minus vision, / 20) | {per_token:.1f} ms | "
        f"{per_token_ref:.1f} ms | <= 8 ms | {'met' if per_token <= 8 else 'not met'} |",
        f"| vision tower vs this CPU's matmul floor ({vit_gflop():.0f} GFLOP at {gflops:.0f} GFLOP/s = "
        f"{floor * 1000:.0f} ms) | {vision / floor:.2f}x floor | {vision_ref / floor:.2f}x floor | <= 1.15x | "
        f"{'met' if vision <= 1.15 * floor else 'not met'} |",
        f"| zero-shot with 20 labels / our vision tower | {zero_shot / vision:.2f}x | | <= 1.3x | "
        f"{'met' if zero_shot <= 1.3 * vision else 'not met'} |",
        f"| import (fresh interpreter) | {imports['ours'] * 1000:.0f} ms | {imports['reference'] * 1000:.0f} ms "
        f"| >= 2x faster | {'met' if imports['reference'] >= 2 * imports['ours'] else 'not met'} "
        f"({imports['reference'] / imports['ours']:.2f}x) |",
        f"| peak memory, load caption-base and caption one image (fresh process, VmHWM) | "
        f"{peak['ours']:.0f} MiB | {peak['reference']:.0f} MiB | <= reference | "
        f"{'met' if peak['ours'] <= peak['reference'] else 'not met'} |",
        "",
        *limits(med, floor, bandwidth),
    ]
    return "\n".join(lines) + "\n"


def limits(med, vision_floor: float, bandwidth: float) -> list[str]:
    """What bounds the float32 targets on this machine, from this run's own measurements."""
    token_floor = DECODER_STEP_BYTES / (bandwidth * 1e9)
    greedy_ref = med["caption greedy, 20 tokens"][1]
    best_greedy = vision_floor + TOKENS * token_floor
    return [
        "## What bounds the float32 targets here",
        "",
        f"- Memory: summing a 512 MiB tensor runs at {bandwidth:.1f} GB/s. One greedy step of a base "
        f"text decoder reads {DECODER_STEP_BYTES / 1e6:.0f} MB of float32 weights (12 layers of self- "
        "and cross-attention projections and MLP, plus the 30,524-word LM head), so a generated token "
        f"cannot take less than {token_floor * 1000:.0f} ms in float32: 8 ms per token needs weights of "
        "a third of the size (int8), not a faster loop.",
        f"- Caption, greedy, 20 tokens: even with the vision tower at the matmul floor "
        f"({vision_floor * 1000:.0f} ms) and every token at the memory floor, ours would take "
        f"{best_greedy * 1000:.0f} ms, a ratio of {greedy_ref / best_greedy:.2f}x against this run's "
        "reference: "
        + (
            "2x is out of reach in float32 with identical outputs."
            if greedy_ref / best_greedy < 2
            else "2x needs both the vision tower and the decoding loop at their floors at once."
        ),
        "- The reference runs the ViT once per (image, text) pair; ours once per image. That is the whole "
        "gap for ITM with 8 texts and for a second question on a cached image; what is left on our side "
        "is the text encoder's cross-attention over the 577 image tokens (its keys and values are "
        "projected once per image and shared by every text, about 16 GFLOP for a base model).",
        "",
    ]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    main()
