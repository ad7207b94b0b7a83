"""Case-based explanations of given records: contributions table, PNG pairs, one HTML page per record.

For each record and each predicted label (prob ≥ the checkpoint's validation-tuned
threshold; the top-k labels when none is), the top-k prototype contributions are
shown as the test ECG beside the prototype's source training ECG, each on the standard
12-lead layout with the matching window (and leads, for lead-aware prototypes) shaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.atomic import write_text_atomic
from ecgproto.data.labels import label_table
from ecgproto.data.wfdb_io import LEADS, record_stem
from ecgproto.explain import html
from ecgproto.explain.contributions import top_contributions
from ecgproto.explain.plot_ecg import figure_png_bytes, plot_12lead, plot_prototype_pair
from ecgproto.explain.source import Preprocessing, SourceArchive
from ecgproto.progress import progress

FULL_LEADS = (0, len(LEADS))


def prototype_provenance(meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Checkpoint ``meta["prototypes"]`` keyed by global prototype index."""
    return {int(p["index"]): p for p in meta.get("prototypes") or []}


def _leads(span: tuple[int, int] | None) -> tuple[str, ...]:
    """Lead names of a canonical lead-index span; () for all 12 / unknown (= not lead-specific)."""
    if span is None or span[0] is None or tuple(span) == FULL_LEADS:
        return ()
    return LEADS[int(span[0]):int(span[1])]


def require_prototypes(model: Any, source: str | Path) -> None:
    """Raise ValueError for a model without prototypes (the black-box twin): nothing to explain with."""
    if model.kind == "blackbox":
        raise ValueError(f"{source}: a black-box twin (model.kind: blackbox) has no prototypes, so its predictions "
                         "cannot be explained case by case; use `ecgproto score` for its probabilities")


def explain_arrays(model: Any, meta: dict[str, Any], signals: np.ndarray, k: int = 3, batch_size: int = 64) -> tuple[pd.DataFrame, np.ndarray]:
    """Top-k contributions with test windows and prototype provenance, for signals (N, 12, T) mV.

    ``signals`` must already be preprocessed as the checkpoint expects (rate, length,
    high-pass). Returns (table, probs (N, 71)); the table has the columns of
    :func:`top_contributions` plus window_start/window_end/rf_start/rf_end (test, input
    samples), leads (tuple; () = all), source_ecg_id, source_window_start/end,
    source_rf_start/end, source_leads, prototype_projected.
    """
    from ecgproto.model.inference import predict_arrays

    require_prototypes(model, "model")
    pred = predict_arrays(model, signals, batch_size=batch_size)
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    table = top_contributions(model, pred.similarities, pred.probs, thresholds, k=k)
    prov = prototype_provenance(meta)
    cols: dict[str, list[Any]] = {c: [] for c in (
        "window_start", "window_end", "rf_start", "rf_end", "leads", "source_ecg_id", "source_window_start",
        "source_window_end", "source_rf_start", "source_rf_end", "source_leads", "prototype_projected")}
    for rec, branch, local, proto in zip(table["record_index"], table["branch"], table["local_index"], table["prototype"]):
        br = model.branches[branch]
        w = int(pred.best_windows[branch][rec, local])
        (ws, we), (rs, re_) = br.window_samples(w), br.receptive_field(w)
        p = prov.get(int(proto), {})
        projected = p.get("ecg_id") is not None
        cols["window_start"].append(int(ws))
        cols["window_end"].append(int(we))
        cols["rf_start"].append(int(rs))
        cols["rf_end"].append(int(re_))
        cols["leads"].append(_leads(br.window_leads(w)))
        cols["source_ecg_id"].append(int(p["ecg_id"]) if projected else None)
        for key in ("window_start", "window_end", "rf_start", "rf_end"):
            cols[f"source_{key}"].append(int(p[key]) if projected and p.get(key) is not None else None)
        cols["source_leads"].append(_leads((p.get("lead_start"), p.get("lead_end"))) if projected else ())
        cols["prototype_projected"].append(projected)
    for name, values in cols.items():
        # object dtype keeps None (unprojected prototypes) and lead tuples as they are
        table[name] = pd.Series(values, index=table.index, dtype=object if name.startswith("source") or name == "leads" else None)
    return table, pred.probs


@dataclass
class RecordPage:
    """What was written for one input record."""

    record: str
    name: str
    status: str
    message: str
    html_path: Path
    png_paths: list[Path] = field(default_factory=list)


