import pytest

from ecgproto.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_unimplemented_commands_fail_clearly(capsys):
    missing = [n for n, (_, done) in COMMANDS.items() if not done]
    for name in missing:
        assert main([name]) == 2
        assert "not implemented" in capsys.readouterr().err
