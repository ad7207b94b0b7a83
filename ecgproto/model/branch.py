"""One prototype branch: backbone → add-on → prototype layer → last layer (no bias)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ecgproto.model.backbones import N_LEADS, Backbone, TimeGeometry
from ecgproto.model.config import BranchConfig
from ecgproto.model.prototypes import (
    WindowGeometry,
    latent_windows,
    pool_windows,
    scaled_cosine,
)


@dataclass
class BranchOutput:
    """Outputs of one branch for a batch of B records.

    logits (B, C_g) from the branch's own last layer; similarities (B, P_g) pooled with the
    branch's rule; window_similarities (B, P_g, W); latent (B, D, L, T') add-on output
    (the map ``latent_windows`` cuts into the vectors prototypes are compared with).
    """

    logits: torch.Tensor
    similarities: torch.Tensor
    window_similarities: torch.Tensor
    latent: torch.Tensor


class AddOn(nn.Module):
    """1×1 conv → ReLU → 1×1 conv → activation, per latent cell (reference add-on layers)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str) -> None:
        super().__init__()
        acts = {"sigmoid": nn.Sigmoid(), "relu": nn.ReLU(), "none": nn.Identity()}
        if activation not in acts:
            raise ValueError(f"unknown add-on activation {activation!r}; expected one of {list(acts)}")
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 1),
            acts[activation],
        )
        for m in self.layers:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class PrototypeBranch(nn.Module):
    """A ProtoPNet-style branch over standardised 12-lead signals (B, 12, n_samples).

    ``prototype_vectors`` (P, D_window) holds K = prototypes_per_class prototypes per class,
    class-major (rows c·K … c·K+K−1 belong to class c); ``prototype_class_identity``
    (P, C) is the matching one-hot buffer; ``last_layer`` Linear(P, C, bias=False) starts
    at +1 (own class) / ``last_layer_negative`` (other classes).
    """

    def __init__(self, group: str, cfg: BranchConfig, class_codes: tuple[str, ...], n_samples: int,
                 fs: int) -> None:
        super().__init__()
        cfg = cfg.resolved(group)
        self.group = group
        self.cfg = cfg
        self.class_codes = tuple(class_codes)
        self.n_samples = int(n_samples)
        self.fs = int(fs)
        self.backbone = Backbone(cfg.backbone, cfg.base_width, cfg.lead_aware, cfg.dropout, cfg.padding)
        channels = self.backbone.out_channels
        self.proto_dim = cfg.proto_dim or channels
        self.add_on = AddOn(channels, self.proto_dim, cfg.add_on_activation)
        self.time_geometry: TimeGeometry = self.backbone.time_geometry(self.n_samples)

        if cfg.kind == "1d":
            self.window_geometry = WindowGeometry(1, 1, 1, 1)
        else:
            rows = self.backbone.n_lead_rows
            lead_len = (cfg.proto_lead_len or rows) if cfg.lead_aware else 1
            steps = self.time_geometry.length
            self.window_geometry = WindowGeometry(rows, steps, lead_len, cfg.proto_time_len or steps)
        geo = self.window_geometry
        self.window_dim = self.proto_dim * geo.lead_len * geo.time_len

        n_classes = len(self.class_codes)
        k = cfg.prototypes_per_class
        n_protos = k * n_classes
        self.prototype_vectors = nn.Parameter(torch.randn(n_protos, self.window_dim))
        classes = torch.arange(n_classes).repeat_interleave(k)
        self.register_buffer("prototype_classes", classes, persistent=False)
        self.register_buffer("prototype_class_identity", nn.functional.one_hot(classes, n_classes).float())
        self.last_layer = nn.Linear(n_protos, n_classes, bias=False)
        self.reset_last_layer()

    @property
    def n_prototypes(self) -> int:
        return self.prototype_vectors.shape[0]

    @property
    def n_features(self) -> int:
        """Width of what the branch gives the fusion head: its pooled similarities."""
        return self.n_prototypes

    @property
    def n_classes(self) -> int:
        return len(self.class_codes)

    @property
    def n_windows(self) -> int:
        return self.window_geometry.n_windows

    @torch.no_grad()
    def constrain_last_layer_signs(self) -> None:
        """Clamp the last layer to the sign rule of the ``sign_constrained`` fusion head: a
        prototype's weight is >= 0 for its own class and <= 0 for every other class."""
        own = self.prototype_class_identity.T > 0  # (C, P)
        w = self.last_layer.weight
        w.copy_(torch.where(own, w.clamp(min=0), w.clamp(max=0)))

    def reset_last_layer(self) -> None:
        """Set the last layer to +1 for a prototype's own class, ``last_layer_negative`` elsewhere."""
        identity = self.prototype_class_identity.T  # (C, P)
        with torch.no_grad():
            self.last_layer.weight.copy_(identity + self.cfg.last_layer_negative * (1 - identity))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised x (B, 12, T) → add-on latent (B, D, L, T') (L = T' = 1 for kind '1d')."""
        z = self.backbone(x)
        if self.cfg.kind == "1d":
            z = z.mean(dim=(2, 3), keepdim=True)
        return self.add_on(z)

    def latent_windows(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, D, L, T') → (B, W, D_window): the vectors prototypes are compared with and projected onto."""
        return latent_windows(latent, self.window_geometry)

    def window_similarities(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (B, W, D_window) → scaled cosine similarities (B, P, W)."""
        return scaled_cosine(windows, self.prototype_vectors, self.cfg.similarity_scale)

    def pool(self, window_similarities: torch.Tensor) -> torch.Tensor:
        """(B, P, W) → (B, P) with the branch's pooling rule (the one used everywhere)."""
        return pool_windows(window_similarities, self.cfg.pooling)

    def forward(self, x: torch.Tensor) -> BranchOutput:
        """Standardised x (B, 12, n_samples) → BranchOutput."""
        latent = self.encode(x)
        window_sims = self.window_similarities(self.latent_windows(latent))
        sims = self.pool(window_sims)
        return BranchOutput(self.last_layer(sims), sims, window_sims, latent)

    # ---- window index → input location -------------------------------------------------
    def _time_steps(self, w: int) -> tuple[int, int]:
        if self.cfg.kind == "1d":
            return 0, self.time_geometry.length
        _, t0 = self.window_geometry.offsets(w)
        return t0, t0 + self.window_geometry.time_len

    def window_samples(self, w: int) -> tuple[int, int]:
        """Input samples [start, end) to highlight for window w: the window's latent steps,
        each owning ``jump`` (=32) samples centred on its receptive field; whole record for kind '1d'."""
        if self.cfg.kind == "1d":
            self.window_geometry.offsets(w)
            return 0, self.n_samples
        return self.time_geometry.footprint(*self._time_steps(w))

    def receptive_field(self, w: int) -> tuple[int, int]:
        """Input samples [start, end) that can influence window w (exact conv arithmetic, clamped)."""
        if self.cfg.kind == "1d":
            self.window_geometry.offsets(w)
            return 0, self.n_samples
        return self.time_geometry.receptive_field(*self._time_steps(w))

    def window_leads(self, w: int) -> tuple[int, int]:
        """Canonical lead indices [start, end) window w depends on (all 12 unless ``lead_aware``)."""
        if not (self.cfg.kind == "2d" and self.cfg.lead_aware):
            self.window_geometry.offsets(w)
            return 0, N_LEADS
        l0, _ = self.window_geometry.offsets(w)
        return l0, l0 + self.window_geometry.lead_len
