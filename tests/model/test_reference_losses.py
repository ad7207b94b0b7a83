"""The reference preset's model and losses against the reference formulas, written out independently
(loops over the indices of ../shared/reference/protoecgnet_reference.md §1.4, §3.2, §4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgproto.config import load_config
from ecgproto.model.branch import PrototypeBranch
from ecgproto.model.config import LossConfig
from ecgproto.model.losses import (
    BranchLoss,
    clustering_loss,
    contrastive_loss,
    diversity_loss,
    jaccard_cooccurrence,
    pos_weight_from_labels,
    separation_loss,
)

PRESET = Path(__file__).resolve().parents[2] / "configs" / "protoecgnet_reference.yaml"


def _preset(*overrides: str):
    return load_config(PRESET, list(overrides))


def _problem(seed: int = 0, b: int = 5, c: int = 3, k: int = 2, d: int = 6):
    rng = np.random.default_rng(seed)
    p = c * k
    identity = np.zeros((p, c))
    identity[np.arange(p), np.repeat(np.arange(c), k)] = 1
    sims = rng.normal(size=(b, p))
    targets = (rng.random((b, c)) < 0.4).astype(float)
    targets[0] = 0  # a sample without a positive class
    targets[1] = 1  # a sample without a negative class
    protos = rng.normal(size=(p, d))
    return sims, targets, identity, protos


# ---- reference formulas, one index at a time -----------------------------------------------
def ref_pos_weight(labels: np.ndarray) -> np.ndarray:
    n = labels.sum(0)
    total = n.sum()
    return np.array([(total - n[c]) / n[c] for c in range(len(n))])


def ref_cluster_sep(s: np.ndarray, y: np.ndarray, ident: np.ndarray) -> tuple[float, float]:
    b_n, p_n = s.shape
    c_n = y.shape[1]
    a_pos, a_neg = np.zeros((b_n, c_n)), np.zeros((b_n, c_n))
    for b in range(b_n):
        for c in range(c_n):
            m_pos = [ident[j, c] * y[b, c] for j in range(p_n)]
            a_pos[b, c] = max(s[b, j] * m_pos[j] for j in range(p_n))
            a_neg[b, c] = max(s[b, j] * (1 - m_pos[j]) for j in range(p_n))
    return -a_pos.sum() / (b_n * c_n), a_neg.sum() / (b_n * c_n)


def ref_diversity(protos: np.ndarray) -> float:
    p_hat = [v / np.linalg.norm(v) for v in protos.reshape(len(protos), -1)]
    n = len(p_hat)
    total = sum((float(p_hat[i] @ p_hat[j]) - (i == j)) ** 2 for i in range(n) for j in range(n))
    return total / n**2


def ref_contrastive(protos: np.ndarray, ident: np.ndarray, co: np.ndarray) -> float:
    p_hat = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    n = len(p_hat)
    S = np.clip(p_hat @ p_hat.T, -1 + 1e-6, 1 - 1e-6)
    m_pos = ident @ co @ ident.T
    m_neg = 1 - m_pos
    m_pos = m_pos / (m_pos.sum() + 1e-6)
    m_neg = m_neg / (m_neg.sum() + 1e-6)
    return -((S * m_pos).sum() - (S * m_neg).sum()) / math.sqrt(n)


# ---- the tests -------------------------------------------------------------------------------
def test_pos_weight_label_sum_rule_uncapped():
    labels = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    got = pos_weight_from_labels(labels, cap=0, rule="label_sum").numpy()
    # n = (4, 3, 1, 0), Σ n = 8: (8-4)/4, (8-3)/3, (8-1)/1; no positive -> 1 (the reference gave inf)
    np.testing.assert_allclose(got[:3], [1.0, 5 / 3, 7.0], rtol=1e-6)
    assert got[3] == 1.0
    rng = np.random.default_rng(1)
    many = (rng.random((200, 6)) < [0.5, 0.2, 0.1, 0.05, 0.02, 0.01]).astype(int)
    np.testing.assert_allclose(pos_weight_from_labels(many, cap=0, rule="label_sum").numpy(), ref_pos_weight(many),
                               rtol=1e-6)
    assert pos_weight_from_labels(many, cap=0, rule="label_sum").max() > 20  # uncapped
    assert pos_weight_from_labels(many, cap=20, rule="label_sum").max() == pytest.approx(20.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_clustering_and_separation(seed):
    s, y, ident, _ = _problem(seed)
    clst, sep = ref_cluster_sep(s, y, ident)
    st, yt, it = (torch.tensor(a, dtype=torch.float32) for a in (s, y, ident))
    assert clustering_loss(st, yt, it, "reference").item() == pytest.approx(clst, rel=1e-5, abs=1e-6)
    assert separation_loss(st, yt, it, "reference").item() == pytest.approx(sep, rel=1e-5, abs=1e-6)
    # the per-sample default is a different number on the same inputs
    assert clustering_loss(st, yt, it).item() != pytest.approx(clst, rel=1e-3)


def test_reference_diversity_over_all_pairs():
    _, _, ident, protos = _problem(3, c=4, k=3, d=5)
    got = diversity_loss(torch.tensor(protos, dtype=torch.float32), torch.tensor(ident, dtype=torch.float32), "all")
    assert got.item() == pytest.approx(ref_diversity(protos), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 4])
def test_reference_contrastive_includes_same_class_pairs(seed):
    _, _, ident, protos = _problem(seed, c=4, k=3, d=5)
    rng = np.random.default_rng(seed)
    labels = (rng.random((40, 4)) < [0.5, 0.3, 0.3, 0.0]).astype(int)  # class 3: no positive (L_33 = 0)
    co = jaccard_cooccurrence(labels).astype(np.float64)
    got = contrastive_loss(torch.tensor(protos, dtype=torch.float32), torch.tensor(ident, dtype=torch.float32),
                           torch.tensor(co, dtype=torch.float32), "all")
    assert got.item() == pytest.approx(ref_contrastive(protos, ident, co), rel=1e-5, abs=1e-7)
    # same-class pairs are attracted: pulling class 0's prototypes together lowers the loss
    tight = protos.copy()
    tight[1] = tight[0] + 0.01
    assert ref_contrastive(tight, ident, co) < ref_contrastive(protos, ident, co)
    with pytest.raises(ValueError, match="contrastive pairs"):
        contrastive_loss(torch.tensor(protos), torch.tensor(ident), torch.tensor(co), "same")


def test_reference_regulariser_prefers_correlated_same_class_prototypes():
    """Issue 15 item 1: 250·div(all) + 300·cnrst(all) has its minimum at a positive same-class cosine,
    while ecgproto's default (per-class diversity, different-class contrastive) is lowest at orthogonality."""
    d, k = 64, 5
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    ident = np.kron(np.eye(2), np.ones((k, 1)))
    co = np.array([[1.0, 0.0], [0.0, 1.0]])

    def protos(cos: float) -> np.ndarray:  # two classes, same-class cosine ``cos``, classes orthogonal
        rows = []
        for c in range(2):
            centre = basis[c * (k + 1)]
            for i in range(k):
                rows.append(math.sqrt(cos) * centre + math.sqrt(1 - cos) * basis[c * (k + 1) + 1 + i])
        return np.array(rows)

    grid = np.linspace(0.0, 0.95, 20)
    ref = [250 * ref_diversity(protos(g)) + 300 * ref_contrastive(protos(g), ident, co) for g in grid]
    t = dict(dtype=torch.float32)
    ours = [250 * diversity_loss(torch.tensor(protos(g), **t), torch.tensor(ident, **t), "class").item()
            + 300 * contrastive_loss(torch.tensor(protos(g), **t), torch.tensor(ident, **t), torch.tensor(co, **t)).item()
            for g in grid]
    assert 0.2 < grid[int(np.argmin(ref))] < 0.9
    assert grid[int(np.argmin(ours))] == 0.0


