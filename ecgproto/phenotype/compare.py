"""Family comparison per phecode category: strength, specificity and a family-size control.

"Best of 1,037 features" beats "best of 71" by chance alone, so strength is compared on
(a) the Šidák-adjusted best p per (family, phecode), 1 − (1 − p_min)^m, conservative for
correlated features, and (b) the excess of the observed best −log10 p over its permutation
null (feature rows shuffled against outcomes and covariates, same shuffles for all families).
Under ``unit: admission`` the units are clustered by patient: the null then moves each
patient's block of feature rows onto another patient with as many admissions (the clustering of
features and of outcomes is kept, only their link is broken) and uses the same cluster-robust
score test as the observed screen.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from ecgproto.phenotype.association import FamilyResult
from ecgproto.phenotype.cohort import Cohort
from ecgproto.phenotype.nullscreen import PermutationScreen
from ecgproto.phenotype.stats import score_screen
from ecgproto.progress import progress

REFERENCE = "prototype"


def best_per_phecode(result: FamilyResult, cohort: Cohort, q_threshold: float = 0.05) -> pd.DataFrame:
    """One row per tested phecode: best feature, its p, Šidák-adjusted p, strength and the number of
    features with q < ``q_threshold``."""
    p = result.screen.p
    m = np.isfinite(p).sum(1)
    filled = np.where(np.isfinite(p), p, np.inf)
    j = filled.argmin(1)
    best = filled[np.arange(len(j)), j]
    best = np.where(np.isfinite(best), best, np.nan)
    sidak = -np.expm1(m * np.log1p(-np.clip(best, 0, 1 - 1e-16)))
    sidak = np.where(best * m < 1e-8, best * m, sidak)  # avoid underflow for tiny p
    feat = result.table["feature_id"].to_numpy()[: p.shape[1]]
    return pd.DataFrame({
        "family": result.name, "phecode": cohort.phecodes["phecode"].to_numpy(),
        "category": cohort.phecodes["category"].to_numpy(), "n_features": m, "best_feature": feat[j],
        "best_p": best, "sidak_p": sidak, "strength": -np.log10(np.maximum(sidak, 1e-300)),
        "best_mlog10p": -np.log10(np.maximum(best, 1e-300)),
        "n_significant": (result.table["q_bh"].to_numpy().reshape(p.shape) < q_threshold).sum(1),
    })


def cluster_permutation(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row permutation that moves each cluster's rows (in row order) onto a random other cluster of the
    same size: ``X[perm]`` keeps every cluster's block of rows together. Singletons are shuffled freely."""
    _, inv, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")  # rows grouped by cluster, in row order within a cluster
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    perm = np.empty(len(inv), dtype=np.int64)
    for size in np.unique(sizes):
        clusters = np.flatnonzero(sizes == size)
        target = rng.permutation(clusters)
        offsets = np.arange(size)
        perm[order[starts[clusters][:, None] + offsets]] = order[starts[target][:, None] + offsets]
    return perm


def permutation_null(X_by_family: dict[str, np.ndarray], cohort: Cohort, n_perm: int, seed: int,
                     dtype: type = np.float64, groups: np.ndarray | None = None,
                     observed: dict[str, np.ndarray] | None = None, threads: int = 1,
                     show_progress: bool = False) -> pd.DataFrame:
    """Mean and 95th percentile of the best −log10 p per (family, phecode) under ``n_perm``
    shuffles of the unit rows of every feature matrix (same shuffles for every family).

    ``groups`` (n,) cluster ids (patients under ``unit: admission``): whole clusters are shuffled
    (``cluster_permutation``) and every screen is cluster-robust, as the observed one. ``observed``
    {family: (K,) observed best −log10 p} adds ``null_perm_p`` = (1 + #{null ≥ observed})/(1 + n_perm).
    Without ``groups`` the null models are fitted once and every shuffle costs about one sparse
    case-sum product per family (``nullscreen.PermutationScreen``, equal to a full ``score_screen``
    of the shuffled rows up to rounding), ``threads`` shuffles side by side (0 = the CPU cores this
    process may use; BLAS is held to one thread meanwhile); the shuffles are drawn in order from
    ``seed``, so the result does not depend on ``threads``. With ``groups`` each shuffle is a full
    cluster-robust screen, one at a time.
    """
    Z, _ = cohort.covariates()
    rng = np.random.default_rng(seed)
    n, K = cohort.Y.shape
    acc = {f: np.zeros((n_perm, K)) for f in X_by_family}
    keep = {f: X.std(0) > 0 for f, X in X_by_family.items()}
    if groups is None and n_perm > 0:  # one null fit, reused by every shuffle (phenotype/nullscreen.py)
        screen = PermutationScreen(cohort.Y, cohort.mask, Z, dtype)
        prepared = {f: screen.prepare(X[:, keep[f]]) for f, X in X_by_family.items()}
        workers = max(1, min(n_perm, threads if threads > 0 else _cores()))

        def screened(perm: np.ndarray) -> dict[str, np.ndarray]:
            return {f: screen.best_mlog10p(prepared[f], perm) for f in X_by_family}

        waves = range(0, n_perm, workers)
        with ThreadPoolExecutor(workers) as pool, threadpool_limits(1 if workers > 1 else None, user_api="blas"):
            for start in (progress(waves, desc="permutations", total=len(waves), unit="wave")
                          if show_progress else waves):
                perms = [rng.permutation(n) for _ in range(min(workers, n_perm - start))]
                for b, res in enumerate(pool.map(screened, perms), start):
                    for f in X_by_family:
                        acc[f][b] = res[f]
    elif n_perm > 0:
        for b in (progress(range(n_perm), desc="permutations", total=n_perm) if show_progress else range(n_perm)):
            perm = cluster_permutation(groups, rng)
            for f, X in X_by_family.items():
                res = score_screen(X[perm][:, keep[f]], cohort.Y, cohort.mask, Z, dtype=dtype, groups=groups)
                acc[f][b] = -np.log10(np.maximum(np.nanmin(res.p, axis=1), 1e-300))
    return null_summary(acc, cohort, observed)


