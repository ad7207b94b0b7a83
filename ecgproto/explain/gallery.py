"""Gallery of projected prototypes: each prototype's source training ECG with its window shaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.atomic import write_text_atomic
from ecgproto.data.wfdb_io import LEADS
from ecgproto.explain import html
from ecgproto.explain.plot_ecg import plot_12lead, save_figure
from ecgproto.explain.source import SourceArchive
from ecgproto.progress import progress


@dataclass(frozen=True)
class GalleryResult:
    """Counts of what the gallery shows; ``index_path`` is its HTML index."""

    index_path: Path
    n_rendered: int
    n_unprojected: int
    n_source_missing: int
    n_unique_sources: int


def _lead_names(p: dict) -> tuple[str, ...]:
    a, b = p.get("lead_start"), p.get("lead_end")
    if a is None or b is None or (int(a), int(b)) == (0, len(LEADS)):
        return ()
    return LEADS[int(a):int(b)]


def render_prototype_gallery(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    source_data: str | Path | None = None,
    branches: Sequence[str] | None = None,
    dpi: int = 80,
) -> GalleryResult:
    """Write ``prototype_<index>.png`` per projected prototype and ``index.html`` into ``out_dir``.

    Each PNG is the prototype's source training ECG (read from the checkpoint's training
    archive or ``source_data``, preprocessed like model input) on the standard layout,
    with the prototype's window (and leads, when lead-aware) shaded. When the source ECG
    cannot be read the PNG shows the window on an empty sheet and the index says why.
    """
    from ecgproto.train.checkpoint import load_checkpoint

    out_dir = Path(out_dir)
    _, meta = load_checkpoint(checkpoint)
    source = SourceArchive.resolve(meta, source_data)
    fs, n = source.prep.fs, source.prep.n_samples
    protos = sorted(meta.get("prototypes") or [], key=lambda p: int(p["index"]))
    if branches:
        protos = [p for p in protos if p["branch"] in branches]
    if not protos:
        raise ValueError(f"{checkpoint}: no prototypes with provenance in the checkpoint (for branches {branches or 'all'})")
    empty = np.zeros((len(LEADS), n), np.float32)
    rows, rendered, missing = [], 0, 0
    for p in progress(protos, desc="prototype gallery", unit="proto"):
        idx, projected = int(p["index"]), p.get("ecg_id") is not None
        row = {"prototype": idx, "branch": p["branch"], "cls": p["class_code"],
               "source": str(p["ecg_id"]) if projected else "–",
               "window": "–", "leads": "all", "similarity": p.get("similarity"), "note": "", "png": ""}
        if not projected:
            row["note"] = "not projected onto a training ECG"
            rows.append(row)
            continue
        ws, we = int(p["window_start"]), int(p["window_end"])
        leads = _lead_names(p)
        row["window"] = f"{ws / fs:.2f}–{we / fs:.2f} s"
        row["leads"] = ", ".join(leads) or "all"
        signal, why = source.signal(int(p["ecg_id"]))
        if signal is None:
            missing += 1
            row["note"] = f"source ECG unavailable ({why}); window only"
        highlight = None if (ws <= 0 and we >= n) else (ws, we)
        title = (f"prototype {idx} · {p['branch']} · class {p['class_code']} · source ecg_id {p['ecg_id']} · "
                 f"window {row['window']}" + (f" · leads {row['leads']}" if leads else "")
                 + ("" if signal is not None else " · source ECG unavailable"))
        fig = plot_12lead(signal if signal is not None else empty, fs, highlight=highlight,
                          highlight_leads=list(leads) or None, title=title, show_trace=signal is not None)
        name = f"prototype_{idx:04d}.png"
        save_figure(fig, out_dir / name, dpi=dpi)
        row["png"] = name
        rendered += 1
        rows.append(row)
    table = pd.DataFrame(rows)
    body = []
    if not source.available:
        body.append(f"<div class=\"note\">Source ECGs unavailable: {html.esc(source.reason)}.</div>")
    n_unique = len({p["ecg_id"] for p in protos if p.get("ecg_id") is not None})
    body.append(f"<p>{len(protos)} prototypes, {rendered} rendered, {len(protos) - rendered} not projected, "
                f"{n_unique} unique source ECGs. Click a thumbnail for the full-size figure.</p>")
    for branch, part in table.groupby("branch", sort=False):
        body.append(f"<h2>{html.esc(branch)} branch</h2>")
        cells = []
        for r in part.itertuples(index=False):
            img = (f"<a href=\"{html.esc(r.png)}\"><img src=\"{html.esc(r.png)}\" width=\"360\" alt=\"prototype {r.prototype}\"></a>"
                   if r.png else "")
            sim = html.fmt(r.similarity) if isinstance(r.similarity, float) else "–"
            cells.append(f"<tr><td class=\"num\">{r.prototype}</td><td>{html.esc(r.cls)}</td><td>{html.esc(r.source)}</td>"
                         f"<td>{html.esc(r.window)}</td><td>{html.esc(r.leads)}</td><td class=\"num\">{sim}</td>"
                         f"<td>{html.esc(r.note)}</td><td>{img}</td></tr>")
        body.append("<table><thead><tr><th>prototype</th><th>class</th><th>source ecg_id</th><th>window</th>"
                    "<th>leads</th><th>projection similarity</th><th>note</th><th>source segment</th></tr></thead>"
                    f"<tbody>{''.join(cells)}</tbody></table>")
    index = write_text_atomic(out_dir / "index.html", html.page("ecgproto prototype gallery", body))
    return GalleryResult(index, rendered, len(protos) - rendered, missing, n_unique)
