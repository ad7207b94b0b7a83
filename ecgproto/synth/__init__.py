"""Synthetic PTB-XL- and MIMIC-IV-shaped ECG archives from a vectorised parametric simulator.

Public entry points: :func:`write_synthetic_archive` (files on disk) and
:func:`build_ptbxl` (in-memory table + plan; render signals with :func:`simulate`); the settings
are :class:`ecgproto.synth.config.SynthConfig`. The names load their module on first use (PEP 562),
so importing the config schema does not import the simulator, pandas or wfdb.
"""

from __future__ import annotations

from ecgproto.lazy import lazy_exports

_EXPORTS = {"build_ptbxl": "archive", "write_synthetic_archive": "archive", "simulate": "simulator"}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
