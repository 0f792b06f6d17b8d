"""The linear kernels are chosen by timing them on the CPU at hand: every candidate computes what
F.linear does, the choice is remembered (per process, and on disk per CPU model), a new CPU is timed
afresh, and the environment can switch the timing off or fix a choice."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blip.kernels import choice, cpu, linear

pytestmark = pytest.mark.unit


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache folder, no overrides, a fake CPU name, and timings we control (counted)."""
    monkeypatch.setenv("BLIP_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("BLIP_KERNELS", raising=False)
    monkeypatch.setattr(cpu, "cpu_name", lambda: "Chip A 9000")
    calls = []
    times = {"1": {"linear": 3.0, "wxt": 2.0, "onednn": 1.0}, "2-64": {"linear": 3.0, "wxt": 1.0, "onednn": 2.0},
             "65+": {"linear": 1.0, "wxt": 1.5, "onednn": 0.99}}  # fmt: skip

    def fake_measure(name):
        calls.append(name)
        return {k: t for k, t in times[name].items() if k in linear.KERNELS}

    monkeypatch.setattr(choice, "measure", fake_measure)
    choice.reset()
    yield calls
    choice.reset()  # later tests measure (or read) the real machine's choices


@pytest.mark.parametrize("kernel", sorted(linear.KERNELS))
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 64, 65, 200, 577])
@pytest.mark.parametrize("bias", [True, False])
def test_every_candidate_computes_what_f_linear_does(kernel, rows, bias):
    torch.manual_seed(rows)
    layer, x = nn.Linear(96, 80, bias=bias), torch.randn(1, rows, 96)
    with torch.no_grad():
        out = linear.KERNELS[kernel](x, layer.weight, layer.bias)
        assert out.shape == (1, rows, 80)
        torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_this_build_offers_onednn():
    assert "onednn" in linear.KERNELS, "x86 CPU wheels of PyTorch have oneDNN's linear kernel"


def test_the_fastest_is_chosen_once_and_cached_on_disk(fresh):
    assert choice.pick({"linear": 1.0, "wxt": 0.5}) == "wxt"
    assert choice.pick({"linear": 1.0, "wxt": 0.98}) == "linear"  # within the noise margin
    with torch.no_grad():
        for rows in (1, 1, 3, 40, 64, 65, 577):
            linear.project(nn.Linear(8, 4), torch.randn(rows, 8))
    assert fresh == ["1", "2-64", "65+"]  # each bucket timed once in this process
    expected = {"1": "onednn", "2-64": "wxt", "65+": "linear"}  # 0.99 is not clearly below 1.0
    assert choice.chosen() == expected and fresh == ["1", "2-64", "65+"]
    saved = json.loads(choice.cache_file().read_text())
    assert choice.cache_file().name == "kernels-chip-a-9000.json" and saved["cpu"] == "Chip A 9000"
    (setting,) = saved["choices"]
    assert {b: e["kernel"] for b, e in saved["choices"][setting].items()} == expected
    choice.reset()  # a new process on the same machine reads the file instead of timing
    assert choice.chosen() == expected and fresh == ["1", "2-64", "65+"]


def test_another_cpu_is_timed_afresh(fresh, monkeypatch):
    choice.chosen()
    monkeypatch.setattr(cpu, "cpu_name", lambda: "Chip B 100")
    choice.reset()
    choice.chosen()
    assert fresh == ["1", "2-64", "65+"] * 2
    assert sorted(p.name for p in choice.cache_file().parent.iterdir()) == [
        "kernels-chip-a-9000.json",
        "kernels-chip-b-100.json",
    ]


def test_the_environment_fixes_or_switches_off_the_choice(fresh, monkeypatch):
    monkeypatch.setenv("BLIP_KERNELS", "1=wxt, 65+=onednn, 7=linear")
    with pytest.warns(UserWarning, match="ignoring '7=linear'"):
        assert choice.chosen() == {"1": "wxt", "2-64": "wxt", "65+": "onednn"}
    assert fresh == ["2-64"]  # only the bucket not named was timed
    monkeypatch.setenv("BLIP_KERNELS", "off")
    choice.reset()
    assert choice.chosen() == dict.fromkeys(choice.BUCKETS, "linear") and fresh == ["2-64"]


def test_an_unwritable_cache_folder_only_costs_a_new_timing(fresh, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BLIP_KERNEL_CACHE", str(blocker / "sub"))
    assert choice.chosen()["1"] == "onednn"
    monkeypatch.setenv("BLIP_KERNEL_CACHE", str(tmp_path))
    (tmp_path / "kernels-chip-a-9000.json").write_text("{broken json")  # a corrupt file is ignored
    choice.reset()
    assert choice.chosen()["1"] == "onednn" and fresh == ["1", "2-64", "65+"] * 2


def test_onednn_is_never_used_where_gradients_are_wanted(fresh, monkeypatch):
    monkeypatch.setenv("BLIP_KERNELS", "1=onednn,2-64=onednn,65+=onednn")
    layer = nn.Linear(16, 8)
    x = torch.randn(1, 16, requires_grad=True)
    out = linear.project(layer, x)
    (grad,) = torch.autograd.grad(out.sum(), x)  # oneDNN's op has no gradient: F.linear ran
    torch.testing.assert_close(grad, layer.weight.sum(dim=0, keepdim=True))
