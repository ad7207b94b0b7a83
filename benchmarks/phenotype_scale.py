"""Benchmark: the whole per-family phenotype path at archive scale, extrapolated to 160k patients.

Times, on one synthetic cohort per size (default 20,000 and 40,000 patients × 1,800 phecodes ×
1,037 features, integer ages 18–91 and sex as covariates like MIMIC-IV, 20 % of phecodes with
excluded controls, 5 % sex-specific), the path ``run_analysis`` takes for one feature family:
``associate`` (score screen, rank AUC, case/control means, BH q, table, refits of up to 200 hits),
``best_per_phecode``, ``specificity`` and the permutation null (``compare.permutation_null``).
Stage times come from the pipeline's own functions (wrapped with timers, not re-implemented).

The permutation null is timed on ``--perm-timed`` shuffles and multiplied to the configured
count (``PhenotypeConfig.permutations``, 200): a full 200-shuffle run at 40k is not measured. Its
one-off setup (null fits, standardised X: ``permutation_setup``) is timed apart and counted once.
``--reference-perms`` shuffles of the former implementation (one ``score_screen`` per shuffle,
kept in tests/phenotype/test_permutation_fast.py) are timed in the same run for the ratio.
Scaling exponent per stage = log(t40/t20)/log 2; the 160k figure = t40 · 4^exponent.
Peak memory: tracemalloc peak (numpy allocations) of each stage and of the whole path.

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/phenotype_scale.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.phenotype import association, compare, nullscreen
from ecgproto.phenotype.cohort import Cohort
from ecgproto.phenotype.config import PhenotypeConfig


def make_cohort(n: int, p: int, k: int, seed: int, chunk: int = 200) -> tuple[Cohort, np.ndarray, pd.DataFrame]:
    """Synthetic cohort (integer ages, sex), phecodes with prevalence 0.5–20 % (10 % truly associated)
    and float32 features; returns (cohort, X, feature info). Outcomes are drawn ``chunk`` phecodes at
    a time, so generating a 160k cohort needs little beyond the cohort itself."""
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.normal(62, 16, n)), 18, 91)
    sex = rng.integers(0, 2, n).astype(np.int8)
    X = rng.normal(size=(n, p)).astype(np.float32)
    prev = np.exp(rng.uniform(np.log(0.005), np.log(0.2), k))
    signal = rng.random(k) < 0.1
    source = rng.integers(0, p, k)
    sex_specific = rng.random(k) < 0.05
    excl = rng.random(k) < 0.2
    Y = np.empty((n, k), dtype=bool)
    mask = np.empty((n, k), dtype=bool)
    for s in range(0, k, chunk):
        sl = slice(s, min(s + chunk, k))
        lin = np.log(prev[sl] / (1 - prev[sl]))[None, :] + 0.02 * (age[:, None] - 62)
        lin += np.where(signal[sl], 0.3, 0.0)[None, :] * X[:, source[sl]]
        y = rng.random(lin.shape) < 1 / (1 + np.exp(-lin))
        pop = np.where(sex_specific[sl][None, :], (sex == 1)[:, None], True)
        m = pop & (~excl[sl][None, :] | (rng.random(lin.shape) > 0.05) | y)
        Y[:, sl], mask[:, sl] = y & pop, m
    pop = np.ones((n, k), dtype=bool)
    pop[:, sex_specific] = (sex == 1)[:, None]
    units = pd.DataFrame({"subject_id": np.arange(n), "age": age, "sex": sex})
    codes = [f"{100 + j}" for j in range(k)]
    phecodes = pd.DataFrame({"phecode": codes, "phecode_string": codes,
                             "category": [f"cat{j % 17}" for j in range(k)],
                             "sex": np.where(sex_specific, "Male", "Both"), "n_cases": Y.sum(0),
                             "n_controls": (mask & ~Y).sum(0), "n_excluded": (pop & ~mask).sum(0)})
    cohort = Cohort(units=units, ecg_units=pd.DataFrame(), Y=Y.view(np.uint8), mask=mask, population=pop,
                    phecodes=phecodes, flow={}, mapping_counts={}, unmapped_top=pd.DataFrame())
    info = pd.DataFrame({"feature_id": [f"P{j:04d}" for j in range(p)], "label": "", "branch": "",
                         "prototype_class": ""})
    return cohort, X, info


class Timers:
    """Accumulated wall time and traced peak per named stage."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.peak: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0
            used = (tracemalloc.get_traced_memory()[1] - base) / 2**20
            self.peak[name] = max(self.peak.get(name, 0.0), used)

    def wrap(self, module, attr: str, name: str):
        fn = getattr(module, attr)

        def timed(*a, **kw):
            with self.stage(name):
                return fn(*a, **kw)
        setattr(module, attr, timed)
        return fn


