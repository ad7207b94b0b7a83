"""Contribution waterfall of one label: bias → supporting prototypes → opposing terms → logit → probability."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SUPPORT_COLOR = "#2b8a3e"
OPPOSE_COLOR = "#c92a2a"
TOTAL_COLOR = "#495057"


def logit_of(p: float) -> float:
    """log(p / (1 − p)), ±inf at 0 and 1."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def plot_waterfall(label: str, bias: float, steps: Sequence[tuple[str, float]], logit: float, probability: float,
                   threshold: float) -> Figure:
    """Horizontal waterfall: ``bias``, then each (name, term) of ``steps`` added in order, ending at ``logit``.

    The threshold is drawn as a dashed line in logit units; the title gives the probability.
    """
    names = ["bias", *[n for n, _ in steps], "logit"]
    fig = Figure(figsize=(6.4, 0.32 * len(names) + 0.8))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.34, 0.7 / (0.32 * len(names) + 0.8), 0.62, 1 - 1.05 / (0.32 * len(names) + 0.8)))
    level = 0.0
    for y, (name, value) in enumerate([("bias", bias), *steps]):
        ax.barh(y, value, left=level, color=SUPPORT_COLOR if value >= 0 else OPPOSE_COLOR, height=0.6)
        ax.text(level + value, y, f" {value:+.2f}", va="center", ha="left" if value >= 0 else "right", fontsize=7)
        level += value
    y = len(names) - 1
    ax.barh(y, logit, color=TOTAL_COLOR, height=0.6)
    ax.text(logit, y, f" {logit:+.2f}", va="center", ha="left" if logit >= 0 else "right", fontsize=7)
    ax.axvline(0.0, color="#000", lw=0.6)
    t = logit_of(threshold)
    if math.isfinite(t):
        ax.axvline(t, color="#1f6fd1", lw=0.8, ls="--")
        ax.text(t, -0.9, f"threshold {threshold:.2f}", color="#1f6fd1", fontsize=6.5, ha="center", va="bottom")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("logit (log-odds)", fontsize=7)
    ax.set_title(f"{label}: logit {logit:+.2f} → probability {probability:.2f}", fontsize=8)
    lo, hi = ax.get_xlim()
    pad = 0.15 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


__all__ = ["logit_of", "plot_waterfall"]
