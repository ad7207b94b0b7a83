import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels
from ecgproto.model.inference import predict_arrays
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.model.checkpoint import load_checkpoint

from .helpers import preprocessed

PROB = [f"prob__{c}" for c in all_labels()]


def _check_equal(checkpoint, scores):
    model, _ = load_checkpoint(checkpoint)
    ok = scores["status"] == "ok"
    signals, status = preprocessed(list(scores["path"]))
    assert list(scores["status"]) == status
    np.testing.assert_allclose(scores.loc[ok, PROB].to_numpy(), predict_arrays(model, signals).probs,
                               rtol=1e-5, atol=1e-6)


def test_synthetic_ptbxl_archive(checkpoint, synthetic_archive, tmp_path):
    summary = score_archive(checkpoint, synthetic_archive / "ptbxl", tmp_path,
                            ScoreOptions(batch_size=8, workers=2, chunk_size=16, threads=1))
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    db = pd.read_csv(synthetic_archive / "ptbxl" / "ptbxl_database.csv")
    assert list(scores["ecg_id"]) == sorted(db["ecg_id"])
    assert summary.status_counts == {"ok": len(db)}
    _check_equal(checkpoint, scores)


def test_synthetic_mimic_archive_500hz(checkpoint, synthetic_archive, tmp_path):
    score_archive(checkpoint, synthetic_archive / "mimic", tmp_path, ScoreOptions(batch_size=8, workers=0, threads=1))
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    listing = pd.read_csv(synthetic_archive / "mimic" / "record_list.csv")
    assert list(scores["subject_id"]) == list(listing["subject_id"])
    assert list(scores["study_id"]) == list(listing["study_id"])
    assert (scores["status"] == "ok").mean() > 0.9
    _check_equal(checkpoint, scores)