def run_size(n: int, p: int, k: int, cfg: PhenotypeConfig, perm_timed: int, ref_perms: int) -> dict:
    """Every stage of the per-family path at one cohort size."""
    from tests.phenotype.test_permutation_fast import reference_permutation_null

    cohort, X, info = make_cohort(n, p, k, seed=n)
    timers = Timers()
    originals = [(association, "score_screen", timers.wrap(association, "score_screen", "score_screen")),
                 (association, "rank_auc", timers.wrap(association, "rank_auc", "rank_auc")),
                 (association, "_refit_hits", timers.wrap(association, "_refit_hits", "refits")),
                 (compare, "PermutationScreen", timers.wrap(compare, "PermutationScreen", "permutation_setup")),
                 (nullscreen.PermutationScreen, "prepare",
                  timers.wrap(nullscreen.PermutationScreen, "prepare", "permutation_setup"))]
    tracemalloc.start()
    t_start = time.perf_counter()
    try:
        with timers.stage("associate"):
            res = association.associate("prototype", X, info, cohort, cfg)
        with timers.stage("best_per_phecode"):
            best = compare.best_per_phecode(res, cohort, cfg.q_threshold)
        with timers.stage("specificity_bh"):
            compare.specificity(res.table, cfg.q_threshold)
        dtype = np.float32 if cfg.screen_dtype == "float32" else np.float64
        observed = {"prototype": best["best_mlog10p"].to_numpy()}
        with timers.stage("permutations_timed"):
            null = compare.permutation_null({"prototype": X}, cohort, perm_timed, cfg.seed, dtype, observed=observed,
                                            threads=cfg.threads)
        path_peak = tracemalloc.get_traced_memory()[1] / 2**20
        ref = None
        if ref_perms:
            with timers.stage("reference_permutations_timed"):
                ref = reference_permutation_null({"prototype": X}, cohort, ref_perms, cfg.seed, dtype,
                                                 observed=observed)
    finally:
        tracemalloc.stop()
        for module, attr, fn in originals:
            setattr(module, attr, fn)
    wall = time.perf_counter() - t_start
    setup = timers.t.get("permutation_setup", 0.0)  # null fits and standardised X, once per run
    per_perm = (timers.t["permutations_timed"] - setup) / perm_timed
    out = {"n_patients": n, "n_phecodes": k, "n_features": p,
           "stage_s": {s: round(v, 2) for s, v in timers.t.items()},
           "stage_peak_traced_mb": {s: round(v, 1) for s, v in timers.peak.items()},
           "path_peak_traced_mb": round(path_peak, 1),
           "permutation_s_each": round(per_perm, 3), "permutations_timed": perm_timed,
           "wall_s_of_this_run": round(wall, 1)}
    other = sum(timers.t[s] for s in ("associate", "best_per_phecode", "specificity_bh")) + setup
    out["family_path_s_at_configured_permutations"] = round(other + per_perm * cfg.permutations, 1)
    if ref is not None:
        ref_each = timers.t["reference_permutations_timed"] / ref_perms
        out["reference_permutation_s_each"] = round(ref_each, 3)
        out["reference_permutations_timed"] = ref_perms
        out["permutation_speedup_reference_over_new"] = round(ref_each / per_perm, 2)
        m = min(ref_perms, perm_timed)  # the same seeds: the first m shuffles are the same
        if m == perm_timed == ref_perms:
            cols = ["null_mean_best_mlog10p", "null_q95_best_mlog10p"]
            out["max_abs_diff_null_vs_reference"] = float(np.nanmax(np.abs(null[cols].to_numpy()
                                                                           - ref[cols].to_numpy())))
    print(json.dumps(out), flush=True)
    return out


