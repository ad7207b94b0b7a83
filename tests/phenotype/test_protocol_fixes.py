"""Issue 15 (items 5-7) and issue 12 (item 2) fixes: latent prototypes never shown as cases, intra-class
distances over distinct source windows, a cluster-respecting permutation null, protocol defaults."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from ecgproto.phenotype.cohort import Cohort
from ecgproto.phenotype.compare import best_per_phecode, cluster_permutation, permutation_null
from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.features import concept_family
from ecgproto.phenotype.intraclass import intraclass_analysis
from ecgproto.phenotype.pipeline import run_analysis, write_outputs
from ecgproto.phenotype.refit import refit_logit
from ecgproto.phenotype.report import write_report
from ecgproto.phenotype.stats import score_screen
from tests.phenotype.simulate import simulate

CFG = PhenotypeConfig(min_cases=20, min_controls=20, permutations=0, distance_permutations=200, auroc_bootstrap=20,
                      auroc_phecodes=(), firth_below_cases=30, min_concept_count=5)
LATENT = ["P0002", "P0015", "P0016", "P0017"]  # one AFIB prototype and every NORM prototype


def _with_provenance(data: dict) -> dict:
    """Give the simulated prototypes a projection record: a source ECG each, except ``LATENT``."""
    protos = data["prototypes"].copy()
    protos["ecg_id"] = (1000 + protos["index"]).astype(object)
    protos["window"] = 0
    protos.loc[protos["index"].map(lambda j: f"P{j:04d}" in LATENT), "ecg_id"] = None
    return dict(data, prototypes=protos)


def _run(data: dict, cfg: PhenotypeConfig = CFG):
    return run_analysis(data["scores"], data["similarities"], data["ecg_times"], data["statements"], data["patients"],
                        data["admissions"], data["diagnoses"], cfg, prototypes=data["prototypes"],
                        vectors=data["vectors"])


@pytest.fixture(scope="module")
def data() -> dict:
    return _with_provenance(simulate(300, seed=0))


def test_latent_prototypes_never_appear_in_phenotype_outputs(data, tmp_path) -> None:
    res = _run(data)
    assoc = res.associations()
    assert not set(LATENT) & set(assoc["feature_id"])
    assert "PC:NORM" not in set(assoc["feature_id"])  # the prototype-class family is built from cases only
    assert not set(LATENT) & set(res.intraclass[2][["feature_a", "feature_b"]].to_numpy().ravel())
    classes = res.intraclass[0].set_index("prototype_class")
    assert "NORM" not in classes.index and classes.loc["AFIB", "n_prototypes"] == 2
    summary = res.metadata["prototypes"]
    assert summary == {"total": 18, "latent": 4, "latent_excluded": 4, "include_latent": False,
                       "provenance_known": True}
    write_outputs(res, tmp_path)
    html = write_report(res, tmp_path, None, "test").read_text()
    assert "4 of 18 prototypes have no source ECG" in html
    assert not any(f in html for f in LATENT)
    assert not any(f in pd.read_csv(tmp_path / "associations.csv")["feature_id"].to_numpy() for f in LATENT)


def test_latent_prototypes_included_on_request_are_labelled(data) -> None:
    res = _run(data, dataclasses.replace(CFG, include_latent_prototypes=True))
    t = res.families["prototype"].table
    assert set(LATENT) <= set(t["feature_id"])
    assert t.loc[t["feature_id"] == "P0015", "label"].iloc[0] == "prototype 15 (NORM; latent, no source ECG)"
    assert res.metadata["prototypes"]["latent_excluded"] == 0


def test_cli_flag_includes_latent_prototypes() -> None:
    import argparse

    from ecgproto.commands.phenotype import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["s", "--mimic", "m", "--hosp", "h", "--out", "o"]
    assert parser.parse_args(base).include_latent_prototypes is None
    assert parser.parse_args(base + ["--include-latent-prototypes"]).include_latent_prototypes is True


def test_intraclass_counts_each_source_window_once() -> None:
    """Prototypes projected onto one window are one vector with one set of hits; they must not put zero
    distances into their class (issue 15 item 5)."""
    rng = np.random.default_rng(0)
    rows, vecs = [], []
    for c, n in (("A", 4), ("B", 3), ("C", 3)):
        for i in range(n):
            rows.append({"feature_id": f"P{len(rows):04d}", "branch": "rhythm", "prototype_class": c,
                         "local_index": len(rows), "ecg_id": 7 if (c == "A" and i < 3) or c == "C" else 100 + len(rows),
                         "window": 0})
            vecs.append(rng.normal(size=8))
    info = pd.DataFrame(rows)
    v = np.array(vecs)
    for j in (1, 2):  # A's prototypes 0-2 share a source: identical vectors
        v[j] = v[0]
    for j in (8, 9):
        v[j] = v[7]
    hits = pd.DataFrame({"feature_id": ["P0000", "P0001", "P0002", "P0003", "P0004"], "phecode": "428",
                         "score_z": 2.0})
    classes, test, pairs = intraclass_analysis(info, {"rhythm": v}, hits, n_perm=50, seed=0)
    c = classes.set_index("prototype_class")
    assert list(c["n_prototypes"]) == [4, 3, 3] and list(c["n_unique_sources"]) == [2, 3, 1]
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert c.loc["A", "mean_cosine_distance"] == pytest.approx(1 - u[0] @ u[3])  # one pair, not six
    assert c.loc["A", "status"] == "uniform"  # both distinct sources carry the same hit
    assert np.isnan(c.loc["C", "mean_cosine_distance"])  # one source only: no distance, left out of the test
    assert test["duplicate_prototypes_collapsed"] == 4 and len(pairs) == 1 + 3
    assert (pairs["cosine_distance"] > 1e-9).all()


def _clustered_cohort(seed: int, n_subjects: int = 70) -> tuple[Cohort, np.ndarray, np.ndarray]:
    """Admissions clustered by patient; features and outcome share patient effects but are independent."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, n_subjects)
    subject = np.repeat(np.arange(n_subjects), sizes)
    n = len(subject)
    X = rng.normal(size=(n_subjects, 3))[subject] + 0.5 * rng.normal(size=(n, 3))
    risk = rng.normal(0, 1.5, n_subjects)[subject]
    Y = (rng.random((n, 1)) < 1 / (1 + np.exp(-(-0.5 + risk[:, None])))).astype(np.uint8)
    units = pd.DataFrame({"subject_id": subject, "age": rng.normal(60, 10, n), "sex": rng.integers(0, 2, n)})
    phecodes = pd.DataFrame({"phecode": ["428"], "category": ["circulatory system"]})
    cohort = Cohort(units=units, ecg_units=pd.DataFrame(), Y=Y, mask=np.ones_like(Y, dtype=bool),
                    population=np.ones_like(Y, dtype=bool), phecodes=phecodes, flow={}, mapping_counts={},
                    unmapped_top=pd.DataFrame())
    return cohort, X, subject


