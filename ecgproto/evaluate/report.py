"""Write an evaluation: one self-contained HTML page + metrics.json, per_label.csv,
subgroups.csv, predictions.parquet and bootstrap_indices.npz (so every figure can be recomputed).

The HTML embeds every plot as a base64 PNG and uses inline CSS only: no scripts, no
external stylesheets, fonts or links, so it opens in a browser without network access.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.data.labels import all_labels
from ecgproto.evaluate import plots
from ecgproto.evaluate.bootstrap import TOO_FEW_TEXT
from ecgproto.evaluate.calibration import calibration_fit, expected_calibration_error
from ecgproto.evaluate.evaluation import Evaluation
from ecgproto.evaluate.tasks import output_codes, record_mask
from ecgproto.atomic import write_atomic, write_text_atomic
from ecgproto.explain.html import esc, png_data_uri

REPORT_FILES = {
    "report.html": "this report",
    "metrics.json": "settings, task summaries with intervals, subgroups, calibration, prototype quality",
    "per_label.csv": "one row per task and label: counts, AUROC/AUPRC/F1/sensitivity/specificity with intervals, Brier, ECE",
    "subgroups.csv": "fused model on all labels per subgroup",
    "predictions.parquet": "ecg_id, patient_id, label__CODE, prob__CODE (fused) and prob_<branch>__CODE per record",
    "bootstrap_indices.npz": "patients, record→patient index and the drawn patient indices (B, n_patients)",
    "thresholds.csv": "one row per output and label: decision threshold and the rule that chose it",
    "comparison.csv": "with --compare: macro AUROC per task of both models and their paired difference, with intervals",
    "compare_predictions.parquet": "with --compare: the other model's probabilities, laid out as predictions.parquet",
}
THRESHOLD_RULE_TEXT = {"f1": "F1-maximising", "capped": "F1 threshold raised to the rate cap",
                       "prevalence": "too few validation positives: predicted at the prevalence",
                       "not_trained": "no training positives: never predicted"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;color:#111;max-width:1200px;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1em}
table{border-collapse:collapse;font-size:.8em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.undef td{color:#888;background:#fafafa}tr.few td{background:#fff8e6}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.4em .8em;margin:.6em 0}
figure{margin:.8em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444}
.gallery{display:flex;flex-wrap:wrap;gap:.6em}.gallery figure{width:380px}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}.wide{overflow-x:auto;max-width:100%}
"""


@dataclass
class ReportContext:
    """What was evaluated, for the header and the model card (plain strings/numbers)."""

    title: str = "ecgproto evaluation report"
    checkpoint: str = ""
    data: str = ""
    split: str = "test"
    model: dict[str, Any] = field(default_factory=dict)  # package_version, config_hash, training data, ...
    prototype: dict[str, Any] | None = None  # output of prototype_quality + agreement (see run.py)
    gallery: list[tuple[bytes, str]] = field(default_factory=list)  # (PNG, caption)
    notes: list[str] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """JSON-safe plain data (NaN/inf → null, numpy scalars → Python)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _clean(value.to_dict(orient="records"))
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is pd.NA:
        return None
    return value


def _num(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def _ci(row: Any, m: str, d: int = 3) -> str:
    """'value [lo, hi]', or 'undefined' for a NaN value."""
    v = row.get(m, np.nan)
    if v is None or not math.isfinite(float(v)):
        return "undefined"
    lo, hi = row.get(f"{m}_lo", np.nan), row.get(f"{m}_hi", np.nan)
    if lo is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        too_few = row.get("ci_too_few") in (True,)  # True or numpy True; a missing column reads NaN
        return f"{v:.{d}f} [{TOO_FEW_TEXT}]" if too_few else f"{v:.{d}f}"
    return f"{v:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if _looks_numeric(c) else f"<td>{esc(c)}</td>" for c in r)
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _looks_numeric(text: str) -> bool:
    head = text.split(" ")[0].lstrip("−-")
    return head.replace(".", "", 1).isdigit() or text in ("–", "undefined")


def _figure(png: bytes, caption: str) -> str:
    return f'<figure><img src="{png_data_uri(png)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def predictions_frame(ev: Evaluation, probs: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Per-record predictions: ecg_id, patient_id, label__CODE, prob__CODE, prob_<branch>__CODE.

    ``probs`` (output → (N, C_output)) replaces the evaluated model's, e.g. a compared model's.
    """
    p = ev.predictions
    cols: dict[str, Any] = {"ecg_id": p.ecg_ids, "patient_id": pd.Series(p.patient_ids).astype(str).to_numpy()}
    for j, code in enumerate(all_labels()):
        cols[f"label__{code}"] = p.labels[:, j].astype(np.uint8)
    for name, probs in (p.probs if probs is None else probs).items():
        prefix = "prob" if name == "fused" else f"prob_{name}"
        for j, code in enumerate(output_codes(name)):
            cols[f"{prefix}__{code}"] = probs[:, j].astype(np.float32)
    return pd.DataFrame(cols)


