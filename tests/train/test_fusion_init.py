"""The fusion head can start exactly at the branches' own last layers."""

import numpy as np
import pytest
import torch

from ecgproto.data.labels import label_table
from ecgproto.model import ProtoECGNet
from ecgproto.train.fusion import init_fusion_from_branches

from .helpers import FS, N_SAMPLES, tiny_config


@pytest.mark.parametrize("head", ["linear", "sign_constrained", "masked_nonneg"])
def test_fused_logits_equal_branch_logits_after_init(head):
    torch.manual_seed(0)
    model = ProtoECGNet(tiny_config(f"model.fusion.head={head}", "model.fusion.mask=own_class"
                                    if head == "masked_nonneg" else "model.fusion.mask=all").model, N_SAMPLES, FS)
    for branch in model.branches.values():  # last layers with own-class > 0, other-class < 0 (sign-consistent)
        own = branch.prototype_class_identity.T
        branch.last_layer.weight.data = torch.where(own > 0, 0.5 + torch.rand_like(own), -0.3 * torch.rand_like(own))
    if head == "masked_nonneg":  # this head allows own-class weights only
        for branch in model.branches.values():
            branch.last_layer.weight.data.clamp_(min=0)
    sims = torch.rand(7, model.n_prototypes) * 3
    model.fusion.fit_normalization(sims)
    init_fusion_from_branches(model)
    fused = model.fusion(sims)
    expected = torch.zeros_like(fused)
    tab = label_table()
    for group, cols in model.branch_slices().items():
        expected[:, tab.indices(group)] = sims[:, cols] @ model.branches[group].last_layer.weight.T
    np.testing.assert_allclose(fused.detach().numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-3)


def test_calibration_keeps_rankings_and_matches_prevalence():
    """Platt scaling of the started head: per label a positive affine map of the logits (same
    ranking, signs and masks), predicted probabilities centred on the training prevalence, and a
    label never positive in training predicted near 0 instead of saturating."""
    from ecgproto.train.fusion import platt_scale_fusion_head

    torch.manual_seed(0)
    model = ProtoECGNet(tiny_config().model, N_SAMPLES, FS)
    for branch in model.branches.values():  # own-class weights only: large positive logits for everyone
        branch.last_layer.weight.data = 5.0 * branch.prototype_class_identity.T.clone()
    rng = np.random.default_rng(0)
    sims = torch.from_numpy(rng.uniform(1, 3, (200, model.n_prototypes)).astype(np.float32))
    model.fusion.fit_normalization(sims)
    init_fusion_from_branches(model)
    before = model.fusion(sims).detach().double().numpy()
    labels = np.zeros((200, 71), np.uint8)
    labels[:, :70] = rng.random((200, 70)) < 1 / (1 + np.exp(-(before[:, :70] - before[:, :70].mean(0))))
    sign_before = torch.sign(model.fusion.effective_weight())
    slopes = platt_scale_fusion_head(model, sims.numpy(), labels)
    after = model.fusion(sims).detach().double().numpy()
    assert (slopes > 0).all()
    assert torch.equal(torch.sign(model.fusion.effective_weight()), sign_before)
    np.testing.assert_allclose(after, before * slopes + (after - before * slopes).mean(0), atol=1e-3)
    probs = 1 / (1 + np.exp(-after))
    np.testing.assert_allclose(probs[:, :70].mean(0), labels[:, :70].mean(0), atol=0.02)
    assert probs[:, 70].max() < 0.01  # no training positive: a small constant, not a saturated 1.0
    assert before.min() > 5  # the uncalibrated head said "positive" for every record and label
