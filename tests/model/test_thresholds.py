"""Decision thresholds: F1 on frequent labels, prevalence for rare ones, a rate cap, untrained labels never."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ecgproto.model.thresholds import NEVER, RULES, threshold_table, tune_thresholds


def _long_tail(seed=0, n_val=2000, n_train=17000):
    """PTB-XL-like label burden: a few frequent labels, many with 1–3 validation positives whose
    probabilities are uninformative and tiny (the plain F1 optimum then predicts most records)."""
    rng = np.random.default_rng(seed)
    prev = np.r_[np.geomspace(0.45, 0.02, 11), np.full(60, 0.001)]

    def draw(n):
        y = rng.random((n, len(prev))) < prev
        z = 2.0 * y + rng.normal(size=y.shape) + np.log(prev / (1 - prev))
        p = 1 / (1 + np.exp(-z))
        p[:, 11:] = rng.uniform(0, 0.01, (n, 60))  # rare labels: the model learned nothing
        return y, p

    (y_train, _), (y_val, p_val), (y_test, p_test) = draw(n_train), draw(n_val), draw(n_val)
    for c in range(11, 71):  # 1–2 validation positives each, one with a tiny probability
        y_val[:, c] = False
        y_val[rng.choice(n_val, 1 + c % 2, replace=False), c] = True
        y_val[np.flatnonzero(y_val[:, c])[0], c] = True
        p_val[np.flatnonzero(y_val[:, c])[0], c] = 0.0035
    return y_train, y_val, p_val, y_test, p_test


def test_frequent_labels_keep_their_f1_optimal_threshold():
    rng = np.random.default_rng(0)
    y = rng.random((400, 4)) < [0.5, 0.3, 0.2, 0.1]
    p = np.clip(0.45 * y + 0.55 * rng.random(y.shape), 0, 1)
    table = threshold_table(y, p)
    assert (table["rule"] == "f1").all()
    for c in range(4):
        best = max(f1_score(y[:, c], p[:, c] >= t) for t in np.unique(p[:, c]))
        assert f1_score(y[:, c], p[:, c] >= table["threshold"][c]) == pytest.approx(best)


def test_rare_labels_are_not_predicted_for_most_records():
    y_train, y_val, p_val, _, _ = _long_tail()
    plain = threshold_table(y_val, p_val, min_positives=1, max_rate_ratio=1e9)
    assert (plain["val_rate"][11:] > 0.5).mean() > 0.5  # the degenerate thresholds this rule exists for
    table = threshold_table(y_val, p_val, train_labels=y_train)
    rare = table.iloc[11:]
    assert (rare["rule"] == "prevalence").all()
    assert (np.abs(rare["val_rate"] - rare["prevalence"]) <= 1 / len(y_val)).all()  # about the training prevalence
    assert set(table["rule"]) <= set(RULES)
    assert (table["val_rate"] <= np.maximum(1.5 * table["prevalence"], 1 / len(y_val)) + 1e-12).all()


def test_mean_predicted_labels_within_1_5_times_the_true_mean():
    y_train, y_val, p_val, y_test, p_test = _long_tail(seed=1)
    true = y_test.sum(1).mean()
    plain = tune_thresholds(y_val, p_val, min_positives=1, max_rate_ratio=1e9)
    assert (p_test >= plain).sum(1).mean() > 3 * true
    th = tune_thresholds(y_val, p_val, train_labels=y_train)
    assert (p_test >= th).sum(1).mean() <= 1.5 * true


def test_rate_cap_raises_a_threshold_that_predicts_too_many_records():
    rng = np.random.default_rng(2)
    y = rng.random((1000, 1)) < 0.05
    p = np.where(y, rng.uniform(0.5, 1.0, y.shape), rng.uniform(0.0, 1.0, y.shape))  # F1 optimum near 0.5
    free = threshold_table(y, p, max_rate_ratio=1e9).iloc[0]
    capped = threshold_table(y, p, max_rate_ratio=1.5).iloc[0]
    assert free["val_rate"] > 1.5 * free["prevalence"]
    assert capped["rule"] == "capped" and capped["threshold"] > free["threshold"]
    assert capped["val_rate"] == pytest.approx(np.floor(1.5 * y.sum()) / len(y))


def test_untrained_labels_are_never_predicted_and_thresholds_are_json_safe():
    rng = np.random.default_rng(3)
    y_val = rng.random((300, 3)) < 0.3
    p = rng.random((300, 3))
    p[:5, 2] = 1.0  # a saturated float32 sigmoid
    y_train = rng.random((900, 3)) < 0.3
    y_train[:, 2] = False
    table = threshold_table(y_val, p, train_labels=y_train)
    assert table["rule"][2] == "not_trained" and table["threshold"][2] == NEVER > 1.0
    assert table["val_rate"][2] == 0.0
    json.dumps(tune_thresholds(y_val, p, train_labels=y_train).tolist(), allow_nan=False)


def test_prevalence_fallback_respects_ties_and_absent_labels():
    y = np.zeros((100, 3), dtype=bool)
    y[0, 0] = y[1, 1] = True
    p = np.full((100, 3), 0.2)  # a constant output: any threshold at 0.2 predicts every record
    p[:, 1] = np.linspace(0, 1, 100)
    table = threshold_table(y, p)
    assert table["val_rate"][0] == 0.0 and 0.2 < table["threshold"][0] <= NEVER  # above the tie, not at it
    assert table["val_rate"][1] == 0.01 and table["threshold"][1] == 1.0  # prevalence 1/100: the top record
    assert table["rule"][2] == "prevalence" and table["threshold"][2] == NEVER  # no positive anywhere


def test_bad_arguments_are_rejected():
    y, p = np.zeros((4, 2)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="same shape"):
        threshold_table(y, p[:, :1])
    with pytest.raises(ValueError, match="N >= 1"):
        threshold_table(y[:0], p[:0])
    with pytest.raises(ValueError, match="min_positives"):
        threshold_table(y, p, min_positives=0)
    with pytest.raises(ValueError, match="max_rate_ratio"):
        threshold_table(y, p, max_rate_ratio=0.5)
    with pytest.raises(ValueError, match="train_labels"):
        threshold_table(y, p, train_labels=np.zeros((3, 5)))
