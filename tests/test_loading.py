"""Config reading, strict weight loading, layouts, dtypes and the Hub resolver's errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import fake_hub_cache
from safetensors.torch import load_file, save_file

import blip
from blip.loading.checkpoint import CheckpointError, load_checkpoint
from blip.loading.hub import MODELS, CheckpointUnavailableError, UnknownModelError, resolve
from blip.model.config import ConfigError, config_from_dict, read_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def _copy(directory: Path, target: Path) -> Path:
    shutil.copytree(directory, target)
    return target


# --- configuration -----------------------------------------------------------------------------


def test_config_reads_sizes_and_derives_cross_attention_width(checkpoints):
    config = read_config(checkpoints.get("caption", layout="old"))
    assert config.vision.hidden_size == 48 and config.text.hidden_size == 32
    assert config.text.num_attention_heads == 4
    # The old layout's config has no encoder_hidden_size: it is derived from the vision width.
    assert config.text.encoder_hidden_size == 48
    assert config.architectures == ("BlipForConditionalGeneration",)


def test_config_ignores_legacy_keys_and_stale_encoder_width():
    raw = {
        "transformers_version": "4.21.0",
        "max_length": 20,
        "text_config_dict": None,
        "text_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "encoder_hidden_size": 768,  # stale: the vision side below is ViT-L
            "num_beams": 3,
            "is_decoder": True,
        },
        "vision_config": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "layer_norm_eps": 1e-5,
        },
    }
    config = config_from_dict(raw)
    assert config.text.encoder_hidden_size == 1024
    assert config.vision.num_positions == 577 and config.vision.grid_size == 24


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("text_config", "num_attention_heads"),
        ("vision_config", "hidden_size"),
        ("text_config", "hidden_size"),
    ],
)
def test_config_missing_required_field_is_named(checkpoints, section, field):
    raw = json.loads((checkpoints.get("caption") / "config.json").read_text())
    del raw[section][field]
    with pytest.raises(ConfigError, match=f"{section}.*{field}"):
        config_from_dict(raw)


def test_config_rejects_unknown_activation_and_bad_heads(checkpoints):
    raw = json.loads((checkpoints.get("caption") / "config.json").read_text())
    bad = json.loads(json.dumps(raw))
    bad["text_config"]["hidden_act"] = "relu"
    with pytest.raises(ConfigError, match="hidden_act"):
        config_from_dict(bad)
    bad = json.loads(json.dumps(raw))
    bad["vision_config"]["num_attention_heads"] = 5
    with pytest.raises(ConfigError, match="divisible"):
        config_from_dict(bad)


# --- strict loading ------------------------------------------------------------------------------


def _tamper(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_missing_tensor_is_named(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("retrieval"), tmp_path / "ckpt")
    _tamper(directory, lambda s: s.pop("itm_head.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensors: itm_head\.bias"):
        load_checkpoint(directory)


def test_unexpected_tensor_is_named(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("caption"), tmp_path / "ckpt")
    _tamper(directory, lambda s: s.__setitem__("text_decoder.extra_head.weight", torch.zeros(2, 2)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: text_decoder\.extra_head\.weight"):
        load_checkpoint(directory)


def test_wrong_shape_is_named_with_both_shapes(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("vqa"), tmp_path / "ckpt")
    key = "text_encoder.encoder.layer.1.crossattention.self.key.weight"
    _tamper(directory, lambda s: s.__setitem__(key, torch.zeros(32, 16)))
    with pytest.raises(
        CheckpointError, match=rf"shape mismatches: {key} \(file \(32, 16\), model \(32, 32\)\)"
    ):
        load_checkpoint(directory)


def test_tampered_pytorch_bin_is_checked_too(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("caption", layout="bin"), tmp_path / "ckpt")
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    del state["vision_model.post_layernorm.weight"]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"missing tensors: vision_model\.post_layernorm\.weight"):
        load_checkpoint(directory)


def test_pytorch_bin_with_code_is_refused(checkpoints, tmp_path):
    """weights_only loading: a pickle that would run code on load is rejected, not executed."""
    directory = _copy(checkpoints.get("caption", layout="bin"), tmp_path / "ckpt")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"payload": Evil()}, directory / "pytorch_model.bin")
    with pytest.raises(Exception, match=r"(?i)weights.only|unsupported|global"):
        load_checkpoint(directory)
    assert not marker.exists()


def test_safetensors_preferred_over_bin(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("caption"), tmp_path / "ckpt")
    (directory / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    load_checkpoint(directory)  # would fail if the .bin were read


def test_no_weights_is_a_clear_error(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("caption"), tmp_path / "ckpt")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no model\.safetensors or pytorch_model\.bin"):
        load_checkpoint(directory)


@pytest.mark.parametrize("layout", ["tied", "old", "converted", "bin"])
def test_lm_head_shares_word_embeddings(checkpoints, layout):
    model = load_checkpoint(checkpoints.get("caption", layout=layout))
    decoder = model.text_decoder
    assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight


def test_all_layouts_load_the_same_numbers(checkpoints):
    reference = load_checkpoint(checkpoints.get("vqa")).state_dict()
    for layout in ("old", "converted", "bin"):
        state = load_checkpoint(checkpoints.get("vqa", layout=layout)).state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference), layout


def test_float16_files_load_as_float32_and_dtype_is_honoured(checkpoints, tmp_path):
    directory = _copy(checkpoints.get("retrieval"), tmp_path / "ckpt")
    _tamper(directory, lambda s: s.update({k: v.half() for k, v in s.items()}))
    model = load_checkpoint(directory)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    original = load_checkpoint(checkpoints.get("retrieval"))
    key = "itm_head.weight"
    assert torch.equal(model.state_dict()[key], original.state_dict()[key].half().float())
    bf16 = load_checkpoint(checkpoints.get("retrieval"), dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_load_returns_model_with_its_preprocessing(checkpoints):
    loaded = blip.load(checkpoints.get("caption"))
    assert isinstance(loaded.model, blip.CaptionModel)
    assert loaded.image_size == 48
    assert loaded.tokenizer.encode("a picture of") == [101, 1037, 3861, 1997, 102]
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training


# --- model names and the Hub ----------------------------------------------------------------------


def test_model_table_has_the_eight_checkpoints():
    assert len(MODELS) == 8
    assert all(entry.repo.startswith("Salesforce/blip-") for entry in MODELS.values())


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(UnknownModelError) as info:
        resolve("caption-gigantic")
    assert all(name in str(info.value) for name in MODELS)


def _run(code: str, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cached_model_loads_by_name_without_network(checkpoints, tmp_path):
    """A cached copy is used as is, even when the Hub is unreachable and offline mode is off."""
    fake_hub_cache(tmp_path / "hub", MODELS["caption-base"].repo, checkpoints.get("caption"))
    code = """
        import blip
        loaded = blip.load("caption-base")
        print(type(loaded.model).__name__, loaded.path.parent.name)
    """
    dead_hub = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for env in (dead_hub, dict(dead_hub, HF_HUB_OFFLINE="1")):
        result = _run(code, env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["CaptionModel", "snapshots"]


def test_offline_mode_without_cache_raises_dedicated_error(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(CheckpointUnavailableError, match="offline mode") as info:
            resolve("vqa-base", cache_dir=tmp_path / "empty")
    message = str(info.value)
    assert "Salesforce/blip-vqa-base" in message and "python -m blip download vqa-base" in message


def test_unreachable_hub_without_cache_raises_dedicated_error(tmp_path):
    code = """
        import blip
        try:
            blip.load("itm-base-coco")
        except blip.CheckpointUnavailableError as err:
            print("UNAVAILABLE", err)
    """
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    start = time.monotonic()
    result = _run(code, env, timeout=300)
    # A quick connection probe answers at once (the Hub client alone retries with back-off for ~25 s).
    assert time.monotonic() - start < 15
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("UNAVAILABLE"), result.stdout + result.stderr
    assert "unreachable" in result.stdout and "Salesforce/blip-itm-base-coco" in result.stdout
