import json

import numpy as np
import pandas as pd
import pytest

from ecgproto.data.labels import all_labels
from ecgproto.model.inference import predict_arrays
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.model.checkpoint import load_checkpoint

from .helpers import preprocessed

PROB = [f"prob__{c}" for c in all_labels()]
PRED = [f"pred__{c}" for c in all_labels()]


def _options(**kw):
    base = dict(batch_size=8, workers=0, chunk_size=16, top_k=3, threads=1)
    base.update(kw)
    return ScoreOptions(**base)


@pytest.mark.parametrize("workers", [0, 2])
def test_ptbxl_scores_equal_in_process_model(checkpoint, ptbxl_small, tmp_path, workers):
    out = tmp_path / "out"
    summary = score_archive(checkpoint, ptbxl_small, out, _options(workers=workers, save_similarities=True))
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores["ecg_id"]) == list(range(1, 41))
    assert list(scores["record_id"]) == [str(i) for i in range(1, 41)]
    assert summary.status_counts == {"ok": 40}

    model, meta = load_checkpoint(checkpoint)
    signals, _ = preprocessed(list(scores["path"]))
    ref = predict_arrays(model, signals, batch_size=64)
    np.testing.assert_allclose(scores[PROB].to_numpy(), ref.probs, rtol=1e-5, atol=1e-6)
    sims = pd.read_parquet(out / "similarities.parquet")
    assert list(sims["record_id"]) == list(scores["record_id"])
    np.testing.assert_allclose(sims.drop(columns="record_id").to_numpy(), ref.similarities, rtol=1e-5, atol=1e-6)

    thresholds = np.asarray(meta["thresholds"])
    np.testing.assert_array_equal(scores[PRED].to_numpy(dtype=int), (ref.probs >= thresholds).astype(int))
    codes = np.asarray(all_labels())
    expected_top = [";".join(codes[np.argsort(-p, kind="stable")[:3]]) for p in ref.probs]
    assert list(scores["top_labels"]) == expected_top

    table = model.prototype_table()
    for branch, cols in table.groupby("branch")["index"]:
        best = cols.to_numpy()[ref.similarities[:, cols.to_numpy()].argmax(axis=1)]
        np.testing.assert_array_equal(scores[f"{branch}_top_prototype"].to_numpy(), best)
        assert list(scores[f"{branch}_top_class"]) == list(table.set_index("index").loc[best, "class_code"])
        np.testing.assert_allclose(scores[f"{branch}_top_similarity"], ref.similarities[np.arange(40), best], rtol=1e-5)
    assert scores["ood_flag"].isna().all()  # this checkpoint has no OOD calibration
    assert np.isfinite(scores["ood_score"]).all()
    assert any("no OOD calibration" in n for n in summary.notes)

    csv = pd.read_csv(out / "scores.csv")
    assert list(csv.columns) == list(scores.columns)
    np.testing.assert_allclose(csv[PROB].to_numpy(), scores[PROB].to_numpy(), rtol=1e-6)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["status_counts"] == {"ok": 40} and saved["records_per_s"] > 0
    assert not (out / "parts").exists()


def test_cinc_500hz_mat_records_are_scored(checkpoint, cinc_sample, tmp_path):
    out = tmp_path / "out"
    summary = score_archive(checkpoint, cinc_sample, out, _options())
    scores = pd.read_parquet(out / "scores.parquet")
    headers = sorted(p.stem for p in cinc_sample.glob("*.hea"))
    assert list(scores["record_id"]) == headers
    signals, status = preprocessed([str(cinc_sample / h) for h in headers])
    assert list(scores["status"]) == status
    assert summary.status_counts["ok"] == len(signals) >= 40
    model, _ = load_checkpoint(checkpoint)
    ok = scores["status"] == "ok"
    np.testing.assert_allclose(scores.loc[ok, PROB].to_numpy(), predict_arrays(model, signals).probs,
                               rtol=1e-5, atol=1e-6)
    bad = scores[~ok]
    assert bad[PROB].isna().all().all() and bad[PRED].isna().all().all()
    assert (bad["error"].str.len() > 0).all()


