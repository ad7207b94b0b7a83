"""What a new user sees for the common mistakes: one line naming the file and what to give instead."""

from __future__ import annotations

import argparse
import shutil

import pandas as pd
import pytest
import torch

from ecgproto.cli import main
from ecgproto.errors import InputNotFoundError, UserError
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.score.sources import list_records


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_run_folder_as_checkpoint_suggests_its_model_pt(checkpoint, tmp_path):
    run = tmp_path / "run" / "train"
    run.mkdir(parents=True)
    shutil.copy(checkpoint, run / "model.pt")
    with pytest.raises(UserError, match=r"is a folder, not a checkpoint file; did you mean .*run/train/model\.pt"):
        load_checkpoint(tmp_path / "run")  # the demo layout: RUN/train/model.pt
    with pytest.raises(UserError, match=r"did you mean .*train/model\.pt\?"):
        load_checkpoint(run)
    with pytest.raises(UserError, match=r"give the \.pt file, e\.g\. .*empty/model\.pt"):
        (tmp_path / "empty").mkdir()
        load_checkpoint(tmp_path / "empty")


def test_a_missing_checkpoint_is_input_not_found(tmp_path):
    with pytest.raises(InputNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("content", ["text", "pickle"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    if content == "text":
        bad.write_text("not a checkpoint\n")
    else:  # a pickle holding a Python object: refused unloaded by weights_only
        torch.save({"args": argparse.Namespace(a=1)}, bad)
    assert main(["score", str(bad), str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = _one_line(capsys)
    assert "bad.pt" in err and "not" in err and "ecgproto checkpoint" in err
    assert "weights_only" not in err and "WeightsUnpickler" not in err


def test_score_accepts_a_single_header_file(checkpoint, ptbxl_small, tmp_path, capsys):
    hea = sorted((ptbxl_small / "records100").rglob("*.hea"))[0]
    for given in (hea, hea.with_suffix(".dat"), hea.with_suffix("")):
        records = list_records(given, 100)
        assert records.kind == "wfdb" and records.frame["record_id"].tolist() == [hea.stem]
        assert records.frame["path"].tolist() == [str(hea.with_suffix("").resolve())]
    out = tmp_path / "one"
    assert main(["score", str(checkpoint), str(hea), "--out", str(out), "--workers", "0"]) == 0
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["record_id"].tolist() == [hea.stem] and scores["status"].tolist() == ["ok"]


def test_a_header_alone_is_not_taken_for_a_folder(tmp_path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        list_records(tmp_path / "missing.hea", 100)
