"""Greedy decoding where each token costs one replay of a recorded CUDA graph.

A decoding step of a base decoder launches a few hundred small kernels. On a GPU, launching them from
Python costs more than running them, so the step is recorded once as a CUDA graph (the kernels and
their memory addresses) and then replayed: one launch per token. That needs every tensor the step
touches to live at a fixed address with a fixed shape, which the
:class:`~blip.model.static_cache.StaticKVCache` provides; the new token and its position are written
into small input buffers before each replay.

:class:`GraphedStepper` has the :class:`~blip.generation.stepper.Stepper` interface that the greedy
loop uses, so the loop (and its token choices) is the same code either way. Where a graph cannot be
had, it falls back to running the same static-cache step eagerly, and says why:

* no CUDA (a CPU, or a test): eager, silently, since nothing went wrong;
* recording the graph failed: eager, with a warning and the reason in ``fallback_reason``.

Recorded graphs are kept per decoder and shape (rows, positions, encoder tokens), so a server pays for
recording once per shape, not per request; a graph in use by one request is not shared with another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch

from ..model.static_cache import StaticKVCache, static_forward
from ..model.text import TextLMModel
from .options import MAX_POSITIONS, DecodingOptions

log = logging.getLogger(__name__)

POSITION_BUCKET = 32  # capacities are rounded up to this, so nearby token limits share one graph
GRAPHS_PER_DECODER = 4  # recorded shapes kept per decoder: each holds its own buffers (the image keys
# and values alone are 1.4 GB for 32 rows of a base decoder in float32)

# (step function) -> (replay function, its output): records a graph, or raises.
Capture = Callable[[Callable[[], tuple]], tuple[Callable[[], None], tuple]]


def cuda_graph_capture(step: Callable[[], tuple]) -> tuple[Callable[[], None], tuple]:
    """Record ``step`` as a CUDA graph: a few warm-up runs on a side stream (PyTorch's documented
    recipe, so lazy initialisation is not recorded), then the recording. Returns the replay function
    and the step's outputs, which every replay overwrites in place."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step()
    return graph.replay, outputs


def wants_static(encoder_states: torch.Tensor, options: DecodingOptions) -> bool:
    """Whether this request decodes through the static cache: greedy with a cache, and either asked
    for (``options.static_cache``) or, by default, on CUDA unless ``BLIP_CUDA_GRAPHS=0`` (the app
    sets that on ZeroGPU, where each call may run in a new worker process)."""
    if options.strategy != "greedy" or not options.use_cache:
        return False
    if options.static_cache is not None:
        return options.static_cache
    return encoder_states.is_cuda and os.environ.get("BLIP_CUDA_GRAPHS", "1") != "0"


class _Runner:
    """The static cache and input/output buffers of one shape, and its graph once recorded."""

    def __init__(self, decoder: TextLMModel, rows: int, capacity: int, cross_len: int, need_probs: bool):
        weight = decoder.cls.predictions.decoder.weight
        self.decoder, self.need_probs = decoder, need_probs
        self.cache = StaticKVCache(decoder, rows, capacity, cross_len, weight.dtype, weight.device)
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=weight.device)  # the new tokens
        self.start = torch.zeros(1, dtype=torch.long, device=weight.device)  # their position
        self.lock = threading.Lock()
        self.replay: Callable[[], None] | None = None
        self.outputs: tuple | None = None
        self.mode = "eager"  # "graph" once recorded
        self.fallback_reason: str | None = None

    def step(self) -> tuple:
        return static_forward(self.decoder, self.cache, self.ids, self.start, self.need_probs)

    def run(self, capture: Capture | None) -> tuple:
        """One token for every row: replay the graph (recording it on first use), else run eagerly."""
        if self.replay is None and capture is not None and self.fallback_reason is None:
            try:
                self.replay, self.outputs = capture(self.step)
                self.mode = "graph"
            except Exception as error:  # any failure to record leaves a working eager path
                self.fallback_reason = f"{type(error).__name__}: {error}"
                log.warning("CUDA graph capture failed, decoding eagerly instead: %s", self.fallback_reason)
        if self.replay is None:
            return self.step()
        self.replay()
        return self.outputs


