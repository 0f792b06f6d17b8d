"""Build BLIP checkpoints with the oracle (transformers), random weights, in every Hub file layout.

The Hub is not reachable from CI, so tests make their own checkpoints: the oracle's classes with seeded
random weights, saved exactly as the Hub serves them, and then read by both implementations.

Layouts (see ``shared/docs/blip-reference.md`` section 3):

* ``tied``: what transformers 5.x ``save_pretrained`` writes (no LM-head ``decoder.*`` copies, no
  ``position_ids``), as ``model.safetensors``;
* ``old``: 2022-era files: a separate ``decoder.weight`` and ``decoder.bias``, ``position_ids``
  buffers, a config with legacy keys and no ``encoder_hidden_size``;
* ``converted``: the safetensors conversion: ``decoder.weight`` kept, ``decoder.bias`` dropped;
* ``bin``: the old layout as ``pytorch_model.bin``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

TASK_CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
    "features": "BlipModel",  # transformers' two-tower model (get_image_features / get_text_features)
}
LAYOUTS = ("tied", "old", "converted", "bin")

# Tiny: fast enough to build dozens. The vision width differs from the text width on purpose (it
# exercises the derived cross-attention width), except for VQA, whose answer decoder cross-attends to
# question states with keys sized by the vision width: the reference design needs them equal there.
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TINY_VISION = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
TINY_IMAGE = dict(image_size=48, patch_size=8)
# Full-size base: ViT-B/16 at 384 and BERT-base, as in the official base checkpoints.
BASE_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
BASE_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
BASE_IMAGE = dict(image_size=384, patch_size=16)
# Full-size large: ViT-L/16 at 384 with the same BERT-base text side (for the benchmark).
LARGE_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)

VOCAB = Path(__file__).resolve().parents[1] / "blip" / "resources" / "vocab.txt"


def oracle_config(task: str, size: str):
    from transformers import BlipConfig

    if size == "tiny":
        vision = dict(TINY_VISION, **TINY_IMAGE)
        if task == "vqa":
            vision.update(hidden_size=TINY_TEXT["hidden_size"], intermediate_size=64)
        text = dict(TINY_TEXT)
    elif size == "base":
        vision, text = dict(BASE_VISION, **BASE_IMAGE), dict(BASE_TEXT)
    elif size == "large":
        vision, text = dict(LARGE_VISION, **BASE_IMAGE), dict(BASE_TEXT)
    else:
        raise ValueError(size)
    return BlipConfig(text_config=text, vision_config=vision, architectures=[TASK_CLASSES[task]])


def _randomise(model: torch.nn.Module, seed: int, std: float) -> None:
    """Seeded random values in *every* tensor, so no LayerNorm is an identity and no bias is zero
    (the library's own init leaves those trivial, and sets the ViT's weights near 1e-10)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=gen)
            if param.dim() == 1 and "norm" in name.lower() and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.dim() == 1:
                param.copy_(0.05 * noise)
            else:
                param.copy_(std * noise)


def oracle_tokenizer():
    """bert-base-uncased as the Hub's BLIP repos configure it (transformers 5 takes ``vocab=``)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=str(VOCAB), do_lower_case=True, model_max_length=512)


def oracle_image_processor(image_size: int):
    """The reference's PIL preprocessing (torchvision's resize differs numerically)."""
    from transformers import BlipImageProcessorPil

    return BlipImageProcessorPil(size={"height": image_size, "width": image_size})


def _save_processor(directory: Path, image_size: int) -> None:
    """The small files a Hub repo carries beside the weights, under their Hub names."""
    oracle_tokenizer().save_pretrained(directory)
    oracle_image_processor(image_size).save_pretrained(directory)
    shutil.copy(VOCAB, directory / "vocab.txt")


# For decoding tests: an LM-head bias that makes random models behave a little like language models.
# A few favoured words make repetition common (so repetition penalties and n-gram bans matter), and a
# boosted [SEP] makes texts end at varied lengths (so beam search's finishing rules are exercised).
FAVOURED_TOKENS = tuple(range(2000, 2012))
DECODING_BIAS = {**{t: 3.0 for t in FAVOURED_TOKENS}, 102: 3.4}


def build_tied(
    directory: Path, task: str, size: str, seed: int = 0, lm_bias: dict[int, float] | None = None
) -> Path:
    """Save a random-weight oracle model in the transformers 5.x layout; return the directory.

    Args:
        lm_bias: extra LM-head bias per token id (tasks with a decoder), see ``DECODING_BIAS``.
    """
    import transformers

    config = oracle_config(task, size)
    torch.manual_seed(seed)
    model = getattr(transformers, TASK_CLASSES[task])(config).eval()
    _randomise(model, seed, std=0.15 if size == "tiny" else 0.02)
    if lm_bias:
        with torch.no_grad():
            bias = model.text_decoder.cls.predictions.bias
            for token, value in lm_bias.items():
                bias[token] += value
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _save_processor(directory, config.vision_config.image_size)
    return directory


def derive_layout(tied_dir: Path, directory: Path, layout: str) -> Path:
    """Rewrite a ``tied`` checkpoint in another layout (same numbers, other keys and files)."""
    from safetensors.torch import load_file, save_file

    if layout == "tied":
        return tied_dir
    directory.mkdir(parents=True, exist_ok=True)
    for f in tied_dir.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, directory / f.name)
    state = load_file(tied_dir / "model.safetensors")
    prefix = "text_decoder.cls.predictions."
    if f"{prefix}bias" in state:  # tasks with an LM head
        state[f"{prefix}decoder.weight"] = state[
            "text_decoder.bert.embeddings.word_embeddings.weight"
        ].clone()
        if layout != "converted":
            state[f"{prefix}decoder.bias"] = state[f"{prefix}bias"].clone()
    if layout in ("old", "bin"):
        for stack in ("text_decoder.bert.", "text_encoder."):
            if f"{stack}embeddings.word_embeddings.weight" in state:
                state[f"{stack}embeddings.position_ids"] = torch.arange(512)[None]
        _add_legacy_config_keys(directory / "config.json")
    if layout == "bin":
        torch.save(state, directory / "pytorch_model.bin")
    else:
        save_file(state, directory / "model.safetensors")
    return directory


def _add_legacy_config_keys(path: Path) -> None:
    """Make a config look like the 2022 files: generation defaults, old version, no encoder width."""
    config = json.loads(path.read_text())
    config["transformers_version"] = "4.26.0.dev0"
    config["text_config"].pop("encoder_hidden_size", None)
    config["text_config"].update(max_length=20, num_beams=1, top_k=50, use_cache=True)
    config["vision_config"].update(dropout=0.0, initializer_factor=1.0)
    path.write_text(json.dumps(config, indent=2))


def build_text_only(directory: Path, size: str, seed: int = 0) -> Path:
    """A ``BlipModel`` whose config says ``text_config.is_decoder: false``: transformers then builds (and
    saves) its text layers without cross-attention, so the file has no ``crossattention`` tensors."""
    import transformers

    config = oracle_config("features", size)
    config.text_config.is_decoder = False
    torch.manual_seed(seed)
    model = transformers.BlipModel(config).eval()
    _randomise(model, seed, std=0.15 if size == "tiny" else 0.02)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _save_processor(directory, config.vision_config.image_size)
    return directory


def load_oracle(directory: Path, task: str):
    """The oracle's model read from ``directory``, float32, eval mode."""
    import transformers

    cls = getattr(transformers, TASK_CLASSES[task])
    return cls.from_pretrained(directory, dtype=torch.float32).eval()
