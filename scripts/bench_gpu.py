"""GPU speed, side by side: our engine vs transformers 5.24 on the same GPU, in the same run.

    python scripts/bench_gpu.py                       # on a CUDA machine; writes the GPU section of BENCHMARKS.md
    python scripts/bench_gpu.py --device cpu --tiny   # a dry run of the whole script on toy models (tests)

Builds random-weight full-size checkpoints with the tests' builder (base captioning, VQA, retrieval),
loads both implementations from the same files on the same device, checks in float32 that they choose
the same token ids, then times each case interleaved (median of ``--runs``, after a warm-up that also
records our CUDA graphs): caption greedy and 3 beams (20 tokens), VQA greedy, ITM of one image and 8
texts, and batch captioning (greedy, 20 tokens) in images per second at 1, 8 and 32 images per batch
(ours: ``Engine.caption_batch``; the reference: one batched ``generate``). Each dtype in ``--dtypes``
runs both sides in that dtype.

The report goes between the GPU markers of BENCHMARKS.md, inside its "Measured separately" part, which
``scripts/bench.py`` keeps when it rewrites the CPU figures; run again, it replaces its own section.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import oracle_checkpoints  # noqa: E402
from conftest import random_image  # noqa: E402

from blip.engine import Engine  # noqa: E402
from blip.generation import graphed  # noqa: E402

TOKENS, ANSWER_TOKENS = 20, 3
QUESTION = "what is in the picture?"
TEXTS = [f"a photo of {w}" for w in ("a dog", "a cat", "two people", "a red car", "the sea", "a house",
                                     "a plate of food", "a mountain at night")]  # fmt: skip
BATCHES = (1, 8, 32)
NEAR_TIE = 1e-3  # float32 logits this close are a tie to within GPU rounding (the H200 parted at 1.1e-4)
TARGETS = {"caption greedy, 20 tokens": 5.0, "batch captioning, 32 per batch": 3.0}  # reference / ours
START, END = "<!-- gpu-bench:start -->", "<!-- gpu-bench:end -->"
NOTES = "## Measured separately"  # scripts/bench.py keeps the file from this heading on


def timed(fn: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


class Sides:
    """Our engine and the reference models on one device and dtype, with the cases as callables."""

    def __init__(self, dirs: dict[str, Path], device: str, dtype: torch.dtype):
        from transformers import BlipProcessor

        self.device, self.dtype = device, dtype
        self.ref = {
            name: oracle_checkpoints.load_oracle(d, name).to(device=device, dtype=dtype)
            for name, d in dirs.items()
        }
        self.processor = BlipProcessor.from_pretrained(dirs["caption"])
        self.engine = Engine(device=device, dtype=dtype, max_models=3, image_cache_size=0, local_models=dirs, demo="never")  # fmt: skip
        for name in dirs:
            self.engine.model(name)
        self.images = [random_image(i, size=(640, 480)) for i in range(max(BATCHES))]

    def inputs(self, **kwargs):
        out = self.processor(return_tensors="pt", **kwargs).to(self.device)
        out["pixel_values"] = out["pixel_values"].to(self.dtype)
        return out

    def ours_caption(self, beams: int) -> list[int]:
        options = {"strategy": "beam" if beams > 1 else "greedy", "num_beams": beams,
                   "max_new_tokens": TOKENS, "min_new_tokens": TOKENS}  # fmt: skip
        item = self.engine.caption(self.images[0], model="caption", options=options).captions[0]
        return [t.token_id for t in item.tokens]

    def ref_caption(self, beams: int) -> list[int]:
        out = self.ref["caption"].generate(**self.inputs(images=self.images[0]), num_beams=beams,
                                           max_new_tokens=TOKENS, min_new_tokens=TOKENS)  # fmt: skip
        return out[0, 1:].tolist()

    def ours_answer(self) -> list[int]:
        options = {"max_new_tokens": ANSWER_TOKENS}
        result = self.engine.answer(
            self.images[0], QUESTION, model="vqa", options=options, first_token="[CLS]"
        )
        return [t.token_id for t in result.answers[0].tokens]

    def ref_answer(self) -> list[int]:
        out = self.ref["vqa"].generate(
            **self.inputs(images=self.images[0], text=QUESTION), max_new_tokens=ANSWER_TOKENS
        )
        return [t for t in out[0, 1:].tolist() if t != 0]

    def ours_itm(self) -> torch.Tensor:
        rows = self.engine.match(
            self.images[0], TEXTS, model="retrieval", first_token="[CLS]", itc=False
        ).rows
        return torch.tensor([r.itm_probability for r in rows])

    def ref_itm(self) -> torch.Tensor:
        inputs = self.inputs(images=[self.images[0]] * len(TEXTS), text=TEXTS, padding=True)
        return self.ref["retrieval"](**inputs).itm_score.float().softmax(dim=-1)[:, 1].cpu()

    def ours_batch(self, n: int) -> list[list[int]]:
        options = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS}
        results = self.engine.caption_batch(self.images[:n], model="caption", options=options, batch_size=n)
        return [[t.token_id for t in r.captions[0].tokens] for r in results]

    def ref_batch(self, n: int) -> list[list[int]]:
        out = self.ref["caption"].generate(**self.inputs(images=self.images[:n]), max_new_tokens=TOKENS,
                                           min_new_tokens=TOKENS)  # fmt: skip
        return out[:, 1:].tolist()

    def cases(self) -> dict[str, tuple[Callable[[], object], Callable[[], object], int]]:
        """case -> (ours, reference, images per call)."""
        cases = {
            "caption greedy, 20 tokens": (lambda: self.ours_caption(1), lambda: self.ref_caption(1), 1),
            "caption 3 beams, 20 tokens": (lambda: self.ours_caption(3), lambda: self.ref_caption(3), 1),
            "VQA greedy": (self.ours_answer, self.ref_answer, 1),
            "ITM, one image and 8 texts": (self.ours_itm, self.ref_itm, 1),
        }
        for n in BATCHES:
            cases[f"batch captioning, {n} per batch"] = (
                lambda n=n: self.ours_batch(n), lambda n=n: self.ref_batch(n), n
            )  # fmt: skip
        return cases

    def ref_greedy_scored(self, n: int) -> tuple[list[list[int]], list[torch.Tensor]]:
        """The reference's greedy ids for the first ``n`` images and its raw logits at each step."""
        out = self.ref["caption"].generate(**self.inputs(images=self.images[:n]), max_new_tokens=TOKENS,
                                           min_new_tokens=TOKENS, return_dict_in_generate=True,
                                           output_logits=True)  # fmt: skip
        return out.sequences[:, 1:].tolist(), [step.float().cpu() for step in out.logits]

    def check_same_outputs(self) -> tuple[list[str], list[str]]:
        """The cases whose outputs differ, and the greedy ones that parted only at a near-tie. In
        float32 every difference is a fault (``main`` exits non-zero after the timings) and a near-tie
        is reported; in other dtypes every parting counts as a difference, reported only (half
        precision moves near-ties)."""
        checks = {
            "caption 3 beams": (self.ours_caption(3), self.ref_caption(3)),
            "VQA greedy": (self.ours_answer(), self.ref_answer()),
        }
        differ = [name for name, (ours, ref) in checks.items() if ours != ref]
        ties = []
        for name, n, ours in (("caption greedy", 1, [self.ours_caption(1)]),
                              ("batch of 8, greedy", 8, self.ours_batch(8))):  # fmt: skip
            ref, logits = self.ref_greedy_scored(n)
            parted = first_partings(ours, ref, logits)
            if parted and self.dtype == torch.float32 and max(gap for _, _, gap in parted) <= NEAR_TIE:
                ties.append(f"{name} ({describe_partings(parted)})")
            elif parted:
                differ.append(f"{name} ({describe_partings(parted)})")
        itm = (self.ours_itm() - self.ref_itm()).abs().max().item()
        limit = 1e-4 if self.dtype == torch.float32 else 1e-2
        return differ + ([f"ITM (max diff {itm:.1e})"] if itm > limit else []), ties


