"""The fast header parser agrees with wfdb-python on real headers and declines what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgproto.data.wfdb_fast import parse_header_text, read_digital


def _records(ptbxl_sample: Path, cinc_sample: Path) -> list[Path]:
    lr = sorted((ptbxl_sample / "records100").rglob("*.hea"))[:8]
    hr = sorted((ptbxl_sample / "records500").rglob("*.hea"))[:3]
    cinc = sorted(cinc_sample.glob("*.hea"))
    return lr + hr + cinc[::10] + [cinc[-1]]


def test_fast_parser_matches_wfdb(ptbxl_sample: Path, cinc_sample: Path) -> None:
    paths = _records(ptbxl_sample, cinc_sample)
    assert any(p.name.startswith("JS") for p in paths) and any(p.name.startswith("HR") for p in paths)
    for hea in paths:
        stem = str(hea)[:-4]
        fast = parse_header_text(hea.read_text())
        assert fast is not None, hea
        ref = wfdb.rdheader(stem)
        assert fast.fs == ref.fs and fast.sig_len == ref.sig_len and list(fast.sig_name) == ref.sig_name, hea
        assert list(fast.adc_gain) == ref.adc_gain and list(fast.baseline) == ref.baseline, hea
        assert list(fast.checksum) == ref.checksum and list(fast.units) == ref.units, hea
        assert [fast.byte_offset] * len(ref.sig_name) == [b or 0 for b in ref.byte_offset], hea
        assert list(fast.comments) == ref.comments, hea
        np.testing.assert_array_equal(read_digital(hea.parent, fast), wfdb.rdrecord(stem, physical=False).d_signal)


@pytest.mark.parametrize("text", [
    "",
    "multi/2 12 500 5000\nseg1 2500\nseg2 2500\n",  # multi-segment
    "r 1 500 5000\nr.dat 212 200 12 0 0 0 0 I\n",  # packed format
    "r 1 500 5000\nr.dat 16x2 200 12 0 0 0 0 I\n",  # two samples per frame
    "r 1 500 5000\nr.dat 16:3 200 12 0 0 0 0 I\n",  # skew
    "r 2 500 5000\na.dat 16 200 12 0 0 0 0 I\nb.dat 16 200 12 0 0 0 0 II\n",  # two files
    "r 1 500\nr.dat 16 200 12 0 0 0 0 I\n",  # no length
    "r 2 500 5000\nr.dat 16 200 12 0 0 0 0 I\n",  # fewer signal lines than declared
    "\x00\xff junk\n",
])
def test_fast_parser_declines(text: str) -> None:
    assert parse_header_text(text) is None


def test_truncated_file_raises_eof(ptbxl_sample: Path, tmp_path: Path) -> None:
    hea = ptbxl_sample / "records100/00000/00001_lr.hea"
    fast = parse_header_text(hea.read_text())
    (tmp_path / fast.file_name).write_bytes((hea.parent / fast.file_name).read_bytes()[:100])
    with pytest.raises(EOFError, match="truncated"):
        read_digital(tmp_path, fast)
