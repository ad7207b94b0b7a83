import numpy as np
import pytest

from ecgproto.score.ood import calibrate_ood, ood_scores, ood_threshold

BRANCHES = ["rhythm"] * 4 + ["morphology"] * 6 + ["global"] * 2


def _sims(rng, n, shift=0.0):
    scale = np.array([1.0] * 4 + [13.0] * 6 + [4.0] * 2)  # branch scales differ, as in the model
    return (rng.uniform(0.6, 0.9, (n, 12)) - shift) * scale


def test_calibration_flags_the_requested_fraction_and_far_records():
    rng = np.random.default_rng(0)
    calib = calibrate_ood(_sims(rng, 4000), flag_rate=0.05, prototype_branches=BRANCHES)
    assert calib["branches"] == ["rhythm", "morphology", "global"]
    fresh = ood_scores(_sims(rng, 4000), BRANCHES, calib)
    assert abs((fresh >= calib["threshold"]).mean() - 0.05) < 0.015
    far = ood_scores(_sims(rng, 50, shift=0.5), BRANCHES, calib)
    assert (far >= calib["threshold"]).all()
    assert ood_threshold(calib, 0.2) < calib["threshold"] < ood_threshold(calib, 0.01)


def test_uncalibrated_score_ranks_by_similarity():
    rng = np.random.default_rng(1)
    near, far = _sims(rng, 10), _sims(rng, 10, shift=0.5)
    assert ood_scores(far, BRANCHES, None).min() > ood_scores(near, BRANCHES, None).max()


def test_bad_calibration_inputs():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="flag_rate"):
        calibrate_ood(_sims(rng, 10), flag_rate=1.5, prototype_branches=BRANCHES)
    with pytest.raises(ValueError, match="at least 2"):
        calibrate_ood(_sims(rng, 1), prototype_branches=BRANCHES)
    calib = calibrate_ood(_sims(rng, 10), prototype_branches=BRANCHES)
    with pytest.raises(ValueError, match="branches"):
        ood_scores(_sims(rng, 3), ["a"] * 12, calib)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        ood_scores(rng.normal(size=(3, 5)), BRANCHES, calib)
