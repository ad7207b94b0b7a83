"""Prototype projection ("push"): replace each prototype by its nearest latent window
of a training ECG that carries one of the prototype's classes, with provenance.

Vectorised over batches: pass 1 keeps, per prototype, the top-K (similarity, ECG row,
window) candidates with a masked max over each batch; the selection is either the
best candidate or, with ``unique=True``, a greedy assignment by similarity in which no
two prototypes of a branch share a source ECG; pass 2 recomputes the latent windows of
the (at most P) chosen ECGs and copies them into ``prototype_vectors``. Similarities,
windows and pooling are the model's own (``window_similarities``, ``latent_windows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ecgproto.data.labels import label_table
from ecgproto.progress import progress
from ecgproto.train.branch_forward import branch_forward, eval_mode


@dataclass
class ProjectionResult:
    """Provenance rows (one per prototype of the projected branches) and summary counts."""

    provenance: list[dict[str, Any]] = field(default_factory=list)
    unique_ecgs: dict[str, int] = field(default_factory=dict)
    not_projected: dict[str, int] = field(default_factory=dict)
    shared_fallback: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "n_prototypes": len(self.provenance),
            "unique_source_ecgs": dict(self.unique_ecgs),
            "unique_source_ecgs_total": len({p["ecg_id"] for p in self.provenance if p["ecg_id"] is not None}),
            "not_projected": dict(self.not_projected),
            "shared_fallback": dict(self.shared_fallback),
        }


def _merge_topk(
    best: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    new: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge (P,K) running candidates with (P,B) new ones; keep the top ``k`` by similarity.

    Ties are broken by the smaller archive row (stable, deterministic).
    """
    sim = torch.cat([best[0], new[0]], dim=1)
    row = torch.cat([best[1], new[1]], dim=1)
    win = torch.cat([best[2], new[2]], dim=1)
    # sort by row first, then a stable sort by -sim: equal similarities keep ascending rows
    by_row = torch.argsort(row, dim=1, stable=True)
    sim, row, win = (t.gather(1, by_row) for t in (sim, row, win))
    order = torch.argsort(-sim, dim=1, stable=True)[:, :k]
    return sim.gather(1, order), row.gather(1, order), win.gather(1, order)