def _atomic_frame(frame: pd.DataFrame, path: Path, kind: str) -> None:
    if kind == "csv":
        write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_report(ev: Evaluation, out_dir: str | Path, ctx: ReportContext | None = None) -> dict[str, Path]:
    """Write all report files into ``out_dir``; returns {file name: path}."""
    ctx = ctx or ReportContext()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    _atomic_frame(ev.per_label, out / "per_label.csv", "csv")
    _atomic_frame(ev.subgroups, out / "subgroups.csv", "csv")
    _atomic_frame(predictions_frame(ev), out / "predictions.parquet", "parquet")
    written.update({n: out / n for n in ("per_label.csv", "subgroups.csv", "predictions.parquet")})
    if ev.plan is not None:
        written["bootstrap_indices.npz"] = ev.plan.save(out / "bootstrap_indices.npz")
    rules = ev.predictions.threshold_rules
    if rules is not None:
        _atomic_frame(rules, out / "thresholds.csv", "csv")
        written["thresholds.csv"] = out / "thresholds.csv"
    if ev.comparison is not None:
        _atomic_frame(ev.comparison.table, out / "comparison.csv", "csv")
        _atomic_frame(predictions_frame(ev, ev.comparison.probs_b), out / "compare_predictions.parquet", "parquet")
        written.update({n: out / n for n in ("comparison.csv", "compare_predictions.parquet")})
    metrics = {
        "settings": ev.settings,
        "context": {"checkpoint": ctx.checkpoint, "data": ctx.data, "split": ctx.split, "model": ctx.model},
        "summary": ev.summary,
        "labels_per_record": labels_per_record(ev),
        "thresholds": _thresholds_json(ev),
        "comparison": _comparison_json(ev),
        "subgroups": ev.subgroups,
        "calibration": {k: v for k, v in ev.calibration.items()},
        "calibration_fit": calibration_fits(ev),
        "prototype_quality": _prototype_json(ctx.prototype),
        "files": {k: v for k, v in REPORT_FILES.items() if k in written or k in ("report.html", "metrics.json")},
    }
    written["metrics.json"] = write_text_atomic(out / "metrics.json", json.dumps(_clean(metrics), indent=2))
    written["report.html"] = write_text_atomic(out / "report.html", render_html(ev, ctx))
    return written


def labels_per_record(ev: Evaluation) -> dict[str, float] | None:
    """Mean predicted and true labels per record of the fused model on all 71 labels at its thresholds
    (None without thresholds): ``predicted``, ``true`` and their ``ratio``."""
    if "mean_predicted_labels" not in ev.summary or "fused:all71" not in set(ev.summary["task"]):
        return None
    head = ev.summary.set_index("task").loc["fused:all71"]
    predicted, true = float(head["mean_predicted_labels"]), float(head["mean_true_labels"])
    if not math.isfinite(predicted):
        return None
    return {"predicted": predicted, "true": true, "ratio": predicted / true if true > 0 else float("nan")}


def _non_f1_rules(ev: Evaluation) -> pd.DataFrame:
    """Rows of the threshold table whose rule is not plain F1 (empty when rules are unknown)."""
    rules = ev.predictions.threshold_rules
    return pd.DataFrame() if rules is None else rules[rules["rule"] != "f1"].reset_index(drop=True)


