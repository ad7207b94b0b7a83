"""WFDB reader: real records read exactly; every bad-input status from a real, corrupted copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample

from ecgproto.data.wfdb_io import LEADS, STATUSES, canonical_lead, read_header_info, read_record, record_stem

REC = "records100/00000/00001_lr"


@pytest.fixture(params=["fast", "wfdb"])
def record_copy(request, ptbxl_sample: Path, tmp_path: Path, monkeypatch) -> Path:
    """A fresh copy of PTB-XL record 1 (100 Hz, 10 s, format 16) in tmp_path; returns the stem.

    Every test using it runs twice: through the fast numpy reader and through the general
    wfdb-python reader (the fast header parser disabled).
    """
    if request.param == "wfdb":
        monkeypatch.setattr("ecgproto.data.wfdb_io.parse_header_text", lambda text: None)
    for ext in (".hea", ".dat"):
        shutil.copy(ptbxl_sample / (REC + ext), tmp_path / ("00001_lr" + ext))
    return tmp_path / "00001_lr"


def _rewrite(stem: Path, signal_mv: np.ndarray, fmt: str = "16", names: list[str] | None = None, fs: float = 100) -> None:
    """Write (T, n_sig) mV as a real WFDB record (wfdb.wrsamp computes fresh checksums)."""
    names = names or [canonical_lead(n) or n for n in wfdb.rdheader(str(stem)).sig_name]
    wfdb.wrsamp(stem.name, fs=fs, units=["mV"] * signal_mv.shape[1], sig_name=names, p_signal=signal_mv,
                fmt=[fmt] * signal_mv.shape[1], adc_gain=[1000.0] * signal_mv.shape[1],
                baseline=[0] * signal_mv.shape[1], write_dir=str(stem.parent))


def test_good_record_equals_rdsamp(ptbxl_sample: Path) -> None:
    result = read_record(ptbxl_sample / (REC + ".hea"), fs=100, n_samples=1000)
    assert result.status == "ok", result.message
    assert result.record == str(ptbxl_sample / REC)
    assert result.fs_in == 100.0
    expected, fields = wfdb.rdsamp(str(ptbxl_sample / REC))
    assert [canonical_lead(n) for n in fields["sig_name"]] == list(LEADS)  # PTB-XL writes AVR/AVL/AVF
    assert result.signal.dtype == np.float32 and result.signal.shape == (12, 1000)
    np.testing.assert_array_equal(result.signal, expected.T.astype(np.float32))


def test_500hz_record_resampled_to_100hz(ptbxl_sample: Path) -> None:
    hr = read_record(ptbxl_sample / "records500/00000/00001_hr", fs=100, n_samples=1000)
    lr = read_record(ptbxl_sample / REC, fs=100, n_samples=1000)
    assert hr.status == "ok" and hr.fs_in == 500.0
    # PTB-XL's 100 Hz files are a downsampled version of the 500 Hz ones: the shapes must agree closely.
    corr = [np.corrcoef(hr.signal[i], lr.signal[i])[0, 1] for i in range(12)]
    assert min(corr) > 0.95


def test_cinc_mat_record_lead_mapping_and_resampling(cinc_sample: Path) -> None:
    stem = cinc_sample / "E07500"
    raw, fields = wfdb.rdsamp(str(stem))
    assert fields["fs"] == 500 and fields["sig_name"][3] == "aVR"
    result = read_record(str(stem) + ".mat", fs=100, n_samples=1000)
    assert result.status == "ok", result.message
    assert result.fs_in == 500.0 and result.signal.shape == (12, 1000)
    # Independent reference: FFT resampling (scipy.signal.resample) of the column wfdb names like the lead.
    reference = resample(raw, 1000, axis=0).T
    for lead in LEADS:
        col = fields["sig_name"].index(lead)
        got, ref = result.signal[LEADS.index(lead), 20:-20], reference[col, 20:-20]
        assert np.corrcoef(got, ref)[0, 1] > 0.999, lead
        assert np.abs(got - ref).max() < 0.05, lead


def test_mimic_lead_order_mapped_by_name(record_copy: Path) -> None:
    """MIMIC-IV-ECG writes I,II,III,aVR,aVF,aVL,V1..V6 (aVF before aVL); mapping is by name."""
    good = read_record(record_copy, 100, 1000).signal
    mimic_order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    columns = [LEADS.index(n) for n in mimic_order]
    _rewrite(record_copy, good[columns].T.astype(np.float64), names=[n.upper() if n == "aVF" else n for n in mimic_order])
    result = read_record(record_copy, 100, 1000)
    assert result.status == "ok", result.message
    np.testing.assert_allclose(result.signal, good, atol=1e-3)


def test_header_info(cinc_sample: Path) -> None:
    info = read_header_info(cinc_sample / "E07500.hea")
    assert info.fs == 500 and info.sig_len == 5000 and info.missing_leads == ()
    assert any(c.startswith("Dx:") for c in info.comments)
    with pytest.raises(FileNotFoundError, match="nope.hea"):
        read_header_info(cinc_sample / "nope")


def test_record_stem() -> None:
    assert record_stem("a/b/c.hea") == record_stem("a/b/c.dat") == record_stem("a/b/c") == "a/b/c"


# ---------- one real broken file per status ----------

def _check(result, status: str, *fragments: str) -> None:
    assert status in STATUSES
    assert result.status == status, result.message
    assert result.signal is None
    assert result.record in result.message
    for fragment in fragments:
        assert fragment in result.message


def test_missing_file(tmp_path: Path) -> None:
    _check(read_record(tmp_path / "absent", 100, 1000), "missing_file", "absent.hea")


def test_missing_signal_file(record_copy: Path) -> None:
    Path(str(record_copy) + ".dat").unlink()
    _check(read_record(record_copy, 100, 1000), "missing_file", "00001_lr.dat")


def test_truncated_dat(record_copy: Path) -> None:
    dat = Path(str(record_copy) + ".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    _check(read_record(record_copy, 100, 1000), "unreadable_signal", "truncated")


def test_garbage_header(record_copy: Path) -> None:
    Path(str(record_copy) + ".hea").write_bytes(b"\x00\xff garbage that is not a header\nmore junk 1 2 3\n")
    _check(read_record(record_copy, 100, 1000), "unreadable_header", ".hea")


def test_header_with_duplicate_lead(record_copy: Path) -> None:
    hea = Path(str(record_copy) + ".hea")
    hea.write_text(hea.read_text().replace(" AVL\n", " AVR\n"))
    _check(read_record(record_copy, 100, 1000), "unreadable_header", "aVR twice")


def test_header_with_lead_renamed(record_copy: Path) -> None:
    hea = Path(str(record_copy) + ".hea")
    hea.write_text(hea.read_text().replace(" V3\n", " X3\n"))
    _check(read_record(record_copy, 100, 1000), "missing_leads", "V3", "X3")


def test_header_with_lead_removed(record_copy: Path) -> None:
    good = read_record(record_copy, 100, 1000).signal
    keep = [i for i, n in enumerate(LEADS) if n != "aVF"]
    _rewrite(record_copy, good[keep].T.astype(np.float64), names=[LEADS[i] for i in keep])
    _check(read_record(record_copy, 100, 1000), "missing_leads", "aVF")


def test_nan_samples(record_copy: Path) -> None:
    signal = read_record(record_copy, 100, 1000).signal.T.astype(np.float64)
    signal[100:110, 7] = np.nan  # wrsamp stores NaN as the format's invalid-sample value
    _rewrite(record_copy, signal, fmt="32")
    assert "32" in Path(str(record_copy) + ".hea").read_text()
    _check(read_record(record_copy, 100, 1000), "nan", "V2 (10)")


def test_flat_line(record_copy: Path) -> None:
    signal = read_record(record_copy, 100, 1000).signal.T.astype(np.float64)
    signal[:, 9] = 0.123
    _rewrite(record_copy, signal)
    _check(read_record(record_copy, 100, 1000), "flat_line", "V4")


def test_wrong_length(record_copy: Path) -> None:
    signal = read_record(record_copy, 100, 1000).signal.T.astype(np.float64)
    _rewrite(record_copy, signal[:700])
    _check(read_record(record_copy, 100, 1000), "wrong_length", "700 samples", "need 1000")


def test_length_within_tolerance_is_padded_and_longer_is_cropped(record_copy: Path) -> None:
    full = read_record(record_copy, 100, 1000).signal
    short = read_record(record_copy, 100, 1005)  # 5 short, tolerance 1 % = 10 samples
    assert short.status == "ok" and short.signal.shape == (12, 1005)
    np.testing.assert_array_equal(short.signal[:, 1000:], np.repeat(full[:, -1:], 5, axis=1))
    cropped = read_record(record_copy, 100, 500)
    np.testing.assert_array_equal(cropped.signal, full[:, :500])


def test_implausible_amplitude(record_copy: Path) -> None:
    signal = read_record(record_copy, 100, 1000).signal.T.astype(np.float64)
    spiked = signal.copy()
    spiked[500, 0] = 30.0  # a single-sample spike is tolerated
    _rewrite(record_copy, spiked)
    assert read_record(record_copy, 100, 1000).status == "ok"
    signal[200:260, 0] += 25.0  # 0.6 s far outside any ECG (e.g. wrong gain)
    _rewrite(record_copy, signal)
    _check(read_record(record_copy, 100, 1000), "implausible_amplitude", "I (0.60 s)")


def test_checksum_changed_in_header(record_copy: Path) -> None:
    hea = Path(str(record_copy) + ".hea")
    lines = hea.read_text().splitlines()
    fields = lines[2].split()  # lead II
    fields[6] = str(int(fields[6]) + 1)
    lines[2] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")
    _check(read_record(record_copy, 100, 1000), "checksum_mismatch", "lead(s) II")


def test_checksum_detects_modified_samples(record_copy: Path) -> None:
    dat = Path(str(record_copy) + ".dat")
    raw = bytearray(dat.read_bytes())
    raw[24 * 50] ^= 0x10  # flip one bit of lead I, sample 50
    dat.write_bytes(bytes(raw))
    _check(read_record(record_copy, 100, 1000), "checksum_mismatch", "lead(s) I")


def test_batch_of_bad_records_never_raises(record_copy: Path, tmp_path: Path) -> None:
    Path(str(record_copy) + ".dat").write_bytes(b"")
    paths = [record_copy, tmp_path / "missing", tmp_path]
    results = [read_record(p, 100, 1000) for p in paths]
    assert all(r.status != "ok" and r.message for r in results)


def test_format_212_record_uses_general_reader(record_copy: Path) -> None:
    good = read_record(record_copy, 100, 1000).signal
    _rewrite(record_copy, good.T.astype(np.float64), fmt="212")
    result = read_record(record_copy, 100, 1000)
    assert result.status == "ok", result.message
    np.testing.assert_allclose(result.signal, good, atol=1e-3)


def test_microvolt_units_converted_to_mv(record_copy: Path) -> None:
    good = read_record(record_copy, 100, 1000).signal
    names = [canonical_lead(n) for n in wfdb.rdheader(str(record_copy)).sig_name]
    wfdb.wrsamp(record_copy.name, fs=100, units=["uV"] * 12, sig_name=names, p_signal=good.T.astype(np.float64) * 1000,
                fmt=["32"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(record_copy.parent))
    result = read_record(record_copy, 100, 1000)
    assert result.status == "ok", result.message
    np.testing.assert_allclose(result.signal, good, atol=1e-3)


def test_every_real_sample_record(ptbxl_sample: Path, cinc_sample: Path) -> None:
    """All 500 PTB-XL 100 Hz records read ok; of the 50 CinC records only the two with dead V2/V4/V6 fail."""
    statuses = {p.stem: read_record(p, 100, 1000).status for p in sorted((ptbxl_sample / "records100").rglob("*.hea"))}
    assert len(statuses) == 500 and set(statuses.values()) == {"ok"}
    cinc = {p.stem: read_record(p, 100, 1000) for p in sorted(cinc_sample.glob("*.hea"))}
    assert len(cinc) == 50
    bad = {name: r.status for name, r in cinc.items() if r.status != "ok"}
    assert bad == {"JS20004": "flat_line", "JS20008": "flat_line"}
    assert "V2, V4, V6" in cinc["JS20004"].message


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize(("fs_in", "fs_out"), [(500, 100), (250, 100), (360, 100), (100, 500)])
def test_resample_with_the_filter_designed_once_equals_resample_poly(dtype, fs_in: int, fs_out: int) -> None:
    from fractions import Fraction

    from scipy.signal import resample_poly

    from ecgproto.data.wfdb_io import resample as ecg_resample

    x = (np.random.default_rng(0).normal(size=(12, 2000)) * 100).astype(dtype)
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    expected = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    for _ in range(2):  # the second call uses the cached filter
        got = ecg_resample(x, fs_in, fs_out)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def _write_record(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(1000) / 100
    sig = np.stack([np.sin(2 * np.pi * 1.2 * t) * (0.5 + 0.05 * i) for i in range(12)], axis=1)
    wfdb.wrsamp(name, fs=100, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))


def test_signal_file_linked_outside_the_folder_is_refused_but_a_linked_folder_is_read(tmp_path: Path) -> None:
    _write_record(tmp_path / "real", "r1")
    assert read_record(tmp_path / "real" / "r1", 100, 1000).status == "ok"
    # the whole folder reached through a link: the signal file is inside the header's (resolved) folder
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    assert read_record(tmp_path / "linked" / "r1", 100, 1000).status == "ok"
    # the header's own folder, but its signal file is a link to a file elsewhere
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "real" / "r1.hea", tmp_path / "other" / "r1.hea")
    (tmp_path / "other" / "r1.dat").symlink_to(tmp_path / "real" / "r1.dat")
    result = read_record(tmp_path / "other" / "r1", 100, 1000)
    assert result.status == "unreadable_header" and "outside" in result.message
