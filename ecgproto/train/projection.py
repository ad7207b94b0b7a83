"""Prototype projection ("push"): replace each prototype by its nearest latent window
of a training ECG that carries one of the prototype's classes, with provenance.

One pass over the training rows, vectorised over batches: per prototype it keeps the top-K
(similarity, ECG row, window) candidates with a masked max over each batch, and the latent
window vectors of its first Ks candidates (Ks <= K from a memory budget, taken from the batch's
own forward when a candidate enters the top-Ks). The selection is either the best candidate
(K = 1) or, with ``unique=True`` (K = min(P, rows)), a greedy assignment by similarity in which no
two prototypes of a branch share a source ECG. A prototype whose chosen candidate is among its
first Ks takes the kept vector: exactly the window whose similarity the provenance records (same
forward, same batch). Only the rare ones chosen beyond Ks get their window from a second,
batched forward over their source ECGs (float32 values then differ from the first pass's by
rounding, ~1e-6, as any change of batch composition does). Similarities, windows and pooling are
the model's own (``window_similarities``, ``latent_windows``).
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

WINDOW_BUDGET_BYTES = 256 * 2**20  # kept candidate window vectors per branch (default morphology: Ks = 46 of 936)
_CHUNK_BYTES = 32 * 2**20  # rows of the kept store rebuilt at a time when candidates move


@dataclass
class BranchProjection:
    """One branch's projection: provenance rows, prototypes without an eligible ECG, prototypes that
    had to share a source ECG (``unique``), prototypes whose window came from the second forward
    (chosen beyond the ``kept_columns`` candidates whose vectors were kept) and how many ECGs that
    forward ran on."""

    provenance: list[dict[str, Any]]
    not_projected: int
    shared_fallback: int
    reforwarded: int
    reforwarded_ecgs: int
    kept_columns: int

    def summary(self) -> dict[str, int]:
        """The branch's counts as training and ``reproject`` record them."""
        return {
            "unique_source_ecgs": len({p["ecg_id"] for p in self.provenance if p["ecg_id"] is not None}),
            "n_prototypes": len(self.provenance),
            "not_projected": self.not_projected,
            "shared_fallback": self.shared_fallback,
            # chosen beyond the candidates whose window vectors were kept: their windows needed a second forward
            "reforwarded": self.reforwarded,
        }


@dataclass
class ProjectionResult:
    """Provenance rows (one per prototype of the projected branches) and each branch's counts
    (:meth:`BranchProjection.summary`)."""

    provenance: list[dict[str, Any]] = field(default_factory=list)
    branches: dict[str, dict[str, int]] = field(default_factory=dict)

    def _per_branch(self, key: str) -> dict[str, int]:
        return {g: counts[key] for g, counts in self.branches.items()}

    @property
    def unique_ecgs(self) -> dict[str, int]:
        return self._per_branch("unique_source_ecgs")

    @property
    def not_projected(self) -> dict[str, int]:
        return self._per_branch("not_projected")

    @property
    def shared_fallback(self) -> dict[str, int]:
        return self._per_branch("shared_fallback")

    @property
    def reforwarded(self) -> dict[str, int]:
        return self._per_branch("reforwarded")

    def summary(self) -> dict[str, Any]:
        return {
            "n_prototypes": len(self.provenance),
            "unique_source_ecgs": self.unique_ecgs,
            "unique_source_ecgs_total": len({p["ecg_id"] for p in self.provenance if p["ecg_id"] is not None}),
            "not_projected": self.not_projected,
            "shared_fallback": self.shared_fallback,
            "reforwarded": self.reforwarded,
        }


