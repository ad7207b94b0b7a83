"""``--resume`` after a real SIGKILL mid-run gives exactly the uninterrupted output."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.score.store import MANIFEST_NAME

from .conftest import REPO_ROOT
from .kill_after_chunks import kill_after

OPTIONS = dict(chunk_size=6, batch_size=4, workers=2, threads=1, save_similarities=True)


def _killed_run(checkpoint, data, out):
    kill_after(3)  # in this forked child only: SIGKILL right after the third committed chunk
    score_archive(checkpoint, data, out, ScoreOptions(**OPTIONS))


def _assert_same_outputs(run, full):
    for name in ("scores.parquet", "similarities.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run / name), pd.read_parquet(full / name))
    assert (run / "scores.csv").read_bytes() == (full / "scores.csv").read_bytes()


def _assert_killed_after_three_chunks(out):
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["done"] == [0, 1, 2] and not manifest["finished"]
    assert not (out / "scores.parquet").exists()


def test_resume_after_kill_matches_uninterrupted_run(checkpoint, ptbxl_small, tmp_path):
    score_archive(checkpoint, ptbxl_small, tmp_path / "full", ScoreOptions(**OPTIONS))
    child = multiprocessing.get_context("fork").Process(target=_killed_run,
                                                        args=(checkpoint, ptbxl_small, tmp_path / "run"))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    _assert_killed_after_three_chunks(tmp_path / "run")
    summary = score_archive(checkpoint, ptbxl_small, tmp_path / "run", ScoreOptions(**OPTIONS, resume=True))
    assert summary.chunks_resumed == 3 and summary.records_this_session == 40 - 18 and summary.n_records == 40
    _assert_same_outputs(tmp_path / "run", tmp_path / "full")


def _cli(checkpoint, data, out, *extra, kill_after_chunks=None):
    entry = ["ecgproto.cli"] if kill_after_chunks is None else ["tests.score.kill_after_chunks", str(kill_after_chunks)]
    cmd = [sys.executable, "-m", *entry, "score", str(checkpoint), str(data), "--out", str(out),
           "--chunk-size", "6", "--batch-size", "4", "--workers", "2", "--threads", "1", "--save-similarities", *extra]
    full_env = {**os.environ, "ECGPROTO_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_resume_after_kill_matches_uninterrupted_run(checkpoint, ptbxl_small, tmp_path):
    done = _cli(checkpoint, ptbxl_small, tmp_path / "full")
    assert done.returncode == 0, done.stderr
    killed = _cli(checkpoint, ptbxl_small, tmp_path / "run", kill_after_chunks=3)
    assert killed.returncode == -signal.SIGKILL  # returns at all: the reader processes did not linger
    _assert_killed_after_three_chunks(tmp_path / "run")
    refused = _cli(checkpoint, ptbxl_small, tmp_path / "run")
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = _cli(checkpoint, ptbxl_small, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["chunks_resumed"] == 3
    assert (tmp_path / "run" / "config.resolved.yaml").is_file()
    _assert_same_outputs(tmp_path / "run", tmp_path / "full")
