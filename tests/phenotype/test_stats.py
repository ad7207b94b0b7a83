"""Association statistics against independent implementations (statsmodels, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from ecgproto.phenotype.refit import firth_logit, refit_logit
from ecgproto.phenotype.stats import bh_qvalues, fit_null, rank_auc, score_screen


def _data(n: int = 4000, p: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    Z = np.column_stack([np.ones(n), rng.normal(0, 1.5, n), rng.integers(0, 2, n)])
    X = rng.normal(size=(n, p))
    X[:, 0] += 0.4 * Z[:, 2]  # feature correlated with a covariate
    X[:, 1] = rng.exponential(size=n)  # skewed feature
    eta = -1.5 + 0.3 * Z[:, 1] + 0.4 * Z[:, 2]
    betas = [0.0, 0.15, 0.3, 0.0, 0.08]
    Y = np.stack([rng.random(n) < 1 / (1 + np.exp(-(eta + b * X[:, 2]))) for b in betas], 1).astype(np.uint8)
    mask = np.ones_like(Y, dtype=bool)
    mask[: n // 5, 3] = False  # excluded controls
    mask[:, 4] = Z[:, 2] == 1  # sex-specific phecode
    mask[:, 3] |= Y[:, 3].astype(bool)
    return X, Y, mask, Z


def test_null_fit_matches_statsmodels() -> None:
    X, Y, mask, Z = _data()
    fit = fit_null(Y, mask, Z)
    assert fit.converged.all()
    m = mask[:, 0]
    ref = sm.Logit(Y[m, 0].astype(float), Z[m]).fit(disp=0)
    np.testing.assert_allclose(fit.mu[m, 0], ref.predict(Z[m]), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_test_agrees_with_wald_and_lr(dtype) -> None:
    X, Y, mask, Z = _data()
    res = score_screen(X, Y, mask, Z, dtype=dtype)
    for k in range(Y.shape[1]):
        m = mask[:, k]
        cols = [0, 1] if k == 4 else [0, 1, 2]  # sex is constant for the sex-specific phecode
        yk = Y[m, k].astype(float)
        null = sm.Logit(yk, Z[m][:, cols]).fit(disp=0)
        for j in range(X.shape[1]):
            full = sm.Logit(yk, np.column_stack([Z[m][:, cols], X[m, j]])).fit(disp=0)
            lr_p = stats.chi2.sf(2 * (full.llf - null.llf), 1)
            wald_p = full.pvalues[-1]
            for ref in (wald_p, lr_p):
                # asymptotically equivalent tests: close on the log scale, tighter when p is not tiny
                tol = 0.01 if ref > 1e-3 else 0.03
                assert abs(np.log10(res.p[k, j]) - np.log10(ref)) < tol * max(1.0, -np.log10(ref)), (k, j, res.p[k, j], ref)
            assert np.sign(res.z[k, j]) == np.sign(full.params[-1])


def test_cluster_robust_score_on_duplicated_units() -> None:
    X, Y, mask, Z = _data(n=1500, p=3, seed=3)
    single = score_screen(X, Y, mask, Z, groups=np.arange(len(X)))
    dup = np.r_[np.arange(len(X)), np.arange(len(X))]
    doubled = score_screen(X[dup], Y[dup], mask[dup], Z[dup], groups=dup)
    naive = score_screen(X[dup], Y[dup], mask[dup], Z[dup])
    # same sandwich up to the small-sample factor G/(G-1)·(n-1)/(n-q) (n units, G clusters, q parameters)
    for k in range(Y.shape[1]):
        q = 3 if k == 4 else 4  # intercept, age, (sex), feature; sex is constant for the sex-specific phecode
        n, G = mask[:, k].sum(), mask[:, k].sum()
        f_single = G / (G - 1) * (n - 1) / (n - q)
        f_doubled = G / (G - 1) * (2 * n - 1) / (2 * n - q)
        np.testing.assert_allclose(doubled.chi2[k] * f_doubled, single.chi2[k] * f_single, rtol=1e-6)
    # ignoring the clustering doubles the statistic of duplicated data
    np.testing.assert_allclose(naive.chi2, 2 * score_screen(X, Y, mask, Z).chi2, rtol=1e-6)


def test_cluster_robust_score_variance_matches_independent_sandwich() -> None:
    """Score variance under clustering: Σ_g (Σ_{i∈g} x̃_i r_i)² with x̃ = x minus its weighted projection on Z
    (weights μ(1−μ) of the null fit, statsmodels), times statsmodels' cluster correction G/(G−1)·(n−1)/(n−q)."""
    X, Y, mask, Z = _data(n=600, p=3, seed=5)
    groups = np.repeat(np.arange(200), 3)
    res = score_screen(X, Y, mask, Z, groups=groups)
    for k in (0, 3):
        m = mask[:, k]
        y = Y[m, k].astype(float)
        null = sm.Logit(y, Z[m]).fit(disp=0)
        mu = null.predict(Z[m])
        w = mu * (1 - mu)
        x = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std()
        xm = x[m]
        coef = np.linalg.solve(Z[m].T @ (w[:, None] * Z[m]), Z[m].T @ (w * xm))
        contrib = (xm - Z[m] @ coef) * (y - mu)
        sums = pd.Series(contrib).groupby(groups[m]).sum().to_numpy()
        n, G, q = m.sum(), len(np.unique(groups[m])), Z.shape[1] + 1
        V = G / (G - 1) * (n - 1) / (n - q) * (sums**2).sum()
        U = ((y - mu) * xm).sum()
        assert res.chi2[k, 0] == pytest.approx(U * U / V, rel=1e-6)


