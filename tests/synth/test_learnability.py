"""Issue 2 must-show: a simple classifier learns the synthetic labels from the signal."""

from __future__ import annotations

from ecgproto.synth.summary_features import learnability


def test_logistic_regression_on_summary_features_reaches_085_macro_auroc():
    result = learnability(n_records=1000, seed=0, min_test_pos=4)
    assert len(result["per_label"]) >= 10, result["per_label"]
    assert result["macro_auroc"] >= 0.85, result
