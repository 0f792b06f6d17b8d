"""Train the offline demo models: three tiny BLIPs on the synthetic shapes world (scripts/shapes_world.py).

    python scripts/train_shapes.py            # about 47 minutes on 2 idle cores (AMD EPYC); writes assets/demo/

The models have exactly the official architecture and file layout (config.json, model.safetensors,
tokenizer.json, preprocessor_config.json), only smaller, so the normal loader (and transformers) read
them like any Hub checkpoint. Training uses our own blip/ modules. First the vision tower alone learns
to see the world (``pretrain_vision``: per-patch read-outs of shape, colour, size and place on a
curriculum, 16 scenes a step; what is kept is the moving average of its weights); it is then frozen
but for its last two layers, which the captioner trains, and the task models learn to read it with the
usual BLIP losses:

* captioning: language modelling of the caption given the image;
* VQA: language modelling of the answer given the image-grounded question ([ENC] first);
* retrieval: image-text contrast (ITC, temperature 0.07, with two decoys per image: a colour-and-shape
  pairing false of it and its caption with one shape moved) and image-text matching (ITM) with hard
  negatives (six captions per image with one attribute changed or swapped between shapes, and the most
  similar wrong caption in the batch); the matcher's copy of the tower trains its last two layers, for
  the contrast only, and the match threshold is calibrated afterwards (``calibrate_match``).

The matcher and the VQA question encoder also get an attention-grounding loss (``grounding_loss``):
each word naming or placing a shape should attend to that shape's patches, so that their heatmaps
(cross-attention and Grad-CAM) land on the shape a word is about.

Speed: the full-vocabulary softmax would dominate a CPU step, so losses are computed over the few
dozen token ids the world uses; the saved LM-head bias of every other id is set very low (and their
never-trained embedding rows to zero), which keeps the checkpoint a standard full-vocabulary one. Task
batches are freshly rendered; pretraining shows each scene REUSE times, turned or flipped, because
drawing a scene costs about as much as the tower's step on it. The captioner's vision tower
and text stack initialise the other two, and the matcher's text encoder the VQA question encoder. Everything is
seeded; the learning rate warms up and decays linearly to zero.
Run it alone: two PyTorch processes on two cores slow each other down many times over.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shapes_world as shapes  # noqa: E402

from blip.loading.preprocess import IMAGE_MEAN, IMAGE_STD, preprocess  # noqa: E402
from blip.loading.tokenizer import DEC_ID, ENC_ID, SEP_ID, BlipTokenizer  # noqa: E402
from blip.model import CaptionModel, QuestionAnsweringModel, RetrievalModel  # noqa: E402
from blip.model.config import config_from_dict  # noqa: E402

OUT = ROOT / "assets" / "demo"
WIDTH, LAYERS_V, LAYERS_T, HEADS, PATCH = 112, 4, 3, 4, 16
# The vision tower's MLP width. Half as wide made a tower step 12% cheaper, but the tower then read
# shapes worse even with more steps (retrain 11 in assets/demo/README.md: 92.0% at 52,000 steps).
MLP_V = 4 * WIDTH
# Steps per model. The tower's shape reading is what limits every shape bar: at 29,000 steps it reads
# 91.5% of held-out shapes (17 of 23 bars met), at 58,000 94.5-96.5% (all met); they take about 30 minutes.
# The matcher's 2,100 steps (from 1,800) are for ITM: on the EMA tower, with the moved-shape decoys, 1,800
# steps ranked true captions above hard negatives 94.4% of the time, 2,100 steps 97.9%, 2,400 steps 98.4%.
STEPS = {"vision": 58000, "caption": 2400, "vqa": 1500, "retrieval": 2100}
# Scenes per pretraining step: per step the tower learns about as fast with 16 as with 32, at 60% of the
# cost. Late in training a small batch's noise held it back (world read-out 93.5% against 96.5% at step
# 52,000); the tower that is kept is an exponential moving average of its weights, which averages that
# noise out (a time constant of 1 / (1 - TOWER_EMA) = 2,000 steps; 91.0% against 89.5% at step 28,000).
VISION_BATCH = 16
TOWER_EMA = 0.9995
CURRICULUM = (0.15, 0.3)  # fractions of the vision steps that end the first and second stages
REUSE = 8  # each pretraining scene is seen this many times, under symmetries of the square
# Small and outlined shapes are where the tower's shape reading fails; in the whole world, only this share
# of the scenes whose shapes are all large and filled is kept for pretraining.
EASY_KEEP = 0.7
# Grammar hard negatives per image in each matcher step (besides the most similar wrong text in the batch).
HARD_NEGATIVES = 6
DECOYS = 1  # colour-and-shape texts false of each image, contrasted with it (ITC only)
# The captioner trains the tower's last layers too (shape words 93.5% -> 94.8%, VQA shape 93.7% -> 95.7% on
# the same tower); the matcher and VQA start from its tower.
CAPTION_TUNED_LAYERS = 2
TUNED_LAYERS = 2  # the matcher's own copy of the tower trains its last layers (the others stay frozen)
FAR_BELOW = -1.0e4  # saved LM-head bias of ids the world never uses
ARCHITECTURES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
}


def demo_config(task: str) -> dict:
    """A Hub-style config.json for the demo models (vision and text equally wide: VQA needs it)."""
    return {
        "architectures": [ARCHITECTURES[task]],
        "model_type": "blip",
        "image_text_hidden_size": 128,
        "projection_dim": 512,
        "text_config": {
            "model_type": "blip_text_model",
            "vocab_size": 30524,
            "hidden_size": WIDTH,
            "encoder_hidden_size": WIDTH,
            "intermediate_size": 4 * WIDTH,
            "num_hidden_layers": LAYERS_T,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 64,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "bos_token_id": DEC_ID,
            "sep_token_id": SEP_ID,
            "pad_token_id": 0,
            "eos_token_id": 2,
            "is_decoder": True,
            "use_cache": True,
        },
        "vision_config": {
            "model_type": "blip_vision_model",
            "hidden_size": WIDTH,
            "intermediate_size": MLP_V,
            "num_hidden_layers": LAYERS_V,
            "num_attention_heads": HEADS,
            "image_size": shapes.IMAGE_SIZE,
            "patch_size": PATCH,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
    }


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """BERT/ViT-style initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def _sincos_positions(grid: int, width: int) -> torch.Tensor:
    """(grid * grid, width) 2-D sine-cosine position codes: half the channels code the row, half the
    column, so that nearby patches have similar codes."""
    quarter = width // 4
    freqs = 1.0 / (grid ** (torch.arange(quarter) / quarter))  # from one cycle per patch to ~1 per grid
    place = torch.arange(grid, dtype=torch.float32)[:, None] * freqs[None] * torch.pi / 2
    axis = torch.cat([place.sin(), place.cos()], dim=1)  # (grid, width / 2)
    rows = axis[:, None, :].expand(grid, grid, -1)
    cols = axis[None, :, :].expand(grid, grid, -1)
    codes = torch.cat([rows, cols], dim=-1).reshape(grid * grid, -1)
    return F.pad(codes, (0, width - codes.shape[1]))


