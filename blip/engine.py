"""The engine: one object between the BLIP core and every way of using it (app, command line, API).

It loads each model once (lazily, thread-safely, keeping at most a few in memory), remembers the image
tokens it has computed (so the same picture in several tabs or questions is encoded once), runs the four
tasks and returns plain results with timings and, on request, heatmaps.

Nothing here is per user: every request builds its own decoding state, so concurrent requests never
see each other's data.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import torch
from PIL import Image

from . import explain, tasks
from .cache import KVCache
from .decoding import DecodingOptions
from .fast import quantize_int8
from .hub import MODELS, CheckpointUnavailableError, UnknownModelError
from .loading import LoadedModel, load
from .models import CaptionModel, QuestionAnsweringModel, RetrievalModel
from .results import (
    AnswerResult,
    CaptionResult,
    ClassifyResult,
    GeneratedItem,
    LabelScore,
    MatchResult,
    MatchRow,
    RankedAnswerItem,
    TokenInfo,
)
from .tokenizer import CLS_ID, ENC_ID, UNK_ID

# The offline demo models (trained on the shapes world by scripts/train_shapes.py), one per task.
DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_MODELS = {"caption": DEMO_DIR / "caption", "vqa": DEMO_DIR / "vqa", "retrieval": DEMO_DIR / "retrieval"}
DEMO_NOTICE = (
    "Offline demo model: the Hugging Face checkpoint is not available here, so a tiny BLIP trained on "
    "coloured shapes answers instead. Try it on the shapes examples."
)
FIRST_TOKENS = {"[ENC]": ENC_ID, "[CLS]": CLS_ID}  # [ENC]: as BLIP was trained; [CLS]: as transformers does
SCORINGS = ("itc", "itm", "itc+itm")
MAX_LABELS = 100
QUESTION_CROSS_CACHE = 4  # images; about 42 MB each for a base model (12 layers x keys and values)
MAX_TEXTS = 32


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


def decoding_options(options: DecodingOptions | dict | None) -> DecodingOptions:
    """Options as given, or built from a plain dict (the app and API speak dicts, not dataclasses)."""
    if options is None:
        return DecodingOptions()
    if isinstance(options, DecodingOptions):
        return options
    known = {f.name for f in fields(DecodingOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown decoding option(s): {', '.join(unknown)}")
    return DecodingOptions(**options)


def readable(text: str) -> str:
    """``text`` without control and format characters (NUL, escape codes, bidirectional marks), which
    the tokenizer would drop anyway, and without surrounding whitespace: "is it empty?" means this."""
    kept = (
        " " if ch in "\t\n\r" else ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\t\n\r"
    )
    return "".join(kept).strip()


def text_notices(tokenizer, texts: list[str], what: str) -> list[str]:
    """Notices for texts longer than the model reads or holding characters its vocabulary lacks."""
    notices = []
    for i, text in enumerate(texts):
        name = what if len(texts) == 1 else f"{what} {i + 1}"
        ids = tokenizer.encode(text)
        if len(ids) > tasks.MAX_TEXT_TOKENS:
            notices.append(f"{name} was cut to its first {tasks.MAX_TEXT_TOKENS} tokens (the model's limit)")
        if UNK_ID in ids:
            notices.append(f"{name} has characters the model's vocabulary does not know (read as [UNK])")
    return notices


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def image_key(image: Image.Image) -> str:
    """A digest of the picture's content (pixels, mode, size and EXIF orientation)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    orientation = image.getexif().get(0x0112, 1)
    digest.update(f"{image.mode}|{image.size}|{orientation}".encode())
    return digest.hexdigest()


