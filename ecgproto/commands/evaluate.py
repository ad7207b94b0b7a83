"""``ecgproto evaluate CHECKPOINT DATA --split test --out DIR``: dataset-level metrics and an HTML report."""

from __future__ import annotations

import argparse

from ecgproto.config import load_config, replace, save_resolved_config
from ecgproto.device import DEVICE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt written by `ecgproto train`")
    parser.add_argument("data", metavar="DATA",
                        help="PTB-XL-shaped folder (real PTB-XL or an `ecgproto synth` archive; prepared here with "
                             "the checkpoint's preprocessing) or a cache folder written by `ecgproto prepare`")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split to evaluate; folds per split come from the checkpoint's config (default test)")
    parser.add_argument("--out", required=True,
                        help="output folder: report.html (self-contained), metrics.json, per_label.csv, "
                             "subgroups.csv, thresholds.csv, predictions.parquet, bootstrap_indices.npz, "
                             "config.resolved.yaml")
    parser.add_argument("--compare", default=None, metavar="OTHER_CHECKPOINT",
                        help="a second checkpoint (e.g. the black-box twin, same preprocessing) scored on the same "
                             "records: the report gets macro AUROC of both and their paired patient-bootstrap "
                             "difference per task (comparison.csv, compare_predictions.parquet)")
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    parser.add_argument("--cache-dir", default=None,
                        help="where to cache DATA when it is a PTB-XL folder (default: the checkpoint's data.cache_dir)")
    parser.epilog = ("Settings live in the `evaluate` config section, e.g. --set evaluate.n_bootstrap=1000 "
                     "--set evaluate.threshold_min_positives=10 "
                     "--set evaluate.ci_level=0.95 --set evaluate.drop_unlabeled=true; the PTB-XL benchmark "
                     "convention is ci_level=0.90, n_bootstrap=100, drop_unlabeled=true.")


def run(args: argparse.Namespace) -> int:
    from ecgproto.evaluate.report import labels_per_record
    from ecgproto.evaluate.run import evaluate_checkpoint

    cfg = load_config(args.config, args.overrides)
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    ev, files = evaluate_checkpoint(args.checkpoint, args.data, args.out, cfg, split=args.split,
                                    cache_dir=args.cache_dir, compare=args.compare)
    save_resolved_config(cfg, args.out)
    head = ev.summary.set_index("task").loc["fused:all71"] if "fused:all71" in set(ev.summary["task"]) else None
    s = ev.settings
    print(f"evaluated {s['n_records']} records of {s['n_patients']} patients ({args.split} split, {s['convention']})")
    if head is not None:
        ci = (f" [{head['macro_auroc_lo']:.3f}, {head['macro_auroc_hi']:.3f}]"
              if "macro_auroc_lo" in head and head["macro_auroc_lo"] == head["macro_auroc_lo"] else "")
        print(f"fused, all 71 labels: macro AUROC {head['macro_auroc']:.3f}{ci} "
              f"({head['n_labels_defined']} labels defined), Fmax {head['fmax']:.3f}")
    counts = labels_per_record(ev)
    if counts is not None:
        print(f"fused: {counts['predicted']:.2f} predicted labels per record vs {counts['true']:.2f} true")
    if ev.comparison is not None:
        row = ev.comparison.table.set_index("task").loc["fused:all71"]
        print(f"fused, all labels: macro AUROC A − B = {row['diff']:+.3f} [{row['diff_lo']:+.3f}, {row['diff_hi']:+.3f}] "
              f"(A {row['a']:.3f}, B {row['b']:.3f}; {args.compare})")
    print(f"report: {files['report.html']}")
    return 0
