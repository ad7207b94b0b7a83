"""Bootstrap metrics from patient draw counts equal the weighted metrics on the dense (B, N) weights."""

import numpy as np
import pytest

import ecgproto.evaluate.resampled as resampled
from ecgproto.evaluate.bootstrap import patient_bootstrap, percentile_ci
from ecgproto.evaluate.metrics import (auroc_weighted, average_precision_weighted, brier_weighted, fmax_grid,
                                       fmax_record_terms, fmax_weighted, threshold_metrics_weighted)
from ecgproto.evaluate.resampled import auroc_resamples, fmax_resamples, label_metric_resamples


def _case(seed=4, n=240, prevalence=(0.05, 0.1, 0.3, 0.5, 0.02, 0.0, 1.0)):
    rng = np.random.default_rng(seed)
    y = rng.random((n, len(prevalence))) < prevalence  # incl. a label without positives, one without negatives
    p = np.round(np.clip(0.3 * y + rng.random(y.shape), 0, 1), 2)  # many ties
    p[:20, 0] = 0.5  # a tie group across classes
    plan = patient_bootstrap(rng.integers(0, 150, n), 230, seed=3)
    mask = rng.random(n) > 0.2
    return y[mask], p[mask], plan, plan.record_patient[mask], plan.weights(mask)


@pytest.mark.parametrize("block", [1, 7, 100, 1000])
def test_label_metrics_equal_the_weighted_metrics(block):
    y, p, plan, rp, w = _case()
    th = np.linspace(0.3, 0.7, y.shape[1])
    got = label_metric_resamples(plan, y, p, rp, th, block=block)
    ref = {"auroc": auroc_weighted(y, p, w), "auprc": average_precision_weighted(y, p, w),
           "brier": brier_weighted(y, p, w), **threshold_metrics_weighted(y, p, th, w)}
    assert set(got) == set(ref)
    for m in ("auroc", "f1", "sensitivity", "specificity", "ppv"):  # whole-number sums: identical
        np.testing.assert_array_equal(got[m], ref[m], err_msg=m)
    for m in ("auprc", "brier"):  # same terms, another summation order
        np.testing.assert_allclose(got[m], ref[m], rtol=0, atol=1e-12, err_msg=m)
        np.testing.assert_array_equal(np.isnan(got[m]), np.isnan(ref[m]))
        for a, b in zip(percentile_ci(got[m], 0.95), percentile_ci(ref[m], 0.95)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert np.isnan(got["auroc"][:, 5]).all() and np.isnan(got["auroc"][:, 6]).all()
    np.testing.assert_array_equal(auroc_resamples(plan, y, p, rp, block=block), ref["auroc"])
    assert "f1" not in label_metric_resamples(plan, y, p, rp, None, block=block)


def test_float64_fallback_gives_the_same_values(monkeypatch):
    y, p, plan, rp, w = _case(seed=5)
    monkeypatch.setattr(resampled, "EXACT_FLOAT32", 1)  # as if the sums could pass 2**24
    assert resampled.RankedLabels(y, p, rp, plan.n_patients).dtype == np.float64
    np.testing.assert_array_equal(auroc_resamples(plan, y, p, rp), auroc_weighted(y, p, w))


def test_fmax_equals_the_weighted_fmax():
    y, p, plan, rp, w = _case(seed=6)
    y[:5] = False  # records without a true label
    ref, _ = fmax_weighted(y, p, w, 0.01)
    np.testing.assert_allclose(fmax_resamples(plan, y, p, rp, 0.01, block=64), ref, rtol=0, atol=1e-12)


def test_fmax_record_terms_match_thresholding_each_grid_value():
    """The former per-threshold loop (p >= t) as reference: identical terms."""
    rng = np.random.default_rng(7)
    y = rng.random((50, 6)) < 0.3
    p = np.round(rng.random((50, 6)), 2)
    p[0, 0] = np.nan
    grid = fmax_grid(0.01)
    has_true, prec, rec, has_pred = fmax_record_terms(y, p, grid)
    n_true = y.sum(1)
    for k, t in enumerate(grid):
        pred = p >= t
        tp, n_pred = (pred & y).sum(1), pred.sum(1)
        np.testing.assert_array_equal(has_pred[k], n_pred > 0)
        np.testing.assert_array_equal(prec[k], np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0))
        np.testing.assert_array_equal(rec[k], np.where(n_true > 0, tp / np.maximum(n_true, 1), 0.0))
    np.testing.assert_array_equal(has_true, n_true > 0)


def test_evaluation_intervals_are_those_of_the_weighted_metrics():
    from ecgproto.data.labels import all_labels
    from ecgproto.evaluate.config import EvaluateConfig
    from ecgproto.evaluate.evaluation import Predictions, evaluate_predictions
    from ecgproto.evaluate.tasks import Task

    rng = np.random.default_rng(8)
    n = 160
    y = (rng.random((n, 71)) < 0.15).astype(np.uint8)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random((n, 71)), 0, 1), 3)
    th = np.full(71, 0.5)
    pred = Predictions(np.arange(n), rng.integers(0, 110, n), y, {"fused": p}, {"fused": th}, "validation")
    cfg = EvaluateConfig(n_bootstrap=60, gallery_size=0, n_top_curves=0)
    ev = evaluate_predictions(pred, cfg, seed=2, tasks=[Task("fused", "all71", all_labels())])
    w = patient_bootstrap(pred.patient_ids, 60, seed=2).weights()
    rows = ev.per_label.set_index("label").loc[list(all_labels())]
    for m, ref in (("auroc", auroc_weighted(y, p, w)), ("auprc", average_precision_weighted(y, p, w)),
                   ("f1", threshold_metrics_weighted(y, p, th, w)["f1"])):
        lo, hi = percentile_ci(ref, cfg.ci_level, rows["ci_too_few"].to_numpy() == False)  # noqa: E712
        np.testing.assert_allclose(rows[f"{m}_lo"].to_numpy(float), lo, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rows[f"{m}_hi"].to_numpy(float), hi, rtol=0, atol=1e-12)
    f_lo, f_hi = percentile_ci(fmax_weighted(y, p, w, cfg.fmax_step)[0], cfg.ci_level)
    summary = ev.summary.iloc[0]
    assert summary["fmax_lo"] == pytest.approx(f_lo, abs=1e-12) and summary["fmax_hi"] == pytest.approx(f_hi, abs=1e-12)
