"""A folder of real PTB-XL records, some corrupted: one row per record, right status, good ones scored."""

import shutil

import numpy as np
import pandas as pd
import wfdb

from ecgproto.data.labels import all_labels
from ecgproto.model.inference import predict_arrays
from ecgproto.score.scorer import ScoreOptions, score_archive
from ecgproto.model.checkpoint import load_checkpoint

from .helpers import preprocessed

PROB = [f"prob__{c}" for c in all_labels()]


def _copy(src_stem, dst_dir, name):
    for ext in (".hea", ".dat"):
        text = (src_stem.parent / (src_stem.name + ext)).read_bytes()
        if ext == ".hea":
            text = text.replace(src_stem.name.encode(), name.encode())
        (dst_dir / (name + ext)).write_bytes(text)
    return dst_dir / name


def _rewrite(src_stem, dst_dir, name, change):
    rec = wfdb.rdrecord(str(src_stem))
    signal = change(rec.p_signal.copy())
    fs = rec.fs
    if isinstance(signal, tuple):
        signal, fs = signal
    wfdb.wrsamp(name, fs=fs, units=rec.units, sig_name=rec.sig_name, p_signal=signal, fmt=["16"] * 12,
                adc_gain=rec.adc_gain, baseline=[0] * 12, write_dir=str(dst_dir))


def _broken_folder(ptbxl_sample, folder):
    src = sorted((ptbxl_sample / "records100" / "00000").glob("*.hea"))[:12]
    stems = [p.with_suffix("") for p in src]
    folder.mkdir()
    expected = {}
    for i in range(5):
        _copy(stems[i], folder, f"good{i}")
        expected[f"good{i}"] = "ok"
    trunc = _copy(stems[5], folder, "truncated")
    data = trunc.with_suffix(".dat").read_bytes()
    trunc.with_suffix(".dat").write_bytes(data[: len(data) // 2])
    expected["truncated"] = "unreadable_signal"
    corrupt = _copy(stems[6], folder, "corrupt_header")
    corrupt.with_suffix(".hea").write_text("corrupt_header twelve leads?? @@\nnot a signal line\n")
    expected["corrupt_header"] = "unreadable_header"
    missing = _copy(stems[7], folder, "missing_leads")
    lines = missing.with_suffix(".hea").read_text().splitlines()
    head = lines[0].split()
    head[1] = "11"
    missing.with_suffix(".hea").write_text("\n".join([" ".join(head)] + lines[1:12]) + "\n")
    expected["missing_leads"] = "missing_leads"

    def with_nan(x):
        x[100:130, 3] = np.nan
        return x

    def flat(x):
        x[:, 8] = 0.2
        return x

    _rewrite(stems[8], folder, "nans", with_nan)
    expected["nans"] = "nan"
    _rewrite(stems[9], folder, "flat", flat)
    expected["flat"] = "flat_line"
    _rewrite(stems[10], folder, "wrong_rate", lambda x: (x, 250))  # 1000 samples at "250 Hz" = 4 s
    expected["wrong_rate"] = "wrong_length"
    _rewrite(stems[11], folder, "short", lambda x: x[:500])
    expected["short"] = "wrong_length"
    nodat = _copy(stems[0], folder, "no_signal_file")
    nodat.with_suffix(".dat").unlink()
    expected["no_signal_file"] = "missing_file"
    flipped = _copy(stems[1], folder, "checksum")
    raw = bytearray(flipped.with_suffix(".dat").read_bytes())
    raw[1001] ^= 0x10
    flipped.with_suffix(".dat").write_bytes(bytes(raw))
    expected["checksum"] = "checksum_mismatch"
    return expected


def test_broken_records_get_status_rows_and_good_ones_are_scored(checkpoint, ptbxl_sample, tmp_path):
    expected = _broken_folder(ptbxl_sample, tmp_path / "mixed")
    out = tmp_path / "out"
    summary = score_archive(checkpoint, tmp_path / "mixed", out,
                            ScoreOptions(batch_size=4, workers=2, chunk_size=5, threads=1))
    scores = pd.read_parquet(out / "scores.parquet")
    assert sorted(scores["record_id"]) == sorted(expected)  # one row per record, none lost or doubled
    assert dict(zip(scores["record_id"], scores["status"])) == expected
    assert summary.status_counts["ok"] == 5 and sum(summary.status_counts.values()) == len(expected)
    good = scores[scores["status"] == "ok"]
    bad = scores[scores["status"] != "ok"]
    assert bad[PROB].isna().all().all() and bad["ood_score"].isna().all()
    assert bad["top_labels"].isna().all() and bad["rhythm_top_prototype"].isna().all()
    assert all(rid in err for rid, err in zip(bad["record_id"], bad["error"]))  # messages name the record
    assert (good["error"] == "").all() and np.isfinite(good[PROB].to_numpy()).all()
    model, _ = load_checkpoint(checkpoint)
    signals, _ = preprocessed(list(good["path"]))
    np.testing.assert_allclose(good[PROB].to_numpy(), predict_arrays(model, signals).probs, rtol=1e-5, atol=1e-6)
