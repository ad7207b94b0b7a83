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
