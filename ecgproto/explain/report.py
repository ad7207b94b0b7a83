"""Case-based explanations of given records: one self-contained HTML page per record.

For each record and each predicted label (prob ≥ the checkpoint's validation-tuned
threshold; the top-k trained labels when none is) the page answers "was this right, and
why?": the reference labels when the record is in a PTB-XL archive, the predicted labels
with flags (predicted mainly by opposing terms, label pairs training almost never showed
together, labels never trained), a contribution waterfall per label, and for each of the
top-k (duplicate-collapsed) prototypes an aligned 12-lead comparison of the matched window
in the test ECG and in the prototype's source training ECG. The test ECG is drawn once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.atomic import write_bytes_atomic, write_text_atomic
from ecgproto.errors import UserError
from ecgproto.data.labels import label_table
from ecgproto.data.wfdb_io import record_stem
from ecgproto.device import resolve_device
from ecgproto.explain import html
from ecgproto.explain.contributions import top_contributions
from ecgproto.explain.duplicates import model_duplicate_groups
from ecgproto.explain.evidence import record_evidence
from ecgproto.explain.plot_ecg import figure_png_bytes, lead_names, plot_12lead
from ecgproto.explain.plot_window import WindowView, plot_window_comparison
from ecgproto.explain.reference import ReferenceLookup, unusual_pairs
from ecgproto.data.preprocess import Preprocessing
from ecgproto.explain.source import SourceArchive
from ecgproto.explain.waterfall import plot_waterfall
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.progress import progress

FIGURE_DPI = 80
NUMERIC_COLUMNS = ("window_start", "window_end", "rf_start", "rf_end")
PAGE_BUDGET_BYTES = 1_900_000  # embedded images per record page; later figures are linked PNG files
LATENT_NOTE = "latent prototype, no source ECG: not a case (it was not projected onto a training ECG)"
OPPOSING_NOTE = ("predicted mainly by opposing terms: the record is unlike other classes' prototypes more than it "
                 "resembles this label's own")
UNTRAINED_NOTE = "not trained (no positive in the training labels): never predicted"


def prototype_provenance(meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Checkpoint ``meta["prototypes"]`` keyed by global prototype index."""
    return {int(p["index"]): p for p in meta.get("prototypes") or []}


def require_prototypes(model: Any, source: str | Path) -> None:
    """Raise UserError for a model without prototypes (the black-box twin): nothing to explain with."""
    if model.kind == "blackbox":
        raise UserError(f"{source}: a black-box twin (model.kind: blackbox) has no prototypes, so its predictions "
                         "cannot be explained case by case; use `ecgproto score` for its probabilities")


def untrained_labels(meta: dict[str, Any]) -> np.ndarray:
    """(71,) bool: labels the checkpoint's threshold rule marks ``not_trained`` (no training positive)."""
    rules = meta.get("threshold_rules") or []
    return np.array([r == "not_trained" for r in rules], bool) if rules else np.zeros(len(meta["thresholds"]), bool)


def _test_evidence(model: Any, signals: np.ndarray, table: pd.DataFrame, best: list[int]) -> list[tuple[int, int] | None]:
    """Evidence window of every table row's match, one forward pass per (record, branch)."""
    out: list[tuple[int, int] | None] = [None] * len(table)
    local = table["local_index"].to_numpy(int)
    for (rec, branch), idx in table.reset_index(drop=True).groupby(["record_index", "branch"], sort=False).indices.items():
        spans = record_evidence(model, signals[int(rec)], branch, [(int(local[i]), best[i]) for i in idx])
        for i, span in zip(idx, spans):
            out[i] = span
    return out


