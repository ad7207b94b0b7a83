"""--resume re-scores a committed chunk whose record files were rewritten at the same paths."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import ecgproto.score.scorer as scorer
from ecgproto.score.scorer import ScoreOptions, score_archive

from .test_worker_crash import _folder

OPTIONS = ScoreOptions(batch_size=1, chunk_size=1, workers=0)


def test_resume_rescores_chunks_whose_files_changed(checkpoint, ptbxl_sample, tmp_path, monkeypatch):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a", "b", "c"])
    real = scorer.build_rows
    calls = {"n": 0}

    def stop_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted after two committed chunks
        return real(*args, **kwargs)

    monkeypatch.setattr(scorer, "build_rows", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        score_archive(checkpoint, data, tmp_path / "out", OPTIONS)
    monkeypatch.setattr(scorer, "build_rows", real)
    hea = data / "a.hea"  # chunk 0 rewritten in place: now its sampling rate is wrong
    hea.write_text(hea.read_text().replace("a 12 100 1000", "a 12 nan 1000"))
    os.utime(hea, ns=(1, 1))
    summary = score_archive(checkpoint, data, tmp_path / "out", ScoreOptions(**{**OPTIONS.__dict__, "resume": True}))
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("record_id")
    assert scores["status"].to_dict() == {"a": "bad_sampling_rate", "b": "ok", "c": "ok"}
    assert summary.chunks_resumed == 1 and any("changed since they were scored" in n for n in summary.notes)
