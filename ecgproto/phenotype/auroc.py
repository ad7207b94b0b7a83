"""Cross-validated AUROC (folds grouped by patient) of feature sets for selected phecodes."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgproto.phenotype.stats import rank_auc


def _oof_logistic(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: list, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of an L2 logistic model with an inner CV over C."""
    oof = np.zeros(len(y))
    for train, test in folds:
        inner = max(2, min(3, int(y[train].sum()), int((1 - y[train]).sum())))
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=5, cv=inner, scoring="roc_auc", max_iter=500, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X[train], y[train])
        oof[test] = model.predict_proba(X[test])[:, 1]
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
    also used alone ("age+sex"). Outer ``StratifiedGroupKFold`` by ``groups`` (subject_id);
    95% CI from a patient-level bootstrap of the out-of-fold predictions; the paired-bootstrap
    difference to ``reference`` is reported. The single best prototype is chosen on the
    training folds only ("best single prototype").
    """
    y = np.asarray(y).astype(int)
    folds = list(StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(y, y, groups))
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
            boot[k].append(roc_auc_score(yb, s[pick]))
    rows = []
    ref = np.array(boot.get(reference, []))
    for k, s in oof.items():
        b = np.array(boot[k])
        row = {"model": k, "auroc": float(roc_auc_score(y, s)),
               "ci_low": float(np.quantile(b, 0.025)) if len(b) else np.nan,
               "ci_high": float(np.quantile(b, 0.975)) if len(b) else np.nan}
        if len(ref) and k != reference:
            d = ref - b
            row.update(diff_vs_prototype=float(roc_auc_score(y, oof[reference]) - row["auroc"]),
                       diff_ci_low=float(np.quantile(d, 0.025)), diff_ci_high=float(np.quantile(d, 0.975)))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["n"], out.attrs["n_cases"] = int(len(y)), int(y.sum())
    return out
