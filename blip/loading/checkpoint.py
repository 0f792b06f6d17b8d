"""Read a checkpoint directory's weights into one of our task models, strictly.

A checkpoint directory is what the Hub serves: ``config.json`` plus ``model.safetensors`` (preferred) or
``pytorch_model.bin``. Our parameter names equal the file's keys, so loading is a copy; the few layout
variants found in the wild are reconciled by :func:`_reconcile_layouts` (the one place that knows them).
Every tensor must be accounted for and every shape must match; anything else is an error naming the
keys, never a silent partial load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..model.config import BlipConfig, read_config
from ..model.task_models import TASK_MODELS, BlipBase

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"

# The LM head's output layer and where each of its tensors may come from.
LM_DECODER_WEIGHT = "text_decoder.cls.predictions.decoder.weight"
LM_DECODER_BIAS = "text_decoder.cls.predictions.decoder.bias"
LM_BIAS = "text_decoder.cls.predictions.bias"
WORD_EMBEDDINGS = "text_decoder.bert.embeddings.word_embeddings.weight"


class CheckpointError(ValueError):
    """A checkpoint whose files do not fit the model its config describes."""


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def damaged(path: Path, reason: object) -> CheckpointError:
    """The error for a weights file that cannot be read: which file, why, and how to get a good copy."""
    path = Path(path)
    real = path.resolve()
    where = f"{path}" + (f" (the cached copy is {real})" if real != path.absolute() else "")
    return CheckpointError(
        f"the weights file {where} is damaged or incomplete ({str(reason).splitlines()[0]}). "
        "Delete it and load the model again: a model from the table is then downloaded afresh "
        "(or run `python -m blip download NAME`)."
    )


def _read_file(path: Path, read: Callable[[Path], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    try:
        state = read(path)
    except Exception as err:  # truncated downloads, bad headers, pickles that are not plain tensors
        raise damaged(path, err) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def read_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """Load the raw tensors of a checkpoint directory (on CPU), preferring safetensors.

    ``pytorch_model.bin`` is a pickle: it is only ever read with ``weights_only=True``, which refuses
    anything but tensors and plain containers. A file that cannot be read raises a
    :class:`CheckpointError` naming it and saying how to replace it.
    """
    directory = Path(directory)
    from safetensors.torch import load_file

    if (directory / SAFETENSORS).is_file():
        return _read_file(directory / SAFETENSORS, load_file)
    if (directory / SAFETENSORS_INDEX).is_file():
        try:
            shards = set(json.loads((directory / SAFETENSORS_INDEX).read_text())["weight_map"].values())
        except (ValueError, KeyError, AttributeError) as err:
            raise damaged(directory / SAFETENSORS_INDEX, err) from None
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(shards):
            state.update(_read_file(directory / shard, load_file))
        return state
    if (directory / PYTORCH_BIN).is_file():
        return _read_file(
            directory / PYTORCH_BIN, lambda path: torch.load(path, map_location="cpu", weights_only=True)
        )
    raise CheckpointError(f"no {SAFETENSORS} or {PYTORCH_BIN} in {directory}")


def _reconcile_layouts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map every known file layout onto our parameter names.

    * ``*.embeddings.position_ids``: index buffers in old files; positions are computed, so dropped.
    * LM head weight: a separate copy in old files, absent (tied to the word embeddings) in new ones.
    * LM head bias: ``decoder.bias`` in old files; safetensors conversions keep only ``predictions.bias``
      (the same numbers: the reference ties the two).
    """
    state = {k: v for k, v in state.items() if not k.endswith(".embeddings.position_ids")}
    if LM_BIAS in state:
        bias = state.pop(LM_BIAS)
        state.setdefault(LM_DECODER_BIAS, bias)
    if LM_DECODER_WEIGHT not in state and WORD_EMBEDDINGS in state:
        state[LM_DECODER_WEIGHT] = state[WORD_EMBEDDINGS]
    return state


def model_class_for(config: BlipConfig, state: dict[str, torch.Tensor]) -> type[BlipBase]:
    """The task model a checkpoint holds: from ``architectures``, else from its keys."""
    for name in config.architectures:
        if name in TASK_MODELS:
            return TASK_MODELS[name]
    if config.architectures:
        known = ", ".join(TASK_MODELS)
        raise CheckpointError(
            f"unsupported architectures {list(config.architectures)}; expected one of {known}"
        )
    if "visual_projection.weight" in state:
        return TASK_MODELS["BlipModel"]
    if "itm_head.weight" in state:
        return TASK_MODELS["BlipForImageTextRetrieval"]
    if any(k.startswith("text_encoder.") for k in state):
        return TASK_MODELS["BlipForQuestionAnswering"]
    return TASK_MODELS["BlipForConditionalGeneration"]


def build_model(
    config: BlipConfig,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
    source: str = "checkpoint",
) -> BlipBase:
    """Build the task model for ``config`` and fill it with ``state``, checking every tensor.

    Args:
        config: the parsed config.json.
        state: raw tensors as read from the files (any known layout, any float dtype).
        dtype: dtype of the returned model's floating-point parameters.
        source: how to name the checkpoint in error messages.
    """
    cls = model_class_for(config, state)
    state = _reconcile_layouts(state)
    with torch.device("meta"):  # no memory, no random init: every tensor comes from the file
        model = cls(config)
    expected = model.state_dict()

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_list_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_list_keys(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {cls.__name__}: " + "; ".join(problems))

    converted: dict[int, torch.Tensor] = {}  # convert each distinct tensor once, keeping ties tied

    def to_dtype(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in converted:
            converted[id(t)] = t.to(dtype) if t.is_floating_point() else t
        return converted[id(t)]

    model.load_state_dict({k: to_dtype(state[k]) for k in expected}, strict=True, assign=True)
    _tie_lm_head(model)
    return model.eval().requires_grad_(False)


def _tie_lm_head(model: BlipBase) -> None:
    """Share one tensor between the word embeddings and the LM head when they hold the same numbers
    (always, in official files): it saves 94 MB for a base model."""
    decoder = getattr(model, "text_decoder", None)
    if decoder is None:
        return
    embeddings = decoder.bert.embeddings.word_embeddings
    head = decoder.cls.predictions.decoder
    if head.weight is not embeddings.weight and torch.equal(head.weight, embeddings.weight):
        head.weight = embeddings.weight


def load_checkpoint(
    directory: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> BlipBase:
    """Load the task model stored in a local checkpoint directory.

    Args:
        directory: a folder with ``config.json`` and the weights.
        device: where to put the model.
        dtype: parameter dtype (files stored in float16 are widened to float32 by default).
    """
    directory = Path(directory)
    config = read_config(directory)
    state = read_state_dict(directory)
    return build_model(config, state, dtype=dtype, source=str(directory)).to(device)
