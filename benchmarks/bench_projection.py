"""Prototype projection wall time: single pass (kept candidate windows) vs the former two passes.

"before" is ``ecgproto/train/projection.py`` as of ``--before-rev`` (first pass, then one forward
per chosen ECG, batch of one), loaded from git; "after" is the working tree's (the first pass's
own windows, a batched second forward only for choices beyond the kept columns). Both project
copies of one model (BatchNorm statistics from a few train-mode batches, otherwise at random
initialisation) onto the same training rows, alternating, in one process on one thread, and the
results are compared (source rows/windows identical, vectors' largest difference).

Archives (``--runs CONFIG:DATA``): ``synthetic`` (``build_ptbxl`` + ``simulate`` of ``synth`` in the config, folds 1-8
= train) or a PTB-XL root (prepared with ``prepare_cache``; train split).

    python benchmarks/bench_projection.py --runs configs/demo.yaml:synthetic \\
        configs/default.yaml:../shared/data/ptbxl-dev
Writes reports/benchmarks/projection.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from ecgproto.config import load_config
from ecgproto.data.cache import prepare_cache
from ecgproto.model import ProtoECGNet
from ecgproto.synth.archive import build_ptbxl
from ecgproto.synth.simulator import simulate
from ecgproto.train import projection

REPO = Path(__file__).resolve().parents[1]


def old_projection(rev: str) -> types.ModuleType:
    """The projection module as committed at ``rev``."""
    source = subprocess.run(["git", "show", f"{rev}:ecgproto/train/projection.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("projection_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:ecgproto/train/projection.py", "exec"), module.__dict__)
    return module


def synthetic_archive(cfg, fs: int) -> tuple[SimpleNamespace, np.ndarray]:
    table, plan, _ = build_ptbxl(cfg.synth)
    signals = np.concatenate([simulate(plan, np.arange(s, min(s + 256, plan.n)), fs)
                              for s in range(0, plan.n, 256)]).astype(np.float32)
    index = pd.DataFrame({"ecg_id": table["ecg_id"].to_numpy()})
    archive = SimpleNamespace(signals=signals, labels=plan.labels.labels, index=index)
    return archive, np.flatnonzero(table["strat_fold"].to_numpy() <= 8).astype(np.int64)


def bench_run(config: str, data: str, repeats: int, batch: int | None, before: types.ModuleType, seed: int) -> dict:
    """Alternating before/after projections of one model onto one archive's training rows."""
    cfg_path = REPO / config
    t0 = time.perf_counter()
    if data == "synthetic":
        cfg = load_config(str(cfg_path))
        archive, rows = synthetic_archive(cfg, cfg.data.sampling_rate)
    else:
        cfg = load_config(str(cfg_path), [f"data.root={Path(data).resolve()}"])
        archive = prepare_cache(cfg.data)
        rows = archive.rows("train")
    n_samples = archive.signals.shape[-1]
    print(f"{config} on {data}: {len(rows)} train rows of {n_samples} samples ({time.perf_counter() - t0:.1f} s)")
    batch = batch or cfg.train.eval_batch_size
    unique = cfg.train.unique_projection

    torch.manual_seed(seed)
    model = ProtoECGNet(cfg.model, n_samples, cfg.data.sampling_rate)
    model.train()
    with torch.no_grad():  # BatchNorm running statistics from a few training batches
        for s in range(0, 4 * 32, 32):
            model(torch.from_numpy(np.asarray(archive.signals[rows[s:s + 32]], dtype=np.float32)))
    model.eval()

    with torch.no_grad():  # warm-up, untimed
        model(torch.from_numpy(np.asarray(archive.signals[rows[:batch]], dtype=np.float32)))
    times: dict[str, dict[str, list[float]]] = {k: {g: [] for g in model.branches} for k in ("before", "after")}
    cpu: dict[str, dict[str, list[float]]] = {k: {g: [] for g in model.branches} for k in ("before", "after")}
    details: dict[str, dict] = {}
    for rep in range(repeats):
        runs = {"before": copy.deepcopy(model), "after": copy.deepcopy(model)}
        provs: dict[str, dict[str, list]] = {"before": {}, "after": {}}
        for g in model.branches:
            for name in (("before", "after") if rep % 2 == 0 else ("after", "before")):
                m = runs[name]
                t0, c0 = time.perf_counter(), time.process_time()
                if name == "before":
                    provs[name][g] = before.project_branch(m, g, archive, rows, batch, unique)[0]
                else:
                    res = projection.project_branch(m, g, archive, rows, batch, unique)
                    provs[name][g] = res.provenance
                    details[g] = {"n_prototypes": m.branches[g].n_prototypes, "window_dim": m.branches[g].window_dim,
                                  "kept_columns": res.kept_columns, "reforwarded": res.reforwarded,
                                  "reforwarded_ecgs": res.reforwarded_ecgs, "not_projected": res.not_projected,
                                  "shared_fallback": res.shared_fallback}
                times[name][g].append(time.perf_counter() - t0)
                cpu[name][g].append(time.process_time() - c0)
            print(f"  rep {rep} {g}: before {times['before'][g][-1]:.2f} s ({cpu['before'][g][-1]:.2f} CPU), "
                  f"after {times['after'][g][-1]:.2f} s ({cpu['after'][g][-1]:.2f} CPU); "
                  f"reforwarded {details[g]['reforwarded']} of {details[g]['n_prototypes']}")
        for g in model.branches:
            key = [(p["archive_row"], p["window"]) for p in provs["before"][g]]
            details[g]["single_record_forwards_before"] = len(
                {p["archive_row"] for p in provs["before"][g] if p["archive_row"] is not None})
            details[g]["same_choices"] = key == [(p["archive_row"], p["window"]) for p in provs["after"][g]]
            details[g]["max_abs_vector_diff"] = (runs["before"].branches[g].prototype_vectors
                                                 - runs["after"].branches[g].prototype_vectors).abs().max().item()
    total = {k: float(np.median([sum(v[g][i] for g in v) for i in range(repeats)])) for k, v in times.items()}
    total_cpu = {k: float(np.median([sum(v[g][i] for g in v) for i in range(repeats)])) for k, v in cpu.items()}
    print(f"  total (median of {repeats}): before {total['before']:.1f} s, after {total['after']:.1f} s -> "
          f"{total['before'] / total['after']:.2f}x wall; CPU {total_cpu['before']:.1f} s vs "
          f"{total_cpu['after']:.1f} s -> {total_cpu['before'] / total_cpu['after']:.2f}x")
    return {
        "config": config, "data": data, "n_train_rows": int(len(rows)), "n_samples": int(n_samples),
        "batch": batch, "unique": unique, "repeats": repeats, "seconds": times, "cpu_seconds": cpu,
        "median_total_s": total, "median_total_cpu_s": total_cpu, "speedup_wall": total["before"] / total["after"],
        "speedup_cpu": total_cpu["before"] / total_cpu["after"], "branches": details,
        "model_state": "random initialisation, BatchNorm statistics from 4 training batches",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["configs/demo.yaml:synthetic"],
                        help="CONFIG:DATA pairs; DATA = 'synthetic' or a PTB-XL root (default the demo)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating before/after runs (default 3)")
    parser.add_argument("--batch", type=int, default=None, help="projection batch (default train.eval_batch_size)")
    parser.add_argument("--before-rev", default="4b02803", help="git revision of the two-pass projection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "projection.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    before = old_projection(args.before_rev)
    results = [bench_run(*run.split(":", 1), args.repeats, args.batch, before, args.seed) for run in args.runs]
    report = {"before_rev": args.before_rev, "window_budget_bytes": projection.WINDOW_BUDGET_BYTES,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
