"""The demo figures quoted in README.md ("What was measured") are the ones in the committed
``reports/demo/`` files, to the precision the README shows them (regenerate both with ``make demo``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "reports" / "demo"
NUM = r"(-?\d+(?:\.\d+)?)"


def _readme_row(start: str) -> str:
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"| {start}"):
            return line.replace("\u2212", "-").replace("**", "")
    raise AssertionError(f"README.md has no table row starting with {start!r}")


def _find(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match, f"README row does not match {pattern!r}: {text[:200]}"
    return match.groups()


def _same(shown: str, value: float, what: str) -> None:
    """``shown`` (README text) equals ``value`` rounded to the decimals shown."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    assert abs(float(shown) - value) <= 0.5 * 10 ** -decimals + 1e-9, f"{what}: README {shown}, reports/demo {value}"


@pytest.fixture(scope="module")
def demo():
    if not (DEMO / "evaluate" / "metrics.json").is_file():
        pytest.skip("reports/demo/ not generated (run `make demo`)")
    metrics = json.loads((DEMO / "evaluate" / "metrics.json").read_text())
    return {
        "metrics": metrics,
        "fused": next(r for r in metrics["summary"] if r["task"] == "fused:all71"),
        "train": json.loads((DEMO / "train" / "train_summary.json").read_text()),
        "steps": json.loads((DEMO / "demo_summary.json").read_text())["steps_seconds"],
        "comparison": {r["task"]: r for r in _csv(DEMO / "evaluate" / "comparison.csv")},
    }


def _csv(path: Path) -> list[dict[str, float | str]]:
    import pandas as pd

    return pd.read_csv(path).to_dict("records")


def test_readme_demo_accuracy_matches_the_reports(demo):
    row = _readme_row("demo model, test fold")
    fused, comp = demo["fused"], demo["comparison"]["fused:all71"]
    n_records, n_labels = _find(r"test fold \((\d+) records\), fused macro AUROC over the (\d+) labels", row)
    assert int(n_records) == fused["n_records"] and int(n_labels) == fused["n_labels_defined"]
    auc, lo, hi = _find(rf"\| {NUM} \[{NUM}, {NUM}\] \(95 % patient bootstrap\)", row)
    _same(auc, fused["macro_auroc"], "fused macro AUROC")
    _same(lo, fused["macro_auroc_lo"], "fused lower bound")
    _same(hi, fused["macro_auroc_hi"], "fused upper bound")
    (twin,) = _find(rf"black-box twin {NUM}:", row)
    _same(twin, comp["b"], "twin macro AUROC")
    diff, dlo, dhi = _find(rf"cost of interpretability {NUM} \[{NUM}, {NUM}\]", row)
    for shown, key in ((diff, "diff"), (dlo, "diff_lo"), (dhi, "diff_hi")):
        _same(shown, comp[key], f"paired {key}")
    branches = _find(rf"branches rhythm {NUM}, morphology {NUM}, global {NUM}", row)
    for shown, group in zip(branches, ("rhythm", "morphology", "global")):
        _same(shown, demo["train"]["macro_auroc"]["test"][group], f"{group} branch test AUROC")
    predicted, true = _find(rf"predicted {NUM} vs {NUM} true labels per record", row)
    _same(predicted, demo["metrics"]["labels_per_record"]["predicted"], "predicted labels per record")
    _same(true, demo["metrics"]["labels_per_record"]["true"], "true labels per record")


def test_readme_demo_timings_match_the_reports(demo):
    row = _readme_row("`make demo` pipeline steps")
    steps = {k.split(" (")[0]: v for k, v in demo["steps"].items() if not k.startswith("scoring")}
    quoted = {
        "synth": "synthetic archive", "train": "training", "black-box twin": "black-box twin",
        "evaluate": "evaluation report", "explain": "explanations", "gallery": "prototype gallery",
        "phenotype": "phenotype associations",
    }
    for word, step in quoted.items():
        (shown,) = _find(rf"(?:\| |, ){word} {NUM} s", row)
        _same(shown, steps[step], f"{step} seconds")
    ptb, mimic = _find(rf"score {NUM} \+ {NUM} s", row)
    _same(ptb, demo["steps"]["scoring (PTB-XL-shaped)"], "PTB-XL scoring")
    _same(mimic, demo["steps"]["scoring (MIMIC-IV-ECG-shaped)"], "MIMIC scoring")


def test_the_comparison_notices_a_stale_figure():
    with pytest.raises(AssertionError):
        _same("0.939", 0.941, "stale")
    _same("0.941", 0.9414, "rounded")
