"""Vectorised association statistics for a (features × phecodes) screen.

Notation: n units (patients or admissions), p features, K phecodes, c covariates.
``X`` (n, p) features, ``Y`` (n, K) 0/1 case indicators, ``mask`` (n, K) bool "analysed
for this phecode" (cases + eligible controls), ``Z`` (n, c) covariates incl. intercept.

The screen fits one null logistic model ``y_k ~ Z`` per phecode (batched Newton over all
phecodes), then gives the score statistic of every feature by matrix products:
``U = Xᵀr``, ``V = (X∘X)ᵀw − diag(Bᵀ M⁻¹ B)`` with ``B = ZᵀWX``, ``M = ZᵀWZ``; ``T = U²/V ~ χ²₁``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import special, stats

from ecgproto.progress import progress


@dataclass(frozen=True)
class NullFit:
    """Null logistic fits ``y_k ~ Z`` for K phecodes: ``mu`` (n, K) fitted probabilities
    (0 outside the mask), ``m_inv`` (K, c, c) inverse information, ``converged`` (K,)."""

    mu: np.ndarray
    m_inv: np.ndarray
    converged: np.ndarray
    beta: np.ndarray | None = None  # (K, c) coefficients, 0 for dropped covariates


def fit_null(Y: np.ndarray, mask: np.ndarray, Z: np.ndarray, max_iter: int = 50, tol: float = 1e-8) -> NullFit:
    """Batched Newton–Raphson of the covariate-only logistic model for every phecode.

    Y (n, K) 0/1, mask (n, K) bool, Z (n, c) float with the intercept first. A covariate that
    is constant within a phecode's mask (e.g. sex for a sex-specific phecode) is dropped for
    that phecode (its rows/columns of ``m_inv`` are zero). Phecodes sharing the same set of
    kept covariates are fitted together. Grouped data: ``mask`` may hold unit counts per
    distinct covariate row and ``Y`` the case fraction; ``mu`` is then count × probability.
    """
    Y = np.asarray(Y, dtype=np.float64)
    M = np.asarray(mask, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    n, K = Y.shape
    c = Z.shape[1]
    cnt = np.maximum(M.sum(0), 1)
    mean = (M.T @ Z) / cnt[:, None]
    var = (M.T @ (Z * Z)) / cnt[:, None] - mean**2
    keep = var > 1e-12 * np.maximum(1.0, mean**2)
    keep[:, 0] = True
    mu = np.zeros((n, K))
    m_inv = np.zeros((K, c, c))
    beta = np.zeros((K, c))
    converged = np.zeros(K, dtype=bool)
    patterns, which = np.unique(keep, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        ks = np.flatnonzero(which.ravel() == g)
        cols = np.flatnonzero(pattern)
        mu_g, inv_g, conv_g, beta_g = _newton(Y[:, ks], M[:, ks], Z[:, cols], max_iter, tol)
        mu[:, ks] = mu_g
        m_inv[np.ix_(ks, cols, cols)] = inv_g
        beta[np.ix_(ks, cols)] = beta_g
        converged[ks] = conv_g
    return NullFit(mu=mu, m_inv=m_inv, converged=converged, beta=beta)


def _newton(Y: np.ndarray, M: np.ndarray, Z: np.ndarray, max_iter: int, tol: float):
    """Newton–Raphson for K logistic fits sharing the design Z (n, c); returns (mu, inv info, converged, beta)."""
    n, K = Y.shape
    c = Z.shape[1]
    ZZ = (Z[:, :, None] * Z[:, None, :]).reshape(n, c * c)
    prev = np.clip((Y * M).sum(0) / np.maximum(M.sum(0), 1), 1e-6, 1 - 1e-6)
    beta = np.zeros((K, c))
    beta[:, 0] = np.log(prev / (1 - prev))
    converged = np.zeros(K, dtype=bool)
    for _ in range(max_iter):
        mu = special.expit(Z @ beta.T)
        w = M * mu * (1 - mu)
        grad = (M * (Y - mu)).T @ Z  # (K, c)
        H = (w.T @ ZZ).reshape(K, c, c)
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        beta = beta + np.where(converged[:, None], 0.0, step)
        converged |= np.abs(step).max(1) < tol
        if converged.all():
            break
    prob = special.expit(Z @ beta.T)
    mu = prob * M
    H = ((mu * (1 - prob)).T @ ZZ).reshape(K, c, c)  # = mu (1 - mu) for a 0/1 mask
    return mu, np.linalg.inv(H), converged, beta


@dataclass(frozen=True)
class ScreenResult:
    """Score-test screen: ``chi2``, ``z`` (signed sqrt, sign of the association), ``p``; all (K, p).
    NaN where the feature is constant (or collinear with the covariates) among a phecode's units."""

    chi2: np.ndarray
    z: np.ndarray
    p: np.ndarray
    null_converged: np.ndarray