def null_summary(acc: dict[str, np.ndarray], cohort: Cohort,
                 observed: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per (family, phecode) from the null best −log10 p of each shuffle ``acc``
    {family: (n_perm, K)}: mean, 95th percentile and, with ``observed``, ``null_perm_p``."""
    rows = []
    for f, a in acc.items():
        frame = pd.DataFrame({"family": f, "phecode": cohort.phecodes["phecode"].to_numpy(),
                              "null_mean_best_mlog10p": a.mean(0), "null_q95_best_mlog10p": np.quantile(a, 0.95, axis=0)})
        if observed is not None and f in observed:
            frame["null_perm_p"] = (1 + (a >= np.asarray(observed[f])[None, :] - 1e-12).sum(0)) / (1 + len(a))
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _cores() -> int:
    """CPU cores this process may use (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def specificity(table: pd.DataFrame, q_threshold: float) -> pd.DataFrame:
    """Per significant feature: distinct significant phecodes, categories and category entropy (bits)."""
    sig = table[table["q_bh"] < q_threshold]
    if sig.empty:
        return pd.DataFrame(columns=["family", "feature_id", "n_phecodes", "n_categories", "entropy"])
    g = sig.groupby(["family", "feature_id"])
    out = g.agg(n_phecodes=("phecode", "nunique"), n_categories=("phecode_category", "nunique")).reset_index()
    ent = sig.groupby(["family", "feature_id"])["phecode_category"].apply(
        lambda s: float(stats.entropy(s.value_counts().to_numpy(), base=2)))
    return out.merge(ent.rename("entropy").reset_index(), on=["family", "feature_id"])


def compare_families(best: pd.DataFrame, spec: pd.DataFrame, null: pd.DataFrame | None = None) -> pd.DataFrame:
    """Prototype family vs each other family, overall and per category.

    Strength: paired one-sided Wilcoxon (prototype > other) over phecodes of the Šidák
    strength (and of the permutation excess when ``null`` is given). Specificity: one-sided
    Mann–Whitney (prototype features hit fewer phecodes) over significant features.
    """
    if null is not None:
        best = best.merge(null, on=["family", "phecode"], how="left")
        best["excess"] = best["best_mlog10p"] - best["null_mean_best_mlog10p"]
    rows = []
    families = [f for f in best["family"].unique() if f != REFERENCE]
    cats = ["all"] + sorted(best["category"].dropna().unique())
    for cat in cats:
        b = best if cat == "all" else best[best["category"] == cat]
        wide = b.pivot(index="phecode", columns="family", values="strength")
        exc = b.pivot(index="phecode", columns="family", values="excess") if "excess" in b else None
        for f in families:
            if REFERENCE not in wide or f not in wide:
                continue
            row = {"category": cat, "comparison": f"{REFERENCE} vs {f}", "n_phecodes": int(len(wide)),
                   "median_strength_prototype": float(wide[REFERENCE].median()),
                   "median_strength_other": float(wide[f].median()),
                   "frac_phecodes_sig_prototype": float((b[b.family == REFERENCE]["n_significant"] > 0).mean()),
                   "frac_phecodes_sig_other": float((b[b.family == f]["n_significant"] > 0).mean()),
                   "strength_wilcoxon_p": _wilcoxon(wide[REFERENCE], wide[f])}
            if exc is not None:
                row["median_excess_prototype"] = float(exc[REFERENCE].median())
                row["median_excess_other"] = float(exc[f].median())
                row["excess_wilcoxon_p"] = _wilcoxon(exc[REFERENCE], exc[f])
            if cat == "all":
                a = spec.loc[spec.family == REFERENCE, "n_phecodes"]
                o = spec.loc[spec.family == f, "n_phecodes"]
                row["median_hits_per_feature_prototype"] = float(a.median()) if len(a) else np.nan
                row["median_hits_per_feature_other"] = float(o.median()) if len(o) else np.nan
                row["specificity_mannwhitney_p"] = (float(stats.mannwhitneyu(a, o, alternative="less").pvalue)
                                                    if len(a) and len(o) else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _wilcoxon(a: pd.Series, b: pd.Series) -> float:
    d = (a - b).dropna()
    d = d[d != 0]
    if len(d) < 2:
        return float("nan")
    return float(stats.wilcoxon(d, alternative="greater").pvalue)
