"""Loss terms of a prototype branch and of the fusion head (reference notes §4, bugs §11 fixed).

Notation: similarities s (B, P) pooled per prototype, targets y (B, C) in {0, 1},
prototype class identity I (P, C) one-hot (every prototype belongs to exactly one class).
Every term has the reference's rule as an option (``LossConfig``; configs/protoecgnet_reference.yaml
selects them all); the defaults are ecgproto's, measured in reports/benchmarks/ablation.md.

- ``bce_loss``: mean binary cross-entropy with logits over B×C with ``pos_weight``.
- ``pos_weight_from_labels``: rule "records" (default) (N − n_c)/n_c; rule "label_sum"
  (reference §1.4) (Σ_k n_k − n_c)/n_c; capped at ``cap`` (0 = uncapped, the reference). A class
  with no training positive gets 1 under both rules (the reference gave inf, a NaN loss).
- ``clustering_loss`` / ``separation_loss``, rule "per_sample" (default): −mean over samples
  with ≥1 positive class of max_{j: class(j) positive} s_bj; mean over samples with ≥1 negative
  class of max_{j: class(j) negative} s_bj (samples without such a class are left out; a batch
  without any gives 0). Rule "reference" (§4.3): masks per (sample, class) M⁺_bjc = I_jc·y_bc,
  M⁻ = 1 − M⁺; A±_bc = max_j s_bj·M±_bjc (masked entries are 0 and take part in the max);
  clustering = −mean_{b,c} A⁺_bc, separation = mean_{b,c} A⁻_bc (diluted clustering; the
  separation also hits the sample's other true classes' prototypes).
- ``diversity_loss``: orthogonality of L2-normalised prototypes. scope "class" (default):
  mean over classes of ‖P̂_c P̂_cᵀ − I_K‖²_F / K² among each class's K prototypes; scope
  "all" (reference §4.5): ‖P̂P̂ᵀ − I_P‖²_F / P² over all prototypes.
- ``contrastive_loss``: with the class co-occurrence L (C, C) (``jaccard_cooccurrence``) and
  cosine matrix S = P̂P̂ᵀ: M_pos[j,k] = L[c(j), c(k)], M_neg = 1 − M_pos, each normalised to
  sum 1 (+1e-6); loss = −(Σ S⊙M̃_pos − Σ S⊙M̃_neg)/√P. pairs "different_class" (default): only
  pairs of prototypes of different classes (same-class pairs are left to the diversity term);
  pairs "all" (reference §4.6): every pair including same-class pairs and j = k, S clamped to
  ±(1 − 1e-6) — the attraction of same-class pairs then fights the diversity term.
- ``last_layer_l1``: Σ |W_cj|(1 − I_jc) (off-class connections of the last layer).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgproto.model.branch import BranchOutput, PrototypeBranch
from ecgproto.model.config import LossConfig

def jaccard_cooccurrence(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Training labels (N, C) in {0,1} → Jaccard co-occurrence (C, C) float32:
    |c ∩ c'| / max(|c ∪ c'|, 1e-6); diagonal 1 for classes with positives, 0 otherwise."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be shaped (N, C), got {y.shape}")
    y = (y > 0).astype(np.float64)
    inter = y.T @ y
    counts = np.diag(inter)
    union = counts[:, None] + counts[None, :] - inter
    return (inter / np.maximum(union, 1e-6)).astype(np.float32)


def pos_weight_from_labels(labels: np.ndarray | torch.Tensor, cap: float, rule: str = "records") -> torch.Tensor:
    """Training labels (N, C) → BCE pos_weight (C,) = min((T − n_c)/n_c, cap) (cap 0 = none); 1 where n_c = 0.

    T = N records (rule "records") or Σ_k n_k, the number of positive labels (rule "label_sum", the reference).
    """
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    y = (y > 0).astype(np.float64)
    pos = y.sum(axis=0)
    if rule == "records":
        n = y.shape[0]
    elif rule == "label_sum":
        n = pos.sum()
    else:
        raise ValueError(f"unknown pos_weight rule {rule!r}; expected 'records' or 'label_sum'")
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0)
    if cap > 0:
        w = np.minimum(w, cap)
    return torch.as_tensor(w, dtype=torch.float32)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE with logits over (B, C); ``pos_weight`` (C,) scales the positive terms."""
    return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=pos_weight)


