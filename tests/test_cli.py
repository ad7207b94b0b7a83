import subprocess
import sys
import types

import pytest

from ecgproto import cli
from ecgproto.cli import COMMANDS, main
from ecgproto.errors import UserError


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, help_text in COMMANDS.items():
        assert name in out and help_text[:30] in " ".join(out.split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--set" in out and "not implemented" not in out


def test_help_imports_no_heavy_library():
    """``ecgproto --help`` answers without torch, scipy or pandas (they load inside each command's run)."""
    code = ("import sys; from ecgproto.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'scipy', 'pandas', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"build_parser() imported {out}"


def _fake_command(monkeypatch, exc: BaseException) -> None:
    def run(args):
        raise exc
    monkeypatch.setitem(sys.modules, "ecgproto.commands.synth",
                        types.SimpleNamespace(add_arguments=lambda p: None, run=run))


def test_user_error_is_one_line(monkeypatch, capsys):
    _fake_command(monkeypatch, UserError("records.csv: no 'record' column; add one"))
    assert main(["synth"]) == 1
    err = capsys.readouterr().err
    assert err == "ecgproto synth: error: records.csv: no 'record' column; add one\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A plain ValueError (a bug, not a user error) is not turned into a one-line message."""
    _fake_command(monkeypatch, ValueError("operands could not be broadcast together"))
    with pytest.raises(ValueError, match="broadcast"):
        main(["synth"])


def test_os_error_is_one_line_with_advice(monkeypatch, capsys):
    import errno

    _fake_command(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/out/x.parquet"))
    assert main(["synth"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full" in err and "/out/x.parquet" in err


def test_set_typo_names_the_key_and_suggests(tmp_path, capsys):
    rc = main(["synth", "--config", "configs/demo.yaml", "--set", "synth.n_record=10", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "--set synth.n_record=10" in err and "did you mean 'n_records'" in err
    assert "demo.yaml" not in err  # the YAML file is fine; the override is not
    assert not (tmp_path / "s").exists()


def test_yaml_typo_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batchsize: 4\n")
    assert main(["synth", "--config", str(bad), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "did you mean 'batch_size'" in err


def test_commands_table_matches_the_command_modules():
    from pathlib import Path

    folder = Path(cli.__file__).parent / "commands"
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    assert set(COMMANDS) == modules