def explain_arrays(model: Any, meta: dict[str, Any], signals: np.ndarray, k: int = 3, batch_size: int = 64,
                   device: Any = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Top-k contributions with test windows and prototype provenance, for signals (N, 12, T) mV.

    ``signals`` must already be preprocessed as the checkpoint expects (rate, length,
    high-pass). Duplicate prototypes count as one (:mod:`ecgproto.explain.duplicates`); labels
    that were never trained are not explained. Returns (table, probs (N, 71)); the table has the
    columns of :func:`top_contributions` plus window_start/window_end/rf_start/rf_end (test,
    input samples), leads (tuple; () = all), source_ecg_id, source_window_start/end,
    source_rf_start/end, source_leads, prototype_projected. ``device``: where the batched forward
    pass runs (None = the model's device; the per-record evidence passes stay on the model's).
    """
    from ecgproto.model.inference import predict_arrays

    require_prototypes(model, "model")
    pred = predict_arrays(model, signals, batch_size=batch_size, device=device)
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    table = top_contributions(model, pred.similarities, pred.probs, thresholds, k=k,
                              groups=model_duplicate_groups(model, meta), untrained=untrained_labels(meta))
    prov = prototype_provenance(meta)
    cols: dict[str, list[Any]] = {c: [] for c in (
        "window_start", "window_end", "evidence_start", "evidence_end", "rf_start", "rf_end", "leads", "source_ecg_id",
        "source_window", "source_window_start", "source_window_end", "source_rf_start", "source_rf_end", "source_leads",
        "prototype_projected")}
    best = [int(pred.best_windows[b][r, j]) for r, b, j in zip(table["record_index"], table["branch"], table["local_index"])]
    evidence = _test_evidence(model, signals, table, best)
    for rec, branch, local, proto, w, ev in zip(table["record_index"], table["branch"], table["local_index"],
                                                 table["prototype"], best, evidence):
        br = model.branches[branch]
        (ws, we), (rs, re_) = br.window_samples(w), br.receptive_field(w)
        p = prov.get(int(proto), {})
        projected = p.get("ecg_id") is not None
        cols["window_start"].append(int(ws))
        cols["window_end"].append(int(we))
        cols["evidence_start"].append(None if ev is None else ev[0])
        cols["evidence_end"].append(None if ev is None else ev[1])
        cols["rf_start"].append(int(rs))
        cols["rf_end"].append(int(re_))
        cols["leads"].append(lead_names(*br.window_leads(w)))
        cols["source_ecg_id"].append(int(p["ecg_id"]) if projected else None)
        for key in ("window", "window_start", "window_end", "rf_start", "rf_end"):
            cols[f"source_{key}"].append(int(p[key]) if projected and p.get(key) is not None else None)
        cols["source_leads"].append(lead_names(p.get("lead_start"), p.get("lead_end")) if projected else ())
        cols["prototype_projected"].append(projected)
    for name, values in cols.items():
        # object dtype keeps None (unprojected prototypes, whole-record windows) and lead tuples as they are
        table[name] = pd.Series(values, index=table.index, dtype=None if name in NUMERIC_COLUMNS else object)
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


def _span(a: Any, b: Any, n_samples: int) -> tuple[int, int] | None:
    """Sample span, or None for a missing or whole-record window (nothing to localise)."""
    if a is None or b is None or (int(a) <= 0 and int(b) >= n_samples):
        return None
    return int(a), int(b)


def similarity_words(row: pd.Series, model: Any) -> str:
    """What the similarity number means, in a sentence."""
    branch = model.branches[row["branch"]]
    scale = float(branch.cfg.similarity_scale)
    pooled = "mean over the record's windows" if branch.cfg.pooling == "mean" else "its best-matching window"
    return (f"similarity {row['similarity']:.2f} of at most {scale:g} (= {scale:g} × cosine between the record's latent "
            f"vectors and the prototype, {pooled}; 0 = unrelated), {row['normalized_similarity']:+.2f} SD from this "
            "branch's average on validation records")


def _members_text(row: pd.Series) -> str:
    others = [m for m in row["members"] if m != int(row["prototype"])]
    if not others:
        return ""
    return f"stands for {len(others) + 1} duplicate prototypes (also {', '.join(map(str, others))}: same source window or cosine ≥ 0.99)"


def _source_evidence(row: pd.Series, signal: np.ndarray | None, ctx: _PageContext) -> tuple[int, int] | None:
    """Evidence window of the prototype in its source ECG; computed once per prototype and run."""
    if signal is None or row["source_window"] is None:
        return None
    proto = int(row["prototype"])
    if proto not in ctx.source_evidence:
        ctx.source_evidence[proto] = record_evidence(
            ctx.model, signal, row["branch"], [(int(row["local_index"]), int(row["source_window"]))])[0]
    return ctx.source_evidence[proto]


def _comparison_png(row: pd.Series, test_signal: np.ndarray, ctx: _PageContext) -> tuple[bytes, str, tuple[int, int] | None]:
    """Aligned crop comparison PNG (test | prototype source), a caption and the source evidence window."""
    fs, n = ctx.prep.fs, ctx.prep.n_samples
    proto_text = f"prototype {row['prototype']} ({row['branch']}, class {row['prototype_class']})"
    test_evidence = _span(row["evidence_start"], row["evidence_end"], n)
    test = WindowView(test_signal, test_evidence, _span(row["rf_start"], row["rf_end"], n), tuple(row["leads"]),
                      f"test ECG · {row['label']} p={row['probability']:.2f}"
                      + (f" · evidence {_span_text(*test_evidence, fs)}" if test_evidence else " · whole record"))
    source_evidence = None
    if row["prototype_projected"]:
        signal, why = ctx.source.signal(row["source_ecg_id"])
        source_evidence = _source_evidence(row, signal, ctx)
        title = (f"{proto_text} · source training ECG {row['source_ecg_id']}"
                 + (f" · evidence {_span_text(*source_evidence, fs)}" if source_evidence else ""))
        if signal is None:
            title += f" · source ECG unavailable: {why}"
        proto = WindowView(signal, source_evidence, _span(row["source_rf_start"], row["source_rf_end"], n),
                           tuple(row["source_leads"]), title)
    else:
        proto = WindowView(None, None, None, (), f"{proto_text} · {LATENT_NOTE}")
    fig = plot_window_comparison(test, proto, fs, n)
    caption = f"{row['label']} · rank {row['rank']} · {proto_text}" + (f" · leads {', '.join(row['leads'])}" if row["leads"] else "")
    return figure_png_bytes(fig, dpi=FIGURE_DPI), caption, source_evidence


def _waterfall_png(rows: pd.DataFrame) -> bytes:
    """Waterfall of one (record, label): bias → shown prototypes → other supporting → opposing → logit."""
    first = rows.iloc[0]
    steps = [(f"prototype {int(r.prototype)}" + (" (latent)" if not r.prototype_projected else ""), float(r.contribution))
             for r in rows.itertuples()]
    rest = float(first["supporting_total"]) - sum(v for _, v in steps)
    steps += [("other supporting prototypes", rest), ("opposing: other classes' prototypes", float(first["opposing_total"]))]
    fig = plot_waterfall(str(first["label"]), float(first["bias"]), steps, float(first["logit"]),
                         float(first["probability"]), float(first["threshold"]))
    return figure_png_bytes(fig, dpi=FIGURE_DPI)


def _reference_status(code: str, reference: dict[str, float] | None) -> str:
    if reference is None:
        return "–"
    return "in reference" if code in reference else "not in reference"


def _predicted_table(rows: pd.DataFrame, probs: np.ndarray, thresholds: np.ndarray, reference: dict[str, float] | None) -> pd.DataFrame:
    desc = label_table().frame.set_index("code")["description"]
    per_label = rows.drop_duplicates("label")
    notes = []
    for r in per_label.itertuples():
        note = [] if r.predicted else ["below threshold (most probable labels shown)"]
        if r.driven_by == "opposing":
            note.append(OPPOSING_NOTE)
        notes.append("; ".join(note))
    return pd.DataFrame({
        "label": per_label["label"], "description": [desc.get(c, "") for c in per_label["label"]],
        "probability": per_label["probability"].astype(float), "threshold": per_label["threshold"].astype(float),
        "reference": [_reference_status(c, reference) for c in per_label["label"]],
        "supporting": per_label["supporting_total"].astype(float), "opposing": per_label["opposing_total"].astype(float),
        "logit": per_label["logit"].astype(float), "notes": notes,
    })


def _label_table(probs: np.ndarray, thresholds: np.ndarray, untrained: np.ndarray, reference: dict[str, float] | None) -> pd.DataFrame:
    frame = label_table().frame
    order = np.argsort(-np.where(untrained, -1.0, probs), kind="stable")
    decision = np.where(untrained, UNTRAINED_NOTE, np.where(probs >= thresholds, "predicted", ""))
    return pd.DataFrame({
        "label": frame["code"].to_numpy()[order],
        "group": frame["group"].to_numpy()[order],
        "description": frame["description"].to_numpy()[order],
        "probability": np.where(untrained, np.nan, probs)[order].astype(float),
        "threshold": np.where(untrained, np.nan, thresholds)[order].astype(float),
        "decision": decision[order],
        "reference": [_reference_status(c, reference) for c in frame["code"].to_numpy()[order]],
    })


def explain_records(
    checkpoint: str | Path,
    records: Sequence[str],
    out_dir: str | Path,
    *,
    top_k: int = 3,
    source_data: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> list[RecordPage]:
    """Write ``<out>/<record>.html`` (self-contained) + ``<out>/<record>/*.png`` per record, and
    ``<out>/explanations.csv`` (all rows) and ``<out>/index.html``. Bad records get a page
    stating their status; they never stop the run. ``device`` (auto|cpu|cuda|cuda:N|mps): where the
    batched forward pass runs.
    """
    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    if not records:
        raise UserError("no records given; pass one or more WFDB record paths (with or without .hea)")
    out_dir = Path(out_dir)
    torch_device = resolve_device(device)
    model, meta = load_checkpoint(checkpoint)
    require_prototypes(model, checkpoint)
    prep = Preprocessing.from_meta(meta)
    source = SourceArchive.resolve(meta, source_data)
    thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
    names = _record_names(records)
    results = [prep.read(r) for r in progress(records, desc="read records", unit="rec")]
    ok = [i for i, r in enumerate(results) if r.status == "ok"]
    signals = np.stack([results[i].signal for i in ok]) if ok else np.zeros((0, 12, prep.n_samples), np.float32)
    table, probs = explain_arrays(model, meta, signals, k=top_k, batch_size=batch_size, device=torch_device) if ok else (pd.DataFrame(), np.zeros((0, 71)))
    context = _PageContext(model, meta, thresholds, untrained_labels(meta), source, prep, out_dir, ReferenceLookup())
    pages: list[RecordPage] = []
    all_rows = []
    pos = {i: j for j, i in enumerate(ok)}
    for i in progress(range(len(records)), desc="explain", unit="rec"):
        name, res = names[i], results[i]
        page = RecordPage(str(records[i]), name, res.status, res.message, out_dir / f"{name}.html")
        body = [f"<p>Record <code>{html.esc(res.record)}</code> · checkpoint <code>{html.esc(Path(checkpoint).name)}</code> "
                f"· {prep.fs} Hz, {prep.n_samples} samples, high-pass {prep.highpass_hz} Hz</p>"]
        if res.status != "ok":
            body.append(f"<div class=\"err\">Not explained: status <b>{html.esc(res.status)}</b>: {html.esc(res.message)}</div>")
        else:
            j = pos[i]
            rows = table[table["record_index"] == j].copy() if len(table) else table
            body += _record_body(rows, probs[j], results[i].signal, str(records[i]), name, context, page)
            rows.insert(0, "record", res.record)
            all_rows.append(rows)
        write_text_atomic(page.html_path, html.page(f"ecgproto explanation: {name}", body))
        pages.append(page)
    _write_index(out_dir, pages, all_rows)
    return pages


@dataclass
class _PageContext:
    """What every record page of one run shares."""

    model: Any
    meta: dict[str, Any]
    thresholds: np.ndarray
    untrained: np.ndarray
    source: SourceArchive
    prep: Preprocessing
    out_dir: Path
    references: ReferenceLookup
    source_evidence: dict[int, tuple[int, int] | None] = field(default_factory=dict)  # by prototype index


def _record_body(rows: pd.DataFrame, probs: np.ndarray, signal: np.ndarray, record: str, name: str,
                 ctx: _PageContext, page: RecordPage) -> list[str]:
    body = []
    source, prep, codes = ctx.source, ctx.prep, list(label_table().codes)
    if not source.available:
        body.append(f"<div class=\"note\">Prototype source ECGs unavailable: {html.esc(source.reason)}. "
                    "Each prototype is shown by its window only.</div>")
    elif source.root is None:
        body.append(f"<div class=\"note\">{html.esc(source.reason)}; source ECGs are read from the prepared "
                    f"training cache {html.esc(source.cache.path)} instead.</div>")
    found = ctx.references.labels(record)
    reference = found[0] if found else None
    predicted = [c for c, p, t, u in zip(codes, probs, ctx.thresholds, ctx.untrained) if p >= t and not u]
    if found:
        missed = [c for c in reference if c in codes and c not in predicted]
        body.append(f"<p><b>Reference labels</b> ({html.esc(found[1])}): "
                    f"{html.esc(', '.join(f'{c} ({v:g})' if v else c for c, v in reference.items()) or 'none')}"
                    f" · not predicted: {html.esc(', '.join(missed) or 'none')}</p>")
    else:
        body.append("<p><b>Reference labels</b>: unknown (the record is not in a PTB-XL-layout archive)</p>")
    body.append(f"<p><b>Predicted labels</b> (probability ≥ validation-tuned threshold): {html.esc(', '.join(predicted) or 'none')}</p>")
    flags = unusual_pairs(predicted, codes, ctx.meta.get("label_stats"))
    if len(rows) and rows["logit"].notna().any():
        flags += [f"{c}: {OPPOSING_NOTE}" for c in rows.loc[rows["driven_by"] == "opposing", "label"].unique()]
    if not ctx.meta.get("label_stats"):
        flags.append("label-combination check not available: this checkpoint stores no training label counts (retrain to add them)")
    if flags:
        body.append("<div class=\"note\"><b>Check</b><ul>" + "".join(f"<li>{html.esc(f)}</li>" for f in flags) + "</ul></div>")
    sheet = figure_png_bytes(plot_12lead(signal, prep.fs, title=name, layout="12x1"), dpi=FIGURE_DPI)
    budget = _ImageBudget(PAGE_BUDGET_BYTES)
    budget.take(len(sheet), force=True)
    body.append(html.figure(sheet, f"{name}: input ECG (high-passed), 12×1 at 25 mm/s, 10 mm/mV"))
    if len(rows):
        rows[["source_evidence_start", "source_evidence_end"]] = None
        body.append(f"<h2>Why these labels</h2><p class=\"note\">Ranking: {html.esc(rows['ranking'].iat[0])}. "
                    "Windows are in seconds from the record start; the receptive field is all input that can "
                    "influence a prototype's window. Duplicate prototypes (same source window or cosine ≥ 0.99) are "
                    "shown once with their summed contribution.</p>")
        if rows["logit"].notna().any():
            body.append("<p>Each logit is exactly bias + supporting + opposing terms (w·s̃ summed over the label's "
                        "supporting prototypes, and over the negatively weighted other-class prototypes); the "
                        "waterfalls below show the terms in order.</p>")
            body.append(html.table(_predicted_table(rows, probs, ctx.thresholds, reference)))
        for label, part in rows.groupby("label", sort=False):
            body.append(f"<h3>{html.esc(label)} (p = {part['probability'].iat[0]:.2f})</h3>")
            if part["logit"].notna().any():
                png = _waterfall_png(part)
                budget.take(len(png), force=True)
                body.append(html.figure(png, f"{label}: bias → supporting prototypes → opposing terms → logit"))
            for idx, row in part.iterrows():
                png, caption, source_evidence = _comparison_png(row, signal, ctx)
                rows.loc[idx, ["source_evidence_start", "source_evidence_end"]] = source_evidence or (None, None)
                rel = f"{name}/{_safe(label)}_rank{int(row['rank'])}_proto{int(row['prototype'])}.png"
                write_bytes_atomic(ctx.out_dir / rel, png)
                page.png_paths.append(ctx.out_dir / rel)
                words = [similarity_words(row, ctx.model)]
                if pd.notna(row["contribution"]):
                    words.append(f"contribution {row['contribution']:+.2f} to the logit")
                words += [t for t in (_members_text(row), "" if row["prototype_projected"] else LATENT_NOTE) if t]
                embed = budget.take(len(png))
                body.append(f"<h4>{html.esc(caption)}</h4><p>{html.esc('; '.join(words))}</p>"
                            + html.figure(png if embed else None, caption, src=None if embed else rel))
        if budget.linked:
            body.append(f"<div class=\"note\">{budget.linked} figure(s) beyond this page's "
                        f"{PAGE_BUDGET_BYTES / 1e6:.1f} MB image budget are linked PNG files in {html.esc(name)}/, "
                        "not embedded.</div>")
    body.append("<h2>All labels</h2>" + html.table(_label_table(probs, ctx.thresholds, ctx.untrained, reference)))
    return body


@dataclass
class _ImageBudget:
    """Bytes of base64-embedded images left on a page; what does not fit is linked instead."""

    left: float
    linked: int = 0

    def take(self, n_bytes: int, force: bool = False) -> bool:
        """Reserve an image of ``n_bytes`` (4/3 of it once base64-encoded); False when it must be linked."""
        cost = n_bytes * 4 / 3
        if force or cost <= self.left:
            self.left -= cost
            return True
        self.linked += 1
        return False


def _write_index(out_dir: Path, pages: list[RecordPage], all_rows: list[pd.DataFrame]) -> None:
    rows = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
    if len(rows):
        for col in ("leads", "source_leads"):
            rows[col] = [";".join(x) for x in rows[col]]
        rows["members"] = [";".join(map(str, x)) for x in rows["members"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "explanations.csv", rows.to_csv(index=False))
    items = "".join(
        f"<tr><td><a href=\"{html.esc(p.html_path.name)}\">{html.esc(p.name)}</a></td><td>{html.esc(p.status)}</td>"
        f"<td>{html.esc(p.message)}</td><td class=\"num\">{len(p.png_paths)}</td></tr>" for p in pages)
    body = [f"<table><thead><tr><th>record</th><th>status</th><th>message</th><th>explanations</th></tr></thead><tbody>{items}</tbody></table>"]
    write_text_atomic(out_dir / "index.html", html.page("ecgproto explanations", body))


__all__ = ["explain_arrays", "explain_records", "prototype_provenance", "require_prototypes", "similarity_words",
           "untrained_labels", "RecordPage"]
