"""Printed 12-lead ECG sheets: the standard 3×4 + rhythm strip, and 12×1 (every lead over 10 s).

Paper coordinates are millimetres: x = 25 mm/s, y = 10 mm/mV, on a pink
1 mm grid with bold 5 mm lines and a 1 mV × 0.2 s calibration pulse per row.
Figures are sized so that one data unit is one physical millimetre (at any dpi).
``3x4``: row 0 = I, aVR, V1, V4; row 1 = II, aVL, V2, V5; row 2 = III, aVF, V3, V6;
column k shows seconds [2.5k, 2.5(k+1)) of the record, so x-position is real time;
row 3 is lead II over the full 10 s. A time window therefore falls on different leads
in different columns: views that shade a window use ``12x1``, where one time window
spans all 12 leads on a common time axis.

Matplotlib is used without pyplot (``Figure`` + Agg canvas), so nothing is global
and figures are garbage-collected like any object.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ecgproto.atomic import write_bytes_atomic

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
COLUMN_SECONDS = 2.5
STRIP_SECONDS = 10.0
RHYTHM_LEAD = "II"
LAYOUT_ROWS: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
MARGIN_LEFT_MM = 10.0  # calibration pulse lives here
MARGIN_RIGHT_MM = 5.0
MARGIN_TOP_MM = 10.0  # title line
MARGIN_BOTTOM_MM = 5.0
DEFAULT_ROW_MM = 40.0
STRIP_ROW_MM = 20.0  # row spacing of the 12x1 sheet
LAYOUTS = ("3x4", "12x1")

GRID_MINOR_COLOR = "#f6cccc"
GRID_MAJOR_COLOR = "#e58c8c"
TRACE_COLOR = "#111111"
HIGHLIGHT_COLOR = "#1f6fd1"


@dataclass(frozen=True)
class Panel:
    """One trace panel on the paper: a lead shown over seconds [t0, t1)."""

    lead: str
    row: int
    column: int  # 0..3 for the 3×4 block, -1 for the rhythm strip
    t0: float  # seconds
    t1: float  # seconds
    x0_mm: float  # paper x of time t0
    baseline_mm: float  # paper y of 0 mV

    @property
    def is_rhythm_strip(self) -> bool:
        return self.column < 0

    def x_mm(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Paper x (mm) of time ``t_s`` (seconds from the record start)."""
        return self.x0_mm + (np.asarray(t_s) - self.t0) * PAPER_SPEED_MM_PER_S

    def y_mm(self, mv: np.ndarray | float) -> np.ndarray | float:
        """Paper y (mm) of amplitude ``mv`` (millivolts)."""
        return self.baseline_mm + np.asarray(mv) * GAIN_MM_PER_MV


@dataclass(frozen=True)
class PaperLayout:
    """Geometry of the whole sheet, in millimetres."""

    panels: tuple[Panel, ...]  # 12 block panels (row-major) then the rhythm strip
    width_mm: float
    height_mm: float
    row_mm: float

    def panel(self, lead: str, rhythm_strip: bool = False) -> Panel:
        """The block panel of ``lead`` (or the rhythm strip when ``rhythm_strip``)."""
        for p in self.panels:
            if p.lead == lead and p.is_rhythm_strip == rhythm_strip:
                return p
        raise KeyError(f"no panel for lead {lead!r} (rhythm_strip={rhythm_strip}); leads are {LEADS}")

    def highlight_spans(
        self, start: int, end: int, fs: float, leads: Sequence[str] | None = None
    ) -> list[tuple[Panel, float, float]]:
        """Paper x-spans (panel, x_start_mm, x_end_mm) of samples [start, end).

        The span is clipped to each panel's time range; panels it misses are left out.
        With ``leads`` only those leads' block panels are included; the rhythm strip
        (the time reference) is always included.
        """
        t_a, t_b = start / fs, end / fs
        spans = []
        for p in self.panels:
            if leads is not None and not p.is_rhythm_strip and p.lead not in leads:
                continue
            a, b = max(t_a, p.t0), min(t_b, p.t1)
            if b > a:
                spans.append((p, float(p.x_mm(a)), float(p.x_mm(b))))
        return spans


