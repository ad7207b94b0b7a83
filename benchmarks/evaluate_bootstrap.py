"""Cost of patient-level bootstrap AUROC for all labels at PTB-XL test-fold scale.

Vectorised weighted AUROC (all resamples at once, one sort per label) against the naive
loop (scikit-learn ``roc_auc_score`` per label per resample). Writes
``reports/benchmarks/evaluate_bootstrap.json``.

    python benchmarks/evaluate_bootstrap.py [--n 2198] [--labels 71] [--resamples 1000]
    python benchmarks/evaluate_bootstrap.py --memory [--n 20000] [--labels 71] [--block 100]

``--memory`` compares, in one run, the dense (B, N) weight matrix against resample blocks
(``BootstrapPlan.blocks``) for the bootstrap AUROC, AUPRC and Brier score of every label: seconds,
peak traced memory (tracemalloc) and the largest difference; it adds a "resample_blocks" entry to
the JSON and keeps the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ecgproto.evaluate.bootstrap import patient_bootstrap
from ecgproto.evaluate.metrics import auroc_weighted, average_precision_weighted, brier_weighted


def memory_compare(n: int, labels: int, resamples: int, block: int) -> dict:
    """Dense weights vs resample blocks: seconds, peak traced MB, max |difference| of the resample values."""
    rng = np.random.default_rng(0)
    y = rng.random((n, labels)) < np.geomspace(0.002, 0.4, labels)
    p = np.clip(0.3 * y + rng.random((n, labels)), 0, 1)
    plan = patient_bootstrap(rng.integers(0, int(n * 0.9), n), resamples, seed=0)
    metrics = (auroc_weighted, average_precision_weighted, brier_weighted)

    def dense():
        w = plan.weights()
        return [m(y, p, w) for m in metrics]

    def blocked():
        wb = plan.blocks(block=block)
        return [wb.map(lambda w, m=m: m(y, p, w)) for m in metrics]

    entry: dict = {"records": n, "labels": labels, "resamples": resamples, "block": block}
    values = {}
    for name, fn in (("dense", dense), ("blocks", blocked)):
        tracemalloc.start()
        t0 = time.perf_counter()
        values[name] = fn()
        entry[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
        entry[f"{name}_peak_traced_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        print(f"{name}: {entry[f'{name}_seconds']} s, peak {entry[f'{name}_peak_traced_mb']} MB", flush=True)
    entry["max_abs_diff"] = float(max(np.nanmax(np.abs(a - b)) for a, b in zip(values["dense"], values["blocks"])))
    entry["cpu_threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
    entry["load_average"] = list(os.getloadavg())
    return entry


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
    parser.add_argument("--memory", action="store_true", help="dense vs resample blocks (see above)")
    parser.add_argument("--block", type=int, default=100, help="resamples per block for --memory")
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if args.memory:
        previous["resample_blocks"] = memory_compare(args.n, args.labels, args.resamples, args.block)
        print(json.dumps(previous["resample_blocks"], indent=2))
        _write(out, previous)
        return
    rng = np.random.default_rng(0)
    prevalence = np.geomspace(0.002, 0.4, args.labels)
    y = rng.random((args.n, args.labels)) < prevalence
    p = np.clip(0.3 * y + rng.random((args.n, args.labels)), 0, 1)
    patients = rng.integers(0, int(args.n * 0.9), args.n)
    plan = patient_bootstrap(patients, args.resamples, seed=0)
    t0 = time.perf_counter()
    w = plan.weights()
    fast = auroc_weighted(y, p, w)
    t_fast = time.perf_counter() - t0

    t0 = time.perf_counter()
    for b in range(args.naive_resamples):
        idx = np.repeat(np.arange(args.n), w[b].astype(int))
        for c in range(args.labels):
            yc = y[idx, c]
            if 0 < yc.sum() < len(yc):
                ref = roc_auc_score(yc, p[idx, c])
                assert abs(ref - fast[b, c]) < 1e-9
    t_naive = (time.perf_counter() - t0) / args.naive_resamples * args.resamples
    result = {
        "records": args.n, "labels": args.labels, "resamples": args.resamples, "patients": plan.n_patients,
        "vectorised_seconds": round(t_fast, 2), "naive_sklearn_seconds_extrapolated": round(t_naive, 1),
        "speedup": round(t_naive / t_fast, 1), "checked_equal_on_resamples": args.naive_resamples,
        "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "note": "shared 2-core machine; naive time extrapolated from the timed resamples",
    }
    if "resample_blocks" in previous:
        result["resample_blocks"] = previous["resample_blocks"]
    print(json.dumps(result, indent=2))
    _write(out, result)


if __name__ == "__main__":
    main()
