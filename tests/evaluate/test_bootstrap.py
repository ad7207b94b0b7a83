"""Patient-level bootstrap: intervals cover the true value; patients, not records, are resampled."""

import numpy as np
import pytest
from scipy.stats import norm

from ecgproto.evaluate.bootstrap import (MIN_CI_PATIENTS, BootstrapPlan, class_patient_counts, interval_defined,
                                         patient_bootstrap, percentile_ci)
from ecgproto.evaluate.metrics import auroc_weighted


def _binormal(rng, n, d):
    """Scores N(0,1) for negatives, N(d,1) for positives: population AUROC = Φ(d/√2)."""
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + d * y
    return y[:, None], s[:, None]


def test_ci_covers_population_auroc_at_nominal_rate():
    rng = np.random.default_rng(0)
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    hits, reps = 0, 80
    for r in range(reps):
        y, s = _binormal(rng, 200, d)
        plan = patient_bootstrap(np.arange(200), 300, seed=r)
        lo, hi = percentile_ci(auroc_weighted(y, s, plan.weights())[:, 0], 0.95)
        hits += lo <= true_auc <= hi
    assert 0.86 <= hits / reps <= 1.0


def test_duplicated_records_do_not_shrink_patient_level_interval():
    """Each patient has 4 identical records: a patient-level CI keeps the width of the
    unduplicated data, a record-level one would be about half as wide."""
    rng = np.random.default_rng(1)
    y, s = _binormal(rng, 150, 1.0)
    pid = np.arange(150)
    width_one = np.subtract(*percentile_ci(auroc_weighted(y, s, patient_bootstrap(pid, 400, 0).weights())[:, 0], 0.95)[::-1])
    y4, s4, pid4 = np.repeat(y, 4, 0), np.repeat(s, 4, 0), np.repeat(pid, 4)
    width_patient = np.subtract(*percentile_ci(auroc_weighted(y4, s4, patient_bootstrap(pid4, 400, 0).weights())[:, 0], 0.95)[::-1])
    width_record = np.subtract(*percentile_ci(auroc_weighted(y4, s4, patient_bootstrap(np.arange(600), 400, 0).weights())[:, 0], 0.95)[::-1])
    assert width_patient == pytest.approx(width_one, rel=0.25)
    assert width_record < 0.7 * width_patient


def test_plan_is_seeded_and_round_trips(tmp_path):
    pid = np.array([5, 5, 7, 9, 9, 9])
    a, b = patient_bootstrap(pid, 20, seed=3), patient_bootstrap(pid, 20, seed=3)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert a.n_patients == 3
    w = a.weights()
    assert w.shape == (20, 6)
    # all records of one patient share the weight; weights sum to the records drawn
    np.testing.assert_array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w[:, 3], w[:, 5])
    c = a.save(tmp_path / "boot.npz")
    back = BootstrapPlan.load(c)
    np.testing.assert_array_equal(back.draws, a.draws)
    np.testing.assert_array_equal(back.weights(), w)


def test_percentile_ci_ignores_undefined_resamples():
    s = np.array([[np.nan, np.nan], [0.1, np.nan], [0.2, np.nan], [0.3, 0.5]])
    lo, hi = percentile_ci(s, 0.5)
    assert np.isfinite(lo[0]) and np.isnan(lo[1]) and np.isnan(hi[1])
    with pytest.raises(ValueError, match="level"):
        percentile_ci(s, 95)


def test_class_patient_counts_count_patients_not_records():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    pos, neg = class_patient_counts(y, np.array([7, 7, 8, 9]))  # patient 7 has two positive records
    assert pos.tolist() == [1, 1] and neg.tolist() == [2, 2]
    assert interval_defined(np.array([5, 4, 9]), np.array([5, 9, 4])).tolist() == [True, False, False]
    assert interval_defined(2, 2, minimum=2)


def _one_vs_one_predictions():
    """Label AFIB: 1 positive and 1 negative patient (perfectly ranked); NORM: 20 vs 20 patients."""
    from ecgproto.data.labels import all_labels
    from ecgproto.evaluate.evaluation import Predictions

    codes = all_labels()
    rng = np.random.default_rng(0)
    n = 40
    y = np.zeros((n, 71), dtype=np.uint8)
    y[:20, codes.index("NORM")] = 1
    y[0, codes.index("AFIB")] = 1
    p = np.clip(0.3 * y + 0.7 * rng.random((n, 71)), 0, 1)
    p[:, codes.index("AFIB")] = 0.0
    p[0, codes.index("AFIB")] = 0.9
    return Predictions(np.arange(1, n + 1), np.arange(n), y, {"fused": p}), codes