def _merge_topk(
    best: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    new: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge (P,K) running candidates with (P,B) new ones; keep the top ``k`` by similarity.

    Ties are broken by the smaller archive row (stable, deterministic). Returns (sim, row, win,
    source), source (P, k) = each kept candidate's column in [old K columns, new B columns]. An old
    candidate never moves to a smaller column (the order is a total order, old columns already
    follow it), so result column c comes from old column <= c or from the new batch.
    """
    sim = torch.cat([best[0], new[0]], dim=1)
    row = torch.cat([best[1], new[1]], dim=1)
    win = torch.cat([best[2], new[2]], dim=1)
    # sort by row first, then a stable sort by -sim: equal similarities keep ascending rows
    by_row = torch.argsort(row, dim=1, stable=True)
    sim, row, win = (t.gather(1, by_row) for t in (sim, row, win))
    order = torch.argsort(-sim, dim=1, stable=True)[:, :k]
    return sim.gather(1, order), row.gather(1, order), win.gather(1, order), by_row.gather(1, order)


def _update_kept(kept: torch.Tensor, source: torch.Tensor, win: torch.Tensor, n_old: int,
                 windows: torch.Tensor) -> None:
    """Rebuild the kept window vectors (P, Ks, D) in place after a merge.

    ``source``/``win`` (P, Ks): the merge's source column and window of the first Ks candidates;
    ``windows`` (B, W, D) the batch's latent windows (any device). Only prototypes whose first Ks
    candidates changed are touched, in row chunks of at most ``_CHUNK_BYTES``.
    """
    n_proto, ks, dim = kept.shape
    changed = torch.nonzero((source != torch.arange(ks)).any(dim=1)).squeeze(1)
    step = max(1, _CHUNK_BYTES // max(1, ks * dim * kept.element_size()))
    for c in range(0, len(changed), step):
        protos = changed[c : c + step]
        src = source[protos]  # (n, Ks)
        from_old = src < n_old  # such a column is < Ks (see _merge_topk)
        sub = kept[protos].gather(1, src.clamp(max=ks - 1).unsqueeze(-1).expand(-1, -1, dim))
        pj, pc = torch.nonzero(~from_old, as_tuple=True)
        if len(pj):
            b = (src[pj, pc] - n_old).to(windows.device)
            w = win[protos][pj, pc].to(windows.device)
            sub[pj, pc] = windows[b, w].to(kept.device, kept.dtype)
        kept[protos] = sub


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


def _forward_windows(model: torch.nn.Module, group: str, archive: Any, src_row: np.ndarray, src_win: np.ndarray,
                     batch_size: int, device: torch.device) -> torch.Tensor:
    """Latent windows (n, D) at (archive row, window) pairs, from batched forwards over the unique rows."""
    branch = model.branches[group]
    need = np.unique(src_row)
    out = torch.empty(len(src_row), branch.window_dim)
    for s in range(0, len(need), batch_size):
        r = need[s : s + batch_size]
        x = torch.from_numpy(np.asarray(archive.signals[r], dtype=np.float32)).to(device)
        windows = branch.latent_windows(branch_forward(model, group, x).latent)  # (b, W, D)
        hit = np.flatnonzero(np.isin(src_row, r))
        pos = torch.from_numpy(np.searchsorted(r, src_row[hit])).to(device)
        out[torch.from_numpy(hit)] = windows[pos, torch.from_numpy(src_win[hit]).to(device)].cpu().to(out.dtype)
    return out


@torch.no_grad()
def project_branch(
    model: torch.nn.Module,
    group: str,
    archive: Any,
    rows: np.ndarray,
    batch_size: int = 64,
    unique: bool = False,
    window_budget_bytes: int = WINDOW_BUDGET_BYTES,
) -> BranchProjection:
    """Project the prototypes of branch ``group`` onto the training ECGs ``rows`` (archive rows).

    ``window_budget_bytes`` bounds the kept candidate window vectors (P·Ks·D floats; Ks = K when
    they fit, 0 = keep none: every prototype's window comes from the second forward). Prototypes
    without any eligible ECG keep their vectors and get ``ecg_id=None``.
    """
    branch = model.branches[group]
    identity = branch.prototype_class_identity.detach().to(torch.float32).cpu()  # (P, C_g)
    n_proto = identity.shape[0]
    dim = branch.window_dim
    cols = label_table().indices(group)
    rows = np.asarray(rows, dtype=np.int64)
    k = min(n_proto, len(rows)) if unique else 1
    itemsize = branch.prototype_vectors.element_size()
    ks = int(min(k, window_budget_bytes // max(1, n_proto * dim * itemsize)))
    best = (
        torch.full((n_proto, k), -torch.inf),
        torch.full((n_proto, k), -1, dtype=torch.int64),
        torch.full((n_proto, k), -1, dtype=torch.int64),
    )
    kept = torch.zeros(n_proto, ks, dim, dtype=branch.prototype_vectors.dtype)
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
            *best, source = _merge_topk(best, (sim.T, row_t, win.T), k)
            if ks:
                _update_kept(kept, source[:, :ks], best[2][:, :ks], k, branch.latent_windows(out.latent))
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

    # kept window vectors for choices among the first Ks candidates; one batched forward for the rest
    from_kept = placed & (sel < ks)
    again = placed & ~from_kept
    new = torch.empty(n_proto, dim)
    if from_kept.any():
        j = torch.from_numpy(np.flatnonzero(from_kept))
        new[j] = kept[j, torch.from_numpy(sel[from_kept])].to(new.dtype)
    if again.any():
        with eval_mode(model):
            new[torch.from_numpy(np.flatnonzero(again))] = _forward_windows(
                model, group, archive, src_row[again], src_win[again], batch_size, device)
    if placed.any():
        flat = branch.prototype_vectors.data.view(n_proto, -1)
        j = torch.from_numpy(np.flatnonzero(placed))
        flat[j.to(device)] = new[j].to(device, flat.dtype)

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
    return BranchProjection(provenance, int((~placed).sum()), n_shared, int(again.sum()),
                            len(np.unique(src_row[again])), ks)


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
    window_budget_bytes: int = WINDOW_BUDGET_BYTES,
) -> ProjectionResult:
    """Project every branch in ``groups`` (default: all) onto training rows ``rows``."""
    result = ProjectionResult()
    for group in groups or list(model.branches):
        res = project_branch(model, group, archive, rows, batch_size, unique, window_budget_bytes)
        result.provenance.extend(res.provenance)
        result.branches[group] = res.summary()
    result.provenance.sort(key=lambda p: p["index"])
    return result
