"""``ecgproto merge``: shards of one job merge into the unsharded output; overlapping, incomplete,
unfinished or foreign shards are refused before anything is written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ecgproto.cli import main
from ecgproto.errors import UserError
from ecgproto.score.merge import merge_shards
from ecgproto.score.scorer import ScoreOptions, score_archive


def _options(**kw):
    return ScoreOptions(**{**dict(batch_size=4, chunk_size=6, workers=0, threads=1, device="cpu"), **kw})


@pytest.fixture(scope="module")
def shards(checkpoint, ptbxl_small, tmp_path_factory):
    """The unsharded output and its 3 shards (40 records in 7 chunks of 6)."""
    root = tmp_path_factory.mktemp("shards")
    score_archive(checkpoint, ptbxl_small, root / "full", _options(save_similarities=True))
    for i in range(3):
        score_archive(checkpoint, ptbxl_small, root / f"s{i}", _options(shard=(i, 3), save_similarities=True))
    return root


def test_merged_shards_equal_the_unsharded_run(shards, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["merge", str(shards / "s2"), str(shards / "s0"), str(shards / "s1"), "--out", str(out)]) == 0
    assert '"n_records": 40' in capsys.readouterr().out
    full = shards / "full"
    for name in ("scores.parquet", "similarities.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(full / name))
    for name in ("scores.parquet", "similarities.parquet", "scores.csv"):  # byte for byte, row groups included
        assert (out / name).read_bytes() == (full / name).read_bytes(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"] == {"ok": 40} and summary["n_shards"] == 3 and summary["chunks_total"] == 7
    manifest = json.loads((out / "scoring_manifest.json").read_text())
    assert manifest["finished"] and manifest["fingerprint"]["shard"] == [0, 1] and manifest["done"] == list(range(7))


def test_overlapping_or_incomplete_shards_are_refused(shards, tmp_path):
    s0, s1, s2 = (str(shards / f"s{i}") for i in range(3))
    out = tmp_path / "m"
    with pytest.raises(UserError, match=r"shards overlap: shard 1/3 is given twice"):
        merge_shards([s0, s1, s1, s2], out)
    with pytest.raises(UserError, match=r"incomplete: shard\(s\) 2/3 missing \(got 2 of 3\)"):
        merge_shards([s0, s1], out)
    with pytest.raises(UserError, match=r"different shard counts \(n=1, n=3\)"):
        merge_shards([s0, s1, str(shards / "full")], out)
    assert not out.exists()  # nothing written


def test_tampered_chunks_are_refused(shards, tmp_path):
    """A manifest whose chunks overlap another shard's (or leave a gap) is caught, not only duplicate indices."""
    import shutil

    bad = tmp_path / "s1_bad"
    shutil.copytree(shards / "s1", bad)
    manifest = json.loads((bad / "scoring_manifest.json").read_text())
    manifest["chunks"] = [c - 1 for c in manifest["chunks"]]  # now shares a chunk with shard 0
    (bad / "scoring_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="the folder was altered"):
        merge_shards([shards / "s0", bad, shards / "s2"], tmp_path / "m")


def test_unfinished_shard_and_a_different_job_are_refused(checkpoint, ptbxl_small, shards, tmp_path):
    other = tmp_path / "other"
    score_archive(checkpoint, ptbxl_small, other, _options(shard=(2, 3), chunk_size=8, save_similarities=True))
    with pytest.raises(UserError, match=r"is not a shard of the same job .*chunk_size: 6 vs 8"):
        merge_shards([shards / "s0", shards / "s1", other], tmp_path / "m")
    manifest = json.loads((other / "scoring_manifest.json").read_text())
    manifest["finished"] = False
    (other / "scoring_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"shard 2/3 is not finished.*--resume"):
        merge_shards([shards / "s0", shards / "s1", other], tmp_path / "m")
    with pytest.raises(UserError, match="no scoring_manifest.json"):
        merge_shards([tmp_path], tmp_path / "m")
