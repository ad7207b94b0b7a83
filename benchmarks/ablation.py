"""Ablation of ecgproto's departures from the ProtoECGNet reference, on real PTB-XL.

    python benchmarks/ablation.py --data ../shared/data/ptbxl-dev                 # train + report
    python benchmarks/ablation.py --data ../shared/data/ptbxl-dev --reuse         # report existing runs

Starts from ``configs/protoecgnet_reference.yaml`` (every switch on the reference's side) and
switches each departure to ecgproto's default one at a time, then all together:

- ``pooling_max``: morphology similarity max-pooled over windows (reference: mean);
- ``scale_1``: morphology similarity scale 1 (reference: 13);
- ``diversity_class``: diversity among each class's prototypes (reference: all pairs);
- ``contrastive_diff_class``: contrastive over different-class pairs only (reference: all pairs);
- ``clst_sep_per_sample``: clustering/separation per sample (reference: per sample × class, /B·C);
- ``pos_weight_records``: pos_weight (N − n_c)/n_c capped at 100 (reference: (Σ_k n_k − n_c)/n_c).

The ImageNet initialisation of the reference's 2D branches cannot be ablated here (no weights are
downloaded; ``model.branches.<group>.pretrained`` takes a local file).

Each run trains on folds 1-8 with ``ecgproto train`` (one thread, one run at a time) and is
scored on fold 9: fused and per-branch macro AUROC with 95 % patient-bootstrap CIs, the paired
difference to the reference run (same resamples), per-branch AUROC at the end of the joint stage
(before projection), within- and between-class cosine of the projected prototypes, unique source
ECGs and training time. ``--budget`` scales the epochs of every branch stage (joint 200, last layer
20; at least ``--min-epochs``), ``--lr-scale`` multiplies every learning rate and ``--width`` sets
the branches' base width: the reduced budget is written into the report. Writes
``reports/benchmarks/ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from real_ptbxl import _ci, stage_table  # noqa: E402

from ecgproto.config import load_config  # noqa: E402
from ecgproto.data.cache import prepare_cache  # noqa: E402
from ecgproto.data.labels import GROUPS, all_labels, group_labels  # noqa: E402
from ecgproto.evaluate.compare import paired_auroc_difference  # noqa: E402
from ecgproto.evaluate.tasks import Task  # noqa: E402
from ecgproto.model.checkpoint import load_checkpoint  # noqa: E402

PRESET = "configs/protoecgnet_reference.yaml"
#: departure name -> (--set overrides switching it to ecgproto's default, what it changes)
DEPARTURES: dict[str, tuple[list[str], str]] = {
    "pooling_max": (["model.branches.morphology.pooling=max"], "morphology pooling mean → max"),
    "scale_1": (["model.branches.morphology.similarity_scale=1.0"], "morphology similarity scale 13 → 1"),
    "diversity_class": (["model.loss.diversity_scope=class"], "diversity all pairs → within class"),
    "contrastive_diff_class": (["model.loss.contrastive_pairs=different_class"],
                               "contrastive all pairs → different-class pairs"),
    "clst_sep_per_sample": (["model.loss.cluster_separation=per_sample"],
                            "clustering/separation per (sample, class) /B·C → per sample"),
    "pos_weight_records": (["model.loss.pos_weight_rule=records", "model.loss.pos_weight_cap=100"],
                           "pos_weight (Σn_k − n_c)/n_c uncapped → (N − n_c)/n_c capped at 100"),
}
TASKS = [Task("fused", "all71", all_labels())] + [Task(g, f"group:{g}", group_labels(g)) for g in GROUPS]


def variants() -> dict[str, list[str]]:
    """The reference, each departure alone, and all departures together."""
    out = {"reference": []}
    out.update({name: sets for name, (sets, _) in DEPARTURES.items()})
    out["all_departures"] = [s for sets, _ in DEPARTURES.values() for s in sets]
    return out


def budget_overrides(budget: float, min_epochs: int, lr_scale: float, width: int) -> list[str]:
    """--set overrides of the reduced budget: stage epochs × budget (≥ min_epochs), lr × lr_scale, width."""
    cfg = load_config(REPO / PRESET)
    stages = []
    for s in cfg.train.stages:
        if s.name == "projection":
            stages.append("{name: projection}")
            continue
        epochs = max(min_epochs, math.ceil(s.epochs * budget))
        stages.append(f"{{name: {s.name}, epochs: {epochs}, lr: {s.lr * lr_scale:g}}}")
    sets = [f"train.stages=[{', '.join(stages)}]", f"train.fusion_lr={cfg.train.fusion_lr * lr_scale:g}",
            "train.threads=1"]
    sets += [f"model.branches.{g}.base_width={width}" for g in GROUPS]
    return sets


def train(name: str, sets: list[str], data: str, work: Path) -> float:
    """``ecgproto train`` of one variant (one thread, niced); returns its wall seconds."""
    cmd = [sys.executable, "-m", "ecgproto.cli", "train", "--config", PRESET, "--data", data,
           "--out", str(work / name), "--force"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "ECGPROTO_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"training {name} failed (exit {proc.returncode}); see {work / name}.log")
    return time.perf_counter() - t0


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def settings_differ(run: Path, expected) -> list[str]:
    """Settings of a stored run (``config.resolved.yaml``) that differ from ``expected`` (a Config):
    keys of both with other values, or keys the current config no longer has. Keys added to ecgproto
    since the run was trained are not compared."""
    import yaml

    from ecgproto.config import config_to_yaml

    stored = _flat(yaml.safe_load((run / "config.resolved.yaml").read_text()))
    now = _flat(yaml.safe_load(config_to_yaml(expected)))
    return sorted(k for k, v in stored.items() if k not in now or now[k] != v)


def geometry(model, meta: dict) -> dict[str, dict]:
    """Per branch over the projected prototypes: mean cosine of same-class pairs, of different-class
    pairs, the fraction of same-class pairs with cosine ≥ 0.99, and how many prototypes were used."""
    projected = {(p["branch"], p["local_index"]) for p in meta.get("prototypes", []) if p.get("ecg_id") is not None}
    out = {}
    for g, branch in model.branches.items():
        v = branch.prototype_vectors.detach().double().reshape(branch.n_prototypes, -1).numpy()
        keep = np.array([(g, j) in projected for j in range(len(v))])
        u = v[keep] / np.linalg.norm(v[keep], axis=1, keepdims=True)
        cls = branch.prototype_classes.numpy()[keep]
        cos = u @ u.T
        same = (cls[:, None] == cls[None, :]) & ~np.eye(len(u), dtype=bool)
        diff = cls[:, None] != cls[None, :]
        out[g] = {"n_projected": int(keep.sum()),
                  "within_class_cosine": float(cos[same].mean()) if same.any() else float("nan"),
                  "between_class_cosine": float(cos[diff].mean()) if diff.any() else float("nan"),
                  "within_pairs_ge_0.99": float((cos[same] >= 0.99).mean()) if same.any() else float("nan")}
    return out


def val_scores(run: Path, archive, batch_size: int = 256) -> tuple[dict[str, np.ndarray], object, dict]:
    """Fold-9 scores of a trained run: fused probabilities and each branch's own logits (ranked for the
    AUROC; the reference's fixed 1 / −0.5 last layer can give logits of −10³ whose sigmoid underflows
    to ties), its model and meta."""
    model, meta = load_checkpoint(run / "model.pt")
    signals = archive.signals[archive.rows("val")]
    fused, branch = [], {g: [] for g in model.branches}
    with torch.no_grad():
        for start in range(0, len(signals), batch_size):
            out = model(torch.from_numpy(np.ascontiguousarray(signals[start:start + batch_size], dtype=np.float32)))
            fused.append(torch.sigmoid(out.logits.double()).numpy())
            for g in branch:
                branch[g].append(out.branch[g].logits.double().numpy())
    return {"fused": np.concatenate(fused), **{g: np.concatenate(v) for g, v in branch.items()}}, model, meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="PTB-XL folder (e.g. ../shared/data/ptbxl-dev)")
    parser.add_argument("--work", default="/work/exp/ablation/runs", help="folder for the runs and their logs")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "ablation"),
                        help="report path without suffix (.json and .md are written)")
    parser.add_argument("--budget", type=float, default=0.04,
                        help="fraction of the preset's branch-stage epochs (joint 200, last layer 20); default %(default)s")
    parser.add_argument("--min-epochs", type=int, default=3, help="at least this many epochs per branch stage")
    parser.add_argument("--lr-scale", type=float, default=10.0,
                        help="multiplies every learning rate, to make up for the shorter schedule (default %(default)s)")
    parser.add_argument("--width", type=int, default=16, help="base width of every branch (reference 64)")
    parser.add_argument("--variants", nargs="*", default=None, help=f"subset of {list(variants())}")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="patient-bootstrap resamples")
    parser.add_argument("--reuse", action="store_true", help="report the runs already in --work instead of training")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    chosen = {k: v for k, v in variants().items() if args.variants is None or k in args.variants or k == "reference"}
    common = budget_overrides(args.budget, args.min_epochs, args.lr_scale, args.width)
    wall = {}
    for name, sets in chosen.items():
        if args.reuse and (work / name / "model.pt").is_file():
            differ = settings_differ(work / name, load_config(REPO / PRESET, [f"data.root={args.data}", *common, *sets]))
            if not differ:
                wall[name] = json.loads((work / name / "train_summary.json").read_text())["seconds_training_total"]
                continue
            print(f"{name}: the stored run differs in {differ[:5]}; training it again", flush=True)
        print(f"training {name} ...", flush=True)
        wall[name] = train(name, common + sets, args.data, work)
        print(f"  {wall[name]:.0f} s", flush=True)
    cfg = load_config(REPO / PRESET, [f"data.root={args.data}"])
    archive = prepare_cache(cfg.data)
    rows = archive.rows("val")
    y = np.asarray(archive.labels[rows])
    patients = archive.index.loc[rows, "patient_id"].to_numpy()
    ref_probs, _, _ = val_scores(work / "reference", archive)
    result: dict = {"data": args.data, "preset": PRESET, "n_val_records": int(len(rows)),
                    "n_val_patients": int(len(np.unique(patients))), "n_bootstrap": args.n_bootstrap, "ci_level": 0.95,
                    "budget": {"fraction": args.budget, "min_epochs": args.min_epochs, "lr_scale": args.lr_scale,
                               "base_width": args.width, "overrides": common,
                               "fusion_epochs": int(cfg.train.fusion_epochs)},
                    "preprocessing": {"highpass_hz": cfg.data.highpass_hz, "highpass_order": cfg.data.highpass_order,
                                      "highpass_edge": getattr(cfg.data, "highpass_edge", "scipy"),
                                      "standardize": cfg.data.standardize},
                    "departures": {k: {"overrides": v[0], "change": v[1]} for k, v in DEPARTURES.items()},
                    "variants": {}, "threads": 1, "cpu_count": os.cpu_count(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}
    for name in chosen:
        run = work / name
        probs, model, meta = val_scores(run, archive)
        table = paired_auroc_difference(y, probs, ref_probs, patients, TASKS, args.n_bootstrap, cfg.seed, 0.95)
        summary = json.loads((run / "train_summary.json").read_text())
        joint = {r["branch"]: r["val_macro_auroc"] for r in stage_table(run) if r["stage"] == "joint"}
        result["variants"][name] = {
            "overrides": chosen[name], "auroc": table.to_dict("records"), "joint_stage_val_auroc": joint,
            "geometry": geometry(model, meta),
            "unique_source_ecgs": {g: v["unique_source_ecgs"] for g, v in summary["projection"].items()},
            "n_prototypes": {g: v["n_prototypes"] for g, v in summary["projection"].items()},
            "train_seconds": round(float(summary["seconds_training_total"]), 1),
            "wall_seconds": round(float(wall[name]), 1),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    """The report as a Markdown page."""
    b = result["budget"]
    lines = [
        "# Ablation: ecgproto's departures from the ProtoECGNet reference", "",
        f"Data `{result['data']}`: folds 1-8 train, fold 9 ({result['n_val_records']} records, "
        f"{result['n_val_patients']} patients) scores every run. Start: `{result['preset']}`; each row switches one "
        "departure to ecgproto's default (the last row all of them). Every run: the same data, seed and "
        f"preprocessing (high-pass {result['preprocessing']['highpass_hz']} Hz, order "
        f"{result['preprocessing']['highpass_order']}, zero-phase, edge rule `{result['preprocessing']['highpass_edge']}`, "
        f"standardisation {'on' if result['preprocessing']['standardize'] else 'off'}).", "",
        f"**Reduced budget** (so that the {len(result['variants'])} runs fit in about an hour on one CPU thread): "
        f"branch-stage epochs × {b['fraction']:g} (at least {b['min_epochs']}), every learning rate × {b['lr_scale']:g}, "
        f"base width {b['base_width']} instead of 64, fusion head {b['fusion_epochs']} epochs on cached similarities. "
        f"Overrides: `{'`, `'.join(b['overrides'])}`. These are not reference-scale results: they measure each switch "
        "at this budget.", "",
        f"Macro AUROC on fold 9 with 95 % patient-bootstrap CIs ({result['n_bootstrap']} resamples); Δ = variant − "
        "reference on the same resamples. Per branch: the branch's own last layer (after projection and the "
        "last-layer stage), ranked by its logits; \"joint\" = the branch's validation macro AUROC at the end of its "
        "joint stage, before projection (train_log.csv).", "",
        "| variant | change | fused | Δ fused | rhythm | morphology | global | Δ morphology | joint r / m / g |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        a = {r["task"]: r for r in v["auroc"]}
        change = result["departures"].get(name, {}).get("change", "reference preset" if name == "reference"
                                                          else "all six departures")
        j = v["joint_stage_val_auroc"]
        delta = lambda t: "" if name == "reference" else _ci(a[t], "diff")  # noqa: E731
        lines.append(f"| {name} | {change} | {_ci(a['fused:all71'], 'a')} | {delta('fused:all71')} "
                     f"| {_ci(a['rhythm:group:rhythm'], 'a')} | {_ci(a['morphology:group:morphology'], 'a')} "
                     f"| {_ci(a['global:group:global'], 'a')} | {delta('morphology:group:morphology')} "
                     f"| {j.get('rhythm', float('nan')):.3f} / {j.get('morphology', float('nan')):.3f} / "
                     f"{j.get('global', float('nan')):.3f} |")
    lines += ["", "Prototype geometry (projected prototypes; cosine of pairs within a class / between classes; share of "
              "within-class pairs with cosine ≥ 0.99), unique source ECGs and training time:", "",
              "| variant | rhythm within / between | morphology within / between | global within / between "
              "| within ≥ 0.99 r / m / g | unique source ECGs r / m / g | train s |", "|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        g = v["geometry"]
        u, n = v["unique_source_ecgs"], v["n_prototypes"]
        cells = [f"{g[b]['within_class_cosine']:.3f} / {g[b]['between_class_cosine']:.3f}" for b in GROUPS]
        dup = " / ".join(f"{g[b]['within_pairs_ge_0.99']:.2f}" for b in GROUPS)
        src = " / ".join(f"{u[b]} of {n[b]}" for b in GROUPS)
        lines.append(f"| {name} | {' | '.join(cells)} | {dup} | {src} | {v['train_seconds']:.0f} |")
    lines += ["", f"One thread per run, runs one after another (niced); load average at the end "
              f"{result['load_average_1_5_15']} on {result['cpu_count']} cores shared with other work.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
