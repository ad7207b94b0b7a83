"""Forward passes through one branch of the model for training (output, latent, a DDP-wrappable runner) and
``eval_mode``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def branch_forward(model: torch.nn.Module, group: str, x: torch.Tensor):
    """``BranchOutput`` of branch ``group`` for raw (high-passed) signals ``x`` (B, 12, T) mV."""
    return model.forward_branch(group, x)


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Temporarily put every submodule in eval mode, restoring each one's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def branch_latent(model: torch.nn.Module, group: str, x: torch.Tensor) -> torch.Tensor:
    """Add-on latent (B, D, L, T') of branch ``group`` without the prototype layer (warm-up)."""
    return model.branches[group].encode(model.standardize(x))


class BranchRunner(torch.nn.Module):
    """``model.forward_branch(group, ·)`` (or only the latent, ``latent_only``) as a module that
    DistributedDataParallel can wrap. Only parameters with ``requires_grad`` are synchronised."""

    def __init__(self, model: torch.nn.Module, group: str, latent_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.group = group
        self.latent_only = latent_only

    def forward(self, x: torch.Tensor):
        if self.latent_only:
            return branch_latent(self.model, self.group, x)
        return self.model.forward_branch(self.group, x)
