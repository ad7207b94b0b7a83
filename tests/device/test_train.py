"""Training with the device plumbing on the CPU: fp32 unchanged bit for bit, bf16 autocast runs,
fp16 refused without CUDA, the device left out of the resume check, loss terms kept as tensors."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from ecgproto.errors import UserError
from ecgproto.train.run import train_model

from ..train.helpers import tiny_archive, tiny_config

SHORT = ("train.stages=[{name: joint, epochs: 2, lr: 0.001}, {name: projection}, "
         "{name: last_layer, epochs: 1, lr: 0.001}]", "train.fusion_epochs=2")


def _log(run) -> pd.DataFrame:
    return pd.read_csv(run / "train_log.csv").drop(columns=["seconds"])


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cpu_fp32_is_bit_for_bit_the_default_run(tmp_path):
    """device=cpu, precision fp32 and two DataLoader workers give the default run's weights and log exactly."""
    arc = tiny_archive(tmp_path)
    every_phase = ("train.stages=[{name: joint, epochs: 1, lr: 0.001}, {name: projection}, "
                   "{name: last_layer, epochs: 1, lr: 0.001}]", "train.fusion_epochs=1")
    default = train_model(tiny_config(*every_phase), arc, tmp_path / "default")
    explicit = train_model(tiny_config(*every_phase, "device=cpu", "train.precision=fp32", "train.num_workers=2"),
                           arc, tmp_path / "explicit")
    assert default.summary["device"] == explicit.summary["device"] == "cpu"
    pd.testing.assert_frame_equal(_log(tmp_path / "default"), _log(tmp_path / "explicit"))
    assert _same_weights(default.model, explicit.model)


def test_bf16_autocast_trains_on_cpu(tmp_path):
    arc = tiny_archive(tmp_path)
    cfg = tiny_config("train.stages=[{name: joint, epochs: 1, lr: 0.001}]", "train.fusion_epochs=1")
    fp32 = train_model(cfg, arc, tmp_path / "fp32")
    bf16 = train_model(tiny_config("train.stages=[{name: joint, epochs: 1, lr: 0.001}]", "train.fusion_epochs=1",
                                   "train.precision=bf16"), arc, tmp_path / "bf16")
    assert bf16.summary["precision"] == "bf16"
    log = _log(tmp_path / "bf16")
    joint = log[(log["stage"] == "joint") & (log["epoch"] == 0)]
    assert len(joint) == 3 and joint["train_loss"].map(math.isfinite).all()
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # weights stay fp32
    ref = _log(tmp_path / "fp32")
    ref = ref[(ref["stage"] == "joint") & (ref["epoch"] == 0)]
    diff = (joint["train_loss"].to_numpy() - ref["train_loss"].to_numpy())
    assert (diff != 0).all() and (abs(diff) < 0.05 * abs(ref["train_loss"].to_numpy()) + 0.05).all()  # bf16 ran, close
    assert fp32.summary["precision"] == "fp32"


def test_fp16_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        train_model(tiny_config("train.precision=fp16"), tiny_archive(tmp_path), tmp_path / "run")


def test_resume_may_change_the_device(tmp_path):
    """The resume check leaves the device out: a run stopped with device=cpu continues under auto."""
    arc = tiny_archive(tmp_path)
    out = tmp_path / "run"
    assert train_model(tiny_config(*SHORT, "device=cpu"), arc, out, max_epochs=1) is None
    resumed = train_model(tiny_config(*SHORT), arc, out, resume=True)
    whole = train_model(tiny_config(*SHORT), arc, tmp_path / "whole")
    if resumed.summary["device"] == "cpu":
        assert _same_weights(resumed.model, whole.model)
    with pytest.raises(UserError, match="different config"):
        train_model(tiny_config(*SHORT, "train.precision=bf16"), arc, out, resume=True)


