"""Benchmark: do explanations point at the simulated findings? (issue 4, last "must show")

For every correctly predicted morphology label of a synthetic record, the window
highlighted for its best-ranked morphology prototype (exactly what ``ecgproto explain``
shades) is compared with the generator's ground truth (``ptbxl/findings.csv``: one row
per affected beat, or per ectopic beat for PVC/PAC). Reported: the hit rate over all
localised findings (target ≥ 0.70), per code, for the sparse ectopic beats, and beside
each the chance rate of a window of the same length placed at random — per-beat findings
recur every beat, so their chance rate is high and the ectopic subset is the demanding case.

Model: ``--checkpoint`` if given, else ``runs/demo/train/model.pt`` when present, else
a small model is trained here on a fresh synthetic archive (configs/demo.yaml plus
``--set`` overrides). Evaluation records: a separate synthetic archive (another seed,
all folds), so no record was seen in training.

Writes ``reports/benchmarks/explain_localisation.json``.

Usage: ``python benchmarks/bench_explain_localisation.py [--checkpoint PATH] [--n-train 2000]
[--n-eval 3000] [--work DIR] [--set key=value ...]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecgproto.config import load_config  # noqa: E402
from ecgproto.synth.config import SynthConfig  # noqa: E402
from ecgproto.synth import write_synthetic_archive  # noqa: E402
from ecgproto.explain.localisation import evaluate_localisation  # noqa: E402
from ecgproto.model.checkpoint import load_checkpoint  # noqa: E402

DEMO_CHECKPOINT = REPO / "runs" / "demo" / "train" / "model.pt"
OUT = REPO / "reports" / "benchmarks" / "explain_localisation.json"
EVAL_SEED = 987_654
# Small model that trains in minutes on 2 CPU cores (applied before the user's --set overrides).
BENCH_OVERRIDES = [
    *(f"model.branches.{g}.base_width=8" for g in ("rhythm", "morphology", "global")),
    "model.branches.rhythm.prototypes_per_class=1",
    "model.branches.morphology.prototypes_per_class=2",
    "model.branches.global.prototypes_per_class=1",
    "train.stages=[{name: joint, epochs: 10, lr: 0.002}, {name: projection}, {name: last_layer, epochs: 2, lr: 0.001}]",
    "train.fusion_epochs=30",
    "train.fusion_lr=0.01",
    "train.batch_size=32",
    "train.threads=1",
    "data.num_workers=1",
]


def train_small(work: Path, n_records: int, overrides: list[str], config: str | None) -> Path:
    """Synthetic training archive → cache → ``train_model``; returns the checkpoint path."""
    from ecgproto.data.cache import prepare_cache
    from ecgproto.train.run import MODEL_NAME, train_model

    synth_dir = work / "train_archive"
    cfg = load_config(config, [*BENCH_OVERRIDES, f"synth.n_records={n_records}", "synth.n_mimic_subjects=0",
                               f"data.root={synth_dir}", f"data.cache_dir={work / 'cache'}", *overrides])
    if not (synth_dir / "ptbxl" / "ptbxl_database.csv").is_file():
        write_synthetic_archive(synth_dir, cfg.synth, overwrite=True)
    archive = prepare_cache(cfg.data)
    outcome = train_model(cfg, archive, work / "train")
    if outcome is None:
        raise RuntimeError("training stopped early; nothing to evaluate")
    return work / "train" / MODEL_NAME


def _rel(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (portable reports)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def eval_archive(work: Path, n_records: int) -> Path:
    """A fresh synthetic archive (seed ``EVAL_SEED``) for evaluation; reused when present."""
    root = work / f"eval_archive_{n_records}_{EVAL_SEED}"
    if not (root / "ptbxl" / "findings.csv").is_file():
        write_synthetic_archive(root, SynthConfig(n_records=n_records, n_mimic_subjects=0, seed=EVAL_SEED), overwrite=True)
    return root / "ptbxl"


def run(checkpoint: Path | None, work: Path, n_train: int, n_eval: int, overrides: list[str],
        config: str | None = str(REPO / "configs" / "demo.yaml"), out: Path | None = OUT) -> dict:
    """Train or load, evaluate, write ``out`` (when given) and return the figures."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    trained_here = False
    if checkpoint is None and DEMO_CHECKPOINT.is_file():
        checkpoint = DEMO_CHECKPOINT
    if checkpoint is None:
        checkpoint = train_small(work, n_train, overrides, config)
        trained_here = True
    t_train = time.perf_counter() - t0
    model, meta = load_checkpoint(checkpoint)
    root = eval_archive(work, n_eval)
    t1 = time.perf_counter()
    figures = evaluate_localisation(model, meta, root, folds=tuple(range(1, 11)))
    figures.update({
        "checkpoint": _rel(checkpoint),
        "archive": _rel(figures["archive"]),
        "trained_here": trained_here,
        "train_overrides": [*BENCH_OVERRIDES, *overrides] if trained_here else None,
        "val_metrics": meta.get("val_metrics"),
        "target_hit_rate": 0.70,
        "meets_target": bool(figures["all_localised"]["hit_rate"] is not None and figures["all_localised"]["hit_rate"] >= 0.70),
        "seconds_train": round(t_train, 1),
        "seconds_evaluate": round(time.perf_counter() - t1, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
    })
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
        tmp.replace(out)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to evaluate (default: demo or train one)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_explain_localisation",
                    help="folder for the synthetic archives, cache and trained model")
    ap.add_argument("--n-train", type=int, default=2000, help="synthetic training records when training here")
    ap.add_argument("--n-eval", type=int, default=3000, help="synthetic evaluation records (fresh seed)")
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"), help="training config when training here")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="training config override (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON output")
    args = ap.parse_args()
    figures = run(args.checkpoint, args.work, args.n_train, args.n_eval, args.overrides, args.config, args.out)
    a, e = figures["all_localised"], figures["ectopic_beats"]
    print(f"all localised findings: hit rate {a['hit_rate']} over {a['n_cases']} cases (chance {a['chance_rate']})")
    print(f"ectopic beats (PVC/PAC): hit rate {e['hit_rate']} over {e['n_cases']} cases (chance {e['chance_rate']})")
    for code, block in figures["per_code"].items():
        print(f"  {code:8s} n={block['n_cases']:4d} hit={block['hit_rate']:.3f} chance={block['chance_rate']:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
