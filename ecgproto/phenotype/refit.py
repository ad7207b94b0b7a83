"""Full logistic refits of screen hits: OR per SD with 95% CI, Firth when rare or separated."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import statsmodels.api as sm
from scipy import special, stats


@dataclass(frozen=True)
class Refit:
    """One refit: log-OR per SD of the feature (``beta``), its ``se``, Wald/PLR ``p``, 95% CI of
    the OR, the method ("wald", "wald_cluster" or "firth"), convergence and a free-text flag."""

    beta: float
    se: float
    p: float
    or_: float
    or_ci_low: float
    or_ci_high: float
    method: str
    converged: bool
    flag: str

    def as_row(self) -> dict:
        row = asdict(self)
        row["or"] = row.pop("or_")
        return {f"refit_{k}" if k in ("p", "method", "converged", "flag") else k: v for k, v in row.items()}


def _firth_fit(X: np.ndarray, y: np.ndarray, free: np.ndarray, max_iter: int = 100, tol: float = 1e-8):
    """Firth-penalised logistic regression; parameters outside ``free`` are fixed at 0.

    Returns (beta, inverse information, penalised log-likelihood, converged)."""
    beta = np.zeros(X.shape[1])

    def penalised(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        mu = np.clip(special.expit(X @ b), 1e-12, 1 - 1e-12)
        w = mu * (1 - mu)
        info = (X * w[:, None]).T @ X
        sign, logdet = np.linalg.slogdet(info)
        ll = float(np.sum(y * np.log(mu) + (1 - y) * np.log(1 - mu)) + 0.5 * logdet)
        return ll, mu, info

    ll, mu, info = penalised(beta)
    converged = False
    for _ in range(max_iter):
        inv = np.linalg.pinv(info)
        h = (mu * (1 - mu)) * np.einsum("ij,jk,ik->i", X, inv, X)
        score = X.T @ (y - mu + h * (0.5 - mu))
        step = np.zeros_like(beta)
        f = np.flatnonzero(free)
        step[f] = np.linalg.solve(info[np.ix_(f, f)], score[f])
        t = 1.0
        while True:
            new_ll, new_mu, new_info = penalised(beta + t * step)
            if new_ll >= ll - 1e-12 or t < 1e-4:
                break
            t /= 2
        beta = beta + t * step
        done = np.max(np.abs(t * step)) < tol
        ll, mu, info = new_ll, new_mu, new_info
        if done:
            converged = True
            break
    return beta, np.linalg.pinv(info), ll, converged


def firth_logit(X: np.ndarray, y: np.ndarray, test_index: int) -> tuple[float, float, float, bool]:
    """Firth logistic fit of y (n,) on X (n, q) (include the intercept column yourself).

    Returns (beta, se, penalised-likelihood-ratio p for beta[test_index] = 0, converged)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    free = np.ones(X.shape[1], dtype=bool)
    beta, inv, ll_full, conv = _firth_fit(X, y, free)
    free[test_index] = False
    _, _, ll_null, conv0 = _firth_fit(X, y, free)
    lr = max(2.0 * (ll_full - ll_null), 0.0)
    return float(beta[test_index]), float(np.sqrt(max(inv[test_index, test_index], 0.0))), \
        float(stats.chi2.sf(lr, 1)), bool(conv and conv0)


def refit_logit(x: np.ndarray, y: np.ndarray, Z: np.ndarray, *, groups: np.ndarray | None = None,
                firth_below_cases: int = 100, sd: float | None = None) -> Refit:
    """Refit ``y ~ x/sd + Z`` (Z includes the intercept) and report the OR per ``sd`` of ``x``.

    x (n,), y (n,) 0/1, Z (n, c). ``sd``: the unit of the odds ratio, e.g. the feature's SD over the
    whole cohort (what the pipeline passes); None = the SD of ``x`` as given. Uses statsmodels Logit
    (cluster-robust by ``groups`` if given); switches to Firth penalised regression (penalised LR p,
    Wald CI from the penalised information) when there are fewer than ``firth_below_cases`` cases or
    the ordinary fit fails or shows separation.
    """
    x = np.asarray(x, dtype=np.float64)
    sd = x.std() if sd is None else float(sd)
    xs = (x - x.mean()) / (sd if sd > 0 else 1.0)
    Zc = np.asarray(Z, dtype=np.float64)
    keep = np.ones(Zc.shape[1], dtype=bool)
    keep[1:] = Zc[:, 1:].std(0) > 0  # drop covariates constant in this subset (e.g. sex)
    design = np.column_stack([xs, Zc[:, keep]])
    y = np.asarray(y, dtype=np.float64)
    n_cases = int(y.sum())
    flag = ""
    if n_cases >= firth_below_cases and n_cases < len(y):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                model = sm.Logit(y, design)
                if groups is not None:
                    res = model.fit(disp=0, maxiter=100, cov_type="cluster", cov_kwds={"groups": np.asarray(groups)})
                else:
                    res = model.fit(disp=0, maxiter=100)
            beta, se = float(res.params[0]), float(res.bse[0])
            ok = bool(res.mle_retvals.get("converged", True)) and np.isfinite(se) and abs(beta) < 15
            if ok:
                return _make(beta, se, float(res.pvalues[0]), "wald_cluster" if groups is not None else "wald", True, flag)
            flag = "ordinary fit unstable (possible separation); Firth used"
        except Exception as exc:  # statsmodels raises/warns on perfect separation or singular design
            flag = f"ordinary fit failed ({type(exc).__name__}); Firth used"
    else:
        flag = f"{n_cases} cases < {firth_below_cases}; Firth used"
    if groups is not None:
        flag += "; Firth SE not cluster-robust"
    beta, se, p, conv = firth_logit(design, y, 0)
    return _make(beta, se, p, "firth", conv, flag)


def _make(beta: float, se: float, p: float, method: str, converged: bool, flag: str) -> Refit:
    z = stats.norm.ppf(0.975)
    return Refit(beta=beta, se=se, p=p, or_=float(np.exp(beta)), or_ci_low=float(np.exp(beta - z * se)),
                 or_ci_high=float(np.exp(beta + z * se)), method=method, converged=converged, flag=flag)
