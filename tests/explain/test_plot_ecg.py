"""Geometry of the printed 12-lead layout: 25 mm/s, 10 mm/mV, highlight bands."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from ecgproto.explain.plot_ecg import (
    LEADS,
    MARGIN_LEFT_MM,
    paper_layout,
    plot_12lead,
    save_figure,
)


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"expected one {gid} collection"
    return found[0]


def _highlights(ax):
    return {p.get_gid().split(":", 1)[1]: p for p in ax.patches if (p.get_gid() or "").startswith("highlight:")}


def _signal(fs: int) -> np.ndarray:
    sig = np.zeros((12, 10 * fs), np.float32)
    sig[0, fs:] = 1.0  # lead I: 1 mV step at t = 1 s
    sig[LEADS.index("aVR"), :] = -0.5
    return sig


def test_sheet_is_one_millimetre_per_data_unit():
    fig = plot_12lead(_signal(100), 100)
    ax = fig.axes[0]
    layout = paper_layout()
    assert ax.get_xlim() == (0.0, layout.width_mm)
    assert ax.get_ylim() == (0.0, layout.height_mm)
    w_in, h_in = fig.get_size_inches()
    x0, y0, w, h = ax.get_position().bounds
    assert w * w_in * 25.4 == pytest.approx(layout.width_mm)
    assert h * h_in * 25.4 == pytest.approx(layout.height_mm)
    # 10 s strip = 250 mm of paper, 4 rows
    assert layout.width_mm >= 250.0
    assert sum(p.is_rhythm_strip for p in layout.panels) == 1 and len(layout.panels) == 13


@pytest.mark.parametrize("fs", [100, 500])
def test_traces_are_25_mm_per_s_and_10_mm_per_mv(fs):
    ax = plot_12lead(_signal(fs), fs).axes[0]
    segs = _collection(ax, "traces").get_segments()
    layout = paper_layout()
    by_panel = dict(zip([(p.lead, p.column) for p in layout.panels], segs))
    lead_i = by_panel[("I", 0)]
    p = layout.panel("I")
    # first sample at the panel origin, last sample of 2.5 s one sample-period short of 62.5 mm
    assert lead_i[0, 0] == pytest.approx(MARGIN_LEFT_MM)
    assert lead_i[-1, 0] - lead_i[0, 0] == pytest.approx((2.5 * fs - 1) / fs * 25.0, abs=1e-4)
    assert len(lead_i) == int(2.5 * fs)
    # 0 mV on the baseline, 1 mV step = 10 mm up
    assert lead_i[0, 1] == pytest.approx(p.baseline_mm)
    assert lead_i[-1, 1] - lead_i[0, 1] == pytest.approx(10.0)
    # the step happens at x = 25 mm after the origin (t = 1 s)
    step_x = lead_i[np.argmax(lead_i[:, 1] > p.baseline_mm + 5), 0]
    assert step_x == pytest.approx(MARGIN_LEFT_MM + 25.0)
    # aVR is column 1: starts at 2.5 s → x = 10 + 62.5 mm, −0.5 mV = 5 mm below its baseline
    avr = by_panel[("aVR", 1)]
    assert avr[0, 0] == pytest.approx(MARGIN_LEFT_MM + 62.5)
    assert avr[0, 1] == pytest.approx(layout.panel("aVR").baseline_mm - 5.0)
    # rhythm strip: lead II over the whole 10 s
    strip = by_panel[("II", -1)]
    assert len(strip) == 10 * fs and strip[-1, 0] == pytest.approx(MARGIN_LEFT_MM + 250.0 - 25.0 / fs)


def test_calibration_pulse_is_1mv_by_0p2s():
    ax = plot_12lead(_signal(100), 100).axes[0]
    pulses = _collection(ax, "calibration").get_segments()
    assert len(pulses) == 4
    for pulse in pulses:
        assert np.ptp(pulse[:, 1]) == pytest.approx(10.0)
        top = pulse[pulse[:, 1] == pulse[:, 1].max(), 0]
        assert np.ptp(top) == pytest.approx(5.0)


def test_grid_has_1mm_minor_and_5mm_major_lines():
    ax = plot_12lead(_signal(100), 100).axes[0]
    major = _collection(ax, "grid-major").get_segments()
    minor = _collection(ax, "grid-minor").get_segments()
    vert_major = sorted(s[0, 0] for s in major if s[0, 0] == s[1, 0])
    assert np.allclose(np.diff(vert_major), 5.0)
    vert_all = sorted([s[0, 0] for s in minor if s[0, 0] == s[1, 0]] + vert_major)
    assert np.allclose(np.diff(vert_all), 1.0)


@pytest.mark.parametrize("fs", [100, 500])
def test_highlight_maps_sample_range_to_paper(fs):
    start, end = 2 * fs, 3 * fs  # seconds 2..3: crosses the 2.5 s column boundary
    ax = plot_12lead(_signal(fs), fs, highlight=(start, end)).axes[0]
    bands = _highlights(ax)
    assert set(bands) == {"I", "II", "III", "aVR", "aVL", "aVF", "rhythm"}
    strip = bands["rhythm"]
    assert strip.get_x() == pytest.approx(MARGIN_LEFT_MM + 50.0)
    assert strip.get_width() == pytest.approx(25.0)
    # column 0 shows [0, 2.5) s: band clipped to 2.0–2.5 s; column 1 shows 2.5–3.0 s
    assert bands["I"].get_x() == pytest.approx(MARGIN_LEFT_MM + 50.0)
    assert bands["I"].get_width() == pytest.approx(12.5)
    assert bands["aVF"].get_x() == pytest.approx(MARGIN_LEFT_MM + 62.5)
    assert bands["aVF"].get_width() == pytest.approx(12.5)
    layout = paper_layout()
    for lead in ("I", "aVF"):
        p = layout.panel(lead)
        assert bands[lead].get_y() == pytest.approx(p.baseline_mm - layout.row_mm / 2)
        assert bands[lead].get_height() == pytest.approx(layout.row_mm)
        assert 0.0 < bands[lead].get_alpha() < 1.0


def test_highlight_leads_restrict_bands_to_those_leads():
    fs = 100
    ax = plot_12lead(_signal(fs), fs, highlight=(600, 700), highlight_leads=["V2", "I"]).axes[0]
    # 6–7 s lies in column 2 (V1, V2, V3): only V2's panel plus the rhythm strip; lead I's column misses it
    assert set(_highlights(ax)) == {"V2", "rhythm"}
    colored = {t.get_text() for t in ax.texts if t.get_weight() == "bold"}
    assert colored == {"V2", "I"}


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(12, T\)"):
        plot_12lead(np.zeros((8, 1000)), 100)
    with pytest.raises(ValueError, match="unknown highlight leads"):
        plot_12lead(_signal(100), 100, highlight=(0, 10), highlight_leads=["V7"])
    with pytest.raises(ValueError, match="end > start"):
        plot_12lead(_signal(100), 100, highlight=(50, 50))
    with pytest.raises(ValueError, match="fs"):
        plot_12lead(_signal(100), 0)


def test_save_figure_writes_png_at_paper_size(tmp_path):
    fig = plot_12lead(_signal(100), 100, highlight=(0, 100))
    out = save_figure(fig, tmp_path / "sub" / "ecg.png", dpi=50)
    img = imread(tmp_path / "sub" / "ecg.png")
    layout = paper_layout()
    assert out[:8] == b"\x89PNG\r\n\x1a\n"
    assert abs(img.shape[1] - layout.width_mm / 25.4 * 50) <= 1
    assert abs(img.shape[0] - layout.height_mm / 25.4 * 50) <= 1
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_12x1_sheet_shades_a_window_on_every_lead_at_the_same_x():
    fs = 100
    ax = plot_12lead(_signal(fs), fs, highlight=(300, 396), layout="12x1").axes[0]
    layout = paper_layout(kind="12x1")
    assert [p.lead for p in layout.panels] == list(LEADS) and all(p.t0 == 0.0 and p.t1 == 10.0 for p in layout.panels)
    bands = _highlights(ax)
    assert set(bands) == set(LEADS)  # one time window spans all 12 leads
    assert all(b.get_x() == pytest.approx(MARGIN_LEFT_MM + 3.0 * 25.0) for b in bands.values())
    assert all(b.get_width() == pytest.approx(0.96 * 25.0) for b in bands.values())


def test_3x4_sheet_shades_only_the_leads_printed_at_those_seconds():
    ax = plot_12lead(_signal(100), 100, highlight=(300, 396)).axes[0]  # 3.00-3.96 s: second column
    assert set(_highlights(ax)) == {"aVR", "aVL", "aVF", "rhythm"}


def test_window_comparison_draws_window_field_and_leads_at_paper_scale():
    from ecgproto.explain.plot_window import LEFT_MM, WindowView, crop_span, plot_window_comparison

    fs, n = 100, 1000
    test = WindowView(_signal(fs), (300, 396), (100, 600), ("II", "III", "aVF"), "test")
    proto = WindowView(None, None, None, (), "latent prototype")
    fig = plot_window_comparison(test, proto, fs, n)
    ax = fig.axes[0]
    a, b = crop_span((100, 600), n, fs)
    assert (a, b) == (80, 620)  # field ± 0.2 s, starting on a 0.2 s grid line
    w_in, h_in = fig.get_size_inches()
    assert ax.get_xlim()[1] == pytest.approx(w_in * 25.4)  # 1 data unit = 1 mm
    windows = [p for p in ax.patches if (p.get_gid() or "").startswith("window:")]
    fields = [p for p in ax.patches if (p.get_gid() or "").startswith("field:")]
    assert {p.get_gid().split(":")[1] for p in windows} == {"II", "III", "aVF"}  # lead-aware: only its leads
    assert {p.get_gid().split(":")[1] for p in fields} == {"II", "III", "aVF"}
    x_window = LEFT_MM + (300 - a) / fs * 25.0
    assert all(p.get_x() == pytest.approx(x_window) and p.get_width() == pytest.approx(0.96 * 25.0) for p in windows)
    assert all(p.get_x() == pytest.approx(LEFT_MM + 0.2 * 25.0) and p.get_width() == pytest.approx(5.0 * 25.0)
               for p in fields)
    traces = [c for c in ax.collections if c.get_gid() == "traces"]
    assert len(traces) == 1 and len(traces[0].get_segments()) == 12  # the latent side draws no trace
    seg = traces[0].get_segments()[0]
    assert seg[-1, 0] - seg[0, 0] == pytest.approx((b - a - 1) / fs * 25.0)  # 25 mm/s
    assert any("latent prototype" in t.get_text() for t in ax.texts)


def test_quantised_png_is_smaller_and_keeps_its_size():
    from ecgproto.explain.plot_ecg import figure_png_bytes

    fig = plot_12lead(_signal(100), 100, layout="12x1")
    small, full = figure_png_bytes(fig, dpi=50), figure_png_bytes(fig, dpi=50, colors=None)
    assert len(small) < len(full)
    from io import BytesIO
    from PIL import Image

    assert Image.open(BytesIO(small)).size == Image.open(BytesIO(full)).size
