"""``ecgproto demo``: the whole pipeline on the embedded synthetic archive.

synth → train (ecgproto and its black-box twin) → evaluate (side by side with the twin) → score (PTB-XL- and MIMIC-shaped) → explain → prototypes →
phenotype, each step run through its own sub-command so the demo exercises exactly
what a user runs. A step whose output is complete (``.done`` marker) is reused on a
re-run unless ``--force``; the user-facing reports are copied to ``--reports``.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecgproto.atomic import write_json_atomic
from ecgproto.config import load_config, save_resolved_config


@dataclass(frozen=True)
class Step:
    """One pipeline step: the sub-command and a function building its argv."""

    name: str
    command: str
    argv: Callable[[Path], list[str]]
    out: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the demo's options."""
    p.add_argument("--out", default="runs/demo", help="working folder of the demo run (default: runs/demo)")
    p.add_argument(
        "--reports", default="reports/demo",
        help="folder the user-facing reports are copied to (default: reports/demo); '' to skip",
    )
    p.add_argument("--force", action="store_true", help="redo every step even if its output is complete")
    p.add_argument("--n-explain", type=int, default=3, help="number of test-fold records to explain (default: 3)")


def _explain_records(ptbxl_root: Path, n: int) -> list[str]:
    """Paths (without extension) of the first ``n`` test-fold records with an abnormal label."""
    import pandas as pd

    db = pd.read_csv(ptbxl_root / "ptbxl_database.csv", index_col="ecg_id")
    test = db[db["strat_fold"] == 10]
    codes = test["scp_codes"].map(lambda s: set(ast.literal_eval(s)))
    abnormal = test[codes.map(lambda c: bool(c - {"NORM", "SR"}))]
    return [str(ptbxl_root / f) for f in abnormal["filename_lr"].head(n)]


def _steps(args: argparse.Namespace, cfg_args: list[str]) -> list[Step]:
    out = Path(args.out)
    synth, train = out / "synth", out / "train"
    ckpt, twin = str(train / "model.pt"), str(out / "train_twin" / "model.pt")
    ptbxl, mimic = synth / "ptbxl", synth / "mimic"
    return [
        Step("synthetic archive", "synth", lambda o: [*cfg_args, "--out", str(o), "--force"], "synth"),
        Step("training", "train", lambda o: [*cfg_args, "--data", str(ptbxl), "--out", str(o)], "train"),
        Step("black-box twin (same backbones, linear heads)", "train",
             lambda o: [*cfg_args, "--set", "model.kind=blackbox", "--data", str(ptbxl), "--out", str(o)],
             "train_twin"),
        Step("evaluation report (with the paired difference to the twin)", "evaluate",
             lambda o: [*cfg_args, ckpt, str(ptbxl), "--split", "test", "--compare", twin, "--out", str(o)],
             "evaluate"),
        Step("scoring (PTB-XL-shaped)", "score", lambda o: [*cfg_args, ckpt, str(ptbxl), "--out", str(o)], "score_ptbxl"),
        Step("scoring (MIMIC-IV-ECG-shaped)", "score",
             lambda o: [*cfg_args, ckpt, str(mimic), "--out", str(o), "--save-similarities"], "score_mimic"),
        Step("explanations", "explain",
             lambda o: [*cfg_args, ckpt, *_explain_records(ptbxl, args.n_explain), "--out", str(o)], "explain"),
        Step("prototype gallery", "prototypes", lambda o: [*cfg_args, ckpt, "--out", str(o)], "prototypes"),
        Step("phenotype associations", "phenotype",
             lambda o: [*cfg_args, str(out / "score_mimic"), "--mimic", str(mimic), "--hosp", str(mimic / "hosp"),
                        "--checkpoint", ckpt, "--out", str(o)], "phenotype"),
    ]


def run(args: argparse.Namespace) -> int:
    """Run every step in order; stop at the first failing step."""
    from ecgproto.cli import main

    cfg = load_config(args.config, args.overrides)  # validate before doing any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(cfg, out)
    cfg_args = [a for o in args.overrides for a in ("--set", o)]
    if args.config:
        cfg_args = ["--config", args.config, *cfg_args]

    timings: dict[str, float | str] = {}
    for step in _steps(args, cfg_args):
        step_out = out / step.out
        marker = step_out / ".done"
        if marker.exists() and not args.force:
            print(f"[demo] {step.name}: reusing {step_out}", flush=True)
            timings[step.name] = "reused"
            continue
        if step.command != "synth" and step_out.exists():
            shutil.rmtree(step_out)
        argv = [step.command, *step.argv(step_out)]
        print(f"[demo] {step.name}: ecgproto {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = main(argv)
        if rc != 0:
            print(f"[demo] {step.name} failed (exit {rc}); earlier outputs are kept in {out}", file=sys.stderr)
            return rc
        timings[step.name] = round(time.perf_counter() - t0, 1)
        marker.touch()

    summary = write_json_atomic(out / "demo_summary.json", {"steps_seconds": timings})
    if args.reports:
        _copy_reports(out, Path(args.reports))
    print(f"[demo] done: {summary}", flush=True)
    return 0


def _copy_reports(out: Path, dest: Path) -> None:
    """Copy a small, self-contained subset of the reports to ``dest`` (suitable for committing).

    HTML pages (images embedded), JSON and Markdown up to 4.5 MB, CSV tables up to 1 MB; the
    prototype gallery (one PNG per prototype) and bulky per-record files stay in ``out``.
    """
    limits = {".html": 4_500_000, ".json": 4_500_000, ".md": 4_500_000, ".csv": 1_000_000}
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "demo_summary.json", dest / "demo_summary.json")
    for sub in ("train", "train_twin", "evaluate", "phenotype", "explain"):
        src = out / sub
        if not src.is_dir():
            continue
        shutil.rmtree(dest / sub, ignore_errors=True)  # no stale file of an earlier run stays behind
        for f in sorted(src.rglob("*")):
            if f.is_file() and f.stat().st_size <= limits.get(f.suffix, -1):
                target = dest / sub / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
    print(f"[demo] reports copied to {dest} (full outputs in {out})", flush=True)
