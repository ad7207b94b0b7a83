"""``ecgproto train``: staged training of the three prototype branches and the fusion head."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ecgproto.config import load_config, replace, save_resolved_config
from ecgproto.device import DEVICE_HELP, resolve_device
from ecgproto.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True,
                        help="run folder: model.pt, train_log.csv, train_summary.json, config.resolved.yaml, "
                             "train_state.pt (for --resume)")
    parser.add_argument("--data", default=None,
                        help="PTB-XL folder (or the folder written by `ecgproto synth`); overrides data.root. "
                             "The prepare cache is reused when its key matches, else built first")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/train_state.pt (same config) after the last completed epoch")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="stop after this many epochs in this call (resume later with --resume)")
    parser.add_argument("--force", action="store_true",
                        help="train from scratch into an --out that already holds a run (its files are replaced)")
    parser.add_argument("--device", default=None,
                        help=DEVICE_HELP + "; under torchrun auto/cuda is the process's LOCAL_RANK GPU")


def check_out_folder(out: Path, resume: bool, force: bool) -> None:
    """Refuse to start a fresh run over an earlier one unless ``--resume`` or ``--force``."""
    earlier = [n for n in ("model.pt", "train_state.pt") if (out / n).is_file()]
    if earlier and not (resume or force):
        raise UserError(f"--out {out} already holds a training run ({', '.join(earlier)}); continue it with "
                         "--resume, train from scratch over it with --force, or choose another --out")


def run(args: argparse.Namespace) -> int:
    from ecgproto.data.cache import prepare_cache, summary_text
    from ecgproto.train.distributed import barrier, init_distributed, shutdown_distributed
    from ecgproto.train.run import train_model

    cfg = load_config(args.config, args.overrides)
    check_out_folder(Path(args.out), args.resume, args.force)
    if args.data is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=args.data))
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    resolve_device(cfg.device)  # an unavailable device fails before the cache is built
    info = init_distributed(cfg.device)  # NCCL when the device is CUDA, gloo on the CPU
    try:
        if info.is_main:  # one rank builds the cache; the others then open the same one
            archive = prepare_cache(cfg.data)
            print(summary_text(archive), flush=True)
        barrier(info)
        if not info.is_main:
            archive = prepare_cache(cfg.data)
        if info.is_main:
            save_resolved_config(cfg, args.out)
        outcome = train_model(cfg, archive, args.out, resume=args.resume, dist_info=info,
                              max_epochs=args.max_epochs)
    finally:
        shutdown_distributed(info)
    if not info.is_main:
        return 0
    if outcome is None:
        print(f"stopped after --max-epochs {args.max_epochs}; continue with --resume --out {args.out}")
        return 0
    s = outcome.summary
    print(f"wrote {args.out}/model.pt ({s['n_prototypes']} prototypes, {s['n_parameters']} parameters) "
          f"in {s['seconds_this_call']:.0f} s")
    print("macro AUROC: " + json.dumps(s["macro_auroc"]))
    print("unique source ECGs per branch: "
          + json.dumps({g: p["unique_source_ecgs"] for g, p in s["projection"].items()}))
    return 0
