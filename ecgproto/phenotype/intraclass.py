"""Intra-class prototype distances vs the class's significance pattern (mixed vs uniform)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def class_patterns(info: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """Per prototype class: "mixed", "uniform" or "none".

    ``info``: prototype table (feature_id, branch, prototype_class); ``hits``: significant
    prototype associations (feature_id, phecode, score_z). A class is mixed if some
    (phecode, sign) is significant for some but not all of its prototypes, uniform if every
    significant (phecode, sign) holds for all of them, none if none is significant.
    """
    sig = hits.assign(key=hits["phecode"].astype(str) + np.where(hits["score_z"] > 0, "+", "-"))
    sets = sig.groupby("feature_id")["key"].apply(frozenset).to_dict()
    rows = []
    for (branch, cls), g in info.groupby(["branch", "prototype_class"], sort=False):
        s = [sets.get(f, frozenset()) for f in g["feature_id"]]
        union = frozenset().union(*s)
        status = "none" if not union else ("uniform" if all(x == union for x in s) else "mixed")
        rows.append({"branch": branch, "prototype_class": cls, "n_prototypes": len(g), "status": status,
                     "n_sig_keys": len(union)})
    return pd.DataFrame(rows)


def _pairwise_cosine(v: np.ndarray) -> np.ndarray:
    u = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return 1.0 - u @ u.T


def unique_sources(info: pd.DataFrame) -> np.ndarray:
    """Bool (len(info),): the first prototype of each (branch, class, source ECG, window).

    Prototypes projected onto the same window of the same ECG are the same latent vector with the
    same hits; counting them more than once puts zero distances into their class's mean. Rows
    without a source (latent prototypes, or no provenance recorded) are each kept.
    """
    if "ecg_id" not in info.columns:
        return np.ones(len(info), dtype=bool)
    window = info["window"] if "window" in info.columns else pd.Series(0, index=info.index)
    key = pd.DataFrame({"b": info["branch"], "c": info["prototype_class"], "e": info["ecg_id"], "w": window})
    has_source = info["ecg_id"].notna().to_numpy()
    return ~key.duplicated().to_numpy() | ~has_source


def intraclass_analysis(info: pd.DataFrame, vectors: dict[str, np.ndarray], hits: pd.DataFrame,
                        n_perm: int, seed: int) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Mean pairwise cosine distance within each class, and mixed > uniform tests.

    ``vectors[branch]`` (P_g, D) prototype vectors of the branch, indexed by ``info["local_index"]``
    (or, without that column, in the order of the branch's rows of ``info``). Prototypes sharing a
    source window are counted once (``unique_sources``): a class's pattern and distance use its
    distinct prototypes, and a class with fewer than two has no distance (left out of the tests).
    Distances are compared within branch only: each class distance is converted to its percentile
    rank within its branch; the headline p is a permutation test (mixed/uniform labels shuffled
    within branch, statistic = mean percentile of mixed − uniform); a one-sided Mann–Whitney p is
    also given. Pair level: Spearman of the Jaccard distance of significance sets vs cosine
    distance over within-class pairs of distinct prototypes.
    Returns (classes table, test summary, pairs table).
    """
    info = info.reset_index(drop=True)
    unique = unique_sources(info)
    classes = class_patterns(info[unique], hits)
    key = ["branch", "prototype_class"]
    where = pd.MultiIndex.from_frame(classes[key])
    classes["n_prototypes"] = info.groupby(key, sort=False).size().reindex(where).to_numpy()
    classes["n_unique_sources"] = info[unique].groupby(key, sort=False).size().reindex(where).to_numpy()
    sig = hits.assign(key=hits["phecode"].astype(str) + np.where(hits["score_z"] > 0, "+", "-"))
    sets = sig.groupby("feature_id")["key"].apply(frozenset).to_dict()
    dist, pairs = [], []
    for row in classes.itertuples():
        b = info[info["branch"] == row.branch]
        local = b["local_index"].to_numpy(int) if "local_index" in b.columns else np.arange(len(b))
        sel = np.flatnonzero((b["prototype_class"].to_numpy() == row.prototype_class) & unique[b.index.to_numpy()])
        v = np.asarray(vectors[row.branch])[local[sel]].reshape(len(sel), -1)
        d = _pairwise_cosine(v)
        iu = np.triu_indices(len(sel), 1)
        dist.append(float(d[iu].mean()) if len(sel) > 1 else np.nan)
        fids = b["feature_id"].to_numpy()[sel]
        for a, c in zip(*iu):
            sa, sc = sets.get(fids[a], frozenset()), sets.get(fids[c], frozenset())
            jac = 1.0 - len(sa & sc) / len(sa | sc) if (sa | sc) else 0.0
            pairs.append((row.branch, row.prototype_class, fids[a], fids[c], float(d[a, c]), jac))
    classes["mean_cosine_distance"] = dist
    classes["distance_percentile_in_branch"] = classes.groupby("branch")["mean_cosine_distance"].rank(pct=True)
    pairs_df = pd.DataFrame(pairs, columns=["branch", "prototype_class", "feature_a", "feature_b",
                                            "cosine_distance", "jaccard_distance"])
    test = _tests(classes, n_perm, seed)
    test["duplicate_prototypes_collapsed"] = int((~unique).sum())
    if len(pairs_df) > 2 and pairs_df["jaccard_distance"].std() > 0:
        rho, p = stats.spearmanr(pairs_df["cosine_distance"], pairs_df["jaccard_distance"])
        test.update(pairs=int(len(pairs_df)), pair_spearman_rho=float(rho), pair_spearman_p_naive=float(p))
    return classes, test, pairs_df


def _tests(classes: pd.DataFrame, n_perm: int, seed: int) -> dict:
    c = classes[classes["status"].isin(["mixed", "uniform"]) & classes["mean_cosine_distance"].notna()]
    out = {"n_mixed": int((c.status == "mixed").sum()), "n_uniform": int((c.status == "uniform").sum()),
           "n_none": int((classes.status == "none").sum()), "permutations": n_perm}
    if out["n_mixed"] == 0 or out["n_uniform"] == 0:
        out["note"] = "test needs at least one mixed and one uniform class"
        return out
    x = c["distance_percentile_in_branch"].to_numpy()
    mixed = (c["status"] == "mixed").to_numpy()
    branch = c["branch"].to_numpy()
    obs = x[mixed].mean() - x[~mixed].mean()
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(n_perm):
        perm = mixed.copy()
        for b in np.unique(branch):
            idx = np.flatnonzero(branch == b)
            perm[idx] = rng.permutation(perm[idx])
        if perm.all() or not perm.any():
            continue
        count += (x[perm].mean() - x[~perm].mean()) >= obs
    out.update(statistic_mean_percentile_diff=float(obs),
               permutation_p=float((1 + count) / (1 + n_perm)),
               mannwhitney_p=float(stats.mannwhitneyu(x[mixed], x[~mixed], alternative="greater").pvalue),
               median_distance_mixed=float(c.loc[mixed, "mean_cosine_distance"].median()),
               median_distance_uniform=float(c.loc[~mixed, "mean_cosine_distance"].median()))
    return out
