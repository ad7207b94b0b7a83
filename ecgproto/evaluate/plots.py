"""Figures of the evaluation report (matplotlib, Agg backend), returned as PNG bytes.

Designed to stay readable for 71 labels: per-label results are tall sorted dot plots
with interval bars (one row per label, counts in the row name), never one row of 71 panels.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

DPI = 90
GROUP_COLORS = {"rhythm": "#1f77b4", "morphology": "#d62728", "global": "#2ca02c", "": "#555555"}


def png(fig: Figure, dpi: int = DPI) -> bytes:
    """Encode ``fig`` as PNG and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")  # no tick label or legend clipped
    plt.close(fig)
    return buf.getvalue()


def forest_plot(per_label: pd.DataFrame, title: str) -> bytes:
    """Per-label AUROC and AUPRC with interval bars, labels sorted by AUROC (tall figure).

    ``per_label`` rows of one task (columns label, group, n_pos, auroc[_lo,_hi], auprc[_lo,_hi]).
    Undefined labels are listed at the bottom with the text "undefined".
    """
    d = per_label.copy()
    d["_key"] = d["auroc"].fillna(-1.0)
    d = d.sort_values(["_key", "n_pos"], ascending=[True, True]).reset_index(drop=True)
    n = len(d)
    fig, axes = plt.subplots(1, 2, figsize=(10, max(3.0, 0.2 * n + 1.2)), sharey=True)
    y = np.arange(n)
    names = [f"{r.label} (n+={r.n_pos})" + ("" if np.isfinite(r.auroc) else " undefined") for r in d.itertuples()]
    prevalence = d["n_pos"] / (d["n_pos"] + d["n_neg"]).clip(lower=1)
    for ax, metric, ref in ((axes[0], "auroc", None), (axes[1], "auprc", prevalence)):
        colors = [GROUP_COLORS.get(g, "#555555") for g in d["group"].fillna("")]
        if f"{metric}_lo" in d:
            lo, hi = d[f"{metric}_lo"].to_numpy(), d[f"{metric}_hi"].to_numpy()
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.hlines(y[ok], lo[ok], hi[ok], colors=np.array(colors)[ok], lw=1.2, alpha=0.7)
        v = d[metric].to_numpy(dtype=float)
        ok = np.isfinite(v)
        ax.scatter(v[ok], y[ok], c=np.array(colors)[ok], s=14, zorder=3)
        ax.scatter(np.zeros(int((~ok).sum())), y[~ok], marker="x", c="#bbbbbb", s=12, zorder=3)
        if ref is not None:
            ax.scatter(ref, y, marker="|", c="#999999", s=30, label="prevalence (chance AUPRC)")
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, frameon=False)
        else:
            ax.axvline(0.5, color="#999999", lw=0.8, ls="--")
        ax.set_xlim(-0.03, 1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(metric.upper())
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=7)
    axes[0].set_ylim(-0.7, n - 0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"{g} group") for g, c in GROUP_COLORS.items() if g]
    handles += [plt.Line2D([], [], marker="x", ls="", color="#bbbbbb", label="undefined")]
    axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=7, frameon=False)
    axes[0].set_title(title, fontsize=10, loc="left", pad=18)
    fig.tight_layout()
    return png(fig)