def greedy_unique(sim: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Greedy assignment: column chosen per prototype so that no two share a row.

    ``sim``/``row`` (P, K) candidates sorted best-first per prototype (-inf = none).
    Pairs are taken in descending similarity; a prototype whose candidates are all
    taken gets -1. Returns (P,) candidate column or -1.
    """
    n_proto, k = sim.shape
    choice = np.full(n_proto, -1, dtype=np.int64)
    flat = np.argsort(-sim, axis=None, kind="stable")
    used: set[int] = set()
    remaining = n_proto
    for f in flat:  # sequential by nature; stops once every prototype is placed
        j, c = divmod(int(f), k)
        if choice[j] >= 0 or not np.isfinite(sim[j, c]):
            continue
        r = int(row[j, c])
        if r in used:
            continue
        choice[j] = c
        used.add(r)
        remaining -= 1
        if remaining == 0:
            break
    return choice


@torch.no_grad()
def project_branch(
    model: torch.nn.Module,
    group: str,
    archive: Any,
    rows: np.ndarray,
    batch_size: int = 64,
    unique: bool = False,
) -> tuple[list[dict[str, Any]], int, int]:
    """Project the prototypes of branch ``group`` onto the training ECGs ``rows`` (archive rows).

    Returns (provenance rows of this branch, number of prototypes without any eligible ECG
    (they keep their vectors and get ``ecg_id=None``), number of prototypes that had to share
    a source ECG under ``unique=True`` because their classes have too few eligible ECGs).
    """
    branch = model.branches[group]
    identity = branch.prototype_class_identity.detach().to(torch.float32).cpu()  # (P, C_g)
    n_proto = identity.shape[0]
    cols = label_table().indices(group)
    rows = np.asarray(rows, dtype=np.int64)
    k = min(n_proto, len(rows)) if unique else 1
    best = (
        torch.full((n_proto, k), -torch.inf),
        torch.full((n_proto, k), -1, dtype=torch.int64),
        torch.full((n_proto, k), -1, dtype=torch.int64),
    )
    device = next(model.parameters()).device
    with eval_mode(model):
        starts = range(0, len(rows), batch_size)
        for s in progress(starts, desc=f"project {group}", total=len(starts), unit="batch"):
            r = rows[s : s + batch_size]
            x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32)).to(device, non_blocking=True)
            y = torch.from_numpy(np.asarray(archive.labels[r][:, cols], dtype=np.float32))
            out = branch_forward(model, group, x)
            win_sim = out.window_similarities.float()  # (B, P, W)
            sim, win = (t.cpu() for t in win_sim.max(dim=2))  # (B, P); the search runs on the CPU
            eligible = (y @ identity.T) > 0  # (B, P)
            sim = sim.masked_fill(~eligible, -torch.inf)
            row_t = torch.from_numpy(r).unsqueeze(0).expand(n_proto, -1)
            best = _merge_topk(best, (sim.T, row_t, win.T), k)
    cand_sim, cand_row, cand_win = (t.numpy() for t in best)
    has_candidate = np.isfinite(cand_sim[:, 0])
    choice = np.where(has_candidate, 0, -1)
    n_shared = 0
    if unique:
        choice = greedy_unique(cand_sim, cand_row)
        # fewer eligible ECGs than prototypes of a class: fall back to the best (shared) one
        fallback = (choice < 0) & has_candidate
        n_shared = int(fallback.sum())
        choice[fallback] = 0
    placed = choice >= 0
    sel = np.where(placed, choice, 0)
    idx = np.arange(n_proto)
    src_row = np.where(placed, cand_row[idx, sel], -1)
    src_win = np.where(placed, cand_win[idx, sel], -1)
    src_sim = np.where(placed, cand_sim[idx, sel], np.nan)

    # pass 2: latent windows of the chosen ECGs -> prototype vectors
    chosen = np.unique(src_row[placed])
    if len(chosen):
        with eval_mode(model):
            # one record per forward: the window is then exactly that ECG's own latent window,
            # independent of which other records share a batch (float results vary with batch size)
            windows = torch.cat([
                branch.latent_windows(branch_forward(
                    model, group,
                    torch.from_numpy(np.asarray(archive.signals[[r]], dtype=np.float32)).to(device)).latent).cpu()
                for r in chosen
            ])  # (n, W, D)
        pos = np.searchsorted(chosen, src_row[placed])
        new = windows[torch.from_numpy(pos), torch.from_numpy(src_win[placed])]  # (n_placed, D)
        flat = branch.prototype_vectors.data.view(n_proto, -1)
        flat[torch.from_numpy(np.flatnonzero(placed)).to(device)] = new.to(device, flat.dtype)

    table = model.prototype_table()
    table = table[table["branch"] == group].sort_values("local_index")
    ecg_ids = np.asarray(archive.index["ecg_id"])
    provenance = []
    for j, (gi, code) in enumerate(zip(table["index"], table["class_code"])):
        row = {"index": int(gi), "branch": group, "local_index": j, "class_code": str(code)}
        if placed[j]:
            w = int(src_win[j])
            ws, we = branch.window_samples(w)
            rs, re_ = branch.receptive_field(w)
            ls, le = branch.window_leads(w)
            row.update(
                ecg_id=int(ecg_ids[src_row[j]]), archive_row=int(src_row[j]), window=w,
                window_start=int(ws), window_end=int(we), rf_start=int(rs), rf_end=int(re_),
                lead_start=int(ls), lead_end=int(le), similarity=float(src_sim[j]),
            )
        else:
            row.update(
                ecg_id=None, archive_row=None, window=None, window_start=None, window_end=None,
                rf_start=None, rf_end=None, lead_start=None, lead_end=None, similarity=None,
            )
        provenance.append(row)
    return provenance, int((~placed).sum()), n_shared


PROVENANCE_INT_COLUMNS = (
    "ecg_id", "archive_row", "window", "window_start", "window_end", "rf_start", "rf_end", "lead_start", "lead_end",
)


def provenance_frame(provenance: list[dict[str, Any]]) -> pd.DataFrame:
    """Provenance rows as a table (integer columns nullable, one row per prototype)."""
    frame = pd.DataFrame(provenance)
    for col in PROVENANCE_INT_COLUMNS:
        if col in frame:
            frame[col] = frame[col].astype("Int64")
    return frame


def project_model(
    model: torch.nn.Module,
    archive: Any,
    rows: np.ndarray,
    groups: list[str] | None = None,
    batch_size: int = 64,
    unique: bool = False,
) -> ProjectionResult:
    """Project every branch in ``groups`` (default: all) onto training rows ``rows``."""
    result = ProjectionResult()
    for group in groups or list(model.branches):
        prov, missing, shared = project_branch(model, group, archive, rows, batch_size, unique)
        result.shared_fallback[group] = shared
        result.provenance.extend(prov)
        result.unique_ecgs[group] = len({p["ecg_id"] for p in prov if p["ecg_id"] is not None})
        result.not_projected[group] = missing
    result.provenance.sort(key=lambda p: p["index"])
    return result
