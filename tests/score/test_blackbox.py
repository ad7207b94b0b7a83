"""Scoring a black-box twin checkpoint: probabilities and predictions, no prototype or OOD columns."""

import numpy as np
import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.data.labels import all_labels
from ecgproto.model.inference import predict_arrays
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.model.checkpoint import load_checkpoint

from .helpers import preprocessed, tiny_checkpoint

PROB = [f"prob__{c}" for c in all_labels()]
PRED = [f"pred__{c}" for c in all_labels()]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("twin") / "twin.pt", kind="blackbox")


def test_twin_scores_without_prototype_columns(twin, ptbxl_small, tmp_path):
    out = tmp_path / "out"
    summary = score_archive(twin, ptbxl_small, out, ScoreOptions(batch_size=8, workers=0, chunk_size=16, threads=1))
    scores = pd.read_parquet(out / "scores.parquet")
    assert summary.status_counts == {"ok": 40}
    assert [c for c in scores.columns if "_top_" in c] == []
    assert scores.columns[-3:].tolist() == ["top_labels", "ood_score", "ood_flag"]
    model, meta = load_checkpoint(twin)
    assert model.kind == "blackbox"
    ref = predict_arrays(model, preprocessed(list(scores["path"]))[0], batch_size=64)
    np.testing.assert_allclose(scores[PROB].to_numpy(), ref.probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores[PRED].to_numpy(dtype=int),
                                  (ref.probs >= np.asarray(meta["thresholds"])).astype(int))
    assert scores["ood_score"].isna().all() and scores["ood_flag"].isna().all()
    assert any(n.startswith("black-box twin: no prototypes") for n in summary.notes)
    csv = pd.read_csv(out / "scores.csv")
    assert list(csv.columns) == list(scores.columns) and csv["ood_score"].isna().all()


def test_twin_refuses_similarities_and_ood_calibration(twin, ptbxl_small, tmp_path, capsys):
    assert main(["score", str(twin), str(ptbxl_small), "--out", str(tmp_path / "a"), "--workers", "0",
                 "--save-similarities"]) == 1
    assert "black-box twin" in capsys.readouterr().err
    assert main(["score", str(twin), str(ptbxl_small), "--out", str(tmp_path / "b"), "--calibrate-ood"]) == 1
    err = capsys.readouterr().err
    assert "black-box twin" in err and "nothing to calibrate" in err and len(err.strip().splitlines()) == 1
