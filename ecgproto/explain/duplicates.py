"""Groups of duplicate prototypes: same source window, or (nearly) the same vector.

Two prototypes of one branch are duplicates when they were projected onto the same source
window (same ECG, window and leads) or their vectors have cosine ≥ ``cosine`` (default 0.99).
Groups are the connected components of that relation; each group is named by its lowest
prototype index. Explanations and the gallery show one prototype per group and say which
others it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DUPLICATE_COSINE = 0.99


def _source_key(p: dict[str, Any]) -> tuple | None:
    if p.get("ecg_id") is None:
        return None
    return (p["branch"], int(p["ecg_id"]), p.get("window_start"), p.get("window_end"), p.get("lead_start"), p.get("lead_end"))


def duplicate_groups(vectors: Sequence[np.ndarray], provenance: Sequence[dict[str, Any]],
                     cosine: float = DUPLICATE_COSINE) -> np.ndarray:
    """Group id (lowest member index) of every prototype, (P_total,) int64.

    ``vectors``: per branch (P_g, D_g), in global prototype order; ``provenance``: the
    checkpoint's ``meta["prototypes"]`` rows (``index``, ``branch``, ``ecg_id``, window, leads).
    """
    n = sum(len(v) for v in vectors)
    rows, cols = [], []
    offset = 0
    for vec in vectors:
        v = np.asarray(vec, dtype=np.float64)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        i, j = np.nonzero(np.triu(v @ v.T >= cosine, k=1))
        rows.append(i + offset)
        cols.append(j + offset)
        offset += len(v)
    first: dict[tuple, int] = {}
    for p in provenance:
        key = _source_key(p)
        if key is None:
            continue
        idx = int(p["index"])
        if key in first:
            rows.append(np.array([first[key]]))
            cols.append(np.array([idx]))
        else:
            first[key] = idx
    r, c = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    lowest = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(lowest, comp, np.arange(n))
    return lowest[comp]


def model_duplicate_groups(model: torch.nn.Module, meta: dict[str, Any], cosine: float = DUPLICATE_COSINE) -> np.ndarray:
    """:func:`duplicate_groups` for a prototype model and its checkpoint meta."""
    vectors = [b.prototype_vectors.detach().cpu().numpy() for b in model.branches.values()]
    return duplicate_groups(vectors, meta.get("prototypes") or [], cosine)


__all__ = ["DUPLICATE_COSINE", "duplicate_groups", "model_duplicate_groups"]
