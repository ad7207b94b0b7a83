"""Aligned comparison of a matched window: the test ECG's and the prototype source ECG's crops.

Both crops show all 12 leads (one row each, I … V6) at the same paper scale as the full sheet
(25 mm/s, 10 mm/mV, 1 mm grid with bold 5 mm lines), on a time axis in seconds from each
record's start. The crop is the window's receptive field (the input that can influence the
match) plus a small margin; inside it the evidence window (:mod:`ecgproto.explain.evidence`)
is a darker band and the receptive field a light band with dashed edges, so a finding anywhere
in the receptive field is on the page. Lead-aware prototypes shade only their leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ecgproto.explain.plot_ecg import (
    GAIN_MM_PER_MV,
    HIGHLIGHT_COLOR,
    LEADS,
    PAPER_SPEED_MM_PER_S,
    TRACE_COLOR,
    calibration_pulse,
    draw_grid,
)

ROW_MM = 18.0
LEFT_MM = 12.0  # lead names + calibration pulse
GAP_MM = 12.0
RIGHT_MM = 4.0
TOP_MM = 14.0  # two title lines
BOTTOM_MM = 12.0  # time axis + legend
MARGIN_S = 0.2  # crop margin around the receptive field
GRID_STEP_S = 0.2  # crops start on a bold grid line (0.2 s = 5 mm)
LEGEND = ("dark band: evidence window (where the match's gradient × input is largest) · light band with dashed "
          "edges: receptive field (all input that can influence the match) · 25 mm/s, 10 mm/mV")


@dataclass(frozen=True)
class WindowView:
    """One side of the comparison: a (12, T) mV signal (None = unavailable), the evidence window
    and receptive field in samples ([start, end); None = whole record), its leads (() = all 12), a title."""

    signal: np.ndarray | None
    window: tuple[int, int] | None
    field: tuple[int, int] | None
    leads: Sequence[str] = ()
    title: str = ""


def crop_span(field: tuple[int, int] | None, n_samples: int, fs: float) -> tuple[int, int]:
    """Samples [a, b) drawn for a receptive field: the field ± 0.2 s, starting on a 0.2 s grid line,
    clamped to the record; the whole record for None."""
    if field is None:
        return 0, n_samples
    step = max(int(round(GRID_STEP_S * fs)), 1)
    a = max(int(field[0]) - int(round(MARGIN_S * fs)), 0)
    a -= a % step
    b = min(int(field[1]) + int(round(MARGIN_S * fs)), n_samples)
    return a, b


def _draw_side(ax: Axes, view: WindowView, fs: float, n_samples: int, x0: float, height: float) -> tuple[float, float]:
    """Draw one crop with its left edge at paper x ``x0``; returns (x_end_mm, t_start_s)."""
    a, b = crop_span(view.field, n_samples, fs)
    t0 = a / fs

    def x_mm(sample: float) -> float:
        return x0 + (sample / fs - t0) * PAPER_SPEED_MM_PER_S

    x_end = x_mm(b)
    baselines = [height - TOP_MM - (r + 0.5) * ROW_MM for r in range(len(LEADS))]
    marked = set(view.leads)
    rows = [r for r, lead in enumerate(LEADS) if not marked or lead in marked]
    bands = []
    if view.field is not None:
        bands.append(("field", view.field, 0.07))
    if view.window is not None:
        bands.append(("window", view.window, 0.24))
    for kind, (s0, s1), alpha in bands:
        s0, s1 = max(int(s0), a), min(int(s1), b)
        if s1 <= s0:
            continue
        for r in rows:
            ax.add_patch(Rectangle((x_mm(s0), baselines[r] - 0.5 * ROW_MM), x_mm(s1) - x_mm(s0), ROW_MM,
                                   facecolor=HIGHLIGHT_COLOR, alpha=alpha, edgecolor="none", zorder=1,
                                   gid=f"{kind}:{LEADS[r]}"))
        if kind == "field":
            top, bottom = baselines[rows[0]] + 0.5 * ROW_MM, baselines[rows[-1]] - 0.5 * ROW_MM
            ax.add_collection(LineCollection([np.array([[x, bottom], [x, top]]) for x in (x_mm(s0), x_mm(s1))],
                                             colors=HIGHLIGHT_COLOR, linewidths=0.8, linestyles="dashed", zorder=2,
                                             gid="field-edges"))
    if view.signal is not None:
        sig = np.asarray(view.signal, dtype=np.float32)
        xs = x0 + (np.arange(a, b) / fs - t0) * PAPER_SPEED_MM_PER_S
        traces = [np.stack([xs, baselines[r] + sig[r, a:b] * GAIN_MM_PER_MV], 1) for r in range(len(LEADS))]
        ax.add_collection(LineCollection(traces, colors=TRACE_COLOR, linewidths=0.7, zorder=3, gid="traces"))
    else:
        ax.text((x0 + x_end) / 2, height / 2, "source ECG unavailable", ha="center", va="center", fontsize=9, zorder=4)
    for r, lead in enumerate(LEADS):
        on = lead in marked
        ax.text(x0 + 0.8, baselines[r] + 0.32 * ROW_MM, lead, fontsize=6.5, zorder=4,
                color=HIGHLIGHT_COLOR if on else TRACE_COLOR, weight="bold" if on else "normal")
    # time axis: a tick and label every second (record time), under the last row
    y_axis = BOTTOM_MM - 2.0
    first, last = int(np.ceil(t0)), int(np.floor(b / fs))
    ticks = [np.array([[x_mm(s * fs), y_axis], [x_mm(s * fs), y_axis + 2.0]]) for s in range(first, last + 1)]
    ax.add_collection(LineCollection(ticks, colors=TRACE_COLOR, linewidths=0.6, zorder=3, gid="time-ticks"))
    for s in range(first, last + 1):
        ax.text(x_mm(s * fs), y_axis - 0.8, f"{s} s", fontsize=5.5, ha="center", va="top", zorder=4)
    ax.text(x0, height - 0.45 * TOP_MM, view.title, fontsize=6.5, va="center", zorder=4, wrap=False)
    return x_end, t0


def plot_windows(views: Sequence[WindowView], fs: float, n_samples: int) -> Figure:
    """Crops of ``views`` side by side (left to right), same scale; 1 data unit = 1 mm."""
    if not views:
        raise ValueError("plot_windows needs at least one view")
    widths = []
    for v in views:
        a, b = crop_span(v.field, n_samples, fs)
        widths.append((b - a) / fs * PAPER_SPEED_MM_PER_S)
    width = LEFT_MM + sum(widths) + GAP_MM * (len(views) - 1) + RIGHT_MM
    height = TOP_MM + len(LEADS) * ROW_MM + BOTTOM_MM
    fig = Figure(figsize=(width / 25.4, height / 25.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    draw_grid(ax, width, height)
    pulse = calibration_pulse(height - TOP_MM - 0.5 * ROW_MM, x0_mm=1.5)
    ax.add_collection(LineCollection([pulse], colors=TRACE_COLOR, linewidths=0.8, zorder=3, gid="calibration"))
    x = LEFT_MM
    for v in views:
        x, _ = _draw_side(ax, v, fs, n_samples, x, height)
        x += GAP_MM
    ax.text(LEFT_MM, 2.0, LEGEND, fontsize=5.5, va="bottom", zorder=4)
    return fig


def plot_window_comparison(test: WindowView, proto: WindowView, fs: float, n_samples: int) -> Figure:
    """The test crop (left) beside the prototype source crop (right), same scale."""
    return plot_windows([test, proto], fs, n_samples)


__all__ = ["WindowView", "crop_span", "plot_window_comparison", "plot_windows"]