def mimetic_init(tower: torch.nn.Module, seed: int, qk: float = 0.7, vo: float = 0.4) -> None:
    """Start self-attention the way trained ViTs look (Trockman & Kolter, "Mimetic initialization of
    self-attention layers", 2023): each head's query-key product near the identity plus noise, so a
    token attends to tokens like itself, and the value-output product near minus the identity; with
    sine-cosine positions, "like itself" starts as "near itself", a convolution's locality."""
    gen = torch.Generator().manual_seed(seed)
    embeddings = tower.embeddings
    width = embeddings.position_embedding.shape[-1]
    grid = round((embeddings.position_embedding.shape[1] - 1) ** 0.5)
    eye = torch.eye(width)

    def factor(target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        u, s, vt = torch.linalg.svd(target)
        root = s[:rank].sqrt()
        return (u[:, :rank] * root).T, (vt[:rank].T * root).T  # (rank, width) each: left.T @ right ~ target

    with torch.no_grad():
        embeddings.position_embedding[0, 1:] = _sincos_positions(grid, width)
        for layer in tower.encoder.layers:
            attention = layer.self_attn
            heads = attention.num_heads
            size = width // heads
            weight = attention.qkv.weight  # rows: queries, keys, values
            for h in range(heads):
                noise = torch.randn(width, width, generator=gen) / width**0.5
                query, key = factor(qk * noise + qk * eye, size)
                weight[h * size : (h + 1) * size] = query
                weight[width + h * size : width + (h + 1) * size] = key
            noise = torch.randn(width, width, generator=gen) / width**0.5
            out, value = factor(vo * noise - vo * eye, width)
            weight[2 * width :] = value
            attention.projection.weight.copy_(out.T)


def tie_lm_head(model) -> None:
    decoder = model.text_decoder
    decoder.cls.predictions.decoder.weight = decoder.bert.embeddings.word_embeddings.weight


class SceneStream:
    """Fresh scenes for every batch (an endless, seeded supply: the models never see a scene twice,
    which generalises far better than a fixed set), with tokenisation and pixel normalisation."""

    def __init__(self, seed: int, tokenizer: BlipTokenizer, two_shape_share: float = 0.5):
        self.rng = np.random.default_rng(seed)
        self.two_shape_share = two_shape_share
        self.tokenizer = tokenizer
        self.stage = shapes.FULL
        self.easy_keep = 1.0  # below 1, scenes with only large filled shapes are drawn less often

    def _scene(self, count: int) -> shapes.Scene:
        while True:
            scene = shapes.make_scene(self.rng, count, self.stage)
            hard = any(s.size == "small" or s.style != "filled" for s in scene.shapes)
            if hard or self.easy_keep >= 1.0 or self.rng.random() < self.easy_keep:
                return scene

    def batch(self, size: int) -> tuple[list[shapes.Scene], torch.Tensor]:
        counts = 1 + (self.rng.random(size) < self.two_shape_share)
        scenes = [self._scene(int(n)) for n in counts]
        # Canvases come in many sizes: the engine's own preprocessing resizes them to the model's input.
        return scenes, preprocess([s.image for s in scenes], shapes.IMAGE_SIZE)

    def encode(self, texts: list[str], first: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.encode_batch(texts)
        if first is not None:
            ids[:, 0] = first
        return ids, mask


def used_ids(tokenizer: BlipTokenizer) -> torch.Tensor:
    words = sorted(shapes.all_words())
    ids = {SEP_ID}
    for word in words:
        ids.update(tokenizer.encode(word)[1:-1])
    return torch.tensor(sorted(ids))


def lm_loss(decoder, ids, mask, states, used: torch.Tensor, remap: torch.Tensor) -> torch.Tensor:
    """Teacher-forced language-modelling loss over the world's token ids only."""
    out = decoder.bert(ids, attention_mask=mask, encoder_states=states, causal=True)
    hidden = decoder.cls.predictions.transform(out.hidden_states[:, :-1])
    targets, valid = ids[:, 1:], mask[:, 1:].bool()
    head = decoder.cls.predictions.decoder
    logits = hidden[valid] @ head.weight[used].T + head.bias[used]
    return F.cross_entropy(logits, remap[targets[valid]])


# Words that name or place a shape; each is grounded to its own shape's box (see grounding_loss).
_PLACE_WORDS = frozenset(w for p in shapes.POSITION_PHRASES.values() for w in p.split()[2:])
_ATTRIBUTE_WORDS = frozenset([*shapes.SHAPES, *shapes.COLOURS, *shapes.SIZES, *_PLACE_WORDS])
GROUNDING_WEIGHT = 0.3
SILHOUETTE_WEIGHT = 1.0
KIND_WEIGHT = 3.0  # shape kind is by far the slowest read-out to learn; colour, size and cell come fast


def patch_mask(box: shapes.Box, canvas: tuple[int, int]) -> torch.Tensor:
    """(patches,) 1 where a patch of the 8 x 8 grid overlaps ``box`` (x0, y0, x1, y1, end-exclusive, in
    pixels of a ``canvas`` (width, height) image, which the model sees squeezed to a square)."""
    cells = shapes.IMAGE_SIZE // PATCH
    x0, y0, x1, y1 = box
    width, height = canvas
    cols = torch.tensor([(c * width < x1 * cells) and ((c + 1) * width > x0 * cells) for c in range(cells)])
    rows = torch.tensor([(r * height < y1 * cells) and ((r + 1) * height > y0 * cells) for r in range(cells)])
    return (rows[:, None] & cols[None, :]).flatten().float()


def grounded_words(scene: shapes.Scene, text: str) -> list[tuple[int, shapes.Box]]:
    """(token position, box) for each word of ``text`` that belongs to one shape of ``scene``.

    In the caption, a shape's size, colour, kind and position words belong to it; in a question the
    named kind ("what colour is the circle?") or the words of the named place ("what shape is at the
    top left?") do; in a one-shape scene every attribute word does. Every grammar word is one token,
    after [CLS]/[ENC].
    """
    words = text.replace("?", " ?").split()  # every grammar word is one WordPiece
    ordered = shapes.canonical_order(scene.shapes)
    found = []
    if text == scene.caption:  # mentions are joined by "and", in canonical order
        mention = 0
        for i, word in enumerate(words):
            if word == "and":
                mention += 1
            elif word in _ATTRIBUTE_WORDS:
                found.append((1 + i, ordered[mention].box))
        return found
    if len(ordered) == 1:
        return [(1 + i, ordered[0].box) for i, w in enumerate(words) if w in _ATTRIBUTE_WORDS]
    kinds = [s.kind for s in ordered]
    for shape in ordered:
        if text.endswith(f" {shapes.POSITION_PHRASES[shape.position]}?"):
            tail = len(shapes.POSITION_PHRASES[shape.position].split()) + 1  # the phrase and "?"
            start = len(words) - tail
            found += [(1 + start + j, shape.box) for j, w in enumerate(words[start:-1]) if w in _PLACE_WORDS]
    for i, word in enumerate(words):
        if word in kinds and kinds.count(word) == 1:
            found.append((1 + i, ordered[kinds.index(word)].box))
    return found


def grounding_loss(cross_attentions, scenes: list[shapes.Scene], texts: list[str]) -> torch.Tensor:
    """Attention supervision: each grounded word's cross-attention (mean over heads) should fall on its
    shape. -log(attention mass inside the shape's patches), averaged over words and layers. This is
    what makes the demo's heatmaps land on the right shape in two-shape scenes: without it the matcher
    scored captions right while its words' maps wandered (ITM Grad-CAM pointing 43%)."""
    rows, positions, masks = [], [], []
    for b, (scene, text) in enumerate(zip(scenes, texts, strict=True)):
        for position, box in grounded_words(scene, text):
            rows.append(b)
            positions.append(position)
            masks.append(patch_mask(box, scene.image.size))
    if not rows:
        return torch.zeros(())
    rows_t, positions_t, mask = torch.tensor(rows), torch.tensor(positions), torch.stack(masks)
    losses = []
    for att in cross_attentions:  # (B, heads, T, 1 + patches)
        mean = att.mean(dim=1)[rows_t, positions_t, 1:]  # (words, patches)
        losses.append(-torch.log((mean * mask).sum(dim=1) + 1e-6).mean())
    return torch.stack(losses).mean()


def schedule(step: int, total: int, peak: float, warmup: int = 200) -> float:
    return peak * min(1.0, (step + 1) / warmup) * max(0.0, 1 - step / total)


def _step(
    opt: torch.optim.Optimizer, loss: torch.Tensor, model: torch.nn.Module, smoothed: float | None
) -> float:
    """One clipped optimiser step; returns the loss's running average for the log."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()


def train(
    name: str, model, steps: int, batch: int, lr: float, seed: int, loss_fn, two_shape_share: float = 0.5
) -> None:
    trained = [p for p in model.parameters() if p.requires_grad]  # a frozen vision tower stays out
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=0.01, fused=True)  # fused: 5x faster step
    gen = torch.Generator().manual_seed(seed)
    stream = SceneStream(seed, BlipTokenizer.default(), two_shape_share)
    model.train()
    start, smoothed = time.time(), None
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = schedule(step, steps, lr)
        scenes, pixels = stream.batch(batch)
        loss = loss_fn(model, stream, scenes, pixels, gen)
        smoothed = _step(opt, loss, model, smoothed)
        if step % 100 == 0 or step == steps - 1:
            print(
                f"[{name}] step {step:5d}/{steps}  loss {smoothed:.4f}  {time.time() - start:6.0f}s",
                flush=True,
            )
    model.eval()


class PatchHeads(torch.nn.Module):
    """Linear read-outs of the vision tower's tokens, used only while training (never saved): each
    patch says which shape kind, colour, size and 3 x 3 cell it belongs to (or background), and the
    [CLS] token how many shapes there are and which kinds and colours are present (the matcher's
    image feature is read from it). Supervising every patch directly teaches the tiny ViT to see
    shapes many times faster than the captions' few words can."""

    def __init__(self, width: int):
        super().__init__()
        self.kind = torch.nn.Linear(width, 1 + len(shapes.SHAPES))
        self.colour = torch.nn.Linear(width, 1 + len(shapes.COLOURS))
        self.size = torch.nn.Linear(width, 1 + len(shapes.SIZES))
        self.cell = torch.nn.Linear(width, 1 + len(shapes.POSITIONS))
        self.count = torch.nn.Linear(width, len(shapes.NUM_SHAPES))
        self.present = torch.nn.Linear(width, len(shapes.SHAPES) + len(shapes.COLOURS))
        self.silhouette = torch.nn.Linear(width, PATCH * PATCH)


def patch_labels(scenes: list[shapes.Scene]) -> dict[str, torch.Tensor]:
    """(B, patches) labels for PatchHeads: 0 for background, else 1 + the index of the attribute of the
    shape whose box holds the patch's centre (the box centre's patch when none does), and (B,) counts."""
    grid = shapes.IMAGE_SIZE // PATCH
    names = {"kind": shapes.SHAPES, "colour": list(shapes.COLOURS), "size": list(shapes.SIZES)}
    labels = {key: torch.zeros(len(scenes), grid * grid, dtype=torch.long) for key in [*names, "cell"]}
    for b, scene in enumerate(scenes):
        width, height = scene.image.size
        for shape in scene.shapes:
            x0, y0, x1, y1 = shape.box
            gx0, gx1, gy0, gy1 = x0 * grid / width, x1 * grid / width, y0 * grid / height, y1 * grid / height
            cols = [c for c in range(grid) if gx0 <= c + 0.5 < gx1] or [min(int((gx0 + gx1) / 2), grid - 1)]
            rows = [r for r in range(grid) if gy0 <= r + 0.5 < gy1] or [min(int((gy0 + gy1) / 2), grid - 1)]
            index = torch.tensor([r * grid + c for r in rows for c in cols])
            for key, values in names.items():
                labels[key][b, index] = 1 + list(values).index(getattr(shape, key))
            labels["cell"][b, index] = 1 + list(shapes.POSITIONS).index(shape.position)
    labels["count"] = torch.tensor([len(s.shapes) - 1 for s in scenes])
    return labels


def vision_targets(scenes: list[shapes.Scene]) -> dict[str, torch.Tensor]:
    """Everything PatchHeads learn from, as tensors that a symmetry of the square can move: (B, grid,
    grid) kind, colour, size and cell labels, (B,) counts, and (B, 1, side, side) shape coverage at the
    model's input size (the picture's own squeeze to a square)."""
    grid, side = shapes.IMAGE_SIZE // PATCH, shapes.IMAGE_SIZE
    labels = patch_labels(scenes)
    targets = {key: labels[key].view(-1, grid, grid) for key in ("kind", "colour", "size", "cell")}
    targets["count"] = labels["count"]
    names = [*shapes.SHAPES, *shapes.COLOURS]
    targets["present"] = torch.tensor(
        [[float(any(name in (p.kind, p.colour) for p in s.shapes)) for name in names] for s in scenes]
    )
    targets["coverage"] = torch.cat(
        [
            F.interpolate(torch.from_numpy(s.coverage)[None, None], size=(side, side), mode="area")
            for s in scenes
        ]
    )
    return targets


def _square_symmetry(image: torch.Tensor, symmetry: int) -> torch.Tensor:
    """One of the eight symmetries of the square (0 is none) applied to the last two dimensions."""
    if symmetry & 4:
        image = image.transpose(-1, -2)
    if symmetry & 1:
        image = image.flip(-1)
    if symmetry & 2:
        image = image.flip(-2)
    return image


def _cell_moves(symmetry: int) -> torch.Tensor:
    """Lookup from a cell label (0 background, 1 + reading-order cell) to the label after ``symmetry``."""
    ids = torch.arange(9).view(3, 3)
    moved = _square_symmetry(ids, symmetry).flatten()  # moved[new place] = the cell that lands there
    table = torch.zeros(10, dtype=torch.long)
    table[1 + moved] = 1 + torch.arange(9)
    return table


@functools.cache
def _cell_tables() -> torch.Tensor:
    """(8, 10): ``_cell_moves`` of every symmetry, built once."""
    return torch.stack([_cell_moves(symmetry) for symmetry in range(8)])


_MOVING = ("kind", "colour", "size", "cell", "coverage")  # the targets a symmetry moves (besides pixels)


@functools.cache
def _symmetry_sources(side: int) -> torch.Tensor:
    """(8, side * side): for each symmetry of the square, the flat index each place takes its value from."""
    places = torch.arange(side * side).view(side, side)
    return torch.stack([_square_symmetry(places, symmetry).flatten() for symmetry in range(8)])


def _moved(image: torch.Tensor, symmetries: torch.Tensor) -> torch.Tensor:
    """Each (..., side, side) image of the batch under its own symmetry, as one gather."""
    flat = image.flatten(-2)  # (B, [channels,] side * side)
    sources = _symmetry_sources(image.shape[-1])[symmetries]  # (B, side * side)
    if flat.dim() == 3:
        sources = sources[:, None].expand(-1, flat.shape[1], -1)
    return flat.gather(-1, sources).view(image.shape)


def transform_views(pixels: torch.Tensor, targets: dict[str, torch.Tensor], symmetries: torch.Tensor):
    """Each scene's pixels and targets under its own symmetry of the square. A shape's kind, colour, size
    and count do not change under a flip or a quarter turn (the world draws every shape at any
    rotation); its 3 x 3 cell moves with the picture."""
    out = dict(targets)  # count and presence stay as they are
    for key in _MOVING:
        out[key] = _moved(targets[key], symmetries)
    out["cell"] = _cell_tables()[symmetries[:, None, None], out["cell"]]
    return _moved(pixels, symmetries), out


class ReplayStream:
    """Vision pretraining batches: ``1 / reuse`` of each batch is fresh scenes, the rest are recent ones
    seen again under a random symmetry of the square. Drawing scenes costs about as much CPU as the
    tower's training step, so seeing each a few times, moved, nearly halves the step."""

    def __init__(self, stream: SceneStream, reuse: int = 4, capacity: int = 2048, seed: int = 0):
        self.stream, self.reuse, self.capacity = stream, reuse, capacity
        self.gen = torch.Generator().manual_seed(seed)
        self.pool: dict[str, torch.Tensor] = {}  # a ring of recent scenes' pixels and targets
        self.filled = self.next = 0

    def _keep(self, items: dict[str, torch.Tensor]) -> torch.Tensor:
        """Write ``items`` into the ring; returns the rows they went to."""
        count = len(items["pixels"])
        if not self.pool:
            self.pool = {k: v.new_zeros((self.capacity, *v.shape[1:])) for k, v in items.items()}
        at = (self.next + torch.arange(count)) % self.capacity
        for key, value in items.items():
            self.pool[key][at] = value
        self.next = (self.next + count) % self.capacity
        self.filled = min(self.capacity, self.filled + count)
        return at

    def batch(self, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scenes, pixels = self.stream.batch(max(1, size // self.reuse))
        fresh = {"pixels": pixels, **vision_targets(scenes)}
        at = self._keep(fresh)
        old = torch.randint(self.filled, (size - len(pixels),), generator=self.gen)
        rows = torch.cat([at, old])  # the fresh scenes, just kept, and the old ones: one gather each
        both = {k: self.pool[k][rows] for k in fresh}
        pixels = both.pop("pixels")
        return transform_views(pixels, both, torch.randint(8, (size,), generator=self.gen))


def patch_loss(heads: PatchHeads, states: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every read-out against ``vision_targets`` (patch labels flattened to the
    tower's token order)."""
    patches = states[:, 1:]
    labels = {key: targets[key].flatten(1) for key in ("kind", "colour", "size", "cell")}
    inside = labels["kind"] > 0
    loss = F.cross_entropy(heads.count(states[:, 0]), targets["count"])
    loss = loss + F.binary_cross_entropy_with_logits(heads.present(states[:, 0]), targets["present"])
    loss = loss + F.binary_cross_entropy_with_logits(heads.kind(patches)[..., 0], inside.float())
    # Silhouettes: a dense, colour-blind target that makes the patch embedding encode outline geometry.
    silhouettes = F.unfold(targets["coverage"], PATCH, stride=PATCH).transpose(1, 2)
    loss = loss + SILHOUETTE_WEIGHT * F.binary_cross_entropy_with_logits(
        heads.silhouette(patches), silhouettes
    )
    # Attributes are learned on the shapes' own patches only: over every patch, telling background
    # apart would swamp the much harder question of which shape it is.
    for key in ("kind", "colour", "size", "cell"):
        logits = getattr(heads, key)(patches[inside])[:, 1:]
        weight = KIND_WEIGHT if key == "kind" else 1.0
        loss = loss + weight * F.cross_entropy(logits, labels[key][inside] - 1)
    return loss


def kind_hits(tower: torch.nn.Module, heads: PatchHeads, scenes: list[shapes.Scene]) -> list[bool]:
    """For each one-shape scene: does the kind read-out, averaged over its shape's patches, name it?"""
    with torch.no_grad():
        tokens = tower(preprocess([s.image for s in scenes], shapes.IMAGE_SIZE))[:, 1:]
        logits = heads.kind(tokens)[..., 1:]
        inside = patch_labels(scenes)["kind"] > 0
        return [
            shapes.SHAPES[int(logits[b][inside[b]].mean(0).argmax())] == scene.shapes[0].kind
            for b, scene in enumerate(scenes)
        ]


class WithHeads(torch.nn.Module):
    """A task model and the patch heads trained beside it (so that one optimiser holds both)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.heads = PatchHeads(WIDTH)


def vision_loss():
    def fn(wrapped, stream, scenes, pixels, gen):
        return patch_loss(wrapped.heads, wrapped.model.encode_image(pixels), vision_targets(scenes))

    return fn


def caption_loss(used, remap):
    def fn(model, stream, scenes, pixels, gen):
        ids, mask = stream.encode([s.caption for s in scenes], DEC_ID)
        return lm_loss(model.text_decoder, ids, mask, model.encode_image(pixels), used, remap)

    return fn


def vqa_loss(used, remap):
    def fn(model, stream, scenes, pixels, gen):
        questions, answers = [], []
        for scene in scenes:
            pairs = [qa for qas in scene.questions.values() for qa in qas]
            q, a = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
            questions.append(q)
            answers.append(a)
        q_ids, q_mask = stream.encode(questions, ENC_ID)
        a_ids, a_mask = stream.encode(answers, DEC_ID)
        encoded = model.encode_question(model.encode_image(pixels), q_ids, q_mask, output_attentions=True)
        grounding = grounding_loss(encoded.cross_attentions, scenes, questions)
        lm = lm_loss(model.text_decoder, a_ids, a_mask, encoded.hidden_states, used, remap)
        return lm + GROUNDING_WEIGHT * grounding

    return fn


# Zero-shot prompts the demo supports: "a {shape}" and "a {colour} shape" (see assets/demo/README.md).
def partial_texts(shape: shapes.ShapeSpec) -> list[str]:
    """Short descriptions of one shape (so that short zero-shot prompts are in the training distribution)."""
    return [
        f"a {shape.kind}",
        f"a {shape.colour} shape",
        f"a {shape.colour} {shape.kind}",
        f"a {shape.size} {shape.colour} {shape.kind}",
    ]


def true_texts(scene: shapes.Scene) -> set[str]:
    """Texts true of the scene: its caption and the short descriptions of each of its shapes ("a circle"
    is true of a circle next to a star too: as a negative it would teach the contrast a falsehood)."""
    return {scene.caption, *(t for s in scene.shapes for t in partial_texts(s))}


def describe(scene: shapes.Scene, gen: torch.Generator) -> str:
    """Usually the caption; for one-shape scenes, half the time one of the short descriptions (the
    shape's name alone as often as the other three together: it is the hardest zero-shot prompt); for
    two-shape scenes, a quarter of the time a short description of one of the shapes (a search for "a
    red circle" must find it beside a blue star too, and not find a red star beside a blue circle)."""
    share = 0.5 if len(scene.shapes) == 1 else 0.25
    if float(torch.rand((), generator=gen)) >= share:
        return scene.caption
    shape = scene.shapes[int(torch.randint(len(scene.shapes), (1,), generator=gen))]
    options = partial_texts(shape)
    if float(torch.rand((), generator=gen)) < 0.5:
        return options[0]
    return options[1 + int(torch.randint(len(options) - 1, (1,), generator=gen))]


def binding_negatives(scene: shapes.Scene) -> list[str]:
    """Two-shape captions with one attribute swapped between the shapes (kinds, colours or sizes): every
    word is right but bound to the wrong shape. Telling these apart makes each word of the matcher look
    at its own shape, which is what its Grad-CAM maps show."""
    if len(scene.shapes) != 2:
        return []
    first, second = scene.shapes
    found = []
    for attribute in ("kind", "colour", "size"):
        a, b = getattr(first, attribute), getattr(second, attribute)
        if a != b:
            swapped = [replace(first, **{attribute: b}), replace(second, **{attribute: a})]
            found.append(shapes.caption_for(swapped))
    return found


def one_shape_changed(scene: shapes.Scene, gen: torch.Generator) -> str:
    """The caption with one shape's kind or colour changed: in a two-shape caption the hardest negative
    (the other shape's words still match), and the one a matcher that skims misses."""
    index = int(torch.randint(len(scene.shapes), (1,), generator=gen))
    shape = scene.shapes[index]
    attribute = ("kind", "colour")[int(torch.randint(2, (1,), generator=gen))]
    values = [
        v
        for v in (shapes.SHAPES if attribute == "kind" else shapes.COLOURS)
        if v != getattr(shape, attribute)
    ]
    changed = list(scene.shapes)
    changed[index] = replace(
        shape, **{attribute: values[int(torch.randint(len(values), (1,), generator=gen))]}
    )
    return shapes.caption_for(changed)


def hard_negative(scene: shapes.Scene, gen: torch.Generator) -> str:
    """A grammar hard negative; for two-shape scenes, a third of the time a binding swap and a third of
    the time one shape's kind or colour changed."""
    swaps = binding_negatives(scene)
    draw = float(torch.rand((), generator=gen))
    if swaps and draw < 1 / 3:
        return swaps[int(torch.randint(len(swaps), (1,), generator=gen))]
    if len(scene.shapes) > 1 and draw < 2 / 3:
        return one_shape_changed(scene, gen)
    return scene.negatives[int(torch.randint(len(scene.negatives), (1,), generator=gen))]


def false_pairing(scene: shapes.Scene, gen: torch.Generator) -> str:
    """A short description "a {colour} {kind}" false of the scene, made of a colour and a kind that both
    occur in it where it can be (beside a blue square, a yellow star makes "a blue star" a decoy), else
    sharing one of them with a shape of it."""
    present = {(s.colour, s.kind) for s in scene.shapes}
    colours, kinds = {c for c, _ in present}, {k for _, k in present}
    pairs = sorted((c, k) for c in colours for k in kinds if (c, k) not in present)
    if not pairs:
        pairs = sorted(
            (c, k)
            for c in shapes.COLOURS
            for k in shapes.SHAPES
            if (c, k) not in present and (c in colours or k in kinds)
        )
    colour, kind = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
    return f"a {colour} {kind}"


def moved_shape(scene: shapes.Scene, gen: torch.Generator) -> str:
    """The caption with one shape moved to a cell no shape holds: the near miss that contrast alone
    confuses most ("at the top" against "at the top right")."""
    index = int(torch.randint(len(scene.shapes), (1,), generator=gen))
    free = [p for p in shapes.POSITIONS if p not in {s.position for s in scene.shapes}]
    changed = list(scene.shapes)
    changed[index] = replace(
        changed[index], position=free[int(torch.randint(len(free), (1,), generator=gen))]
    )
    return shapes.caption_for(changed)


def hard_negatives(scene: shapes.Scene, gen: torch.Generator, count: int) -> list[str]:
    """``count`` distinct hard negatives (fewer only if a scene has fewer), every other one drawn from
    all of the scene's one-attribute changes (so that moved shapes are as common as in the grammar): a
    matcher that sees several per image must weigh every word of a two-shape caption."""
    found: list[str] = []
    for attempt in range(8 * count):
        if attempt % 2:
            text = scene.negatives[int(torch.randint(len(scene.negatives), (1,), generator=gen))]
        else:
            text = hard_negative(scene, gen)
        if text not in found:
            found.append(text)
            if len(found) == count:
                break
    return found


def multi_positive_contrast(sim: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """BLIP's contrast both ways, where every text true of an image is one of its positives (each image
    needs one) and a text true of no image in the batch (a decoy) is only a negative."""
    images = -(F.log_softmax(sim, 1) * same / same.sum(1, keepdim=True)).sum(1).mean()
    owned = same.sum(0) > 0
    of_text = same.T[owned]
    texts = -(F.log_softmax(sim.T[owned], 1) * of_text / of_text.sum(1, keepdim=True)).sum(1).mean()
    return images + texts


def retrieval_loss(temperature: float = 0.07, negatives_per_image: int = HARD_NEGATIVES):
    def fn(model, stream, scenes, pixels, gen):
        # Positive texts: mostly the caption, sometimes a partial description (for zero-shot prompts).
        texts = [describe(s, gen) for s in scenes]
        # Every one-shape scene also brings its bare shape name ("a circle"), the hardest zero-shot
        # prompt, so that each step contrasts it with the other names in the batch (ITC only).
        names = [f"a {s.shapes[0].kind}" for s in scenes if len(s.shapes) == 1]
        # And decoys false of each scene (negatives only, unless true of another image): a colour-and-
        # shape pairing, since the search "a blue star" must not find a yellow star beside a blue square,
        # and the caption with one shape moved (without it, retrain 9's matcher put a caption that
        # differs only in place above the true one for 1 picture in 10: ITC 90.0%, with it 94.5%).
        decoys = [false_pairing(s, gen) for s in scenes for _ in range(DECOYS)]
        decoys += [moved_shape(s, gen) for s in scenes]
        itc_texts = texts + names + decoys
        image_embeds = model.encode_image(pixels)
        ids, mask = stream.encode(itc_texts)
        image_feat = model.image_features(image_embeds)
        text_feat = model.text_features(ids, mask)
        sim_all = image_feat @ text_feat.T / temperature  # (images, texts + names)
        truths = [true_texts(s) for s in scenes]
        same_all = torch.tensor([[t in truth for t in itc_texts] for truth in truths], dtype=torch.float32)
        itc = multi_positive_contrast(sim_all, same_all)
        sim, same = sim_all[:, : len(texts)], same_all[:, : len(texts)]
        # ITM: positives, grammar hard negatives, and the most similar wrong text in the batch.
        hard = [hard_negatives(s, gen, negatives_per_image) for s in scenes]
        with torch.no_grad():
            scores = sim.masked_fill(same.bool(), float("-inf"))
            mined = [texts[j] for j in scores.argmax(dim=1).tolist()]
        negatives = [t for texts_of in hard for t in texts_of] + mined
        owners = [b for b, texts_of in enumerate(hard) for _ in texts_of] + list(range(len(scenes)))
        itm_ids, itm_mask = stream.encode(texts + negatives, ENC_ID)
        pairs_of = torch.tensor(list(range(len(texts))) + owners)  # the image each ITM text is paired with
        # The match head reads the tower's tokens without training them, so that the contrast alone
        # tunes the tower's last layers: on retrain 9's tower about as good a matcher (ITM 96.9% against
        # 97.9%, ITC 95.0% against 96.0%, search the same), with steps 11% faster (27.7 against 31.2 s
        # per 100 steps).
        logits, out = model.itm_logits(
            image_embeds.detach()[pairs_of], itm_ids, itm_mask, output_attentions=True
        )
        labels = torch.tensor([1] * len(texts) + [0] * len(negatives))
        positives = [att[: len(texts)] for att in out.cross_attentions]  # ground true texts only
        grounding = grounding_loss(positives, scenes, texts)
        # Several negatives per positive: weight the classes to balance, so that a true text scores a
        # match probability above one half, not just above its negatives.
        balanced = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, len(negatives) / len(texts)]))
        return itc + balanced + GROUNDING_WEIGHT * grounding

    return fn


CALIBRATION_SEED = 31  # scenes for the match threshold: neither a training stream's seed nor a held-out one


def match_margins(model, tokenizer: BlipTokenizer, seed: int, count: int) -> tuple[list[float], list[float]]:
    """ITM logit margins (match minus no match) of each scene's true caption and of its grammar hard
    negatives, on ``count`` fresh scenes, half with one shape and half with two."""
    true_scores, false_scores = [], []
    model.eval()
    with torch.no_grad():
        for shapes_per_scene in shapes.NUM_SHAPES:
            for scene in shapes.scene_stream(seed + shapes_per_scene, count // 2, shapes_per_scene):
                texts = [scene.caption, *scene.negatives]
                ids, mask = tokenizer.encode_batch(texts)
                ids[:, 0] = ENC_ID
                image = model.encode_image(preprocess([scene.image], shapes.IMAGE_SIZE))
                logits, _ = model.itm_logits(image.expand(len(texts), -1, -1), ids, mask)
                margin = (logits[:, 1] - logits[:, 0]).tolist()
                true_scores.append(margin[0])
                false_scores += margin[1:]
    return true_scores, false_scores


def calibrate_match(model, tokenizer: BlipTokenizer, count: int = 200) -> float:
    """Move the ITM head's bias so that a match probability of one half is the equal-error point: as
    many true captions fall below it as grammar hard negatives rise above it, on fresh one- and two-shape
    scenes (``match_margins``). Training weighs several hard negatives against each positive, which
    leaves the head's own one half wherever the weighting put it (true two-shape captions scored a
    median 0.13 before). Returns the shift added to the match logit."""
    true_scores, false_scores = match_margins(model, tokenizer, CALIBRATION_SEED, count)
    true_sorted, false_sorted = np.sort(true_scores), np.sort(false_scores)
    candidates = np.concatenate([true_sorted, false_sorted])
    missed = np.searchsorted(true_sorted, candidates, side="right") / len(true_sorted)
    passed = 1 - np.searchsorted(false_sorted, candidates, side="right") / len(false_sorted)
    threshold = float(candidates[np.argmin(np.abs(missed - passed))])
    with torch.no_grad():
        model.itm_head.bias[1] -= threshold
    return -threshold


def pretrain_vision(tower: torch.nn.Module, steps: int, seed: int, lr: float = 1e-3) -> None:
    """Teach the vision tower to see the world before any text: PatchHeads read every patch's shape,
    colour, size and cell, on a curriculum (neat shapes on a plain ground, neat shapes on any ground,
    then the whole world; edges at CURRICULUM of the steps), with scenes seen again under symmetries
    of the square (ReplayStream). From captions alone the tiny ViT named colours but guessed shapes."""
    wrapped = WithHeads(tower)
    opt = torch.optim.AdamW(wrapped.parameters(), lr=lr, weight_decay=0.01, fused=True)
    averaged = AveragedModel(wrapped, multi_avg_fn=get_ema_multi_avg_fn(TOWER_EMA), use_buffers=False)
    averaged.eval()  # only ever read
    stream = SceneStream(seed, BlipTokenizer.default())
    replay = ReplayStream(stream, reuse=REUSE, seed=seed)
    import shapes_robust  # the robustness set, only to report on: never trained on

    held_out = {
        "world": list(shapes.scene_stream(4242, 200, num_shapes=1)),
        "robustness set": list(shapes_robust.robust_stream(shapes_robust.ROBUST_SEED, 200)),
    }

    def report(step: int) -> None:
        wrapped.eval()
        for label, seen in (("weights", wrapped), ("average", averaged.module)):
            parts = []
            for name, scenes in held_out.items():
                hits = np.array(kind_hits(seen.model, seen.heads, scenes))
                small = np.array([s.shapes[0].size == "small" for s in scenes])
                drawn = np.array([s.shapes[0].style != "filled" for s in scenes])
                parts.append(
                    f"{name} {hits.mean():.1%} (small {hits[small].mean():.0%}, outlined {hits[drawn].mean():.0%})"
                )
            print(
                f"[vision] step {step}, {label}: kind read-out on held-out one-shape scenes: {', '.join(parts)}",
                flush=True,
            )
        wrapped.train()

    wrapped.train()
    start, smoothed = time.time(), None
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = schedule(step, steps, lr)
        stream.stage = sum(step / steps >= edge for edge in CURRICULUM)
        stream.easy_keep = EASY_KEEP if stream.stage == shapes.FULL else 1.0
        pixels, targets = replay.batch(VISION_BATCH)
        loss = patch_loss(wrapped.heads, tower(pixels), targets)
        smoothed = _step(opt, loss, wrapped, smoothed)
        averaged.update_parameters(wrapped)
        if step % 500 == 0 or step == steps - 1:
            print(
                f"[vision] step {step:5d}/{steps}  stage {stream.stage}  loss {smoothed:.4f}  "
                f"{time.time() - start:6.0f}s",
                flush=True,
            )
        if (step + 1) % 4000 == 0:
            report(step + 1)
    report(steps)
    tower.load_state_dict(averaged.module.model.state_dict())
    tower.eval()


def tune_last_layers(tower: torch.nn.Module, count: int) -> None:
    """Let a frozen tower's last ``count`` layers (and its final LayerNorm) train with a task model."""
    for part in (*tower.encoder.layers[len(tower.encoder.layers) - count :], tower.post_layernorm):
        part.requires_grad_(True)


def freeze(module: torch.nn.Module) -> None:
    """Keep a pretrained vision tower as it is while a task model learns to read it (and skip its
    backward pass, which halves a task step)."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def save(model, task: str, directory: Path, used: torch.Tensor) -> None:
    """Write a Hub-layout checkpoint (transformers 5 tied layout), float16 on disk."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    unused = torch.ones(30524, dtype=torch.bool)
    unused[used] = False
    for key, value in state.items():
        if key.endswith("word_embeddings.weight"):
            value[unused] = 0.0  # rows the world never uses never trained: zeros say so (and pack small)
    if "text_decoder.cls.predictions.decoder.weight" in state:
        del state["text_decoder.cls.predictions.decoder.weight"]  # tied to the word embeddings
        bias = state.pop("text_decoder.cls.predictions.decoder.bias")
        bias[unused] = FAR_BELOW
        state["text_decoder.cls.predictions.bias"] = bias
    save_file({k: v.half().contiguous() for k, v in state.items()}, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(demo_config(task), indent=2) + "\n")
    preprocessor = {
        "image_processor_type": "BlipImageProcessor",
        "do_resize": True,
        "size": {"height": shapes.IMAGE_SIZE, "width": shapes.IMAGE_SIZE},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "do_convert_rgb": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    shutil.copy(ROOT / "blip" / "resources" / "tokenizer.json", directory / "tokenizer.json")


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the offline demo models on the shapes world.")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every step count (quick tries: 0.1)"
    )
    parser.add_argument(
        "--vision-steps",
        type=int,
        help=f"tower pretraining steps (default {STEPS['vision']}, before --scale)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--only",
        choices=[*ARCHITECTURES, "calibrate"],
        action="append",
        help="train only these (calibrate: only set the saved matcher's match threshold again)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (on an idle 2-core machine 2 are 1.7x faster than 1; on a busy one, try 1)",
    )
    args = parser.parse_args()
    # The math kernel beats the fused one on the demo models' short sequences (37 image tokens): about
    # 5% of a pretraining step.
    with sdpa_kernel(SDPBackend.MATH):
        train_all(args)


def train_all(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tokenizer = BlipTokenizer.default()
    used = used_ids(tokenizer)
    remap = torch.full((30524,), -100, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    print(f"world vocabulary: {len(used)} token ids", flush=True)
    start = time.time()
    tasks = args.only or list(ARCHITECTURES)
    chosen = {**STEPS, "vision": args.vision_steps or STEPS["vision"]}
    steps = {k: max(10, int(v * args.scale)) for k, v in chosen.items()}

    captioner = CaptionModel(config_from_dict(demo_config("caption")))
    init_weights(captioner, seed=1)
    tie_lm_head(captioner)
    if "caption" in tasks:
        mimetic_init(captioner.vision_model, seed=1)
        pretrain_vision(captioner.vision_model, steps["vision"], seed=4)
        freeze(captioner.vision_model)
        tune_last_layers(captioner.vision_model, CAPTION_TUNED_LAYERS)
        train("caption", captioner, steps["caption"], 32, 1e-3, 1, caption_loss(used, remap))
        save(captioner, "caption", args.out / "caption", used)
    # The others start from the saved (float16) captioner, so that a run with --only gives the same
    # models as the full run.
    captioner.load_state_dict(_load(args.out / "caption"), strict=False)
    vision = captioner.vision_model.state_dict()
    decoder = captioner.text_decoder.state_dict()
    bert = captioner.text_decoder.bert.state_dict()

    if "retrieval" in tasks:
        model = RetrievalModel(config_from_dict(demo_config("retrieval")))
        init_weights(model, seed=3)
        model.vision_model.load_state_dict(vision)
        freeze(model.vision_model)
        # The frozen tower's first token knows which kinds and colours are present, not which goes with
        # which; its last layers learn that here, so that the contrast can find "a blue star" and not a
        # yellow star beside a blue square.
        tune_last_layers(model.vision_model, TUNED_LAYERS)
        model.text_encoder.load_state_dict(bert)
        train("retrieval", model, steps["retrieval"], 32, 5e-4, 3, retrieval_loss())
        save(model, "retrieval", args.out / "retrieval", used)
    # Calibrated on the saved (float16) weights, so that --only calibrate does what a full run does.
    if "retrieval" in tasks or "calibrate" in tasks:
        model = RetrievalModel(config_from_dict(demo_config("retrieval")))
        model.load_state_dict(_load(args.out / "retrieval"))
        shift = calibrate_match(model, tokenizer)
        print(f"[retrieval] match logit shifted by {shift:+.2f} (one half is now the equal-error point)")
        save(model, "retrieval", args.out / "retrieval", used)
    prefix = "text_encoder."
    matcher = {k[len(prefix) :]: v for k, v in _load(args.out / "retrieval").items() if k.startswith(prefix)}

    if "vqa" in tasks:
        model = QuestionAnsweringModel(config_from_dict(demo_config("vqa")))
        init_weights(model, seed=2)
        model.vision_model.load_state_dict(vision)
        freeze(model.vision_model)
        model.text_decoder.load_state_dict(decoder)
        # The question encoder starts from the matcher's text encoder, which has already learned to tie
        # each shape word to its own shape (its hard negatives swap attributes between shapes).
        model.text_encoder.load_state_dict(matcher)
        tie_lm_head(model)
        # Two-shape scenes carry the hard questions (which shape is "the circle"?): three in four batches.
        train("vqa", model, steps["vqa"], 32, 5e-4, 2, vqa_loss(used, remap), two_shape_share=0.75)
        save(model, "vqa", args.out / "vqa", used)
    print(f"done in {(time.time() - start) / 60:.1f} minutes", flush=True)


def _load(directory: Path) -> dict[str, torch.Tensor]:
    from blip.loading.checkpoint import load_checkpoint

    return {k: v.float() for k, v in load_checkpoint(directory).state_dict().items()}


if __name__ == "__main__":
    main()
