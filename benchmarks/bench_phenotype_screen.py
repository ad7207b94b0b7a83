"""Benchmark: full covariate-adjusted score-test screen + rank AUC at PheWAS scale.

Default: 1,037 features × 1,000 phecodes × 20,000 patients (the reference ProtoECGNet
prototype count), 3 covariates (intercept, age, sex), 20% of phecodes with excluded controls
and 5% sex-specific. Times the screen with float64 and float32 matrix products, the rank
AUC of every pair, and checks that float32 and float64 p-values agree.

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_phenotype_screen.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_phenotype_screen.py --rank-auc-compare

``--rank-auc-compare`` times only the rank AUC, the counting implementation against the former
per-phecode re-ranking one (the reference kept in tests/phenotype/test_auroc_fast.py), in the
same run on a smaller cohort (default 20,000 × 200 phecodes × 50 features), and adds the
"rank_auc" entry to the JSON, keeping its other content.

On a machine shared with other jobs, multi-threaded BLAS can be much slower than one
thread (thread contention); the JSON records the thread setting and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ecgproto.phenotype.stats import rank_auc, score_screen


def make_data(n: int, p: int, k: int, seed: int):
    """Random features, covariates and phecodes with prevalences 0.5–20% (10% of phecodes truly associated)."""
    rng = np.random.default_rng(seed)
    Z = np.column_stack([np.ones(n), rng.normal(0, 1.6, n), rng.integers(0, 2, n)]).astype(np.float64)
    X = rng.normal(size=(n, p)).astype(np.float32)
    prev = np.exp(rng.uniform(np.log(0.005), np.log(0.2), k))
    lin = np.log(prev / (1 - prev))[None, :] + 0.2 * Z[:, [1]]
    signal = rng.random(k) < 0.1
    lin[:, signal] += 0.3 * X[:, rng.integers(0, p, signal.sum())]
    Y = (rng.random((n, k)) < 1 / (1 + np.exp(-lin))).astype(np.uint8)
    mask = np.ones((n, k), dtype=bool)
    excl = rng.random(k) < 0.2
    mask[:, excl] = (rng.random((n, excl.sum())) > 0.05) | Y[:, excl].astype(bool)
    pop = np.ones_like(mask)
    sex_specific = rng.random(k) < 0.05
    pop[:, sex_specific] = (Z[:, [2]] == 1)
    mask &= pop
    Y &= pop.astype(np.uint8)
    return X, Y, mask, pop, Z


def _write(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)


def rank_auc_compare(n: int, p: int, k: int, repeats: int = 1) -> dict:
    """Same-run timing of the counting rank AUC vs the former re-ranking one, and their max difference."""
    from tests.phenotype.test_auroc_fast import _reference_rank_auc

    X, Y, mask, pop, _ = make_data(n, p, k, seed=1)
    times = {"old": [], "new": []}
    for _ in range(repeats):
        for name, fn in (("old", _reference_rank_auc), ("new", rank_auc)):
            t0 = time.perf_counter()
            auc = fn(X, Y, mask, pop)
            times[name].append(time.perf_counter() - t0)
            if name == "old":
                ref = auc
    old, new = min(times["old"]), min(times["new"])
    peak = {}
    for name, fn in (("old", _reference_rank_auc), ("new", rank_auc)):  # separate, untimed pass
        tracemalloc.start()
        fn(X, Y, mask, pop)
        peak[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    entry = {"n_patients": n, "n_phecodes": k, "n_features": p,
             "n_phecodes_with_excluded_controls": int(((~mask) & pop).any(0).sum()),
             "old_reranking_s": round(old, 3), "new_counting_s": round(new, 3),
             "speedup_old_over_new": round(old / new, 2), "repeats_min_of": repeats,
             "old_peak_traced_mb": round(peak["old"], 1), "new_peak_traced_mb": round(peak["new"], 1),
             "max_abs_diff": float(np.nanmax(np.abs(auc - ref))),
             "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "load_average": list(os.getloadavg())}
    print(f"rank AUC n={n} K={k} p={p}: old {old:.2f} s, new {new:.2f} s, ratio {old / new:.1f}x, "
          f"max |diff| {entry['max_abs_diff']:.1e}; peak traced memory old {peak['old']:.0f} MB, "
          f"new {peak['new']:.0f} MB", flush=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="patients")
    parser.add_argument("--p", type=int, default=1_037, help="features (prototypes)")
    parser.add_argument("--k", type=int, default=1_000, help="phecodes")
    parser.add_argument("--chunk", type=int, default=128, help="phecodes per chunk")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/phenotype_screen.json"))
    parser.add_argument("--rank-auc-compare", action="store_true",
                        help="only time the rank AUC, old vs new, and add the 'rank_auc' entry to --out")
    parser.add_argument("--cmp-n", type=int, default=20_000, help="patients for --rank-auc-compare")
    parser.add_argument("--cmp-p", type=int, default=50, help="features for --rank-auc-compare")
    parser.add_argument("--cmp-k", type=int, default=200, help="phecodes for --rank-auc-compare")
    args = parser.parse_args(argv)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.rank_auc_compare:
        previous["rank_auc"] = rank_auc_compare(args.cmp_n, args.cmp_p, args.cmp_k)
        _write(args.out, previous)
        return 0
    X, Y, mask, pop, Z = make_data(args.n, args.p, args.k, seed=0)
    print(f"data: n={args.n} p={args.p} K={args.k}; cases per phecode median {int(np.median(Y.sum(0)))}", flush=True)
    results: dict = {"n_patients": args.n, "n_features": args.p, "n_phecodes": args.k, "n_covariates": Z.shape[1],
                     "chunk": args.chunk, "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                     "cpu_count": os.cpu_count(), "platform": platform.platform(), "numpy": np.__version__,
                     "load_average_at_start": list(os.getloadavg())}
    p_by = {}
    for dtype in (np.float32, np.float64):
        t0 = time.perf_counter()
        res = score_screen(X, Y, mask, Z, dtype=dtype, chunk=args.chunk)
        dt = time.perf_counter() - t0
        p_by[dtype.__name__] = res.p
        results[f"screen_{dtype.__name__}_s"] = round(dt, 2)
        results[f"screen_{dtype.__name__}_us_per_test"] = round(1e6 * dt / (args.p * args.k), 3)
        print(f"score screen {dtype.__name__}: {dt:.1f} s ({1e6 * dt / (args.p * args.k):.2f} µs/test)", flush=True)
    l32, l64 = (-np.log10(np.maximum(p_by[k], 1e-300)) for k in ("float32", "float64"))
    results["max_abs_diff_mlog10p_f32_vs_f64"] = float(np.max(np.abs(l32 - l64)))
    results["fpr_at_0.05_float64"] = float((p_by["float64"] < 0.05).mean())
    t0 = time.perf_counter()
    auc = rank_auc(X, Y, mask, pop)
    dt = time.perf_counter() - t0
    results["rank_auc_s"] = round(dt, 2)
    results["auc_finite_fraction"] = float(np.isfinite(auc).mean())
    print(f"rank AUC: {dt:.1f} s", flush=True)
    results["load_average_at_end"] = list(os.getloadavg())
    results["total_s"] = round(results["screen_float64_s"] + results["rank_auc_s"], 2)
    if "rank_auc" in previous:
        results["rank_auc"] = previous["rank_auc"]
    _write(args.out, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
