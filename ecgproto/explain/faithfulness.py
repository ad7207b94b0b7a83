"""Faithfulness of explanations by occlusion: does removing the shown window change the prediction?

A window is occluded by setting the (high-passed, baseline-free) signal to 0 mV over its samples
on every lead. The drop of a label's logit when the top prototype's window is occluded is
compared with the drop for a randomly placed window of the same length and for the window a
post-hoc attribution (integrated gradients of the label's logit, zero baseline) ranks first.
"""

from __future__ import annotations

import numpy as np
import torch


def occlude(signal: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Copy of a (12, T) signal with every [start, end) span set to 0."""
    out = np.array(signal, dtype=np.float32, copy=True)
    for a, b in spans:
        out[:, max(int(a), 0):max(int(b), 0)] = 0.0
    return out


@torch.no_grad()
def label_logits(model: torch.nn.Module, signals: np.ndarray, label: int, batch_size: int = 64) -> np.ndarray:
    """Fused logit of ``label`` for signals (N, 12, T) → (N,)."""
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(signals[i:i + batch_size], dtype=np.float32))).logits[:, label]
           for i in range(0, len(signals), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def integrated_gradients(model: torch.nn.Module, signal: np.ndarray, label: int, steps: int = 16) -> np.ndarray:
    """Integrated gradients (12, T) of the fused logit of ``label`` from a zero baseline (midpoint rule).

    Sums to ≈ logit(x) − logit(0) (completeness); ``steps`` points are evaluated in one batch.
    """
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))[None]
    alphas = ((torch.arange(steps, dtype=torch.float32) + 0.5) / steps).view(-1, 1, 1)
    path = (alphas * x).requires_grad_(True)
    with torch.enable_grad():
        logits = model(path).logits[:, label]
        (grad,) = torch.autograd.grad(logits.sum(), path)
    return (x[0] * grad.mean(dim=0)).detach().numpy()


def top_window(attribution: np.ndarray, length: int) -> tuple[int, int]:
    """[start, end) of ``length`` samples with the largest summed |attribution| over all leads."""
    mass = np.abs(np.asarray(attribution, dtype=np.float64)).sum(axis=0)
    length = max(1, min(int(length), len(mass)))
    start = int(np.argmax(np.convolve(mass, np.ones(length), mode="valid")))
    return start, start + length


def random_windows(rng: np.random.Generator, n_samples: int, length: int, n: int) -> list[tuple[int, int]]:
    """``n`` windows of ``length`` samples placed uniformly inside the record."""
    starts = rng.integers(0, max(n_samples - int(length), 0) + 1, size=n)
    return [(int(s), int(s) + int(length)) for s in starts]


__all__ = ["integrated_gradients", "label_logits", "occlude", "random_windows", "top_window"]
