"""One feature family × all tested phecodes: screen, effect sizes, multiple testing, refits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ecgproto.phenotype.cohort import Cohort
from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.refit import refit_logit
from ecgproto.phenotype.stats import ScreenResult, bh_qvalues, rank_auc, score_screen


@dataclass(frozen=True)
class FamilyResult:
    """``table``: one row per (feature, phecode); ``screen``: the (K, p) score-test arrays;
    ``bonferroni_p``: the family-wise 0.05 / (p·K) line."""

    name: str
    table: pd.DataFrame
    screen: ScreenResult
    bonferroni_p: float


def associate(name: str, X: np.ndarray, info: pd.DataFrame, cohort: Cohort, cfg: PhenotypeConfig,
              show_progress: bool = False) -> FamilyResult:
    """Score-test screen, rank AUC, BH q and refits for feature matrix X (n_units, p)."""
    Z, cov_names = cohort.covariates()
    groups = cohort.units["subject_id"].to_numpy() if cfg.unit == "admission" else None
    dtype = np.float32 if cfg.screen_dtype == "float32" else np.float64
    keep = np.nanstd(X, axis=0) > 0
    K, p = cohort.Y.shape[1], X.shape[1]
    res = score_screen(X[:, keep], cohort.Y, cohort.mask, Z, dtype=dtype, groups=groups, show_progress=show_progress)
    chi2, z, pv = (np.full((K, p), np.nan) for _ in range(3))
    chi2[:, keep], z[:, keep], pv[:, keep] = res.chi2, res.z, res.p
    screen = ScreenResult(chi2=chi2, z=z, p=pv, null_converged=res.null_converged)
    auc = np.full((K, p), np.nan)
    auc[:, keep] = rank_auc(X[:, keep], cohort.Y, cohort.mask, cohort.population)
    mean_cases, mean_ctrls = _group_means(X, cohort.Y.astype(bool), cohort.mask)
    q = bh_qvalues(pv)
    n_tests = int(np.isfinite(pv).sum())
    bonf = 0.05 / max(n_tests, 1)
    ph = cohort.phecodes
    table = pd.DataFrame({
        "family": name,
        "feature_id": np.tile(info["feature_id"].to_numpy(), K),
        "label": np.tile(info["label"].to_numpy(), K),
        "branch": np.tile(info["branch"].to_numpy(), K),
        "prototype_class": np.tile(info["prototype_class"].to_numpy(), K),
        "phecode": np.repeat(ph["phecode"].to_numpy(), p),
        "phecode_string": np.repeat(ph["phecode_string"].to_numpy(), p),
        "phecode_category": np.repeat(ph["category"].to_numpy(), p),
        "sex_restriction": np.repeat(ph["sex"].to_numpy(), p),
        "n_cases": np.repeat(ph["n_cases"].to_numpy(), p),
        "n_controls": np.repeat(ph["n_controls"].to_numpy(), p),
        "n_excluded": np.repeat(ph["n_excluded"].to_numpy(), p),
        "mean_cases": mean_cases.ravel(), "mean_controls": mean_ctrls.ravel(),
        "auc": auc.ravel(), "score_z": z.ravel(), "p": pv.ravel(), "q_bh": q.ravel(),
        "bonferroni_sig": pv.ravel() < bonf, "test": "score",
        "covariates": "+".join(cov_names[1:]) + ("; cluster-robust by subject_id" if groups is not None else ""),
    })
    table = _refit_hits(table, X, cohort, Z, cfg, groups, p)
    return FamilyResult(name=name, table=table, screen=screen, bonferroni_p=bonf)


def _group_means(X: np.ndarray, Y: np.ndarray, mask: np.ndarray, block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature (K, p) of each phecode's cases and of its controls, from sparse sums: the cases
    and the units outside the mask are few, controls = all units − outside − cases (float64, in
    feature blocks: no (n, K) float matrix)."""
    cases = sp.csc_matrix((Y & mask).T, dtype=np.float64)
    outside = sp.csc_matrix(~mask.T, dtype=np.float64)
    n1, n_out = np.asarray(cases.sum(1)).ravel(), np.asarray(outside.sum(1)).ravel()
    n0 = mask.shape[0] - n_out - n1
    sum1, sum0 = np.empty((Y.shape[1], X.shape[1])), np.empty((Y.shape[1], X.shape[1]))
    for f in range(0, X.shape[1], block):
        Xb = np.asarray(X[:, f:f + block], dtype=np.float64)
        sum1[:, f:f + block] = cases @ Xb
        sum0[:, f:f + block] = Xb.sum(0)[None, :] - outside @ Xb - sum1[:, f:f + block]
    return sum1 / np.maximum(n1, 1)[:, None], sum0 / np.maximum(n0, 1)[:, None]


def _refit_hits(table: pd.DataFrame, X: np.ndarray, cohort: Cohort, Z: np.ndarray, cfg: PhenotypeConfig,
                groups: np.ndarray | None, p: int) -> pd.DataFrame:
    """Full logistic (or Firth) refits of the smallest-p hits with q < cfg.q_threshold; odds ratios
    per SD of the feature over the whole cohort (as the score screen standardises it), not over the
    phecode's tested subset."""
    cols = {c: np.full(len(table), np.nan) for c in ("beta", "se", "or", "or_ci_low", "or_ci_high", "refit_p")}
    method = np.full(len(table), "", dtype=object)
    flag = np.full(len(table), "", dtype=object)
    conv = np.zeros(len(table), dtype=bool)
    hits = table.index[table["q_bh"] < cfg.q_threshold]
    hits = table.loc[hits].sort_values("p", kind="mergesort").index[: cfg.max_refits_per_family]
    cohort_sd = X.std(axis=0)
    for i in hits:
        k, j = divmod(int(i), p)
        m = cohort.mask[:, k]
        r = refit_logit(X[m, j], cohort.Y[m, k], Z[m], groups=None if groups is None else groups[m],
                        firth_below_cases=cfg.firth_below_cases, sd=cohort_sd[j])
        row = r.as_row()
        for c in cols:
            cols[c][i] = row[c]
        method[i], flag[i], conv[i] = row["refit_method"], row["refit_flag"], row["refit_converged"]
    out = table.assign(**cols, refit_method=method, refit_converged=conv, refit_flag=flag)
    n_hits = int((table["q_bh"] < cfg.q_threshold).sum())
    if n_hits > len(hits):
        out.attrs["refit_note"] = f"{n_hits} hits, {len(hits)} refitted (max_refits_per_family)"
    return out
