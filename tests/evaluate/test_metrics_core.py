import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from ecgproto.metrics import macro_auroc, per_label_auroc
from ecgproto.model.thresholds import tune_thresholds


def test_tuned_threshold_is_f1_optimal():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(200, 3))
    p = np.clip(y * 0.3 + rng.random((200, 3)) * 0.7, 0, 1)
    th = tune_thresholds(y, p)
    for c in range(3):
        best = max(f1_score(y[:, c], p[:, c] >= t) for t in np.unique(p[:, c]))
        assert np.isclose(f1_score(y[:, c], p[:, c] >= th[c]), best)


def test_auroc_undefined_label_is_nan():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]])
    aucs = per_label_auroc(y, p)
    assert np.isnan(aucs[1]) and aucs[0] == roc_auc_score(y[:, 0], p[:, 0])
    assert macro_auroc(y, p) == aucs[0]