def first_partings(
    ours: list[list[int]], ref: list[list[int]], logits: list[torch.Tensor]
) -> list[tuple[int, int, float]]:
    """(row, step, gap) where each row's ids first part: ``gap`` is how much higher the reference's own
    logit for its token is than for ours at that step. Before it both sides fed the same ids, so a gap
    of rounding size means the two tokens were tied to within the kernels' rounding."""
    parted = []
    for row, (a, b) in enumerate(zip(ours, ref, strict=True)):
        step = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if step is None and len(a) != len(b):
            step = min(len(a), len(b))
        if step is None:
            continue
        if step < min(len(a), len(b)):
            gap = (logits[step][row, b[step]] - logits[step][row, a[step]]).item()
        else:
            gap = float("inf")  # one side stopped early: not a tie between two tokens
        parted.append((row, step, gap))
    return parted


def describe_partings(parted: list[tuple[int, int, float]]) -> str:
    rows = ", ".join(f"image {row} at token {step + 1}, logits {gap:.1e} apart" for row, step, gap in parted)
    return f"{len(parted)} parted: {rows}"


def run_dtype(
    dirs: dict[str, Path], device: str, dtype: torch.dtype, runs: int
) -> tuple[dict, list[str], str, list[str]]:
    sides = Sides(dirs, device, dtype)
    differ, ties = sides.check_same_outputs()
    tf32 = (
        f"TF32 in cuDNN {torch.backends.cudnn.allow_tf32}, in matmul {torch.backends.cuda.matmul.allow_tf32}"
    )
    print(f"{dtype}: differ {differ}, near-ties {ties}; {tf32}", flush=True)
    cases = sides.cases()
    for ours, ref, _ in cases.values():  # warm-up: CUDA graphs recorded, kernels chosen
        ours(), ref()
    times = {name: ([], []) for name in cases}
    for run in range(runs):
        print(f"{dtype}: timed run {run + 1}/{runs}", flush=True)
        for name, (ours, ref, _) in cases.items():
            pair = [(0, ours), (1, ref)]
            for side, fn in pair if run % 2 == 0 else pair[::-1]:  # rotate who goes first
                times[name][side].append(timed(fn, device))
    med = {
        name: (statistics.median(t[0]), statistics.median(t[1]), cases[name][2]) for name, t in times.items()
    }
    decoder = sides.engine.model("caption").model.text_decoder
    runners = graphed._RUNNERS.get(decoder, {})
    modes = sorted(
        {r.mode + (f" ({r.fallback_reason})" if r.fallback_reason else "") for r in runners.values()}
    )
    return med, differ, ", ".join(modes) or "none (greedy did not take the static path)", ties


