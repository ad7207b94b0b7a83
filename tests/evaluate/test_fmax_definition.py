"""Fmax under the two test-set conventions (issue 15 item 8): what an unlabeled record does."""

import numpy as np
import pytest

from ecgproto.evaluate.metrics import fmax


def test_unlabeled_records_count_in_precision_not_recall():
    # record 0: true label 0, predicted exactly; record 1: no true label, label 1 predicted at 0.9
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.8, 0.1], [0.2, 0.9]])
    keep_all, t = fmax(y, p)
    # for t in (0.1, 0.8] record 0 is exact and record 1 keeps a false positive: precision 1/2, recall 1,
    # F = 2/3; above 0.8 record 0 predicts nothing and recall drops to 0
    assert keep_all == pytest.approx(2 / 3) and 0.1 < t <= 0.8
    labelled = y.any(1)
    dropped, _ = fmax(y[labelled], p[labelled])  # drop_unlabeled (benchmark): both averages over record 0
    assert dropped == pytest.approx(1.0)