def test_shards_concatenate_to_the_full_output(checkpoint, ptbxl_small, tmp_path):
    full = score_archive(checkpoint, ptbxl_small, tmp_path / "full", _options(chunk_size=6))
    assert full.chunks_total == 7
    parts = []
    for i in range(3):
        score_archive(checkpoint, ptbxl_small, tmp_path / f"s{i}", _options(chunk_size=6, shard=(i, 3)))
        parts.append(pd.read_parquet(tmp_path / f"s{i}" / "scores.parquet"))
    assert [len(p) for p in parts] == [12, 12, 16]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True),
                                  pd.read_parquet(tmp_path / "full" / "scores.parquet"))


def test_existing_run_needs_resume_and_same_settings(checkpoint, ptbxl_small, tmp_path):
    score_archive(checkpoint, ptbxl_small, tmp_path, _options())
    with pytest.raises(ValueError, match="--resume"):
        score_archive(checkpoint, ptbxl_small, tmp_path, _options())
    with pytest.raises(ValueError, match="chunk_size"):
        score_archive(checkpoint, ptbxl_small, tmp_path, _options(chunk_size=8, resume=True))
    again = score_archive(checkpoint, ptbxl_small, tmp_path, _options(resume=True))
    assert again.records_this_session == 0 and again.n_records == 40


def test_bad_options_are_rejected(checkpoint, ptbxl_small, tmp_path):
    with pytest.raises(ValueError, match="top-k"):
        score_archive(checkpoint, ptbxl_small, tmp_path / "a", _options(top_k=0))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        score_archive(tmp_path / "missing.pt", ptbxl_small, tmp_path / "b", _options())


def test_empty_shard_writes_empty_outputs_with_all_columns(checkpoint, ptbxl_small, tmp_path):
    summary = score_archive(checkpoint, ptbxl_small, tmp_path, _options(chunk_size=16, shard=(0, 6)))
    assert summary.n_records == 0 and summary.chunks_total == 0
    empty = pd.read_parquet(tmp_path / "scores.parquet")
    full_columns = ["record_id", "ecg_id", "path", "status", "error", *PROB, *PRED, "top_labels"]
    assert len(empty) == 0 and list(empty.columns[: len(full_columns)]) == full_columns
    assert list(pd.read_csv(tmp_path / "scores.csv").columns) == list(empty.columns)


def test_scoring_threads_share_the_cores(monkeypatch):
    """Explicit threads win; 0 divides the CPU cores among the scoring processes (at least 1 each)."""
    from ecgproto.score.scorer import scoring_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert scoring_threads(_options(workers=2, threads=3)) == 3
    assert scoring_threads(_options(workers=2, threads=0)) == 4
    assert scoring_threads(_options(workers=0, threads=0)) == 8
    assert scoring_threads(_options(workers=16, threads=0)) == 1


def test_worker_outputs_equal_inline_outputs(checkpoint, ptbxl_small, tmp_path):
    """Batches scored in worker processes give the same rows as the main process scoring alone."""
    inline, pooled = tmp_path / "inline", tmp_path / "pooled"
    score_archive(checkpoint, ptbxl_small, inline, _options(workers=0, save_similarities=True))
    score_archive(checkpoint, ptbxl_small, pooled, _options(workers=2, save_similarities=True))
    for name in ("scores.parquet", "similarities.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(inline / name), pd.read_parquet(pooled / name))


def test_multithreaded_workers_are_spawned_and_agree(checkpoint, ptbxl_small, tmp_path):
    """Workers with more than one torch thread start by spawn (OpenMP is not fork-safe) and score alike."""
    inline, pooled = tmp_path / "inline", tmp_path / "pooled"
    score_archive(checkpoint, ptbxl_small, inline, _options(workers=0, threads=2))
    score_archive(checkpoint, ptbxl_small, pooled, _options(workers=2, threads=2))
    a, b = pd.read_parquet(inline / "scores.parquet"), pd.read_parquet(pooled / "scores.parquet")
    assert list(a["record_id"]) == list(b["record_id"])
    np.testing.assert_allclose(a[PROB].to_numpy(), b[PROB].to_numpy(), rtol=1e-5, atol=1e-6)
