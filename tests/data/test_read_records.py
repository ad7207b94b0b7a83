"""The batched reader gives exactly the per-record reader's results, on a batch that mixes every defect."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

import ecgproto.data.wfdb_io as wfdb_io
from ecgproto.data.wfdb_io import LEADS, read_record, read_records

REAL = ("records100/00000/00001_lr", "records100/00000/00002_lr", "records100/00000/00003_lr")


def _write(folder: Path, name: str, signal_mv: np.ndarray, names: list[str], fs: float = 100, fmt: str = "16",
           units: str = "mV", gain: float = 1000.0) -> None:
    """(T, n_sig) mV as a WFDB record with fresh checksums."""
    n = signal_mv.shape[1]
    wfdb.wrsamp(name, fs=fs, units=[units] * n, sig_name=names, p_signal=signal_mv, fmt=[fmt] * n,
                adc_gain=[gain] * n, baseline=[0] * n, write_dir=str(folder))


def _edit_header(folder: Path, name: str, line: int, field: int, value) -> None:
    hea = folder / f"{name}.hea"
    lines = hea.read_text().splitlines()
    fields = lines[line].split()
    fields[field] = str(value(fields[field]))
    lines[line] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")


def _mixed_batch(ptbxl_sample: Path, folder: Path) -> list[Path]:
    """Real records, reordered/extra/µV copies and one copy per defect, in one folder."""
    folder.mkdir()
    for rec in REAL:
        for ext in (".hea", ".dat"):
            shutil.copy(ptbxl_sample / f"{rec}{ext}", folder)
    good = read_record(folder / Path(REAL[0]).name, 100, 1000).signal.T.astype(np.float64)  # (1000, 12) mV
    order = [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]  # leads named out of order, as in MIMIC-IV-ECG
    _write(folder, "reordered", good[:, order], [LEADS[i] for i in order])
    _write(folder, "extra_signal", np.concatenate([good, good[:, :1]], axis=1), [*LEADS, "X"])
    _write(folder, "microvolt", good * 1000, list(LEADS), fmt="32", units="uV", gain=1.0)
    _write(folder, "longer", np.concatenate([good, good[:500]]), list(LEADS))  # cropped: no checksum compared
    _write(folder, "short_padded", good[:995], list(LEADS))
    _write(folder, "too_short", good[:700], list(LEADS))
    _write(folder, "at_500hz", np.repeat(good, 5, axis=0), list(LEADS), fs=500)
    _write(folder, "packed_212", good, list(LEADS), fmt="212")
    nan = good.copy()
    nan[100:110, 7] = np.nan
    _write(folder, "nan", nan, list(LEADS), fmt="32")
    flat = good.copy()
    flat[:, 9] = 0.123
    _write(folder, "flat", flat, list(LEADS))
    spike = good.copy()
    spike[500, 0] = 30.0  # one sample far out: tolerated
    _write(folder, "spike", spike, list(LEADS))
    loud = good.copy()
    loud[200:260, 0] += 25.0
    _write(folder, "loud", loud, list(LEADS))
    _write(folder, "gain_x10", good * 10, list(LEADS))
    _write(folder, "checksum", good, list(LEADS))
    _edit_header(folder, "checksum", 2, 6, lambda v: int(v) + 1)
    _write(folder, "negative_gain", good, list(LEADS))
    _edit_header(folder, "negative_gain", 4, 2, lambda v: "-" + v)
    _write(folder, "zero_gain", good, list(LEADS), gain=200.0)  # gain 0 means 200 adu/mV
    _edit_header(folder, "zero_gain", 1, 2, lambda v: "0(0)/mV")
    _write(folder, "checksum_overflow", good, list(LEADS))
    _edit_header(folder, "checksum_overflow", 1, 6, lambda v: 2**70)  # any integer parses; int64 cannot hold it
    _write(folder, "no_file", good, list(LEADS))
    (folder / "no_file.dat").unlink()
    return sorted(p.with_suffix("") for p in folder.glob("*.hea"))


def _same(a: wfdb_io.RecordResult, b: wfdb_io.RecordResult) -> bool:
    if (a.record, a.status, a.message, a.fs_in) != (b.record, b.status, b.message, b.fs_in):
        return False
    if a.signal is None or b.signal is None:
        return a.signal is None and b.signal is None
    return a.signal.dtype == b.signal.dtype and a.signal.shape == b.signal.shape and np.array_equal(a.signal, b.signal)


@pytest.mark.parametrize(("fs", "n_samples"), [(100, 1000), (100, 500), (500, 5000)])
def test_batched_reader_equals_the_per_record_reader(ptbxl_sample: Path, tmp_path: Path, monkeypatch,
                                                     fs: int, n_samples: int) -> None:
    paths = _mixed_batch(ptbxl_sample, tmp_path / "batch")
    together: list[int] = []
    checked = wfdb_io._checked_together

    def spy(staged, fs_):
        together.append(len(staged))
        return checked(staged, fs_)

    monkeypatch.setattr(wfdb_io, "_checked_together", spy)
    batched = read_records(paths, fs, n_samples)
    alone = [read_record(p, fs, n_samples) for p in paths]
    assert [r.status for r in batched] == [r.status for r in alone]
    assert all(_same(a, b) for a, b in zip(alone, batched)), [a.record for a, b in zip(alone, batched) if not _same(a, b)]
    if (fs, n_samples) == (100, 1000):
        status = {Path(r.record).name: r.status for r in alone}
        assert {status[n] for n in ("nan", "flat", "loud", "gain_x10", "checksum", "too_short", "no_file",
                                    "checksum_overflow")} == {
            "nan", "flat_line", "implausible_amplitude", "implausible_scale", "checksum_mismatch", "wrong_length",
            "missing_file", "unreadable_signal"}
        good = (*(Path(r).name for r in REAL), "reordered", "extra_signal", "microvolt", "spike", "negative_gain",
                "zero_gain", "short_padded", "at_500hz", "packed_212", "longer")
        assert {status[n] for n in good} == {"ok"}
        assert sum(together) >= 15  # the records of the common layout did go through the batched checks


def test_batched_reader_on_every_real_sample_record(ptbxl_sample: Path, cinc_sample: Path) -> None:
    paths = sorted(p.with_suffix("") for p in (ptbxl_sample / "records100").rglob("*.hea"))[:128]
    paths += sorted(p.with_suffix("") for p in cinc_sample.glob("*.hea"))
    for start in range(0, len(paths), 64):
        chunk = paths[start:start + 64]
        assert all(_same(a, b) for a, b in zip([read_record(p, 100, 1000) for p in chunk], read_records(chunk, 100, 1000)))


def test_a_bug_in_the_batched_reader_costs_only_the_records_it_concerns(ptbxl_sample: Path, monkeypatch) -> None:
    from ecgproto.data.preprocess import Preprocessing
    from ecgproto.score import worker

    paths = [str(ptbxl_sample / rec) for rec in REAL]
    prep = Preprocessing(100, 1000, 0.5, 1)
    expected = worker.read_batch(paths, prep)
    real = worker.read_record

    def broken_batch(*_):
        raise RuntimeError("bug in the batched path")

    def broken_for_one(path, fs, n_samples):
        if path == paths[1]:
            raise RuntimeError("bug for this record")
        return real(path, fs, n_samples)

    monkeypatch.setattr(worker, "read_records", broken_batch)
    monkeypatch.setattr(worker, "read_record", broken_for_one)
    got = worker.read_batch(paths, prep)
    assert got.status == ["ok", worker.READ_ERROR, "ok"]
    assert paths[1] in got.message[1] and "bug for this record" in got.message[1]
    np.testing.assert_array_equal(got.signals, expected.signals[[0, 2]])
