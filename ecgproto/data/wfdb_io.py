"""Read one WFDB record as a validated (12, T) float32 array in millivolts.

:func:`read_record` never raises for a bad record: it returns a :class:`RecordResult`
whose ``status`` says what is wrong and whose ``message`` names the record. Checks run
in this order and the first failure wins:

============================  ==================================================================
status                        rule
============================  ==================================================================
``missing_file``              the ``.hea`` file or a signal file named in it does not exist
``unreadable_header``         wfdb cannot parse the header, it is larger than ``MAX_HEADER_BYTES``
                              (1 MiB) or lists more than ``MAX_SIGNALS`` (64) signals, two signals
                              map to the same canonical lead, or a signal file it names lies
                              outside the header's folder
``bad_sampling_rate``         the record line has no sampling frequency (WFDB would silently assume
                              250 Hz), it is not a finite number, or it lies outside
                              ``FS_RANGE_HZ`` = [50, 10000] Hz
``missing_leads``             one of the 12 leads is absent (names matched case-insensitively,
                              ``AVR``/``avr``/``aVR`` are the same lead; extra signals are ignored)
``unreadable_signal``         the signal file cannot be decoded or holds fewer samples than the
                              header declares (e.g. a truncated ``.dat``)
``checksum_mismatch``         the header carries per-signal 16-bit checksums and the sum of a
                              lead's digital samples differs from it modulo 2**16
``nan``                       any sample of the 12 leads is NaN/inf (WFDB invalid-sample values
                              are read as NaN)
``wrong_length``              after resampling to ``fs`` the record is shorter than ``n_samples``
                              by more than ``max(1, 1 %)`` of ``n_samples``; a shortfall within the
                              tolerance is padded by repeating the last sample. Longer records are
                              cropped to their first ``n_samples`` samples
``flat_line``                 a lead's peak-to-peak amplitude over the (cropped) record is below
                              ``FLAT_PTP_MV`` = 0.01 mV
``implausible_amplitude``     a lead deviates from its median by more than ``MAX_ABS_MV`` = 20 mV
                              for at least ``SUSTAIN_S`` = 0.1 s in total (a single spike passes)
``implausible_scale``         the largest lead's typical beat amplitude (median peak-to-peak of its
                              1-s windows) is outside ``SCALE_RANGE_MV`` = [0.35, 10] mV: the gain or
                              units in the header are off (a factor of 10 moves any real ECG out)
``ok``                        ``signal`` holds (12, n_samples) float32 mV in :data:`LEADS` order
============================  ==================================================================

Records at another rate are resampled with :func:`scipy.signal.resample_poly`
(polyphase, rational ratio). The amplitude and flat-line checks run on the
resampled, cropped signal — exactly what the model would see.

Only the samples needed are read: ``n_samples`` at ``fs`` plus the resampling filter's
reach (:func:`frames_needed`), so a record costs bounded memory and time whatever its
length (checksums are verified only when the whole record is read, i.e. for records no
longer than that; truncation is detected from the file size in any case).

:func:`read_records` reads a batch with the same results as :func:`read_record` record by
record, checking the records of the common layout together (what the scorer's workers call).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import wfdb
from scipy.signal import firwin, resample_poly

from ecgproto.data.wfdb_fast import INVALID_SAMPLE, FastHeader, parse_header_text, read_digital

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
STATUSES: tuple[str, ...] = (
    "ok", "missing_file", "unreadable_header", "unreadable_signal", "missing_leads", "nan",
    "flat_line", "wrong_length", "implausible_amplitude", "checksum_mismatch", "bad_sampling_rate",
    "implausible_scale",
)
FLAT_PTP_MV = 0.01
MAX_ABS_MV = 20.0
SUSTAIN_S = 0.1
LENGTH_TOLERANCE = 0.01
FS_RANGE_HZ = (50.0, 10000.0)  # sampling frequencies accepted (Hz); outside: bad_sampling_rate
SCALE_RANGE_MV = (0.35, 10.0)  # largest lead's typical beat amplitude (mV); outside: implausible_scale
MAX_HEADER_BYTES = 1 << 20
MAX_SIGNALS = 64
_SIGNAL_SUFFIXES = (".hea", ".dat", ".mat")
_CANONICAL = {name.lower(): name for name in LEADS}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


@dataclass(frozen=True)
class RecordResult:
    """Outcome of reading one record; ``signal`` is None unless ``status == "ok"``."""

    record: str
    signal: np.ndarray | None
    status: str
    message: str
    fs_in: float | None


@dataclass(frozen=True)
class HeaderInfo:
    """What a header says, without reading the signal (cheap)."""

    record: str
    fs: float
    sig_len: int | None
    sig_name: tuple[str, ...]
    lead_index: dict[str, int] = field(default_factory=dict)  # canonical lead -> signal column
    comments: tuple[str, ...] = ()

    @property
    def missing_leads(self) -> tuple[str, ...]:
        return tuple(lead for lead in LEADS if lead not in self.lead_index)


def record_stem(path: str | Path) -> str:
    """Record path without a ``.hea``/``.dat``/``.mat`` extension."""
    text = str(path)
    for suffix in _SIGNAL_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def canonical_lead(name: str) -> str | None:
    """Map a lead name to its canonical spelling (``"AVR"`` → ``"aVR"``); None if not a 12-lead name."""
    return _CANONICAL.get(str(name).strip().lower())


class _RecordProblem(Exception):
    """Internal: a record failed a check; carries the status and a message without the record name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Header = FastHeader | wfdb.Record | wfdb.MultiRecord


