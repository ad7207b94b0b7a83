"""Every adversarial record gets one documented status naming it, and no other row of the run changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels
from ecgproto.data.wfdb_io import STATUSES, read_record
from ecgproto.score.scorer import ScoreOptions, score_archive

from .corpus import CASES, HR, build_corpus, long_reference, reference_signal

PROB = [f"prob__{c}" for c in all_labels()]


def test_each_case_gets_its_status_naming_the_record(ptbxl_sample, tmp_path):
    expected = build_corpus(ptbxl_sample, tmp_path / "corpus")
    for name, status in expected.items():
        result = read_record(tmp_path / "corpus" / name, 100, 1000)
        assert status in STATUSES
        assert result.status == status, f"{name}: {result.message}"
        if status != "ok":
            assert f"corpus/{name}" in result.message and result.signal is None
    # only the first 10 s (plus the resampling filter's reach) are read, with the same result as reading it all
    np.testing.assert_allclose(read_record(tmp_path / "corpus" / "long_60s", 100, 1000).signal,
                               long_reference(tmp_path / "corpus"), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(read_record(tmp_path / "corpus" / "units_microvolt_utf8", 100, 1000).signal,
                               reference_signal(ptbxl_sample), rtol=1e-6, atol=1e-7)


def test_scoring_the_corpus_changes_no_other_row(checkpoint, ptbxl_sample, tmp_path):
    expected = build_corpus(ptbxl_sample, tmp_path / "corpus")
    (tmp_path / "good").mkdir()  # the reference: the records that must read as ok, alone
    for name in (n for n, status in expected.items() if status == "ok"):
        for ext in (".hea", ".dat"):
            shutil.copy(tmp_path / "corpus" / f"{name}{ext}", tmp_path / "good" / f"{name}{ext}")
    options = ScoreOptions(batch_size=64, workers=2, threads=1)
    score_archive(checkpoint, tmp_path / "corpus", tmp_path / "out", options)
    score_archive(checkpoint, tmp_path / "good", tmp_path / "ref", options)
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("record_id")
    ref = pd.read_parquet(tmp_path / "ref" / "scores.parquet").set_index("record_id")
    assert scores["status"].to_dict() == expected
    bad = scores[scores["status"] != "ok"]
    assert all(rid in err for rid, err in zip(bad.index, bad["error"]))
    assert bad[PROB].isna().all().all()
    pd.testing.assert_frame_equal(scores.loc[ref.index].drop(columns=["path"]), ref.drop(columns=["path"]),
                                  check_dtype=False)  # int8 columns with nulls elsewhere read back as float


def test_case_descriptions_are_unique():
    assert len({c.name for c in CASES}) == len(CASES)


def test_sampling_rate_0001_stays_under_300_mb(ptbxl_sample, tmp_path):
    """The 600-byte header with sampling rate 0.001 used to allocate 9.1 GiB; read in a fresh process."""
    src = ptbxl_sample / HR
    (tmp_path / "bomb.dat").write_bytes(src.with_suffix(".dat").read_bytes())
    lines = src.with_suffix(".hea").read_text().replace(src.name, "bomb").splitlines()
    lines[0] = "bomb 12 0.001 5000"
    (tmp_path / "bomb.hea").write_text("\n".join(lines) + "\n")
    # VmHWM (peak resident memory of this process image; ru_maxrss would carry pytest's over the exec)
    code = ("import json, re, sys\n"
            "from ecgproto.data.wfdb_io import read_record\n"
            "r = read_record(sys.argv[1], 100, 1000)\n"
            "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "print(json.dumps({'status': r.status, 'peak_mb': hwm / 1024}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bomb")], capture_output=True, text=True,
                         timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == "bad_sampling_rate"
    assert report["peak_mb"] < 300, report
