"""Synthetic PTB-XL- and MIMIC-IV-shaped ECG archives from a vectorised parametric simulator.

Public entry points: :func:`write_synthetic_archive` (files on disk) and
:func:`build_ptbxl` (in-memory table + plan; render signals with :func:`simulate`); the settings
are :class:`ecgproto.synth.config.SynthConfig`. The names load their module on first use (PEP 562),
so importing the config schema does not import the simulator, pandas or wfdb.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"build_ptbxl": "archive", "write_synthetic_archive": "archive", "simulate": "simulator"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ecgproto.synth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ecgproto.synth.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
