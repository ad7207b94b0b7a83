"""Reading only the samples needed, the sampling-rate and scale checks, on real and generated records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgproto.data.wfdb_fast import parse_header_text, read_digital
from ecgproto.data.wfdb_io import LEADS, SCALE_RANGE_MV, beat_amplitude, frames_needed, read_record, resample


@pytest.mark.parametrize("fs_in, fs_out", [(500, 100), (100, 500), (257, 100), (1000, 500), (360, 100), (128, 100)])
def test_frames_needed_gives_the_same_crop_as_the_whole_signal(fs_in, fs_out):
    x = np.random.default_rng(0).normal(size=(2, 40 * fs_in))
    n = 10 * fs_out
    need = frames_needed(fs_in, fs_out, n)
    assert need < x.shape[-1]
    np.testing.assert_allclose(resample(x[:, :need], fs_in, fs_out)[:, :n], resample(x, fs_in, fs_out)[:, :n],
                               rtol=0, atol=1e-12)


def test_read_digital_reads_only_the_frames_asked_for(ptbxl_sample: Path):
    hea = ptbxl_sample / "records500/00000/00001_hr.hea"
    fast = parse_header_text(hea.read_text())
    full = read_digital(hea.parent, fast)
    part = read_digital(hea.parent, fast, 700)
    assert part.shape == (700, 12)
    np.testing.assert_array_equal(part, full[:700])


def _long(ptbxl_sample: Path, tmp_path: Path, fmt: str) -> Path:
    rec = wfdb.rdrecord(str(ptbxl_sample / "records500/00000/00001_hr"))
    wfdb.wrsamp("long", fs=500, units=rec.units, sig_name=rec.sig_name, p_signal=np.concatenate([rec.p_signal] * 4),
                fmt=[fmt] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    return tmp_path / "long"


@pytest.mark.parametrize("fmt", ["16", "212"])  # fast path and wfdb fallback
def test_a_long_record_reads_its_first_seconds_like_the_whole_file(ptbxl_sample, tmp_path, fmt):
    stem = _long(ptbxl_sample, tmp_path, fmt)
    result = read_record(stem, 100, 1000)
    assert result.status == "ok", result.message
    record = wfdb.rdrecord(str(stem))
    order = [[n.lower() for n in record.sig_name].index(lead.lower()) for lead in LEADS]
    expected = resample(record.p_signal.T[order], 500, 100)[:, :1000]
    np.testing.assert_allclose(result.signal, expected, rtol=1e-6, atol=1e-6)


def test_real_records_are_inside_the_scale_range(ptbxl_sample: Path, cinc_sample: Path):
    """No genuine PTB-XL / CinC sample record is refused by the sampling-rate or scale checks."""
    stems = sorted((ptbxl_sample / "records100").rglob("*.hea")) + sorted(cinc_sample.glob("*.hea"))
    if not stems:
        pytest.skip("no real records found")
    statuses = {}
    for hea in stems:
        result = read_record(hea.with_suffix(""), 100, 1000)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        if result.status == "ok":
            assert SCALE_RANGE_MV[0] <= beat_amplitude(result.signal, 100).max() <= SCALE_RANGE_MV[1]
    assert "implausible_scale" not in statuses and "bad_sampling_rate" not in statuses, statuses


def test_beat_amplitude_of_short_input_uses_the_whole_record():
    x = np.zeros((12, 50))
    x[:, 10] = 2.0
    np.testing.assert_array_equal(beat_amplitude(x, 100), np.full(12, 2.0))


@pytest.mark.parametrize("line0", ["r 12 500/1000(0) 5000", "r 12 5e2 5000"])
def test_counter_frequency_and_exponent_forms_are_accepted(ptbxl_sample, tmp_path, line0):
    src = ptbxl_sample / "records500/00000/00001_hr"
    (tmp_path / "r.dat").write_bytes(src.with_suffix(".dat").read_bytes())
    lines = src.with_suffix(".hea").read_text().replace("00001_hr", "r").splitlines()
    lines[0] = line0
    (tmp_path / "r.hea").write_text("\n".join(lines) + "\n")
    assert read_record(tmp_path / "r", 100, 1000).status == "ok"
