"""Which prototypes made each predicted label: the top contributions per (record, label).

With the class-masked fusion heads (``masked_nonneg``, ``sign_constrained``) each label's
logit is exactly ``bias_c + Σ_j w_cj · s̃_j`` (s̃ = per-branch normalised similarity), so
``w_cj · s̃_j`` is prototype j's additive evidence. The prototypes shown are the
supporting ones (w_cj > 0: every connected prototype for ``masked_nonneg``, the label's own
prototypes for ``sign_constrained``) ranked by that contribution; the terms of the
negatively weighted other-class prototypes (``sign_constrained``) are summed in
``opposing_total``, so ``logit = bias + supporting_total + opposing_total``. With the dense
signed ``linear`` head the label's own prototypes are ranked by similarity and the weight
is shown beside it (``contribution`` is NaN). The ``ranking`` column says which rule was used.

Duplicate prototypes (:mod:`ecgproto.explain.duplicates`) are ranked as one: a group's
contribution is the sum of its supporting members' terms, the member with the largest term is
shown and ``members`` lists the group's supporting prototypes. ``driven_by`` says whether the
label's logit is carried mainly by its supporting prototypes or by the opposing terms
(dissimilarity to other classes' prototypes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ecgproto.data.labels import all_labels

RANK_BY_CONTRIBUTION = "contribution w·s̃ of the supporting prototypes (class-masked fusion head; exact terms of the logit)"
RANK_BY_SIMILARITY = "similarity of the label's own prototypes (linear fusion head: weight shown separately, not additive evidence)"

COLUMNS = (
    "record_index", "label", "label_index", "probability", "threshold", "predicted", "rank",
    "prototype", "branch", "local_index", "prototype_class", "similarity", "normalized_similarity",
    "weight", "contribution", "logit", "bias", "supporting_total", "opposing_total", "ranking",
    "members", "driven_by",
)


def selected_labels(probs: np.ndarray, thresholds: np.ndarray, fallback: int,
                    untrained: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record index, label index, predicted?) of the labels to explain.

    Labels with prob ≥ threshold; a record with none gets its ``fallback`` most probable
    labels (predicted = False), never one of the ``untrained`` labels (bool (L,): no training
    positive). Sorted by record, then probability (descending).
    """
    probs = np.asarray(probs, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(1, -1)
    if probs.ndim != 2 or thresholds.shape[1] != probs.shape[1]:
        raise ValueError(f"probs must be (N, L) and thresholds (L,); got {probs.shape} and {thresholds.shape[1:]}")
    blocked = np.zeros(probs.shape[1], bool) if untrained is None else np.asarray(untrained, bool)
    chosen = (probs >= thresholds) & ~blocked
    none = ~chosen.any(axis=1)
    if none.any() and fallback > 0:
        ranked = np.where(blocked, -np.inf, probs[none])
        order = np.argsort(-ranked, axis=1, kind="stable")[:, :min(fallback, int((~blocked).sum()))]
        extra = np.zeros((int(none.sum()), probs.shape[1]), dtype=bool)
        np.put_along_axis(extra, order, True, axis=1)
        chosen[none] = extra
    rec, lab = np.nonzero(chosen)
    key = np.lexsort((-probs[rec, lab], rec))
    rec, lab = rec[key], lab[key]
    return rec, lab, (probs[rec, lab] >= thresholds[0, lab])


@torch.no_grad()
def top_contributions(
    model: torch.nn.Module,
    similarities: np.ndarray | torch.Tensor,
    probs: np.ndarray,
    thresholds: np.ndarray,
    k: int = 3,
    fallback_labels: int | None = None,
    groups: np.ndarray | None = None,
    untrained: np.ndarray | None = None,
) -> pd.DataFrame:
    """Top-``k`` prototypes behind each predicted label of each record.

    similarities (N, P_total) raw pooled similarities (concatenated rhythm, morphology,
    global, as ``ModelOutput.similarities``); probs (N, 71); thresholds (71,). Labels
    explained: prob ≥ threshold, or the ``fallback_labels`` (default ``k``) most probable
    when a record has none. Returns one row per (record, label, rank) with columns
    :data:`COLUMNS`; ranks start at 1. ``logit``, ``supporting_total`` and ``opposing_total``
    are per (record, label), repeated on its rows (NaN for the linear head). ``groups`` (P,)
    duplicate-group ids (default: every prototype its own group); ``untrained`` (71,) bool
    labels never explained as a fallback.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    fusion = model.fusion
    sims = torch.as_tensor(np.asarray(similarities), dtype=torch.float32)
    weight = fusion.effective_weight().detach().float().cpu()  # (71, P)
    if sims.ndim != 2 or sims.shape[1] != weight.shape[1]:
        raise ValueError(f"similarities must be (N, {weight.shape[1]}) for this model, got {tuple(sims.shape)}")
    rec, lab, predicted = selected_labels(probs, thresholds, k if fallback_labels is None else fallback_labels, untrained)
    if len(rec) == 0:
        return pd.DataFrame(columns=list(COLUMNS))
    norm = fusion.normalize(sims).float()  # (N, P)
    r_t, l_t = torch.as_tensor(rec), torch.as_tensor(lab)
    masked = fusion.cfg.head != "linear"
    bias = fusion.bias.detach().float().cpu()
    if masked:
        terms = norm[r_t] * weight[l_t]  # (M, P) = w_cj · s̃_j for the selected pairs
        sign = getattr(fusion, "sign", fusion.mask).detach().cpu()[l_t]  # +1 supporting, −1 opposing, 0 unconnected
        allowed = sign > 0
        score = terms.clone()
        supporting = torch.where(allowed, terms, torch.zeros_like(terms)).sum(dim=1).numpy()
        opposing = torch.where(sign < 0, terms, torch.zeros_like(terms)).sum(dim=1).numpy()
        logit = (terms.sum(dim=1) + bias[l_t]).numpy()
    else:
        score = sims[r_t].clone()
        allowed = fusion.prototype_label.detach().cpu()[None, :] == l_t[:, None]
    n_proto = score.shape[1]
    group = torch.arange(n_proto) if groups is None else torch.as_tensor(np.asarray(groups), dtype=torch.long)
    if group.shape != (n_proto,):
        raise ValueError(f"groups must be ({n_proto},), got {tuple(group.shape)}")
    member_score = torch.where(allowed, score, torch.full_like(score, -torch.inf))
    if masked:  # a group's evidence is the sum of its supporting members' terms
        group_score = torch.zeros_like(score).index_add_(1, group, torch.where(allowed, score, torch.zeros_like(score)))
    else:  # similarity: a group counts once, at its best member
        group_score = torch.full_like(score, -torch.inf).scatter_reduce(1, group.expand_as(score), member_score, "amax")
    has_member = torch.zeros_like(score).index_add_(1, group, allowed.float()) > 0
    group_score = torch.where(has_member, group_score, torch.full_like(group_score, -torch.inf))
    kk = min(k, n_proto)
    top_val, top_group = torch.topk(group_score, kk, dim=1)  # (M, kk)
    keep = torch.isfinite(top_val)
    m_idx, r_idx = torch.nonzero(keep, as_tuple=True)
    chosen_group = top_group[m_idx, r_idx]
    in_group = (group[None, :] == chosen_group[:, None]) & allowed[m_idx]  # (R, P) supporting members
    best_member = torch.where(in_group, member_score[m_idx], torch.full_like(member_score[m_idx], -torch.inf)).argmax(dim=1)
    proto = best_member.numpy()
    m = m_idx.numpy()
    members = [tuple(int(j) for j in np.flatnonzero(row)) for row in in_group.numpy()]
    group_total = top_val[m_idx, r_idx].numpy()
    table = model.prototype_table().set_index("index")
    labels = np.asarray(all_labels())
    probs = np.asarray(probs, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    rec_m, lab_m = rec[m], lab[m]
    w = weight[torch.as_tensor(lab_m), torch.as_tensor(proto)].numpy()
    s_norm = norm[torch.as_tensor(rec_m), torch.as_tensor(proto)].numpy()
    frame = pd.DataFrame({
        "record_index": rec_m,
        "label": labels[lab_m],
        "label_index": lab_m,
        "probability": probs[rec_m, lab_m],
        "threshold": thresholds[lab_m],
        "predicted": predicted[m],
        "rank": r_idx.numpy() + 1,
        "prototype": proto,
        "branch": table.loc[proto, "branch"].to_numpy(),
        "local_index": table.loc[proto, "local_index"].to_numpy(),
        "prototype_class": table.loc[proto, "class_code"].to_numpy(),
        "similarity": sims[torch.as_tensor(rec_m), torch.as_tensor(proto)].numpy().astype(np.float64),
        "normalized_similarity": s_norm.astype(np.float64),
        "weight": w.astype(np.float64),
        "contribution": group_total.astype(np.float64) if masked else np.full(len(m), np.nan),
        "logit": logit[m].astype(np.float64) if masked else np.full(len(m), np.nan),
        "bias": bias[torch.as_tensor(lab_m)].numpy().astype(np.float64),
        "supporting_total": supporting[m].astype(np.float64) if masked else np.full(len(m), np.nan),
        "opposing_total": opposing[m].astype(np.float64) if masked else np.full(len(m), np.nan),
        "ranking": RANK_BY_CONTRIBUTION if masked else RANK_BY_SIMILARITY,
        "members": members,
        "driven_by": (np.where(opposing[m] > np.maximum(supporting[m], 0.0), "opposing", "supporting")
                      if masked else np.full(len(m), "")),
    })
    return frame.reset_index(drop=True)