def test_false_positive_rate_under_null() -> None:
    rng = np.random.default_rng(11)
    n, p, K = 1500, 40, 60
    Z = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    X = rng.normal(size=(n, p)) + 0.5 * Z[:, [1]]
    prev = rng.uniform(0.05, 0.4, K)
    Y = (rng.random((n, K)) < prev).astype(np.uint8)
    res = score_screen(X, Y, np.ones_like(Y, dtype=bool), Z, dtype=np.float32)
    fpr = float((res.p < 0.05).mean())
    assert 0.04 < fpr < 0.06, fpr
    assert (bh_qvalues(res.p) < 0.05).sum() <= 2


def test_rank_auc_matches_sklearn_with_exclusions_and_populations() -> None:
    X, Y, mask, Z = _data(n=800, p=4, seed=5)
    X[:, 3] = np.round(X[:, 3])  # ties
    pop = np.ones_like(mask)
    pop[:, 4] = Z[:, 2] == 1
    auc = rank_auc(X, Y, mask, pop)
    for k in range(Y.shape[1]):
        m = mask[:, k]
        for j in range(X.shape[1]):
            assert auc[k, j] == pytest.approx(roc_auc_score(Y[m, k], X[m, j]), abs=1e-12)


def test_bh_equals_statsmodels() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=500), rng.uniform(0, 1e-4, 30)]).reshape(53, 10)
    p[3, 3] = np.nan
    q = bh_qvalues(p)
    ok = np.isfinite(p)
    ref = multipletests(p[ok], method="fdr_bh")[1]
    np.testing.assert_allclose(q[ok], ref, rtol=1e-12)
    assert np.isnan(q[3, 3])


def test_firth_two_by_two_closed_form() -> None:
    # separated 2x2 table: Firth = adding 1/2 to every cell -> log OR = log(5.5*5.5 / (0.5*0.5))
    x = np.r_[np.ones(5), np.zeros(5)]
    beta, se, p, conv = firth_logit(np.column_stack([np.ones(10), x]), x.copy(), 1)
    assert conv and beta == pytest.approx(np.log(121.0), rel=1e-6)
    assert 0 < p < 0.05


def test_refit_matches_statsmodels_and_switches_to_firth() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    x = rng.normal(2, 3, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.1 * x)))).astype(float)
    r = refit_logit(x, y, Z)
    ref = sm.Logit(y, np.column_stack([(x - x.mean()) / x.std(), Z])).fit(disp=0)
    assert r.method == "wald" and r.beta == pytest.approx(ref.params[0], rel=1e-6)
    assert r.or_ci_low < r.or_ < r.or_ci_high
    rare = refit_logit(x[:200], (x[:200] > 7).astype(float), Z[:200], firth_below_cases=100)
    assert rare.method == "firth" and "Firth" in rare.flag and np.isfinite(rare.beta)


def test_feature_constant_within_a_phecode_is_not_testable() -> None:
    X, Y, mask, Z = _data(n=1000, p=3, seed=8)
    X[:, 1] = np.where(Z[:, 2] == 1, 0.0, X[:, 1])  # constant among men -> untestable for the men-only phecode
    res = score_screen(X, Y, mask, Z)
    assert np.isnan(res.p[4, 1]) and np.isfinite(res.p[4, [0, 2]]).all()
    assert np.isfinite(res.p[:4]).all()
    q = bh_qvalues(res.p)
    assert np.isnan(q[4, 1])