def test_preset_branch_similarity_is_scaled_cosine_mean_over_windows():
    cfg = _preset("model.branches.morphology.base_width=4", "model.branches.morphology.prototypes_per_class=2")
    mcfg = cfg.model.branches["morphology"]
    assert mcfg.pooling == "mean" and mcfg.similarity_scale == math.floor(math.sqrt(512 * 3)) / 3
    assert cfg.model.branches["global"].similarity_scale == math.floor(math.sqrt(512 * 32)) / 32
    torch.manual_seed(0)
    branch = PrototypeBranch("morphology", mcfg, ("IMI", "ASMI", "LVH"), 1000, 100).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        out = branch(x)
        z = out.latent[:, :, 0, :].numpy()  # (B, D, 32)
    protos = branch.prototype_vectors.detach().numpy().reshape(branch.n_prototypes, -1, 3)  # (P, D, T)
    eps = lambda a: math.sqrt(float((a * a).sum()) + 1e-4)  # noqa: E731
    n_windows = z.shape[2] - 3 + 1
    expected = np.zeros((2, branch.n_prototypes))
    for b in range(2):
        for j in range(branch.n_prototypes):
            scores = [13.0 * float((z[b, :, t:t + 3] * protos[j]).sum()) / (eps(z[b, :, t:t + 3]) * eps(protos[j]))
                      for t in range(n_windows)]
            expected[b, j] = sum(scores) / n_windows
    assert n_windows == 30
    np.testing.assert_allclose(out.similarities.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_preset_branch_loss_is_the_reference_objective():
    cfg = _preset("model.branches.global.base_width=4")
    loss_cfg = cfg.model.loss
    assert (loss_cfg.pos_weight_rule, loss_cfg.pos_weight_cap, loss_cfg.cluster_separation, loss_cfg.diversity_scope,
            loss_cfg.contrastive_pairs) == ("label_sum", 0.0, "reference", "all", "all")
    torch.manual_seed(1)
    branch = PrototypeBranch("global", cfg.model.branches["global"], ("DIG", "NORM", "EL"), 1000, 100)
    rng = np.random.default_rng(2)
    train = (rng.random((60, 3)) < [0.05, 0.5, 0.1]).astype(int)
    targets = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 1]])
    pw = pos_weight_from_labels(train, loss_cfg.pos_weight_cap, loss_cfg.pos_weight_rule)
    crit = BranchLoss(loss_cfg, branch.prototype_class_identity, jaccard_cooccurrence(train), pw)
    out = branch(torch.randn(4, 12, 1000))
    terms = crit(out, targets, branch)
    s, y = out.similarities.detach().numpy().astype(np.float64), targets.numpy().astype(np.float64)
    logits = out.logits.detach().numpy().astype(np.float64)
    w = ref_pos_weight(train)
    bce = np.mean(-(w * y * np.log(1 / (1 + np.exp(-logits))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-logits)))))
    ident = branch.prototype_class_identity.numpy().astype(np.float64)
    protos = branch.prototype_vectors.detach().numpy().astype(np.float64)
    clst, sep = ref_cluster_sep(s, y, ident)
    div = ref_diversity(protos)
    cnrst = ref_contrastive(protos, ident, jaccard_cooccurrence(train).astype(np.float64))
    expected = bce + 0.004 * clst + 0.0004 * sep + 250 * div + 300 * cnrst
    assert terms["bce"].item() == pytest.approx(bce, rel=1e-5)
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)


