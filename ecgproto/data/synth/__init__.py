"""Synthetic PTB-XL- and MIMIC-IV-shaped ECG archives from a vectorised parametric simulator.

Public entry points: :func:`write_synthetic_archive` (files on disk) and
:func:`build_ptbxl` (in-memory table + plan; render signals with :func:`simulate`).
"""

from ecgproto.data.synth.archive import build_ptbxl, write_synthetic_archive
from ecgproto.data.synth.simulator import simulate

__all__ = ["build_ptbxl", "simulate", "write_synthetic_archive"]
