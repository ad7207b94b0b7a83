"""Real-data benchmark: ecgproto against its black-box twin and a logistic regression on real PTB-XL.

    python benchmarks/real_ptbxl.py --data ../shared/data/ptbxl-dev            # train all three + report
    python benchmarks/real_ptbxl.py --data ../shared/data/ptbxl-dev --reuse    # report existing runs

Trains on folds 1-8 (``configs/ptbxl_dev.yaml``), selects on fold 9 and reports fold 9
(validation) and fold 10 (test; only 66 records in ptbxl-dev, indicative):
- ecgproto (``ecgproto train``) and its black-box twin (the same config with
  ``model.kind=blackbox``: same backbones, linear heads, same data, augmentation and epochs minus
  the prototype stages), trained side by side in two processes of one thread each (2 cores);
- a logistic regression per label on hand-made per-lead features (median beats, RR statistics,
  band powers, amplitudes: ``ecgproto.synth.summary_features``), its L2 strength chosen on
  fold 9.
Macro AUROC over the labels with positives, the 5 diagnostic superclasses, the rhythm and form
statements, each with 95 % patient-bootstrap CIs and paired differences (same resamples); the
per-branch validation AUROC after every stage; mean predicted labels per record against the true
mean at each model's validation-tuned thresholds; training times. Writes
``reports/benchmarks/real_ptbxl.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecgproto.config import load_config  # noqa: E402
from ecgproto.data.cache import prepare_cache  # noqa: E402
from ecgproto.data.labels import all_labels, benchmark_label_set  # noqa: E402
from ecgproto.synth.summary_features import summary_features  # noqa: E402
from ecgproto.evaluate.compare import paired_auroc_difference  # noqa: E402
from ecgproto.metrics import macro_auroc  # noqa: E402
from ecgproto.evaluate.tasks import Task  # noqa: E402
from ecgproto.model.thresholds import tune_thresholds  # noqa: E402
from ecgproto.model.inference import predict_arrays  # noqa: E402
from ecgproto.model.checkpoint import load_checkpoint  # noqa: E402

TASKS = (
    Task("fused", "all71", all_labels()),
    Task("fused", "benchmark:superdiagnostic", benchmark_label_set("superdiagnostic")),
    Task("fused", "benchmark:rhythm", benchmark_label_set("rhythm")),
    Task("fused", "benchmark:form", benchmark_label_set("form")),
)
TASK_NAMES = {"fused:all71": "all labels with positives", "fused:benchmark:superdiagnostic": "5 superclasses",
              "fused:benchmark:rhythm": "rhythm statements", "fused:benchmark:form": "form statements"}
LOGISTIC_C = (0.01, 0.1, 1.0)


def train_side_by_side(config: str, data: str, work: Path) -> dict[str, float]:
    """Train ecgproto and its twin in two concurrent one-thread processes; wall seconds of each."""
    cli = [sys.executable, "-m", "ecgproto.cli", "train", "--config", config, "--data", data, "--set", "train.threads=1",
           "--force"]
    runs = {"ecgproto": [], "twin": ["--set", "model.kind=blackbox"]}
    env = {**os.environ, "ECGPROTO_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    procs, started, wall = {}, {}, {}
    for name, extra in runs.items():
        log = open(work / f"{name}.log", "w")
        started[name] = time.perf_counter()
        procs[name] = subprocess.Popen([*cli, *extra, "--out", str(work / name)], cwd=REPO, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
    while procs:
        for name, proc in list(procs.items()):
            if proc.poll() is not None:
                wall[name] = time.perf_counter() - started[name]
                if proc.returncode != 0:
                    raise SystemExit(f"training {name} failed (exit {proc.returncode}); see {work / name}.log")
                del procs[name]
        time.sleep(2)
    return wall


def logistic_baseline(archive, seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-label logistic regression on hand-made features: probabilities per split, C and timings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    rows = {s: archive.rows(s) for s in ("train", "val", "test")}
    feats = {s: summary_features(np.asarray(archive.signals[r], dtype=np.float64), archive.fs) for s, r in rows.items()}
    scaler = StandardScaler().fit(feats["train"])
    feats = {s: scaler.transform(f) for s, f in feats.items()}
    t_feat = time.perf_counter() - t0
    y = {s: np.asarray(archive.labels[r]).astype(bool) for s, r in rows.items()}
    best: tuple[float, float, dict[str, np.ndarray]] | None = None
    for c_value in LOGISTIC_C:
        probs = {s: np.zeros((len(rows[s]), y["train"].shape[1])) for s in rows}
        for j in range(y["train"].shape[1]):
            n_pos = int(y["train"][:, j].sum())
            if n_pos == 0 or n_pos == len(y["train"]):
                for s in rows:
                    probs[s][:, j] = n_pos / len(y["train"])
                continue
            fit = LogisticRegression(C=c_value, max_iter=2000, random_state=seed).fit(feats["train"], y["train"][:, j])
            for s in rows:
                probs[s][:, j] = fit.predict_proba(feats[s])[:, 1]
        val = macro_auroc(y["val"], probs["val"])
        if best is None or val > best[1]:
            best = (c_value, val, probs)
    return best[2], {"C": best[0], "val_macro_auroc": best[1], "seconds_features": t_feat,
                     "seconds_total": time.perf_counter() - t0}


def stage_table(run: Path) -> list[dict]:
    """Per branch and stage: the validation macro AUROC (every label with a positive) the stage
    ended with and its change.

    A projection's last-layer re-fit (``last_layer_refit`` rows) is its own line, so the cost of
    the projection itself stays visible.
    """
    log = pd.read_csv(run / "train_log.csv")
    log["step"] = log["stage"].where(log["stage"] != "last_layer_refit", log["phase"] + " + re-fit")
    log.loc[log["stage"] != "last_layer_refit", "step"] = log["phase"]
    out, previous = [], {}
    for step, rows in log.groupby("step", sort=False):
        branch, stage = rows["branch"].iloc[0], rows["stage"].iloc[0]
        one_pass = stage in ("projection", "prototype_init", "last_layer_refit")
        # a trained stage ends at its selected epoch: the last one marked best
        selected = rows if one_pass else rows[rows["best"].astype(bool)]
        value = float(selected["val_macro_auroc"].iloc[-1])
        out.append({"phase": step, "branch": branch, "stage": stage,
                    "epochs": 0 if one_pass else int((rows["epoch"] >= 0).sum()), "val_macro_auroc": value,
                    "change": None if branch not in previous else value - previous[branch],
                    "seconds": float(rows["seconds"].sum())})
        previous[branch] = value
    return out


def predicted_labels(probs: np.ndarray, thresholds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean predicted and true labels per record at ``thresholds``."""
    pred = probs >= thresholds[None, :]
    return {"predicted_per_record": float(pred.sum(1).mean()), "true_per_record": float(labels.sum(1).mean()),
            "ratio": float(pred.sum(1).mean() / max(labels.sum(1).mean(), 1e-9))}


