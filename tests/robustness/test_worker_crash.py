"""A scoring process that dies costs only its record; a second run on the same --out is refused."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecgproto.score.worker as worker
from ecgproto.score.scorer import WORKER_CRASHED, ScoreOptions, score_archive

from .corpus import LR

OPTIONS = ScoreOptions(batch_size=2, chunk_size=3, workers=2, threads=1)  # forked workers inherit the patch


def _folder(sample: Path, folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for i, name in enumerate(names):
        src = sample / LR[i % len(LR)]
        for ext in (".hea", ".dat"):
            text = src.with_suffix(ext).read_bytes()
            (folder / f"{name}{ext}").write_bytes(text.replace(src.name.encode(), name.encode()) if ext == ".hea"
                                                  else text)
    return folder


def test_a_record_that_kills_its_worker_gets_worker_crashed_and_the_run_goes_on(checkpoint, ptbxl_sample, tmp_path,
                                                                                monkeypatch):
    names = ["flaky", "good0", "good1", "good2", "killer"]
    data = _folder(ptbxl_sample, tmp_path / "data", names)
    reference = score_archive(checkpoint, data, tmp_path / "ref", OPTIONS)
    assert reference.status_counts == {"ok": 5}
    marker = tmp_path / "flaky-died-once"
    real = worker.read_records

    def deadly(paths, fs, n_samples):  # SIGKILL, as the out-of-memory killer does
        names = {Path(path).name for path in paths}
        if "killer" in names or ("flaky" in names and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(paths, fs, n_samples)

    monkeypatch.setattr(worker, "read_records", deadly)
    summary = score_archive(checkpoint, data, tmp_path / "out", OPTIONS)
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("record_id")
    ref = pd.read_parquet(tmp_path / "ref" / "scores.parquet").set_index("record_id")
    assert scores["status"].to_dict() == {**dict.fromkeys(names, "ok"), "killer": WORKER_CRASHED}
    assert "killer" in scores.loc["killer", "error"] and "died" in scores.loc["killer", "error"]
    others = [n for n in names if n != "killer"]  # flaky died once, was retried in a fresh process and is scored
    pd.testing.assert_frame_equal(scores.loc[others], ref.loc[others], check_dtype=False)
    assert any(WORKER_CRASHED in note for note in summary.notes)


def test_several_killers_in_flight_at_once(checkpoint, ptbxl_sample, tmp_path, monkeypatch):
    names = ["a", "b_killer", "c", "d", "e_killer", "f_killer", "g"]
    data = _folder(ptbxl_sample, tmp_path / "data", names)
    options = ScoreOptions(batch_size=2, chunk_size=4, workers=2, threads=1)
    score_archive(checkpoint, data, tmp_path / "ref", options)
    real = worker.read_records

    def deadly(paths, fs, n_samples):
        if any(Path(path).name.endswith("_killer") for path in paths):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(paths, fs, n_samples)

    monkeypatch.setattr(worker, "read_records", deadly)
    score_archive(checkpoint, data, tmp_path / "out", options)
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("record_id")
    ref = pd.read_parquet(tmp_path / "ref" / "scores.parquet").set_index("record_id")
    assert scores["status"].to_dict() == {n: WORKER_CRASHED if n.endswith("_killer") else "ok" for n in names}
    good = [n for n in names if not n.endswith("_killer")]
    prob = [c for c in scores.columns if c.startswith("prob__")]
    np.testing.assert_allclose(scores.loc[good, prob].to_numpy(), ref.loc[good, prob].to_numpy(), rtol=1e-5, atol=1e-6)


def _hold_lock(out: Path) -> subprocess.Popen:
    code = ("import sys; from pathlib import Path; from ecgproto.score.store import lock_folder\n"
            "lock_folder(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_concurrent_resume_is_refused_and_the_lock_dies_with_its_process(checkpoint, ptbxl_sample, tmp_path):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a", "b", "c"])
    out = tmp_path / "out"
    options = ScoreOptions(batch_size=2, chunk_size=2, workers=0)
    score_archive(checkpoint, data, tmp_path / "full", options)
    out.mkdir()
    holder = _hold_lock(out)
    try:
        with pytest.raises(ValueError, match=r"in use by another scoring run \(pid \d+"):
            score_archive(checkpoint, data, out, ScoreOptions(batch_size=2, chunk_size=2, workers=0, resume=True))
        assert not (out / "parts").exists()  # refused before touching anything
    finally:
        holder.kill()
        holder.wait()
    score_archive(checkpoint, data, out, ScoreOptions(batch_size=2, chunk_size=2, workers=0, resume=True))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), pd.read_parquet(tmp_path / "full" / "scores.parquet"))


def test_cli_concurrent_run_is_one_line_error(checkpoint, ptbxl_sample, tmp_path):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a"])
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        done = subprocess.run([sys.executable, "-m", "ecgproto.cli", "score", str(checkpoint), str(data), "--out", str(out),
                               "--resume", "--workers", "0"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "ECGPROTO_NO_PROGRESS": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "in use by another scoring run" in done.stderr
    shutil.rmtree(out)
