"""What the engine hands back: plain dataclasses of text, numbers and numpy heatmaps (no tensors), so
the app, the command line and the API can use them without knowing PyTorch."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..explain.maps import Heatmaps
from ..generation.tasks import GeneratedText
from ..generation.tree import SearchTree
from ..loading.tokenizer import BlipTokenizer


class Stopwatch:
    """Seconds spent in each named stage of a request, plus the total."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._last
        self.timings["total"] = now - self._start
        self._last = now


@dataclass
class TokenInfo:
    """One generated wordpiece, how sure the model was, and what else it considered."""

    token: str
    token_id: int
    probability: float  # under the model, before penalties and sampling filters
    logprob: float  # its natural log, kept exactly
    alternatives: list[tuple[str, float]]  # the model's best candidates at this step, best first
    alternative_ids: list[int] = field(default_factory=list)  # their token ids, in the same order


@dataclass
class GeneratedItem:
    """A caption or an answer."""

    text: str
    score: float  # the strategy's ranking score (beam score, or summed log-probability)
    tokens: list[TokenInfo]
    finished: bool  # ended with [SEP] rather than at the token limit
    heatmaps: Heatmaps | None = None  # one entry per generated word
    forced: int = 0  # how many leading tokens were forced (their probabilities are teacher-forced)

    @property
    def logprobs(self) -> list[float]:
        return [t.logprob for t in self.tokens]

    def what_if_ids(self, position: int, token_id: int) -> list[int]:
        """The ``forced`` ids for "what if token ``position`` had been ``token_id``?": this text's
        tokens before ``position``, then ``token_id`` (e.g. one of ``tokens[position].alternative_ids``).
        """
        if not 0 <= position < len(self.tokens):
            raise ValueError(f"position must be between 0 and {len(self.tokens) - 1} (got {position})")
        return [t.token_id for t in self.tokens[:position]] + [int(token_id)]


@dataclass
class RankedAnswerItem:
    answer: str
    probability: float  # softmax over the given candidates
    log_likelihood: float
    heatmaps: Heatmaps | None = None  # for the best candidate, when explanations were asked for


@dataclass
class Result:
    """Fields every task result has."""

    model: str  # the model name that was asked for
    offline_demo: bool = False  # True when the offline demo model answered in its place
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    image_cached: bool = False  # the image tokens came from the cache (no vision pass)
    notices: list[str] = field(default_factory=list)  # e.g. "the question was truncated to 64 tokens"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view: heatmap arrays are left out (they are large and binary)."""

        def strip(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if not k.endswith("heatmaps")}
            if isinstance(value, list | tuple):
                return [strip(v) for v in value]
            if isinstance(value, np.ndarray):  # rollout maps: small enough to keep, as nested lists
                return value.tolist()
            return value

        return strip(asdict(self))


@dataclass
class CaptionResult(Result):
    prompt: str = ""
    captions: list[GeneratedItem] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)  # the options that actually ran
    forced_ids: list[int] = field(default_factory=list)  # the tokens every caption was made to start with
    search_tree: SearchTree | None = None  # beam search's tree, with the option record_tree


@dataclass
class AnswerResult(Result):
    question: str = ""
    first_token: str = "[ENC]"  # how the question was encoded
    answers: list[GeneratedItem] = field(default_factory=list)  # generate mode
    ranked: list[RankedAnswerItem] = field(default_factory=list)  # rank mode
    decoding: dict[str, Any] = field(default_factory=dict)
    question_heatmaps: Heatmaps | None = None  # where each question word looked
    forced_ids: list[int] = field(default_factory=list)  # the tokens every answer was made to start with
    search_tree: SearchTree | None = None  # beam search's tree, with the option record_tree


@dataclass
class MatchRow:
    text: str
    itm_probability: float  # P(match) from the image-grounded matching head
    itc_cosine: float | None  # cosine of the separately embedded image and text (None: not asked for)
    heatmaps: Heatmaps | None = None  # per word: attention and ITM Grad-CAM


@dataclass
class MatchResult(Result):
    first_token: str = "[ENC]"
    rows: list[MatchRow] = field(default_factory=list)


@dataclass
class CaptionCheck(Result):
    """The matcher's verdict on one caption."""

    text: str = ""
    first_token: str = "[ENC]"
    itm_probability: float = 0.0  # P(match) from the image-grounded matching head
    itc_cosine: float = 0.0  # cosine of the separately embedded image and text
    matches: bool = False  # the matcher's verdict: itm_probability >= 0.5
    heatmaps: Heatmaps | None = None  # per word: attention and ITM Grad-CAM


@dataclass
class CaptionLikelihood(Result):
    """How likely the captioner finds a given caption, token by token (teacher-forced)."""

    text: str = ""  # the scored text as the tokenizer reads it back
    prompt: str = ""  # what the caption was conditioned on (not scored)
    tokens: list[TokenInfo] = field(
        default_factory=list
    )  # each scored token; alternatives: the model's picks
    log_likelihood: float = 0.0  # sum of the tokens' log-probabilities (the final [SEP] included)
    mean_logprob: float = 0.0  # per token: comparable across lengths
    perplexity: float = 0.0  # exp(-mean_logprob): "as unsure as a fair choice among this many tokens"
    heatmaps: Heatmaps | None = None  # per word: cross-attention and Grad-CAM, on request


@dataclass
class RolloutResult(Result):
    """Attention rollout of the vision tower's class token (see ``blip.explain.rollout``)."""

    maps: np.ndarray | None = None  # (layers, rows, columns): rollout after each layer, each sums to one

    def grid_map(self, layer: int | None = None) -> np.ndarray:
        """The class token's map after ``layer`` (default: the last, through the whole tower)."""
        if self.maps is None:
            raise ValueError("this result holds no rollout maps")
        return self.maps[-1 if layer is None else layer]


@dataclass
class LabelScore:
    label: str
    probability: float
    itc_cosine: float | None = None
    itm_logit: float | None = None
    heatmaps: Heatmaps | None = None


@dataclass
class ClassifyResult(Result):
    scoring: str = "itc"
    template: str = "a picture of {}"
    temperature: float = 0.07
    labels: list[LabelScore] = field(default_factory=list)  # best first; probabilities sum to 1


def generated_items(
    tokenizer: BlipTokenizer, texts: list[GeneratedText], heatmaps: list[Heatmaps | None]
) -> list[GeneratedItem]:
    """Generated texts as results: each token with its probability and the alternatives, by name."""
    items = []
    for text, maps in zip(texts, heatmaps, strict=True):
        seq = text.sequence
        tokens = [
            TokenInfo(
                token=piece,
                token_id=token_id,
                probability=math.exp(logprob),
                logprob=logprob,
                alternatives=[(tokenizer.id_to_token(i), p) for i, p in alternatives],
                alternative_ids=[i for i, _ in alternatives],
            )
            for piece, token_id, logprob, alternatives in zip(
                text.tokens, seq.token_ids, seq.token_logprobs, seq.alternatives, strict=True
            )
        ]
        items.append(GeneratedItem(text.text, seq.score, tokens, seq.finished, maps, seq.forced))
    return items


@dataclass
class SearchHit:
    path: str  # the picture's name in the index (its file path)
    itc_cosine: float  # cosine of the query's and the picture's ITC vectors
    itm_probability: float | None = None  # P(match) when the hit was among the re-ranked


@dataclass
class SearchResult(Result):
    query: str = ""  # the text, or "picture" for a search by example
    indexed: int = 0  # pictures searched
    reranked: int = 0  # how many of the best by ITC the matcher re-ranked
    hits: list[SearchHit] = field(default_factory=list)  # best first