def _thresholds_json(ev: Evaluation) -> dict[str, Any]:
    rules = ev.predictions.threshold_rules
    out: dict[str, Any] = {"source": ev.settings["threshold_source"], "rule": ev.settings["threshold_rule"]}
    if rules is not None:
        out["rule_counts"] = {o: r["rule"].value_counts().to_dict() for o, r in rules.groupby("output", sort=False)}
        out["labels_not_f1"] = _non_f1_rules(ev)
    return out


def _comparison_json(ev: Evaluation) -> dict[str, Any] | None:
    comparison = ev.comparison
    if comparison is None:
        return None
    return {"a": {"checkpoint": comparison.name_a, "model_kind": comparison.kind_a},
            "b": {"checkpoint": comparison.name_b, "model_kind": comparison.kind_b},
            "metric": "macro AUROC over the labels defined in the scored records; paired patient bootstrap "
                      "(the same resamples for both models as bootstrap_indices.npz)",
            "tasks": comparison.table}


def _prototype_json(proto: dict[str, Any] | None) -> dict[str, Any] | None:
    if proto is None:
        return None
    return {k: v for k, v in proto.items() if not isinstance(v, bytes)}


def render_html(ev: Evaluation, ctx: ReportContext) -> str:
    """The report page as one HTML string."""
    s = ev.settings
    parts = [f"<h1>{esc(ctx.title)}</h1>", _header(ev, ctx)]
    parts.append(_summary_section(ev))
    if ev.comparison is not None:
        parts.append(_comparison_section(ev))
    parts.append(_threshold_section(ev))
    parts.append(_per_label_section(ev))
    parts.append(_curves_section(ev))
    parts.append(_calibration_section(ev))
    parts.append(_subgroup_section(ev))
    parts.append(_prototype_section(ctx))
    parts.append(_model_card(ev, ctx))
    optional = {"thresholds.csv": ev.predictions.threshold_rules is not None,
                "comparison.csv": ev.comparison is not None, "compare_predictions.parquet": ev.comparison is not None}
    files = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in REPORT_FILES.items() if optional.get(k, True))
    parts.append(f"<h2>Files</h2><ul>{files}</ul><p>Every number above can be recomputed from "
                 f"<code>predictions.parquet</code> and <code>bootstrap_indices.npz</code> (seed {esc(s['bootstrap_seed'])}).</p>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(ctx.title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _header(ev: Evaluation, ctx: ReportContext) -> str:
    s = ev.settings
    rows = [
        ["checkpoint", ctx.checkpoint or "–"], ["data", ctx.data or "–"], ["split", ctx.split],
        ["records scored", str(s["n_records"])], ["patients", str(s["n_patients"])],
        ["test-set convention", f"{s['convention']}: {s['convention_text']}"],
        ["confidence intervals", f"{s['ci_method']}, {int(round(100 * s['ci_level']))}% level, "
                                 f"{s['n_bootstrap']} resamples of {s['n_patients']} patients"
         if s["n_bootstrap"] else "none (n_bootstrap = 0)"],
        ["label set of macro intervals", s.get("macro_ci_label_set", "–")],
        ["decision thresholds", f"{s['threshold_source']}; rule: {s['threshold_rule']}"],
        ["Fmax", f"{s['fmax']}, threshold grid step {s['fmax_step']}"],
        ["undefined metrics", s["undefined"]],
    ]
    rows += [[str(k), str(v)] for k, v in ctx.model.items() if not isinstance(v, (dict, list))]
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in ctx.notes)
    return "<h2>What was evaluated</h2>" + _table(["item", "value"], rows) + notes


SUMMARY_COLS = [("macro_auroc", "macro AUROC"), ("weighted_auroc", "weighted AUROC"), ("macro_auprc", "macro AUPRC"),
                ("fmax", "Fmax"), ("macro_f1", "macro F1"), ("macro_sensitivity", "macro sens."),
                ("macro_specificity", "macro spec."), ("macro_brier", "macro Brier")]


