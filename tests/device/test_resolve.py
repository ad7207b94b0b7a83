"""``resolve_device``, the config's ``device`` and mixed precision: one-line errors, auto = CPU without a GPU."""

from __future__ import annotations

import pytest
import torch

from ecgproto.config import ConfigError, load_config
from ecgproto.device import autocast, check_device_name, check_precision, resolve_device
from ecgproto.errors import UserError

NO_CUDA = not torch.cuda.is_available()


def test_cpu_and_auto_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device() == expected


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_names_the_build_and_the_fix(name):
    with pytest.raises(UserError) as exc:
        resolve_device(name)
    text = str(exc.value)
    assert "\n" not in text and f"{name} requested" in text
    assert "torch.cuda.is_available() is False" in text and torch.__version__ in text
    assert "README" in text and "--device cpu" in text


def test_a_missing_gpu_index_names_the_visible_ones(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # torchrun's LOCAL_RANK
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)  # explicit index kept
    with pytest.raises(UserError, match=r"only 2 CUDA device\(s\).*cuda:0\.\.cuda:1.*CUDA_VISIBLE_DEVICES"):
        resolve_device("cuda:2")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps():
    with pytest.raises(UserError, match="mps requested but torch.backends.mps.is_available\\(\\) is False"):
        resolve_device("mps")


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "cuda0", "", "tpu"])
def test_bad_names(name):
    with pytest.raises(UserError, match="expected auto, cpu, cuda, cuda:N"):
        check_device_name(name)


def test_config_device_is_top_level_and_checked():
    assert load_config().device == "auto"
    assert load_config(None, ["device=cuda:1"]).device == "cuda:1"  # syntax only: no GPU needed to load it
    assert load_config(None, ["device=CPU"]).device == "cpu"
    with pytest.raises(ConfigError, match="device 'gpu'"):
        load_config(None, ["device=gpu"])


def test_precision_and_autocast_on_cpu():
    cpu = torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, "bf16"):
        y = torch.nn.Linear(4, 3)(torch.ones(2, 4))
    assert y.dtype == torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        check_precision("fp16", cpu)
    with pytest.raises(UserError, match="expected one of fp32, bf16, fp16"):
        check_precision("fp8", cpu)
