"""Fast path for the common WFDB layout: one header, one signal file, formats 16/32, one sample per frame.

wfdb-python parses header lines through pandas and spends ~95 % of a record read there; this
module parses the header text directly (WFDB header specification) and reads the samples with
``numpy.fromfile``. It covers PTB-XL, MIMIC-IV-ECG and the CinC 2021 ``.mat`` files (MATLAB v4,
column-major, i.e. frame-interleaved, after a 24-byte header). Anything else — multi-segment
records, several signal files, other formats, skew, several samples per frame, or a header this
parser does not understand — returns None and :mod:`ecgproto.data.wfdb_io` falls back to wfdb.
Tests check both paths agree on real records.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Digital value that marks a missing/invalid sample in each WFDB signal format (WFDB spec).
INVALID_SAMPLE = {
    "80": -(2**7), "508": -(2**7), "310": -(2**9), "311": -(2**9), "212": -(2**11), "16": -(2**15),
    "61": -(2**15), "160": -(2**15), "516": -(2**15), "24": -(2**23), "524": -(2**23), "32": -(2**31),
}
_DTYPES = {"16": np.dtype("<i2"), "32": np.dtype("<i4"), "61": np.dtype(">i2")}
_FORMAT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(\S+))?$")
_FS = re.compile(r"^([\d.eE+-]+)(?:/[\d.eE+-]+)?(?:\([\d.eE+-]+\))?$")


@dataclass(frozen=True)
class FastHeader:
    """A single-segment header whose signals all live in one file in one fast format."""

    fs: float
    sig_len: int
    file_name: str
    fmt: str
    byte_offset: int
    sig_name: tuple[str, ...]
    adc_gain: np.ndarray  # (n_sig,) adu per physical unit (0 → WFDB default 200)
    baseline: np.ndarray  # (n_sig,) adu
    units: tuple[str, ...]
    checksum: tuple[int, ...] | None  # None when any signal line omits it
    comments: tuple[str, ...]


def parse_header_text(text: str) -> FastHeader | None:
    """Parse WFDB header text; None when the record needs the general (wfdb) reader."""
    try:
        return _parse(text)
    except (ValueError, IndexError):
        return None


def _parse(text: str) -> FastHeader | None:
    comments = []
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
        else:
            lines.append(line)
    if not lines:
        return None
    record = lines[0].split()
    if "/" in record[0] or len(record) < 4:
        return None  # multi-segment, or no sampling frequency / length
    n_sig = int(record[1])
    fs_match = _FS.match(record[2])
    if n_sig <= 0 or fs_match is None or len(lines) < n_sig + 1:
        return None
    fs = float(fs_match.group(1))
    sig_len = int(record[3])
    files, fmts, offsets = set(), set(), set()
    names, gains, baselines, units, checksums = [], [], [], [], []
    for line in lines[1:1 + n_sig]:
        fields = line.split()
        if len(fields) < 3:
            return None
        fmt = _format_field(fields[1])
        gain = _gain_field(fields[2])
        if fmt is None or gain is None:
            return None  # slow format, several samples per frame, skew, or an unreadable gain
        adc_zero = int(fields[4]) if len(fields) > 4 else 0
        files.add(fields[0])
        fmts.add(fmt[0])
        offsets.add(fmt[1])
        gains.append(gain[0])
        baselines.append(gain[1] if gain[1] is not None else adc_zero)
        units.append(gain[2])
        checksums.append(int(fields[6]) if len(fields) > 6 else None)
        names.append(" ".join(fields[8:]))
    if len(files) != 1 or len(fmts) != 1 or len(offsets) != 1 or sig_len <= 0:
        return None
    return FastHeader(
        fs=fs, sig_len=sig_len, file_name=files.pop(), fmt=fmts.pop(), byte_offset=offsets.pop(),
        sig_name=tuple(names), adc_gain=np.asarray(gains, dtype=np.float64),
        baseline=np.asarray(baselines, dtype=np.float64), units=tuple(units),
        checksum=None if any(c is None for c in checksums) else tuple(checksums), comments=tuple(comments),
    )


@lru_cache(maxsize=256)
def _format_field(text: str) -> tuple[str, int] | None:
    """(format, byte offset) of a fast-path format field such as ``16`` or ``16+24``; None otherwise.

    Memoised: an archive's headers repeat the same few field strings, so each is parsed once."""
    fmt = _FORMAT.match(text)
    if fmt is None or fmt.group(1) not in _DTYPES or fmt.group(2) not in (None, "1") or fmt.group(3):
        return None
    return fmt.group(1), int(fmt.group(4) or 0)


@lru_cache(maxsize=256)
def _gain_field(text: str) -> tuple[float, int | None, str] | None:
    """(gain, baseline or None, units) of an ADC gain field such as ``1000.0(0)/mV``; None if unreadable."""
    gain = _GAIN.match(text)
    if gain is None:
        return None
    return float(gain.group(1)), int(gain.group(2)) if gain.group(2) is not None else None, gain.group(3) or "mV"


def read_digital(folder: Path, header: FastHeader, n_frames: int | None = None) -> np.ndarray:
    """Digital samples (min(sig_len, n_frames), n_sig) in the file's integer type (int16 or int32).

    Only the first ``n_frames`` frames are read (None = all ``sig_len``), so a long record costs
    only what is kept. Raises FileNotFoundError when the signal file is missing and EOFError when
    it is shorter than the header declares (checked from the file size, whatever is read)."""
    dtype = _DTYPES[header.fmt]
    n_sig = len(header.sig_name)
    frames = header.sig_len if n_frames is None else max(0, min(header.sig_len, n_frames))
    count = frames * n_sig
    with open(folder / header.file_name, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        held = max(0, size - header.byte_offset) // (dtype.itemsize * n_sig)
        if held < header.sig_len:
            raise EOFError(f"signal file {folder / header.file_name} holds {held} samples, "
                           f"header declares {header.sig_len}; the file is truncated")
        fh.seek(header.byte_offset)
        data = np.fromfile(fh, dtype=dtype, count=count)
    if data.size < count:
        raise EOFError(f"signal file {folder / header.file_name} holds {data.size // n_sig} samples, "
                       f"header declares {header.sig_len}; the file is truncated")
    return data.reshape(frames, n_sig).astype(dtype.newbyteorder("="), copy=False)
