"""Permutation screens from one null fit: the largest score statistic per phecode of row-shuffled
features, as ``stats.score_screen`` gives it, without refitting the null models per shuffle.

Shuffling feature rows leaves outcomes, masks and covariates unchanged, so the null fits
``y_k ~ Z`` are made once. The covariates take few distinct rows (integer ages × sex: at most
~150), and a null fit's probability μ is a function of the covariate row. For a phecode whose
analysed units follow the covariate groups except on a few units (the usual case: no or few
excluded controls; sex-specific phecodes follow the sex groups), μ and W = μ(1−μ) are group
constants plus a sparse correction on the departing units, so ``(W∘Z_j)ᵀX`` and ``Wᵀ(X∘X)`` are
group sums of X (G × p) contracted with group values; the only n-sized dense product left per
shuffle is the case sum ``Cᵀ X`` (one matrix product instead of five). Phecodes whose mask
departs from its covariate groups on more than ``DENSE_ABOVE`` of the units, and every phecode when
the covariates have more than ``MAX_GROUPS`` distinct rows, use the direct products. Both give
``score_screen``'s statistic up to floating-point rounding (tests/phenotype/test_permutation_fast.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import special, stats

from ecgproto.phenotype.stats import adjusted_variance, fit_null, score_products, standardised_features

#: a phecode whose mask differs from its covariate group's majority on more units than this fraction
#: is screened with the direct products (the sparse correction would cost more than they do)
DENSE_ABOVE = 0.05
#: more distinct covariate rows than this (e.g. continuous ages): every phecode screened directly
MAX_GROUPS = 512
#: a chunk of phecodes whose case fraction is below this sums its cases with a sparse product
#: (cheaper than the dense one when cases are rare)
SPARSE_CASES_BELOW = 0.02


@dataclass(frozen=True)
class _Grouped:
    """Phecodes ``ks`` screened from group sums. ``cases`` (n, k) bool, or (k, n) sparse when rare;
    ``base_u``/``base_v`` (G, k):
    null μ and μ(1−μ) per covariate group on the groups' majority mask (0 where most of a group is
    not analysed); ``corr`` (r, n): ±1 where a unit's mask departs from its group's majority, one
    row per (phecode, group) with departures; ``lu``/``lv`` (k, r) and ``lb`` (k·c, r) map those rows'
    sums onto U, V0 and B (weights μ, μ(1−μ) and μ(1−μ)·Z_j of the row's group)."""

    ks: np.ndarray
    cases: np.ndarray | sp.csr_matrix
    base_u: np.ndarray
    base_v: np.ndarray
    corr: sp.csr_matrix
    lu: sp.csr_matrix
    lv: sp.csr_matrix
    lb: sp.csr_matrix
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
        if G > MAX_GROUPS:
            return
        gamma = special.expit(zg @ fit.beta.T)
        omega = gamma * (1 - gamma)
        grouped = np.flatnonzero(~direct)
        grouped = grouped[np.argsort(ycount.sum(0)[grouped], kind="stable")]  # rare phecodes chunked together
        for ks in _chunks(grouped, chunk):
            self.parts.append(self._grouped_part(ks, cases, mask, major[:, ks], gamma[:, ks], omega[:, ks],
                                                 fit.m_inv[ks]))

    def _grouped_part(self, ks: np.ndarray, cases: np.ndarray, mask: np.ndarray, major: np.ndarray,
                      gamma: np.ndarray, omega: np.ndarray, m_inv: np.ndarray) -> _Grouped:
        """The sparse mask correction and its maps for phecodes ``ks``; ``major``, ``gamma``, ``omega``
        (G, k) majority mask, μ and μ(1−μ) per covariate group."""
        n, G, c, k = mask.shape[0], len(self.zg), self.Z.shape[1], len(ks)
        i, j = np.nonzero(mask[:, ks] != major[self.ginv])
        key = j * G + self.ginv[i]
        rows, row = np.unique(key, return_inverse=True)
        sign = np.where(mask[i, ks[j]], 1.0, -1.0).astype(self.dtype)
        corr = sp.csr_matrix((sign, (row.ravel(), i)), shape=(len(rows), n))
        rj, rg = np.divmod(rows, G)
        r = np.arange(len(rows))
        lu = sp.csr_matrix((gamma[rg, rj], (rj, r)), shape=(k, len(rows)))
        lv = sp.csr_matrix((omega[rg, rj], (rj, r)), shape=(k, len(rows)))
        lb = sp.csr_matrix(((omega[rg, rj][:, None] * self.zg[rg]).ravel(),
                            ((rj[:, None] * c + np.arange(c)).ravel(), np.repeat(r, c))), shape=(k * c, len(rows)))
        part_cases = np.ascontiguousarray(cases[:, ks])
        if part_cases.mean() < SPARSE_CASES_BELOW:
            part_cases = sp.csr_matrix(part_cases.T.astype(self.dtype))
        return _Grouped(ks, part_cases, major * gamma, major * omega, corr, lu, lv, lb, m_inv)

    def prepare(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised X and X∘X in ``dtype``, as ``score_screen`` makes them (a row shuffle keeps
        the column means and SDs)."""
        return standardised_features(X, self.dtype)[1:]

    def best_mlog10p(self, prepared: tuple[np.ndarray, np.ndarray], perm: np.ndarray) -> np.ndarray:
        """−log10 of the smallest score-test p per phecode (K,) when unit i carries feature row
        ``perm[i]`` of ``prepared`` (from ``prepare``); NaN for a phecode with no testable feature.
        The shuffle is applied to the unit side (Σ_i a_i x_perm[i] = Σ_j a_inv[j] x_j): X is not copied."""
        Xd, XXd = prepared
        n = len(perm)
        inv = np.empty(n, dtype=np.int64)
        inv[perm] = np.arange(n)
        best = np.full(self.K, np.nan)
        S1 = S2 = None
        for part in self.parts:
            if isinstance(part, _Direct):
                U, B, V0 = self._direct(part, inv, Xd, XXd)
            else:
                if S1 is None:  # group sums of the shuffled rows: row j belongs to unit inv[j]'s group
                    Ep = sp.csr_matrix((np.ones(n, dtype=self.dtype), (self.ginv[inv], np.arange(n))),
                                       shape=(len(self.zg), n))
                    S1, S2 = (Ep @ Xd).astype(np.float64), (Ep @ XXd).astype(np.float64)
                U, B, V0 = self._grouped(part, inv, perm, Xd, XXd, S1, S2)
            V, degenerate = adjusted_variance(V0, B, part.m_inv)
            V = np.where(degenerate, np.nan, np.maximum(V, 1e-300))
            chi2 = U * U / V
            testable = ~np.isnan(chi2).all(1)
            best[part.ks[testable]] = np.nanmax(chi2[testable], axis=1)
        return -np.log10(np.maximum(stats.chi2.sf(best, 1), 1e-300))

    def _direct(self, part: _Direct, inv: np.ndarray, Xd: np.ndarray, XXd: np.ndarray):
        """U, B (k, c, p), V0 from the unit-level products, as ``score_screen``."""
        m = part.mask[inv]
        Z = self.Z[inv]
        mu = special.expit(Z @ part.beta.T) * m
        R = part.cases[inv] - mu  # = mask ∘ (y − μ): μ is 0 outside the mask
        return score_products(R, mu * (1 - mu), Z, Xd, XXd, self.dtype)

    def _grouped(self, part: _Grouped, inv: np.ndarray, perm: np.ndarray, Xd: np.ndarray, XXd: np.ndarray,
                 S1: np.ndarray, S2: np.ndarray):
        """U, B (k, c, p), V0 from the case sums, the group sums S1, S2 (G, p) of the shuffled X and
        X∘X, and the sparse mask correction."""
        k, c, p = len(part.ks), self.Z.shape[1], Xd.shape[1]
        if sp.issparse(part.cases):
            case_sums = _shuffled(part.cases, perm) @ Xd
        else:
            case_sums = part.cases[inv].astype(self.dtype).T @ Xd
        corr = _shuffled(part.corr, perm)
        T1 = (corr @ Xd).astype(np.float64)  # (r, p): Σ ±x over a (phecode, group)'s departing units
        T2 = (corr @ XXd).astype(np.float64)
        U = case_sums.astype(np.float64) - part.base_u.T @ S1 - part.lu @ T1
        wz = part.base_v.T[:, None, :] * self.zg.T[None]  # (k, c, G): majority-mask μ(1−μ) Z_j per group
        B = (wz.reshape(k * c, -1) @ S1 + part.lb @ T1).reshape(k, c, p)
        V0 = part.base_v.T @ S2 + part.lv @ T2
        return U, B, V0


def _shuffled(a: sp.csr_matrix, perm: np.ndarray) -> sp.csr_matrix:
    """``a`` (rows, n) over units with unit i's column moved to ``perm[i]``: ``a_π @ X = a @ X[perm]``."""
    return sp.csr_matrix((a.data, perm[a.indices], a.indptr), shape=a.shape)


def _chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[s:s + size] for s in range(0, len(idx), size)]
