"""ecgproto.model: prototype branches, fusion head, losses, checkpoints and batched inference.

The names below load their module on first use (PEP 562), so importing a light submodule such
as ``ecgproto.model.config`` (the config schema) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BlackBoxECGNet": "blackbox",
    "build_network": "blackbox",
    "BranchOutput": "branch",
    "PrototypeBranch": "branch",
    "BranchConfig": "config",
    "FusionConfig": "config",
    "LossConfig": "config",
    "ModelConfig": "config",
    "ModelOutput": "network",
    "ProtoECGNet": "network",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ecgproto.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ecgproto.model.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
