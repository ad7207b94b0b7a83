"""``ecgproto score CHECKPOINT INPUT --out OUT``: batch-score an ECG archive."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ecgproto.config import load_config, replace, save_resolved_config
from ecgproto.device import DEVICE_HELP
from ecgproto.score.config import INPUT_KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt written by `ecgproto train`")
    parser.add_argument("input", help="what to score: a WFDB folder (searched recursively for .hea), a manifest CSV "
                                      "(a 'record' path column, optional 'record_id'/'id' column), a PTB-XL folder "
                                      "(ptbxl_database.csv) or a MIMIC-IV-ECG folder (record_list.csv)")
    parser.add_argument("--out", required=True, help="output folder (scores.csv, scores.parquet, summary.json, ...)")
    parser.add_argument("--input-kind", choices=INPUT_KINDS, default=None,
                        help="force the input kind instead of autodetecting it")
    parser.add_argument("--id-column", default=None, help="manifest column to use as record_id (default: "
                                                          "'record_id' or 'id' if present, else the record path)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="records per task: read, preprocess, forward pass (default: score.batch_size, 64)")
    parser.add_argument("--workers", type=int, default=None,
                        help="scoring processes, each reading and running the model on its batches; 0 does "
                             "everything in the main process (default: score.num_workers, 2)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="records per committed output chunk, the unit of --resume and --shard "
                             "(default: score.chunk_size, 1024)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of each scoring process; 0 = CPU cores divided among the scoring "
                             "processes, at least 1 (default: score.threads, 0)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="number of highest-probability labels in top_labels (default: score.top_k, 3)")
    parser.add_argument("--ood-flag-rate", type=float, default=None,
                        help="fraction of validation records to flag as out-of-distribution (default: the rate "
                             "stored with the checkpoint's OOD calibration)")
    parser.add_argument("--device", default=None,
                        help=DEVICE_HELP + "; on a GPU the --workers processes read and preprocess and the main "
                             "process runs the batches on the device")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out from its last committed chunk (same options)")
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="score only shard I of N (0-based): a contiguous range of whole chunks; the N shard "
                             "outputs concatenated in order equal the unsharded output")
    parser.add_argument("--save-similarities", action="store_true",
                        help="also write similarities.parquet (record_id + every prototype similarity)")
    parser.add_argument("--calibrate-ood", action="store_true",
                        help="instead of scoring INPUT, calibrate the OOD flag on the validation folds of the "
                             "PTB-XL-layout folder INPUT and write OUT/<checkpoint>.ood.pt (flag rate: "
                             "--ood-flag-rate, default 0.05)")


def run(args: argparse.Namespace) -> int:
    from ecgproto.score.scorer import ScoreOptions, score_archive
    from ecgproto.score.sources import parse_shard

    cfg = load_config(args.config, args.overrides)
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    chosen = {"batch_size": args.batch_size, "num_workers": args.workers, "chunk_size": args.chunk_size,
              "threads": args.threads, "top_k": args.top_k, "ood_flag_fraction": args.ood_flag_rate}
    score_cfg = dataclasses.replace(cfg.score, **{k: v for k, v in chosen.items() if v is not None})
    cfg = dataclasses.replace(cfg, score=score_cfg)
    options = ScoreOptions(batch_size=score_cfg.batch_size, workers=score_cfg.num_workers,
                           chunk_size=score_cfg.chunk_size, top_k=score_cfg.top_k, threads=score_cfg.threads,
                           shard=parse_shard(args.shard), save_similarities=args.save_similarities,
                           resume=args.resume, input_kind=args.input_kind, id_column=args.id_column,
                           ood_flag_rate=score_cfg.ood_flag_fraction, device=cfg.device)
    if args.calibrate_ood:
        from ecgproto.score.calibrate import calibrate_checkpoint

        rate = 0.05 if args.ood_flag_rate is None else args.ood_flag_rate
        target = calibrate_checkpoint(args.checkpoint, args.input, args.out, rate,
                                      dataclasses.replace(options, ood_flag_rate=None))
        save_resolved_config(cfg, args.out)
        print(f"wrote calibrated checkpoint {target} (OOD flag rate {rate:g} on the validation folds)")
        return 0
    summary = score_archive(args.checkpoint, args.input, args.out, options)
    save_resolved_config(cfg, args.out)
    print(json.dumps({"status_counts": summary.status_counts, "n_records": summary.n_records,
                      "records_per_s": summary.records_per_s, "chunks_resumed": summary.chunks_resumed}, indent=1))
    for note in summary.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(summary.outputs)} and summary.json in {args.out}")
    return 0
