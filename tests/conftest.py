"""Shared fixtures: oracle-built checkpoints (built once per session) and a parity-figure recorder."""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The tests' helpers, and the development scripts with the shapes world they share (scripts/).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oracle_checkpoints

# The GPU checks run on a CUDA machine, by scripts/device_check.sh (which sets BLIP_DEVICE_CHECK=1); a CPU
# run does not collect them at all, rather than report them as skipped (test_device_check checks that
# the script runs them).
collect_ignore = [] if os.environ.get("BLIP_DEVICE_CHECK") == "1" else ["test_cuda.py"]

# Worst absolute difference seen per output name, printed at the end of the run.
_PARITY: dict[str, float] = defaultdict(float)


class CheckpointFactory:
    """Builds each (task, size, layout, seed) checkpoint once, on first request."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[tuple, Path] = {}

    def get(self, task: str, size: str = "tiny", layout: str = "tied", seed: int = 0) -> Path:
        key = (task, size, layout, seed)
        if key not in self._built:
            tied = self._built.get((task, size, "tied", seed))
            if tied is None:
                tied = oracle_checkpoints.build_tied(
                    self.root / f"{task}-{size}-tied-{seed}", task, size, seed
                )
                self._built[(task, size, "tied", seed)] = tied
            self._built[key] = oracle_checkpoints.derive_layout(
                tied, self.root / f"{task}-{size}-{layout}-{seed}", layout
            )
        return self._built[key]

    def decoding(self, task: str, seed: int = 0) -> Path:
        """A tiny checkpoint whose LM head favours a few words and [SEP] (see ``DECODING_BIAS``)."""
        key = (task, "decoding", seed)
        if key not in self._built:
            path = self.root / f"{task}-decoding-{seed}"
            bias = oracle_checkpoints.DECODING_BIAS
            self._built[key] = oracle_checkpoints.build_tied(path, task, "tiny", seed, lm_bias=bias)
        return self._built[key]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> CheckpointFactory:
    return CheckpointFactory(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture
def record_parity():
    """``record_parity(name, ours, reference)``: assert-ready max |diff|, remembered for the summary."""

    def record(name: str, ours, reference) -> float:
        diff = (ours.detach().float() - reference.detach().float()).abs().max().item()
        _PARITY[name] = max(_PARITY[name], diff)
        return diff

    return record


def random_image(seed: int, size: tuple[int, int] = (120, 90), mode: str = "RGB") -> Image.Image:
    """A seeded noise-and-gradient picture (structure, so bicubic resizing has work to do)."""
    rng = np.random.default_rng(seed)
    w, h = size
    ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    pixels = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 40, (h, w, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB").convert(mode)


def fake_hub_cache(cache: Path, repo: str, source: Path) -> Path:
    """Lay ``source`` out as huggingface_hub caches ``repo`` (refs/main -> snapshots/<commit>/...);
    returns the snapshot folder."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    shutil.copytree(source, base / "snapshots" / commit)
    return base / "snapshots" / commit


# The decoding controls' names, in ``ui.decoding.DecodingControls.inputs`` order (the API's names too).
DECODING_NAMES = ["decoding", "beams", "top_p", "top_k", "temperature", "min_new_tokens", "max_new_tokens",
                  "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "count", "seed"]  # fmt: skip


def decoding_values(decoding: str, **changes) -> list:
    """Decoding control values in ``DecodingControls.inputs`` order: the UI's defaults, with changes."""
    from ui.decoding import DEFAULTS

    values = DEFAULTS | {"decoding": decoding} | changes
    return [values[n] for n in DECODING_NAMES]


def pytest_terminal_summary(terminalreporter):
    if _PARITY:
        terminalreporter.section("parity: worst max |ours - transformers| per output")
        for name, diff in sorted(_PARITY.items()):
            terminalreporter.write_line(f"{name:55s} {diff:.3e}")