# Per decoder, its recorded runners by shape; dropped with the decoder (weak keys).
_RUNNERS: weakref.WeakKeyDictionary[TextLMModel, OrderedDict] = weakref.WeakKeyDictionary()
_RUNNERS_LOCK = threading.Lock()


def _runner(decoder: TextLMModel, key: tuple) -> _Runner:
    """The cached runner for ``key`` (rows, capacity, encoder tokens, need_probs), made on first use."""
    with _RUNNERS_LOCK:
        runners = _RUNNERS.setdefault(decoder, OrderedDict())
        if key in runners:
            runners.move_to_end(key)
            return runners[key]
        runner = runners[key] = _Runner(decoder, *key)
        while len(runners) > GRAPHS_PER_DECODER:
            runners.popitem(last=False)
        return runner


class GraphedStepper:
    """The :class:`~blip.generation.stepper.Stepper` interface of the greedy loop over a static cache.

    Rows never leave the batch here (the graph has a fixed batch): when the loop drops finished rows,
    this stepper only forgets which slots they held, and keeps running those slots on padding.
    """

    def __init__(self, runner: _Runner, encoder_states: torch.Tensor, capture: Capture | None):
        self.runner, self.capture = runner, capture
        self.encoder_states = encoder_states  # (G, S, E), one row per image
        self.slots = torch.arange(encoder_states.shape[0], device=encoder_states.device)

    @property
    def mode(self) -> str:
        """ "graph" when steps replay a recorded CUDA graph, else "eager"."""
        return self.runner.mode

    @property
    def fallback_reason(self) -> str | None:
        """Why recording a graph failed, if it did."""
        return self.runner.fallback_reason

    def start(self, prompt: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the prompt (1, P) for every image (eagerly: it has its own length) and fill the
        cross-attention buffers. Greedy search has one row per image."""
        if rows != 1:
            raise ValueError("the static-cache stepper runs greedy search (one row per image)")
        cache = self.runner.cache
        cache.reset()
        cache.fill_cross(self.runner.decoder, self.encoder_states)
        start = torch.zeros(1, dtype=torch.long, device=prompt.device)
        ids = prompt.expand(self.encoder_states.shape[0], -1)
        logits, cross = static_forward(self.runner.decoder, cache, ids, start, self.runner.need_probs)
        return logits.float(), cross

    def __call__(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores (rows, vocab) in float32 after ``sequences`` (rows, length), whose last column is
        the only token the cache has not seen; rows are the slots still running, in order."""
        self.runner.ids[self.slots, 0] = sequences[:, -1]
        self.runner.start.fill_(sequences.shape[1] - 1)
        logits, cross = self.runner.run(self.capture)
        # Copies: the next replay overwrites the graph's outputs.
        return logits[self.slots].float(), None if cross is None else cross[self.slots].clone()

    def reorder(self, rows: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Keep the slots ``rows`` (finished greedy rows leave); the others run on, unread."""
        self.slots = self.slots[rows.to(self.slots.device)]


def default_capture(device: torch.device) -> Capture | None:
    """CUDA graphs on a CUDA device, nothing elsewhere (the eager static path)."""
    return cuda_graph_capture if device.type == "cuda" else None


@contextlib.contextmanager
def graphed_stepper(
    decoder: TextLMModel,
    encoder_states: torch.Tensor,
    options: DecodingOptions,
    positions: int,
    capture: Capture | str | None = "default",
) -> Iterator[GraphedStepper | None]:
    """A :class:`GraphedStepper` for this greedy request (``positions`` = prompt + new tokens), held
    for the ``with`` block; None when the request does not take the static path.

    Args:
        capture: how graphs are recorded; "default" records CUDA graphs on CUDA only, None never.
    """
    if not wants_static(encoder_states, options):
        yield None
        return
    capacity = min(-(-positions // POSITION_BUCKET) * POSITION_BUCKET, MAX_POSITIONS)
    key = (encoder_states.shape[0], capacity, encoder_states.shape[1], options.output_attentions)
    runner = _runner(decoder, key)
    if capture == "default":
        capture = default_capture(encoder_states.device)
    if not runner.lock.acquire(blocking=False):
        # Another request is decoding through this shape's buffers: use private ones, eagerly.
        runner, capture = _Runner(decoder, *key), None
        runner.lock.acquire()
    try:
        yield GraphedStepper(runner, encoder_states, capture)
    finally:
        runner.lock.release()
