"""``ecgproto demo`` end to end on a tiny synthetic archive (every step through its command)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from ecgproto.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "synth.n_records=120", "synth.n_mimic_subjects=60",
    "model.branches.rhythm.base_width=4", "model.branches.morphology.base_width=4",
    "model.branches.global.base_width=4",
    "train.stages=[{name: joint, epochs: 1, lr: 0.003}, {name: projection}, {name: last_layer, epochs: 1, lr: 0.003}]",
    "train.branch_stages={}", "train.fusion_epochs=3",
    "evaluate.n_bootstrap=20", "phenotype.min_cases=3", "phenotype.min_controls=3",
    "phenotype.permutations=1", "phenotype.distance_permutations=50", "phenotype.auroc_bootstrap=10",
]


def _args(out: Path, reports: Path) -> list[str]:
    sets = [a for s in TINY for a in ("--set", s)]
    return ["demo", "--config", str(REPO / "configs" / "demo.yaml"), *sets, "--out", str(out),
            "--reports", str(reports), "--n-explain", "1"]


def test_demo_runs_every_step_and_reuses_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative cache_dir of the config lands in tmp
    out, reports = tmp_path / "run", tmp_path / "reports"
    assert main(_args(out, reports)) == 0
    summary = json.loads((out / "demo_summary.json").read_text())["steps_seconds"]
    assert all(isinstance(v, float) for v in summary.values()), summary  # every step implemented and run
    scores = pd.read_parquet(out / "score_mimic" / "scores.parquet")
    records = pd.read_csv(out / "synth" / "mimic" / "record_list.csv")
    assert len(scores) == len(records) and (scores["status"] == "ok").all()
    for page in ("evaluate/report.html", "phenotype/report.html", "explain/index.html", "train/train_summary.json",
                 "train_twin/train_summary.json"):
        assert (reports / page).read_bytes() == (out / page).read_bytes(), page  # the reports are the run's own
    # the evaluation report and the training summary agree on the same model and test fold
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    fused = next(r for r in metrics["summary"] if r["task"] == "fused:all71")
    train = json.loads((out / "train" / "train_summary.json").read_text())
    assert fused["n_records"] == train["n_records"]["test"]
    assert fused["macro_auroc"] == pytest.approx(train["macro_auroc"]["test"]["fused"], abs=2e-3)
    # the comparison is with the twin: its AUROC is the twin's own test AUROC
    twin = json.loads((out / "train_twin" / "train_summary.json").read_text())["macro_auroc"]["test"]["fused"]
    comparison = pd.read_csv(out / "evaluate" / "comparison.csv").set_index("task").loc["fused:all71"]
    assert comparison["b"] == pytest.approx(twin, abs=2e-3)
    assert comparison["diff"] == pytest.approx(comparison["a"] - comparison["b"], abs=1e-9)
    # the gallery draws projected prototypes only
    protos = pd.read_csv(out / "train" / "prototypes.csv")
    drawn = {int(p.stem.split("_")[1]) for p in (out / "prototypes").glob("prototype_*.png")}
    assert drawn and drawn <= set(protos.loc[protos["ecg_id"].notna(), "index"])
    explained = pd.read_csv(out / "explain" / "explanations.csv")  # --n-explain 1: one record, its predicted labels
    assert explained["record"].nunique() == 1 and explained["predicted"].all()
    assert not list(reports.rglob("*.png"))  # the committed subset holds self-contained pages only
    capsys.readouterr()
    assert main(_args(out, reports)) == 0  # second run reuses every completed step
    assert set(json.loads((out / "demo_summary.json").read_text())["steps_seconds"].values()) == {"reused"}


def test_demo_rejects_a_bad_config_before_doing_anything(tmp_path, capsys):
    rc = main(["demo", "--set", "train.batch_sise=3", "--out", str(tmp_path / "run")])
    assert rc == 1 and "batch_sise" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_copied_reports_replace_an_earlier_runs_files(tmp_path):
    """A report folder of an earlier demo run is replaced, not merged: no stale page stays."""
    from ecgproto.commands.demo import _copy_reports

    out, dest = tmp_path / "run", tmp_path / "reports"
    (out / "explain").mkdir(parents=True)
    (out / "demo_summary.json").write_text("{}")
    (out / "explain" / "new.html").write_text("<html></html>")
    (dest / "explain").mkdir(parents=True)
    (dest / "explain" / "old.html").write_text("<html></html>")
    _copy_reports(out, dest)
    assert sorted(p.name for p in (dest / "explain").iterdir()) == ["new.html"]
