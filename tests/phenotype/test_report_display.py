"""What the phenotype report shows: p-values never as 0.0000, a readable cohort flow and run
metadata, and Manhattan-plot labels that neither overlap nor leave the panel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from ecgproto.phenotype.report import (  # noqa: E402
    _label_top_hits,
    _readable,
    cohort_flow_table,
    format_p,
    run_metadata_table,
)


@pytest.mark.parametrize("value, text", [
    (0.0895, "0.0895"), (1.0, "1.00"), (0.0012, "0.00120"), (1.17e-6, "1.17×10⁻⁶"), (3e-42, "3.00×10⁻⁴²"),
    (0.0, "< 10⁻³⁰⁰"), (float("nan"), "–"), (None, "–"),
])
def test_p_values_are_never_rounded_to_zero(value, text):
    assert format_p(value) == text


def test_p_columns_and_headers_are_readable():
    frame = pd.DataFrame({"phecode": ["411"], "p": [2e-9], "q_bh": [1e-7], "strength_wilcoxon_p": [0.2], "or": [2.5]})
    shown = _readable(frame)
    assert list(shown.columns) == ["phecode", "p", "q bh", "strength wilcoxon p", "or"]
    assert shown.iloc[0].tolist() == ["411", "2.00×10⁻⁹", "1.00×10⁻⁷", "0.200", 2.5]


def test_cohort_flow_has_sentences_not_keys():
    flow = {"ecgs_scored": 863, "ecgs_outside_admission_windows": 158, "phecodes_tested": 32, "new_step_x": 1}
    table = cohort_flow_table(flow)
    assert table["count"].tolist() == [863, 158, 32, 1]
    assert not any("_" in s for s in table["step"])
    assert table["step"].iloc[1].startswith("−")  # exclusions are marked


def test_run_metadata_is_a_table_not_json():
    md = {"package_version": "0.1.0", "phecode_map": {"version": "1.2", "source": "shipped",
                                                       "sha256": {"map.csv.gz": "ab12"}},
          "thresholds": {"min_cases": 10}, "seeds": {"seed": 0}}
    table = run_metadata_table(md)
    text = " ".join(table["item"]) + " " + " ".join(table["value"])
    assert "{" not in text and "sha256 of map.csv.gz" in text and "threshold: min cases" in text
    assert "seed: seed" in text


def test_manhattan_labels_do_not_overlap_or_clip():
    fig, ax = plt.subplots(figsize=(11, 2.4))
    x = np.arange(40, dtype=float)
    y = np.r_[np.full(36, 1.0), [9.0, 9.1, 8.9, 9.05]]  # four strong neighbours at the right edge
    x[-4:] = [36.0, 36.5, 37.0, 39.0]
    ax.scatter(x, y)
    ax.set_xlim(-0.5, 39.5)
    ax.set_ylim(0, y.max() * 1.6)
    phecodes = pd.DataFrame({"phecode": [f"{400 + i}.1" for i in range(40)],
                             "phecode_string": ["A long phecode description for the label"] * 40})
    _label_top_hits(ax, phecodes, x, y, y > 5, n_x=40)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text itself, not its leader line
    assert len(boxes) == 3
    panel = ax.get_window_extent(renderer)
    for b in boxes:  # inside the panel
        assert b.x0 >= panel.x0 - 1 and b.x1 <= panel.x1 + 1 and b.y0 >= panel.y0 and b.y1 <= panel.y1 + 1
    for i in range(3):
        for j in range(i + 1, 3):
            assert not boxes[i].overlaps(boxes[j])
    markers_top = ax.transData.transform((0, y.max()))[1]
    assert all(b.y0 > markers_top for b in boxes)  # above every marker
    plt.close(fig)
