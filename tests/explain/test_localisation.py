"""Overlap of highlighted windows with the generator's finding locations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgproto.explain.localisation import (
    chance_hit_rate,
    correct_top_windows,
    interval_overlap,
    localisation_hits,
    read_findings,
)


def test_interval_overlap_lengths():
    got = interval_overlap(np.array([0.0, 0.0, 2.0, 5.0]), np.array([1.0, 3.0, 4.0, 6.0]),
                           np.array([0.5, 3.0, 1.0, 0.0]), np.array([2.0, 4.0, 5.0, 5.0]))
    # partial, touching (half-open: no overlap), contained, adjacent
    assert np.allclose(got, [0.5, 0.0, 2.0, 0.0])


def test_chance_rate_of_random_window():
    # window 1 s, record 10 s, finding [4, 5): starts in (3, 5) hit → 2 / 9 of the start range
    assert chance_hit_rate(1.0, [4.0], [5.0], 10.0, n_grid=90001) == pytest.approx(2 / 9, abs=1e-3)
    assert chance_hit_rate(10.0, [4.0], [5.0], 10.0) == 1.0


def _findings(tmp_path):
    path = tmp_path / "findings.csv"
    pd.DataFrame({
        "ecg_id": [1, 1, 2, 3, 4],
        "code": ["PVC", "PVC", "IMI", "PVC", "LVH"],
        "leads": ["II;V1", "II;V1", "II;III;aVF", "", "V5;V6"],
        "start_s": [2.0, 6.0, 0.0, 1.0, 0.0],
        "end_s": [2.5, 6.5, 10.0, 1.4, 10.0],
    }).to_csv(path, index=False)
    return read_findings(path)


def test_localisation_hits_counts_localised_findings_only(tmp_path):
    findings = _findings(tmp_path)
    assert findings.loc[0, "leads"] == ("II", "V1") and findings.loc[3, "leads"] == ()
    fs = 100
    windows = pd.DataFrame({
        "ecg_id": [1, 2, 3, 5],
        "label": ["PVC", "IMI", "PVC", "PVC"],
        "window_start": [600, 100, 500, 0],  # record 1: hits the second PVC; record 3: misses
        "window_end": [700, 200, 600, 100],
    })
    res = localisation_hits(windows, findings, fs, 10.0)
    # IMI spans the whole record (not localised), ecg 5 has no finding → 2 cases
    assert res.n_cases == 2
    cases = res.cases.set_index("ecg_id")
    assert bool(cases.loc[1, "hit"]) and not bool(cases.loc[3, "hit"])
    assert cases.loc[1, "n_findings"] == 2
    assert res.hit_rate == pytest.approx(0.5)
    assert 0.0 < res.chance_rate < 0.5


def test_require_lead(tmp_path):
    findings = _findings(tmp_path)
    windows = pd.DataFrame({"ecg_id": [1], "label": ["PVC"], "window_start": [200], "window_end": [250], "leads": [("V6",)]})
    assert localisation_hits(windows, findings, 100, 10.0).hit_rate == 1.0
    assert localisation_hits(windows, findings, 100, 10.0, require_lead=True).hit_rate == 0.0


def test_read_findings_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="findings"):
        read_findings(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("ecg_id,code\n1,PVC\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_findings(bad)


def test_correct_top_windows_keeps_true_predicted_best_morphology_row():
    from ecgproto.data.labels import all_labels

    codes = all_labels()
    imi, pvc, sr = codes.index("IMI"), codes.index("PVC"), codes.index("SR")
    table = pd.DataFrame({
        "record_index": [0, 0, 0, 1, 1, 0],
        "label": ["IMI", "IMI", "PVC", "IMI", "SR", "PVC"],
        "label_index": [imi, imi, pvc, imi, sr, pvc],
        "predicted": [True, True, True, True, True, False],
        "rank": [2, 1, 1, 1, 1, 1],
        "branch": ["morphology"] * 4 + ["rhythm", "morphology"],
        "prototype": [11, 10, 20, 10, 3, 21],
        "window_start": [100, 300, 500, 0, 0, 0],
        "window_end": [196, 396, 596, 96, 1000, 96],
        "leads": [()] * 6,
    })
    truth = np.zeros((2, 71), np.uint8)
    truth[0, [imi, pvc]] = 1  # record 1's IMI is a false positive
    truth[1, sr] = 1
    got = correct_top_windows(table, truth, np.array([7, 8]))
    assert got[["ecg_id", "label", "prototype", "window_start"]].values.tolist() == [[7, "IMI", 10, 300], [7, "PVC", 20, 500]]


def test_evaluate_localisation_end_to_end_on_synthetic_records(tmp_path):
    """Pipeline check with an untrained tiny model (its figures mean nothing; the slow test has the real one)."""
    from ecgproto.synth.config import SynthConfig
    from ecgproto.synth import write_synthetic_archive
    from ecgproto.explain.localisation import evaluate_localisation
    from tests.explain.helpers import tiny_checkpoint

    write_synthetic_archive(tmp_path / "synth", SynthConfig(n_records=60, n_mimic_subjects=0, seed=3))
    # predicts NORM, IMI, SR, LAO/LAE for every record: morphology ones are IMI and LAO/LAE
    model, meta = tiny_checkpoint(tmp_path / "m.pt", str(tmp_path / "synth"))
    figures = evaluate_localisation(model, meta, tmp_path / "synth" / "ptbxl", folds=tuple(range(1, 11)))
    findings = read_findings(tmp_path / "synth" / "ptbxl" / "findings.csv")
    counts = findings[findings["code"].isin(["IMI", "LAO/LAE"])].groupby("code")["ecg_id"].nunique()
    assert figures["n_records"] == 60
    assert figures["n_correct_morphology_labels"] == counts.sum() > 0  # every true one is a correct prediction
    block = figures["all_localised"]
    assert block["n_cases"] == counts.sum() and 0.0 <= block["hit_rate"] <= 1.0 and 0.0 <= block["chance_rate"] <= 1.0
    assert {c: b["n_cases"] for c, b in figures["per_code"].items()} == counts.to_dict()
    assert figures["ectopic_beats"]["n_cases"] == 0
