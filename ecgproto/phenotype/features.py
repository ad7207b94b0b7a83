"""The four feature families compared in the phenotype analysis.

- ``prototype``: one similarity per prototype (``similarities.parquet`` ``sim__<index:04d>``);
- ``class``: the 71 fused class probabilities (``scores.parquet`` ``prob__<CODE>``);
- ``prototype_class``: per class the max (or mean) similarity over the class's prototypes;
- ``nlp_concept``: 0/1 indicators of normalised machine statements (``machine_measurements.csv``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgproto.errors import UserError

FAMILIES = ("prototype", "class", "prototype_class", "nlp_concept")
HEDGES = ("possible", "probable", "consider", "suggests", "cannot rule out", "borderline", "likely")


@dataclass(frozen=True)
class FeatureFamily:
    """``values`` (n_records, p) float32 over the ECG records in ``record_ids``; ``info`` has p
    rows with feature_id, label (human readable), branch, prototype_class (may be empty)."""

    name: str
    record_ids: np.ndarray
    values: np.ndarray
    info: pd.DataFrame


#: provenance columns of the checkpoint's prototype table carried into the prototype family's info
PROVENANCE_COLUMNS = ("local_index", "ecg_id", "window")
LATENT_FLAG = "latent, no source ECG"


def prototype_family(similarities: pd.DataFrame, prototypes: pd.DataFrame | None) -> FeatureFamily:
    """From ``similarities.parquet`` (record_id + sim__NNNN) and the checkpoint's prototype
    table (index, branch, class_code, and from the projection provenance local_index, ecg_id,
    window); without the table, branch and class are left empty. ``info["projected"]`` is True
    for a prototype with a source ECG, False for a latent one (never projected), None when the
    table records no provenance; latent prototypes are labelled "latent, no source ECG"."""
    cols = [c for c in similarities.columns if c.startswith("sim__")]
    if not cols:
        raise UserError("similarities.parquet: no sim__<index> columns; score with --save-similarities")
    idx = np.array([int(c[5:]) for c in cols])
    info = pd.DataFrame({"feature_id": [f"P{j:04d}" for j in idx], "index": idx})
    info["projected"] = None
    if prototypes is not None:
        t = prototypes.set_index("index").reindex(idx)
        info["branch"] = t["branch"].fillna("").to_numpy()
        info["prototype_class"] = t["class_code"].fillna("").to_numpy()
        for col in PROVENANCE_COLUMNS:
            if col in t.columns:
                info[col] = t[col].to_numpy()
        if "ecg_id" in t.columns:
            info["projected"] = t["ecg_id"].notna().to_numpy()
    else:
        info["branch"] = ""
        info["prototype_class"] = ""
    info["label"] = [_prototype_label(j, c, p) for j, c, p in zip(idx, info["prototype_class"], info["projected"])]
    return FeatureFamily("prototype", similarities["record_id"].astype(str).to_numpy(),
                         similarities[cols].to_numpy(np.float32), info)


def _prototype_label(j: int, cls: str, projected: bool | None) -> str:
    parts = [p for p in (cls, LATENT_FLAG if projected is False else "") if p]
    return f"prototype {j} ({'; '.join(parts)})" if parts else f"prototype {j}"


def projected_only(family: FeatureFamily) -> tuple[FeatureFamily, int]:
    """The family without its latent prototypes (``info.projected`` False) and how many were dropped;
    unchanged when provenance is unknown (``projected`` None)."""
    latent = family.info["projected"].eq(False).to_numpy()
    if not latent.any():
        return family, 0
    keep = ~latent
    info = family.info[keep].reset_index(drop=True)
    return FeatureFamily(family.name, family.record_ids, family.values[:, keep], info), int(latent.sum())


def class_family(scores: pd.DataFrame) -> FeatureFamily:
    """Fused class probabilities ``prob__<CODE>`` from ``scores.parquet``."""
    cols = [c for c in scores.columns if c.startswith("prob__")]
    if not cols:
        raise UserError("scores.parquet: no prob__<CODE> columns; is this an `ecgproto score` output?")
    codes = [c[6:] for c in cols]
    info = pd.DataFrame({"feature_id": [f"C:{c}" for c in codes], "branch": "", "prototype_class": codes,
                         "label": [f"P({c})" for c in codes]})
    return FeatureFamily("class", scores["record_id"].astype(str).to_numpy(), scores[cols].to_numpy(np.float32), info)


def prototype_class_family(proto: FeatureFamily, how: str = "max") -> FeatureFamily:
    """Per class, the max (``how="max"``) or mean similarity over the class's prototypes."""
    classes = [c for c in dict.fromkeys(proto.info["prototype_class"]) if c]
    if not classes:
        raise UserError("prototype classes unknown: give --checkpoint so prototypes can be grouped by class")
    cls = proto.info["prototype_class"].to_numpy()
    agg = np.max if how == "max" else np.mean
    values = np.stack([agg(proto.values[:, cls == c], axis=1) for c in classes], 1).astype(np.float32)
    branch = [proto.info.loc[cls == c, "branch"].iloc[0] for c in classes]
    info = pd.DataFrame({"feature_id": [f"PC:{c}" for c in classes], "branch": branch, "prototype_class": classes,
                         "label": [f"{how} similarity, class {c}" for c in classes]})
    return FeatureFamily("prototype_class", proto.record_ids, values, info)