def score_screen(X: np.ndarray, Y: np.ndarray, mask: np.ndarray, Z: np.ndarray, *,
                 dtype: type = np.float64, chunk: int = 128, groups: np.ndarray | None = None,
                 show_progress: bool = False) -> ScreenResult:
    """Covariate-adjusted logistic score test of every (phecode, feature) pair.

    X (n, p) features (any scale; centred internally), Y (n, K), mask (n, K), Z (n, c).
    ``dtype`` float32 or float64 for the large matrix products; phecodes are processed
    in chunks of ``chunk``. ``groups`` (n,) cluster ids (e.g. subject_id) switch to the
    cluster-robust (sandwich) variance of the score, computed per phecode.
    Returns arrays shaped (K, p).
    """
    X, Xd, XX = standardised_features(X, dtype)
    if groups is None:
        X = None  # the float64 copy is needed only by the cluster-robust variance
    Y = np.asarray(Y)
    mask = np.asarray(mask, dtype=bool)
    Z = np.asarray(Z, dtype=np.float64)
    n, K = Y.shape
    p = Xd.shape[1]
    chi2 = np.empty((K, p))
    zsc = np.empty((K, p))
    conv = np.empty(K, dtype=bool)
    starts = range(0, K, chunk)
    for s in (progress(starts, desc="score screen", total=len(starts)) if show_progress else starts):
        sl = slice(s, min(s + chunk, K))
        fit = fit_null(Y[:, sl], mask[:, sl], Z)
        conv[sl] = fit.converged
        R = (mask[:, sl] * (Y[:, sl] - fit.mu))
        U, B, V0 = score_products(R, fit.mu * (1 - fit.mu), Z, Xd, XX, dtype)
        V, degenerate = adjusted_variance(V0, B, fit.m_inv)
        if groups is not None:
            V = _cluster_variance(X, Z, R, B, fit.m_inv, groups, mask[:, sl])
        V = np.where(degenerate, np.nan, np.maximum(V, 1e-300))
        chi2[sl] = U * U / V
        zsc[sl] = U / np.sqrt(V)
    return ScreenResult(chi2=chi2, z=zsc, p=stats.chi2.sf(chi2, 1), null_converged=conv)