def _masked_max(similarities: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise max of s (B, P) over mask (B, P); returns (max (B,), row has any (B,))."""
    filled = similarities.masked_fill(~mask, float("-inf"))
    best = filled.amax(dim=1)
    has = mask.any(dim=1)
    return torch.where(has, best, torch.zeros_like(best)), has


def _reference_masked_max(similarities: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor,
                          positive: bool) -> torch.Tensor:
    """Reference §4.3: A_bc = max_j s_bj·M_bjc with M⁺ = I_jc·y_bc (or M⁻ = 1 − M⁺) → (B, C)."""
    mask = identity.to(similarities)[None, :, :] * targets.to(similarities)[:, None, :]  # (B, P, C)
    if not positive:
        mask = 1.0 - mask
    return (similarities[:, :, None] * mask).amax(dim=1)


def clustering_loss(similarities: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor,
                    rule: str = "per_sample") -> torch.Tensor:
    """−mean_b max_{j: class(j) ∈ positives(b)} s_bj over samples with a positive class (0 if none);
    rule "reference": −mean over B×C of max_j s_bj·I_jc·y_bc."""
    if rule == "reference":
        return -_reference_masked_max(similarities, targets, identity, True).mean()
    if rule != "per_sample":
        raise ValueError(f"unknown clustering/separation rule {rule!r}; expected 'per_sample' or 'reference'")
    own = (targets.float() @ identity.T) > 0  # (B, P): prototype belongs to a positive class
    best, has = _masked_max(similarities, own)
    if not bool(has.any()):
        return similarities.sum() * 0.0
    return -best[has].mean()


def separation_loss(similarities: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor,
                    rule: str = "per_sample") -> torch.Tensor:
    """mean_b max_{j: class(j) ∉ positives(b)} s_bj over samples with a negative class (0 if none);
    rule "reference": mean over B×C of max_j s_bj·(1 − I_jc·y_bc)."""
    if rule == "reference":
        return _reference_masked_max(similarities, targets, identity, False).mean()
    if rule != "per_sample":
        raise ValueError(f"unknown clustering/separation rule {rule!r}; expected 'per_sample' or 'reference'")
    other = ((1.0 - targets.float()) @ identity.T) > 0
    best, has = _masked_max(similarities, other)
    if not bool(has.any()):
        return similarities.sum() * 0.0
    return best[has].mean()


def _normalized(prototypes: torch.Tensor) -> torch.Tensor:
    return F.normalize(prototypes.reshape(prototypes.shape[0], -1), dim=1)


def _class_blocks(p_hat: torch.Tensor, identity: torch.Tensor) -> torch.Tensor | None:
    """(P, D) → (C, K, D) when prototypes are class-major with K per class (as branches build them)."""
    classes = identity.argmax(dim=1)
    n_classes = identity.shape[1]
    if p_hat.shape[0] % n_classes:
        return None
    k = p_hat.shape[0] // n_classes
    expected = torch.arange(n_classes, device=classes.device).repeat_interleave(k)
    if not torch.equal(classes, expected):
        return None
    return p_hat.reshape(n_classes, k, -1)


def diversity_loss(prototypes: torch.Tensor, identity: torch.Tensor, scope: str = "class") -> torch.Tensor:
    """Orthogonality of normalised prototypes (P, D): per class (mean of ‖Gram_c − I‖²_F/K²) or over all.

    Per class costs C·K²·D (a batched Gram per class), not P²·D.
    """
    p_hat = _normalized(prototypes)
    if scope == "all":
        n = p_hat.shape[0]
        gram = p_hat @ p_hat.T
        return ((gram - torch.eye(n, device=gram.device)) ** 2).sum() / n**2
    if scope != "class":
        raise ValueError(f"unknown diversity scope {scope!r}; expected 'class' or 'all'")
    blocks = _class_blocks(p_hat, identity)
    if blocks is not None:
        k = blocks.shape[1]
        gram = blocks @ blocks.transpose(1, 2)  # (C, K, K)
        return ((gram - torch.eye(k, device=gram.device)) ** 2).sum(dim=(1, 2)).mean() / k**2
    same = identity @ identity.T  # (P, P) 1 for same-class pairs (incl. diagonal)
    gram = p_hat @ p_hat.T
    per_class = same.sum(dim=1)  # K of each prototype's class
    sq = ((gram - torch.eye(gram.shape[0], device=gram.device)) ** 2) * same
    # Σ over rows of class c of (row sum / K_c²) = ‖Gram_c − I‖²_F / K_c²; then mean over classes.
    per_proto = sq.sum(dim=1) / per_class**2
    n_classes = int((identity.sum(dim=0) > 0).sum())
    return per_proto.sum() / n_classes


def contrastive_loss(prototypes: torch.Tensor, identity: torch.Tensor, cooccurrence: torch.Tensor,
                     pairs: str = "different_class") -> torch.Tensor:
    """Co-occurrence-weighted attraction/repulsion between prototypes (P, D) → scalar.

    ``pairs``: "different_class" (pairs of prototypes of different classes) or "all" (every pair
    including same-class pairs and j = k, the reference). The pair weights depend only on the two
    classes, so Σ_jk S_jk·L[c(j),c(k)] equals Σ_cc' L_cc'·<m_c, m_c'> with class sums
    m_c = Σ_{j∈c} p̂_j: C²·D work instead of P²·D. Under "all" the reference's clamp of S to
    ±(1 − 1e-6) is applied to the diagonal (j = k) exactly; off the diagonal it only differs for
    exactly parallel prototypes, by ≤ 1e-6 per pair, and is not reproduced. Under
    "different_class" no cosine is clamped.
    """
    if pairs not in ("different_class", "all"):
        raise ValueError(f"unknown contrastive pairs {pairs!r}; expected 'different_class' or 'all'")
    p_hat = _normalized(prototypes)
    ident = identity.to(p_hat)
    co = cooccurrence.to(p_hat)
    keep = torch.ones_like(co)
    if pairs == "different_class":
        keep = keep - torch.eye(co.shape[0], device=co.device, dtype=co.dtype)
    sums = ident.T @ p_hat  # (C, D) class sums of normalised prototypes
    dots = sums @ sums.T  # (C, C): Σ_{j∈c, k∈c'} cos(p_j, p_k)
    counts = ident.sum(dim=0)
    n_pairs = counts[:, None] * counts[None, :] * keep  # number of prototype pairs per class pair
    pos_w, neg_w = co * keep, (1.0 - co) * keep
    pos_num, neg_num = (dots * pos_w).sum(), (dots * neg_w).sum()
    if pairs == "all":  # reference clamp of S_jj = 1 to 1 − 1e-6, weighted by M_pos[j,j] / M_neg[j,j]
        excess = (p_hat * p_hat).sum(dim=1).sub(1.0 - 1e-6).clamp(min=0)  # (P,)
        own = (ident @ co * ident).sum(dim=1)  # L[c(j), c(j)]
        pos_num = pos_num - (excess * own).sum()
        neg_num = neg_num - (excess * (1.0 - own)).sum()
    pos = pos_num / ((n_pairs * pos_w).sum() + 1e-6)
    neg = neg_num / ((n_pairs * neg_w).sum() + 1e-6)
    return -(pos - neg) / math.sqrt(p_hat.shape[0])


def last_layer_l1(weight: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """Σ |W_cj| (1 − I_jc) for a last layer weight (C, P) and identity (P, C)."""
    return (weight.abs() * (1.0 - identity.T)).sum()


class BranchLoss(nn.Module):
    """Weighted sum of a branch's loss terms; returns a dict of the terms and ``total``.

    ``forward(out, targets, branch)``: the joint/warm-up objective is
    BCE + clustering + separation + diversity + contrastive (each weighted by ``LossConfig``,
    weight 0 = not computed), plus the off-class L1 of the last layer when the joint stage trains
    it (``with_last_layer_l1``); ``stage="last_layer"``: BCE + off-class L1 of the last layer; ``stage="warmup"``: BCE only.
    """

    def __init__(self, cfg: LossConfig, identity: torch.Tensor, cooccurrence: np.ndarray | torch.Tensor | None,
                 pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("identity", identity.detach().float().clone())
        n_classes = identity.shape[1]
        if cfg.contrastive > 0:
            if cooccurrence is None:
                raise ValueError("the contrastive loss needs the label co-occurrence matrix (jaccard_cooccurrence "
                                 "of the training labels); set model.loss.contrastive=0 to switch it off")
            co = torch.as_tensor(np.asarray(cooccurrence), dtype=torch.float32)
            if co.shape != (n_classes, n_classes):
                raise ValueError(f"co-occurrence must be ({n_classes}, {n_classes}), got {tuple(co.shape)}")
        else:
            co = torch.zeros(n_classes, n_classes)
        self.register_buffer("cooccurrence", co)
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.detach().float().clone())

    def forward(self, out: BranchOutput, targets: torch.Tensor, branch: PrototypeBranch,
                stage: str = "joint", with_last_layer_l1: bool = False) -> dict[str, torch.Tensor]:
        """Branch output for targets (B, C_g) → {term: scalar tensor, ..., "total": weighted sum}."""
        logits, similarities = out.logits, out.similarities
        prototypes = branch.prototype_vectors
        last_layer_weight = branch.last_layer.weight
        cfg = self.cfg
        terms: dict[str, torch.Tensor] = {"bce": bce_loss(logits, targets, self.pos_weight)}
        total = terms["bce"]
        if stage == "last_layer" or (stage == "joint" and with_last_layer_l1):
            if cfg.l1_last_layer > 0:
                terms["l1_last_layer"] = last_layer_l1(last_layer_weight, self.identity)
                total = total + cfg.l1_last_layer * terms["l1_last_layer"]
        if stage == "joint":
            weighted = {
                "clustering": (cfg.clustering, lambda: clustering_loss(similarities, targets, self.identity,
                                                                       cfg.cluster_separation)),
                "separation": (cfg.separation, lambda: separation_loss(similarities, targets, self.identity,
                                                                       cfg.cluster_separation)),
                "diversity": (cfg.diversity, lambda: diversity_loss(prototypes, self.identity, cfg.diversity_scope)),
                "contrastive": (cfg.contrastive,
                                lambda: contrastive_loss(prototypes, self.identity, self.cooccurrence,
                                                         cfg.contrastive_pairs)),
            }
            for name, (weight, fn) in weighted.items():
                if weight > 0:
                    terms[name] = fn()
                    total = total + weight * terms[name]
        elif stage not in ("warmup", "last_layer"):
            raise ValueError(f"unknown loss stage {stage!r}; expected 'warmup', 'joint' or 'last_layer'")
        terms["total"] = total
        return terms


def fusion_loss(logits: torch.Tensor, targets: torch.Tensor, l1_penalty: torch.Tensor, cfg: LossConfig,
                pos_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Fusion objective: BCE (71 labels) + l1_fusion · Σ|w| (``FusionHead.l1_penalty()``)."""
    terms = {"bce": bce_loss(logits, targets, pos_weight), "l1_fusion": l1_penalty}
    terms["total"] = terms["bce"] + cfg.l1_fusion * l1_penalty
    return terms
