"""Cross-validated AUROC (folds grouped by patient) of feature sets for selected phecodes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgproto.phenotype.stats import rank_auc


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Rank AUROC of ``score`` (n,) for 0/1 ``y`` (n,) (ties count ½); NaN without both classes."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = stats.rankdata(score)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds with every group (patient) in one fold, groups with a case spread evenly (stratified)."""
    uniq, inv = np.unique(groups, return_inverse=True)
    has_case = np.bincount(inv, weights=np.asarray(y, dtype=float), minlength=len(uniq)) > 0
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(uniq), dtype=int)
    for flag in (True, False):
        idx = np.flatnonzero(has_case == flag)
        idx = idx[rng.permutation(len(idx))]
        fold_of[idx] = (np.arange(len(idx)) + (0 if flag else len(idx))) % n_folds
    unit_fold = fold_of[inv]
    return [(np.flatnonzero(unit_fold != f), np.flatnonzero(unit_fold == f)) for f in range(n_folds)]


def _fit_logistic(X: np.ndarray, y: np.ndarray, C: float, seed: int):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _oof_logistic(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: list, seed: int,
                  Cs: tuple[float, ...] = (0.01, 0.1, 1.0)) -> np.ndarray:
    """Out-of-fold probabilities of an L2 logistic model; C chosen on a grouped inner hold-out (AUROC)."""
    oof = np.zeros(len(y))
    for train, test in folds:
        a, b = grouped_folds(y[train], groups[train], 3, seed)[0]
        best_c, best_auc = Cs[-1], -np.inf
        if 0 < y[train][a].sum() < len(a) and 0 < y[train][b].sum() < len(b):
            for C in Cs:
                val = auroc(y[train][b], _fit_logistic(X[train][a], y[train][a], C, seed).predict_proba(X[train][b])[:, 1])
                if val > best_auc:
                    best_c, best_auc = C, val
        oof[test] = _fit_logistic(X[train], y[train], best_c, seed).predict_proba(X[test])[:, 1]
    return oof


def _oof_best_single(P: np.ndarray, y: np.ndarray, folds: list) -> np.ndarray:
    """Out-of-fold score of the single prototype with the largest |AUC − 0.5| on the training folds."""
    oof = np.zeros(len(y))
    for train, test in folds:
        auc = rank_auc(P[train], y[train, None], np.ones((len(train), 1), bool))[0]
        j = int(np.nanargmax(np.abs(auc - 0.5)))
        oof[test] = P[test, j] * (1 if auc[j] >= 0.5 else -1)
    return oof


def cv_auroc(feature_sets: dict[str, np.ndarray], covariates: np.ndarray, y: np.ndarray, groups: np.ndarray,
             n_folds: int, n_boot: int, seed: int, reference: str = "prototype") -> pd.DataFrame:
    """AUROC of each feature set (+ covariates) for one binary outcome.

    ``feature_sets`` name -> (n, p); ``covariates`` (n, c) (age, sex) are added to every set and
    also used alone ("age+sex"). Outer folds grouped by ``groups`` (subject_id) and stratified;
    95% CI from a patient-level bootstrap of the out-of-fold predictions; the paired-bootstrap
    difference to ``reference`` is reported. The single best prototype is chosen on the
    training folds only ("best single prototype").
    """
    y = np.asarray(y).astype(int)
    folds = grouped_folds(y, groups, n_folds, seed)
    oof = {"age+sex": _oof_logistic(covariates, y, groups, folds, seed)}
    for name, X in feature_sets.items():
        oof[name] = _oof_logistic(np.column_stack([X, covariates]), y, groups, folds, seed)
    if reference in feature_sets:
        oof["best single prototype"] = _oof_best_single(feature_sets[reference], y, folds)
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = pd.Series(np.arange(len(y))).groupby(inv).apply(np.array).to_numpy()
    boot = {k: [] for k in oof}
    for _ in range(n_boot):
        pick = np.concatenate(members[rng.integers(0, len(uniq), len(uniq))])
        yb = y[pick]
        if yb.min() == yb.max():
            continue
        for k, s in oof.items():
            boot[k].append(auroc(yb, s[pick]))
    rows = []
    ref = np.array(boot.get(reference, []))
    for k, s in oof.items():
        b = np.array(boot[k])
        row = {"model": k, "auroc": float(auroc(y, s)),
               "ci_low": float(np.quantile(b, 0.025)) if len(b) else np.nan,
               "ci_high": float(np.quantile(b, 0.975)) if len(b) else np.nan}
        if len(ref) and k != reference:
            d = ref - b
            row.update(diff_vs_prototype=float(auroc(y, oof[reference]) - row["auroc"]),
                       diff_ci_low=float(np.quantile(d, 0.025)), diff_ci_high=float(np.quantile(d, 0.975)))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["n"], out.attrs["n_cases"] = int(len(y)), int(y.sum())
    return out
