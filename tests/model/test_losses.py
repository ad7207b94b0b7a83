"""Each loss term against a value worked out by hand on a tiny example."""

import math

import numpy as np
import pytest
import torch

from ecgproto.model.branch import PrototypeBranch
from ecgproto.model.config import BranchConfig, LossConfig
from ecgproto.model.losses import (
    BranchLoss,
    bce_loss,
    clustering_loss,
    contrastive_loss,
    diversity_loss,
    fusion_loss,
    jaccard_cooccurrence,
    last_layer_l1,
    pos_weight_from_labels,
    separation_loss,
)

# 4 prototypes, 2 classes, K = 2: prototypes 0, 1 → class 0; 2, 3 → class 1.
IDENTITY = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
SIMS = torch.tensor([[0.1, 0.5, 0.9, 0.2], [0.3, 0.4, 0.6, 0.8], [0.7, 0.1, 0.2, 0.3]])
TARGETS = torch.tensor([[1.0, 0], [0, 0], [1, 1]])
# Unit-ish prototypes in 2D: class 0 = [1,0], [1,1]; class 1 = [0,1], [2,0].
PROTOS = torch.tensor([[1.0, 0], [1, 1], [0, 1], [2, 0]])


def test_jaccard_cooccurrence():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    co = jaccard_cooccurrence(labels)
    # n = (3, 3, 0); |0∩1| = 2, |0∪1| = 4
    expected = np.array([[1, 0.5, 0], [0.5, 1, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(co, expected, atol=1e-7)
    np.testing.assert_allclose(jaccard_cooccurrence(torch.tensor(labels)), expected, atol=1e-7)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        jaccard_cooccurrence(np.zeros(3))


def test_pos_weight_standard_formula_cap_and_zero_guard():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_allclose(pos_weight_from_labels(labels, cap=100).numpy(), [1 / 3, 1 / 3, 1.0], rtol=1e-6)
    rare = np.zeros((10, 1))
    rare[0] = 1
    assert pos_weight_from_labels(rare, cap=100).item() == pytest.approx(9.0)
    assert pos_weight_from_labels(rare, cap=5).item() == pytest.approx(5.0)


def test_bce_with_pos_weight():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (2 * math.log(2) + math.log(1 + math.e**2)) / 2
    assert bce_loss(logits, targets, torch.tensor([2.0, 1.0])).item() == pytest.approx(expected, rel=1e-6)


def test_clustering_excludes_samples_without_positive():
    # sample 0: own prototypes {0,1} → 0.5; sample 1: no positive → excluded; sample 2: all → 0.7
    assert clustering_loss(SIMS, TARGETS, IDENTITY).item() == pytest.approx(-(0.5 + 0.7) / 2)
    assert clustering_loss(SIMS[1:2], TARGETS[1:2], IDENTITY).item() == 0.0


def test_separation_uses_only_negative_classes():
    # sample 0: class-1 prototypes → 0.9; sample 1: every prototype → 0.8; sample 2: no negative → excluded
    assert separation_loss(SIMS, TARGETS, IDENTITY).item() == pytest.approx((0.9 + 0.8) / 2)


def test_diversity_per_class_and_all():
    # class 0: cos([1,0],[1,1]) = 1/√2 → ‖G−I‖² = 2·0.5 = 1, /K² = 0.25; class 1 orthogonal → 0
    assert diversity_loss(PROTOS, IDENTITY, "class").item() == pytest.approx(0.125, rel=1e-6)
    # all pairs: cos² = ab .5, ac 0, ad 1, bc .5, bd .5, cd 0 → 2·2.5 / 16
    assert diversity_loss(PROTOS, IDENTITY, "all").item() == pytest.approx(5 / 16, rel=1e-6)


def test_contrastive_hand_computed():
    protos = torch.tensor([[1.0, 0], [0.6, 0.8], [0, 1]])  # one prototype per class
    identity = torch.eye(3)
    co = torch.tensor([[1, 0.5, 0], [0.5, 1, 0.25], [0, 0.25, 1]])
    # cosines: ab .6, ac 0, bc .8. pos weights ab .5, bc .25 (sum 1.5 over both triangles)
    pos = 2 * (0.6 * 0.5 + 0.8 * 0.25) / 1.5
    # neg weights ab .5, ac 1, bc .75 (sum 4.5)
    neg = 2 * (0.6 * 0.5 + 0.8 * 0.75) / 4.5
    expected = -(pos - neg) / math.sqrt(3)
    assert contrastive_loss(protos, identity, co).item() == pytest.approx(expected, abs=1e-5)


def test_last_layer_l1_off_class_only():
    weight = torch.tensor([[1.0, 1.0, -0.5, -0.5], [-0.5, 2.0, 1.0, 1.0]])
    assert last_layer_l1(weight, IDENTITY).item() == pytest.approx(0.5 + 0.5 + 0.5 + 2.0)


def _tiny_branch() -> PrototypeBranch:
    torch.manual_seed(0)
    cfg = BranchConfig(base_width=4, prototypes_per_class=2)
    return PrototypeBranch("global", cfg, ("DIG", "NORM", "EL"), 1000, 100)


def test_branch_loss_combines_weighted_terms():
    branch = _tiny_branch()
    out = branch(torch.randn(4, 12, 1000))
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]])
    co = jaccard_cooccurrence(targets.numpy())
    cfg = LossConfig(clustering=0.5, separation=0.25, diversity=2.0, contrastive=3.0)
    terms = BranchLoss(cfg, branch.prototype_class_identity, co)(out, targets, branch)
    assert set(terms) == {"bce", "clustering", "separation", "diversity", "contrastive", "total"}
    expected = (terms["bce"] + 0.5 * terms["clustering"] + 0.25 * terms["separation"]
                + 2.0 * terms["diversity"] + 3.0 * terms["contrastive"])
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    terms["total"].backward()
    assert branch.prototype_vectors.grad is not None

    off = LossConfig(clustering=0, separation=0, diversity=0, contrastive=0)
    only_bce = BranchLoss(off, branch.prototype_class_identity, None)(out, targets, branch)
    assert set(only_bce) == {"bce", "total"}
    last = BranchLoss(LossConfig(l1_last_layer=0.1), branch.prototype_class_identity, co)(
        out, targets, branch, stage="last_layer")
    # initial last layer: every off-class weight is -0.5; 6 prototypes × 2 other classes
    assert last["l1_last_layer"].item() == pytest.approx(6 * 2 * 0.5)
    with pytest.raises(ValueError, match="co-occurrence"):
        BranchLoss(LossConfig(), branch.prototype_class_identity, None)