def test_preset_prototype_counts_and_reference_settings():
    cfg = _preset()
    b = cfg.model.branches
    assert [b[g].prototypes_per_class for g in ("rhythm", "morphology", "global")] == [5, 18, 7]
    assert [b[g].base_width for g in b] == [64, 64, 64] and b["rhythm"].kind == "1d"
    assert b["morphology"].dropout == 0.35 and b["rhythm"].add_on_activation == "sigmoid"
    assert cfg.model.fusion.head == "linear" and not cfg.model.fusion.normalize
    assert not cfg.data.standardize and cfg.train.batch_size == 32 and cfg.train.weight_decay == pytest.approx(1.7e-4)
    stages = {s.name: s for s in cfg.train.stages}
    assert list(stages) == ["joint", "projection", "last_layer"]
    assert (stages["joint"].epochs, stages["joint"].lr, stages["last_layer"].epochs) == (200, 1e-4, 20)
    assert not stages["joint"].train_last_layer and cfg.train.fusion_init == "default"


def test_loss_config_rejects_unknown_rules():
    from ecgproto.errors import ConfigError

    with pytest.raises(ConfigError, match="contrastive_pairs"):
        load_config(None, ["model.loss.contrastive_pairs=same_class"])
    with pytest.raises(ValueError, match="pos_weight rule"):
        pos_weight_from_labels(np.ones((3, 2)), 0, "patients")
    assert LossConfig().cluster_separation == "per_sample" and LossConfig().contrastive_pairs == "different_class"


def test_preset_trains_end_to_end_on_a_tiny_archive(tmp_path):
    """The preset's stages, losses and linear fusion run through ``train_model`` (tiny widths and epochs)."""
    import pandas as pd

    from ecgproto.train.run import train_model
    from tests.train.helpers import tiny_archive

    small = [f"model.branches.{g}.base_width=4" for g in ("rhythm", "morphology", "global")]
    small += ["model.branches.morphology.prototypes_per_class=1", "model.branches.rhythm.prototypes_per_class=1",
              "model.branches.global.prototypes_per_class=2", "model.branches.morphology.proto_time_len=2",
              "train.stages=[{name: joint, epochs: 1, lr: 0.001}, {name: projection}, "
              "{name: last_layer, epochs: 1, lr: 0.001}]", "train.fusion_epochs=2", "train.batch_size=8",
              "train.eval_batch_size=16", "train.threads=1", "seed=3"]
    cfg = _preset(*small)
    outcome = train_model(cfg, tiny_archive(tmp_path), tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    joint = log[(log["stage"] == "joint") & (log["epoch"] >= 0)]
    assert len(joint) == 3
    for term in ("train_bce", "train_clustering", "train_separation", "train_diversity", "train_contrastive"):
        assert np.isfinite(joint[term]).all(), term
    assert outcome.model.config.fusion.head == "linear" and outcome.model.config.loss.contrastive_pairs == "all"
    assert (tmp_path / "run" / "model.pt").is_file()
