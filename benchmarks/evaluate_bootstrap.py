"""Cost of patient-level bootstrap AUROC for all labels at PTB-XL test-fold scale.

Vectorised weighted AUROC (all resamples at once, one sort per label) against the naive
loop (scikit-learn ``roc_auc_score`` per label per resample). Writes
``reports/benchmarks/evaluate_bootstrap.json``.

    python benchmarks/evaluate_bootstrap.py [--n 2198] [--labels 71] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ecgproto.evaluate.bootstrap import patient_bootstrap
from ecgproto.evaluate.metrics import auroc_weighted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2198, help="records (PTB-XL v1.0.3 fold 10: 2198)")
    parser.add_argument("--labels", type=int, default=71)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=10, help="resamples timed for the naive loop")
    parser.add_argument("--out", default="reports/benchmarks/evaluate_bootstrap.json")
    args = parser.parse_args()
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
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
