"""Prototype windows, scaled cosine similarity and the single pooling rule.

A latent map (B, D, L, T') is cut into windows of ``lead_len`` lead rows × ``time_len``
time steps (stride 1 in both), flattened in (D, lead, time) order to vectors of
D_window = D·lead_len·time_len. Window index w enumerates lead offset first, then time
offset: w = lead_offset · W_time + time_offset. A global prototype is the special case
of one window covering the whole map (W = 1).

Similarity of prototype j to window w (reference notes §3.2, with the scale a config value):

    s[j, w] = scale · <z_w, p_j> / (‖z_w‖_ε ‖p_j‖_ε),   ‖a‖_ε = sqrt(Σ a² + 1e-4)

Pooling over windows (``pool_windows``) is the one rule used by training, projection and
explanation: "max" (default; the best window is the argmax) or "mean" (reference parity;
the window reported for explanation is still the argmax, which then is only indicative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NORM_EPS = 1e-4


@dataclass(frozen=True)
class WindowGeometry:
    """Shape of the window grid over a latent map with ``n_lead_rows`` × ``n_steps`` cells."""

    n_lead_rows: int
    n_steps: int
    lead_len: int
    time_len: int

    def __post_init__(self) -> None:
        if not 1 <= self.time_len <= self.n_steps:
            raise ValueError(
                f"prototype time length {self.time_len} must be between 1 and the latent length "
                f"{self.n_steps}; lower proto_time_len or use longer records"
            )
        if not 1 <= self.lead_len <= self.n_lead_rows:
            raise ValueError(f"prototype lead length {self.lead_len} must be between 1 and {self.n_lead_rows}")

    @property
    def n_time_windows(self) -> int:
        return self.n_steps - self.time_len + 1

    @property
    def n_lead_windows(self) -> int:
        return self.n_lead_rows - self.lead_len + 1

    @property
    def n_windows(self) -> int:
        return self.n_lead_windows * self.n_time_windows

    def offsets(self, w: int) -> tuple[int, int]:
        """Window index → (lead-row offset, latent time offset)."""
        if not 0 <= w < self.n_windows:
            raise IndexError(f"window {w} out of range [0, {self.n_windows})")
        return divmod(int(w), self.n_time_windows)


def latent_windows(latent: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
    """latent (B, D, L, T') → windows (B, W, D·lead_len·time_len), flattened (D, lead, time)."""
    cols = F.unfold(latent, kernel_size=(geometry.lead_len, geometry.time_len))  # (B, D·kl·kt, W)
    return cols.transpose(1, 2)


def _eps_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum(dim=-1) + NORM_EPS)


def scaled_cosine(windows: torch.Tensor, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """windows (B, W, D_w), prototypes (P, D_w) → window similarities (B, P, W)."""
    win = windows / _eps_norm(windows).unsqueeze(-1)
    pro = prototypes * (scale / _eps_norm(prototypes)).unsqueeze(-1)
    return torch.einsum("pd,bwd->bpw", pro, win)


def pool_windows(window_similarities: torch.Tensor, rule: str) -> torch.Tensor:
    """(B, P, W) → (B, P) with the branch's pooling rule ("max" or "mean")."""
    if rule == "max":
        return window_similarities.max(dim=-1).values
    if rule == "mean":
        return window_similarities.mean(dim=-1)
    raise ValueError(f"unknown pooling rule {rule!r}; expected 'max' or 'mean'")


def best_window(window_similarities: torch.Tensor) -> torch.Tensor:
    """(B, P, W) → (B, P) int64 index of the most similar window (used for projection/explanation)."""
    return window_similarities.argmax(dim=-1)
