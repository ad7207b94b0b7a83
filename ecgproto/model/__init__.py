"""ecgproto.model: prototype branches, fusion head, losses and batched inference."""

from ecgproto.model.blackbox import BlackBoxECGNet, build_network
from ecgproto.model.branch import BranchOutput, PrototypeBranch
from ecgproto.model.config import BranchConfig, FusionConfig, LossConfig, ModelConfig
from ecgproto.model.network import ModelOutput, ProtoECGNet

__all__ = [
    "BlackBoxECGNet",
    "BranchConfig",
    "BranchOutput",
    "FusionConfig",
    "LossConfig",
    "ModelConfig",
    "ModelOutput",
    "PrototypeBranch",
    "ProtoECGNet",
    "build_network",
]