def _summary_section(ev: Evaluation) -> str:
    if ev.summary.empty:
        return "<h2>Summary</h2><p>No task could be scored.</p>"
    rows = []
    for r in ev.summary.to_dict(orient="records"):
        rows.append([r["task"], str(r["n_records"]), str(r["n_patients"]),
                     f"{r['n_labels_defined']}/{r['n_labels']}", str(r["n_labels_few_pos"])]
                    + [_ci(r, m) for m, _ in SUMMARY_COLS] + [_labels_per_record(r)]
                    + [_num(r["macro_auroc_other_convention"])])
    other = "drop_unlabeled" if ev.settings["convention"] == "keep_all" else "keep_all"
    header = (["task (output:label set)", "records", "patients", "labels defined", "labels < 10 pos."]
              + [n for _, n in SUMMARY_COLS] + ["labels / record: predicted / true"]
              + [f"macro AUROC ({other}, no CI)"])
    level = int(round(100 * ev.settings["ci_level"]))
    return ("<h2>Summary</h2>"
            f"<p>Values are dataset-level over the whole split, with {level}% patient-level bootstrap intervals in "
            "brackets. Macro averages are over labels defined in the scored records (a label with no positive or no "
            "negative is undefined and left out, never counted as 0.5). Weighted AUROC weights labels by their "
            "number of positives. The label set of a macro interval is fixed by the whole split. AUPRC of labels "
            "with very few positives is biased upwards in resamples (a positive drawn twice raises precision), so "
            "AUPRC intervals can sit above the point estimate. Branch outputs (rhythm, morphology, global) are each scored on their own label "
            "group. Threshold metrics use per-label thresholds; aggregated benchmark targets have none.</p>"
            + _table(header, rows))


def _labels_per_record(row: dict[str, Any]) -> str:
    predicted, true = row.get("mean_predicted_labels", np.nan), row.get("mean_true_labels", np.nan)
    if predicted is None or not math.isfinite(float(predicted)):
        return "–"
    return f"{predicted:.2f} / {true:.2f}"


def _comparison_section(ev: Evaluation) -> str:
    comparison = ev.comparison
    level = int(round(100 * ev.settings["ci_level"]))
    rows = [[r["task"], str(r["n_labels"]), str(r["n_records"]), _ci(r, "a"), _ci(r, "b"), _ci(r, "diff")]
            for r in comparison.table.to_dict(orient="records")]
    return ("<h2>Paired comparison</h2>"
            f"<p>A = <code>{esc(comparison.name_a)}</code> ({esc(comparison.kind_a)}), B = "
            f"<code>{esc(comparison.name_b)}</code> ({esc(comparison.kind_b)}), on the same "
            f"{ev.settings['n_records']} records. Macro AUROC over the labels with a positive and a negative among the "
            f"scored records (a fixed set: a label undefined in a resample keeps its whole-split value there), with "
            f"{level}% intervals from the same patient resamples for both models, so the interval of A − B is "
            "paired. An interval of A − B that excludes 0 is a difference beyond resampling noise.</p>"
            + _table(["task (output:label set)", "labels", "records", "A: macro AUROC", "B: macro AUROC", "A − B"], rows))


def _threshold_section(ev: Evaluation) -> str:
    s = ev.settings
    parts = ["<h2>Decision thresholds</h2>", f"<p>Source: {esc(s['threshold_source'])}. Rule: {esc(s['threshold_rule'])}.</p>"]
    counts = labels_per_record(ev)
    if counts is not None:
        parts.append(f"<p>Fused model, all 71 labels: on average <b>{counts['predicted']:.2f}</b> predicted labels per "
                     f"record against <b>{counts['true']:.2f}</b> true labels (ratio {_num(counts['ratio'], 2)}).</p>")
    rules = ev.predictions.threshold_rules
    if rules is None:
        return "".join(parts) + "<p>How each threshold was chosen is unknown (thresholds were not tuned here).</p>"
    tally = "; ".join(f"{o}: " + ", ".join(f"{n} {rule}" for rule, n in r["rule"].value_counts().items())
                      for o, r in rules.groupby("output", sort=False))
    parts.append(f"<p>Labels per rule: {esc(tally)}.</p>")
    other = _non_f1_rules(ev)
    if len(other):
        table = _table(["output", "label", "rule", "validation positives", "prevalence", "validation rate predicted",
                        "threshold"],
                       [[r["output"], r["label"], THRESHOLD_RULE_TEXT.get(r["rule"], r["rule"]), str(r["n_val_pos"]),
                         _num(r["prevalence"], 4), _num(r["val_rate"], 4), _num(r["threshold"], 4)]
                        for r in other.to_dict(orient="records")])
        parts.append(f"<details><summary>The {len(other)} thresholds not chosen by plain F1</summary>{table}</details>")
    return "".join(parts)