def _safe(text: str) -> str:
    """File-name-safe version of ``text`` (e.g. label ``LAO/LAE`` → ``LAO_LAE``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _record_names(records: Sequence[str]) -> list[str]:
    """Unique, file-system-safe page names from record paths (basename, de-duplicated)."""
    seen: dict[str, int] = {}
    out = []
    for r in records:
        base = _safe(Path(record_stem(r)).name) or "record"
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}-{n + 1}")
    return out


def _span_text(a: Any, b: Any, fs: float) -> str:
    if a is None or b is None or (isinstance(a, float) and np.isnan(a)):
        return "–"
    return f"{int(a) / fs:.2f}–{int(b) / fs:.2f} s"


def _highlight(a: Any, b: Any, n_samples: int) -> tuple[int, int] | None:
    """Band to draw, or None for a missing or whole-record window (nothing to localise)."""
    if a is None or b is None or (int(a) <= 0 and int(b) >= n_samples):
        return None
    return int(a), int(b)


def _explanation_figure(row: pd.Series, test_signal: np.ndarray, source: SourceArchive, prep: Preprocessing) -> tuple[bytes, str]:
    """PNG of the test ECG beside the prototype source ECG, and a caption."""
    fs, n = prep.fs, prep.n_samples
    leads = list(row["leads"]) or None
    proto_text = f"prototype {row['prototype']} ({row['branch']}, class {row['prototype_class']})"
    if row["prototype_projected"]:
        proto_signal, why = source.signal(row["source_ecg_id"])
        proto_title = f"{proto_text}: source training ECG {row['source_ecg_id']}, window {_span_text(row['source_window_start'], row['source_window_end'], fs)}"
        if proto_signal is None:
            proto_title += f" (source ECG unavailable: {why}; window only)"
    else:
        proto_signal, why = None, "prototype was not projected onto a training ECG"
        proto_title = f"{proto_text}: {why}"
    test_title = f"test ECG: {row['label']} p={row['probability']:.2f}, best window {_span_text(row['window_start'], row['window_end'], fs)}"
    fig = plot_prototype_pair(
        test_signal, proto_signal, fs,
        test_highlight=_highlight(row["window_start"], row["window_end"], n),
        proto_highlight=_highlight(row["source_window_start"], row["source_window_end"], n) if row["prototype_projected"] else None,
        highlight_leads=leads, proto_highlight_leads=list(row["source_leads"]) or None,
        test_title=test_title, proto_title=proto_title,
    )
    caption = f"{row['label']} · rank {row['rank']} · {proto_text}" + (f" · leads {', '.join(row['leads'])}" if leads else "")
    return figure_png_bytes(fig), caption


def _table_for_page(rows: pd.DataFrame, fs: float) -> pd.DataFrame:
    desc = label_table().frame.set_index("code")["description"]
    return pd.DataFrame({
        "label": rows["label"],
        "description": [desc.get(c, "") for c in rows["label"]],
        "probability": rows["probability"].astype(float),
        "threshold": rows["threshold"].astype(float),
        "decision": np.where(rows["predicted"], "predicted", "below threshold (top-k shown)"),
        "rank": rows["rank"].astype(int),
        "prototype": rows["prototype"].astype(int),
        "branch": rows["branch"],
        "prototype class": rows["prototype_class"],
        "similarity": rows["similarity"].astype(float),
        "weight": rows["weight"].astype(float),
        "contribution": rows["contribution"].astype(float),
        "test window": [_span_text(a, b, fs) for a, b in zip(rows["window_start"], rows["window_end"])],
        "leads": [", ".join(x) or "all" for x in rows["leads"]],
        "source ecg_id": [("–" if v is None else str(v)) for v in rows["source_ecg_id"]],
        "source window": [_span_text(a, b, fs) for a, b in zip(rows["source_window_start"], rows["source_window_end"])],
        "source receptive field": [_span_text(a, b, fs) for a, b in zip(rows["source_rf_start"], rows["source_rf_end"])],
    })


def _label_table(probs: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    frame = label_table().frame
    order = np.argsort(-probs, kind="stable")
    return pd.DataFrame({
        "label": frame["code"].to_numpy()[order],
        "group": frame["group"].to_numpy()[order],
        "description": frame["description"].to_numpy()[order],
        "probability": probs[order].astype(float),
        "threshold": thresholds[order].astype(float),
        "predicted": np.where(probs[order] >= thresholds[order], "yes", ""),
    })


def explain_records(
    checkpoint: str | Path,
    records: Sequence[str],
    out_dir: str | Path,
    *,
    top_k: int = 3,
    source_data: str | Path | None = None,
    batch_size: int = 64,
) -> list[RecordPage]:
    """Write ``<out>/<record>.html`` (self-contained) + ``<out>/<record>/*.png`` per record, and
    ``<out>/explanations.csv`` (all rows) and ``<out>/index.html``. Bad records get a page
    stating their status; they never stop the run.
    """
    from ecgproto.train.checkpoint import load_checkpoint

    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if not records:
        raise ValueError("no records given; pass one or more WFDB record paths (with or without .hea)")
    out_dir = Path(out_dir)
    model, meta = load_checkpoint(checkpoint)
    require_prototypes(model, checkpoint)
    prep = Preprocessing.from_meta(meta)
    source = SourceArchive.resolve(meta, source_data)
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    names = _record_names(records)
    results = [prep.read(r) for r in progress(records, desc="read records", unit="rec")]
    ok = [i for i, r in enumerate(results) if r.status == "ok"]
    signals = np.stack([results[i].signal for i in ok]) if ok else np.zeros((0, 12, prep.n_samples), np.float32)
    table, probs = explain_arrays(model, meta, signals, k=top_k, batch_size=batch_size) if ok else (pd.DataFrame(), np.zeros((0, 71)))
    pages: list[RecordPage] = []
    all_rows = []
    pos = {i: j for j, i in enumerate(ok)}
    for i in progress(range(len(records)), desc="explain", unit="rec"):
        name, res = names[i], results[i]
        page = RecordPage(str(records[i]), name, res.status, res.message, out_dir / f"{name}.html")
        body = [f"<p>Record <code>{html.esc(res.record)}</code> · checkpoint <code>{html.esc(Path(checkpoint).name)}</code> "
                f"· {prep.fs} Hz, {prep.n_samples} samples, high-pass {prep.cutoff_hz} Hz</p>"]
        if res.status != "ok":
            body.append(f"<div class=\"err\">Not explained: status <b>{html.esc(res.status)}</b>: {html.esc(res.message)}</div>")
        else:
            j = pos[i]
            rows = table[table["record_index"] == j].copy() if len(table) else table
            body += _record_body(rows, probs[j], thresholds, results[i].signal, name, out_dir, source, prep, page)
            rows.insert(0, "record", res.record)
            all_rows.append(rows)
        write_text_atomic(page.html_path, html.page(f"ecgproto explanation: {name}", body))
        pages.append(page)
    _write_index(out_dir, pages, all_rows)
    return pages


def _record_body(rows: pd.DataFrame, probs: np.ndarray, thresholds: np.ndarray, signal: np.ndarray, name: str,
                 out_dir: Path, source: SourceArchive, prep: Preprocessing, page: RecordPage) -> list[str]:
    body = []
    if not source.available:
        body.append(f"<div class=\"note\">Prototype source ECGs unavailable: {html.esc(source.reason)}. "
                    "Each prototype is shown by its window only.</div>")
    elif source.root is None:
        body.append(f"<div class=\"note\">{html.esc(source.reason)}; source ECGs are read from the prepared "
                    f"training cache {html.esc(source.cache.path)} instead.</div>")
    predicted = [c for c, p, t in zip(label_table().codes, probs, thresholds) if p >= t]
    body.append(f"<p><b>Predicted labels</b> (probability ≥ validation-tuned threshold): {html.esc(', '.join(predicted) or 'none')}</p>")
    body.append(html.figure(figure_png_bytes(plot_12lead(signal, prep.fs, title=name)), f"{name}: input ECG (high-passed)"))
    if len(rows):
        body.append(f"<h2>Top prototype contributions</h2><p class=\"note\">Ranking: {html.esc(rows['ranking'].iat[0])}. "
                    "Windows are in seconds from the record start; the receptive field is the input span that can influence "
                    "a prototype's window.</p>")
        if rows["logit"].notna().any():
            per_label = rows.drop_duplicates("label")
            body.append("<p>Each logit is exactly bias + supporting + opposing terms (w·s̃ summed over the label's "
                        "supporting prototypes, and over negatively weighted other-class prototypes):</p>")
            body.append(html.table(pd.DataFrame({
                "label": per_label["label"], "probability": per_label["probability"].astype(float),
                "logit": per_label["logit"].astype(float), "bias": per_label["bias"].astype(float),
                "supporting": per_label["supporting_total"].astype(float),
                "opposing": per_label["opposing_total"].astype(float)})))
        body.append(html.table(_table_for_page(rows, prep.fs)))
        for (_, row), label in zip(rows.iterrows(), rows["label"]):
            png, caption = _explanation_figure(row, signal, source, prep)
            png_path = out_dir / name / f"{_safe(label)}_rank{int(row['rank'])}_proto{int(row['prototype'])}.png"
            png_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = png_path.with_name(f".{png_path.name}.tmp")
            tmp.write_bytes(png)
            tmp.replace(png_path)
            page.png_paths.append(png_path)
            body.append(f"<h3>{html.esc(caption)}</h3>" + html.figure(png, caption))
    body.append("<h2>All labels</h2>" + html.table(_label_table(probs, thresholds)))
    return body


def _write_index(out_dir: Path, pages: list[RecordPage], all_rows: list[pd.DataFrame]) -> None:
    rows = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
    if len(rows):
        for col in ("leads", "source_leads"):
            rows[col] = [";".join(x) for x in rows[col]]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".explanations.csv.tmp"
    rows.to_csv(tmp, index=False)
    tmp.replace(out_dir / "explanations.csv")
    items = "".join(
        f"<tr><td><a href=\"{html.esc(p.html_path.name)}\">{html.esc(p.name)}</a></td><td>{html.esc(p.status)}</td>"
        f"<td>{html.esc(p.message)}</td><td class=\"num\">{len(p.png_paths)}</td></tr>" for p in pages)
    body = [f"<table><thead><tr><th>record</th><th>status</th><th>message</th><th>explanations</th></tr></thead><tbody>{items}</tbody></table>"]
    write_text_atomic(out_dir / "index.html", html.page("ecgproto explanations", body))


__all__ = ["explain_arrays", "explain_records", "prototype_provenance", "require_prototypes", "RecordPage"]
