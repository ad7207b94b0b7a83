"""fold_batchnorm: the folded copy computes the same outputs, leaves the model alone, has no BatchNorm."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ecgproto.config import load_config
from ecgproto.model import BlackBoxECGNet, ProtoECGNet, fold_batchnorm
from ecgproto.model.inference import predict_arrays

from .helpers import FS, N_SAMPLES, tiny_config

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5


def _n_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _with_bn_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics (cumulative averages, so they match
    the activations of such inputs) from a few train-mode forwards on non-standard inputs."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
            m.momentum = None
        model.train()
        for _ in range(3):
            model(_signals(4, model.n_samples, gen))
    for m in bns:
        m.momentum = 0.1
    return model


def _signals(n: int, n_samples: int, gen: torch.Generator) -> torch.Tensor:
    return 0.2 + 0.5 * torch.randn(n, 12, n_samples, generator=gen)


def _demo_model() -> ProtoECGNet:
    torch.manual_seed(0)
    return ProtoECGNet(load_config(str(REPO / "configs" / "demo.yaml")).model, N_SAMPLES, FS)


def _lead_aware_replicate_model() -> ProtoECGNet:
    cfg = tiny_config(*(f"model.branches.{g}.padding=replicate" for g in ("rhythm", "morphology", "global")),
                      "model.branches.morphology.lead_aware=true", "model.branches.morphology.proto_lead_len=2",
                      "model.branches.morphology.proto_time_len=3", "model.branches.global.lead_aware=true")
    torch.manual_seed(1)
    return ProtoECGNet(cfg, N_SAMPLES, FS)


def _close(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal within ATOL on the tensor's own scale: float32 rounding grows with the magnitude (demo
    morphology: unbounded latents up to ~20, similarity scale 13), so the bound is ATOL·max(1, max|ref|)."""
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL * max(1.0, ref.abs().max().item()))


def _assert_same_outputs(got, ref) -> None:
    _close(got.logits, ref.logits)
    _close(got.similarities, ref.similarities)
    for g, b in ref.branch.items():
        for name in ("logits", "similarities", "window_similarities", "latent"):
            _close(getattr(got.branch[g], name), getattr(b, name))


@pytest.mark.parametrize("make", [_demo_model, _lead_aware_replicate_model], ids=["demo", "lead_aware_replicate"])
def test_folded_copy_equals_the_model_and_leaves_it_alone(make):
    model = _with_bn_statistics(make())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    assert _n_bn(model) > 0
    if any(b.cfg.lead_aware for b in model.branches.values()):
        assert {b.cfg.padding for b in model.branches.values()} == {"replicate"}

    folded = fold_batchnorm(model)

    assert _n_bn(folded) == 0
    assert not folded.training and not any(m.training for m in folded.modules())
    assert not any(p.requires_grad for p in folded.parameters())
    # the caller's model: same parameters and buffers, same per-module modes, still trainable
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert all(p.requires_grad for p in model.parameters())
    # receptive-field arithmetic is unchanged
    for g, branch in model.branches.items():
        fb = folded.branches[g]
        assert fb.backbone.trunk.conv_layers() == branch.backbone.trunk.conv_layers()
        assert fb.backbone.time_geometry(N_SAMPLES) == branch.backbone.time_geometry(N_SAMPLES)
        assert {m.padding_mode for m in fb.modules() if isinstance(m, nn.Conv1d)} == {branch.cfg.padding} | (
            {"zeros"} if branch.cfg.padding == "replicate" else set())  # 1×1 shortcuts never pad

    x = _signals(6, N_SAMPLES, torch.Generator().manual_seed(5))
    model.eval()
    with torch.no_grad():
        ref = model(x)
        got = folded(x)
    _assert_same_outputs(got, ref)


def test_folding_costs_no_more_accuracy_than_float32_itself():
    """Against the float64 model, the folded float32 model is as close as the unfolded float32 one."""
    model = _with_bn_statistics(_demo_model()).eval()
    folded = fold_batchnorm(model)
    x = _signals(4, N_SAMPLES, torch.Generator().manual_seed(7))
    with torch.no_grad():
        unfolded, fused = model(x), folded(x)
        exact = model.double()(x.double())
    for g in exact.branch:
        truth = exact.branch[g].latent
        err_unfolded = (unfolded.branch[g].latent.double() - truth).abs().max().item()
        err_folded = (fused.branch[g].latent.double() - truth).abs().max().item()
        assert err_folded <= 2 * err_unfolded + 1e-6, (g, err_folded, err_unfolded)


def test_blackbox_twin_folds_too():
    torch.manual_seed(0)
    model = _with_bn_statistics(BlackBoxECGNet(tiny_config("model.kind=blackbox"), N_SAMPLES, FS)).eval()
    folded = fold_batchnorm(model)
    assert _n_bn(model) > 0 and _n_bn(folded) == 0
    x = _signals(3, N_SAMPLES, torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, got = model(x), folded(x)
    _close(got.logits, ref.logits)
    _close(got.features, ref.features)


def test_a_batchnorm_without_a_convolution_is_an_error():
    with pytest.raises(ValueError, match="cannot be folded"):
        fold_batchnorm(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


@pytest.mark.parametrize("fold", [True, False])
def test_predict_arrays_folds_without_touching_the_model(fold):
    model = _with_bn_statistics(_lead_aware_replicate_model())
    model.train()
    model.branches["rhythm"].backbone.eval()  # a frozen backbone inside a training model (as in the stages)
    modes = [m.training for m in model.modules()]
    x = np.random.default_rng(0).normal(0, 0.3, size=(5, 12, N_SAMPLES)).astype(np.float32)
    pred = predict_arrays(model, x, batch_size=2, fold=fold)
    if fold:  # the model is not touched at all, not even switched to eval and back
        assert [m.training for m in model.modules()] == modes
    assert model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    np.testing.assert_allclose(pred.similarities, out.similarities.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(pred.probs, torch.sigmoid(out.logits).numpy(), rtol=0, atol=ATOL)
