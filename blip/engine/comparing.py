"""Two settings side by side: the same task on the same picture run twice (caption-base against
caption-large, greedy against beam search, [ENC] against [CLS], ITM coco against flickr, attention
against Grad-CAM), with what changed between them: the words, the scores, the maps.

A comparison is nothing but the two separate calls it stands for (:meth:`caption`, :meth:`answer` or
:meth:`match`, each with one side's settings) and a diff of their results, so it always agrees with
them. When both model names are served by the same weights (offline, every name falls back to the
one demo model of its task), the comparison says so rather than show a difference of names alone.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..explain.maps import Heatmaps
from .answering import Answering
from .captioning import Captioning
from .inputs import decoding_options, readable
from .matching import Matching
from .results import GeneratedItem, Result

TASKS = ("caption", "answer", "match")
# The settings each task reads (the others are ignored, and so do not make two sides differ).
USED = {"caption": ("options",), "answer": ("options", "first_token"), "match": ("first_token",)}
MAP_KINDS = ("attention", "gradcam")
SAME = 1e-6  # scores closer than this count as equal


@dataclass
class Side:
    """One column's settings.

    Attributes:
        model: a model name of the task's kind.
        options: decoding options (caption, answer), a dict or ``DecodingOptions``; None: the defaults.
        first_token: "[ENC]" or "[CLS]", how the question (answer) or the texts (match) are read.
        map_kind: the heatmap compared, "attention" or "gradcam" (with ``explain``).
    """

    model: str
    options: Any = None
    first_token: str = "[ENC]"
    map_kind: str = "attention"


@dataclass
class ScoreChange:
    """One score on both sides; ``delta`` is right minus left."""

    name: str
    left: float | None
    right: float | None

    @property
    def delta(self) -> float | None:
        return None if self.left is None or self.right is None else self.right - self.left


@dataclass
class Comparison:
    """What two runs of a task gave, and what differs.

    Attributes:
        left_words, right_words: each side's text as (word, changed) pairs, ``changed`` marking words
            the other side does not have at that place (a word diff); for matching, one entry per text
            with its verdict, changed where the verdicts differ.
        scores: the scores of both sides, named.
        same_weights: both sides ran the same checkpoint files (e.g. both fell back to the demo).
        maps: each side's heatmap of the whole text (mean over its words) in its ``map_kind``, as a
            (rows, columns) grid; None without ``explain``.
        map_agreement: Pearson correlation of the two maps (1: the same picture up to scale), or None.
        notes: what a reader must know to trust the difference (same weights, the demo standing in).
    """

    task: str
    text: str
    left: Side
    right: Side
    left_result: Result
    right_result: Result
    left_words: list[tuple[str, bool]]
    right_words: list[tuple[str, bool]]
    scores: list[ScoreChange]
    same_weights: bool
    maps: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    map_agreement: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """Did anything shown change: a word, a verdict or a score?"""
        changed = any(c for _, c in self.left_words) or any(c for _, c in self.right_words)
        return changed or any(s.delta is not None and abs(s.delta) > SAME for s in self.scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: the two results (heatmaps left out), the diff, the scores and the notes."""
        left, right = asdict(self.left), asdict(self.right)
        for side in (left, right):
            if side["options"] is not None and not isinstance(side["options"], dict):
                side["options"] = asdict(side["options"])
        return {
            "task": self.task,
            "text": self.text,
            "left": left | {"result": self.left_result.to_dict()},
            "right": right | {"result": self.right_result.to_dict()},
            "left_words": [list(w) for w in self.left_words],
            "right_words": [list(w) for w in self.right_words],
            "scores": [asdict(s) | {"delta": s.delta} for s in self.scores],
            "same_weights": self.same_weights,
            "map_agreement": self.map_agreement,
            "differs": self.differs,
            "notes": list(self.notes),
        }