def _per_label_section(ev: Evaluation) -> str:
    parts = ["<h2>Per-label results</h2>"]
    pl = ev.per_label
    if pl.empty:
        return parts[0] + "<p>No labels.</p>"
    fused = pl[pl["task"] == "fused:all71"]
    if len(fused):
        parts.append(_figure(plots.forest_plot(fused, "Fused model, all 71 labels"),
                             "Per-label AUROC (left) and AUPRC (right) with bootstrap intervals, sorted by AUROC; "
                             "n+ = positives in the scored records; colour = branch group; grey ticks = prevalence."))
    branch = pl[pl["output"].isin(("rhythm", "morphology", "global"))]
    if len(branch):
        parts.append("<details><summary>Branch classifiers (each on its own label group): per-label forest plot"
                     "</summary>" + _figure(plots.forest_plot(branch, "Branch classifiers, each on its own group"),
                                            "Per-label AUROC/AUPRC of the rhythm, morphology and global branch "
                                            "classifiers; colour = branch") + "</details>")
    parts.append(_label_table(fused if len(fused) else pl))
    return "".join(parts)


def _threshold_text(r: dict[str, Any]) -> str:
    """The label's decision threshold, or why it has none: 'not trained' (no training positives) /
    'never' (above every probability)."""
    th = r.get("threshold", np.nan)
    if r.get("threshold_rule") == "not_trained":
        return "not trained"
    if th is None or not math.isfinite(float(th)):
        return "–"
    return "never" if th > 1.0 else _num(th)


def _counts_text(r: dict[str, Any]) -> str:
    """'TP / FP / FN / TN' at the threshold ('–' without one)."""
    if not all(isinstance(r.get(k), (int, float)) and math.isfinite(r[k]) for k in ("tp", "fp", "fn", "tn")):
        return "–"
    return " / ".join(str(int(r[k])) for k in ("tp", "fp", "fn", "tn"))


def _label_table(d: pd.DataFrame) -> str:
    rows, classes = [], []
    for r in d.to_dict(orient="records"):
        undefined = not r["defined"]
        classes.append("undef" if undefined else ("few" if r["n_pos"] < 10 else ""))
        reason = "not trained" if r.get("threshold_rule") == "not_trained" else "undefined"
        scores = ([reason] + ["–"] * 6 if undefined else
                  [_ci(r, "auroc"), _ci(r, "auprc"), _ci(r, "f1"), _ci(r, "sensitivity"), _ci(r, "specificity"),
                   _num(r.get("brier", np.nan)), _num(r.get("ece", np.nan))])
        rows.append([r["label"], r["group"], str(r["n_pos"]), str(r["n_neg"]), *scores[:2], _threshold_text(r),
                     _counts_text(r), *scores[2:]])
    header = ["label", "group", "n+", "n−", "AUROC", "AUPRC", "threshold", "TP / FP / FN / TN", "F1", "sensitivity",
              "specificity", "Brier", "ECE"]
    return ("<p>Rows in grey: undefined (no positive or no negative among the scored records), so no metric is "
            "shown for them; \"not trained\": the label had no training positives either and is never predicted. "
            "Rows in yellow: fewer than 10 positives (wide intervals, interpret with care). TP / FP / FN / TN: "
            "records at the label's decision threshold.</p>"
            + _table(header, rows, classes))


def _top_labels(ev: Evaluation) -> tuple[np.ndarray, np.ndarray, list[str]]:
    p = ev.predictions
    mask = p.labels.any(1) if ev.settings["convention"] == "drop_unlabeled" else np.ones(len(p.labels), bool)
    y, pr = p.labels[mask], p.probs["fused"][mask]
    order = [j for j in np.argsort(-y.sum(0), kind="stable") if y[:, j].any()][: ev.settings["n_top_curves"]]
    return y[:, order], pr[:, order], [all_labels()[j] for j in order]