def _parse_header(stem: str) -> tuple[Header, HeaderInfo]:
    """Fast parser for the common layout, wfdb for everything else; raises _RecordProblem."""
    hea = stem + ".hea"
    try:
        with open(hea, "rb") as fh:
            raw = fh.read(MAX_HEADER_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _RecordProblem("missing_file", f"header file {hea} does not exist") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise _RecordProblem("unreadable_header", f"header {hea} is larger than {MAX_HEADER_BYTES} bytes; "
                                                  "not a WFDB header")
    text = _decode(raw)
    declared_fs = _declared_fs(text, hea)
    header: Header | None = parse_header_text(text)
    if header is None:
        try:
            header = wfdb.rdheader(stem)
        except Exception as exc:  # wfdb raises many types for malformed text
            raise _RecordProblem("unreadable_header", f"cannot parse header {hea} ({type(exc).__name__}: {exc})") from exc
    fs = header.fs
    if fs is None or not np.isfinite(fs) or not math.isclose(float(fs), declared_fs):
        raise _RecordProblem("bad_sampling_rate", f"header {hea}: sampling frequency {declared_fs:g} Hz on the record "
                                                  f"line was parsed as {fs}; fix the record line")
    names = tuple(str(n) for n in (header.sig_name or ()))
    if len(names) > MAX_SIGNALS:
        raise _RecordProblem("unreadable_header", f"header {hea} lists {len(names)} signals; at most {MAX_SIGNALS} "
                                                  "are supported")
    lead_index: dict[str, int] = {}
    for col, name in enumerate(names):
        lead = canonical_lead(name)
        if lead is None:
            continue
        if lead in lead_index:
            raise _RecordProblem("unreadable_header",
                                 f"header {hea} lists lead {lead} twice (signals {lead_index[lead]} and {col})")
        lead_index[lead] = col
    info = HeaderInfo(record=stem, fs=float(fs), sig_len=header.sig_len, sig_name=names,
                      lead_index=lead_index, comments=tuple(header.comments or ()))
    return header, info


def _decode(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (``µV`` units, non-ASCII record names), else latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _declared_fs(text: str, hea: str) -> float:
    """The sampling frequency (Hz) written on the record line; raises _RecordProblem("bad_sampling_rate").

    WFDB readers silently assume 250 Hz when the field is absent or unparsable (``nan``, ``abc``);
    a wrong rate changes every rhythm feature, so here it is an error."""
    line = next((ln.split("#", 1)[0].split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")),
                [])
    if len(line) < 2 or not line[1].isdigit():
        raise _RecordProblem("unreadable_header", f"cannot parse header {hea}: no record line "
                                                  "'<name> <n signals> <fs> <length>'")
    if len(line) < 3:
        raise _RecordProblem("bad_sampling_rate", f"header {hea} declares no sampling frequency on its record line "
                                                  "(WFDB would assume 250 Hz); add it")
    field_text = line[2].split("/", 1)[0].split("(", 1)[0]
    try:
        fs = float(field_text)
    except ValueError:
        raise _RecordProblem("bad_sampling_rate", f"header {hea}: sampling frequency {line[2]!r} is not a number") from None
    lo, hi = FS_RANGE_HZ
    if not math.isfinite(fs):
        raise _RecordProblem("bad_sampling_rate", f"header {hea}: sampling frequency {line[2]!r} is not a finite number")
    if not lo <= fs <= hi:
        raise _RecordProblem("bad_sampling_rate", f"header {hea}: sampling frequency {line[2]} Hz is outside the "
                                                  f"supported {lo:g}-{hi:g} Hz")
    return fs


def read_header_info(path: str | Path) -> HeaderInfo:
    """Parse only the header of ``path`` (record path, with or without extension).

    Raises FileNotFoundError when the ``.hea`` is missing and ValueError when it cannot
    be parsed or maps two signals onto the same lead (messages name the record).
    """
    stem = record_stem(path)
    try:
        return _parse_header(stem)[1]
    except _RecordProblem as exc:
        error = FileNotFoundError if exc.status == "missing_file" else ValueError
        raise error(f"record {stem}: {exc.message}") from None


def _bad(stem: str, status: str, message: str, fs_in: float | None = None) -> RecordResult:
    return RecordResult(record=stem, signal=None, status=status, message=f"record {stem}: {message}", fs_in=fs_in)


def _ratio(fs_in: float, fs_out: float) -> Fraction:
    return Fraction(fs_out / fs_in).limit_denominator(1000)


@lru_cache(maxsize=32)
def _lowpass(up: int, down: int, dtype: str) -> np.ndarray:
    """resample_poly's own default FIR design (Kaiser window, beta 5, half-length 10·max(up, down)),
    made once per ratio instead of once per record (designing it cost more than a third of a
    500 → 100 Hz resampling); read-only, as it is shared."""
    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(dtype)
    h.setflags(write=False)
    return h


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling of ``x`` (..., T) from ``fs_in`` to ``fs_out`` Hz along the last axis
    (:func:`scipy.signal.resample_poly` with its default filter, designed once per ratio)."""
    if math.isclose(fs_in, fs_out):
        return x
    ratio = _ratio(fs_in, fs_out)
    up, down = ratio.numerator, ratio.denominator
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    return resample_poly(x, up, down, axis=-1, window=_lowpass(up, down, dtype.str))


def frames_needed(fs_in: float, fs_out: float, n_samples: int) -> int:
    """Input samples at ``fs_in`` Hz that determine the first ``n_samples`` of :func:`resample`'s output.

    The crop plus the reach of resample_poly's filter (half-length ``10 * max(up, down)`` at the
    upsampled rate), so reading only these gives the same first ``n_samples`` as reading it all."""
    if math.isclose(fs_in, fs_out):
        return n_samples
    ratio = _ratio(fs_in, fs_out)
    up, down = ratio.numerator, ratio.denominator
    return math.ceil(n_samples * down / up) + math.ceil(10 * max(up, down) / up) + 2


def _unit_scale(unit: str | None) -> float:
    """Factor to mV for a WFDB unit string (unknown units are taken as mV)."""
    return _UNIT_TO_MV.get(str(unit or "mV").strip().lower(), 1.0)


@lru_cache(maxsize=256)
def _unit_scales(units: tuple[str, ...]) -> np.ndarray:
    """:func:`_unit_scale` of each signal (read-only; an archive's headers repeat a few unit lists)."""
    scales = np.asarray([_unit_scale(u) for u in units], dtype=np.float64)
    scales.setflags(write=False)
    return scales


def _physical(digital: np.ndarray, gain: list | np.ndarray, baseline: list | np.ndarray, invalid: list,
              units: list | tuple, cols: list[int]) -> np.ndarray:
    """Digital (T, n_sig) → mV (12, T) float64 for ``cols``; WFDB invalid-sample values become NaN."""
    selected = digital[:, cols].T
    x = np.array(selected, dtype=np.float64, order="C")  # lead-major: the per-lead checks read contiguously
    gain = np.asarray(gain, dtype=np.float64)[cols][:, None]
    gain = np.where(gain == 0, 200.0, gain)  # WFDB: gain 0 means the default 200 adu per unit
    baseline = np.asarray(baseline, dtype=np.float64)[cols][:, None]
    scale = np.asarray([_unit_scale(units[c]) for c in cols])[:, None]
    x -= baseline
    x /= gain
    x *= scale
    bad = np.asarray([np.nan if invalid[c] is None else invalid[c] for c in cols], dtype=np.float64)[:, None]
    x[selected == bad] = np.nan
    return x


def _checksum_error(digital: np.ndarray, header_checksum, names: tuple[str, ...]) -> str | None:
    if not header_checksum or any(c is None for c in header_checksum):
        return None
    sums = np.mod(np.einsum("ij->j", digital, dtype=np.int64), 65536)
    expected = np.mod(np.asarray(header_checksum, dtype=np.int64), 65536)
    bad = [names[i] for i in range(len(expected)) if sums[i] != expected[i]]
    if bad:
        return (f"signal checksum differs from the header for lead(s) {', '.join(bad)} "
                "(file modified or corrupted); re-download the record")
    return None


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name and \
        not (os.altsep and os.altsep in name)


def _inside(folder: Path, names) -> None:
    """Raise _RecordProblem when a signal file named in the header lies outside the header's folder
    (symbolic links followed). A plain file name that is not a link is inside by construction: only
    other names are resolved (resolving cost a third of reading a 100 Hz record)."""
    base = None
    for name in names:
        if _plain_name(name) and not os.path.islink(folder / name):
            continue
        base = folder.resolve() if base is None else base
        target = (folder / name).resolve()
        if target != base and base not in target.parents:
            raise _RecordProblem("unreadable_header", f"signal file {name!r} named in the header lies outside the "
                                                      f"record's folder {folder}; refusing to read it")


def _lead_columns(info: HeaderInfo) -> list[int]:
    return [info.lead_index[lead] for lead in LEADS]


def _whole(header: Header, n_frames: int) -> bool:
    """Whether the first ``n_frames`` frames are the whole record (then checksums are compared)."""
    return not header.sig_len or n_frames >= header.sig_len


def _fast_digital(stem: str, header: FastHeader, n_frames: int) -> np.ndarray:
    """The first ``n_frames`` digital frames of a fast-layout record (:func:`read_digital`); raises _RecordProblem."""
    folder = Path(stem).parent
    _inside(folder, [header.file_name])
    try:
        return read_digital(folder, header, n_frames)
    except (FileNotFoundError, IsADirectoryError):
        raise _RecordProblem("missing_file",
                             f"signal file {folder / header.file_name} named in the header does not exist") from None
    except (EOFError, OSError, ValueError) as exc:
        raise _RecordProblem("unreadable_signal", str(exc)) from exc


def _fast_physical(digital: np.ndarray, header: FastHeader, info: HeaderInfo, n_frames: int) -> np.ndarray:
    """Checksum, then mV (12, T) float64 of a fast-layout record's digital frames; raises _RecordProblem."""
    problem = _checksum_error(digital, header.checksum, info.sig_name) if _whole(header, n_frames) else None
    if problem:
        raise _RecordProblem("checksum_mismatch", problem)
    invalid = [INVALID_SAMPLE[header.fmt]] * len(info.sig_name)
    return _physical(digital, header.adc_gain, header.baseline, invalid, header.units, _lead_columns(info))


def _read_signal(stem: str, header: wfdb.Record | wfdb.MultiRecord, info: HeaderInfo, n_frames: int) -> np.ndarray:
    """First ``n_frames`` samples of a record outside the fast layout, read by wfdb: (12, T) in mV
    (float64, NaN where invalid); raises _RecordProblem.

    Checksums are compared only when the whole record is read (``n_frames >= sig_len``)."""
    cols = _lead_columns(info)
    folder = Path(stem).parent
    whole = _whole(header, n_frames)
    sampto = None if whole else n_frames
    if isinstance(header, wfdb.MultiRecord):
        try:
            record = wfdb.rdrecord(stem, physical=True, m2s=True, sampto=sampto)
        except Exception as exc:
            raise _RecordProblem("unreadable_signal",
                                 f"cannot read the multi-segment signal ({type(exc).__name__}: {exc})") from exc
        scale = np.asarray([_unit_scale(u) for u in record.units])[:, None]
        return record.p_signal.T[cols].astype(np.float64) * scale[cols]
    files = sorted(set(header.file_name or ()))
    _inside(folder, files)
    for name in files:
        if not (folder / name).is_file():
            raise _RecordProblem("missing_file", f"signal file {folder / name} named in the header does not exist")
    try:
        record = wfdb.rdrecord(stem, physical=False, sampto=sampto)
    except Exception as exc:
        raise _RecordProblem("unreadable_signal", (f"cannot decode signal file(s) {', '.join(files)} "
                                                   f"({type(exc).__name__}: {exc}); the file may be truncated or corrupted")) from exc
    digital = record.d_signal
    if digital is None or digital.ndim != 2 or digital.shape[0] == 0:
        raise _RecordProblem("unreadable_signal", f"signal file(s) {', '.join(files)} hold no samples")
    if header.sig_len and digital.shape[0] < min(header.sig_len, n_frames):
        raise _RecordProblem("unreadable_signal", (f"signal file holds {digital.shape[0]} samples, "
                                                   f"header declares {header.sig_len}; the file is truncated"))
    problem = _checksum_error(digital, header.checksum, info.sig_name) if whole else None
    if problem:
        raise _RecordProblem("checksum_mismatch", problem)
    invalid = [INVALID_SAMPLE.get(str(f)) for f in record.fmt]
    return _physical(digital, record.adc_gain, record.baseline, invalid, record.units, cols)


@dataclass(frozen=True)
class _Staged:
    """A record whose header passed: what :func:`_finish` needs (``digital``: a fast-layout record's frames)."""

    stem: str
    header: Header
    info: HeaderInfo
    n_frames: int
    digital: np.ndarray | None


def _stage(path: str | Path, fs: int, n_samples: int) -> _Staged | RecordResult:
    """The header checks of :func:`read_record` and a fast-layout record's digital frames; a RecordResult
    when the record already failed."""
    stem = record_stem(path)
    try:
        header, info = _parse_header(stem)
    except _RecordProblem as exc:
        return _bad(stem, exc.status, exc.message)
    except Exception as exc:  # last line of defence: a batch never stops on one record
        return _bad(stem, "unreadable_header", f"unexpected error reading the header ({type(exc).__name__}: {exc})")
    if info.missing_leads:
        present = ", ".join(info.sig_name) or "none"
        return _bad(stem, "missing_leads",
                    f"lead(s) {', '.join(info.missing_leads)} not in the header (signals: {present})", info.fs)
    n_frames = frames_needed(info.fs, fs, n_samples)
    digital = None
    if isinstance(header, FastHeader):
        try:
            digital = _fast_digital(stem, header, n_frames)
        except _RecordProblem as exc:
            return _bad(stem, exc.status, exc.message, info.fs)
        except Exception as exc:
            return _bad(stem, "unreadable_signal", f"unexpected error reading the signal ({type(exc).__name__}: {exc})",
                        info.fs)
    return _Staged(stem, header, info, n_frames, digital)


def _finish(staged: _Staged, fs: int, n_samples: int) -> RecordResult:
    """The signal checks of :func:`read_record` for a staged record."""
    stem, header, info = staged.stem, staged.header, staged.info
    try:
        if isinstance(header, FastHeader):  # its frames were read by _stage
            signal = _fast_physical(staged.digital, header, info, staged.n_frames)
        else:
            signal = _read_signal(stem, header, info, staged.n_frames)
    except _RecordProblem as exc:
        return _bad(stem, exc.status, exc.message, info.fs)
    except Exception as exc:
        return _bad(stem, "unreadable_signal", f"unexpected error reading the signal ({type(exc).__name__}: {exc})", info.fs)
    return validate_signal(stem, signal, info.fs, fs, n_samples)


def read_record(path: str | Path, fs: int, n_samples: int) -> RecordResult:
    """Read and validate a WFDB record (``.dat`` or ``.mat`` signal files).

    ``path``: record path with or without ``.hea``/``.dat``/``.mat``. Returns a
    :class:`RecordResult` with ``signal`` (12, n_samples) float32 mV in :data:`LEADS`
    order at ``fs`` Hz when ``status == "ok"``; see the module docstring for the rules.
    """
    staged = _stage(path, fs, n_samples)
    return staged if isinstance(staged, RecordResult) else _finish(staged, fs, n_samples)


def read_records(paths: list[str] | list[Path], fs: int, n_samples: int) -> list[RecordResult]:
    """:func:`read_record` of each path: the same statuses, messages and bit-identical signals.

    The records of the common layout — fast header, already at ``fs``, at least ``n_samples``
    long — are converted and checked together, a few array operations per batch instead of
    per record (the per-record numpy calls cost more than the arithmetic at 100 Hz); a record
    any batched check fails, and every other record, goes through :func:`read_record`'s own steps,
    so its status and message are exactly that function's.
    """
    results: list[RecordResult | None] = [None] * len(paths)
    groups: dict[tuple, list[tuple[int, _Staged]]] = {}
    for i, path in enumerate(paths):
        staged = _stage(path, fs, n_samples)
        if isinstance(staged, RecordResult):
            results[i] = staged
        elif (staged.digital is not None and math.isclose(staged.info.fs, fs)
              and staged.digital.shape[0] == n_samples):
            groups.setdefault((staged.digital.dtype.str, staged.digital.shape[1]), []).append((i, staged))
        else:
            results[i] = _finish(staged, fs, n_samples)
    for members in groups.values():
        try:
            passed = _checked_together([s for _, s in members], fs)
        except Exception:  # a header value the batched arithmetic cannot take: the per-record steps name it
            passed = [None] * len(members)
        for (i, staged), signal in zip(members, passed):
            results[i] = (_finish(staged, fs, n_samples) if signal is None else
                          RecordResult(record=staged.stem, signal=signal, status="ok", message="", fs_in=staged.info.fs))
    return results  # type: ignore[return-value]


def _checked_together(staged: list[_Staged], fs: int, block: int = 8) -> list[np.ndarray | None]:
    """The (12, T) float32 mV signal of each record that passes every check of :func:`read_record`,
    None for the others (they take the per-record path, which names what failed).

    ``staged``: fast-layout records at ``fs`` with ``T`` frames each, all of one integer type and
    signal count. The checks run on the digital samples: with a positive gain and unit factor the
    conversion to mV, ``((d - baseline) / gain) · unit`` in float64, is monotone in ``d`` (IEEE
    rounding is), so the extremes of a lead or a 1-s window in mV are the converted digital
    extremes, bit for bit; a record with any other gain or unit factor is left to the per-record
    path. The signal itself is :func:`_physical`'s arithmetic, element for element, in blocks of
    ``block`` records that stay in the cache, so a passing record's signal is bit-identical to
    :func:`read_record`'s."""
    digital = np.ascontiguousarray(np.stack([s.digital for s in staged]).transpose(0, 2, 1))  # (B, S, T)
    n, n_signals, n_frames = digital.shape
    suspect = np.zeros(n, dtype=bool)
    summed = [k for k, s in enumerate(staged) if _whole(s.header, s.n_frames) and s.header.checksum]
    if summed:
        sums = np.mod(digital[summed].sum(axis=2, dtype=np.int64), 65536)
        # modulo in Python first: a header's checksum field may hold any integer (2**70 overflows int64; the
        # per-record path reports that record's error)
        expected = np.asarray([[c % 65536 for c in staged[k].header.checksum] for k in summed], dtype=np.int64)
        suspect[summed] = (sums != expected).any(axis=1)
    cols = np.asarray([_lead_columns(s.info) for s in staged])  # (B, 12)
    rows = np.arange(n)[:, None]
    identity = n_signals == len(LEADS) and bool((cols == np.arange(len(LEADS))).all())
    selected = digital if identity else digital[rows, cols]  # (B, 12, T)
    gain = np.asarray([s.header.adc_gain for s in staged], dtype=np.float64).reshape(n, n_signals)[rows, cols]
    gain = np.where(gain == 0, 200.0, gain)[:, :, None]
    baseline = np.asarray([s.header.baseline for s in staged], dtype=np.float64).reshape(n, n_signals)[rows, cols]
    baseline = baseline[:, :, None]
    scale = np.stack([_unit_scales(s.header.units) for s in staged])[rows, cols][:, :, None]
    suspect |= ~((gain > 0) & (scale > 0)).all(axis=(1, 2))

    def mv(d: np.ndarray, part: slice = slice(None)) -> np.ndarray:
        """Digital (b, 12, k) of the records ``part`` -> mV float64, _physical's operations in its order."""
        x = d.astype(np.float64)
        x -= baseline[part]
        x /= gain[part]
        x *= scale[part]
        return x

    invalid = np.asarray([INVALID_SAMPLE[s.header.fmt] for s in staged], dtype=np.int64)[:, None]
    low, high = selected.min(axis=2), selected.max(axis=2)  # (B, 12) digital
    suspect |= (low == invalid).any(axis=1) | (high == invalid).any(axis=1)  # an invalid sample: NaN per record
    extremes = mv(np.stack([low, high], axis=2))  # (B, 12, 2) mV
    suspect |= ~np.isfinite(extremes).all(axis=(1, 2))
    ptp = extremes[:, :, 1] - extremes[:, :, 0]
    suspect |= (ptp < FLAT_PTP_MV).any(axis=1) | (ptp > MAX_ABS_MV).any(axis=1)
    window = max(1, int(fs))
    n_win = n_frames // window
    if n_win:
        windows = selected[:, :, :n_win * window].reshape(n, len(LEADS), n_win, window)
        amplitude = np.median(mv(windows.max(axis=3)) - mv(windows.min(axis=3)), axis=2)  # (B, 12) mV
    else:
        amplitude = ptp
    top = amplitude.max(axis=1)
    lo, hi = SCALE_RANGE_MV
    suspect |= ~((lo <= top) & (top <= hi))
    signals = np.empty((n, len(LEADS), n_frames), dtype=np.float32)
    for start in range(0, n, block):
        part = slice(start, start + block)
        signals[part] = mv(selected[part], part)
    return [None if bad else signals[k] for k, bad in enumerate(suspect)]


def beat_amplitude(x: np.ndarray, fs: int) -> np.ndarray:
    """Typical beat amplitude per lead (12,) mV: median peak-to-peak of the 1-s windows of ``x`` (12, T) at ``fs`` Hz.

    Robust to a burst of noise or a few ectopic beats; on 2,729 real PTB-XL records the largest
    lead's value spans 0.77-7.6 mV, so a gain off by 10x leaves :data:`SCALE_RANGE_MV`."""
    window = max(1, int(fs))
    n_win = x.shape[-1] // window
    if n_win == 0:
        return np.ptp(x, axis=-1)
    return np.median(np.ptp(x[:, : n_win * window].reshape(len(x), n_win, window), axis=-1), axis=-1)


def validate_signal(stem: str, signal: np.ndarray, fs_in: float, fs: int, n_samples: int) -> RecordResult:
    """Apply the nan / length / flat-line / amplitude / scale rules to a (12, T) mV array at ``fs_in`` Hz."""
    finite = np.isfinite(signal)
    if not finite.all():
        per_lead = (~finite).sum(axis=1)
        where = ", ".join(f"{LEADS[i]} ({int(n)})" for i, n in enumerate(per_lead) if n)
        return _bad(stem, "nan", f"NaN/invalid samples in lead(s) {where}", fs_in)
    x = resample(signal, fs_in, fs)
    length = x.shape[-1]
    tolerance = max(1, int(round(LENGTH_TOLERANCE * n_samples)))
    if length < n_samples - tolerance:
        return _bad(stem, "wrong_length", (f"{length} samples at {fs} Hz ({length / fs:.2f} s, from {signal.shape[-1]} at "
                                           f"{fs_in:g} Hz); need {n_samples} ({n_samples / fs:.2f} s)"), fs_in)
    if length < n_samples:
        x = np.pad(x, ((0, 0), (0, n_samples - length)), mode="edge")
    x = x[:, :n_samples]
    ptp = np.ptp(x, axis=1)
    flat = [LEADS[i] for i in np.flatnonzero(ptp < FLAT_PTP_MV)]
    if flat:
        return _bad(stem, "flat_line", f"flat lead(s) {', '.join(flat)} (peak-to-peak < {FLAT_PTP_MV} mV)", fs_in)
    # A lead whose peak-to-peak is <= MAX_ABS_MV cannot deviate more than that from its median
    # (the median lies between min and max), so only the other leads need the median.
    wide = np.flatnonzero(ptp > MAX_ABS_MV)
    over = np.zeros(len(x), dtype=np.int64)
    if wide.size:
        sub = x[wide]
        over[wide] = (np.abs(sub - np.median(sub, axis=1, keepdims=True)) > MAX_ABS_MV).sum(axis=1)
    sustained = max(1, int(round(SUSTAIN_S * fs)))
    loud = [f"{LEADS[i]} ({over[i] / fs:.2f} s)" for i in np.flatnonzero(over >= sustained)]
    if loud:
        return _bad(stem, "implausible_amplitude", (f"lead(s) {', '.join(loud)} exceed {MAX_ABS_MV:g} mV from their median "
                                                    f"for >= {SUSTAIN_S:g} s; check units/gain"), fs_in)
    amplitude = beat_amplitude(x, fs)
    top = int(np.argmax(amplitude))
    lo, hi = SCALE_RANGE_MV
    if not lo <= amplitude[top] <= hi:
        return _bad(stem, "implausible_scale", (f"largest typical beat amplitude {amplitude[top]:.3g} mV (lead {LEADS[top]}, "
                                                f"median peak-to-peak of 1-s windows) is outside the plausible {lo:g}-{hi:g} "
                                                "mV; the header's gain (adu/mV) or units are probably wrong"), fs_in)
    return RecordResult(record=stem, signal=x.astype(np.float32), status="ok", message="", fs_in=fs_in)