def word_diff(left: str, right: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Each text as (word, changed) pairs: the words outside the longest common runs of the two word
    sequences (difflib's matching blocks) are the changed ones."""
    a, b = left.split(), right.split()
    a_changed, b_changed = [True] * len(a), [True] * len(b)
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            a_changed[block.a + k] = b_changed[block.b + k] = False
    return list(zip(a, a_changed, strict=True)), list(zip(b, b_changed, strict=True))


def _as_side(side: Side | dict) -> Side:
    side = side if isinstance(side, Side) else Side(**side)
    if side.map_kind not in MAP_KINDS:
        raise ValueError(f"map_kind must be one of {', '.join(MAP_KINDS)} (got {side.map_kind!r})")
    return side


def _generated_scores(left: GeneratedItem, right: GeneratedItem, what: str) -> list[ScoreChange]:
    def mean_probability(item: GeneratedItem) -> float:
        return float(np.mean([t.probability for t in item.tokens])) if item.tokens else 0.0

    return [
        ScoreChange(f"{what} 1 score", left.score, right.score),
        ScoreChange(f"{what} 1 log-likelihood", sum(left.logprobs), sum(right.logprobs)),
        ScoreChange(f"{what} 1 mean token probability", mean_probability(left), mean_probability(right)),
        ScoreChange(f"{what} 1 tokens", float(len(left.tokens)), float(len(right.tokens))),
    ]


def _whole_text_map(maps: Heatmaps | None, kind: str) -> np.ndarray | None:
    """The mean map over every word, at the layer shown first for that kind of map."""
    if maps is None or not maps.words or kind not in maps.kinds():
        return None
    return maps.grid_map(word=None, layer=maps.default_layer(kind), kind=kind)


class Comparing(Captioning, Answering, Matching):
    def compare(
        self,
        image: Image.Image,
        task: str,
        left: Side | dict,
        right: Side | dict,
        text: str = "",
        explain: bool = False,
    ) -> Comparison:
        """Run ``task`` on ``image`` with each side's settings and say what differs.

        Args:
            task: "caption" (``text``: the prompt the captions continue), "answer" (``text``: the
                question) or "match" (``text``: the texts to score, one per line).
            left, right: each column's :class:`Side` (or a dict of its fields).
            explain: compute heatmaps (each side's ``map_kind`` of the whole text is compared).
        """
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)} (got {task!r})")
        left, right = _as_side(left), _as_side(right)
        # Matching reads one text per line: clean each line (``readable`` makes line breaks spaces).
        text = (
            "\n".join(t for t in map(readable, (text or "").splitlines()) if t)
            if task == "match"
            else readable(text or "")
        )
        # Which weights serve each name, asked before the runs load them (asking after could reload one
        # the store dropped meanwhile).
        paths = [self.model(side.model).path.resolve() for side in (left, right)]
        results = [self._run_side(image, task, side, text, explain) for side in (left, right)]
        if task == "match":
            left_words, right_words, scores, maps = _match_diff(*results, left, right)
        else:
            items = [r.captions[0] if task == "caption" else r.answers[0] for r in results]
            left_words, right_words = word_diff(items[0].text, items[1].text)
            scores = _generated_scores(*items, "caption" if task == "caption" else "answer")
            maps = (
                _whole_text_map(items[0].heatmaps, left.map_kind),
                _whole_text_map(items[1].heatmaps, right.map_kind),
            )
        comparison = Comparison(
            task=task, text=text, left=left, right=right, left_result=results[0], right_result=results[1],
            left_words=left_words, right_words=right_words, scores=scores,
            same_weights=paths[0] == paths[1],
            maps=maps if explain else (None, None),
        )  # fmt: skip
        comparison.map_agreement = _agreement(*comparison.maps)
        comparison.notes = _notes(comparison, explain)
        return comparison

    def _run_side(self, image: Image.Image, task: str, side: Side, text: str, explain: bool) -> Result:
        """The separate call one column stands for."""
        if task == "caption":
            return self.caption(image, side.model, text, side.options, explain_tokens=explain)
        if task == "answer":
            return self.answer(
                image, text, side.model, side.options, first_token=side.first_token, explain_tokens=explain
            )
        return self.match(image, text.splitlines(), side.model, side.first_token, explain_words=explain)


def _agreement(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Pearson correlation of two maps over their patches (None: a map missing or flat)."""
    if a is None or b is None or a.shape != b.shape or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _match_diff(left: Any, right: Any, left_side: Side, right_side: Side) -> tuple:
    """Per text: the verdicts (changed where they differ), ITM and ITC on both sides, the first
    text's maps."""
    left_words, right_words, scores = [], [], []
    for a, b in zip(left.rows, right.rows, strict=True):
        flipped = (a.itm_probability >= 0.5) != (b.itm_probability >= 0.5)
        for row, words in ((a, left_words), (b, right_words)):
            verdict = "match" if row.itm_probability >= 0.5 else "no match"
            words.append((f"{row.text}: {verdict} ({row.itm_probability:.3f})", flipped))
        scores.append(ScoreChange(f"ITM probability: {a.text}", a.itm_probability, b.itm_probability))
        scores.append(ScoreChange(f"ITC cosine: {a.text}", a.itc_cosine, b.itc_cosine))
    maps = (
        _whole_text_map(left.rows[0].heatmaps, left_side.map_kind),
        _whole_text_map(right.rows[0].heatmaps, right_side.map_kind),
    )
    return left_words, right_words, scores, maps


def _notes(comparison: Comparison, explain: bool) -> list[str]:
    left, right = comparison.left, comparison.right
    a, b = comparison.left_result, comparison.right_result
    notes = []
    if comparison.same_weights and left.model != right.model:
        demo = " (the offline demo model stands in for both)" if a.offline_demo and b.offline_demo else ""
        notes.append(
            f"Same weights on both sides: {left.model} and {right.model} are served by the same checkpoint"
            f"{demo}, so this is not a comparison of the two models; only the other settings can differ."
        )
    elif a.offline_demo != b.offline_demo:
        demo, real = (left.model, right.model) if a.offline_demo else (right.model, left.model)
        notes.append(
            f"The offline demo model answered for {demo} but not for {real}: the difference is between "
            f"the demo model and {real}."
        )
    if (left.model == right.model or comparison.same_weights) and _same_settings(comparison, explain):
        notes.append("Both sides have the same settings: there is nothing to compare.")
    elif not comparison.differs:
        notes.append("Both sides gave the same words and scores.")
    for side, name in ((left, "left"), (right, "right")):
        options = decoding_options(side.options)
        if comparison.task != "match" and options.strategy == "sample" and options.seed is None:
            notes.append(f"The {name} side samples without a seed: it changes from run to run.")
    return notes


def _same_settings(comparison: Comparison, explain: bool) -> bool:
    """Do the sides differ in nothing the task reads but the model name?"""
    used = USED[comparison.task] + (("map_kind",) if explain else ())

    def settings(side: Side) -> tuple:
        values = asdict(side) | {"options": asdict(decoding_options(side.options))}
        return tuple(values[name] for name in used)

    return settings(comparison.left) == settings(comparison.right)