def _curves_section(ev: Evaluation) -> str:
    y, p, names = _top_labels(ev)
    if not names:
        return "<h2>ROC and precision–recall curves</h2><p>No label has a positive record.</p>"
    return ("<h2>ROC and precision–recall curves</h2>"
            f"<p>The {len(names)} labels with the most positives (fused model); dashed = chance.</p>"
            + _figure(plots.curve_grid(y, p, names, "roc"), "ROC curves")
            + _figure(plots.curve_grid(y, p, names, "pr"), "Precision–recall curves"))


def calibration_fits(ev: Evaluation) -> pd.DataFrame:
    """Per reliability diagram (pooled, then the labels shown): predictions, ECE, calibration slope and
    intercept (:func:`~ecgproto.evaluate.calibration.calibration_fit`) of the fused probabilities."""
    p = ev.predictions
    mask = record_mask(p.labels, ev.settings["convention"] == "drop_unlabeled")
    y, prob = p.labels[mask], p.probs["fused"][mask]
    codes = list(all_labels())
    rows = []
    for name, bins in ev.calibration.items():
        cols = slice(None) if name not in codes else codes.index(name)
        fit = calibration_fit(y[:, cols], prob[:, cols])
        rows.append({"calibration": name, "n": int(fit["n"]), "ece": expected_calibration_error(bins),
                     "slope": fit["slope"], "intercept": fit["intercept"]})
    return pd.DataFrame(rows)


def calibration_verdict(fit: dict[str, Any] | pd.Series) -> str:
    """'intercept −2.01: probabilities too high on average; slope 1.16: spread too narrow' in words."""
    a, b = float(fit["intercept"]), float(fit["slope"])
    level = ("too high on average (over-prediction)" if a < -0.1 else "too low on average (under-prediction)"
             if a > 0.1 else "right on average")
    spread = ("not estimable" if not math.isfinite(b) else "too extreme (overconfident)" if b < 0.9 else
              "too moderate (underconfident)" if b > 1.1 else "about right")
    return f"intercept {_num(a, 2)}: probabilities {level}; slope {_num(b, 2)}: their spread {spread}"


def _calibration_section(ev: Evaluation) -> str:
    fits = calibration_fits(ev)
    pooled = fits.iloc[0]
    rows = [[r["calibration"], str(r["n"]), _num(r["ece"]), _num(r["slope"], 2) if math.isfinite(r["slope"])
             else "not estimable (classes separated)", _num(r["intercept"], 2)] for r in fits.to_dict("records")]
    edges = sorted({float(lo) for b in ev.calibration.values() for lo in b["bin_lo"]})
    bins = [[name] + [str(int(b.set_index("bin_lo")["count"].get(lo, 0))) for lo in edges]
            for name, b in ev.calibration.items()]
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    return ("<h2>Calibration</h2>"
            f"<p>Reliability diagrams of the fused probabilities (uniform bins; marker area ∝ number of predictions). "
            f"Pooled over all labels: ECE {_num(pooled['ece'])}, {esc(calibration_verdict(pooled))}. The slope is b of "
            "y ~ a + b·logit(p) (1 = ideal, below 1 = overconfident); the intercept is a with the slope fixed at 1 "
            "(0 = ideal, below 0 = probabilities too high on average). Pooled calibration is dominated by the many "
            "easy negatives; per-label ECE is in the per-label table.</p>"
            + _table(["reliability diagram", "predictions", "ECE", "slope", "intercept"], rows)
            + _figure(plots.reliability_grid(ev.calibration), "Reliability diagrams")
            + "<details><summary>Predictions per probability bin</summary>"
            + _table(["diagram"] + [f"{lo:.1f}–{lo + width:.1f}" for lo in edges], bins) + "</details>")