@lru_cache(maxsize=8)
def paper_layout(row_mm: float | None = None, kind: str = "3x4") -> PaperLayout:
    """The ``kind`` sheet (``3x4`` standard, ``12x1`` one 10 s row per lead) with ``row_mm``
    millimetres between row baselines (default 40 mm for 3x4, 20 mm for 12x1)."""
    if kind not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {kind!r}")
    row_mm = (DEFAULT_ROW_MM if kind == "3x4" else STRIP_ROW_MM) if row_mm is None else float(row_mm)
    if row_mm <= 0:
        raise ValueError(f"row_mm must be positive, got {row_mm}")
    width = MARGIN_LEFT_MM + STRIP_SECONDS * PAPER_SPEED_MM_PER_S + MARGIN_RIGHT_MM
    if kind == "12x1":
        height = MARGIN_BOTTOM_MM + len(LEADS) * row_mm + MARGIN_TOP_MM
        panels = [Panel(lead, r, 0, 0.0, STRIP_SECONDS, MARGIN_LEFT_MM, height - MARGIN_TOP_MM - (r + 0.5) * row_mm)
                  for r, lead in enumerate(LEADS)]
        return PaperLayout(tuple(panels), width, height, row_mm)
    n_rows = len(LAYOUT_ROWS) + 1
    height = MARGIN_BOTTOM_MM + n_rows * row_mm + MARGIN_TOP_MM
    panels = []
    for r, row in enumerate(LAYOUT_ROWS):
        baseline = height - MARGIN_TOP_MM - (r + 0.5) * row_mm
        for c, lead in enumerate(row):
            t0 = c * COLUMN_SECONDS
            panels.append(Panel(lead, r, c, t0, t0 + COLUMN_SECONDS, MARGIN_LEFT_MM + t0 * PAPER_SPEED_MM_PER_S, baseline))
    baseline = MARGIN_BOTTOM_MM + 0.5 * row_mm
    panels.append(Panel(RHYTHM_LEAD, n_rows - 1, -1, 0.0, STRIP_SECONDS, MARGIN_LEFT_MM, baseline))
    return PaperLayout(tuple(panels), width, height, row_mm)


@lru_cache(maxsize=8)
def _grid_segments(width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """(minor, major) grid line segments, each (n, 2, 2) in mm; cached per sheet size."""
    xs = np.arange(0.0, np.floor(width) + 1.0)
    ys = np.arange(0.0, np.floor(height) + 1.0)
    vert = np.stack([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, ys[-1])], 1)], 1)
    horz = np.stack([np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, xs[-1]), ys], 1)], 1)
    major_v, major_h = (xs % 5 == 0), (ys % 5 == 0)
    minor = np.concatenate([vert[~major_v], horz[~major_h]])
    major = np.concatenate([vert[major_v], horz[major_h]])
    return minor, major


def lead_names(start: int | None, end: int | None) -> tuple[str, ...]:
    """Names of the canonical lead-index span [start, end); () for all 12 or unknown (= not lead-specific)."""
    if start is None or end is None or (int(start), int(end)) == (0, len(LEADS)):
        return ()
    return LEADS[int(start):int(end)]


def calibration_pulse(baseline_mm: float, x0_mm: float = 1.0) -> np.ndarray:
    """Polyline (6, 2) in mm of a 1 mV (10 mm) × 0.2 s (5 mm) pulse starting at ``x0_mm``."""
    x = x0_mm + np.array([0.0, 2.0, 2.0, 7.0, 7.0, 9.0])
    return np.stack([x, baseline_mm + np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]) * GAIN_MM_PER_MV], 1)


def _calibration_segments(layout: PaperLayout) -> list[np.ndarray]:
    """A calibration pulse at the start of each row."""
    return [calibration_pulse(baseline) for baseline in sorted({p.baseline_mm for p in layout.panels})]


def _check_signal(signal: np.ndarray, fs: float, name: str = "signal") -> np.ndarray:
    sig = np.asarray(signal, dtype=np.float32)
    if sig.ndim != 2 or sig.shape[0] != len(LEADS):
        raise ValueError(f"{name} must be shaped (12, T) in lead order {LEADS}, got {sig.shape}")
    if fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    return sig


def _trace_segments(sig: np.ndarray, fs: float, layout: PaperLayout) -> list[np.ndarray]:
    """Polyline (n, 2) in mm for each panel, in ``layout.panels`` order."""
    lead_pos = {lead: i for i, lead in enumerate(LEADS)}
    t = np.arange(sig.shape[1]) / fs
    segs = []
    for p in layout.panels:
        a, b = int(np.ceil(p.t0 * fs - 1e-9)), int(np.ceil(p.t1 * fs - 1e-9))
        a, b = min(a, sig.shape[1]), min(b, sig.shape[1])
        segs.append(np.stack([p.x_mm(t[a:b]), p.y_mm(sig[lead_pos[p.lead], a:b])], 1))
    return segs


def new_paper_figure(n_sheets: int = 1, row_mm: float | None = None, gap_mm: float = 8.0, title_mm: float = 0.0,
                     layout_kind: str = "3x4") -> tuple[Figure, list[Axes]]:
    """A figure with ``n_sheets`` 12-lead sheets side by side, 1 data unit = 1 mm.

    ``title_mm`` reserves a strip on top for a figure title (``fig.suptitle``).
    """
    layout = paper_layout(row_mm, layout_kind)
    w = n_sheets * layout.width_mm + (n_sheets - 1) * gap_mm
    h = layout.height_mm + title_mm
    fig = Figure(figsize=(w / 25.4, h / 25.4))
    FigureCanvasAgg(fig)
    axes = []
    for i in range(n_sheets):
        left = i * (layout.width_mm + gap_mm)
        axes.append(fig.add_axes((left / w, 0.0, layout.width_mm / w, layout.height_mm / h)))
    return fig, axes


