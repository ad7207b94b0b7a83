"""Paired comparison of two models: same resamples, fixed label set, against a plain re-implementation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgproto.data.labels import all_labels, benchmark_label_set, group_labels, label_table
from ecgproto.evaluate.bootstrap import patient_bootstrap
from ecgproto.evaluate.compare import COMPARE_COLUMNS, paired_auroc_difference
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.evaluate.evaluation import Predictions, evaluate_predictions
from ecgproto.evaluate.tasks import Task

CODES = all_labels()
TASKS = [Task("fused", "all71", CODES), Task("rhythm", "group:rhythm", group_labels("rhythm")),
         Task("fused", "benchmark:superdiagnostic", benchmark_label_set("superdiagnostic"))]


def _two_models(n=150, seed=0):
    """Labels (one label with a single positive, one with none), patients with repeated records,
    and two models: A informative, B weaker."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, 71)) < 0.15
    y[:, CODES.index("IMI")] = False
    y[:, CODES.index("SR")] = False
    y[3, CODES.index("SR")] = True
    noise = rng.random((n, 71))
    probs = {}
    for name, signal in (("a", 0.5), ("b", 0.15)):
        p = np.clip(signal * y + (1 - signal) * noise + 0.02 * rng.random((n, 71)), 0, 1)
        probs[name] = {"fused": p, **{g: p[:, label_table().indices(g)] for g in ("rhythm", "morphology", "global")}}
    return y.astype(np.uint8), probs["a"], probs["b"], rng.integers(0, n // 3, n)


def _plain_macro(y, p, weights):
    """Macro AUROC of one resample by expanding records, fixed label set, undefined → whole-sample value."""
    keep = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    rep = np.repeat(np.arange(len(y)), weights.astype(int))
    values = []
    for c in keep:
        yc = y[rep, c]
        values.append(roc_auc_score(yc, p[rep, c]) if 0 < yc.sum() < len(yc) else roc_auc_score(y[:, c], p[:, c]))
    return np.mean(values)


def test_difference_matches_a_plain_reimplementation():
    y, pa, pb, patients = _two_models()
    table = paired_auroc_difference(y, pa, pb, patients, TASKS[:1], 40, 7, 0.9)
    assert list(table.columns) == list(COMPARE_COLUMNS)
    row = table.iloc[0]
    assert row["n_labels"] == 70 and row["n_records"] == 150  # IMI has no positive; SR's one positive counts
    plan = patient_bootstrap(patients, 40, 7)
    w = plan.weights()
    diffs = np.array([_plain_macro(y, pa["fused"], w[b]) - _plain_macro(y, pb["fused"], w[b]) for b in range(40)])
    assert row["diff"] == pytest.approx(row["a"] - row["b"])
    assert row["a"] == pytest.approx(_plain_macro(y, pa["fused"], np.ones(150)))
    assert (row["diff_lo"], row["diff_hi"]) == pytest.approx(tuple(np.quantile(diffs, [0.05, 0.95])))
    assert row["diff_lo"] > 0  # A is better by construction


def test_model_a_intervals_equal_the_main_evaluation_and_identical_models_differ_by_zero():
    y, pa, pb, patients = _two_models(seed=1)
    cfg = EvaluateConfig(n_bootstrap=30, benchmark_sets=("superdiagnostic",))
    ev = evaluate_predictions(Predictions(np.arange(len(y)), patients, y, pa), cfg, seed=3, tasks=TASKS)
    table = paired_auroc_difference(y, pa, pa, patients, TASKS, 30, 3, cfg.ci_level).set_index("task")
    summary = ev.summary.set_index("task")
    for task in summary.index:
        for ours, theirs in (("a", "macro_auroc"), ("a_lo", "macro_auroc_lo"), ("a_hi", "macro_auroc_hi")):
            assert table.loc[task, ours] == pytest.approx(summary.loc[task, theirs])
        assert table.loc[task, "n_labels"] == summary.loc[task, "n_labels_defined"]
    assert (table[["diff", "diff_lo", "diff_hi"]].to_numpy() == 0).all()


def test_without_resamples_intervals_are_nan_and_unlabeled_records_can_be_dropped():
    y, pa, pb, patients = _two_models(seed=2)
    y[:20] = 0
    table = paired_auroc_difference(y, pa, pb, patients, TASKS, 0, 0, 0.95, drop_unlabeled=True)
    assert table[["a_lo", "a_hi", "diff_lo", "diff_hi"]].isna().all().all()
    assert table.set_index("task").loc["fused:all71", "n_records"] == int(y.any(1).sum())


def test_bad_arguments_are_rejected():
    y, pa, pb, patients = _two_models(n=30)
    with pytest.raises(ValueError, match="rows"):
        paired_auroc_difference(y, pa, {"fused": pb["fused"][:10]}, patients, TASKS[:1], 5, 0, 0.95)
    with pytest.raises(ValueError, match="confidence level"):
        paired_auroc_difference(y, pa, pb, patients, TASKS[:1], 5, 0, 95)
    with pytest.raises(KeyError, match="rhythm"):
        paired_auroc_difference(y, pa, {"fused": pb["fused"]}, patients, TASKS[1:2], 5, 0, 0.95)