def test_too_few_cases_give_no_interval_but_keep_the_point_estimate():
    from ecgproto.evaluate.config import EvaluateConfig
    from ecgproto.evaluate.evaluation import evaluate_predictions
    from ecgproto.evaluate.report import _ci
    from ecgproto.evaluate.tasks import Task

    pred, codes = _one_vs_one_predictions()
    tasks = [Task("fused", "afib", ("AFIB",)), Task("fused", "norm", ("NORM",))]
    # only records 0 and 20 (1 positive vs 1 negative patient) for the AFIB-only evaluation
    keep = np.isin(np.arange(40), [0, 20])
    small = type(pred)(pred.ecg_ids[keep], pred.patient_ids[keep], pred.labels[keep], {"fused": pred.probs["fused"][keep]})
    cfg = EvaluateConfig(n_bootstrap=200, gallery_size=0, n_top_curves=0)
    ev = evaluate_predictions(small, cfg, tasks=tasks[:1])
    afib = ev.per_label.set_index("label").loc["AFIB"]
    assert afib["auroc"] == 1.0 and afib["n_pos"] == 1 and afib["n_neg"] == 1  # the point estimate stays
    assert np.isnan(afib["auroc_lo"]) and np.isnan(afib["auroc_hi"]) and afib["ci_too_few"]  # not [1, 1]
    assert _ci(afib.to_dict(), "auroc") == "1.000 [n/a (too few positives/negatives)]"
    summary = ev.summary.iloc[0]
    assert summary["macro_auroc"] == 1.0 and np.isnan(summary["macro_auroc_lo"]) and summary["ci_too_few"]

    ev = evaluate_predictions(pred, cfg, tasks=tasks)  # NORM: 20 vs 20 patients, a real interval
    norm_row = ev.per_label.set_index("label").loc["NORM"]
    assert not norm_row["ci_too_few"] and norm_row["auroc_lo"] < norm_row["auroc"] < norm_row["auroc_hi"]
    assert "ci_minimum" in ev.settings and str(MIN_CI_PATIENTS) in ev.settings["ci_minimum"]


def test_paired_comparison_has_no_interval_from_too_few_cases():
    from ecgproto.evaluate.compare import paired_auroc_difference
    from ecgproto.evaluate.tasks import Task

    pred, _ = _one_vs_one_predictions()
    keep = np.isin(np.arange(40), [0, 20])
    probs = {"fused": pred.probs["fused"][keep]}
    table = paired_auroc_difference(pred.labels[keep], probs, probs, pred.patient_ids[keep],
                                    [Task("fused", "afib", ("AFIB",))], 100, 0, 0.95)
    row = table.iloc[0]
    assert row["a"] == 1.0 and row["diff"] == 0.0 and row["ci_too_few"]
    assert np.isnan(row[["a_lo", "a_hi", "diff_lo", "diff_hi"]].to_numpy(dtype=float)).all()


def _dense_patient_counts(plan: BootstrapPlan) -> np.ndarray:
    """Former construction of the (B, P) counts (np.add.at), kept as reference."""
    counts = np.zeros((plan.n_resamples, plan.n_patients))
    rows = np.repeat(np.arange(plan.n_resamples), plan.draws.shape[1])
    np.add.at(counts, (rows, plan.draws.ravel()), 1.0)
    return counts


@pytest.mark.parametrize("block", [1, 7, 100, 1000])
def test_count_blocks_are_the_dense_patient_counts(block):
    rng = np.random.default_rng(4)
    plan = patient_bootstrap(rng.integers(0, 150, 240), 230, seed=3)
    dense = _dense_patient_counts(plan)
    assert plan.counts.dtype == np.uint8 and plan.counts.shape == (plan.n_patients, 230)
    np.testing.assert_array_equal(np.concatenate(list(plan.count_blocks(block)), axis=1).T, dense)
    np.testing.assert_array_equal(plan.patient_counts(5, 17), dense[5:17])
    mask = rng.random(240) > 0.2
    np.testing.assert_array_equal(plan.weights(mask), dense[:, plan.record_patient][:, mask])


def test_counts_widen_past_255_draws():
    plan = BootstrapPlan(np.array(["a", "b"]), np.array([0, 1]), np.zeros((2, 300), dtype=np.int32), 0)
    assert plan.counts[0].tolist() == [300, 300] and plan.counts.dtype == np.uint16
