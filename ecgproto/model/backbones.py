"""Convolutional backbones and their exact time geometry (conv arithmetic).

All backbones take standardised signals ``x`` (B, 12, T) (leads I, II, III, aVR, aVL,
aVF, V1–V6) and return a latent map (B, D, L, T') with D channels, L lead rows and
T' latent time steps:

- ``ResNet1d`` (``resnet1d18``/``resnet1d34``): the Strodthoff/ProtoECGNet 1D ResNet,
  leads as input channels, L = 1.
- ``resnet18_2d``/``resnet34_2d`` (reference "2D" branches): the reference replaces
  torchvision's conv1 by Conv2d(1→64, kernel (12, 7), stride (1, 2), padding (0, 3)) on
  (B, 1, 12, T). That stem collapses the 12 leads to one row, after which every 3×3
  kernel only touches data with its middle row (reference notes §2.2). The network is
  therefore *exactly* a 1D ResNet with kernel 3 whose stem is Conv1d(12→64, 7, 2, 3);
  we implement it that way (same function, a third of the parameters and FLOPs of
  the padded 2D convs), with the reference's dropout before the last stage and no
  global pooling, so time is kept at stride 32. No pretrained weights are used.
- lead-aware option (``lead_aware=True``, 2D branches): one 1D ResNet trunk with shared
  weights runs on every lead separately ((B·12, 1, T) → (B·12, D, T')), a learned lead
  embedding is added, and the lead axis is kept: L = 12. There is no mixing across
  leads inside the backbone, so a latent cell (lead l, step t) depends on lead l only
  and a prototype window is localised exactly in leads × time. Costs ~12× the compute
  of the all-lead trunk.

Time geometry: every conv/pool on the main path is (kernel, stride, padding); latent
step t sees input samples ``[start + t·jump, start + t·jump + size)`` (clamped to
``[0, T)``), computed by ``TimeGeometry``. Residual shortcuts (1×1 convs) see a subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_LAYERS: dict[str, tuple[int, ...]] = {
    "resnet1d18": (2, 2, 2, 2),
    "resnet1d34": (3, 4, 6, 3),
    "resnet18_2d": (2, 2, 2, 2),
    "resnet34_2d": (3, 4, 6, 3),
}
N_LEADS = 12


@dataclass(frozen=True)
class TimeGeometry:
    """Receptive-field arithmetic of a stack of (kernel, stride, padding) layers.

    A latent step t covers input samples ``[start + t*jump, start + t*jump + size)``.
    """

    start: int
    jump: int
    size: int
    length: int  # number of latent time steps for the given input length
    n_samples: int

    @classmethod
    def from_layers(cls, layers: list[tuple[int, int, int]], n_samples: int) -> TimeGeometry:
        start, jump, size, length = 0, 1, 1, n_samples
        for kernel, stride, padding in layers:
            start -= padding * jump
            size += (kernel - 1) * jump
            jump *= stride
            length = (length + 2 * padding - kernel) // stride + 1
        if length < 1:
            raise ValueError(f"input of {n_samples} samples is too short for this backbone")
        return cls(start, jump, size, length, n_samples)

    def receptive_field(self, t0: int, t1: int) -> tuple[int, int]:
        """Input samples [start, end) seen by latent steps t0 … t1-1 (clamped to the record)."""
        lo = self.start + t0 * self.jump
        hi = self.start + (t1 - 1) * self.jump + self.size
        return max(lo, 0), min(hi, self.n_samples)

    def footprint(self, t0: int, t1: int) -> tuple[int, int]:
        """Input samples [start, end) of latent steps t0 … t1-1, each owning ``jump`` samples
        centred on its receptive-field centre (clamped); the span to highlight."""
        centre0 = self.start + t0 * self.jump + (self.size - 1) // 2
        centre1 = self.start + (t1 - 1) * self.jump + (self.size - 1) // 2
        lo = centre0 - self.jump // 2
        hi = centre1 + (self.jump + 1) // 2
        return max(lo, 0), min(hi, self.n_samples)


class BasicBlock1d(nn.Module):
    """Two kernel-3 Conv1d + BN with an identity or 1×1-conv shortcut."""

    # (conv, BatchNorm) attribute pairs that ``ecgproto.model.fold.fold_batchnorm`` fuses; the
    # shortcut's (Conv1d, BatchNorm1d) Sequential is folded as a Sequential
    conv_bn_pairs: tuple[tuple[str, str], ...] = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_channels: int, out_channels: int, stride: int, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride, 1, bias=False, padding_mode=padding_mode)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, 1, 1, bias=False, padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm1d(out_channels)
            )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))

    def conv_layers(self) -> list[tuple[int, int, int]]:
        return [(3, self.stride, 1), (3, 1, 1)]


class ResNet1d(nn.Module):
    """1D ResNet trunk: (B, C_in, T) → (B, 8·base_width, T'), T' ≈ T/32.

    Stem Conv1d(C_in→w, 7, stride 2, pad 3) + BN + ReLU + MaxPool(3, 2, 1); four stages of
    BasicBlock1d with widths w, 2w, 4w, 8w and strides 1, 2, 2, 2; optional element-wise
    dropout before the last stage (reference 2D branches). ``padding_mode`` of the time convolutions:
    "zeros" (reference) or "replicate".
    """

    def __init__(self, layers: tuple[int, ...], base_width: int, in_channels: int = N_LEADS,
                 dropout: float = 0.0, padding_mode: str = "zeros") -> None:
        super().__init__()
        w = base_width
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, w, 7, 2, 3, bias=False, padding_mode=padding_mode),
            nn.BatchNorm1d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, 2, 1),
        )
        stages = []
        in_ch = w
        for i, (n_blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            out_ch = w * 2**i
            blocks = [BasicBlock1d(in_ch, out_ch, stride, padding_mode)]
            blocks += [BasicBlock1d(out_ch, out_ch, 1, padding_mode) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = in_ch
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i == len(self.stages) - 1:
                x = self.dropout(x)
            x = stage(x)
        return x

    def conv_layers(self) -> list[tuple[int, int, int]]:
        """(kernel, stride, padding) of every layer on the main path, input to output."""
        layers = [(7, 2, 3), (3, 2, 1)]
        for stage in self.stages:
            for block in stage:
                layers += block.conv_layers()
        return layers


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Backbone(nn.Module):
    """Backbone wrapper returning a latent map (B, D, L, T') plus its geometry.

    L = 1 (leads mixed in the stem) or 12 (``lead_aware``: shared per-lead trunk).
    """

    def __init__(self, name: str, base_width: int, lead_aware: bool = False, dropout: float = 0.0,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        if name not in _LAYERS:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(_LAYERS)}")
        self.name = name
        self.lead_aware = lead_aware
        self.trunk = ResNet1d(_LAYERS[name], base_width, 1 if lead_aware else N_LEADS, dropout, padding_mode)
        self.out_channels = self.trunk.out_channels
        self.n_lead_rows = N_LEADS if lead_aware else 1
        if lead_aware:
            self.lead_embedding = nn.Parameter(torch.zeros(self.out_channels, N_LEADS, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 12, T) standardised → latent (B, D, L, T')."""
        if not self.lead_aware:
            return self.trunk(x).unsqueeze(2)
        b, n_leads, t = x.shape
        z = self.trunk(x.reshape(b * n_leads, 1, t))  # (B·12, D, T')
        z = z.reshape(b, n_leads, z.shape[1], z.shape[2]).permute(0, 2, 1, 3)
        return z + self.lead_embedding

    def time_geometry(self, n_samples: int) -> TimeGeometry:
        """Exact receptive-field arithmetic of the latent time axis for inputs of ``n_samples``."""
        return TimeGeometry.from_layers(self.trunk.conv_layers(), n_samples)