def test_loss_terms_stay_tensors(tmp_path):
    """stage_loss/train_step hand back detached tensors: no per-step host sync."""
    import numpy as np

    from ecgproto.data.labels import label_table
    from ecgproto.model import build_network
    from ecgproto.train.branch_forward import BranchRunner
    from ecgproto.train.criterion import build_branch_criterion
    from ecgproto.train.stages import setup_stage, train_step

    from ..train.helpers import FS, N_SAMPLES

    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_network(cfg.model, n_samples=N_SAMPLES, fs=FS)
    labels = np.asarray(tiny_archive(tmp_path).labels)
    setup = setup_stage(model, "rhythm", "joint")
    criterion = build_branch_criterion(model, "rhythm", labels, cfg.model.loss)
    opt = torch.optim.Adam(setup.params, lr=1e-3)
    x = torch.randn(4, 12, N_SAMPLES) * 0.3
    y = torch.from_numpy(labels[:4][:, list(label_table().indices("rhythm"))].astype(np.float32))
    loss, terms = train_step(setup, model, BranchRunner(model, "rhythm"), criterion, opt, x, y)
    assert isinstance(loss, torch.Tensor) and not loss.requires_grad
    assert terms and all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in terms.values())


def test_fp16_loss_scale_is_saved_and_restored_on_resume(tmp_path, monkeypatch):
    """train_state.pt keeps the fp16 GradScaler's state after each epoch and a resumed stage starts from it.
    On a CPU-only machine fp16 is let through (torch's CPU autocast and GradScaler run it) to test the plumbing."""
    import ecgproto.device
    import ecgproto.train.loop
    import ecgproto.train.stages

    if not torch.cuda.is_available():
        allow = lambda precision, device: None  # noqa: E731
        for module in (ecgproto.device, ecgproto.train.loop, ecgproto.train.stages):
            monkeypatch.setattr(module, "check_precision", allow)
    arc = tiny_archive(tmp_path)
    out = tmp_path / "run"
    assert train_model(tiny_config(*SHORT, "train.precision=fp16"), arc, out, max_epochs=1) is None
    state = torch.load(out / "train_state.pt", map_location="cpu", weights_only=True)
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0
    edited = {**state["scaler"], "scale": 1024.0, "_growth_tracker": 7}
    torch.save({**state, "scaler": edited}, out / "train_state.pt")
    loaded: list[dict] = []
    original = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict",
                        lambda self, sd: (loaded.append(dict(sd)), original(self, sd))[1])
    resumed = train_model(tiny_config(*SHORT, "train.precision=fp16"), arc, out, resume=True)
    assert resumed is not None and loaded and loaded[0]["scale"] == 1024.0 and loaded[0]["_growth_tracker"] == 7


@pytest.mark.slow
def test_compiled_training_runs_and_stays_close(tmp_path):
    """train.compile: torch.compile of the training forward (inductor, a C++ compiler on the CPU) trains to
    finite losses: the rhythm branch (no dropout) within float tolerance of the eager run, the 2D branches
    within 5 % (their dropout masks come from inductor's own random stream; measured 0.5-1.5 %).
    Slow (about 4 min of compilation on 2 cores): `pytest -m slow`."""
    arc = tiny_archive(tmp_path)
    stages = ("train.stages=[{name: joint, epochs: 1, lr: 0.001}]", "train.fusion_epochs=1")
    eager = train_model(tiny_config(*stages), arc, tmp_path / "eager")
    compiled = train_model(tiny_config(*stages, "train.compile=true"), arc, tmp_path / "compiled")
    a, b = _log(tmp_path / "eager"), _log(tmp_path / "compiled")
    joint = (a["stage"] == "joint") & (a["epoch"] == 0)
    ref, got = a.loc[joint, "train_loss"].to_numpy(), b.loc[joint, "train_loss"].to_numpy()
    assert len(got) == 3 and all(math.isfinite(v) for v in got)
    branches = list(a.loc[joint, "branch"])
    assert abs(got[branches.index("rhythm")] - ref[branches.index("rhythm")]) <= 1e-5 * abs(ref).max()
    assert (abs(got - ref) <= 0.05 * abs(ref) + 1e-4).all()
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # no _orig_mod. prefixes
