import io
import sys

import pytest

from ecgproto.progress import progress, progress_enabled


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("setting, tty, shown", [
    (None, True, True), (None, False, False),  # default: a terminal gets bars, a log file does not
    ("1", True, False), ("1", False, False),  # off everywhere
    ("0", False, True),  # forced on for a non-terminal
])
def test_bars_only_where_someone_watches(monkeypatch, setting, tty, shown):
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    if setting is None:
        monkeypatch.delenv("ECGPROTO_NO_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("ECGPROTO_NO_PROGRESS", setting)
    assert progress_enabled() is shown
    assert list(progress(range(3), desc="loop")) == [0, 1, 2]
    assert ("loop" in stream.getvalue()) is shown
