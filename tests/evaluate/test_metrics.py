"""Metrics equal scikit-learn's on random predictions; undefined labels are NaN."""

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ecgproto.evaluate.metrics import (
    auroc_weighted,
    average_precision_weighted,
    fmax,
    fmax_weighted,
    per_label_auprc,
    per_label_brier,
    per_label_threshold_metrics,
    threshold_metrics_weighted,
    weighted_auroc,
)
from ecgproto.metrics import macro_auroc, per_label_auroc


@pytest.fixture
def random_case():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 6)) < [0.05, 0.2, 0.5, 0.3, 0.1, 0.4]).astype(np.uint8)
    p = np.clip(0.25 * y + rng.random((300, 6)) * 0.75, 0, 1)
    p[:, 3] = np.round(p[:, 3], 1)  # many ties
    return y, p


def test_auroc_auprc_brier_equal_sklearn(random_case):
    y, p = random_case
    auc, ap, br = per_label_auroc(y, p), per_label_auprc(y, p), per_label_brier(y, p)
    for c in range(y.shape[1]):
        assert auc[c] == pytest.approx(roc_auc_score(y[:, c], p[:, c]), abs=1e-12)
        assert ap[c] == pytest.approx(average_precision_score(y[:, c], p[:, c]), abs=1e-12)
        assert br[c] == pytest.approx(brier_score_loss(y[:, c], p[:, c]), abs=1e-12)
    assert macro_auroc(y, p) == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert weighted_auroc(y, p) == pytest.approx(roc_auc_score(y, p, average="weighted"))


def test_threshold_metrics_equal_sklearn(random_case):
    y, p = random_case
    th = np.linspace(0.3, 0.7, y.shape[1])
    m = per_label_threshold_metrics(y, p, th)
    for c in range(y.shape[1]):
        pred = p[:, c] >= th[c]
        assert m["f1"][c] == pytest.approx(f1_score(y[:, c], pred))
        assert m["sensitivity"][c] == pytest.approx(recall_score(y[:, c], pred))
        assert m["specificity"][c] == pytest.approx(recall_score(1 - y[:, c], ~pred))
        assert m["ppv"][c] == pytest.approx(precision_score(y[:, c], pred))


def test_weights_equal_explicit_resample(random_case):
    """Integer weights give exactly the metrics of the data with rows repeated."""
    y, p = random_case
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y), len(y))
    w = np.bincount(idx, minlength=len(y))[None].astype(float)
    np.testing.assert_allclose(auroc_weighted(y, p, w)[0], per_label_auroc(y[idx], p[idx]), atol=1e-12)
    np.testing.assert_allclose(average_precision_weighted(y, p, w)[0], per_label_auprc(y[idx], p[idx]), atol=1e-12)
    th = np.full(y.shape[1], 0.5)
    np.testing.assert_allclose(
        threshold_metrics_weighted(y, p, th, w)["f1"][0],
        per_label_threshold_metrics(y[idx], p[idx], th)["f1"], atol=1e-12)
    assert fmax(y[idx], p[idx])[0] == pytest.approx(float(fmax_weighted(y, p, w)[0][0]))


def test_fmax_matches_direct_definition(random_case):
    y, p = random_case
    best = 0.0
    for t in np.round(np.arange(0, 1.001, 0.01), 10):
        pred = p >= t
        has_pred = pred.any(1)
        has_true = y.any(1)
        tp = (pred & (y == 1)).sum(1)
        prec = (tp[has_pred] / pred[has_pred].sum(1)).mean() if has_pred.any() else np.nan
        rec = (tp[has_true] / y[has_true].sum(1)).mean()
        if np.isfinite(prec) and prec + rec > 0:
            best = max(best, 2 * prec * rec / (prec + rec))
    assert fmax(y, p)[0] == pytest.approx(best)


def test_label_without_positives_is_undefined_not_half():
    y = np.zeros((20, 2), dtype=np.uint8)
    y[:5, 0] = 1
    p = np.linspace(0, 1, 40).reshape(20, 2)
    auc, ap = per_label_auroc(y, p), per_label_auprc(y, p)
    assert np.isnan(auc[1]) and np.isnan(ap[1])
    assert np.isfinite(auc[0])
    assert macro_auroc(y, p) == auc[0]
    m = per_label_threshold_metrics(y, p, np.array([0.5, 0.5]))
    assert np.isnan(m["f1"][1]) and np.isnan(m["sensitivity"][1]) and np.isfinite(m["specificity"][1])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        per_label_auroc(np.zeros((3, 2)), np.zeros((3, 3)))
