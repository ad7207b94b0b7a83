"""`ecgproto train` / `ecgproto project` end to end on a small synthetic archive."""

import json

import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.model.checkpoint import load_checkpoint

from ..checks import resolved_config

TINY = [
    "--set", "model.branches.rhythm.base_width=4", "--set", "model.branches.morphology.base_width=4",
    "--set", "model.branches.global.base_width=4", "--set", "model.branches.rhythm.prototypes_per_class=1",
    "--set", "model.branches.morphology.prototypes_per_class=1",
    "--set", "train.stages=[{name: joint, epochs: 1, lr: 0.001}, {name: projection}, "
             "{name: last_layer, epochs: 1, lr: 0.001}]",
    "--set", "train.fusion_epochs=2", "--set", "train.threads=1",
]


@pytest.mark.slow
def test_train_resume_and_project_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECGPROTO_NO_PROGRESS", "1")
    synth = tmp_path / "synth"
    assert main(["synth", "--out", str(synth), "--n-records", "80", "--n-mimic-subjects", "0"]) == 0
    common = ["--set", "data.source=synthetic", "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY]
    run = tmp_path / "run"
    assert main(["train", *common, "--data", str(synth), "--out", str(run), "--max-epochs", "1"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["train", *common, "--data", str(synth), "--out", str(run), "--resume"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert 0.0 <= summary["macro_auroc"]["test"]["fused"] <= 1.0
    trained, meta_run = load_checkpoint(run / "model.pt")
    cfg = resolved_config(run)
    assert meta_run["config_hash"] == cfg.hash == summary["config_hash"]  # the run reproducible from its folder
    log = pd.read_csv(run / "train_log.csv")
    assert log["phase"].iloc[-1] == "fusion" and log["val_macro_auroc"].between(0, 1).all()
    assert len(pd.read_csv(run / "prototypes.csv")) == trained.n_prototypes == summary["n_prototypes"]
    proj = tmp_path / "proj"
    assert main(["project", str(run / "model.pt"), "--out", str(proj), "--unique", "--branches", "rhythm"]) == 0
    model, meta = load_checkpoint(proj / "model.pt")
    table = pd.read_csv(proj / "prototypes.csv")
    rhythm = table[(table["branch"] == "rhythm") & table["ecg_id"].notna()]
    assert rhythm["ecg_id"].is_unique
    assert json.loads((proj / "projection.json").read_text())["unique"] is True
    assert len(meta["prototypes"]) == model.n_prototypes


def test_command_errors_are_clear(tmp_path, capsys):
    assert main(["project", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--set", "data.root=", "--out", str(tmp_path / "o")]) == 1
    assert "data.root" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"earlier run")
    assert main(["train", "--set", f"data.root={tmp_path / 'nowhere'}", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--force" in err
    assert (run / "model.pt").read_bytes() == b"earlier run"  # nothing touched
