"""Issue 4 must-show: the top morphology prototype's window lies on the simulated finding.

Trains a small model on a synthetic archive (or loads ``runs/demo/train/model.pt`` when it
exists) via ``benchmarks/bench_explain_localisation.py`` and evaluates on a fresh synthetic
archive. Minutes on 2 cores, hence ``slow``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_explain_localisation", REPO / "benchmarks" / "bench_explain_localisation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_top_morphology_window_overlaps_simulated_finding(tmp_path):
    bench = _bench()
    figures = bench.run(None, tmp_path, n_train=2000, n_eval=1500, overrides=[], out=None)
    block = figures["all_localised"]
    assert block["n_cases"] >= 30, f"too few correctly predicted localised findings to judge: {block}"
    assert block["hit_rate"] >= 0.70, figures
    # Per-beat findings recur every beat, so the criterion above is met by almost any window; a
    # single ectopic beat is the case with power: there the window must beat a random one clearly.
    ectopic = figures["ectopic_beats"]
    if ectopic["n_cases"] >= 30:
        assert ectopic["hit_rate"] >= ectopic["chance_rate"] + 0.2, ectopic
    # The bands the explanation figures draw: the receptive field always holds the ectopic beat the
    # prototype matched, and the evidence window inside it lands on it far more often than chance.
    drawn = figures["drawn_windows"]
    field, evidence = drawn["receptive_field"]["ectopic_beats"], drawn["evidence"]["ectopic_beats"]
    if field["n_cases"] >= 30:
        assert field["hit_rate"] >= 0.95, drawn
        assert evidence["hit_rate"] >= evidence["chance_rate"] + 0.2, drawn
