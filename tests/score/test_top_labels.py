"""``top_labels`` never lists a label that can never be predicted (not trained / no validation positive)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgproto.score.columns import OutputSpec, build_rows


def test_never_predictable_labels_are_not_top_labels():
    labels = ("A", "B", "C", "D")
    spec = OutputSpec(labels=labels, thresholds=np.array([0.5, 1.01, 0.5, 0.5]), proto_branch=("rhythm",),
                      proto_class=("A",), id_columns=(), top_k=2, ood_calibration=None, ood_threshold=None)
    records = pd.DataFrame({"record_id": ["r1", "r2"], "path": ["p1", "p2"]})
    probs = np.array([[0.2, 0.99, 0.7, 0.1], [0.9, 0.95, 0.1, 0.3]], np.float32)
    table, _ = build_rows(records, ["ok", "ok"], ["", ""], probs, np.zeros((2, 1), np.float32), spec)
    rows = table.to_pandas()
    assert rows["top_labels"].tolist() == ["C;A", "A;D"]  # B (threshold 1.01) is the most probable but never listed
    assert (rows["pred__B"] == 0).all() and rows["prob__B"].tolist() == [np.float32(0.99), np.float32(0.95)]
