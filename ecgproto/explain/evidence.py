"""Where inside a receptive field a prototype match comes from (gradient × input).

A morphology prototype's window is a few latent steps, but its receptive field spans several
seconds, and the finding that made the match can sit anywhere in it. The evidence window is
the stretch of the receptive field, as long as the prototype window, holding the most
|gradient × input| of the window's similarity to the prototype (summed over the prototype's
leads): a post-hoc pointer to the beats the match rests on, drawn inside the receptive field.
"""

from __future__ import annotations

import numpy as np
import torch


def attributions(model: torch.nn.Module, signal: np.ndarray, group: str, matches: list[tuple[int, int]]) -> list[np.ndarray]:
    """|∂ similarity / ∂ x · x| (12, T) for each (prototype local index, window) of one (12, T) mV signal.

    One forward pass of branch ``group``, one backward pass per match.
    """
    x = torch.tensor(np.ascontiguousarray(signal, dtype=np.float32)[None], requires_grad=True,
                     device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.enable_grad():
            sims = model.forward_branch(group, x).window_similarities[0]
            for i, (local_index, window) in enumerate(matches):
                (grad,) = torch.autograd.grad(sims[int(local_index), int(window)], x, retain_graph=i + 1 < len(matches))
                out.append((grad[0] * x[0]).abs().detach().cpu().numpy())
    finally:
        model.train(was_training)
    return out


def evidence_window(attr: np.ndarray, field: tuple[int, int], length: int, leads: tuple[int, int] = (0, 12)) -> tuple[int, int]:
    """[start, end) of ``length`` samples inside ``field`` with the largest attribution over ``leads``."""
    a, b = int(field[0]), int(field[1])
    length = max(1, min(int(length), b - a))
    mass = np.asarray(attr, dtype=np.float64)[leads[0]:leads[1], a:b].sum(axis=0)
    sums = np.convolve(mass, np.ones(length), mode="valid")
    start = a + int(np.argmax(sums))
    return start, start + length


def record_evidence(model: torch.nn.Module, signal: np.ndarray, group: str,
                    matches: list[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """Evidence windows (samples) of (prototype local index, window) matches in one record of branch
    ``group``; None for whole-record windows (1D branches, global prototypes)."""
    branch = model.branches[group]
    if branch.cfg.kind == "1d":
        return [None] * len(matches)
    local = [(j, w) for j, w in matches if branch.window_samples(w) != (0, branch.n_samples)]
    attrs = iter(attributions(model, signal, group, local)) if local else iter(())
    out: list[tuple[int, int] | None] = []
    for _, w in matches:
        ws, we = branch.window_samples(w)
        if (ws, we) == (0, branch.n_samples):
            out.append(None)
        else:
            out.append(evidence_window(next(attrs), branch.receptive_field(w), we - ws, branch.window_leads(w)))
    return out


__all__ = ["attributions", "evidence_window", "record_evidence"]
