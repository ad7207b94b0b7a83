"""Staged training: determinism, resume equivalence, DDP (1 process in-process; 2 with torchrun)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist

from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.train.distributed import DistInfo
from ecgproto.train.loop import plan_phases
from ecgproto.train.run import train_model

from .helpers import tiny_archive, tiny_config

REPO = Path(__file__).resolve().parents[2]
WARMUP = ("train.branch_stages={rhythm: [{name: warmup, epochs: 1, lr: 0.001}, {name: joint, epochs: 2, lr: 0.001}, "
          "{name: projection}, {name: last_layer, epochs: 1, lr: 0.001}]}")


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    arc = tiny_archive(tmp)
    cfg = tiny_config(WARMUP)
    outcome = train_model(cfg, arc, tmp / "run")
    return cfg, arc, outcome, tmp / "run"


def test_outputs_and_stages(reference_run):
    cfg, arc, outcome, out = reference_run
    log = pd.read_csv(out / "train_log.csv")
    assert [p.name for p in plan_phases(cfg)] == list(dict.fromkeys(log["phase"]))
    assert log.loc[log["phase"] == "rhythm/warmup", "epoch"].tolist() == [0]
    assert log["val_macro_auroc"].notna().all()
    summary = json.loads((out / "train_summary.json").read_text())
    for split in ("val", "test"):
        assert set(summary["macro_auroc"][split]) == {"fused", "rhythm", "morphology", "global"}
    model, meta = load_checkpoint(out / "model.pt")
    _assert_same(_weights(model), _weights(outcome.model))
    assert len(meta["thresholds"]) == 71 and len(meta["prototypes"]) == model.n_prototypes
    assert len(meta["threshold_rules"]) == 71 and set(meta["threshold_rules"]) <= {"f1", "capped", "prevalence",
                                                                                  "not_trained"}
    assert set(meta["cooccurrence"]) == {"rhythm", "morphology", "global"}
    assert meta["fusion_normalization"] is not None
    # OOD calibrated on the validation fold: the stored threshold flags ~ood_flag_rate of it
    ood = meta["ood"]
    assert ood["n_val"] == int((arc.index["split"] == "val").sum()) and ood["flag_rate"] == cfg.train.ood_flag_rate
    assert ood["branches"] == ["rhythm", "morphology", "global"]
    projected = [p for p in meta["prototypes"] if p["ecg_id"] is not None]
    assert projected and all(p["ecg_id"] in set(arc.index["ecg_id"]) for p in projected)
    assert not model.training
    assert not outcome.model.training and not any(p.requires_grad for p in outcome.model.parameters())


def test_fusion_keeps_the_starting_head_unless_training_beats_it(reference_run):
    _, _, _, out = reference_run
    log = pd.read_csv(out / "train_log.csv")
    fusion = log[log["phase"] == "fusion"]
    assert fusion["epoch"].iloc[0] == -1  # the starting head is evaluated first
    summary = json.loads((out / "train_summary.json").read_text())
    # the selected head is the best validation candidate, the starting head included
    assert summary["macro_auroc"]["val"]["fused"] == pytest.approx(fusion["val_macro_auroc"].max(), abs=1e-9)


def test_same_seed_same_weights(reference_run, tmp_path):
    cfg, arc, outcome, _ = reference_run
    again = train_model(cfg, arc, tmp_path / "again")
    _assert_same(_weights(again.model), _weights(outcome.model))


def test_interrupted_and_resumed_equals_uninterrupted(reference_run, tmp_path):
    cfg, arc, outcome, out = reference_run
    run_dir = tmp_path / "resumed"
    # 13 epochs in all: rhythm 1+2+1, morphology 2+1, global 2+1, fusion 3
    assert train_model(cfg, arc, run_dir, max_epochs=2) is None  # stops inside rhythm/joint
    assert train_model(cfg, arc, run_dir, resume=True, max_epochs=6) is None  # inside global/joint
    assert train_model(cfg, arc, run_dir, resume=True, max_epochs=4) is None  # inside fusion
    resumed = train_model(cfg, arc, run_dir, resume=True)
    _assert_same(_weights(resumed.model), _weights(outcome.model))
    ref_log = pd.read_csv(out / "train_log.csv")
    new_log = pd.read_csv(run_dir / "train_log.csv")
    np.testing.assert_array_equal(ref_log["val_macro_auroc"], new_log["val_macro_auroc"])


def test_resume_refuses_other_config(reference_run, tmp_path):
    cfg, arc, _, out = reference_run
    with pytest.raises(ValueError, match="different config"):
        train_model(tiny_config("seed=4"), arc, out, resume=True)
    with pytest.raises(FileNotFoundError, match="no training state"):
        train_model(cfg, arc, tmp_path / "empty", resume=True)


def test_ddp_single_process_equals_plain_run(tmp_path):
    arc = tiny_archive(tmp_path)
    cfg = tiny_config("train.stages=[{name: joint, epochs: 1, lr: 0.001}]", "train.fusion_epochs=1")
    plain = train_model(cfg, arc, tmp_path / "plain")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        ddp = train_model(cfg, arc, tmp_path / "ddp", dist_info=DistInfo(0, 1, True))
    finally:
        dist.destroy_process_group()
    _assert_same(_weights(ddp.model), _weights(plain.model))


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp2"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ECGPROTO_NO_PROGRESS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "tests.train.ddp_worker", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    _assert_same(w0, w1)
    summary = json.loads((out / "run" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    log = pd.read_csv(out / "run" / "train_log.csv")
    assert log["val_macro_auroc"].notna().all()


def test_prototype_init_starts_joint_from_class_windows(tmp_path):
    stages = ("train.branch_stages={global: [{name: warmup, epochs: 1, lr: 0.001}, {name: prototype_init}, "
              "{name: joint, epochs: 1, lr: 0.001}, {name: projection}, {name: last_layer, epochs: 1, lr: 0.001}]}")
    cfg = tiny_config(stages)
    arc = tiny_archive(tmp_path)
    assert "global/prototype_init" in [p.name for p in plan_phases(cfg)]
    outcome = train_model(cfg, arc, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    stages = list(dict.fromkeys(log.loc[log["branch"] == "global", "stage"]))
    assert stages == ["warmup", "prototype_init", "joint", "projection", "last_layer"]
    _, meta = load_checkpoint(tmp_path / "run" / "model.pt")
    # provenance comes from the final projection: every projected prototype equals its source window
    assert all(p["ecg_id"] is not None for p in meta["prototypes"] if p["branch"] == "global")
    assert outcome is not None


def test_prototype_init_must_precede_joint():
    with pytest.raises(Exception, match="prototype_init must come before"):
        tiny_config("train.branch_stages={global: [{name: joint, epochs: 1, lr: 0.001}, {name: prototype_init}]}")


def test_a_stage_keeps_its_starting_branch_unless_training_beats_it(reference_run):
    _, _, _, out = reference_run
    log = pd.read_csv(out / "train_log.csv")
    for phase in ("rhythm/joint", "rhythm/last_layer", "morphology/joint", "morphology/last_layer"):
        rows = log[log["phase"] == phase]
        assert rows["epoch"].iloc[0] == -1  # the branch the stage was given is evaluated first
    assert log.loc[log["phase"] == "rhythm/warmup", "epoch"].iloc[0] == 0  # a fresh warm-up head is not
    # the last stage of a branch ends at its best candidate, which the summary reports
    summary = json.loads((out / "train_summary.json").read_text())
    best = log.loc[log["phase"] == "morphology/last_layer", "val_macro_auroc"].max()
    assert summary["macro_auroc"]["val"]["morphology"] == pytest.approx(best, abs=1e-9)


def test_trained_last_layers_keep_the_fusion_heads_sign_rule(reference_run):
    _, _, outcome, _ = reference_run  # default head sign_constrained: own class >= 0, other classes <= 0
    for branch in outcome.model.branches.values():
        own = branch.prototype_class_identity.T > 0
        w = branch.last_layer.weight
        assert (w[own] >= 0).all() and (w[~own] <= 0).all()
        assert (w[~own] < 0).any() or (w[own] > 0).any()  # trained, not all zero


def test_projection_refits_the_last_layer_on_cached_similarities(tmp_path):
    stages = ("train.stages=[{name: joint, epochs: 1, lr: 0.001, train_last_layer: true}, "
              "{name: projection, refit_epochs: 30, lr: 0.01}]")
    outcome = train_model(tiny_config(stages), tiny_archive(tmp_path), tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    for group, branch in outcome.model.branches.items():
        rows = log[log["phase"] == f"{group}/projection"]
        assert rows["stage"].tolist() == ["projection", "last_layer_refit"]
        # the layer the projection left is a candidate: the re-fit never lowers validation AUROC
        assert rows["val_macro_auroc"].iloc[1] >= rows["val_macro_auroc"].iloc[0] - 1e-12
        own = branch.prototype_class_identity.T > 0
        assert (branch.last_layer.weight[own] >= 0).all() and (branch.last_layer.weight[~own] <= 0).all()


def test_refit_epochs_only_on_one_pass_stages():
    from ecgproto.config import ConfigError

    with pytest.raises((ValueError, ConfigError), match="refit_epochs"):
        tiny_config("train.stages=[{name: joint, epochs: 1, lr: 0.001, refit_epochs: 5}]")
