"""Patient-level bootstrap: intervals cover the true value; patients, not records, are resampled."""

import numpy as np
import pytest
from scipy.stats import norm

from ecgproto.evaluate.bootstrap import BootstrapPlan, patient_bootstrap, percentile_ci
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
