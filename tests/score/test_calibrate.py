import json

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.model.checkpoint import load_checkpoint


def test_calibrate_ood_then_flag_at_the_validation_rate(checkpoint, synthetic_archive, tmp_path, capsys):
    data = synthetic_archive / "ptbxl"
    assert main(["score", str(checkpoint), str(data), "--out", str(tmp_path / "cal"), "--calibrate-ood",
                 "--ood-flag-rate", "0.2", "--workers", "0", "--threads", "1"]) == 0
    calibrated = tmp_path / "cal" / f"{checkpoint.stem}.ood.pt"
    _, meta = load_checkpoint(calibrated)
    val_ids = pd.read_csv(data / "ptbxl_database.csv").query("strat_fold == 9")["ecg_id"]
    assert meta["ood"]["n_val"] == len(val_ids) and meta["ood"]["flag_rate"] == 0.2
    assert json.loads((tmp_path / "cal" / "ood_calibration.json").read_text())["threshold"] == meta["ood"]["threshold"]

    summary = score_archive(calibrated, data, tmp_path / "scores", ScoreOptions(workers=0, threads=1))
    scores = pd.read_parquet(tmp_path / "scores" / "scores.parquet").set_index("ecg_id")
    flags = scores["ood_flag"]
    assert flags.notna().all()
    val_rate = flags.loc[val_ids].mean()
    assert abs(val_rate - 0.2) <= 1.0 / len(val_ids) + 1e-9  # flags ~ the chosen fraction of validation records
    assert any("flag rate 0.2" in n for n in summary.notes)
    # the OOD features travel back from worker processes, in other batches: the same scores
    score_archive(calibrated, data, tmp_path / "scores2", ScoreOptions(workers=2, threads=1, batch_size=7))
    two = pd.read_parquet(tmp_path / "scores2" / "scores.parquet").set_index("ecg_id")
    np.testing.assert_allclose(two["ood_score"], scores["ood_score"], rtol=1e-4)
    assert (two["ood_flag"] == flags).all()


def test_calibrate_needs_a_ptbxl_folder(checkpoint, cinc_sample, tmp_path):
    with pytest.raises(ValueError, match="ptbxl_database.csv|PTB-XL"):
        from ecgproto.score.calibrate import calibrate_checkpoint
        calibrate_checkpoint(checkpoint, cinc_sample, tmp_path)