def _subgroup_section(ev: Evaluation) -> str:
    if ev.subgroups.empty:
        return "<h2>Subgroups</h2><p>No per-record information (sex, age, quality flags) was available.</p>"
    overall = ev.summary.loc[ev.summary["task"] == "fused:all71", "macro_auroc"]
    min_n = int(ev.settings.get("subgroup_min_records", 20))
    fig = plots.subgroup_plot(ev.subgroups, float(overall.iloc[0]) if len(overall) else float("nan"), min_n)
    rows = []
    for r in ev.subgroups.to_dict(orient="records"):
        small = r["n_records"] < min_n and math.isfinite(float(r.get("macro_auroc", np.nan)))
        auroc = f"{r['macro_auroc']:.3f} (N < {min_n}: no interval)" if small else _ci(r, "macro_auroc")
        rows.append([r["variable"], r["level"], str(r["n_records"]), str(r["n_patients"]),
                     str(r.get("n_labels_defined", "–")), auroc, _num(r.get("weighted_auroc", np.nan)),
                     _num(r.get("macro_auprc", np.nan)), _num(r.get("fmax", np.nan)), _num(r.get("macro_brier", np.nan))])
    return ("<h2>Subgroups</h2><p>Fused model on all labels within each subgroup (same convention; intervals from "
            "the same patient resamples restricted to the subgroup). Macro AUROC averages over the labels defined "
            "within the subgroup, so subgroups with fewer defined labels are not directly comparable. Subgroups "
            f"with fewer than {min_n} records get no interval (hollow points): their estimates are anecdotes.</p>"
            + _figure(fig, "Macro AUROC by subgroup")
            + _table(["variable", "level", "records", "patients", "labels defined", "macro AUROC", "weighted AUROC",
                      "macro AUPRC", "Fmax", "macro Brier"], rows))


def _prototype_section(ctx: ReportContext) -> str:
    q = ctx.prototype
    if q is None:
        return "<h2>Prototype quality</h2><p>Not available (evaluated from prediction arrays only).</p>"
    if q.get("model_kind") == "blackbox":
        return f"<h2>Prototype quality</h2><p>{esc(q['note'])}: the model has plain linear heads, nothing to show here.</p>"
    items = [["prototypes", str(q.get("n_prototypes", "–"))], ["projected onto training ECGs", str(q.get("projected"))]]
    if q.get("projected"):
        per_branch = ", ".join(f"{k}: {v}" for k, v in q.get("unique_source_ecgs_per_branch", {}).items())
        items.append(["unique source ECGs", f"{q['unique_source_ecgs']} ({per_branch})"])
    items.append([f"near-duplicate pairs (cosine > {q['near_duplicate_cosine']})", str(q["n_near_duplicate_pairs"])])
    for key, text in (("top_contribution_agreement", "predictions whose top fusion contribution is a prototype of the predicted class"),
                      ("nearest_prototype_agreement", "predictions whose most similar prototype (label's branch) is of the predicted class")):
        if key in q:
            a = q[key]
            items.append([text, f"{_num(a['fraction'])} of {a['n_predictions']} predictions"])
    parts = ["<h2>Prototype quality</h2>", _table(["item", "value"], items)]
    if q.get("agreement_note"):
        parts.append(f'<p class="note">{esc(q["agreement_note"])}</p>')
    spread = q.get("class_spread")
    if isinstance(spread, pd.DataFrame) and len(spread):
        rows = [[r["branch"], r["class_code"], str(r["n_prototypes"]), _num(r["unique_source_ecgs"], 0),
                 _num(r["projection_similarity_min"]), _num(r["projection_similarity_max"]),
                 _num(r["pairwise_cosine_mean"]), _num(r["pairwise_cosine_max"])] for r in spread.to_dict(orient="records")]
        parts.append("<details><summary>Per-class prototype spread</summary>" + _table(
            ["branch", "class", "prototypes", "unique source ECGs", "projection sim. min", "projection sim. max",
             "pairwise cosine mean", "pairwise cosine max"], rows) + "</details>")
    dups = q.get("near_duplicates")
    if isinstance(dups, pd.DataFrame) and len(dups):
        rows = [[r["branch"], str(r["prototype_a"]), r["class_a"], str(r["prototype_b"]), r["class_b"], _num(r["cosine"], 4)]
                for r in dups.head(50).to_dict(orient="records")]
        parts.append("<details><summary>Near-duplicate prototype pairs (first 50)</summary>" + _table(
            ["branch", "prototype A", "class A", "prototype B", "class B", "cosine"], rows) + "</details>")
    if ctx.gallery:
        figs = "".join(_figure(png, cap) for png, cap in ctx.gallery)
        parts.append(f"<h3>Prototype gallery</h3><p>Source training ECGs of some prototypes, the prototype's window "
                     f"highlighted.</p><div class=\"gallery\">{figs}</div>")
    return "".join(parts)