def thread_check(n: int, p: int, k: int, repeats: int = 2) -> dict:
    """Same-run time of one permutation shuffle (after setup) with 1 and 2 BLAS threads, per dtype."""
    from threadpoolctl import threadpool_limits

    cohort, X, _ = make_cohort(n, p, k, seed=n)
    Z, _ = cohort.covariates()
    perms = np.random.default_rng(0).permuted(np.tile(np.arange(n), (repeats, 1)), axis=1)
    out: dict = {"n_patients": n, "n_phecodes": k, "n_features": p, "repeats_mean_of": repeats,
                 "load_average_at_start": list(os.getloadavg())}
    for dtype in (np.float32, np.float64):
        screen = nullscreen.PermutationScreen(cohort.Y, cohort.mask, Z, dtype)
        prepared = screen.prepare(X)
        for threads in (1, 2):
            with threadpool_limits(threads):
                t0 = time.perf_counter()
                for perm in perms:
                    screen.best_mlog10p(prepared, perm)
                out[f"shuffle_s_{dtype.__name__}_threads{threads}"] = round((time.perf_counter() - t0) / repeats, 3)
        out[f"speedup_2_over_1_{dtype.__name__}"] = round(out[f"shuffle_s_{dtype.__name__}_threads1"]
                                                         / out[f"shuffle_s_{dtype.__name__}_threads2"], 2)
    out["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(out), flush=True)
    return out


def _exponent(a: float, b: float, ratio: float) -> float:
    return math.log(b / a) / math.log(ratio)


def extrapolate(small: dict, large: dict, target_n: int, permutations: int) -> dict:
    """Per stage: exponent e = log(t_large/t_small)/log(n_large/n_small) and t_large·(target/n_large)^e;
    the family path at ``target_n`` is the sum of its stages with ``permutations`` shuffles."""
    r = large["n_patients"] / small["n_patients"]
    f = target_n / large["n_patients"]
    key = f"s_at_{target_n}"

    def stage(a: float, b: float) -> dict:
        e = _exponent(a, b, r)
        affine = b + (b - a) * (target_n - large["n_patients"]) / (large["n_patients"] - small["n_patients"])
        return {"s_small": round(a, 3), "s_large": round(b, 3), "exponent": round(e, 2), key: round(b * f ** e, 1),
                f"{key}_affine": round(affine, 1)}

    out: dict = {"target_n": target_n, "permutations": permutations, "stages": {}}
    for s in ("score_screen", "rank_auc", "refits", "associate", "best_per_phecode", "specificity_bh",
              "permutation_setup"):
        out["stages"][s] = stage(small["stage_s"][s], large["stage_s"][s])
    out["stages"]["permutation_each"] = stage(small["permutation_s_each"], large["permutation_s_each"])
    if "reference_permutation_s_each" in small and "reference_permutation_s_each" in large:
        out["stages"]["reference_permutation_each"] = stage(small["reference_permutation_s_each"],
                                                            large["reference_permutation_s_each"])
    st = out["stages"]
    once = sum(st[s][key] for s in ("associate", "best_per_phecode", "specificity_bh", "permutation_setup"))
    perm = st["permutation_each"][key]
    total = once + permutations * perm
    # a stage with a fixed part (exponent < 1) grows linearly once n is large: the affine line
    # through the two sizes is the safer extrapolation for it
    worst = sum(max(st[s][key], st[s][f"{key}_affine"]) for s in ("associate", "best_per_phecode",
                                                                   "specificity_bh", "permutation_setup"))
    worst += permutations * max(perm, st["permutation_each"][f"{key}_affine"])
    out["family_path"] = {key: round(total, 1), "minutes": round(total / 60, 1),
                          "minutes_larger_of_power_and_affine_per_stage": round(worst / 60, 1),
                          "exponent_of_measured_totals": round(_exponent(
                              small["family_path_s_at_configured_permutations"],
                              large["family_path_s_at_configured_permutations"], r), 2),
                          "permutations_fitting_20_min": max(0, int((1200 - once) // max(perm, 1e-9)))}
    if "reference_permutation_each" in st:
        ref_total = once + permutations * st["reference_permutation_each"][key]
        out["family_path_reference_permutations"] = {key: round(ref_total, 1), "minutes": round(ref_total / 60, 1)}
    em = _exponent(small["path_peak_traced_mb"], large["path_peak_traced_mb"], r)
    traced = large["path_peak_traced_mb"] * f ** em
    inputs = (target_n * large["n_features"] * 4 + 3 * target_n * large["n_phecodes"]) / 2**20  # X f32, Y, mask, pop
    out["peak_traced_mb"] = {"small": small["path_peak_traced_mb"], "large": large["path_peak_traced_mb"],
                             "exponent": round(em, 2), f"mb_at_{target_n}": round(traced),
                             f"inputs_mb_at_{target_n}": round(inputs),
                             f"traced_plus_inputs_mb_at_{target_n}": round(traced + inputs)}
    return out


def markdown(results: dict) -> str:
    """The .md summary of every dtype entry in the JSON."""
    lines = ["# Phenotype pipeline at archive scale (per feature family)", "",
             "Written by `benchmarks/phenotype_scale.py`; synthetic cohorts (features × phecodes as below, "
             "integer ages and sex, 20 % of phecodes with 5 % excluded controls, 5 % sex-specific). "
             "Permutation cost = mean of the timed shuffles; the family path at the target size = sum of "
             "the per-stage extrapolations t_large · (target/n_large)^e, e = log(t_large/t_small)/log 2; the "
             "affine column is the line through the two sizes (a stage with a fixed part has e < 1 and "
             "grows linearly at large n). A `measured` line is one whole run at the target size.", ""]
    for dtype, res in results.items():
        if dtype == "thread_check":  # one entry per --thread-check run (the load average says when)
            lines += ["## One shuffle with 1 vs 2 BLAS threads (each run: same process)", "", "```"]
            lines += [json.dumps(r) for r in res] + ["```", ""]
            continue
        ex = res["extrapolation"]
        n_small, n_large = (s["n_patients"] for s in res["sizes"])
        key = f"s_at_{ex['target_n']}"
        size = res["sizes"][0]
        lines += [f"## screen_dtype {dtype}: {size['n_features']:,} features × {size['n_phecodes']:,} phecodes "
                  f"(OMP_NUM_THREADS={res['threads']}, {res.get('permutation_threads', 1)} permutation thread(s), "
                  f"load average "
                  f"{res['load_average_at_start'][0]:.1f} → {res['load_average_at_end'][0]:.1f})", "",
                  f"| stage | {n_small:,} s | {n_large:,} s | exponent | {ex['target_n']:,} s (power law) "
                  f"| {ex['target_n']:,} s (affine) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, st in ex["stages"].items():
            lines.append(f"| {name} | {st['s_small']} | {st['s_large']} | {st['exponent']} | {st[key]} "
                         f"| {st.get(key + '_affine', 'n/a')} |")
        fp = ex["family_path"]
        lines += ["", f"- family path with {ex['permutations']} permutations at {ex['target_n']:,}: "
                  f"**{fp[key]:,.0f} s ({fp['minutes']} min)**; permutations fitting in 20 min: "
                  f"{fp['permutations_fitting_20_min']}; taking per stage the larger of the power-law and the "
                  f"affine (a + b·n) extrapolation: {fp.get('minutes_larger_of_power_and_affine_per_stage', 'n/a')} min"]
        if "family_path_reference_permutations" in ex:
            rp = ex["family_path_reference_permutations"]
            lines.append(f"- the same with the former permutation screen: {rp[key]:,.0f} s ({rp['minutes']} min)")
        for s in res["sizes"]:
            if "permutation_speedup_reference_over_new" in s:
                lines.append(f"- {s['n_patients']:,}: one shuffle {s['permutation_s_each']} s vs former "
                             f"{s['reference_permutation_s_each']} s (×{s['permutation_speedup_reference_over_new']}, "
                             f"same run); max |Δ| of null mean/q95 vs former: "
                             f"{s.get('max_abs_diff_null_vs_reference', 'n/a')}")
        if "measured" in res:
            m = res["measured"]
            lines.append(f"- **measured** at {m['n_patients']:,} patients (whole path, all {m['permutations_timed']} "
                         f"permutations, {m['permutation_threads']} permutation threads, OMP_NUM_THREADS="
                         f"{m['omp_num_threads']}, load average {m['load_average_at_start'][0]:.1f} → "
                         f"{m['load_average_at_end'][0]:.1f}): **{m['wall_s_of_this_run']:,.0f} s "
                         f"({m['wall_s_of_this_run'] / 60:.1f} min)**, of which associate {m['stage_s']['associate']} s "
                         f"(score screen {m['stage_s']['score_screen']} s, rank AUC {m['stage_s']['rank_auc']} s) and "
                         f"{m['permutation_s_each']} s per shuffle; peak RSS of the process (cohort included) "
                         f"**{m['peak_rss_mb']:,} MB**")
        pk = ex["peak_traced_mb"]
        t = ex["target_n"]
        lines += [f"- peak traced memory during the path (numpy allocations, inputs excluded) {pk['small']:.0f} MB → "
                  f"{pk['large']:.0f} MB (exponent {pk['exponent']}), extrapolated {pk[f'mb_at_{t}']:,.0f} MB "
                  f"+ {pk[f'inputs_mb_at_{t}']:,.0f} MB of inputs (X float32, Y, mask, population) = "
                  f"**{pk[f'traced_plus_inputs_mb_at_{t}']:,.0f} MB**", ""]
    return "\n".join(lines) + "\n"


def _write(out: Path, results: dict) -> None:
    """The JSON and its .md summary (atomic replace)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(results, indent=2) + "\n"), (out.with_suffix(".md"), markdown(results))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[20_000, 40_000])
    parser.add_argument("--p", type=int, default=1_037)
    parser.add_argument("--k", type=int, default=1_800)
    parser.add_argument("--target-n", type=int, default=160_000)
    parser.add_argument("--perm-timed", type=int, default=4,
                        help="shuffles timed per size (a multiple of --threads: whole waves)")
    parser.add_argument("--threads", type=int, default=2,
                        help="phenotype.threads: shuffles side by side (the target machine has 2 cores)")
    parser.add_argument("--reference-perms", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/phenotype_scale.json"))
    parser.add_argument("--report-only", action="store_true",
                        help="recompute the extrapolations and the .md from the JSON's measurements")
    parser.add_argument("--measure-at", type=int, default=None, metavar="N",
                        help="instead of the two sizes: run the whole family path once at N patients with all "
                             "configured permutations (wall time and peak RSS measured, not extrapolated); "
                             "stored as <dtype>.measured in the JSON")
    parser.add_argument("--thread-check", action="store_true",
                        help="only time one shuffle with 1 vs 2 BLAS threads at the first size; appends to 'thread_check'")
    args = parser.parse_args(argv)
    if args.thread_check:
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
        results.setdefault("thread_check", []).append(thread_check(args.sizes[0], args.p, args.k))
        _write(args.out, results)
        return 0
    if args.report_only:
        results = json.loads(args.out.read_text())
        for name, res in results.items():
            if name == "thread_check":
                continue
            res["extrapolation"] = extrapolate(*res["sizes"], args.target_n, res["permutations_configured"])
        _write(args.out, results)
        return 0
    cfg = dataclasses.replace(PhenotypeConfig(), screen_dtype=args.dtype, threads=args.threads)
    if args.measure_at:
        previous = json.loads(args.out.read_text()) if args.out.exists() else {}
        start = list(os.getloadavg())
        t0 = time.perf_counter()
        measured = run_size(args.measure_at, args.p, args.k, cfg, cfg.permutations, 0)
        measured.update(wall_s_including_cohort_generation=round(time.perf_counter() - t0, 1),
                        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                        omp_num_threads=os.environ.get("OMP_NUM_THREADS", "unset"),
                        permutation_threads=args.threads, load_average_at_start=start,
                        load_average_at_end=list(os.getloadavg()))
        previous.setdefault(args.dtype, {})["measured"] = measured
        _write(args.out, previous)
        return 0
    result = {"threads": os.environ.get("OMP_NUM_THREADS", "unset"), "permutation_threads": args.threads,
              "cpu_count": os.cpu_count(),
              "platform": platform.platform(), "numpy": np.__version__,
              "load_average_at_start": list(os.getloadavg()), "screen_dtype": args.dtype,
              "permutations_configured": cfg.permutations, "sizes": []}
    for n in args.sizes:
        result["sizes"].append(run_size(n, args.p, args.k, cfg, args.perm_timed, args.reference_perms))
    result["load_average_at_end"] = list(os.getloadavg())
    result["extrapolation"] = extrapolate(*result["sizes"], args.target_n, cfg.permutations)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "measured" in previous.get(args.dtype, {}):  # a --measure-at run of this dtype is kept
        result["measured"] = previous[args.dtype]["measured"]
    previous[args.dtype] = result
    _write(args.out, previous)
    print(json.dumps(result["extrapolation"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