def render(results: dict, device: str, runs: int, tiny: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU ({device}, dry run)"
    lines = [
        START,
        f"### GPU: {name}",
        "",
        f"`python scripts/bench_gpu.py` (via `scripts/device_check.sh`), torch {torch.__version__}, "
        f"{'TOY-SIZE models (dry run, not a measurement)' if tiny else 'random-weight full-size base checkpoints'}, "
        f"median of {runs} interleaved runs after a warm-up, both sides on the same device in the same dtype. "
        "Captions are exactly 20 new tokens. Times in milliseconds; batch rows in images per second.",
        "",
    ]
    for dtype, (med, differ, modes, ties) in results.items():
        agree = (
            f"identical token ids and ITM within {'1e-4' if dtype == 'float32' else '1e-2'} (checked)"
            if not differ
            else f"differ: {', '.join(differ)}"
        )
        if ties:
            agree += (
                f"; greedy parted only at near-ties (the reference's own logits for the two tokens within"
                f" {NEAR_TIE:g}): {'; '.join(ties)}"
            )
        lines += [f"**{dtype}**: outputs vs reference: {agree}; our greedy decoding step: {modes}.", ""]
        lines += ["| case | ours | transformers | ratio | target | |", "|---|---:|---:|---:|---|---|"]
        for case, (ours, ref, n) in med.items():
            ratio = ref / ours
            target = TARGETS.get(case)
            verdict = "" if target is None else ("met" if ratio >= target else "not met")
            shown = (f"{n / ours:.1f} img/s", f"{n / ref:.1f} img/s") if case.startswith("batch") else (
                f"{ours * 1000:.1f}", f"{ref * 1000:.1f}")  # fmt: skip
            lines.append(f"| {case} | {shown[0]} | {shown[1]} | {ratio:.2f}x | {f'>= {target:g}x' if target else ''} | {verdict} |")  # fmt: skip
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between the GPU markers of ``path`` (replacing an earlier one), inside the part
    from the ``NOTES`` heading on, which the CPU bench keeps."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        if NOTES not in text:
            text = text.rstrip("\n") + f"\n\n{NOTES} (not by the script; kept when it rewrites this file)\n"
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--dtypes", default="float32,float16", help="comma-separated: float32,float16,bfloat16"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="toy-size models: a dry run of the script")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but PyTorch sees no CUDA device")
    size = "tiny" if args.tiny else "base"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {
            task: oracle_checkpoints.build_tied(Path(tmp) / task, task, size) for task in ("caption", "vqa")
        }
        dirs["retrieval"] = oracle_checkpoints.build_tied(Path(tmp) / "retrieval", "retrieval", size)
        for dtype in args.dtypes.split(","):
            results[dtype] = run_dtype(dirs, args.device, getattr(torch, dtype), args.runs)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    section = render(results, args.device, args.runs, args.tiny)
    print(section)
    write_section(args.out, section)
    if "float32" in results and results["float32"][1]:
        raise SystemExit(f"float32 outputs differ from the reference: {results['float32'][1]}")


if __name__ == "__main__":
    main()
