"""``--device`` on train, project, evaluate, score and explain: parsed, documented, and an unavailable
device is one line naming the fix before any work."""

from __future__ import annotations

import pytest
import torch

from ecgproto.cli import build_parser, main

ARGV = {
    "train": ["--out", "o"],
    "project": ["model.pt", "--out", "o"],
    "evaluate": ["model.pt", "data", "--out", "o"],
    "score": ["model.pt", "input", "--out", "o"],
    "explain": ["model.pt", "rec", "--out", "o"],
}


@pytest.mark.parametrize("command", sorted(ARGV))
def test_each_command_takes_device(command, capsys):
    parser = build_parser()
    assert parser.parse_args([command, *ARGV[command], "--device", "cpu"]).device == "cpu"
    assert parser.parse_args([command, *ARGV[command]]).device is None  # default: the config's device
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    assert "--device" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["train", "evaluate", "score", "explain"])
def test_unavailable_device_is_one_line(command, checkpoint, tmp_path, capsys):
    argv = {"train": ["--out", str(tmp_path / "run"), "--data", str(tmp_path / "nowhere")],
            "evaluate": [str(checkpoint), str(tmp_path), "--out", str(tmp_path / "ev")],
            "score": [str(checkpoint), str(tmp_path), "--out", str(tmp_path / "sc")],
            "explain": [str(checkpoint), str(tmp_path / "rec"), "--out", str(tmp_path / "ex")]}[command]
    assert main([command, *argv, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ecgproto {command}: error: cuda requested but torch.cuda.is_available() is False")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "sc").exists()


def test_bad_device_name_is_one_line(capsys):
    assert main(["score", "model.pt", "input", "--out", "o", "--device", "gpu"]) == 1
    assert "device 'gpu': expected auto, cpu, cuda, cuda:N" in capsys.readouterr().err
