"""Does an explanation point at the right place? Overlap of highlighted windows with known findings.

Ground truth comes from the synthetic generator's ``findings.csv``
(ecg_id, code, leads ';'-joined, start_s, end_s in seconds). A highlighted window
"hits" a finding when their time intervals intersect (optionally: and share a lead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FINDINGS_COLUMNS = ("ecg_id", "code", "leads", "start_s", "end_s")


def interval_overlap(a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray) -> np.ndarray:
    """Length of the intersection of intervals [a_start, a_end) and [b_start, b_end), elementwise (≥ 0)."""
    lo = np.maximum(np.asarray(a_start, dtype=float), np.asarray(b_start, dtype=float))
    hi = np.minimum(np.asarray(a_end, dtype=float), np.asarray(b_end, dtype=float))
    return np.clip(hi - lo, 0.0, None)


def read_findings(path: str | Path) -> pd.DataFrame:
    """Read ``findings.csv``; ``leads`` becomes a tuple of lead names (empty = all leads)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: findings file not found (written by `ecgproto synth` as ptbxl/findings.csv)")
    frame = pd.read_csv(path, keep_default_na=False)
    missing = [c for c in FINDINGS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(FINDINGS_COLUMNS)}")
    frame["leads"] = [tuple(x for x in str(v).split(";") if x) for v in frame["leads"]]
    frame["start_s"] = frame["start_s"].astype(float)
    frame["end_s"] = frame["end_s"].astype(float)
    return frame


@dataclass(frozen=True)
class LocalisationResult:
    """Per-case table and summary of window/finding overlap."""

    cases: pd.DataFrame  # one row per (record, label): hit, overlap_s, window and finding spans
    hit_rate: float  # fraction of cases whose window intersects the finding
    chance_rate: float  # expected hit rate of a window of the same length placed uniformly at random
    n_cases: int

    def summary(self) -> dict[str, float | int]:
        return {"n_cases": self.n_cases, "hit_rate": self.hit_rate, "chance_rate": self.chance_rate}


def chance_hit_rate(win_len_s: float, f_start: np.ndarray, f_end: np.ndarray, duration_s: float, n_grid: int = 1001) -> float:
    """P(a window of length ``win_len_s`` placed uniformly in [0, duration_s] intersects any finding interval)."""
    starts = np.linspace(0.0, max(duration_s - win_len_s, 0.0), n_grid)[:, None]
    f_start, f_end = np.asarray(f_start, float)[None, :], np.asarray(f_end, float)[None, :]
    return float(((starts < f_end) & (starts + win_len_s > f_start)).any(axis=1).mean())


def localisation_hits(
    windows: pd.DataFrame,
    findings: pd.DataFrame,
    fs: float,
    duration_s: float,
    *,
    max_finding_fraction: float = 0.5,
    require_lead: bool = False,
) -> LocalisationResult:
    """Match highlighted windows to findings of the same record and label.

    ``windows``: one row per explained (record, label) with columns ecg_id, label,
    window_start, window_end (input samples at ``fs`` Hz) and optionally ``leads``
    (tuple of lead names, for lead-aware prototypes). ``findings``: as from
    :func:`read_findings`. A (record, label) may have several finding rows (e.g. one
    per affected beat): it is a hit when the window intersects any of them. Findings
    covering more than ``max_finding_fraction`` of the record are not localised and
    are left out (every window would hit them). ``require_lead`` also asks for a
    shared lead when both sides name leads.
    """
    f = findings.copy()
    f["length_s"] = f["end_s"] - f["start_s"]
    f = f[(f["length_s"] > 0) & (f["length_s"] <= max_finding_fraction * duration_s)]
    w = windows.copy()
    w["win_start_s"] = w["window_start"].astype(float) / fs
    w["win_end_s"] = w["window_end"].astype(float) / fs
    pairs = w.merge(f, left_on=["ecg_id", "label"], right_on=["ecg_id", "code"], how="inner", suffixes=("", "_finding"))
    overlap = interval_overlap(pairs["win_start_s"], pairs["win_end_s"], pairs["start_s"], pairs["end_s"])
    hit = overlap > 0
    if require_lead and "leads" in pairs.columns and "leads_finding" in pairs.columns:
        shared = np.array([not a or not b or bool(set(a) & set(b)) for a, b in zip(pairs["leads"], pairs["leads_finding"])], dtype=bool)
        hit &= shared
    pairs["overlap_s"] = overlap
    pairs["hit"] = hit
    keys = ["ecg_id", "label"]
    cases = pairs.groupby(keys, sort=True).agg(
        hit=("hit", "any"),
        overlap_s=("overlap_s", "sum"),
        window_start_s=("win_start_s", "first"),
        window_end_s=("win_end_s", "first"),
        n_findings=("hit", "size"),
    ).reset_index()
    groups = pairs.groupby(keys, sort=True)
    cases["chance"] = [
        chance_hit_rate(float(g["win_end_s"].iat[0] - g["win_start_s"].iat[0]), g["start_s"], g["end_s"], duration_s)
        for _, g in groups
    ]
    n = len(cases)
    return LocalisationResult(
        cases=cases,
        hit_rate=float(cases["hit"].mean()) if n else float("nan"),
        chance_rate=float(cases["chance"].mean()) if n else float("nan"),
        n_cases=n,
    )


SPANS = {"latent": ("window_start", "window_end"), "evidence": ("evidence_start", "evidence_end"),
         "receptive_field": ("rf_start", "rf_end")}


