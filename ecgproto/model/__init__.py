"""ecgproto.model: prototype branches, fusion head, losses, checkpoints and batched inference.

The names below load their module on first use (PEP 562), so importing a light submodule such
as ``ecgproto.model.config`` (the config schema) does not import torch.
"""

from __future__ import annotations

from ecgproto.lazy import lazy_exports

_EXPORTS = {
    "BlackBoxECGNet": "blackbox",
    "build_network": "blackbox",
    "BranchOutput": "branch",
    "PrototypeBranch": "branch",
    "BranchConfig": "config",
    "FusionConfig": "config",
    "LossConfig": "config",
    "fold_batchnorm": "fold",
    "ModelConfig": "config",
    "ModelOutput": "network",
    "ProtoECGNet": "network",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
