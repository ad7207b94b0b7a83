"""Inconsistent checkpoints are refused at load; user errors are one line without a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from ecgproto import cli
from ecgproto.model.checkpoint import load_checkpoint

from .test_worker_crash import _folder


def _edited(checkpoint, tmp_path, edit, name="edited.pt"):
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    edit(payload["meta"])
    torch.save(payload, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(labels=m["labels"][:5]), r"lists 5 labels but the model's head has 71"),
    (lambda m: m.update(labels=m["labels"][::-1]), r"first difference at position 0"),
    (lambda m: m.update(thresholds=m["thresholds"][:70]), r"71 finite numbers .* got 70"),
    (lambda m: m["thresholds"].__setitem__(3, float("nan")), r"71 finite numbers"),
    (lambda m: m.update(sampling_rate=0), r"sampling_rate 0 is not an integer in 50-10000"),
    (lambda m: m.update(n_samples=-1), r"n_samples -1"),
    (lambda m: m.update(highpass={"cutoff_hz": 80.0, "order": 1}), r"high-pass"),
    (lambda m: m.update(ood={"method": "feature_mahalanobis", "version": 2, "branches": ["rhythm"]}),
     r"meta\['ood'\] .* malformed: it is for branches \['rhythm'\]"),
    (lambda m: m.update(ood={"method": "something_else"}), r"meta\['ood'\] .* malformed: unknown method"),
    (lambda m: m.pop("n_samples"), r"lacks \['n_samples'\]"),
])
def test_inconsistent_checkpoint_is_refused(checkpoint, tmp_path, edit, message):
    path = _edited(checkpoint, tmp_path, edit)
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_model_config_needing_a_huge_allocation_is_refused(checkpoint, tmp_path):
    """A config asking for a 34 GB layer: one ValueError, in a process capped at 4 GB of address space."""
    path = _edited(checkpoint, tmp_path, lambda m: m["config"]["model"]["branches"]["rhythm"].update(base_width=10**8))
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "from ecgproto.model.checkpoint import load_checkpoint\n"
            "try:\n    load_checkpoint(sys.argv[1])\nexcept ValueError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "cannot build the model" in done.stdout


def _run_cli(capsys, *argv):
    """cli.main in this process: (exit code, stderr)."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--workers", "-1"], "--workers must be between 0"),
    (["--workers", "100000"], "--workers must be between 0"),
    (["--threads", "-3"], "--threads must be between 0"),
])
def test_absurd_options_are_one_line_errors(checkpoint, ptbxl_sample, tmp_path, capsys, extra, message):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a"])
    code, err = _run_cli(capsys, "score", checkpoint, data, "--out", tmp_path / "out", *extra)
    assert code == 1 and message in err and err.strip().count("\n") == 0, err


def test_out_pointing_at_a_file_and_bad_checkpoint_are_one_line_errors(checkpoint, ptbxl_sample, tmp_path, capsys):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a"])
    (tmp_path / "file").write_text("x")
    code, err = _run_cli(capsys, "score", checkpoint, data, "--out", tmp_path / "file")
    assert code == 1 and "is an existing file" in err and err.strip().count("\n") == 0
    bad = _edited(checkpoint, tmp_path, lambda m: m.update(sampling_rate=0))
    for command in (["score", bad, data, "--out", tmp_path / "o2"], ["explain", bad, data / "a", "--out", tmp_path / "o3"]):
        code, err = _run_cli(capsys, *command)
        assert code == 1 and "sampling_rate 0" in err and err.strip().count("\n") == 0, err


def test_disk_full_is_one_line_leaves_no_tmp_and_keeps_committed_chunks(checkpoint, ptbxl_sample, tmp_path,
                                                                         monkeypatch, capsys):
    data = _folder(ptbxl_sample, tmp_path / "data", ["a", "b", "c"])
    out = tmp_path / "out"
    real = pq.write_table
    calls = {"n": 0}

    def full_disk(table, where, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second chunk's parquet part
            real(table.slice(0, 1), where)  # half a file written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_disk)
    argv = ["score", str(checkpoint), str(data), "--out", str(out), "--workers", "0", "--chunk-size", "1"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "disk is full" in err and "--resume" in err and err.strip().count("\n") == 0
    assert not list(out.rglob("*.tmp"))
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["scores-0000000.csv", "scores-0000000.parquet"]
    monkeypatch.setattr(pq, "write_table", real)
    assert cli.main(argv + ["--resume"]) == 0
    assert pq.read_table(out / "scores.parquet").num_rows == 3


def test_a_refused_pickle_is_one_line(monkeypatch, capsys):
    import pickle

    from ecgproto.commands import score

    def refuse(args):
        raise pickle.UnpicklingError("Weights only load failed. This file can still be loaded...\nmore lines")

    monkeypatch.setattr(score, "run", refuse)
    assert cli.main(["score", "x.pt", "data", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "refused to load" in err and err.strip().count("\n") == 0