def model_predictions(run: Path, archive) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Fused probabilities per split of a trained run and its stored thresholds."""
    model, meta = load_checkpoint(run / "model.pt")
    probs = {s: predict_arrays(model, archive.signals[archive.rows(s)]).probs.astype(np.float64)
             for s in ("val", "test")}
    return probs, np.asarray(meta["thresholds"], dtype=np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="PTB-XL folder (e.g. ../shared/data/ptbxl-dev)")
    parser.add_argument("--config", default="configs/ptbxl_dev.yaml", help="training config (default %(default)s)")
    parser.add_argument("--work", default=str(REPO / "runs" / "real_ptbxl"), help="folder for the runs")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "real_ptbxl"),
                        help="report path without suffix (.json and .md are written)")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="patient-bootstrap resamples")
    parser.add_argument("--reuse", action="store_true", help="report the runs already in --work instead of training")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(REPO / args.config if not Path(args.config).is_absolute() else args.config,
                      [f"data.root={args.data}"])
    archive = prepare_cache(cfg.data)
    wall = {}
    if not args.reuse:
        wall = train_side_by_side(args.config, args.data, work)
    else:
        for name in ("ecgproto", "twin"):
            wall[name] = json.loads((work / name / "train_summary.json").read_text())["seconds_training_total"]
    runs = {name: model_predictions(work / name, archive) for name in ("ecgproto", "twin")}
    lr_probs, lr_info = logistic_baseline(archive, cfg.seed)
    y = {s: np.asarray(archive.labels[archive.rows(s)]) for s in ("val", "test")}
    lr_thresholds = tune_thresholds(y["val"], lr_probs["val"], train_labels=np.asarray(archive.labels[archive.rows("train")]),
                                    min_positives=cfg.evaluate.threshold_min_positives,
                                    max_rate_ratio=cfg.evaluate.threshold_max_rate_ratio)
    result: dict = {
        "data": str(args.data), "config": args.config,
        "n_records": {s: int(len(archive.rows(s))) for s in ("train", "val", "test")},
        "n_patients": {s: int(archive.index.loc[archive.rows(s), "patient_id"].nunique()) for s in ("val", "test")},
        "n_bootstrap": args.n_bootstrap, "ci_level": 0.95,
        "train_wall_seconds": {**{k: round(v, 1) for k, v in wall.items()},
                               "logistic": round(lr_info["seconds_total"], 1)},
        "logistic": {k: v for k, v in lr_info.items() if k in ("C", "val_macro_auroc")},
        "stages": {name: stage_table(work / name) for name in ("ecgproto", "twin")},
        "splits": {},
        "cpu_count": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    for split in ("val", "test"):
        patients = archive.index.loc[archive.rows(split), "patient_id"].to_numpy()
        probs = {"ecgproto": runs["ecgproto"][0][split], "twin": runs["twin"][0][split], "logistic": lr_probs[split]}
        tables = {other: paired_auroc_difference(y[split], {"fused": probs["ecgproto"]}, {"fused": probs[other]},
                                                 patients, TASKS, args.n_bootstrap, cfg.seed, 0.95)
                  for other in ("twin", "logistic")}
        thresholds = {"ecgproto": runs["ecgproto"][1], "twin": runs["twin"][1], "logistic": lr_thresholds}
        result["splits"][split] = {
            "vs_twin": tables["twin"].to_dict("records"),
            "vs_logistic": tables["logistic"].to_dict("records"),
            "labels_per_record": {m: predicted_labels(probs[m], thresholds[m], y[split]) for m in probs},
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def _ci(row: dict, key: str) -> str:
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]"


def markdown(result: dict) -> str:
    """The report as a Markdown page."""
    n = result["n_records"]
    lines = [
        "# Real PTB-XL: ecgproto vs its black-box twin vs logistic regression", "",
        f"Data: `{result['data']}`, config `{result['config']}`; {n['train']} training records (folds 1-8), "
        f"{n['val']} validation (fold 9, {result['n_patients']['val']} patients), {n['test']} test (fold 10, "
        f"{result['n_patients']['test']} patients; indicative only). Macro AUROC with 95 % patient-bootstrap CIs "
        f"({result['n_bootstrap']} resamples); differences are paired (same resamples).", "",
    ]
    for split, title in (("val", "Fold 9 (validation, used for selection)"), ("test", "Fold 10 (test)")):
        s = result["splits"][split]
        lines += [f"## {title}", "",
                  "| task | labels | ecgproto | twin | ecgproto − twin | logistic | ecgproto − logistic |",
                  "|---|---|---|---|---|---|---|"]
        for a, b in zip(s["vs_twin"], s["vs_logistic"]):
            lines.append(f"| {TASK_NAMES.get(a['task'], a['task'])} | {a['n_labels']} | {_ci(a, 'a')} | {_ci(a, 'b')} "
                         f"| {_ci(a, 'diff')} | {_ci(b, 'b')} | {_ci(b, 'diff')} |")
        lines += ["", "| model | predicted labels / record | true labels / record | ratio |", "|---|---|---|---|"]
        for m, v in s["labels_per_record"].items():
            lines.append(f"| {m} | {v['predicted_per_record']:.2f} | {v['true_per_record']:.2f} | {v['ratio']:.2f} |")
        lines.append("")
    lines += ["## Validation macro AUROC after every stage", "",
              "| model | phase | epochs | val AUROC | change | seconds |", "|---|---|---|---|---|---|"]
    for model, rows in result["stages"].items():
        for r in rows:
            change = "" if r["change"] is None else f"{r['change']:+.3f}"
            lines.append(f"| {model} | {r['phase']} | {r['epochs']} | {r['val_macro_auroc']:.3f} | {change} "
                         f"| {r['seconds']:.0f} |")
    t = result["train_wall_seconds"]
    lines += ["", f"Training wall time (2 cores; ecgproto and twin side by side, one thread each): ecgproto "
              f"{t['ecgproto']:.0f} s, twin {t['twin']:.0f} s; logistic regression {t['logistic']:.0f} s "
              f"(C = {result['logistic']['C']} chosen on fold 9). Load average at the end: "
              f"{result['load_average_1_5_15']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
