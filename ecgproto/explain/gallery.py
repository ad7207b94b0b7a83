"""Gallery of projected prototypes, grouped by class: each prototype's source window at readable size.

One card per group of duplicate prototypes (same source window or cosine ≥ 0.99, see
:mod:`ecgproto.explain.duplicates`): a crop of the source training ECG over the prototype's
receptive field (all 12 leads, 25 mm/s, 10 mm/mV) with its evidence window shaded, the class,
the source ECG and the projection similarity in words. Latent prototypes (never projected onto
a training ECG) are not cases: they are counted and listed, never drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgproto.atomic import write_text_atomic
from ecgproto.errors import UserError
from ecgproto.data.labels import label_table
from ecgproto.explain import html
from ecgproto.explain.duplicates import model_duplicate_groups
from ecgproto.explain.evidence import record_evidence
from ecgproto.explain.plot_ecg import lead_names, save_figure
from ecgproto.explain.plot_window import WindowView, plot_windows
from ecgproto.explain.source import SourceArchive
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.progress import progress

# cards keep each crop's natural pixel size, so every crop is at the same paper scale
GALLERY_CSS = (".cards{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.card{border:1px solid #ddd;"
               "padding:.4em;max-width:100%}.card img{max-width:none}.card small{display:block;max-width:520px}"
               ".toc a{margin-right:.6em;display:inline-block}")


@dataclass(frozen=True)
class GalleryResult:
    """Counts of what the gallery shows; ``index_path`` is its HTML index."""

    index_path: Path
    n_rendered: int
    n_unprojected: int
    n_source_missing: int
    n_unique_sources: int
    n_collapsed: int = 0  # duplicate prototypes shown on another prototype's card


def projection_words(p: dict[str, Any], model: Any) -> str:
    """The projection similarity in a sentence."""
    sim = p.get("similarity")
    if not isinstance(sim, float):
        return ""
    scale = float(model.branches[p["branch"]].cfg.similarity_scale)
    return (f"projection similarity {sim:.2f} of at most {scale:g}: before projection the learned prototype had "
            f"cosine {sim / scale:.2f} with this window, whose latent vector it now is")


def _card(p: dict[str, Any], members: list[int], model: Any, source: SourceArchive, out_dir: Path, dpi: int) -> tuple[str, bool]:
    """HTML card of one prototype group; (html, source ECG missing?)."""
    fs, n = source.prep.fs, source.prep.n_samples
    idx, leads = int(p["index"]), lead_names(p.get("lead_start"), p.get("lead_end"))
    signal, why = source.signal(int(p["ecg_id"]))
    ws, we = int(p["window_start"]), int(p["window_end"])
    whole = ws <= 0 and we >= n
    evidence = None if (signal is None or whole or p.get("window") is None) else record_evidence(
        model, signal, p["branch"], [(int(p["local_index"]), int(p["window"]))])[0]
    field = None if whole else (int(p["rf_start"]), int(p["rf_end"]))
    title = f"prototype {idx} · {p['branch']} · class {p['class_code']} · source ecg_id {p['ecg_id']}"
    fig = plot_windows([WindowView(signal, evidence if evidence else (None if whole else (ws, we)), field, leads, title)], fs, n)
    name = f"prototype_{idx:04d}.png"
    save_figure(fig, out_dir / name, dpi=dpi)
    facts = [f"source ECG {p['ecg_id']}", "whole record" if whole else
             f"window {ws / fs:.2f}–{we / fs:.2f} s, receptive field {int(p['rf_start']) / fs:.2f}–{int(p['rf_end']) / fs:.2f} s",
             f"leads {', '.join(leads)}" if leads else "", projection_words(p, model)]
    others = [m for m in members if m != idx]
    if others:
        facts.append(f"also stands for duplicate prototypes {', '.join(map(str, others))} (same source window or cosine ≥ 0.99)")
    if signal is None:
        facts.append(f"source ECG unavailable ({why}); window only")
    text = " · ".join(html.esc(f) for f in facts if f)
    card = (f"<div class=\"card\"><b>prototype {idx}</b><br><a href=\"{html.esc(name)}\"><img src=\"{html.esc(name)}\" "
            f"alt=\"prototype {idx}\"></a><br><small>{text}</small></div>")
    return card, signal is None


def render_prototype_gallery(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    source_data: str | Path | None = None,
    branches: Sequence[str] | None = None,
    dpi: int = 80,
) -> GalleryResult:
    """Write ``prototype_<index>.png`` per shown prototype and ``index.html`` into ``out_dir``.

    Cards are grouped by branch and class (jump links at the top); duplicates are collapsed
    onto their group's lowest-index prototype; latent prototypes are listed, not drawn.
    """
    out_dir = Path(out_dir)
    model, meta = load_checkpoint(checkpoint)
    source = SourceArchive.resolve(meta, source_data)
    protos = sorted(meta.get("prototypes") or [], key=lambda p: int(p["index"]))
    if branches:
        protos = [p for p in protos if p["branch"] in branches]
    if not protos:
        raise UserError(f"{checkpoint}: no prototypes with provenance in the checkpoint (for branches {branches or 'all'})")
    groups = model_duplicate_groups(model, meta)
    projected = [p for p in protos if p.get("ecg_id") is not None]
    latent = [p for p in protos if p.get("ecg_id") is None]
    shown = [p for p in projected if groups[int(p["index"])] == int(p["index"])
             or groups[int(p["index"])] not in {int(q["index"]) for q in projected}]
    shown_ids = {int(p["index"]) for p in shown}
    rep_of = {int(p["index"]): (int(groups[int(p["index"])]) if int(groups[int(p["index"])]) in shown_ids else int(p["index"]))
              for p in projected}
    desc = label_table().frame.set_index("code")["description"]
    sections, toc, missing = [], [], 0
    for branch in dict.fromkeys(p["branch"] for p in protos):
        classes = list(dict.fromkeys(p["class_code"] for p in protos if p["branch"] == branch))
        sections.append(f"<h2 id=\"{html.esc(branch)}\">{html.esc(branch)} branch</h2>")
        toc.append(f"<p class=\"toc\"><b>{html.esc(branch)}</b>: " + " ".join(
            f"<a href=\"#{html.esc(branch)}-{html.esc(c)}\">{html.esc(c)}</a>" for c in classes) + "</p>")
        for cls in classes:
            mine = [p for p in shown if p["branch"] == branch and p["class_code"] == cls]
            n_latent = sum(p["branch"] == branch and p["class_code"] == cls for p in latent)
            cards = []
            for p in progress(mine, desc=f"gallery {branch} {cls}", unit="proto"):
                members = sorted(i for i, r in rep_of.items() if r == int(p["index"]))
                card, gone = _card(p, members, model, source, out_dir, dpi)
                cards.append(card)
                missing += gone
            n_all = sum(p["branch"] == branch and p["class_code"] == cls for p in protos)
            note = f"{n_all} prototypes: {len(mine)} shown, {n_all - len(mine) - n_latent} duplicates collapsed, {n_latent} latent"
            sections.append(f"<h3 id=\"{html.esc(branch)}-{html.esc(cls)}\">{html.esc(cls)} · {html.esc(desc.get(cls, ''))}</h3>"
                            f"<p>{html.esc(note)}</p><div class=\"cards\">{''.join(cards)}</div>")
    n_unique = len({p["ecg_id"] for p in projected})
    intro = [f"<style>{GALLERY_CSS}</style>"]
    if not source.available:
        intro.append(f"<div class=\"note\">Source ECGs unavailable: {html.esc(source.reason)}.</div>")
    intro.append(f"<p>{len(protos)} prototypes: {len(shown)} shown, {len(projected) - len(shown)} duplicates collapsed onto "
                 f"another card, {len(latent)} latent (never projected onto a training ECG, so not cases: not drawn); "
                 f"{n_unique} unique source ECGs. Each card crops the source ECG to the prototype's receptive field "
                 "(light band: all input that can influence the match) with its evidence window (dark band: where the "
                 "match's gradient × input is largest); click for full size.</p>")
    if latent:
        intro.append("<p><b>Latent prototypes</b> (no source ECG): " + html.esc(", ".join(
            f"{p['index']} ({p['class_code']})" for p in latent)) + "</p>")
    index = write_text_atomic(out_dir / "index.html", html.page("ecgproto prototype gallery", intro + toc + sections))
    return GalleryResult(index, len(shown), len(latent), missing, n_unique, len(projected) - len(shown))
