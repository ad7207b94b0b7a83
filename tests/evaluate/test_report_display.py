"""What the evaluation report shows: undefined labels, counts at the threshold, calibration slope and
intercept, and no interval for tiny subgroups."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ecgproto.data.labels import all_labels
from ecgproto.evaluate.calibration import calibration_fit
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.evaluate.evaluation import Predictions, evaluate_predictions
from ecgproto.evaluate.report import calibration_verdict, write_report

CODES = all_labels()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 150
    y = (rng.random((n, 71)) < 0.15).astype(np.uint8)
    y[:, CODES.index("IMI")] = 0  # no positive: undefined, and never trained
    p = np.clip(0.3 * y + 0.7 * rng.random((n, 71)), 0, 1)
    th = np.full(71, 0.5)
    th[CODES.index("IMI")] = 1.01
    rules = pd.DataFrame({"output": "fused", "label": CODES, "rule": ["f1"] * 71, "threshold": th,
                          "n_val_pos": 10, "prevalence": 0.1, "val_rate": 0.1})
    rules.loc[rules["label"] == "IMI", "rule"] = "not_trained"
    info = pd.DataFrame({"sex": np.r_[np.zeros(n - 6), np.ones(6)].astype(int)})  # 6 records of one sex
    pred = Predictions(np.arange(n), np.arange(n), y, {"fused": p}, {"fused": th}, "validation", info, rules)
    ev = evaluate_predictions(pred, EvaluateConfig(n_bootstrap=40, benchmark_sets=(), n_top_curves=2,
                                                   subgroup_min_records=20), seed=0)
    out = tmp_path_factory.mktemp("report")
    write_report(ev, out)
    return ev, out, (out / "report.html").read_text()


def _row(html: str, label: str) -> list[str]:
    match = re.search(rf"<tr[^>]*><td>{re.escape(label)}</td>(.*?)</tr>", html)
    assert match, label
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_an_undefined_label_shows_no_metric(report):
    ev, _, html = report
    cells = _row(html, "IMI")
    assert "not trained" in cells and "1.000 [1.000, 1.000]" not in cells and "0.000" not in cells
    imi = ev.per_label.query("task == 'fused:all71'").set_index("label").loc["IMI"]
    assert imi["specificity"] == 1.0  # the number exists (never predicted), it is just not shown as a result


def test_macro_averages_leave_undefined_labels_out(report):
    ev, _, _ = report
    fused = ev.per_label[ev.per_label["task"] == "fused:all71"]
    s = ev.summary.set_index("task").loc["fused:all71"]
    defined = fused[fused["defined"]]
    assert s["macro_specificity"] == pytest.approx(defined["specificity"].mean())
    assert s["macro_brier"] == pytest.approx(defined["brier"].mean())


def test_confusion_counts_at_the_threshold(report):
    ev, out, html = report
    j = CODES.index("NORM")
    y, p = ev.predictions.labels[:, j].astype(bool), ev.predictions.probs["fused"][:, j] >= 0.5
    want = [int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum())]
    per_label = pd.read_csv(out / "per_label.csv").query("task == 'fused:all71' and label == 'NORM'").iloc[0]
    assert [int(per_label[k]) for k in ("tp", "fp", "fn", "tn")] == want
    assert " / ".join(map(str, want)) in _row(html, "NORM")


def test_calibration_slope_and_intercept_are_reported(report):
    ev, out, html = report
    fits = json.loads((out / "metrics.json").read_text())["calibration_fit"]
    assert fits[0]["calibration"].startswith("pooled") and fits[0]["n"] == 150 * 71
    assert f"slope {fits[0]['slope']:.2f}" in html and f"intercept {fits[0]['intercept']:.2f}" in html
    assert "Predictions per probability bin" in html


def test_a_tiny_subgroup_gets_no_interval(report):
    ev, _, html = report
    small = ev.subgroups[ev.subgroups["n_records"] == 6].iloc[0]
    assert np.isnan(small["macro_auroc_lo"]) and np.isfinite(small["macro_auroc"])
    large = ev.subgroups[ev.subgroups["n_records"] == 144].iloc[0]
    assert np.isfinite(large["macro_auroc_lo"])
    assert "(N &lt; 20: no interval)" in html


def test_calibration_fit_matches_an_unpenalised_logistic_regression():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-z))
    p = 1 / (1 + np.exp(-(2 * z + 0.5)))  # overconfident and shifted
    fit = calibration_fit(y, p)
    lr = LogisticRegression(C=1e12, max_iter=1000).fit(np.log(p / (1 - p))[:, None], y)
    assert fit["slope"] == pytest.approx(lr.coef_[0, 0], abs=1e-4) and fit["slope"] < 0.6
    assert "too extreme (overconfident)" in calibration_verdict(fit)
    ideal = calibration_fit(y, 1 / (1 + np.exp(-z)))
    assert ideal["slope"] == pytest.approx(1.0, abs=0.1) and ideal["intercept"] == pytest.approx(0.0, abs=0.1)
    separated = calibration_fit([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(separated["slope"])
    assert np.isnan(calibration_fit([1, 1], [0.3, 0.4])["slope"])
