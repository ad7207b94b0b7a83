"""Self-contained HTML phenotype report (matplotlib Agg figures embedded as base64 PNGs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ecgproto.atomic import write_text_atomic  # noqa: E402
from ecgproto.explain.html import esc, figure, page, table  # noqa: E402
from ecgproto.explain.plot_ecg import figure_png_bytes  # noqa: E402
from ecgproto.phenotype.phecodes import CATEGORY_ORDER_12  # noqa: E402
from ecgproto.phenotype.pipeline import PhenotypeResult  # noqa: E402

FAMILY_TITLES = {"prototype": "individual prototypes (P)", "class": "fused class probabilities (C)",
                 "prototype_class": "prototype-class max similarity (PC)", "nlp_concept": "machine-statement concepts (N)"}


COHORT_STEPS = {
    "ecgs_scored": "ECGs scored",
    "ecgs_status_not_ok": "− ECGs not readable (scoring status not ok)",
    "ecgs_without_ecg_time": "− ECGs without an acquisition time",
    "ecgs_subject_without_admissions": "− ECGs of subjects without any admission",
    "ecgs_outside_admission_windows": "− ECGs outside every admission window",
    "ecgs_linked": "ECGs linked to an admission",
    "admissions_with_ecg": "admissions with a linked ECG",
    "admissions_without_diagnoses": "− admissions without diagnoses",
    "admissions_subject_not_in_patients": "− admissions of subjects missing from patients",
    "admissions_unknown_sex": "− admissions with unknown sex",
    "admissions_not_first_of_patient": "− admissions that are not the patient's first eligible one",
    "ecgs_not_first_in_admission": "− ECGs that are not the first of their admission",
    "units": "analysis units (one ECG + admission each)",
    "units_without_mapped_phecode": "units without any mapped phecode",
    "phecodes_observed": "phecodes observed",
    "phecodes_below_min_counts": "− phecodes below the minimum case/control counts",
    "phecodes_tested": "phecodes tested",
}
P_COLUMNS = ("p", "q_bh", "bonferroni_p", "phecode_line_p")  # and every column ending in "_p"


def format_p(value: object) -> str:
    """A p-value as text: 3 significant digits from 0.001 up, scientific notation below (``1.17×10⁻⁶``,
    never 0.0000)."""
    if value is None or not isinstance(value, (int, float, np.floating)) or not np.isfinite(value):
        return "–"
    v = float(value)
    if v == 0.0:
        return "< 10⁻³⁰⁰"
    if v >= 1e-3:
        return f"{v:#.3g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    """p-value columns as text (:func:`format_p`) and headers without underscores, for display only."""
    out = frame.copy()
    for col in out.columns:
        if col in P_COLUMNS or str(col).endswith("_p"):
            out[col] = [format_p(v) for v in out[col]]
    return out.rename(columns=lambda c: str(c).replace("_", " "))


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return table(_readable(frame), digits)


def cohort_flow_table(flow: dict) -> pd.DataFrame:
    """The cohort flow as readable steps (exclusions marked −) with their counts."""
    return pd.DataFrame({"step": [COHORT_STEPS.get(k, k.replace("_", " ")) for k in flow],
                         "count": [int(v) for v in flow.values()]})


def _png(fig: plt.Figure) -> bytes:
    png = figure_png_bytes(fig, dpi=90)
    plt.close(fig)
    return png


def _category_order(cats: pd.Series) -> list[str]:
    known = [c for c in CATEGORY_ORDER_12 if c in set(cats)]
    return known + sorted(set(cats) - set(known))


def manhattan(result: PhenotypeResult) -> bytes:
    """One panel per family: best −log10 p per phecode (▲ positive, ▼ negative association),
    x grouped and coloured by category; nominal p = 0.05 (dotted), per-phecode line 0.05/K
    (dash-dot) and the family-wise Bonferroni line (dashed)."""
    fams = list(result.families)
    ph = result.cohort.phecodes.copy()
    order = _category_order(ph["category"])
    ph["cat_rank"] = ph["category"].map({c: i for i, c in enumerate(order)})
    ph["num"] = pd.to_numeric(ph["phecode"].str.extract(r"([\d.]+)")[0], errors="coerce")
    ph = ph.sort_values(["cat_rank", "num", "phecode"]).reset_index(drop=True)
    xpos = pd.Series(np.arange(len(ph)), index=ph["phecode"])
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(len(fams), 1, figsize=(11, 2.4 * len(fams) + 0.8), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], fams):
        fr = result.families[name]
        p, z = fr.screen.p, fr.screen.z
        filled = np.where(np.isfinite(p), p, np.inf)
        j = filled.argmin(1)
        best = filled[np.arange(len(j)), j]
        sign = z[np.arange(len(j)), j]
        x = xpos.reindex(result.cohort.phecodes["phecode"]).to_numpy()
        y = -np.log10(np.clip(best, 1e-300, 1))
        cats = result.cohort.phecodes["category"].map({c: i for i, c in enumerate(order)}).to_numpy()
        for up, marker in ((True, "^"), (False, "v")):
            sel = (sign > 0) == up
            ax.scatter(x[sel], y[sel], c=[cmap(c % 20) for c in cats[sel]], marker=marker, s=22, edgecolors="none")
        ax.axhline(-np.log10(0.05), ls=":", c="grey", lw=0.8, label="p = 0.05")
        ax.axhline(-np.log10(result.metadata["phecode_line_p"]), ls="-.", c="tab:blue", lw=0.8, label="0.05 / phecodes")
        ax.axhline(-np.log10(fr.bonferroni_p), ls="--", c="tab:red", lw=0.8, label="Bonferroni (family)")
        top = max(float(np.nanmax(y, initial=1.0)), -np.log10(fr.bonferroni_p))
        ax.set_ylim(bottom=0, top=top * 1.6)  # the upper band holds the labels, above every marker
        _label_top_hits(ax, result.cohort.phecodes, x, y, best < fr.bonferroni_p, len(ph))
        ax.set_ylabel("best −log10 p")
        if ax is axes[0, 0]:
            ax.legend(fontsize=6, loc="upper left")
        ax.set_title(f"{FAMILY_TITLES.get(name, name)}: best of {p.shape[1]} features per phecode", fontsize=9)
    starts = ph.groupby("cat_rank").head(1).index.to_numpy()
    mids = [(s + e) / 2 for s, e in zip(starts, list(starts[1:]) + [len(ph)])]
    ax = axes[-1, 0]
    ax.set_xticks(mids)
    ax.set_xticklabels([order[int(r)] for r in ph.loc[starts, "cat_rank"]], rotation=35, ha="right", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _label_top_hits(ax: plt.Axes, phecodes: pd.DataFrame, x: np.ndarray, y: np.ndarray, hit: np.ndarray,
                    n_x: int, n_labels: int = 3) -> None:
    """Label the strongest hits in rows of their own in the empty upper band of the panel, each with a
    line to its marker, so labels neither overlap each other or the markers nor leave the axes."""
    order = [k for k in np.argsort(-y) if hit[k]][:n_labels]
    for rank, k in enumerate(sorted(order, key=lambda k: x[k])):
        frac = (x[k] + 0.5) / max(n_x, 1)
        right = frac > 0.6
        text = f"{phecodes['phecode'].iloc[k]} {str(phecodes['phecode_string'].iloc[k])[:32]}"
        ax.annotate(text, (x[k], y[k]), xytext=(min(max(frac, 0.02), 0.98), 0.95 - 0.11 * rank),
                    textcoords="axes fraction", ha="right" if right else "left", va="top", fontsize=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"}, annotation_clip=False)


def family_figure(result: PhenotypeResult) -> bytes:
    """Median Šidák strength (−log10 of the family-size-adjusted best p) per category and family."""
    b = result.best
    order = _category_order(b["category"])
    wide = b.groupby(["category", "family"])["strength"].median().unstack().reindex(order)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / max(wide.shape[1], 1)
    for i, fam in enumerate(wide.columns):
        ax.bar(np.arange(len(wide)) + i * width, wide[fam].to_numpy(), width, label=FAMILY_TITLES.get(fam, fam))
    ax.set_xticks(np.arange(len(wide)) + 0.4 - width / 2)
    ax.set_xticklabels(wide.index, rotation=35, ha="right", fontsize=7)
    ax.axhline(-np.log10(0.05), ls=":", c="grey", lw=0.8)
    ax.set_ylabel("median −log10 Šidák-adjusted best p")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def intraclass_figure(classes: pd.DataFrame, test: dict) -> bytes:
    """Mean within-class cosine distance by significance pattern, one panel per branch."""
    branches = list(dict.fromkeys(classes["branch"]))
    fig, axes = plt.subplots(1, len(branches), figsize=(3.2 * len(branches), 3), squeeze=False)
    for ax, b in zip(axes[0], branches):
        c = classes[classes["branch"] == b]
        groups = [c.loc[c.status == s, "mean_cosine_distance"].dropna().to_numpy() for s in ("uniform", "mixed", "none")]
        for i, g in enumerate(groups):
            ax.scatter(np.full(len(g), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(g)), g, s=14)
            if len(g):
                ax.hlines(np.median(g), i - 0.3, i + 0.3, colors="k")
        ax.set_xticks([0, 1, 2])
        ax.set_xticklabels(["uniform", "mixed", "none"])
        ax.set_title(b, fontsize=9)
        ax.set_ylabel("mean pairwise cosine distance")
    p = test.get("permutation_p")
    fig.suptitle(f"permutation p (mixed > uniform, within branch) = {p:.4g}" if p is not None else
                 test.get("note", ""), fontsize=9)
    fig.tight_layout()
    return _png(fig)


def top_hits(result: PhenotypeResult, n: int = 20) -> pd.DataFrame:
    """The ``n`` strongest prototype associations (by screen p) with their refit OR; the label says
    "latent, no source ECG" for a prototype without a source (only present when included on request)."""
    t = result.families["prototype"].table
    cols = ["feature_id", "label", "branch", "prototype_class", "phecode", "phecode_string", "n_cases", "auc", "p", "q_bh",
            "or", "or_ci_low", "or_ci_high", "refit_method", "refit_flag"]
    return t.sort_values("p", kind="mergesort").head(n)[cols].reset_index(drop=True)


def write_report(result: PhenotypeResult, out_dir: str | Path,
                 thumbnail: Callable[[str], bytes | None] | None = None, thumbnail_note: str = "") -> Path:
    """``report.html`` in ``out_dir``. ``thumbnail(feature_id)`` returns a PNG of the prototype's
    source ECG (or None); without it the top-hits table has no thumbnails and says why."""
    md = result.metadata
    body = ["<p>Protocol: ecgproto's own reconstruction (docs/readme/phenotype.md); it does not reproduce any "
            "published numbers.</p>"]
    body.append("<h2>Cohort flow</h2>" + table(cohort_flow_table(md["cohort_flow"])))
    dm = md["diagnosis_mapping"]
    body.append(f"<p>Diagnosis rows mapped to phecode {esc(md['phecode_map']['version'])}: {dm['rows_mapped']:,} of "
                f"{dm['rows']:,} ({dm['rows_mapped'] / max(dm['rows'], 1):.1%}); unknown ICD version: "
                f"{dm['rows_unknown_version']:,}.</p>")
    body += [f"<div class=note>{esc(n)}</div>" for n in result.notes]
    fam = pd.DataFrame([{"family": k, **v} for k, v in md["families"].items()])
    body.append("<h2>Feature families</h2>" + _table(fam, 3))
    body.append("<h2>Manhattan plots</h2>" + figure(manhattan(result), "Best feature per phecode; ▲ positive, ▼ negative "
                "association; dotted p = 0.05, dash-dot 0.05/K phecodes, dashed family-wise Bonferroni"))
    body.append("<h2>Family comparison</h2>" + figure(family_figure(result), "Strength per category (family-size "
                "adjusted: Šidák on the best p)"))
    body.append(_table(result.comparison, 3))
    body.append("<p class=note>Caveat: the best of 1,037 features beats the best of 71 by chance alone. Strength is "
                "therefore Šidák-adjusted for the number of features, and, when permutations were run, the excess "
                "over the permutation null of the best −log10 p is compared too (feature rows shuffled).</p>")
    hits = top_hits(result)
    body.append("<h2>Top prototype hits</h2>")
    if thumbnail is not None and len(hits):
        cells = []
        for fid in hits["feature_id"].drop_duplicates().head(8):
            png = thumbnail(fid)
            if png is not None:
                cells.append(figure(png, f"{fid}: source ECG of the prototype, matching window highlighted"))
        body += cells
    else:
        body.append(f"<p class=note>No prototype thumbnails: {esc(thumbnail_note or 'no source archive')}.</p>")
    body.append(_table(hits, 4))
    if result.intraclass is not None:
        classes, test, _ = result.intraclass
        body.append("<h2>Intra-class prototype distances</h2>" + figure(intraclass_figure(classes, test),
                    "Mean pairwise cosine distance of a class's prototypes, by significance pattern"))
        body.append(_table(pd.DataFrame([test]), 4) + _table(classes, 3))
    body.append("<h2>Cross-validated AUROC</h2>")
    if result.auroc:
        for code, t in result.auroc.items():
            body.append(f"<h3>phecode {esc(code)} (n = {t.attrs.get('n')}, cases = {t.attrs.get('n_cases')})</h3>"
                        + _table(t, 3))
    else:
        body.append("<p>No selected phecode had enough cases.</p>")
    body.append("<h2>Run metadata</h2>" + table(run_metadata_table(md)))
    return write_text_atomic(Path(out_dir) / "report.html", page("ecgproto phenotype report", body))


def run_metadata_table(md: dict) -> pd.DataFrame:
    """Package version, phecode map (version, source, sha256 per file), thresholds and seeds as
    readable rows (all of it is in ``run_metadata.json``)."""
    rows = [("ecgproto version", md.get("package_version", "–"))]
    pmap = md.get("phecode_map") or {}
    rows += [("phecode map", f"version {pmap.get('version', '–')}, {pmap.get('source', '–')}")]
    rows += [(f"sha256 of {name}", digest) for name, digest in (pmap.get("sha256") or {}).items()]
    for section in ("thresholds", "seeds"):
        for key, value in (md.get(section) or {}).items():
            rows.append((f"{section[:-1] if section == 'seeds' else 'threshold'}: {key.replace('_', ' ')}", value))
    return pd.DataFrame({"item": [r[0] for r in rows], "value": [str(r[1]) for r in rows]})
