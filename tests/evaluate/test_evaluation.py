"""Array-level evaluation: tasks, conventions, undefined labels, subgroups, and the report files."""

import dataclasses
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecgproto.data.labels import all_labels, code_to_benchmark_target, label_table
from ecgproto.evaluate.calibration import expected_calibration_error, reliability_bins
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.evaluate.evaluation import Predictions, evaluate_predictions
from ecgproto.evaluate.report import ReportContext, write_report
from ecgproto.evaluate.subgroups import age_levels, subgroup_masks
from ecgproto.evaluate.tasks import Task, record_mask, task_arrays
from ecgproto.model.thresholds import threshold_table

CODES = all_labels()


def _predictions(n=120, seed=0, empty_label="IMI"):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 71)) < 0.12).astype(np.uint8)
    y[:, CODES.index(empty_label)] = 0
    y[:10] = 0  # ten records without any label
    p = np.clip(0.35 * y + 0.65 * rng.random((n, 71)), 0, 1)
    probs = {"fused": p}
    for g in ("rhythm", "morphology", "global"):
        probs[g] = np.clip(p[:, label_table().indices(g)] + 0.05 * rng.random((n, len(label_table().indices(g)))), 0, 1)
    th = {k: np.full(v.shape[1], 0.5) for k, v in probs.items()}
    info = pd.DataFrame({
        "sex": rng.integers(0, 2, n), "age": rng.choice([25.0, 50.0, 70.0, 300.0, np.nan], n),
        "static_noise": rng.choice(["", " I,II"], n),
    })
    return Predictions(np.arange(1, n + 1), rng.integers(0, n // 2, n), y, probs, th, "validation", info)


@pytest.fixture(scope="module")
def evaluated():
    pred = _predictions()
    return evaluate_predictions(pred, EvaluateConfig(n_bootstrap=30, gallery_size=0, n_top_curves=2), seed=1)


def test_fused_all_matches_sklearn_and_undefined_label_reported(evaluated):
    pred = evaluated.predictions
    rows = evaluated.per_label[evaluated.per_label["task"] == "fused:all71"].set_index("label")
    imi = rows.loc["IMI"]
    assert not imi["defined"] and np.isnan(imi["auroc"]) and imi["n_pos"] == 0
    j = CODES.index("NORM")
    assert rows.loc["NORM", "auroc"] == pytest.approx(roc_auc_score(pred.labels[:, j], pred.probs["fused"][:, j]))
    s = evaluated.summary.set_index("task").loc["fused:all71"]
    keep = [c for c in range(71) if CODES[c] != "IMI"]
    assert s["macro_auroc"] == pytest.approx(roc_auc_score(pred.labels[:, keep], pred.probs["fused"][:, keep]))
    assert s["n_labels_defined"] == 70 and s["n_records"] == 120
    assert s["macro_auroc_lo"] <= s["macro_auroc"] <= s["macro_auroc_hi"]


def test_branch_scored_on_own_group(evaluated):
    s = evaluated.summary.set_index("task")
    assert s.loc["rhythm:group:rhythm", "n_labels"] == 16
    assert s.loc["global:group:global", "n_labels"] == 3
    rows = evaluated.per_label[evaluated.per_label["task"] == "rhythm:group:rhythm"]
    assert list(rows["label"]) == list(label_table().groups["rhythm"])


def test_drop_unlabeled_convention_drops_records_without_task_labels():
    pred = _predictions()
    ev = evaluate_predictions(pred, EvaluateConfig(n_bootstrap=0, drop_unlabeled=True), seed=0)
    s = ev.summary.set_index("task")
    assert s.loc["fused:all71", "n_records"] == int(pred.labels.any(1).sum()) == 110
    y_rhythm = pred.labels[:, label_table().indices("rhythm")]
    assert s.loc["rhythm:group:rhythm", "n_records"] == int(y_rhythm.any(1).sum())
    assert ev.settings["convention"] == "drop_unlabeled"
    assert "macro_auroc_lo" not in ev.summary  # no bootstrap requested


def test_threshold_rules_and_label_counts_reach_the_tables(tmp_path):
    pred = _predictions()
    table = threshold_table(pred.labels, pred.probs["fused"])
    table.insert(0, "output", "fused")
    table.insert(1, "label", CODES)
    pred = dataclasses.replace(pred, thresholds={"fused": table["threshold"].to_numpy()}, threshold_rules=table)
    ev = evaluate_predictions(pred, EvaluateConfig(n_bootstrap=0), seed=0)
    s = ev.summary.set_index("task").loc["fused:all71"]
    predicted = pred.probs["fused"] >= table["threshold"].to_numpy()
    assert s["mean_predicted_labels"] == pytest.approx(predicted.sum(1).mean())
    assert s["mean_true_labels"] == pytest.approx(pred.labels.sum(1).mean())
    rows = ev.per_label[ev.per_label["task"] == "fused:all71"]
    assert list(rows["threshold_rule"]) == list(table["rule"])
    assert ev.per_label.loc[ev.per_label["output"] == "rhythm", "threshold_rule"].isna().all()  # no rules given
    write_report(ev, tmp_path, ReportContext())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["labels_per_record"]["ratio"] == pytest.approx(s["mean_predicted_labels"] / s["mean_true_labels"])
    assert {r["label"] for r in metrics["thresholds"]["labels_not_f1"]} == set(table.loc[table["rule"] != "f1", "label"])
    assert (tmp_path / "thresholds.csv").is_file() and "Decision thresholds" in (tmp_path / "report.html").read_text()


def test_aggregated_superdiagnostic_targets():
    pred = _predictions()
    task = Task("fused", "benchmark:superdiagnostic", ("CD", "HYP", "MI", "NORM", "STTC"))
    y, p, cols = task_arrays(task, pred.labels, pred.probs)
    mi_codes = [c for c, t in code_to_benchmark_target("superdiagnostic").items() if t == "MI"]
    idx = [CODES.index(c) for c in mi_codes]
    np.testing.assert_array_equal(y[:, 2], pred.labels[:, idx].any(1))
    np.testing.assert_allclose(p[:, 2], pred.probs["fused"][:, idx].max(1))
    assert (cols == -1).all()
    assert record_mask(y, False).all()


def test_subgroups_and_age_bands(evaluated):
    sg = evaluated.subgroups
    assert set(sg["variable"]) == {"sex", "age", "static_noise"}
    assert sg.loc[sg["variable"] == "sex", "n_records"].sum() == 120
    bands = age_levels(pd.Series([10.0, 40.0, 59.0, 60.0, 89.0, 300.0, np.nan]), (40, 60, 80))
    assert list(bands) == ["<40", "40–59", "40–59", "60–79", "≥80", "≥80", "unknown"]
    masks = subgroup_masks(pd.DataFrame({"electrodes_problems": ["", "V1", None]}), (40,))
    assert masks[("electrodes_problems", "present")].tolist() == [False, True, False]


def test_reliability_bins_match_sklearn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(2)
    p = rng.random(500)
    y = rng.random(500) < p
    t = reliability_bins(y, p, 10)
    frac, mean = calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(t["frac_pos"], frac)
    np.testing.assert_allclose(t["mean_prob"], mean)
    assert 0 <= expected_calibration_error(t) < 0.1


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("href", "src"):
            v = a.get(key)
            if v and tag != "img" and not v.startswith("#"):
                self.external.append((tag, v))
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.external.append((tag, a))


def test_report_is_self_contained_and_complete(evaluated, tmp_path):
    files = write_report(evaluated, tmp_path, ReportContext(checkpoint="x.pt", data="arrays"))
    html = (tmp_path / "report.html").read_text()
    parser = _Collector()
    parser.feed(html)
    assert parser.imgs and all(src.startswith("data:image/png;base64,") for src in parser.imgs)
    assert parser.external == []
    assert "url(" not in html and "@import" not in html and "http://" not in html and "https://" not in html
    assert "keep_all" in html and "patient-level bootstrap" in html and "Model card" in html
    assert "undefined" in html
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["n_patients"] == evaluated.plan.n_patients
    per_label = pd.read_csv(tmp_path / "per_label.csv")
    imi = per_label[(per_label["task"] == "fused:all71") & (per_label["label"] == "IMI")].iloc[0]
    assert not imi["defined"] and np.isnan(imi["auroc"])
    preds = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(preds["ecg_id"]) == list(evaluated.predictions.ecg_ids)
    np.testing.assert_allclose(preds[[f"prob__{c}" for c in CODES]].to_numpy(),
                               evaluated.predictions.probs["fused"], rtol=1e-6)
    boot = np.load(files["bootstrap_indices.npz"])
    assert boot["draws"].shape == (30, evaluated.plan.n_patients)


def test_macro_interval_keeps_label_set_fixed():
    """Many labels with one positive (low AUPRC) plus a few common ones: resamples that miss a
    rare positive must not drop that label from the macro average, or the interval would sit
    above the point estimate."""
    rng = np.random.default_rng(5)
    n = 200
    y = np.zeros((n, 71), dtype=np.uint8)
    y[:, :5] = rng.random((n, 5)) < 0.3
    for c in range(5, 71):
        y[rng.integers(0, n), c] = 1
    p = rng.random((n, 71))
    p[:, :5] = np.clip(p[:, :5] * 0.6 + 0.4 * y[:, :5], 0, 1)
    pred = Predictions(np.arange(n), np.arange(n), y, {"fused": p})
    ev = evaluate_predictions(pred, EvaluateConfig(n_bootstrap=200, benchmark_sets=()), seed=0,
                              tasks=[Task("fused", "all71", CODES)])
    s = ev.summary.iloc[0]
    for m in ("macro_auroc", "weighted_auroc"):
        assert s[f"{m}_lo"] < s[m] < s[f"{m}_hi"], m
    # AUPRC itself is biased upwards in resamples where a lone positive is drawn twice
    # (its precision rises), so only its label set, not its centring, is checked here
    assert s["macro_auprc_hi"] > s["macro_auprc"]


@pytest.mark.parametrize("page", ["evaluate/report.html", "phenotype/report.html"])
def test_committed_demo_report_is_self_contained(page):
    """The demo reports committed under reports/demo/ open offline: every image embedded, nothing external."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "reports" / "demo" / page
    assert path.is_file(), f"{path} is missing: run `make demo` and commit reports/demo/"
    parser = _Collector()
    parser.feed(path.read_text())
    assert len(parser.imgs) >= 3 and all(src.startswith("data:image/png;base64,") for src in parser.imgs)
    assert parser.external == []