class _Recent:
    """A thread-safe least-recently-used map holding at most ``capacity`` entries (0: holds nothing)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            if not self.capacity:
                return
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class Engine:
    """Loads models on first use and runs caption / answer / match / classify.

    Args:
        device: "cpu", "cuda", ...; default CUDA when present, else CPU.
        dtype: parameter dtype; default float32 (bit-compatible with the reference).
        max_models: models kept in memory; the least recently used is dropped beyond that.
        image_cache_size: image encodings kept (per model and picture).
        local_models: extra model names mapped to checkpoint directories (given at launch; users can
            only pick names, never paths).
        loader: how a model is loaded (tests count calls through it).
        demo: "fallback" serves a table model whose checkpoint cannot be had (Hub unreachable, nothing
            cached) with the offline demo model of the same task; "always" serves every table model
            with it (``--offline-demo``); "never" lets the error through.
        fast: run every linear layer in int8 on the CPU (``blip.fast``): faster, outputs close to but
            not identical with float32; heatmaps' gradients use a float32 copy.
    """

    def __init__(
        self,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        max_models: int = 3,
        image_cache_size: int = 32,
        local_models: dict[str, str | Path] | None = None,
        loader: Callable[..., LoadedModel] = load,
        demo: str = "fallback",
        fast: bool = False,
    ):
        if demo not in ("fallback", "always", "never"):
            raise ValueError("demo must be 'fallback', 'always' or 'never'")
        if max_models < 1 or image_cache_size < 0:
            raise ValueError("max_models must be >= 1 and image_cache_size >= 0")
        self.device = device or default_device()
        self.dtype = dtype
        self.max_models = max_models
        self.image_cache_size = image_cache_size
        self.local_models = {name: Path(path) for name, path in (local_models or {}).items()}
        self._loader = loader
        self.demo = demo
        self.fast = fast
        if fast and str(self.device) != "cpu":
            raise ValueError("the int8 fast mode runs on the CPU only")
        self._lock = threading.Lock()  # guards the model table and the counters
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._load_locks: dict[str, threading.Lock] = {}
        self._images = _Recent(image_cache_size)  # (model name, image key) -> image tokens
        # The VQA question encoder's cross-attention keys/values of recent images (per layer), so that
        # a second question on a picture skips projecting its 577 tokens in every layer.
        self._question_cross = _Recent(QUESTION_CROSS_CACHE if image_cache_size else 0)
        self.load_counts: Counter[str] = Counter()
        self.vision_runs = 0

    # --- models and images -------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return [*self.local_models, *MODELS]

    def loaded_models(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def model_status(self) -> list[dict]:
        """What is in memory: for each loaded model, its name, folder and whether the demo stands in."""
        with self._lock:
            return [
                {"name": name, "path": str(m.path), "offline_demo": m.offline_demo}
                for name, m in self._models.items()
            ]

    def model(self, name: str) -> LoadedModel:
        """The loaded model for ``name``, loading it on first use (once, even under concurrency)."""
        if name not in self.local_models and name not in MODELS:
            raise UnknownModelError(name)
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            lock = self._load_locks.setdefault(name, threading.Lock())
        with lock:  # one loader per name; others wait here and then find it loaded
            with self._lock:
                if name in self._models:
                    self._models.move_to_end(name)
                    return self._models[name]
            loaded = self._load(name)
            with self._lock:
                self._models[name] = loaded
                self.load_counts[name] += 1
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            return loaded

    def _load(self, name: str) -> LoadedModel:
        """Load ``name``, or the demo model of its task where the demo setting says so."""
        demo_path = DEMO_MODELS[MODELS[name].task] if name in MODELS and self.demo != "never" else None
        if demo_path is not None and self.demo == "always":
            loaded = self._loader(demo_path, device=self.device, dtype=self.dtype)
            loaded.offline_demo = True
        else:
            try:
                loaded = self._loader(self.local_models.get(name, name), device=self.device, dtype=self.dtype)
            except CheckpointUnavailableError:
                if demo_path is None:
                    raise
                loaded = self._loader(demo_path, device=self.device, dtype=self.dtype)
                loaded.offline_demo = True
        loaded.name = name
        if self.fast:
            loaded.explainer, loaded.model = loaded.model, quantize_int8(loaded.model)
        return loaded

    def _typed(self, name: str, kind: type, task: str) -> LoadedModel:
        loaded = self.model(name)
        if not isinstance(loaded.model, kind):
            raise ValueError(
                f"model {name!r} is a {type(loaded.model).__name__}; {task} needs a {kind.__name__}"
            )
        return loaded

    def image_embeds(
        self, loaded: LoadedModel, image: Image.Image, key: str | None = None
    ) -> tuple[torch.Tensor, bool]:
        """Image tokens (1, N, D) for ``image`` under ``loaded``'s ViT; True if they came from the cache.

        ``key`` is the picture's :func:`image_key` when the caller already has it.
        """
        cache_key = (loaded.name, key or image_key(image))
        embeds = self._images.get(cache_key)
        if embeds is not None:
            return embeds, True
        with torch.inference_mode():
            embeds = loaded.model.encode_image(loaded.pixels(image))
        with self._lock:
            self.vision_runs += 1
        self._images.put(cache_key, embeds)
        return embeds, False

    # --- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _finish(result, loaded: LoadedModel):
        """Say plainly when the offline demo model answered."""
        result.offline_demo = loaded.offline_demo
        if loaded.offline_demo:
            result.notices.insert(0, DEMO_NOTICE)
        return result

    def _grid(self, loaded: LoadedModel) -> tuple[int, int]:
        side = loaded.image_size // loaded.model.config.vision.patch_size
        return side, side

    def _items(
        self, loaded: LoadedModel, texts: list[tasks.GeneratedText], heatmaps: list[explain.Heatmaps | None]
    ) -> list[GeneratedItem]:
        tok = loaded.tokenizer
        items = []
        for text, maps in zip(texts, heatmaps, strict=True):
            seq = text.sequence
            tokens = [
                TokenInfo(
                    token=piece,
                    token_id=token_id,
                    probability=math.exp(logprob),
                    logprob=logprob,
                    alternatives=[(tok.id_to_token(i), p) for i, p in alternatives],
                )
                for piece, token_id, logprob, alternatives in zip(
                    text.tokens, seq.token_ids, seq.token_logprobs, seq.alternatives, strict=True
                )
            ]
            items.append(GeneratedItem(text.text, seq.score, tokens, seq.finished, maps))
        return items

    @staticmethod
    def _first_token(first_token: str) -> int:
        if first_token not in FIRST_TOKENS:
            raise ValueError(f"first_token must be one of {', '.join(FIRST_TOKENS)}")
        return FIRST_TOKENS[first_token]

    def _encode_texts(self, loaded: LoadedModel, texts: list[str], first_token: str, what: str = "text"):
        ids, mask = loaded.tokenizer.encode_batch(texts, max_length=tasks.MAX_TEXT_TOKENS)
        ids[:, 0] = self._first_token(first_token)
        notices = text_notices(loaded.tokenizer, texts, what)
        return ids.to(loaded.device), mask.to(loaded.device), notices

    @staticmethod
    def _itc_cosines(model: RetrievalModel, embeds, ids, mask) -> torch.Tensor:
        """Cosine of one image with each text. ITC encodes a text on its own, so it starts with [CLS]
        as in training (whatever first token the image-grounded ITM pass used)."""
        itc_ids = ids.clone()
        itc_ids[:, 0] = CLS_ID
        with torch.inference_mode():
            return model.itc_similarity(embeds, itc_ids, mask)[0].float()

    def _text_heatmaps(self, loaded, ids, maps, cams, row: int) -> explain.Heatmaps:
        """Row ``row`` of a batch of matched texts: per layer (B, heads, T, N) -> per token."""
        return explain.Heatmaps.build(
            loaded.tokenizer.convert_ids_to_tokens(ids[row].tolist()),
            self._grid(loaded),
            [m[row].transpose(0, 1) for m in maps],
            [c[row].transpose(0, 1) for c in cams],
        )

    # --- tasks -------------------------------------------------------------------------------------------

    def caption(
        self,
        image: Image.Image,
        model: str = "caption-base",
        prompt: str = "",
        options: DecodingOptions | dict | None = None,
        explain_tokens: bool = False,
    ) -> CaptionResult:
        """Caption ``image``; with ``explain_tokens``, attention and Grad-CAM maps for every word."""
        options = decoding_options(options)
        prompt = readable(prompt)
        clock = Stopwatch()
        loaded = self._typed(model, CaptionModel, "captioning")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        if explain_tokens and not options.output_attentions:
            options = DecodingOptions(**{**asdict(options), "output_attentions": True})
        texts = tasks.caption(loaded.model, loaded.tokenizer, embeds, prompt, options)
        clock.mark("decode")
        prefix = tasks.caption_prompt_ids(loaded.tokenizer, prompt)
        maps = [
            self._generated_heatmaps(loaded, embeds, prefix, t) if explain_tokens else None for t in texts
        ]
        clock.mark("explain")
        return self._finish(
            CaptionResult(
                model=model,
                timings=clock.timings,
                image_cached=cached,
                prompt=prompt,
                notices=text_notices(loaded.tokenizer, [prompt], "the prompt") if prompt else [],
                captions=self._items(loaded, texts, maps),
                decoding=asdict(options),
            ),
            loaded,
        )

    def _generated_heatmaps(
        self, loaded, embeds, prefix: list[int], text: tasks.GeneratedText
    ) -> explain.Heatmaps:
        seq = text.sequence
        ids = torch.tensor([prefix + seq.token_ids], device=embeds.device)
        cams = explain.decoder_gradcam(loaded.gradient_model.text_decoder, embeds, ids, len(prefix))
        return explain.Heatmaps.build(text.tokens, self._grid(loaded), seq.cross_attentions, cams)

    def answer(
        self,
        image: Image.Image,
        question: str,
        model: str = "vqa-base",
        options: DecodingOptions | dict | None = None,
        candidates: list[str] | None = None,
        first_token: str = "[ENC]",
        explain_tokens: bool = False,
    ) -> AnswerResult:
        """Answer ``question``: generate (default) or rank the given ``candidates``."""
        question = readable(question)
        if not question:
            raise ValueError("the question is empty")
        options = decoding_options(options)
        clock = Stopwatch()
        loaded = self._typed(model, QuestionAnsweringModel, "question answering")
        clock.mark("load")
        picture = image_key(image)
        embeds, cached = self.image_embeds(loaded, image, picture)
        clock.mark("vision")
        token = self._first_token(first_token)
        notices = text_notices(loaded.tokenizer, [question], "the question")
        cache = KVCache(loaded.model.config.text.num_hidden_layers)
        image_keys_values = self._question_cross.get((loaded.name, picture))
        if image_keys_values is not None:
            cache.cross = list(image_keys_values)
        states = tasks.encode_question(loaded.model, loaded.tokenizer, embeds, question, token, cache)
        if image_keys_values is None:
            self._question_cross.put((loaded.name, picture), list(cache.cross))
        result = AnswerResult(
            model=model, question=question, first_token=first_token, image_cached=cached, notices=notices
        )
        if candidates is not None:
            candidates = [c for c in map(readable, candidates) if c]
            if not candidates:
                raise ValueError("give at least one candidate answer")
            ranked = tasks.rank_answers(
                loaded.model, loaded.tokenizer, states, list(dict.fromkeys(candidates))
            )
            result.ranked = [RankedAnswerItem(r.answer, r.probability, r.log_likelihood) for r in ranked]
            best_ids = loaded.tokenizer.encode(ranked[0].answer, max_length=tasks.MAX_TEXT_TOKENS)[1:]
        else:
            texts = tasks.answer(loaded.model, loaded.tokenizer, states, options)
            result.decoding = asdict(options)
            result.answers = self._items(loaded, texts, [None] * len(texts))
            best_ids = texts[0].sequence.token_ids
        clock.mark("text")
        if explain_tokens and best_ids:
            q_ids = tasks.question_ids(loaded.tokenizer, question, token).to(embeds.device)
            q_maps, answer_maps = self._answer_heatmaps(loaded, embeds, q_ids, best_ids)
            result.question_heatmaps = q_maps
            best = result.answers[0] if result.answers else result.ranked[0]
            best.heatmaps = answer_maps
        clock.mark("explain")
        result.timings = clock.timings
        return self._finish(result, loaded)

    def _answer_heatmaps(self, loaded, embeds, q_ids, answer_ids: list[int]):
        """Question words: their attention to the image and Grad-CAM of the answer's likelihood.
        Answer words: Grad-CAM through the question, and attention routed via the question tokens."""
        grid, tokenizer = self._grid(loaded), loaded.tokenizer
        a_ids = torch.tensor([[tasks.DEC_ID, *answer_ids]], device=embeds.device)
        q_att, q_cam, a_att, a_cam = explain.answer_explanation(loaded.gradient_model, embeds, q_ids, a_ids)
        question = explain.Heatmaps.build(
            tokenizer.convert_ids_to_tokens(q_ids[0].tolist()), grid, q_att, q_cam
        )
        answer = explain.Heatmaps.build(tokenizer.convert_ids_to_tokens(answer_ids), grid, a_att, a_cam)
        return question, answer

    def match(
        self,
        image: Image.Image,
        texts: list[str],
        model: str = "itm-base-coco",
        first_token: str = "[ENC]",
        explain_words: bool = False,
        itc: bool = True,
    ) -> MatchResult:
        """ITM match probability and ITC cosine of ``image`` with each text (one text per row).

        ``itc=False`` skips the ITC cosines (a second pass of every text through the text encoder)
        and leaves them None, for callers that only want the match probabilities."""
        texts = [t for t in map(readable, texts) if t]
        if not texts:
            raise ValueError("give at least one text to match")
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts at once (got {len(texts)})")
        clock = Stopwatch()
        loaded = self._typed(model, RetrievalModel, "matching")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        ids, mask, notices = self._encode_texts(loaded, texts, first_token)
        m = loaded.model
        if explain_words:
            logits, maps, cams = explain.itm_explanation(loaded.gradient_model, embeds, ids, mask)
        if not explain_words or loaded.explainer is not None:  # the scores come from the model that runs
            with torch.inference_mode():
                logits, _ = m.itm_logits(embeds, ids, mask)
        cosines = self._itc_cosines(m, embeds, ids, mask) if itc else None
        probabilities = logits.float().softmax(dim=-1)[:, 1]
        rows = [
            MatchRow(
                text=text,
                itm_probability=float(probabilities[i]),
                itc_cosine=float(cosines[i]) if cosines is not None else None,
                heatmaps=self._text_heatmaps(loaded, ids, maps, cams, i) if explain_words else None,
            )
            for i, text in enumerate(texts)
        ]
        clock.mark("text")
        return self._finish(
            MatchResult(
                model=model,
                timings=clock.timings,
                image_cached=cached,
                notices=notices,
                first_token=first_token,
                rows=rows,
            ),
            loaded,
        )

    def classify(
        self,
        image: Image.Image,
        labels: list[str],
        model: str = "itm-base-coco",
        template: str = "a picture of {}",
        scoring: str = "itc",
        temperature: float = 0.07,
        shortlist: int = 5,
        first_token: str = "[ENC]",
        explain_labels: bool = False,
    ) -> ClassifyResult:
        """Zero-shot classification: which of ``labels`` (put into ``template``) fits the image?

        Scoring: "itc" (softmax of cosines / temperature), "itm" (softmax over labels of the match
        logit), or "itc+itm" (ITC keeps the ``shortlist`` best labels; ITM re-ranks them; the rest get 0).
        """
        labels = list(dict.fromkeys(label for label in map(readable, labels) if label))
        if not labels:
            raise ValueError("give at least one label")
        notices = []
        if len(labels) > MAX_LABELS:
            notices.append(f"only the first {MAX_LABELS} of {len(labels)} labels were used")
            labels = labels[:MAX_LABELS]
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}")
        if "{}" not in template:
            raise ValueError("the template needs a {} where the label goes")
        if not 0.001 <= temperature <= 10.0:
            raise ValueError("temperature must be between 0.001 and 10")
        if not 1 <= shortlist <= MAX_LABELS:
            raise ValueError(f"shortlist must be between 1 and {MAX_LABELS}")
        clock = Stopwatch()
        loaded = self._typed(model, RetrievalModel, "zero-shot classification")
        clock.mark("load")
        embeds, cached = self.image_embeds(loaded, image)
        clock.mark("vision")
        prompts = [template.replace("{}", label) for label in labels]
        ids, mask, cut = self._encode_texts(loaded, prompts, first_token, "label")
        notices += cut
        m, n = loaded.model, len(labels)
        cosines = itm = None
        if scoring in ("itc", "itc+itm"):
            cosines = self._itc_cosines(m, embeds, ids, mask)
        probs = torch.zeros(n)
        if scoring == "itc":
            probs = (cosines / temperature).softmax(dim=0).cpu()
        else:
            chosen = torch.arange(n) if scoring == "itm" else cosines.topk(min(shortlist, n)).indices.cpu()
            with torch.inference_mode():
                logits, _ = m.itm_logits(embeds, ids[chosen], mask[chosen])
            itm = torch.full((n,), float("nan"))
            itm[chosen] = logits[:, 1].float().cpu()
            probs[chosen] = logits[:, 1].float().softmax(dim=0).cpu()
        heat = [None] * n
        if explain_labels:
            _, maps, cams = explain.itm_explanation(loaded.gradient_model, embeds, ids, mask)
            heat = [self._text_heatmaps(loaded, ids, maps, cams, i) for i in range(n)]
        scores = [
            LabelScore(
                label=labels[i],
                probability=float(probs[i]),
                itc_cosine=float(cosines[i]) if cosines is not None else None,
                itm_logit=float(itm[i]) if itm is not None and not torch.isnan(itm[i]) else None,
                heatmaps=heat[i],
            )
            for i in range(n)
        ]
        clock.mark("text")
        return self._finish(
            ClassifyResult(
                model=model,
                timings=clock.timings,
                image_cached=cached,
                notices=notices,
                scoring=scoring,
                template=template,
                temperature=temperature,
                labels=sorted(scores, key=lambda s: s.probability, reverse=True),
            ),
            loaded,
        )
