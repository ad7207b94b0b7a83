"""``ecgproto evaluate`` end to end: tiny seeded checkpoint on the real PTB-XL sample (fold 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecgproto.cli import main
from ecgproto.config import load_config
from ecgproto.yaml_dataclass import to_dict
from ecgproto.data.labels import all_labels
from ecgproto.model import build_network
from ecgproto.model.checkpoint import load_checkpoint, save_checkpoint
from tests.checks import resolved_config
from tests.evaluate.test_evaluation import _Collector

TINY = [f"model.branches.{g}.base_width=4" for g in ("rhythm", "morphology", "global")] + [
    f"model.branches.{g}.prototypes_per_class=1" for g in ("rhythm", "morphology", "global")]


def _tiny_checkpoint(path: Path, data_root: Path, cache_dir: Path, kind: str = "prototype") -> dict:
    """Seeded, untrained tiny model whose prototypes claim sample records 1..5 as sources
    (``kind="blackbox"``: its black-box twin, without prototypes, meta as `ecgproto train` writes it)."""
    cfg = load_config(None, TINY + [f"data.root={data_root}", f"data.cache_dir={cache_dir}", f"model.kind={kind}"])
    torch.manual_seed(0)
    model = build_network(cfg.model, n_samples=1000, fs=100).eval()
    prototypes = []
    for row in model.prototype_table().itertuples(index=False):
        branch = model.branches[row.branch]
        (ws, we), (rs, re_) = branch.window_samples(0), branch.receptive_field(0)
        prototypes.append({"index": row.index, "branch": row.branch, "local_index": row.local_index,
                           "class_code": row.class_code, "ecg_id": 1 + row.index % 5, "window_start": ws,
                           "window_end": we, "rf_start": rs, "rf_end": re_, "similarity": 0.9})
    meta = {"config": to_dict(cfg), "config_hash": cfg.hash, "sampling_rate": 100, "n_samples": 1000,
            "highpass": {"cutoff_hz": 0.5, "order": 1}, "labels": list(all_labels()),
            "prototypes": prototypes, "thresholds": [0.5] * 71, "model_kind": kind, "ood": None}
    save_checkpoint(path, model, meta)
    return meta


@pytest.fixture(scope="module")
def tiny_run(ptbxl_sample, tmp_path_factory):
    """(checkpoint path, meta); the tests share the prepared cache of the sample (and the twin beside it)."""
    root = tmp_path_factory.mktemp("tiny_run")
    meta = _tiny_checkpoint(root / "tiny.pt", ptbxl_sample, root / "cache")
    _tiny_checkpoint(root / "twin.pt", ptbxl_sample, root / "cache", kind="blackbox")
    return root / "tiny.pt", meta


def test_evaluate_command_end_to_end(ptbxl_sample, tiny_run, tmp_path, capsys):
    ckpt, _ = tiny_run
    out = tmp_path / "report"
    rc = main(["evaluate", str(ckpt), str(ptbxl_sample), "--split", "test", "--out", str(out),
               "--set", "evaluate.n_bootstrap=20", "--set", "evaluate.gallery_size=2",
               "--set", "evaluate.n_top_curves=2", "--set", "evaluate.benchmark_sets=[superdiagnostic]"])
    assert rc == 0, capsys.readouterr().err
    assert "macro AUROC" in capsys.readouterr().out
    assert resolved_config(out).evaluate.n_bootstrap == 20
    html = (out / "report.html").read_text()
    assert "macro AUROC" in html and "https://" not in html
    assert set(pd.read_csv(out / "subgroups.csv")["variable"]) >= {"sex"}
    db = pd.read_csv(ptbxl_sample / "ptbxl_database.csv")
    preds = pd.read_parquet(out / "predictions.parquet")
    test_ids = set(db.loc[db["strat_fold"] == 10, "ecg_id"])
    assert set(preds["ecg_id"]) <= test_ids and len(preds) >= 0.9 * len(test_ids)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["n_records"] == len(preds)
    draws = np.load(out / "bootstrap_indices.npz")["draws"]
    assert draws.shape == (20, metrics["settings"]["n_patients"])
    assert metrics["settings"]["threshold_source"].startswith("validation")
    assert metrics["prototype_quality"]["unique_source_ecgs"] == 5
    # labels absent from this small fold are undefined, never 0.5
    per_label = pd.read_csv(out / "per_label.csv")
    fused = per_label[per_label["task"] == "fused:all71"]
    absent = fused[fused["n_pos"] == 0]
    assert len(absent) and absent["auroc"].isna().all() and not absent["defined"].any()
    subgroups = pd.read_csv(out / "subgroups.csv")
    assert {"sex", "age", "baseline_drift"} <= set(subgroups["variable"])
    parser = _Collector()
    parser.feed((out / "report.html").read_text())
    assert len(parser.imgs) >= 6 and all(s.startswith("data:image/png;base64,") for s in parser.imgs)
    assert parser.external == []


def test_evaluate_twin_with_paired_comparison(ptbxl_sample, tiny_run, tmp_path, capsys):
    ckpt, _ = tiny_run
    twin, out = ckpt.with_name("twin.pt"), tmp_path / "report"
    rc = main(["evaluate", str(twin), str(ptbxl_sample), "--out", str(out), "--compare", str(ckpt),
               "--set", "evaluate.n_bootstrap=20", "--set", "evaluate.n_top_curves=1",
               "--set", "evaluate.benchmark_sets=[superdiagnostic]"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "A − B" in printed and "predicted labels per record" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prototype_quality"] == {"model_kind": "blackbox", "note": "black-box twin: no prototypes"}
    assert metrics["context"]["model"]["model_kind"] == "blackbox"
    html = (out / "report.html").read_text()
    assert "black-box twin: no prototypes" in html and "Prototype gallery" not in html
    assert "Paired comparison" in html and "Decision thresholds" in html
    # the comparison: same records, every default task, the evaluated model as A on the main resamples
    table = pd.read_csv(out / "comparison.csv").set_index("task")
    summary = pd.DataFrame(metrics["summary"]).set_index("task")
    assert list(table.index) == list(summary.index)
    for ours, theirs in (("a", "macro_auroc"), ("a_lo", "macro_auroc_lo"), ("a_hi", "macro_auroc_hi")):
        assert table[ours].to_numpy() == pytest.approx(summary[theirs].to_numpy())
    assert table["diff"].to_numpy() == pytest.approx((table["a"] - table["b"]).to_numpy())
    assert metrics["comparison"]["b"] == {"checkpoint": str(ckpt), "model_kind": "prototype"}
    other = pd.read_parquet(out / "compare_predictions.parquet")
    assert list(other["ecg_id"]) == list(pd.read_parquet(out / "predictions.parquet")["ecg_id"])
    # thresholds: rules per output and label, mean label counts
    rules = pd.read_csv(out / "thresholds.csv")
    assert set(rules["output"]) == {"fused", "rhythm", "morphology", "global"} and len(rules[rules["output"] == "fused"]) == 71
    counts = metrics["labels_per_record"]
    assert counts["predicted"] == pytest.approx(summary.loc["fused:all71", "mean_predicted_labels"])
    assert counts["true"] == pytest.approx(summary.loc["fused:all71", "mean_true_labels"])
    listed = pd.DataFrame(metrics["thresholds"]["labels_not_f1"])
    assert len(listed) == int((rules["rule"] != "f1").sum()) and "f1" not in set(listed["rule"])
    assert "threshold_rule" in pd.read_csv(out / "per_label.csv")


def test_compare_refuses_a_checkpoint_with_other_preprocessing(ptbxl_sample, tiny_run, tmp_path, capsys):
    ckpt, meta = tiny_run
    other = tmp_path / "other.pt"
    model, _ = load_checkpoint(ckpt)
    save_checkpoint(other, model, {**meta, "highpass": {"cutoff_hz": 1.0, "order": 1}})
    rc = main(["evaluate", str(ckpt), str(ptbxl_sample), "--out", str(tmp_path / "o"), "--compare", str(other),
               "--set", "evaluate.n_bootstrap=0", "--set", "evaluate.gallery_size=0"])
    assert rc == 1 and "--compare" in (err := capsys.readouterr().err) and "highpass" in err


def test_prepared_cache_is_accepted_only_with_the_checkpoint_settings(ptbxl_sample, tiny_run, tmp_path):
    from ecgproto.evaluate.run import open_archive

    _, meta = tiny_run
    built = open_archive(ptbxl_sample, meta)  # prepared with the checkpoint's settings
    again = open_archive(built.path, meta)  # the cache folder itself
    assert len(again.rows("test")) == len(built.rows("test")) > 0
    with pytest.raises(ValueError, match="n_samples: cache 1000 vs checkpoint 500"):
        open_archive(built.path, {**meta, "n_samples": 500})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_archive(tmp_path / "nowhere", meta)


def test_evaluate_command_reports_bad_inputs(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.pt"), str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
