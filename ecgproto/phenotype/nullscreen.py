"""Permutation screens from one null fit: the largest score statistic per phecode of row-shuffled
features, as ``stats.score_screen`` gives it, without refitting the null models per shuffle.

Shuffling feature rows leaves outcomes, masks and covariates unchanged, so the null fits
``y_k ~ Z`` are made once and a shuffle multiplies the shuffled feature rows ``X[perm]`` (one
gather per block of ``FEATURE_BLOCK`` features) with fixed unit-side matrices. The covariates take
few distinct rows (integer ages × sex: at most ~150), and a null fit's probability μ is a function
of the covariate row. For a phecode whose analysed units follow the covariate groups except on a
few units (the usual case: no or few excluded controls; sex-specific phecodes follow the sex
groups), μ and W = μ(1−μ) are group constants plus a sparse correction on the departing units, so
``(W∘Z_j)ᵀX`` and ``Wᵀ(X∘X)`` are group sums of X (G × p) contracted with group values plus that
correction, and the only other n-sized product is the case sum ``Cᵀ X``. The case sums of phecodes
with fewer than ``SPARSE_CASES_BELOW`` cases and all the corrections are sparse products stored by
unit (scipy's CSC × dense streams the shuffled rows once while a block's sums stay in cache:
~15 GFLOP/s per stored entry against ~100 GFLOP/s for a dense float32 product on one core of the
development machine, so sparse wins below ~15 % cases); the other phecodes' case sums are one dense
product. Phecodes whose mask departs from its covariate groups on more than ``DENSE_ABOVE`` of the
units, and every phecode when the covariates have more than ``MAX_GROUPS`` distinct rows, use the
direct products. Both give ``score_screen``'s statistic up to floating-point rounding
(tests/phenotype/test_permutation_fast.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import special, stats

from ecgproto.phenotype.stats import adjusted_variance, fit_null, score_products, standardised_features

#: a phecode whose mask differs from its covariate group's majority on more units than this fraction
#: is screened with the direct products (its sparse correction, 2 + c stored entries per departing
#: unit at ~15 GFLOP/s, costs about as much as the direct path's 2 + c dense products near 0.15)
DENSE_ABOVE = 0.15
#: more distinct covariate rows than this (e.g. continuous ages): every phecode screened directly
MAX_GROUPS = 512
#: a grouped phecode whose case fraction is below this sums its cases with the sparse product
SPARSE_CASES_BELOW = 0.15
#: features per block of a shuffle: the block's sums (about (2 + c) rows per grouped phecode)
#: stay in cache while the sparse products stream the shuffled rows
FEATURE_BLOCK = 64


@dataclass(frozen=True)
class _Grouped:
    """Phecodes ``ks`` screened from group sums; ``rows`` their rows of the grouped phecodes' sums;
    ``base_u``/``base_v`` (G, k): null μ and μ(1−μ) per covariate group on the groups' majority
    mask (0 where most of a group is not analysed); ``base_b`` (k·c, G): μ(1−μ)·Z_j per group,
    row j·c + covariate (B's group weights)."""

    ks: np.ndarray
    rows: slice
    base_u: np.ndarray
    base_v: np.ndarray
    base_b: np.ndarray
    m_inv: np.ndarray


@dataclass(frozen=True)
class _Direct:
    """Phecodes ``ks`` screened with the direct products from their null coefficients ``beta`` (k, c);
    ``cases`` and ``mask`` (n, k) bool."""

    ks: np.ndarray
    cases: np.ndarray
    mask: np.ndarray
    beta: np.ndarray
    m_inv: np.ndarray


@dataclass(frozen=True)
class _UnitSides:
    """Fixed unit-side matrices of the k_g grouped phecodes, multiplied with the shuffled rows:
    ``groups`` (G, n) unit → covariate group; ``linear`` (k_s + k_g + k_g·c, n) CSC: the case
    indicators of the ``sparse_rows`` phecodes, then each phecode's mask correction of U (the
    departing units, ±μ of their group) and of B (±μ(1−μ)·Z_j, row j·c + covariate); ``square``
    (k_g, n) CSC: the correction of V0 (±μ(1−μ)); ``dense`` (k_d, n): the case indicators of the
    ``dense_rows`` phecodes."""

    groups: sp.csc_matrix
    linear: sp.csc_matrix
    square: sp.csc_matrix
    sparse_rows: np.ndarray
    dense: np.ndarray
    dense_rows: np.ndarray


class PermutationScreen:
    """Null fits of Y (n, K) within ``mask`` on covariates Z (n, c) (intercept first), reused by
    every ``best_mlog10p`` call; ``dtype`` of the n-sized products as in ``score_screen``."""

    def __init__(self, Y: np.ndarray, mask: np.ndarray, Z: np.ndarray, dtype: type = np.float64,
                 chunk: int = 128) -> None:
        mask = np.asarray(mask, dtype=bool)
        cases = np.asarray(Y).astype(bool) & mask
        self.Z = np.asarray(Z, dtype=np.float64)
        self.dtype = dtype
        n, K = mask.shape
        self.K = K
        zg, ginv = np.unique(self.Z, axis=0, return_inverse=True)
        self.zg, self.ginv = zg, ginv.ravel()
        G = len(zg)
        E = sp.csr_matrix((np.ones(n), (self.ginv, np.arange(n))), shape=(G, n))
        counts, ycount = np.empty((G, K)), np.empty((G, K))
        for s in range(0, K, chunk):  # group counts, chunked to bound memory
            counts[:, s:s + chunk] = E @ mask[:, s:s + chunk].astype(np.float64)
            ycount[:, s:s + chunk] = E @ cases[:, s:s + chunk].astype(np.float64)
        fit = fit_null(np.where(counts > 0, ycount / np.maximum(counts, 1), 0.0), counts, zg)
        sizes = np.bincount(self.ginv, minlength=G).astype(np.float64)[:, None]
        major = counts > sizes / 2
        departing = np.where(major, sizes - counts, counts).sum(0) / n
        direct = (departing > DENSE_ABOVE) | (G > MAX_GROUPS)
        self.parts: list[_Grouped | _Direct] = [
            _Direct(ks, np.ascontiguousarray(cases[:, ks]), np.ascontiguousarray(mask[:, ks]), fit.beta[ks],
                    fit.m_inv[ks]) for ks in _chunks(np.flatnonzero(direct), chunk)]
        self.sides: _UnitSides | None = None
        if G > MAX_GROUPS or direct.all():
            return
        gamma = special.expit(zg @ fit.beta.T)
        omega = gamma * (1 - gamma)
        grouped = np.flatnonzero(~direct)
        cu, cb, cv = [], [], []
        for s, ks in zip(range(0, len(grouped), chunk), _chunks(grouped, chunk)):
            base_v = major[:, ks] * omega[:, ks]
            base_b = (base_v.T[:, None, :] * zg.T[None]).reshape(len(ks) * zg.shape[1], -1)
            self.parts.append(_Grouped(ks, slice(s, s + len(ks)), major[:, ks] * gamma[:, ks], base_v, base_b,
                                       fit.m_inv[ks]))
            for out, m in zip((cu, cb, cv), self._corrections(ks, mask, major[:, ks], gamma[:, ks],
                                                               omega[:, ks])):
                out.append(m)
        self.sides = self._unit_sides(cases[:, grouped], E, cu, cb, cv)

    def _corrections(self, ks: np.ndarray, mask: np.ndarray, major: np.ndarray, gamma: np.ndarray,
                     omega: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
        """Mask corrections of phecodes ``ks`` over the units where a phecode's mask departs from its
        group's majority (``major``; ``gamma``, ``omega`` (G, k): μ and μ(1−μ) per group): (k, n) for
        U (±μ), (k·c, n) for B (±μ(1−μ)·Z_j), (k, n) for V0 (±μ(1−μ))."""
        n, c, k = mask.shape[0], self.Z.shape[1], len(ks)
        i, j = np.nonzero(mask[:, ks] != major[self.ginv])
        g = self.ginv[i]
        sign = np.where(mask[i, ks[j]], 1.0, -1.0)
        cu = sp.csr_matrix((sign * gamma[g, j], (j, i)), shape=(k, n))
        cv = sp.csr_matrix((sign * omega[g, j], (j, i)), shape=(k, n))
        cb = sp.csr_matrix((((sign * omega[g, j])[:, None] * self.zg[g]).ravel(),
                            ((j[:, None] * c + np.arange(c)).ravel(), np.repeat(i, c))), shape=(k * c, n))
        return cu, cb, cv

    def _unit_sides(self, cases: np.ndarray, E: sp.csr_matrix, cu: list, cb: list, cv: list) -> _UnitSides:
        """The unit-side matrices of the grouped phecodes (``cases`` (n, k_g) bool, in row order)."""
        n, k = cases.shape
        sparse = np.flatnonzero(cases.mean(0) < SPARSE_CASES_BELOW)
        dense = np.setdiff1d(np.arange(k), sparse)
        i, j = np.nonzero(cases[:, sparse])
        S = sp.csr_matrix((np.ones(len(i)), (j, i)), shape=(len(sparse), n))
        linear = sp.vstack([S, *cu, *cb], format="csc", dtype=self.dtype)
        square = sp.vstack(cv, format="csc", dtype=self.dtype)
        D = np.ascontiguousarray(cases[:, dense].T, dtype=self.dtype)
        return _UnitSides(E.astype(self.dtype).tocsc(), linear, square, sparse, D, dense)

    def prepare(self, X: np.ndarray, block: int = FEATURE_BLOCK) -> list[tuple[np.ndarray, np.ndarray]]:
        """Standardised X and X∘X in ``dtype``, as ``score_screen`` makes them (a row shuffle keeps
        the column means and SDs), as contiguous blocks of ``block`` columns."""
        return [standardised_features(X[:, f:f + block], self.dtype)[1:] for f in range(0, X.shape[1], block)]

    def best_mlog10p(self, prepared: list[tuple[np.ndarray, np.ndarray]], perm: np.ndarray) -> np.ndarray:
        """−log10 of the smallest score-test p per phecode (K,) when unit i carries feature row
        ``perm[i]`` of ``prepared`` (from ``prepare``); NaN for a phecode with no testable feature.
        Safe to call from several threads at once (the large products release the GIL)."""
        best = np.full(self.K, -np.inf)
        grouped = [part for part in self.parts if isinstance(part, _Grouped)]
        if grouped:
            for Xd, XXd in prepared:
                self._grouped_best(grouped, np.take(Xd, perm, axis=0), np.take(XXd, perm, axis=0), best)
        for part in self.parts:
            if isinstance(part, _Direct):  # null residuals and weights once, then the feature blocks
                mu = special.expit(self.Z @ part.beta.T) * part.mask
                R, W = part.cases - mu, mu * (1 - mu)  # R = mask ∘ (y − μ): μ is 0 outside the mask
                for Xd, XXd in prepared:
                    _update(best, part, *score_products(R, W, self.Z, np.take(Xd, perm, axis=0),
                                                        np.take(XXd, perm, axis=0), self.dtype))
        best[np.isneginf(best)] = np.nan
        return -np.log10(np.maximum(stats.chi2.sf(best, 1), 1e-300))

    def _grouped_best(self, parts: list[_Grouped], Xp: np.ndarray, XXp: np.ndarray, best: np.ndarray) -> None:
        """Raise ``best`` (K,) to the grouped phecodes' largest χ² over the shuffled feature block
        Xp, XXp (n, b)."""
        m = self.sides
        ks, kg, c, p = len(m.sparse_rows), len(m.sparse_rows) + len(m.dense_rows), self.Z.shape[1], Xp.shape[1]
        S1, S2 = (m.groups @ Xp).astype(np.float64), (m.groups @ XXp).astype(np.float64)
        L = m.linear @ Xp
        U = np.empty((kg, p))
        U[m.sparse_rows] = L[:ks]
        U[m.dense_rows] = m.dense @ Xp
        U -= L[ks:ks + kg]  # case sums less the departing units' μ-weighted rows
        Bc = L[ks + kg:].astype(np.float64)
        Vc = (m.square @ XXp).astype(np.float64)
        for part in parts:
            k, rows = len(part.ks), part.rows
            B = (part.base_b @ S1 + Bc[rows.start * c:rows.stop * c]).reshape(k, c, p)
            _update(best, part, U[rows] - part.base_u.T @ S1, B, part.base_v.T @ S2 + Vc[rows])


def _update(best: np.ndarray, part: _Grouped | _Direct, U: np.ndarray, B: np.ndarray, V0: np.ndarray) -> None:
    """Raise ``best`` at the part's phecodes to the largest covariate-adjusted χ² of the block's
    U (k, b), B (k, c, b), V0 (k, b); a (nearly) degenerate variance is not testable."""
    V, degenerate = adjusted_variance(V0, B, part.m_inv)
    chi2 = np.where(degenerate, -np.inf, U * U / np.maximum(V, 1e-300))
    best[part.ks] = np.maximum(best[part.ks], chi2.max(1))


def _chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[s:s + size] for s in range(0, len(idx), size)]
