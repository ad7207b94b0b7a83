"""ImageNet initialisation of the "2D" branches from a local torchvision ResNet state dict.

The reference builds its 2D branches from torchvision ``resnet18(weights=DEFAULT)``
(IMAGENET1K_V1) and replaces conv1 by a random Conv2d(1→64, (12, 7), stride (1, 2)); its
attempt to average the RGB filters into the new conv1 is a no-op, so conv1 is random while bn1
and layers 1–4 keep their ImageNet weights (protoecgnet_reference.md §2.2). After that stem the
feature map has height 1, so every 3×3 kernel touches data with its middle row only and a
1×1 shortcut is a 1×1 conv: ecgproto's 1D trunk (``ecgproto.model.backbones``) computes the
same function with ``conv.weight[:, :, 1, :]`` of each 3×3 kernel. ``load_imagenet_trunk``
copies exactly those tensors (conv1 stays random, as in the reference).

ecgproto never downloads weights: give the path of a file you fetched yourself, e.g.
``resnet18-f37072fd.pth`` (torchvision's IMAGENET1K_V1 for resnet18).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ecgproto.errors import InputNotFoundError, UserError
from ecgproto.model.backbones import ResNet1d
from ecgproto.errors import InputNotFoundError, UserError

_NO_DOWNLOAD = ("ecgproto does not download ImageNet weights (no network access is assumed); fetch the torchvision "
                "file yourself (resnet18: resnet18-f37072fd.pth, IMAGENET1K_V1) and set "
                "model.branches.<group>.pretrained to its path")


def _bn_pairs(ours: str, theirs: str) -> list[tuple[str, str]]:
    return [(f"{ours}.{k}", f"{theirs}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]


def trunk_key_map(trunk: ResNet1d) -> list[tuple[str, str, bool]]:
    """(ecgproto key, torchvision key, take the middle kernel row) for bn1 and layers 1–4."""
    pairs: list[tuple[str, str, bool]] = [(a, b, False) for a, b in _bn_pairs("stem.1", "bn1")]
    for i, stage in enumerate(trunk.stages):
        for b, block in enumerate(stage):
            ours, theirs = f"stages.{i}.{b}", f"layer{i + 1}.{b}"
            pairs += [(f"{ours}.conv1.weight", f"{theirs}.conv1.weight", True),
                      (f"{ours}.conv2.weight", f"{theirs}.conv2.weight", True)]
            pairs += [(a, c, False) for a, c in _bn_pairs(f"{ours}.bn1", f"{theirs}.bn1")]
            pairs += [(a, c, False) for a, c in _bn_pairs(f"{ours}.bn2", f"{theirs}.bn2")]
            if not isinstance(block.shortcut, nn.Identity):
                pairs.append((f"{ours}.shortcut.0.weight", f"{theirs}.downsample.0.weight", True))
                pairs += [(a, c, False) for a, c in _bn_pairs(f"{ours}.shortcut.1", f"{theirs}.downsample.1")]
    return pairs


@torch.no_grad()
def load_imagenet_trunk(trunk: ResNet1d, state: dict[str, torch.Tensor], source: str = "state dict") -> int:
    """Copy torchvision ResNet weights (bn1, layers 1–4) into ``trunk``; returns the tensors copied.

    A 3×3 kernel (O, I, 3, 3) gives its middle row (O, I, 3); a 1×1 kernel (O, I, 1, 1) gives
    (O, I, 1). Raises UserError naming ``source`` and the first missing or mis-shaped key.
    """
    own = trunk.state_dict()
    updates = {}
    for ours, theirs, middle in trunk_key_map(trunk):
        if theirs not in state:
            raise UserError(f"{source}: key {theirs!r} missing; expected a torchvision ResNet state dict")
        value = state[theirs]
        if middle:
            value = value[:, :, value.shape[2] // 2, :]
        if tuple(value.shape) != tuple(own[ours].shape):
            raise UserError(f"{source}: {theirs!r} has shape {tuple(state[theirs].shape)}, which does not fit "
                             f"{ours!r} {tuple(own[ours].shape)} (pretrained weights need base_width 64 and the "
                             "matching depth, resnet18_2d or resnet34_2d)")
        updates[ours] = value.to(own[ours].dtype)
    trunk.load_state_dict(updates, strict=False)
    return len(updates)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A torchvision state dict from ``path`` (``"imagenet"`` raises NotImplementedError: no downloads)."""
    if path.strip().lower() in ("imagenet", "default", "imagenet1k_v1"):
        raise NotImplementedError(_NO_DOWNLOAD)
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputNotFoundError(f"pretrained weights {file} not found; {_NO_DOWNLOAD}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{file}: not a state dict")
    return state


def apply_pretrained(model: nn.Module) -> dict[str, str]:
    """Initialise every branch whose config sets ``pretrained`` from that file; {group: path} done."""
    done = {}
    for group, branch in model.branches.items():
        path = branch.cfg.pretrained
        if path:
            load_imagenet_trunk(branch.backbone.trunk, read_state_dict(path), path)
            done[group] = path
    return done
