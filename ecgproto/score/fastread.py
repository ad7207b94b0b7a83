"""A fast path for the common WFDB record, returning exactly what ``read_record`` returns.

``wfdb.rdheader`` parses each header line through pandas (about 10 ms per header, and
``read_record`` parses it twice), which would make reading, not the model, the
bottleneck of archive scoring. This module parses the plain case directly: one
segment, all signals in one ``.dat``/``.mat`` file in format 16 (PTB-XL, MIMIC-IV-ECG,
CinC 2021 ``16x1+24``, ``wfdb.wrsamp``), every header field present. It converts to mV
exactly as the data layer does and applies the data layer's own validation
(:func:`ecgproto.data.wfdb_io.validate_signal`).

Anything else, and any record that is not "ok" on the fast path, is handed to
:func:`ecgproto.data.wfdb_io.read_record`, so statuses and messages of bad records are
always the data layer's. Tests check the two agree on real and corrupted records.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ecgproto.data.wfdb_io import LEADS, RecordResult, canonical_lead, read_record, record_stem, validate_signal

_GAIN = re.compile(r"^([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)(?:\((-?[0-9]+)\))?(?:/\S+)?$")
_FORMAT16 = re.compile(r"^16(?:x1)?(?:\+([0-9]+))?$")


class _NotSimple(Exception):
    """The record is outside the fast path; use ``read_record``."""


def _parse(stem: str) -> tuple[float, int | None, Path, int, list[int], np.ndarray, np.ndarray, list[int]]:
    """(fs, n_frames, signal file, byte offset, columns in LEADS order, gain, baseline, checksums)."""
    lines = [ln.strip() for ln in Path(stem + ".hea").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    head = lines[0].split()
    if "/" in head[0] or len(head) < 4:
        raise _NotSimple
    n_sig = int(head[1])
    fs = float(head[2].split("/")[0].split("(")[0])
    n_frames = int(head[3])
    if n_sig < 12 or len(lines) < 1 + n_sig or fs <= 0 or n_frames <= 0:
        raise _NotSimple
    files, offsets, gains, baselines, checksums, names = set(), set(), [], [], [], []
    for line in lines[1:1 + n_sig]:
        tok = line.split(maxsplit=8)
        if len(tok) < 9:
            raise _NotSimple
        fmt, gain = _FORMAT16.match(tok[1]), _GAIN.match(tok[2])
        if fmt is None or gain is None:
            raise _NotSimple
        files.add(tok[0])
        offsets.add(int(fmt.group(1) or 0))
        g = float(gain.group(1))
        gains.append(200.0 if g == 0 else g)
        baselines.append(int(gain.group(2)) if gain.group(2) is not None else int(tok[4]))
        checksums.append(int(tok[6]))
        names.append(canonical_lead(tok[8]))
    if len(files) != 1 or len(offsets) != 1:
        raise _NotSimple
    columns = {}
    for col, lead in enumerate(names):
        if lead is not None:
            if lead in columns:
                raise _NotSimple
            columns[lead] = col
    if len(columns) != 12:
        raise _NotSimple
    cols = [columns[lead] for lead in LEADS]
    return (fs, n_frames, Path(stem).parent / files.pop(), offsets.pop(), cols,
            np.asarray(gains, dtype=np.float64), np.asarray(baselines, dtype=np.float64), checksums)


def fast_read_record(path: str | Path, fs: int, n_samples: int) -> RecordResult:
    """Same contract and result as :func:`ecgproto.data.wfdb_io.read_record`, faster for plain records."""
    stem = record_stem(path)
    try:
        fs_in, n_frames, signal_file, offset, cols, gain, baseline, checksums = _parse(stem)
        n_sig = len(gain)
        digital = np.fromfile(signal_file, dtype="<i2", count=n_frames * n_sig, offset=offset)
        if digital.size < n_frames * n_sig:
            raise _NotSimple
        digital = digital.reshape(n_frames, n_sig)
        sums = np.mod(digital.sum(axis=0, dtype=np.int64), 65536)
        if np.any(sums != np.mod(np.asarray(checksums, dtype=np.int64), 65536)):
            raise _NotSimple
        selected = digital[:, cols].T.astype(np.float64)
        if np.any(selected == -(2**15)):  # WFDB invalid sample: read_record reports it
            raise _NotSimple
        signal = (selected - baseline[cols][:, None]) / gain[cols][:, None]
    except Exception:
        return read_record(path, fs, n_samples)
    result = validate_signal(stem, signal, fs_in, fs, n_samples)
    return result if result.status == "ok" else read_record(path, fs, n_samples)
