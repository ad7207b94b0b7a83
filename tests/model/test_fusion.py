"""Fusion head: masks, non-negativity, exact contributions, per-branch normalisation."""

import numpy as np
import pytest
import torch

from ecgproto.data.labels import all_labels
from ecgproto.model.network import ProtoECGNet
from tests.model.helpers import FS, N_SAMPLES, tiny_config


def _model(*extra: str) -> ProtoECGNet:
    torch.manual_seed(0)
    return ProtoECGNet(tiny_config(*extra), N_SAMPLES, FS)


def _randomise(model: ProtoECGNet) -> None:
    with torch.no_grad():
        model.fusion.weight_raw.normal_(0, 2)
        model.fusion.bias.normal_()


@pytest.mark.parametrize("head,mask", [("masked_nonneg", "own_class"),
                                       ("masked_nonneg", "own_class_and_other_branches"),
                                       ("masked_nonneg", "all"), ("sign_constrained", "own_branch"),
                                       ("sign_constrained", "all"), ("linear", "own_class")])
def test_contributions_sum_to_logits(head, mask):
    model = _model(f"model.fusion.head={head}", f"model.fusion.mask={mask}")
    _randomise(model)
    sims = torch.randn(4, model.n_prototypes) * 3
    model.fusion.fit_normalization(torch.randn(50, model.n_prototypes) * 2 + 1)
    contrib = model.fusion.contributions(sims)
    assert contrib.shape == (4, 71, model.n_prototypes)
    logits = model.fusion(sims)
    assert torch.allclose(contrib.sum(-1) + model.fusion.bias, logits, atol=1e-4)
    if head == "masked_nonneg":
        assert torch.all(model.fusion.effective_weight() >= 0)
    if head != "linear":
        assert torch.all(model.fusion.effective_weight()[model.fusion.mask == 0] == 0)


def test_own_class_mask_structure():
    model = _model("model.fusion.head=masked_nonneg", "model.fusion.mask=own_class")
    table = model.prototype_table()
    weight = model.fusion.effective_weight()
    labels = list(all_labels())
    allowed = weight > 0
    for c, code in enumerate(labels):
        own = table.index[table.class_code == code].to_numpy()
        assert set(np.nonzero(allowed[c].numpy())[0]) == set(own), code
    # initial weight 1/K on own prototypes
    norm = labels.index("NORM")
    assert torch.allclose(weight[norm, weight[norm] > 0], torch.full((3,), 1 / 3), atol=1e-5)


def test_sign_constrained_own_branch_signs():
    model = _model("model.fusion.head=sign_constrained", "model.fusion.mask=own_branch")
    _randomise(model)
    table = model.prototype_table()
    weight = model.fusion.effective_weight()
    branch, codes = table.branch.to_numpy(), table.class_code.to_numpy()
    for code, group in [("AFIB", "rhythm"), ("IMI", "morphology"), ("NORM", "global")]:
        row = weight[list(all_labels()).index(code)].detach().numpy()
        own = codes == code
        others = (branch == group) & ~own
        assert np.all(row[own] > 0) and np.all(row[others] < 0)
        assert np.all(row[branch != group] == 0)


def test_cross_branch_mask():
    model = _model("model.fusion.head=masked_nonneg", "model.fusion.mask=own_class_and_other_branches")
    table = model.prototype_table()
    mask = model.fusion.mask
    afib = list(all_labels()).index("AFIB")
    branch = table.branch.to_numpy()
    codes = table.class_code.to_numpy()
    expected = (branch != "rhythm") | (codes == "AFIB")
    np.testing.assert_array_equal(mask[afib].numpy() > 0, expected)


def test_per_branch_normalization_fit_and_state():
    model = _model()
    sl = model.branch_slices()
    sims = torch.randn(30, model.n_prototypes)
    sims[:, sl["morphology"]] = sims[:, sl["morphology"]] * 13 + 5
    state = model.fusion.fit_normalization(sims)
    morph = sims[:, sl["morphology"]].double().numpy()
    assert state["morphology"]["mean"] == pytest.approx(morph.mean())
    assert state["morphology"]["std"] == pytest.approx(morph.std(ddof=1))
    got = model.fusion.normalization_state()
    for g in state:
        assert got[g]["mean"] == pytest.approx(state[g]["mean"], rel=1e-6)
        assert got[g]["std"] == pytest.approx(state[g]["std"], rel=1e-6)
    assert model.fusion.fit_normalization(sims.numpy()) == state  # numpy input accepted
    normed = model.fusion.normalize(sims)[:, sl["morphology"]]
    assert normed.mean().item() == pytest.approx(0.0, abs=1e-5)
    # buffers travel with the state dict
    other = _model()
    other.load_state_dict(model.state_dict())
    assert other.fusion.normalization_state()["morphology"]["mean"] == pytest.approx(state["morphology"]["mean"])


def test_fusion_l1_and_gradients_reach_only_allowed_weights():
    model = _model("model.fusion.mask=own_class_and_other_branches")
    sims = torch.randn(3, model.n_prototypes)
    model.fusion(sims).sum().backward()
    grad = model.fusion.weight_raw.grad
    assert torch.all(grad[model.fusion.mask == 0] == 0)
    assert (model.fusion.mask == 0).any()
    assert model.fusion.l1_penalty().item() == pytest.approx(model.fusion.effective_weight().abs().sum().item())


def test_default_head_is_sign_constrained_over_all_prototypes():
    model = _model()
    table = model.prototype_table()
    weight = model.fusion.effective_weight().detach()
    own = torch.zeros_like(weight, dtype=torch.bool)
    labels = list(all_labels())
    own[[labels.index(c) for c in table.class_code], table["index"].tolist()] = True
    assert torch.all(weight[own] > 0) and torch.all(weight[~own] < 0)
