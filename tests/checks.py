"""Assertions shared by command tests."""

from __future__ import annotations

from pathlib import Path

from ecgproto.config import Config, load_config


def resolved_config(folder: Path) -> Config:
    """The ``config.resolved.yaml`` in ``folder`` reloads to a config with the hash written in its header."""
    path = Path(folder) / "config.resolved.yaml"
    header = path.read_text().splitlines()[0]
    assert header.startswith("# config sha256: "), header
    cfg = load_config(path)
    assert cfg.hash == header.split(": ", 1)[1], "config.resolved.yaml does not reproduce its own hash"
    return cfg
