"""A small corpus of adversarial WFDB records built from real PTB-XL files, with the expected status.

Each case is a copy of a genuine record (``ptbxl-sample``) with one thing wrong: the header's
sampling rate, gain, units, signal-file name, size, or the record's length. ``build_corpus``
writes them into one folder next to untouched copies, so a test (and
``benchmarks/robustness.py``) can score the folder and check each row's status and that the
good rows are exactly those of a run without the bad records.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HR = "records500/00000/00001_hr"  # 10 s at 500 Hz, NORM / SR
LR = ("records100/00000/00002_lr", "records100/00000/00003_lr", "records100/00000/00004_lr")


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # status the reader must give
    what: str  # the defect, in words
    write: Callable[[Path, Path, str], None]  # (ptbxl_sample, folder, name) -> writes name.hea/.dat


def _copy(src: Path, folder: Path, name: str, record_line: Callable[[list[str]], list[str]] | None = None,
          signal_line: Callable[[str], str] | None = None, encoding: str = "utf-8") -> None:
    """Copy record ``src`` as ``folder/name`` with its record line / signal lines edited."""
    shutil.copy(src.with_suffix(".dat"), folder / f"{name}.dat")
    lines = src.with_suffix(".hea").read_text().replace(src.name, name).splitlines()
    if record_line:
        lines[0] = " ".join(record_line(lines[0].split()))
    if signal_line:
        n = int(lines[0].split()[1])
        lines[1:1 + n] = [signal_line(line) for line in lines[1:1 + n]]
    (folder / f"{name}.hea").write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _fs(value: str | None) -> Callable[[Path, Path, str], None]:
    def write(sample: Path, folder: Path, name: str) -> None:
        _copy(sample / HR, folder, name, lambda f: f[:2] + ([value] if value is not None else []) + f[3:])
    return write


def _fs_omitted(sample: Path, folder: Path, name: str) -> None:
    _copy(sample / HR, folder, name, lambda f: f[:2])


def _gain(gain: str) -> Callable[[Path, Path, str], None]:
    def write(sample: Path, folder: Path, name: str) -> None:
        _copy(sample / HR, folder, name, signal_line=lambda line: line.replace("1000.0(0)/mV", f"{gain}(0)/mV"))
    return write


def _microvolt(sample: Path, folder: Path, name: str) -> None:
    # 1 adu = 1 µV is the same scale as 1000 adu/mV: must read exactly like the original
    _copy(sample / HR, folder, name, signal_line=lambda line: line.replace("1000.0(0)/mV", "1.0(0)/µV"))


def _outside(sample: Path, folder: Path, name: str) -> None:
    _copy(sample / HR, folder, name, signal_line=lambda line: line.replace(f"{name}.dat", f"../{name}.dat", 1))
    shutil.copy(folder / f"{name}.dat", folder.parent / f"{name}.dat")


def _huge_header(sample: Path, folder: Path, name: str) -> None:
    _copy(sample / HR, folder, name)
    with (folder / f"{name}.hea").open("a") as fh:
        fh.write(("# " + "x" * 1000 + "\n") * 1100)


def _long_declared_short_file(sample: Path, folder: Path, name: str) -> None:
    _copy(sample / HR, folder, name, lambda f: f[:3] + ["100000000"])


def _long_record(sample: Path, folder: Path, name: str) -> None:
    """60 s at 500 Hz (the 10-s record six times): only the first 10 s are read."""
    _copy(sample / HR, folder, name, lambda f: f[:3] + [str(6 * int(f[3]))])
    raw = (folder / f"{name}.dat").read_bytes()
    (folder / f"{name}.dat").write_bytes(raw * 6)


CASES: tuple[Case, ...] = (
    Case("fs_nan", "bad_sampling_rate", "sampling rate 'nan' (wfdb reads 250 Hz)", _fs("nan")),
    Case("fs_abc", "bad_sampling_rate", "sampling rate 'abc' (wfdb reads 250 Hz)", _fs("abc")),
    Case("fs_omitted", "bad_sampling_rate", "no sampling rate nor length on the record line", _fs_omitted),
    Case("fs_0.001", "bad_sampling_rate", "sampling rate 0.001 Hz (a 9 GiB resampling)", _fs("0.001")),
    Case("fs_0", "bad_sampling_rate", "sampling rate 0", _fs("0")),
    Case("fs_negative", "bad_sampling_rate", "sampling rate -500", _fs("-500")),
    Case("fs_1e9", "bad_sampling_rate", "sampling rate 1e9 (was an unnamed read_error)", _fs("1e9")),
    Case("gain_x10", "implausible_scale", "gain 100 adu/mV instead of 1000 (signal 10x too large)", _gain("100.0")),
    Case("gain_div10", "implausible_scale", "gain 10000 adu/mV instead of 1000 (signal 10x too small)",
         _gain("10000.0")),
    Case("units_microvolt_utf8", "ok", "units written as UTF-8 'µV' with gain 1 adu/µV (same scale)", _microvolt),
    Case("signal_outside_folder", "unreadable_header", "signal file '../x.dat' outside the record's folder", _outside),
    Case("header_over_1MiB", "unreadable_header", "a 1.1 MB header", _huge_header),
    Case("declared_1e8_samples", "unreadable_signal", "header declares 10^8 samples, the file holds 5000",
         _long_declared_short_file),
    Case("long_60s", "ok", "a genuine 60-s record (only 10 s are read)", _long_record),
)


def build_corpus(sample: Path, folder: Path, n_good: int = 3) -> dict[str, str]:
    """Write every case plus ``n_good`` untouched records into ``folder``; returns name -> expected status."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for i, stem in enumerate(LR[:n_good]):
        _copy(sample / stem, folder, f"good{i}")
        expected[f"good{i}"] = "ok"
    for case in CASES:
        case.write(sample, folder, case.name)
        expected[case.name] = case.expected
    return expected


def reference_signal(sample: Path) -> np.ndarray:
    """What the ``units_microvolt_utf8`` case must read: the original record, (12, 1000) at 100 Hz."""
    from ecgproto.data.wfdb_io import read_record

    return read_record(sample / HR, 100, 1000).signal


def long_reference(folder: Path) -> np.ndarray:
    """The ``long_60s`` case read in full by wfdb, resampled to 100 Hz and cropped to 10 s: (12, 1000)."""
    import wfdb

    from ecgproto.data.wfdb_io import LEADS, canonical_lead, resample

    record = wfdb.rdrecord(str(folder / "long_60s"))
    order = [[canonical_lead(n) for n in record.sig_name].index(lead) for lead in LEADS]
    return resample(record.p_signal.T[order], record.fs, 100)[:, :1000].astype(np.float32)