def test_cluster_permutation_moves_whole_patients() -> None:
    groups = np.array([5, 5, 1, 2, 2, 2, 9, 3, 3, 4, 4, 4])
    perm = cluster_permutation(groups, np.random.default_rng(0))
    assert sorted(perm) == list(range(len(groups)))
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        sources = groups[perm[rows]]
        assert len(set(sources)) == 1 and (groups == sources[0]).sum() == len(rows)  # one same-size patient
        assert np.all(np.diff(perm[rows]) > 0)  # rows kept in order


def test_admission_unit_permutation_p_is_uniform_under_a_planted_null() -> None:
    """Issue 15 item 6: with patients shuffled whole and the cluster-robust screen, the permutation p of the
    best feature is uniform when nothing is associated (60 planted-null cohorts, 19 permutations each)."""
    ps = []
    for seed in range(60):
        cohort, X, groups = _clustered_cohort(seed)
        Z, _ = cohort.covariates()
        obs = score_screen(X, cohort.Y, cohort.mask, Z, groups=groups)
        best = -np.log10(np.nanmin(obs.p, axis=1))
        null = permutation_null({"prototype": X}, cohort, 19, seed, groups=groups, observed={"prototype": best})
        ps.append(float(null["null_perm_p"].iloc[0]))
    ps = np.array(ps)
    assert set(np.round(ps * 20)) <= set(range(1, 21))
    assert 0.4 < ps.mean() < 0.65
    assert (ps <= 0.1).mean() < 0.22
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_protocol_defaults() -> None:
    cfg = PhenotypeConfig()
    assert 200 <= cfg.permutations <= 1000
    assert cfg.min_concept_count is None and not cfg.include_latent_prototypes


def test_n_significant_follows_q_threshold(data) -> None:
    res = _run(data)
    r = res.families["prototype"]
    q = r.table["q_bh"].to_numpy()
    strict, loose = best_per_phecode(r, res.cohort, 1e-6), best_per_phecode(r, res.cohort, 0.5)
    assert strict["n_significant"].sum() == (q < 1e-6).sum() < loose["n_significant"].sum() == (q < 0.5).sum()
    assert (res.best.loc[res.best.family == "prototype", "n_significant"].sum()) == (q < CFG.q_threshold).sum()


def test_concepts_are_counted_in_the_cohort_only() -> None:
    st = pd.DataFrame({"record_id": ["a", "b", "c", "d"],
                       "statements": [["Sinus rhythm"], ["Sinus rhythm"], ["Sinus rhythm", "Atrial fibrillation"],
                                      ["Atrial fibrillation"]]})
    fam, summary = concept_family(st, 2)
    assert list(fam.info["label"]) == ["atrial fibrillation", "sinus rhythm"]
    fam, summary = concept_family(st, 2, count_in=np.array(["a", "b", "c"]))  # d is outside the cohort
    assert list(fam.info["label"]) == ["sinus rhythm"] and summary["concepts_below_min_count"] == 1
    res = _run(simulate(300, seed=0), dataclasses.replace(CFG, min_concept_count=None, min_cases=20))
    assert res.metadata["concepts"]["min_count"] == 20


def test_odds_ratio_is_per_cohort_sd() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.normal(0, 2, n)
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1 + 0.4 * x)))).astype(float)
    subset = x > -1  # a tested subset with a smaller SD than the cohort
    r = refit_logit(x[subset], y[subset], Z[subset], sd=x.std())
    ref = sm.Logit(y[subset], np.column_stack([x[subset] / x.std(), Z[subset]])).fit(disp=0)
    assert r.beta == pytest.approx(ref.params[0], rel=1e-6)
    own = refit_logit(x[subset], y[subset], Z[subset])
    assert own.beta == pytest.approx(r.beta * x[subset].std() / x.std(), rel=1e-6)
