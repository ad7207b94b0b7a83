"""Cost of the patient-level bootstrap of ``ecgproto evaluate``.

Default: vectorised weighted AUROC (all resamples at once, one sort per label) against the naive
loop (scikit-learn ``roc_auc_score`` per label per resample) at PTB-XL test-fold scale.

``--evaluation``: the real evaluation path, ``evaluate_predictions`` with its default tasks and
subgroups (fused 71 labels, three branch outputs with thresholds, benchmark sets, sex/age/quality
subgroups), on synthetic predictions (:func:`synthetic_predictions`: PTB-XL-like prevalences,
~1.3 records per patient) at each ``--sizes`` record count × ``--resamples``. Each size runs in
its own process: wall time of ``evaluate_predictions`` and the process's peak resident memory
(ru_maxrss, so it includes Python, the libraries and the synthetic arrays). ``--reference DIR``
(a folder holding an earlier ``ecgproto`` package, e.g. ``git archive <commit> ecgproto | tar -x
-C DIR``) also runs that implementation at the smallest size in the same run, compares every
number of the two evaluations and reports the time ratio. Writes the "evaluation" entry of
``reports/benchmarks/evaluate_bootstrap.json`` and keeps the rest.

    python benchmarks/evaluate_bootstrap.py [--n 2198] [--labels 71] [--resamples 1000]
    OMP_NUM_THREADS=1 python benchmarks/evaluate_bootstrap.py --evaluation --sizes 20000 100000 \\
        [--reference /tmp/ref --reference-label <commit>]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_predictions(n: int, seed: int = 0, records_per_patient: float = 1.3):
    """Predictions for ``n`` records: fused (71) and branch probabilities, thresholds, subgroup info.

    Prevalences follow PTB-XL's shape (two common statements at 0.77 and 0.48, the other 69
    spread geometrically from 0.13 to 0.0004: ~2.8 labels per record); probabilities are float32
    values (ties as in model output); patients have 1 + geometric extra records (mean
    ``records_per_patient``).
    """
    import pandas as pd

    from ecgproto.data.labels import GROUPS, all_labels, label_table
    from ecgproto.evaluate.evaluation import Predictions

    rng = np.random.default_rng(seed)
    c = len(all_labels())
    prevalence = rng.permutation(np.r_[0.77, 0.48, np.geomspace(0.13, 0.0004, c - 2)])
    y = rng.random((n, c)) < prevalence
    logit = rng.normal(size=(n, c)) + 2.0 * y + np.log(prevalence / (1 - prevalence))
    p = (1 / (1 + np.exp(-logit))).astype(np.float32).astype(np.float64)
    patient = rng.permutation(np.repeat(np.arange(n), rng.geometric(1 / records_per_patient, size=n))[:n])
    probs = {"fused": p}
    for g in GROUPS:
        idx = label_table().indices(g)
        noisy = np.clip(p[:, idx] + 0.02 * rng.normal(size=(n, len(idx))), 0, 1)
        probs[g] = noisy.astype(np.float32).astype(np.float64)
    thresholds = {k: np.quantile(v, 0.9, axis=0) for k, v in probs.items()}
    info = pd.DataFrame({"sex": rng.integers(0, 2, n), "age": rng.choice([25.0, 50.0, 70.0, 85.0, 300.0, np.nan], n),
                         "static_noise": rng.choice(["", " I,II"], n, p=[0.85, 0.15]),
                         "baseline_drift": rng.choice(["", "V1"], n, p=[0.9, 0.1])})
    return Predictions(np.arange(1, n + 1), patient, y.astype(np.uint8), probs, thresholds, "validation", info)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(n: int, resamples: int, out: Path) -> None:
    """Child process: time ``evaluate_predictions`` on ``n`` synthetic records; pickle tables + figures to ``out``."""
    from ecgproto.evaluate.config import EvaluateConfig
    from ecgproto.evaluate.evaluation import evaluate_predictions

    pred = synthetic_predictions(n)
    rss_before = _rss_mb()
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    ev = evaluate_predictions(pred, EvaluateConfig(n_bootstrap=resamples, gallery_size=0), seed=0)
    seconds = time.perf_counter() - t0
    figures = {
        "records": n, "patients": int(ev.plan.n_patients), "labels_per_record": round(float(pred.labels.sum(1).mean()), 2),
        "resamples": resamples, "tasks": int(len(ev.summary)), "subgroups": int(len(ev.subgroups)),
        "seconds": round(seconds, 1), "peak_rss_mb": round(_rss_mb(), 0), "rss_before_evaluate_mb": round(rss_before, 0),
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "package": str(Path(sys.modules["ecgproto"].__file__).parent),
    }
    with open(out, "wb") as fh:
        pickle.dump({"figures": figures, "tables": (ev.summary, ev.per_label, ev.subgroups)}, fh)


def _spawn(n: int, resamples: int, out: Path, reference: str | None) -> dict:
    env = dict(os.environ, ECGPROTO_NO_PROGRESS="1")
    env["PYTHONPATH"] = os.pathsep.join([p for p in (reference, str(REPO)) if p])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", str(n), "--resamples", str(resamples),
           "--case-out", str(out)]
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    with open(out, "rb") as fh:
        return pickle.load(fh)


def _max_difference(a: tuple, b: tuple) -> dict:
    """Largest |difference| over every numeric cell of (summary, per_label, subgroups); NaN placement must agree."""
    worst, same_nan, identical = 0.0, True, True
    for x, y in zip(a, b):
        if list(x.columns) != list(y.columns) or x.shape != y.shape:
            return {"comparable": False}
        num = x.select_dtypes("number").columns
        xv, yv = x[num].to_numpy(float), y[num].to_numpy(float)
        same_nan &= bool((np.isnan(xv) == np.isnan(yv)).all())
        identical &= bool(np.array_equal(xv, yv, equal_nan=True)) and x.drop(columns=num).equals(y.drop(columns=num))
        d = np.abs(xv - yv)
        worst = max(worst, float(np.nanmax(d)) if np.isfinite(d).any() else 0.0)
    return {"comparable": True, "max_abs_diff": worst, "nan_placement_equal": same_nan, "identical": identical}


def evaluation_benchmark(sizes: list[int], resamples: int, reference: str | None, reference_label: str) -> dict:
    """Each size with the current package; the smallest also with ``reference`` (see module docstring)."""
    entry: dict = {"path": "evaluate_predictions (default tasks + subgroups), synthetic predictions",
                   "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "cpu_count": os.cpu_count(),
                   "load_average_start": [round(x, 2) for x in os.getloadavg()], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n in sizes:
            results[n] = _spawn(n, resamples, Path(tmp) / f"cur{n}.pkl", None)
            entry["runs"].append({"implementation": "current", **results[n]["figures"]})
            print(json.dumps(entry["runs"][-1]), flush=True)
        if reference:
            n = min(sizes)
            ref = _spawn(n, resamples, Path(tmp) / f"ref{n}.pkl", reference)
            entry["runs"].append({"implementation": f"previous ({reference_label})", **ref["figures"]})
            print(json.dumps(entry["runs"][-1]), flush=True)
            entry["previous_vs_current"] = {
                "records": n, "speedup": round(ref["figures"]["seconds"] / results[n]["figures"]["seconds"], 2),
                **_max_difference(ref["tables"], results[n]["tables"])}
    entry["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return entry


def naive_compare(n: int, labels: int, resamples: int, naive_resamples: int) -> dict:
    """Vectorised bootstrap AUROC against a scikit-learn loop (timed on ``naive_resamples``, extrapolated)."""
    from sklearn.metrics import roc_auc_score

    from ecgproto.evaluate.bootstrap import patient_bootstrap
    from ecgproto.evaluate.metrics import auroc_weighted

    rng = np.random.default_rng(0)
    y = rng.random((n, labels)) < np.geomspace(0.002, 0.4, labels)
    p = np.clip(0.3 * y + rng.random((n, labels)), 0, 1)
    plan = patient_bootstrap(rng.integers(0, int(n * 0.9), n), resamples, seed=0)
    t0 = time.perf_counter()
    w = plan.weights()
    fast = auroc_weighted(y, p, w)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in range(naive_resamples):
        idx = np.repeat(np.arange(n), w[b].astype(int))
        for c in range(labels):
            yc = y[idx, c]
            if 0 < yc.sum() < len(yc):
                assert abs(roc_auc_score(yc, p[idx, c]) - fast[b, c]) < 1e-9
    t_naive = (time.perf_counter() - t0) / naive_resamples * resamples
    return {
        "records": n, "labels": labels, "resamples": resamples, "patients": plan.n_patients,
        "vectorised_seconds": round(t_fast, 2), "naive_sklearn_seconds_extrapolated": round(t_naive, 1),
        "speedup": round(t_naive / t_fast, 1), "checked_equal_on_resamples": naive_resamples,
        "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "note": "shared 2-core machine; naive time extrapolated from the timed resamples",
    }


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2198, help="records (PTB-XL v1.0.3 fold 10: 2198)")
    parser.add_argument("--labels", type=int, default=71)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=10, help="resamples timed for the naive loop")
    parser.add_argument("--out", default="reports/benchmarks/evaluate_bootstrap.json")
    parser.add_argument("--evaluation", action="store_true", help="the real evaluation path (see above)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--reference", default=None, help="folder with an earlier ecgproto package")
    parser.add_argument("--reference-label", default="reference", help="how the JSON names the reference")
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--case-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        run_case(args.case, args.resamples, Path(args.case_out))
        return
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if args.evaluation:
        previous.pop("resample_blocks", None)  # measured ResampleWeights, which the evaluation no longer uses
        previous["evaluation"] = evaluation_benchmark(args.sizes, args.resamples, args.reference, args.reference_label)
        print(json.dumps(previous["evaluation"], indent=2))
        _write(out, previous)
        return
    result = naive_compare(args.n, args.labels, args.resamples, args.naive_resamples)
    result.update({k: v for k, v in previous.items() if k == "evaluation"})
    print(json.dumps(result, indent=2))
    _write(out, result)


if __name__ == "__main__":
    main()