def standardised_features(X: np.ndarray, dtype: type, block: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features centred and scaled to unit SD (constant columns only centred): float64, and it and
    its square in ``dtype`` for the large products (with ``dtype`` float64 the first two are one
    array). Standardised in place, ``block`` columns at a time: one float64 copy of X, no
    temporaries of its size."""
    X = np.array(X, dtype=np.float64)
    XX = np.empty(X.shape, dtype=dtype)
    for f in range(0, X.shape[1], block):
        cols = X[:, f:f + block]
        sd = cols.std(0)
        cols -= cols.mean(0)
        cols /= np.where(sd > 0, sd, 1.0)
        XX[:, f:f + block] = cols * cols
    return X, X if np.dtype(dtype) == np.float64 else X.astype(dtype), XX


def score_products(R: np.ndarray, W: np.ndarray, Z: np.ndarray, Xd: np.ndarray, XX: np.ndarray,
                   dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score U (k, p), covariate cross terms B (k, c, p) and unadjusted variance V0 (k, p) from the
    null residuals R and weights W (n, k), covariates Z (n, c), standardised Xd and Xd∘Xd (n, p)."""
    U = (R.T.astype(dtype) @ Xd).astype(np.float64)
    B = np.stack([((W * Z[:, [j]]).T.astype(dtype) @ Xd).astype(np.float64) for j in range(Z.shape[1])], 1)
    V0 = (W.T.astype(dtype) @ XX).astype(np.float64)
    return U, B, V0


def adjusted_variance(V0: np.ndarray, B: np.ndarray, m_inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score variance adjusted for the estimated covariates, and where it is degenerate: the feature
    (nearly) constant or collinear with the covariates among the analysed units (not testable)."""
    V = V0 - np.einsum("kcp,kcd,kdp->kp", B, m_inv, B, optimize=True)
    return V, V <= 1e-6 * np.maximum(V0, 1e-300)


def _cluster_variance(X: np.ndarray, Z: np.ndarray, R: np.ndarray, B: np.ndarray, m_inv: np.ndarray,
                      groups: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sandwich variance of the score: c · Σ_clusters (Σ_i x̃_i r_i)², x̃ = X residualised on Z (weighted).

    c = G/(G−1) · (n−1)/(n−q), the small-sample correction statsmodels applies to the cluster-robust
    refit (``cov_type="cluster"``, ``use_correction=True``): G clusters and n units analysed for the
    phecode (``mask``), q = the full model's parameters (kept covariates + the feature).
    """
    codes, g = np.unique(np.asarray(groups), return_inverse=True)
    V = np.empty((R.shape[1], X.shape[1]))
    for k in range(R.shape[1]):
        A = m_inv[k] @ B[k]  # (c, p)
        contrib = (X - Z @ A) * R[:, [k]]
        S = np.zeros((len(codes), X.shape[1]))
        np.add.at(S, g, contrib)
        n = int(mask[:, k].sum())
        n_groups = len(np.unique(g[mask[:, k]]))
        q = int((np.abs(np.diag(m_inv[k])) > 0).sum()) + 1
        factor = n_groups / max(n_groups - 1, 1) * (n - 1) / max(n - q, 1)
        V[k] = factor * (S * S).sum(0)
    return V


def rank_auc(X: np.ndarray, Y: np.ndarray, mask: np.ndarray, population: np.ndarray | None = None,
             block: int = 128) -> np.ndarray:
    """Rank (Mann–Whitney) AUC of every feature for every phecode, cases vs controls.

    X (n, p), Y (n, K) 0/1, mask (n, K) analysed units; ``population`` (n, K) bool: the
    unit set the mask is drawn from (e.g. one sex for sex-specific phecodes; default all).
    Each feature is sorted once per distinct population, giving average ranks (the case rank
    sums are one matrix product) and integer tie-group ranks. Units of the population outside
    the mask (excluded controls) are removed exactly by counting — no re-ranking: the excluded
    units at or below each case from one sort of the phecode's cases and excluded units per
    feature (``_count_at_or_below``), less half the case–excluded pairs tied (sparse counts over
    the tie groups). Features are processed in blocks of ``block`` (memory O(n · block) besides
    the inputs). AUC = P(x_case > x_control) + ½ P(tie). Returns (K, p); NaN if a phecode has no
    cases or no controls.
    """
    X = np.asarray(X)  # sorted as given: float32 → float64 would keep every order and tie
    Y = np.asarray(Y, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    n, K = Y.shape
    p = X.shape[1]
    pop = np.ones_like(mask) if population is None else np.asarray(population, dtype=bool)
    cases = Y & mask
    n1 = cases.sum(0).astype(np.float64)
    n0 = (mask & ~Y).sum(0).astype(np.float64)
    auc = np.full((K, p), np.nan)
    groups: dict[bytes, list[int]] = {}
    for k, key in enumerate(np.packbits(pop, axis=0).T):
        groups.setdefault(key.tobytes(), []).append(k)
    for ks in map(np.asarray, groups.values()):
        rows = np.flatnonzero(pop[:, ks[0]])
        Cg = cases[np.ix_(rows, ks)]
        excl = ~mask[np.ix_(rows, ks)]
        corrected = np.flatnonzero(excl.any(0) & (n1[ks] > 0))
        Cs = sp.csc_matrix(Cg.T, dtype=np.float64)  # rank sums: stored by unit, the case count is small
        Cc, Ec = sp.csc_matrix(Cg[:, corrected], dtype=np.float64), sp.csc_matrix(excl[:, corrected], dtype=np.float64)
        who = [(np.flatnonzero(Cg[:, j]), np.flatnonzero(excl[:, j])) for j in corrected]
        u = np.empty((len(ks), p))
        for f in range(0, p, block):
            cols = slice(f, min(f + block, p))
            ranks, dense, tied, tied_col = _ranks(X[rows, cols])
            u[:, cols] = Cs @ ranks - (n1[ks] * (n1[ks] + 1) / 2)[:, None]
            # case–excluded pairs tied, per (column, corrected phecode): Σ over tie groups n_case · n_excl
            per_col = sp.csr_matrix((np.ones(len(tied_col)), (tied_col, np.arange(len(tied_col)))),
                                    shape=(dense.shape[1], len(tied_col)))
            tied_pairs = (per_col @ (tied @ Cc).multiply(tied @ Ec)).toarray()
            for i, (j, (c_idx, e_idx)) in enumerate(zip(corrected, who)):
                u[j, cols] -= _count_at_or_below(dense[c_idx], dense[e_idx]) - tied_pairs[:, i] / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            auc[ks] = u / (n1[ks] * n0[ks])[:, None]
    return auc


def _ranks(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    """Per column of X (n, p), from one sort: 1-based average ranks (float) and tie-group ranks
    0, 1, ... (int32), both (n, p); the tie groups of two or more units as a (groups, n) 0/1
    matrix and the column of each group (groups,)."""
    XT = np.ascontiguousarray(X.T)  # rows = features: contiguous sorts
    p, n = XT.shape
    order = np.argsort(XT, axis=1)  # order within ties is irrelevant for all outputs
    xs = np.take_along_axis(XT, order, axis=1)
    first = np.ones(XT.shape, dtype=bool)
    first[:, 1:] = xs[:, 1:] != xs[:, :-1]
    gid = np.cumsum(first.ravel()) - 1  # tie groups numbered across all columns
    starts = np.flatnonzero(first.ravel())
    size = np.diff(np.append(starts, p * n))
    mid = (starts % n) + (size + 1) / 2.0
    ranks = np.empty(XT.shape)
    dense = np.empty(XT.shape, dtype=np.int32)
    np.put_along_axis(ranks, order, mid[gid].reshape(p, n), axis=1)
    in_tie = np.flatnonzero(size[gid] > 1)  # sorted positions inside a tie group
    groups, member = np.unique(gid[in_tie], return_inverse=True)
    tied = sp.csr_matrix((np.ones(len(in_tie)), (member.ravel(), order.ravel()[in_tie])), shape=(len(groups), n))
    gid = gid.reshape(p, n)
    np.put_along_axis(dense, order, (gid - gid[:, :1]).astype(np.int32), axis=1)
    return np.ascontiguousarray(ranks.T), np.ascontiguousarray(dense.T), tied, starts[groups] // n


def _count_at_or_below(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Per column j: Σ_{a∈A} #{b ∈ B: b ≤ a} for integer ranks A (na, p), B (nb, p) ≥ 0.

    One sort per column of the two sets together, keyed 2·rank + label with A labelled 1 (the B
    values equal to an A value sort before it): the positions of the A elements sum to the count
    plus na(na−1)/2.
    """
    na, nb = len(A), len(B)
    p = A.shape[1]
    if na == 0 or nb == 0:
        return np.zeros(p)
    top = 2 * max(int(A.max()), int(B.max())) + 1
    keys = np.empty((p, na + nb), dtype=np.int32 if top < 2**31 else np.int64)
    np.multiply(A.T, 2, out=keys[:, :na], casting="unsafe")
    keys[:, :na] += 1
    np.multiply(B.T, 2, out=keys[:, na:], casting="unsafe")
    keys.sort(axis=1)
    keys &= 1
    return keys.astype(np.float64) @ np.arange(na + nb, dtype=np.float64) - na * (na - 1) / 2


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values over all finite entries of ``p`` (any shape); NaN kept."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = np.isfinite(flat)
    q = np.full_like(flat, np.nan)
    pv = flat[ok]
    m = pv.size
    if m:
        order = np.argsort(pv, kind="mergesort")
        ranked = pv[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        q[ok] = out
    return q.reshape(p.shape)