def test_fusion_loss():
    logits = torch.zeros(2, 3)
    targets = torch.ones(2, 3)
    terms = fusion_loss(logits, targets, torch.tensor(10.0), LossConfig(l1_fusion=0.01))
    assert terms["total"].item() == pytest.approx(math.log(2) + 0.1, rel=1e-6)


def _naive_contrastive(protos: np.ndarray, classes: np.ndarray, co: np.ndarray) -> float:
    """Pairwise loop over prototypes, written independently of the vectorised version."""
    p = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    pos_num = pos_den = neg_num = neg_den = 0.0
    for j in range(len(p)):
        for k in range(len(p)):
            if classes[j] == classes[k]:
                continue
            s = float(p[j] @ p[k])
            w = co[classes[j], classes[k]]
            pos_num, pos_den = pos_num + s * w, pos_den + w
            neg_num, neg_den = neg_num + s * (1 - w), neg_den + (1 - w)
    return -(pos_num / pos_den - neg_num / neg_den) / math.sqrt(len(p))


def test_contrastive_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(12, 5))
    classes = np.repeat(np.arange(4), 3)
    labels = rng.integers(0, 2, size=(40, 4))
    co = jaccard_cooccurrence(labels)
    identity = torch.nn.functional.one_hot(torch.as_tensor(classes), 4).float()
    got = contrastive_loss(torch.tensor(protos, dtype=torch.float32), identity, torch.tensor(co)).item()
    assert got == pytest.approx(_naive_contrastive(protos, classes, co), abs=1e-5)


def test_diversity_fast_path_equals_general_path():
    rng = np.random.default_rng(1)
    protos = torch.tensor(rng.normal(size=(12, 5)), dtype=torch.float32)
    identity = torch.nn.functional.one_hot(torch.arange(4).repeat_interleave(3), 4).float()
    perm = torch.tensor(rng.permutation(12))
    fast = diversity_loss(protos, identity, "class")  # class-major → batched Gram
    general = diversity_loss(protos[perm], identity[perm], "class")  # shuffled → masked full Gram
    assert fast.item() == pytest.approx(general.item(), rel=1e-5)


def test_joint_loss_adds_the_last_layer_l1_only_when_it_trains_the_last_layer():
    branch = _tiny_branch()
    out = branch(torch.randn(4, 12, 1000))
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]])
    loss = BranchLoss(LossConfig(l1_last_layer=0.1), branch.prototype_class_identity,
                      jaccard_cooccurrence(targets.numpy()))
    assert "l1_last_layer" not in loss(out, targets, branch)
    with_l1 = loss(out, targets, branch, with_last_layer_l1=True)
    assert with_l1["l1_last_layer"].item() == pytest.approx(6 * 2 * 0.5)
