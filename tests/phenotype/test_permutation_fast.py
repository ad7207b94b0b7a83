"""The permutation null from one null fit and grouped covariate sums equals the former implementation
(one full ``score_screen`` per shuffle, kept here as reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgproto.phenotype.cohort import Cohort
from ecgproto.phenotype.compare import cluster_permutation, null_summary, permutation_null
from ecgproto.phenotype.nullscreen import SPARSE_CASES_BELOW, PermutationScreen
from ecgproto.phenotype.stats import score_screen


def reference_permutation_null(X_by_family, cohort, n_perm, seed, dtype=np.float64, groups=None, observed=None):
    """Former ``compare.permutation_null``: a complete score screen of every shuffled feature matrix."""
    Z, _ = cohort.covariates()
    rng = np.random.default_rng(seed)
    K = cohort.Y.shape[1]
    acc = {f: np.zeros((n_perm, K)) for f in X_by_family}
    keep = {f: X.std(0) > 0 for f, X in X_by_family.items()}
    for b in range(n_perm):
        perm = rng.permutation(len(cohort.units)) if groups is None else cluster_permutation(groups, rng)
        for f, X in X_by_family.items():
            res = score_screen(X[perm][:, keep[f]], cohort.Y, cohort.mask, Z, dtype=dtype, groups=groups)
            acc[f][b] = -np.log10(np.maximum(np.nanmin(res.p, axis=1), 1e-300))
    return null_summary(acc, cohort, observed)  # the summary is shared; the shuffles' statistics are not


def _cohort(n: int = 3000, K: int = 24, p: int = 9, seed: int = 0, integer_age: bool = True):
    """Integer (or continuous) ages and sex; phecodes with none, few and many excluded controls and
    sex-specific ones; a constant feature and one constant among men."""
    rng = np.random.default_rng(seed)
    age = np.round(rng.normal(62, 15, n)) if integer_age else rng.normal(62, 15, n)
    sex = rng.integers(0, 2, n)
    X = rng.normal(size=(n, p))
    X[:, 1] = 3.0
    X[:, 2] = np.where(sex == 1, 0.5, X[:, 2])
    prev = rng.uniform(0.02, 0.3, K)
    prev[16:20] = 0.006  # rare phecodes: case sums by a sparse product when chunked together
    lin = np.log(prev / (1 - prev))[None, :] + 0.03 * (age[:, None] - 62) + 0.3 * sex[:, None]
    lin[:, :4] += 0.4 * X[:, [0]]
    Y = rng.random((n, K)) < 1 / (1 + np.exp(-lin))
    pop = np.ones((n, K), dtype=bool)
    pop[:, [5, 6]] = (sex == 1)[:, None]
    pop[:, 7] = sex == 0
    mask = pop.copy()
    rate = np.zeros(K)
    rate[8:12], rate[12:16] = 0.01, 0.45  # few (grouped + sparse correction) / many (direct) excluded controls
    mask &= (rng.random((n, K)) > rate) | Y
    Y &= pop
    units = pd.DataFrame({"subject_id": np.arange(n), "age": age, "sex": sex})
    phecodes = pd.DataFrame({"phecode": [str(j) for j in range(K)], "category": "c"})
    cohort = Cohort(units=units, ecg_units=pd.DataFrame(), Y=Y.astype(np.uint8), mask=mask, population=pop,
                    phecodes=phecodes, flow={}, mapping_counts={}, unmapped_top=pd.DataFrame())
    return cohort, X


@pytest.mark.parametrize("integer_age", [True, False])
def test_permutation_null_equals_former_implementation(integer_age) -> None:
    cohort, X = _cohort(integer_age=integer_age)
    fams = {"prototype": X, "class": X[:, [0, 3, 4]] ** 2}
    Z, _ = cohort.covariates()
    obs = {f: -np.log10(np.nanmin(score_screen(x[:, x.std(0) > 0], cohort.Y, cohort.mask, Z).p, axis=1))
           for f, x in fams.items()}
    new = permutation_null(fams, cohort, 7, seed=3, observed=obs)
    ref = reference_permutation_null(fams, cohort, 7, seed=3, observed=obs)
    cols = ["null_mean_best_mlog10p", "null_q95_best_mlog10p"]
    np.testing.assert_allclose(new[cols].to_numpy(), ref[cols].to_numpy(), rtol=1e-9, atol=1e-9)
    assert (new["null_perm_p"] == ref["null_perm_p"]).all()
    assert list(new["phecode"]) == list(ref["phecode"]) and list(new["family"]) == list(ref["family"])


def test_permutation_screen_uses_both_paths_and_matches_score_screen() -> None:
    cohort, X = _cohort(seed=1)
    Z, _ = cohort.covariates()
    screen = PermutationScreen(cohort.Y, cohort.mask, Z, chunk=4)
    kinds = {type(part).__name__: np.concatenate([q.ks for q in screen.parts if type(q) is type(part)])
             for part in screen.parts}
    assert set(kinds) == {"_Grouped", "_Direct"}
    assert set(range(12, 16)) <= set(kinds["_Direct"]) and set(range(12)) <= set(kinds["_Grouped"])
    grouped = np.concatenate([q.ks for q in screen.parts if type(q).__name__ == "_Grouped"])
    frac = (cohort.Y.astype(bool) & cohort.mask).mean(0)[grouped]
    assert set(range(16, 20)) <= set(grouped[screen.sides.sparse_rows])  # rare: the sparse case sums
    assert (frac[screen.sides.sparse_rows] < SPARSE_CASES_BELOW).all()
    assert len(screen.sides.dense_rows) and (frac[screen.sides.dense_rows] >= SPARSE_CASES_BELOW).all()
    perm = np.random.default_rng(0).permutation(len(X))
    keep = X.std(0) > 0
    want = -np.log10(np.nanmin(score_screen(X[perm][:, keep], cohort.Y, cohort.mask, Z).p, axis=1))
    for block in (64, 2):  # one feature block, and blocks whose maxima are combined
        got = screen.best_mlog10p(screen.prepare(X[:, keep], block=block), perm)
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_permutation_null_float32_close_to_float64() -> None:
    cohort, X = _cohort(seed=2)
    ref = reference_permutation_null({"prototype": X}, cohort, 5, seed=0, dtype=np.float32)
    new = permutation_null({"prototype": X}, cohort, 5, seed=0, dtype=np.float32)
    cols = ["null_mean_best_mlog10p", "null_q95_best_mlog10p"]
    np.testing.assert_allclose(new[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-3)


def test_permutation_null_does_not_depend_on_threads() -> None:
    cohort, X = _cohort(seed=3)
    fams = {"prototype": X, "class": X[:, [0, 3, 4]] ** 2}
    one = permutation_null(fams, cohort, 5, seed=1, threads=1)
    three = permutation_null(fams, cohort, 5, seed=1, threads=3)
    pd.testing.assert_frame_equal(one, three)