def draw_grid(ax: Axes, width_mm: float, height_mm: float) -> None:
    """Pink millimetre grid (bold every 5 mm) over [0, width] × [0, height] mm, those limits, equal aspect."""
    minor, major = _grid_segments(width_mm, height_mm)
    ax.add_collection(LineCollection(minor, colors=GRID_MINOR_COLOR, linewidths=0.25, zorder=0, gid="grid-minor"))
    ax.add_collection(LineCollection(major, colors=GRID_MAJOR_COLOR, linewidths=0.6, zorder=0, gid="grid-major"))
    ax.set_xlim(0.0, width_mm)
    ax.set_ylim(0.0, height_mm)
    ax.set_aspect("equal")
    ax.set_axis_off()


def draw_paper(ax: Axes, layout: PaperLayout) -> None:
    """The sheet's grid, limits and aspect (:func:`draw_grid` over the layout)."""
    draw_grid(ax, layout.width_mm, layout.height_mm)


def plot_12lead(
    signal: np.ndarray,
    fs: float,
    *,
    highlight: tuple[int, int] | None = None,
    highlight_leads: Sequence[str] | None = None,
    title: str = "",
    ax: Axes | None = None,
    row_mm: float | None = None,
    show_trace: bool = True,
    layout: str = "3x4",
) -> Figure:
    """Draw a (12, T) mV signal at ``fs`` Hz on the ``layout`` sheet (``3x4`` + rhythm strip, or ``12x1``).

    ``highlight`` = sample range [start, end) shaded with a translucent band on every
    panel it falls in (only ``highlight_leads``' panels, whose names are then also
    coloured, when given; the rhythm strip always). On ``3x4`` each column prints other
    leads, so a window is shaded only on the leads printed at those seconds; use ``12x1``
    to shade a window across every lead. ``ax``: draw into an existing axes
    (its size decides the physical scale); otherwise a new figure at 1 unit = 1 mm.
    ``show_trace=False`` draws the empty sheet (used when a source ECG is unavailable).
    Only the first 10 s are shown. Returns the figure.
    """
    sig = _check_signal(signal, fs)
    if highlight_leads is not None:
        unknown = [lead for lead in highlight_leads if lead not in LEADS]
        if unknown:
            raise ValueError(f"unknown highlight leads {unknown}; expected names from {LEADS}")
    kind = layout
    layout = paper_layout(row_mm, kind)
    if ax is None:
        fig, (ax,) = new_paper_figure(1, row_mm, layout_kind=kind)
    else:
        fig = ax.figure
    draw_paper(ax, layout)
    ax.add_collection(LineCollection(_calibration_segments(layout), colors=TRACE_COLOR, linewidths=0.8, zorder=3, gid="calibration"))
    if show_trace:
        ax.add_collection(LineCollection(_trace_segments(sig, fs, layout), colors=TRACE_COLOR, linewidths=0.7, zorder=3, gid="traces"))
    # column separators: short ticks at the 2.5 s boundaries of the 3×4 block
    ticks = [np.array([[p.x0_mm, p.baseline_mm - 4.0], [p.x0_mm, p.baseline_mm + 4.0]]) for p in layout.panels if p.column > 0]
    ax.add_collection(LineCollection(ticks, colors=TRACE_COLOR, linewidths=0.8, zorder=3, gid="separators"))
    marked = set(highlight_leads or ())
    for p in layout.panels:
        name = p.lead + (" (rhythm)" if p.is_rhythm_strip else "")
        color = HIGHLIGHT_COLOR if p.lead in marked and not p.is_rhythm_strip else TRACE_COLOR
        weight = "bold" if color == HIGHLIGHT_COLOR else "normal"
        ax.text(p.x0_mm + 1.0, p.baseline_mm + 0.3 * layout.row_mm, name, fontsize=7, color=color, weight=weight, zorder=4)
    if highlight is not None:
        start, end = int(highlight[0]), int(highlight[1])
        if end <= start:
            raise ValueError(f"highlight must be a sample range (start, end) with end > start, got {highlight}")
        for p, xa, xb in layout.highlight_spans(start, end, fs, highlight_leads):
            ax.add_patch(Rectangle(
                (xa, p.baseline_mm - 0.5 * layout.row_mm), xb - xa, layout.row_mm,
                facecolor=HIGHLIGHT_COLOR, alpha=0.18, edgecolor="none", zorder=1,
                gid=f"highlight:{'rhythm' if p.is_rhythm_strip else p.lead}",
            ))
    if title:
        ax.text(MARGIN_LEFT_MM, layout.height_mm - 0.6 * MARGIN_TOP_MM, title, fontsize=8, va="center", zorder=4)
    return fig


def figure_png_bytes(fig: Figure, dpi: int = 100, colors: int | None = 64) -> bytes:
    """PNG encoding of ``fig`` (Agg); ``colors`` quantises to a palette (about 4x smaller
    for ECG sheets, whose few inks are kept exactly enough to read), None keeps full RGBA."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if colors is None:
        return buf.getvalue()
    from PIL import Image

    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> bytes:
    """Write ``fig`` as PNG atomically; returns the bytes."""
    data = figure_png_bytes(fig, dpi)
    write_bytes_atomic(path, data)
    return data