def _model_card(ev: Evaluation, ctx: ReportContext) -> str:
    s = ev.settings
    head = ev.summary[ev.summary["task"] == "fused:all71"]
    metric_text = "–"
    if len(head):
        r = head.iloc[0].to_dict()
        metric_text = (f"macro AUROC {_ci(r, 'macro_auroc')}, weighted AUROC {_ci(r, 'weighted_auroc')}, "
                       f"macro AUPRC {_ci(r, 'macro_auprc')}, Fmax {_ci(r, 'fmax')} on {r['n_records']} records "
                       f"of {r['n_patients']} patients ({ctx.split} split).")
    sub_text = "not available"
    if not ev.subgroups.empty and "macro_auroc" in ev.subgroups:
        min_n = max(int(s.get("subgroup_min_records", 20)), int(0.05 * s["n_records"]))
        sg = ev.subgroups.dropna(subset=["macro_auroc"])
        sg = sg[sg["n_records"] >= min_n]
        if len(sg):
            lo, hi = sg.loc[sg["macro_auroc"].idxmin()], sg.loc[sg["macro_auroc"].idxmax()]
            sub_text = (f"among subgroups with at least {min_n} records: lowest macro AUROC in "
                        f"{lo['variable']}={lo['level']} ({lo['macro_auroc']:.3f}, N={lo['n_records']}), highest in "
                        f"{hi['variable']}={hi['level']} ({hi['macro_auroc']:.3f}, N={hi['n_records']}); see the "
                        "Subgroups section for all, with intervals.")
        else:
            sub_text = f"no subgroup has at least {min_n} records; see the Subgroups section."
    fused = ev.per_label[ev.per_label["task"] == "fused:all71"] if len(ev.per_label) else ev.per_label
    n_zero = int((fused["n_pos"] == 0).sum()) if len(fused) else 0
    n_few = int(((fused["n_pos"] > 0) & (fused["n_pos"] < 10)).sum()) if len(fused) else 0
    training = ctx.model.get("training_data", "see the checkpoint's stored config")
    twin = ctx.model.get("model_kind") == "blackbox"
    use = ("Research baseline: the black-box twin of the interpretable model, measuring what interpretability costs; "
           "classifies 10-s 12-lead ECGs into the 71 PTB-XL SCP statements without explanations." if twin else
           "Research on interpretable, case-based classification of 10-s 12-lead ECGs into the 71 PTB-XL SCP "
           "statements, with prototype explanations.")
    model_text = ("Black-box twin of the ProtoECGNet-style network: the same branch backbones with linear heads and a "
                  "linear fusion head." if twin else
                  "ProtoECGNet-style prototype network (rhythm, morphology and global branches + fusion head).")
    items = [
        ("Intended use", f"{use} Not a medical device; not for diagnosis or treatment decisions. Outputs need review "
                         "by a qualified clinician."),
        ("Model", f"{model_text} {ctx.model.get('summary', '')}"),
        ("Training data", str(training)),
        ("Evaluation data", f"{ctx.data or 'given arrays'}, {ctx.split} split: {s['n_records']} records, {s['n_patients']} patients; "
                            f"convention {s['convention']} ({s['convention_text']})."),
        ("Metrics", metric_text + f" Intervals: {s['ci_method']}, {int(round(100 * s['ci_level']))}%, {s['n_bootstrap']} resamples."),
        ("Subgroups", sub_text),
        ("Limitations", f"{n_zero} of 71 labels have no positive in this split (undefined) and {n_few} have 1–9 "
                        "positives (unstable metrics, wide intervals). Thresholds were tuned on the validation split and may not transfer to other "
                        "populations, devices or prevalences. PTB-XL comes from one German centre (1989–1996) with "
                        "labels from automated and cardiologist statements of varying certainty; synthetic-archive "
                        "results say nothing about clinical performance."
                        + ("" if twin else " Prototype similarity is not a causal explanation.")),
    ]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f"<h2>Model card</h2><table>{rows}</table>"