def normalize_statement(text: str) -> str:
    """Lower-case, strip punctuation and repeated spaces; hedge words become a ``[hedged]`` suffix."""
    t = re.sub(r"[^a-z0-9 ]+", " ", str(text).lower())
    t = re.sub(r"\s+", " ", t).strip()
    hedged = False
    for h in HEDGES:
        if re.search(rf"\b{h}\b", t):
            hedged = True
            t = re.sub(rf"\b{h}\b", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    if not t:
        return ""
    return f"{t} [hedged]" if hedged else t


def concept_family(statements: pd.DataFrame, min_count: int,
                   count_in: np.ndarray | None = None) -> tuple[FeatureFamily, dict]:
    """0/1 concept indicators from machine statements.

    ``statements``: record_id and ``statements`` (list[str]) per ECG. Concepts present in fewer
    than ``min_count`` ECGs are dropped (counted in the returned summary); the ECGs counted are
    ``count_in`` (record ids, e.g. the cohort's analysed ECGs) or every row when None.
    """
    long = statements[["record_id", "statements"]].explode("statements").dropna()
    long["concept"] = long["statements"].map(normalize_statement)
    long = long[long["concept"] != ""].drop_duplicates(["record_id", "concept"])
    counted = long if count_in is None else long[long["record_id"].astype(str).isin(pd.Index(count_in).astype(str))]
    counts = counted["concept"].value_counts()
    keep = counts[counts >= min_count].index.sort_values()
    rec = statements["record_id"].astype(str).to_numpy()
    values = np.zeros((len(rec), len(keep)), dtype=np.float32)
    long = long[long["concept"].isin(keep)]
    r = pd.Index(rec).get_indexer(long["record_id"].astype(str))
    c = pd.Index(keep).get_indexer(long["concept"])
    values[r, c] = 1.0
    info = pd.DataFrame({"feature_id": [f"N:{k}" for k in keep], "branch": "", "prototype_class": "",
                         "label": list(keep)})
    summary = {"concepts_total": int(len(counts)), "concepts_kept": int(len(keep)),
               "concepts_below_min_count": int((counts < min_count).sum())}
    return FeatureFamily("nlp_concept", rec, values, info), summary


def unit_matrix(family: FeatureFamily, ecg_units: pd.DataFrame, units: pd.DataFrame, how: str = "first") -> np.ndarray:
    """Feature matrix per analysis unit, (n_units, p) float64.

    ``how="first"``: the unit's first ECG (``units.first_record_id``); ``"mean"``: the mean over
    all the unit's linked ECGs (``ecg_units`` record_id, unit). Units whose ECG is missing from
    the family raise a ValueError naming the first missing record.
    """
    pos = pd.Index(family.record_ids)
    if how == "first":
        idx = pos.get_indexer(units["first_record_id"].astype(str))
        if (idx < 0).any():
            missing = units["first_record_id"].iloc[int(np.flatnonzero(idx < 0)[0])]
            raise UserError(f"{family.name} features: record {missing!r} of the cohort has no row "
                             f"({int((idx < 0).sum())} missing); re-score or check record ids")
        return family.values[idx].astype(np.float64)
    idx = pos.get_indexer(ecg_units["record_id"].astype(str))
    if (idx < 0).any():
        raise UserError(f"{family.name} features: {int((idx < 0).sum())} linked ECGs have no row")
    out = np.zeros((len(units), family.values.shape[1]))
    np.add.at(out, ecg_units["unit"].to_numpy(), family.values[idx])
    return out / np.bincount(ecg_units["unit"].to_numpy(), minlength=len(units))[:, None]