def curve_grid(labels: np.ndarray, probs: np.ndarray, names: list[str], kind: str) -> bytes:
    """ROC (``kind='roc'``) or precision–recall (``'pr'``) curves, one small panel per label.

    ``labels``/``probs`` (N, K) for the K labels named in ``names``.
    """
    k = len(names)
    cols = min(4, max(k, 1))
    rows = int(np.ceil(k / cols)) if k else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[k:]:
        ax.set_axis_off()
    for j, (ax, name) in enumerate(zip(axes.ravel(), names)):
        y, p = labels[:, j].astype(int), probs[:, j]
        n_pos = int(y.sum())
        if kind == "roc":
            if 0 < n_pos < len(y):
                fpr, tpr, _ = roc_curve(y, p)
                ax.plot(fpr, tpr, lw=1.3)
            ax.plot([0, 1], [0, 1], color="#aaaaaa", lw=0.8, ls="--")
            ax.set_xlabel("1 − specificity", fontsize=8)
            ax.set_ylabel("sensitivity", fontsize=8)
        else:
            if n_pos > 0:
                prec, rec, _ = precision_recall_curve(y, p)
                ax.step(rec, prec, where="post", lw=1.3)
            ax.axhline(n_pos / max(len(y), 1), color="#aaaaaa", lw=0.8, ls="--")
            ax.set_xlabel("recall", fontsize=8)
            ax.set_ylabel("precision", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} (n+={n_pos}, N={len(y)})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png(fig)


def reliability_grid(tables: dict[str, pd.DataFrame]) -> bytes:
    """Reliability diagrams (observed fraction vs mean predicted probability, marker area ∝ count)."""
    k = len(tables)
    cols = min(3, max(k, 1))
    rows = int(np.ceil(k / cols)) if k else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel()[k:]:
        ax.set_axis_off()
    for ax, (name, t) in zip(axes.ravel(), tables.items()):
        ax.plot([0, 1], [0, 1], color="#aaaaaa", lw=0.8, ls="--")
        if len(t):
            size = 10 + 200 * t["count"] / t["count"].max()
            ax.plot(t["mean_prob"], t["frac_pos"], lw=1.0, color="#1f77b4")
            ax.scatter(t["mean_prob"], t["frac_pos"], s=size, color="#1f77b4", alpha=0.6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name} (n={int(t['count'].sum()) if len(t) else 0})", fontsize=8)
        ax.set_xlabel("mean predicted probability", fontsize=8)
        ax.set_ylabel("observed fraction positive", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png(fig)


def subgroup_plot(subgroups: pd.DataFrame, overall: float, min_records: int = 20) -> bytes:
    """Macro AUROC per subgroup with intervals; the overall value as a vertical line. Subgroups with
    fewer than ``min_records`` records are hollow points without an interval."""
    d = subgroups[subgroups["n_records"] > 0].reset_index(drop=True)
    n = len(d)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * n + 1.0)))
    y = np.arange(n)[::-1]
    v = d["macro_auroc"].to_numpy(dtype=float) if "macro_auroc" in d else np.full(n, np.nan)
    large = d["n_records"].to_numpy() >= min_records
    if "macro_auroc_lo" in d:
        lo, hi = d["macro_auroc_lo"].to_numpy(dtype=float), d["macro_auroc_hi"].to_numpy(dtype=float)
        ok = np.isfinite(lo) & np.isfinite(hi) & large
        ax.hlines(y[ok], lo[ok], hi[ok], lw=1.4, color="#1f77b4", alpha=0.7)
    ok = np.isfinite(v)
    ax.scatter(v[ok & large], y[ok & large], s=18, color="#1f77b4", zorder=3)
    if (ok & ~large).any():
        ax.scatter(v[ok & ~large], y[ok & ~large], s=18, facecolors="none", edgecolors="#1f77b4", zorder=3,
                   label=f"N < {min_records}: no interval")
    for yy in y[~ok]:
        ax.text(0.01, yy, "undefined", va="center", fontsize=7, color="#999999", transform=ax.get_yaxis_transform())
    if np.isfinite(overall):
        ax.axvline(overall, color="#d62728", lw=0.9, ls="--", label=f"all records ({overall:.3f})")
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.variable}: {r.level} (N={r.n_records})" for r in d.itertuples()], fontsize=7)
    ax.set_xlabel("macro AUROC (fused, all labels)")
    lo_x = np.nanmin(np.r_[v[ok], overall]) if ok.any() else 0.5
    ax.set_xlim(max(0.0, lo_x - 0.1), 1.005)  # a point at 1.0 stays whole
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)
