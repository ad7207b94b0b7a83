"""Subgroup intervals use the fixed label set of the main intervals (issue 15 item 8)."""

import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.evaluate.evaluation import Predictions, evaluate_predictions
from ecgproto.evaluate.tasks import Task


def test_subgroup_interval_averages_over_a_fixed_label_set():
    """Ten rare labels, each with one positive patient ranked last (AUROC 0), and ten well-ranked common
    labels: a resample that misses a rare label's only positive must keep that label (at its subgroup
    value), otherwise the interval drifts towards the common labels and leaves the point estimate."""
    rng = np.random.default_rng(0)
    n = 80
    y = np.zeros((n, 71), dtype=np.uint8)
    p = rng.random((n, 71)) * 0.5
    y[:, :10] = rng.random((n, 10)) < 0.4
    p[:, :10] = np.clip(0.6 * y[:, :10] + 0.4 * rng.random((n, 10)), 0, 1)
    for c in range(10, 20):
        y[c, c] = 1
        p[c, c] = 0.0  # the lone positive has the lowest score: AUROC 0
    info = pd.DataFrame({"sex": np.zeros(n, dtype=int)})  # one subgroup holding every record
    pred = Predictions(np.arange(n), np.arange(n), y, {"fused": p}, info=info)
    cfg = EvaluateConfig(n_bootstrap=300, benchmark_sets=(), gallery_size=0, n_top_curves=1)
    ev = evaluate_predictions(pred, cfg, seed=0, tasks=[Task("fused", "all71", all_labels())])
    row = ev.subgroups.set_index(["variable", "level"]).loc[("sex", "male")]
    main = ev.summary.iloc[0]
    assert row["n_labels_defined"] == 20 and row["macro_auroc"] == main["macro_auroc"]
    assert row["macro_auroc_lo"] <= row["macro_auroc"] <= row["macro_auroc_hi"]
    # the subgroup holds every record, so its interval is the main one (same resamples, same rule)
    assert row["macro_auroc_lo"] == main["macro_auroc_lo"] and row["macro_auroc_hi"] == main["macro_auroc_hi"]
