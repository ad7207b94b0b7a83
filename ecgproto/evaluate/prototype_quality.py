"""Prototype quality: source-ECG diversity, similarity spread, near-duplicates, class agreement.

Works on plain arrays: the prototype table (one row per prototype with its branch, class
and provenance), the prototype vectors per branch, and test-set similarities/contributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def near_duplicates(vectors: np.ndarray, threshold: float) -> pd.DataFrame:
    """Pairs (i < j) of prototype vectors (P, …) with cosine similarity > ``threshold``.

    Returns DataFrame(i, j, cosine) with indices local to ``vectors``.
    """
    u = _unit_rows(vectors)
    cos = u @ u.T
    i, j = np.nonzero(np.triu(cos > threshold, k=1))
    return pd.DataFrame({"i": i, "j": j, "cosine": cos[i, j]})


def class_spread(table: pd.DataFrame, vectors: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per class: number of prototypes, unique source ECGs, projection-similarity spread and
    the pairwise cosine similarity among the class's prototype vectors.

    ``table`` has columns branch, local_index, class_code and optionally ecg_id, similarity.
    """
    rows = []
    for (branch, code), grp in table.groupby(["branch", "class_code"], sort=False):
        u = _unit_rows(vectors[branch][grp["local_index"].to_numpy()])
        cos = u @ u.T
        off = cos[np.triu_indices(len(u), k=1)]
        sim = grp["similarity"].to_numpy(dtype=np.float64) if "similarity" in grp else np.array([np.nan])
        rows.append({
            "branch": branch, "class_code": code, "n_prototypes": len(grp),
            "unique_source_ecgs": int(grp["ecg_id"].nunique()) if "ecg_id" in grp else np.nan,
            "projection_similarity_min": float(np.nanmin(sim)) if np.isfinite(sim).any() else np.nan,
            "projection_similarity_max": float(np.nanmax(sim)) if np.isfinite(sim).any() else np.nan,
            "projection_similarity_std": float(np.nanstd(sim)) if np.isfinite(sim).any() else np.nan,
            "pairwise_cosine_mean": float(off.mean()) if len(off) else np.nan,
            "pairwise_cosine_max": float(off.max()) if len(off) else np.nan,
        })
    return pd.DataFrame(rows)


def top_prototype_agreement(
    scores: np.ndarray, proto_label: np.ndarray, predicted: np.ndarray,
    allowed: np.ndarray | None = None,
) -> tuple[float, np.ndarray, int]:
    """Fraction of predictions (record i, label c predicted) whose most similar prototype has class c.

    ``scores`` (N, P) e.g. raw prototype similarities; ``allowed`` (C, P) bool restricts,
    per label, which prototypes compete (e.g. those of the label's branch; None = all);
    ``proto_label`` (P,) label index of each prototype; ``predicted`` (N, C) bool.
    Returns (overall fraction, per-label fraction (C,), number of predictions).
    """
    s = np.asarray(scores, dtype=np.float64)
    pred = np.asarray(predicted, dtype=bool)
    n_labels = pred.shape[1]
    per_label = np.full(n_labels, np.nan)
    hits = total = 0
    for c in range(n_labels):
        rows = np.flatnonzero(pred[:, c])
        if len(rows) == 0:
            continue
        cand = s[rows]
        if allowed is not None:
            cand = np.where(allowed[c][None, :], cand, -np.inf)
        top = cand.argmax(1)
        ok = proto_label[top] == c
        per_label[c] = ok.mean()
        hits += int(ok.sum())
        total += len(rows)
    return (hits / total if total else float("nan")), per_label, total


def top_contribution_agreement(
    norm_similarities: np.ndarray, weight: np.ndarray, proto_label: np.ndarray, predicted: np.ndarray
) -> tuple[float, np.ndarray, int]:
    """Fraction of predictions whose largest fusion contribution w_cj · s̃_j comes from a prototype of class c.

    ``norm_similarities`` (N, P) the fusion head's normalised similarities s̃; ``weight``
    (C, P) its effective weights; ``proto_label`` (P,); ``predicted`` (N, C) bool. Loops over
    labels only (vectorised over records and prototypes). Returns (overall, per label (C,), n).
    """
    s = np.asarray(norm_similarities, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    pred = np.asarray(predicted, dtype=bool)
    per_label = np.full(pred.shape[1], np.nan)
    hits = total = 0
    for c in range(pred.shape[1]):
        rows = np.flatnonzero(pred[:, c])
        if len(rows) == 0:
            continue
        top = (s[rows] * w[c][None, :]).argmax(1)
        ok = proto_label[top] == c
        per_label[c] = ok.mean()
        hits += int(ok.sum())
        total += len(rows)
    return (hits / total if total else float("nan")), per_label, total


def prototype_quality(
    table: pd.DataFrame, vectors: dict[str, np.ndarray], near_duplicate_cosine: float
) -> dict[str, Any]:
    """Summary of projected prototypes: unique source ECGs (overall, per branch), near-duplicates.

    ``table``: one row per prototype (columns index, branch, local_index, class_code and,
    after projection, ecg_id and similarity); ``vectors``: branch → (P_g, …) prototype vectors.
    """
    out: dict[str, Any] = {"n_prototypes": int(len(table))}
    projected = "ecg_id" in table and table["ecg_id"].notna().any()
    out["projected"] = bool(projected)
    if projected:
        out["unique_source_ecgs"] = int(table["ecg_id"].nunique())
        out["unique_source_ecgs_per_branch"] = {
            str(b): int(g["ecg_id"].nunique()) for b, g in table.groupby("branch", sort=False)}
    dups = []
    for branch, v in vectors.items():
        local = table[table["branch"] == branch].set_index("local_index")
        d = near_duplicates(v, near_duplicate_cosine)
        for r in d.itertuples(index=False):
            dups.append({
                "branch": branch, "prototype_a": int(local.loc[r.i, "index"]) if r.i in local.index else int(r.i),
                "prototype_b": int(local.loc[r.j, "index"]) if r.j in local.index else int(r.j),
                "class_a": local.loc[r.i, "class_code"] if r.i in local.index else "",
                "class_b": local.loc[r.j, "class_code"] if r.j in local.index else "",
                "cosine": float(r.cosine),
            })
    out["near_duplicate_cosine"] = near_duplicate_cosine
    out["n_near_duplicate_pairs"] = len(dups)
    out["near_duplicates"] = pd.DataFrame(dups, columns=["branch", "prototype_a", "prototype_b", "class_a", "class_b", "cosine"])
    out["class_spread"] = class_spread(table, vectors)
    return out
