"""Faithfulness of case-based explanations by occlusion, against random windows and integrated gradients.

For every predicted morphology label of a record whose top supporting prototype is a projected
(case) prototype, the label's fused logit is recomputed with a window of the test ECG set to
0 mV on all leads:

* ``prototype``: the top prototype's window — its receptive field (RF) and, separately, its
  evidence window (the shown dark band, as long as the prototype window);
* ``random``: a randomly placed window of the same length (mean over 8 draws);
* ``integrated gradients``: the window of the same length holding the most |IG| of that
  label's logit (zero baseline, 16 steps; the post-hoc attribution on the same model).

Deletion curves occlude the evidence windows of the top 1..3 prototypes cumulatively, against
the 1..3 best non-overlapping IG windows and 1..3 random windows. Drops are logit(x) −
logit(occluded); 95 % intervals bootstrap the cases (1000 resamples). Runs on one thread.

    python benchmarks/explain_faithfulness.py --checkpoint runs/real_ptbxl/ecgproto/model.pt \\
        --data ../shared/data/ptbxl-dev --folds 9 --name ptbxl_dev_fold9
    python benchmarks/explain_faithfulness.py --checkpoint runs/demo/train/model.pt \\
        --data runs/demo/synth/ptbxl --folds 10 --name synthetic_fold10
    python benchmarks/explain_faithfulness.py --report     # merge the runs into the .md

Writes ``reports/benchmarks/explain_faithfulness.json`` (one entry per ``--name``) and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecgproto.data.ptbxl import load_ptbxl  # noqa: E402
from ecgproto.explain.faithfulness import (  # noqa: E402
    integrated_gradients,
    label_logits,
    occlude,
    random_windows,
    top_window,
)
from ecgproto.explain.report import explain_arrays  # noqa: E402
from ecgproto.data.preprocess import Preprocessing  # noqa: E402
from ecgproto.model.checkpoint import load_checkpoint  # noqa: E402
from ecgproto.progress import progress  # noqa: E402

OUT = REPO / "reports" / "benchmarks" / "explain_faithfulness"
N_RANDOM = 8
K_CURVE = 3
N_BOOT = 1000


def _ig_windows(attr: np.ndarray, length: int, k: int) -> list[tuple[int, int]]:
    """The ``k`` best non-overlapping windows of ``length`` by |IG| mass (greedy)."""
    mass = np.abs(attr).sum(axis=0)
    out = []
    for _ in range(k):
        a, b = top_window(mass[None], length)
        out.append((a, b))
        mass = mass.copy()
        mass[max(a - length + 1, 0):b] = 0.0  # no later window may overlap this one
    return out


def _cases(rows_table):
    """(rank-1 rows, all rows) of the morphology labels to test: predicted, top prototype projected, local windows."""
    t = rows_table[(rows_table["branch"] == "morphology") & rows_table["predicted"].astype(bool)]
    t = t[t["evidence_start"].notna()]
    first = t[t["rank"] == 1]
    first = first[first["prototype_projected"].astype(bool)]
    return first, t


def run(checkpoint: Path, data: Path, folds: tuple[int, ...], max_records: int | None, seed: int) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, meta = load_checkpoint(checkpoint)
    model.eval()
    index = load_ptbxl(data)
    prep = Preprocessing.from_meta(meta)
    chosen = np.flatnonzero(index.meta["strat_fold"].isin(folds).to_numpy())[:max_records]
    column = "filename_lr" if prep.fs <= 100 else "filename_hr"
    reads = [prep.read(index.root / index.meta[column].iloc[i]) for i in progress(chosen, desc="read", unit="rec")]
    ok = np.array([r.status == "ok" for r in reads])
    signals = np.stack([r.signal for r, g in zip(reads, ok) if g])
    truth = index.labels[chosen[ok]]
    table, _ = explain_arrays(model, meta, signals, k=K_CURVE)
    first, morph = _cases(table)
    rng = np.random.default_rng(seed)
    n = prep.n_samples
    records = []
    for row in progress(list(first.itertuples()), desc="occlude", unit="case"):
        r, c = int(row.record_index), int(row.label_index)
        x = signals[r]
        rf = (int(row.rf_start), int(row.rf_end))
        ev = (int(row.evidence_start), int(row.evidence_end))
        rf_len, ev_len = rf[1] - rf[0], ev[1] - ev[0]
        ig = integrated_gradients(model, x, c)
        ranks = morph[(morph["record_index"] == r) & (morph["label_index"] == c)].sort_values("rank")
        proto_ev = [(int(a), int(b)) for a, b in zip(ranks["evidence_start"], ranks["evidence_end"])][:K_CURVE]
        ig_ev = _ig_windows(ig, ev_len, K_CURVE)
        rand_rf = random_windows(rng, n, rf_len, N_RANDOM)
        rand_ev = random_windows(rng, n, ev_len, N_RANDOM * K_CURVE)
        variants = [x, occlude(x, [rf]), occlude(x, [ev]), occlude(x, [top_window(ig, rf_len)]), occlude(x, [ig_ev[0]])]
        variants += [occlude(x, [w]) for w in rand_rf]
        variants += [occlude(x, rand_ev[i * K_CURVE:i * K_CURVE + 1]) for i in range(N_RANDOM)]
        curve_sets = {"prototype": [proto_ev[:k] for k in range(1, len(proto_ev) + 1)],
                      "integrated_gradients": [ig_ev[:k] for k in range(1, K_CURVE + 1)],
                      "random": [rand_ev[i * K_CURVE:i * K_CURVE + k] for i in range(N_RANDOM) for k in range(1, K_CURVE + 1)]}
        for sets in curve_sets.values():
            variants += [occlude(x, s) for s in sets]
        logit = label_logits(model, np.stack(variants), c)
        base = logit[0]
        drop = base - logit
        i = 5
        rec = {"label": str(row.label), "true": bool(truth[r, c]), "base_logit": float(base),
               "rf_prototype": float(drop[1]), "ev_prototype": float(drop[2]), "rf_ig": float(drop[3]), "ev_ig": float(drop[4]),
               "rf_random": float(drop[i:i + N_RANDOM].mean())}
        i += N_RANDOM
        rec["ev_random"] = float(drop[i:i + N_RANDOM].mean())
        i += N_RANDOM
        n_proto = len(curve_sets["prototype"])
        rec["curve_prototype"] = [float(v) for v in drop[i:i + n_proto]]
        i += n_proto
        rec["curve_integrated_gradients"] = [float(v) for v in drop[i:i + K_CURVE]]
        i += K_CURVE
        rec["curve_random"] = drop[i:i + N_RANDOM * K_CURVE].reshape(N_RANDOM, K_CURVE).mean(axis=0).tolist()
        records.append(rec)
    return _summary(records, checkpoint, data, folds, meta, len(chosen), int(ok.sum()), time.perf_counter() - t0, n / prep.fs,
                    first, prep.fs)


def _boot(values: np.ndarray, rng: np.random.Generator) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return {"mean": float(values.mean()) if len(values) else None, "ci": [None, None], "n": int(len(values))}
    idx = rng.integers(0, len(values), size=(N_BOOT, len(values)))
    means = values[idx].mean(axis=1)
    return {"mean": float(values.mean()), "ci": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
            "n": int(len(values))}


def _summary(records, checkpoint, data, folds, meta, n_records, n_ok, seconds, duration_s, first, fs) -> dict:
    rng = np.random.default_rng(0)
    col = {k: np.array([r[k] for r in records]) for k in ("rf_prototype", "rf_random", "rf_ig", "ev_prototype", "ev_random", "ev_ig")}
    out: dict = {
        "checkpoint": str(checkpoint), "data": str(data), "folds": list(folds), "n_records": n_records,
        "n_records_read": n_ok, "n_cases": len(records), "n_true_positive_cases": int(sum(r["true"] for r in records)),
        "val_metrics": meta.get("val_metrics"),
        "pooling": meta["config"]["model"]["branches"].get("morphology", {}).get("pooling"),
        "median_rf_s": float(np.median((first["rf_end"] - first["rf_start"]) / fs)) if len(first) else None,
        "median_evidence_s": float(np.median((first["evidence_end"] - first["evidence_start"]) / fs)) if len(first) else None,
        "record_s": duration_s, "seconds": round(seconds, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
    }
    for span in ("rf", "ev"):
        p, r, g = col[f"{span}_prototype"], col[f"{span}_random"], col[f"{span}_ig"]
        out[span] = {"prototype": _boot(p, rng), "random": _boot(r, rng), "integrated_gradients": _boot(g, rng),
                     "prototype_minus_random": _boot(p - r, rng), "prototype_minus_ig": _boot(p - g, rng),
                     "share_prototype_beats_random": float(np.mean(p > r)) if len(p) else None}
    curves = {}
    for method in ("prototype", "integrated_gradients", "random"):
        pts = []
        for k in range(K_CURVE):
            vals = np.array([rec[f"curve_{method}"][k] for rec in records if len(rec[f"curve_{method}"]) > k])
            pts.append(_boot(vals, rng))
        curves[method] = pts
    out["deletion_curve"] = curves
    out["targets"] = {
        "prototype_beats_random": bool(out["ev"]["prototype_minus_random"]["ci"][0] is not None
                                       and out["ev"]["prototype_minus_random"]["ci"][0] > 0),
        "prototype_matches_or_beats_ig": bool(out["ev"]["prototype_minus_ig"]["ci"][1] is not None
                                              and out["ev"]["prototype_minus_ig"]["ci"][1] >= 0),
    }
    return out


def _fmt(b: dict) -> str:
    if b["mean"] is None:
        return "–"
    if b["ci"][0] is None:
        return f"{b['mean']:+.3f}"
    return f"{b['mean']:+.3f} [{b['ci'][0]:+.3f}, {b['ci'][1]:+.3f}]"


def write_report(runs: dict) -> str:
    lines = ["# Explanation faithfulness (occlusion)", "",
             "Logit drop of a predicted morphology label when a window of the test ECG is set to 0 mV on all leads "
             "(mean over cases, 95 % bootstrap CI). `prototype` = the top (projected) prototype's window, `random` = a "
             "random window of the same length (mean of 8), `IG` = the window of the same length with the most "
             "integrated-gradients attribution of that label's logit on the same model. Produced by "
             "`benchmarks/explain_faithfulness.py`.", ""]
    for name, res in runs.items():
        lines += [f"## {name}", "",
                  f"`{res['checkpoint']}` on `{res['data']}` folds {res['folds']}: {res['n_records_read']} records, "
                  f"{res['n_cases']} cases ({res['n_true_positive_cases']} true positives); morphology pooling "
                  f"`{res['pooling']}`; median receptive field {res['median_rf_s']:.2f} s, evidence window "
                  f"{res['median_evidence_s']:.2f} s of a {res['record_s']:.0f} s record; {res['seconds']:.0f} s.", "",
                  "| window occluded | prototype | random | IG | prototype − random | prototype − IG | prototype > random |",
                  "| --- | --- | --- | --- | --- | --- | ---: |"]
        for span, title in (("ev", "evidence window"), ("rf", "receptive field")):
            b = res[span]
            lines.append(f"| {title} | {_fmt(b['prototype'])} | {_fmt(b['random'])} | {_fmt(b['integrated_gradients'])} | "
                         f"{_fmt(b['prototype_minus_random'])} | {_fmt(b['prototype_minus_ig'])} | "
                         f"{b['share_prototype_beats_random']:.2f} |")
        lines += ["", "Deletion curve (evidence windows of the top k prototypes vs the k best IG windows vs k random windows):", "",
                  "| k | prototype | IG | random |", "| ---: | --- | --- | --- |"]
        for k in range(K_CURVE):
            c = res["deletion_curve"]
            lines.append(f"| {k + 1} | {_fmt(c['prototype'][k])} | {_fmt(c['integrated_gradients'][k])} | {_fmt(c['random'][k])} |")
        t = res["targets"]
        lines += ["", f"Targets: prototype window drop exceeds random (CI of the difference above 0): "
                      f"**{'met' if t['prototype_beats_random'] else 'not met'}**; matches or exceeds IG (CI of "
                      f"prototype − IG reaches 0 or above): **{'met' if t['prototype_matches_or_beats_ig'] else 'not met'}**.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--data", type=Path, help="PTB-XL-layout folder (ptbxl-dev, or the synthetic archive's ptbxl/)")
    ap.add_argument("--folds", type=int, nargs="+", default=[9])
    ap.add_argument("--name", help="entry name in the JSON (e.g. ptbxl_dev_fold9)")
    ap.add_argument("--max-records", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="only rewrite the .md from the .json")
    args = ap.parse_args()
    path = OUT.with_suffix(".json")
    runs = json.loads(path.read_text()) if path.is_file() else {}
    if not args.report:
        if not (args.checkpoint and args.data and args.name):
            ap.error("--checkpoint, --data and --name are required (or --report)")
        runs[args.name] = run(args.checkpoint, args.data, tuple(args.folds), args.max_records, args.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs, indent=2) + "\n")
    text = write_report(runs)
    OUT.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
