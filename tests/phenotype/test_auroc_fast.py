"""The counting rank AUC equals the former per-phecode re-ranking implementation (kept here as reference)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ecgproto.phenotype.auroc import auroc
from ecgproto.phenotype.stats import rank_auc


def _reference_rank_auc(X, Y, mask, population=None):
    """Former implementation: population ranks, then one ``rankdata`` per phecode with excluded controls."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    n, K = Y.shape
    pop = np.ones_like(mask) if population is None else np.asarray(population, dtype=bool)
    cases = Y & mask
    n1 = cases.sum(0).astype(np.float64)
    n0 = (mask & ~Y).sum(0).astype(np.float64)
    auc = np.full((K, X.shape[1]), np.nan)
    pop_keys, pop_idx = np.unique(np.packbits(pop, axis=0), axis=1, return_inverse=True)
    for g in range(pop_keys.shape[1]):
        ks = np.flatnonzero(pop_idx.ravel() == g)
        rows = pop[:, ks[0]]
        ranks = np.zeros_like(X)
        ranks[rows] = stats.rankdata(X[rows], axis=0)
        u = cases[:, ks].T.astype(np.float64) @ ranks - (n1[ks] * (n1[ks] + 1) / 2)[:, None]
        for j, k in enumerate(ks):
            excl = rows & ~mask[:, k]
            if excl.any() and n1[k] > 0:
                sub = cases[:, k] | excl
                r = stats.rankdata(X[sub], axis=0)
                u[j] -= r[cases[sub, k]].sum(0) - n1[k] * (n1[k] + 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            auc[ks] = u / (n1[ks] * n0[ks])[:, None]
    return auc


def _random_cohort(seed: int, n: int = 600, p: int = 7, K: int = 30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 0] = np.round(X[:, 0])          # heavy ties
    X[:, 1] = rng.integers(0, 3, n)      # three values only
    X[:, 2] = 1.0                        # constant
    Y = rng.random((n, K)) < rng.uniform(0.01, 0.3, K)
    mask = np.ones((n, K), dtype=bool)
    excl = rng.random(K) < 0.5
    mask[:, excl] = (rng.random((n, excl.sum())) > rng.uniform(0.02, 0.6, excl.sum())) | Y[:, excl]
    pop = np.ones_like(mask)
    sex = rng.integers(0, 2, n) == 1
    pop[:, :4] = sex[:, None]
    pop[:, 4:6] = ~sex[:, None]
    mask &= pop
    Y &= pop
    Y[:, 6] = False                      # no cases -> NaN
    mask[:, 7] = Y[:, 7]                 # no controls -> NaN
    return X, Y, mask, pop


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_counting_rank_auc_equals_reranking_reference(seed: int) -> None:
    X, Y, mask, pop = _random_cohort(seed)
    got = rank_auc(X, Y, mask, pop)
    ref = _reference_rank_auc(X, Y, mask, pop)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[6]).all() and np.isnan(got[7]).all()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, equal_nan=True)


def test_counting_rank_auc_equals_direct_auroc_on_each_mask() -> None:
    X, Y, mask, pop = _random_cohort(3, n=300, p=4, K=12)
    got = rank_auc(X, Y, mask, pop)
    for k in range(Y.shape[1]):
        m = mask[:, k]
        for j in range(X.shape[1]):
            want = auroc(Y[m, k], X[m, j])
            if np.isnan(want):
                assert np.isnan(got[k, j])
            else:
                assert got[k, j] == pytest.approx(want, abs=1e-12)


def test_counting_rank_auc_without_ties_and_in_small_feature_blocks() -> None:
    rng = np.random.default_rng(9)
    X = rng.normal(size=(500, 9))  # continuous: no ties anywhere
    Y = rng.random((500, 10)) < 0.2
    mask = (rng.random((500, 10)) > 0.3) | Y
    ref = _reference_rank_auc(X, Y, mask)
    for block in (1, 4, 128):
        np.testing.assert_allclose(rank_auc(X, Y, mask, block=block), ref, rtol=0, atol=1e-12)
    X[:, 4] = np.round(X[:, 4] * 2)  # ties in one column of one block only
    np.testing.assert_allclose(rank_auc(X, Y, mask, block=4), _reference_rank_auc(X, Y, mask), rtol=0, atol=1e-12)


def test_group_means_from_sparse_sums_equal_dense_means() -> None:
    from ecgproto.phenotype.association import _group_means

    X, Y, mask, _ = _random_cohort(seed=4)
    X = X.astype(np.float32)
    cases, ctrls = (Y & mask).astype(np.float64), (~Y & mask).astype(np.float64)
    want1 = cases.T @ X.astype(np.float64) / np.maximum(cases.sum(0), 1)[:, None]
    want0 = ctrls.T @ X.astype(np.float64) / np.maximum(ctrls.sum(0), 1)[:, None]
    for block in (128, 3):
        got1, got0 = _group_means(X, Y, mask, block=block)
        np.testing.assert_allclose(got1, want1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got0, want0, rtol=0, atol=1e-12)