def correct_top_windows(table: pd.DataFrame, true_labels: np.ndarray, ecg_ids: np.ndarray, branch: str = "morphology",
                        span: str = "latent") -> pd.DataFrame:
    """Highlighted window of the best-ranked ``branch`` prototype per correctly predicted label.

    ``table``: output of :func:`ecgproto.explain.report.explain_arrays` (record_index
    into ``true_labels`` (N, 71) and ``ecg_ids`` (N,)). Keeps rows with ``predicted`` and a
    true label; returns ecg_id, label, window_start, window_end, leads, prototype, rank, where
    the window is the ``span`` of :data:`SPANS` (latent steps, evidence window, receptive field).
    """
    start, end = SPANS[span]
    t = table[(table["branch"] == branch) & table["predicted"].astype(bool)]
    truth = np.asarray(true_labels)[t["record_index"].to_numpy(int), t["label_index"].to_numpy(int)].astype(bool)
    t = t[truth].sort_values(["record_index", "label_index", "rank"], kind="stable")
    t = t.drop_duplicates(["record_index", "label_index"], keep="first")
    out = pd.DataFrame({
        "ecg_id": np.asarray(ecg_ids)[t["record_index"].to_numpy(int)],
        "label": t["label"].to_numpy(), "window_start": t[start].to_numpy(int),
        "window_end": t[end].to_numpy(int), "leads": t["leads"].to_numpy(),
        "prototype": t["prototype"].to_numpy(int), "rank": t["rank"].to_numpy(int),
    })
    return out.reset_index(drop=True)


ECTOPIC_CODES = ("PVC", "PAC")  # one finding per ectopic beat: sparse in time, the demanding case


def _rate_block(cases: pd.DataFrame) -> dict[str, float | int]:
    n = len(cases)
    return {"n_cases": n, "hit_rate": float(cases["hit"].mean()) if n else None,
            "chance_rate": float(cases["chance"].mean()) if n else None}


def evaluate_localisation(
    model: object,
    meta: dict,
    ptbxl_root: str | Path,
    *,
    folds: tuple[int, ...] | None = None,
    max_records: int | None = None,
    k: int = 1,
    batch_size: int = 64,
) -> dict[str, object]:
    """Localisation of the top morphology prototype on a synthetic archive (``findings.csv`` ground truth).

    Records of ``folds`` (default: the checkpoint's test folds) are read exactly as
    ``ecgproto explain`` reads them; for every correctly predicted morphology label the
    window of its best-ranked morphology prototype is compared with the finding rows of
    that record and label (whole-record rows excluded). Returns a JSON-ready summary:
    overall, per code and for the sparse ectopic-beat findings (PVC, PAC), each with the
    chance rate of a randomly placed window of the same length.
    """
    from ecgproto.data.ptbxl import load_ptbxl
    from ecgproto.explain.report import explain_arrays
    from ecgproto.data.preprocess import Preprocessing
    from ecgproto.progress import progress

    index = load_ptbxl(ptbxl_root)
    findings = read_findings(index.root / "findings.csv")
    if folds is None:
        folds = tuple(((meta.get("config") or {}).get("data") or {}).get("test_folds") or (10,))
    chosen = np.flatnonzero(index.meta["strat_fold"].isin(folds).to_numpy())
    if max_records is not None:
        chosen = chosen[:max_records]
    if len(chosen) == 0:
        raise ValueError(f"{index.root}: no records in folds {folds}")
    prep = Preprocessing.from_meta(meta)
    column = "filename_lr" if prep.fs <= 100 else "filename_hr"
    paths = [index.root / index.meta[column].iloc[i] for i in chosen]
    results = [prep.read(p) for p in progress(paths, desc="read records", unit="rec")]
    ok = np.array([r.status == "ok" for r in results])
    signals = np.stack([r.signal for r, good in zip(results, ok) if good])
    rows = chosen[ok]
    table, probs = explain_arrays(model, meta, signals, k=k, batch_size=batch_size)
    truth = index.labels[rows]
    ecg_ids = index.meta.index.to_numpy()[rows]
    windows = correct_top_windows(table, truth, ecg_ids)
    duration = prep.n_samples / prep.fs
    result = localisation_hits(windows, findings, prep.fs, duration)
    cases = result.cases
    ectopic = cases[cases["label"].isin(ECTOPIC_CODES)]
    per_code = {code: _rate_block(part) for code, part in cases.groupby("label")}
    win_len = (windows["window_end"] - windows["window_start"]).to_numpy(float) / prep.fs
    drawn = {}
    for span in ("evidence", "receptive_field"):
        other = localisation_hits(correct_top_windows(table, truth, ecg_ids, span=span), findings, prep.fs, duration).cases
        drawn[span] = {"all_localised": _rate_block(other),
                       "ectopic_beats": _rate_block(other[other["label"].isin(ECTOPIC_CODES)])}
    return {
        "archive": str(index.root),
        "folds": list(folds),
        "n_records": int(len(rows)),
        "n_records_unreadable": int((~ok).sum()),
        "n_correct_morphology_labels": int(len(windows)),
        "window_length_s": float(np.median(win_len)) if len(win_len) else None,
        "all_localised": _rate_block(cases),
        "ectopic_beats": _rate_block(ectopic),
        "per_code": per_code,
        "drawn_windows": drawn,
        "definition": ("hit = the highlighted window of the best-ranked morphology prototype of a correctly predicted "
                       "morphology label intersects a findings.csv interval of that record and label; whole-record "
                       "findings are excluded; chance = the same window length placed uniformly at random. The "
                       "top-level figures use the latent window (the prototype's latent steps); drawn_windows repeats "
                       "them for the two bands the explanation figures draw: the evidence window (gradient x input) "
                       "and the receptive field"),
    }
