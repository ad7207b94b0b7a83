"""``ecgproto project``: re-project the prototypes of a trained checkpoint onto training ECGs."""

from __future__ import annotations

import argparse
import json

from ecgproto.device import DEVICE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="model.pt written by `ecgproto train`")
    parser.add_argument("--out", required=True,
                        help="folder for the re-projected model.pt, prototypes.csv and projection.json")
    parser.add_argument("--data", default=None,
                        help="PTB-XL folder (or `ecgproto synth` folder) to project onto; default: the "
                             "data.root stored in the checkpoint's config")
    parser.add_argument("--unique", action=argparse.BooleanOptionalAction, default=None,
                        help="forbid two prototypes of a branch projecting onto the same ECG "
                             "(default: train.unique_projection of the checkpoint's config)")
    parser.add_argument("--device", default=None, help=DEVICE_HELP + " (default: the top-level `device` of "
                                                                      "--config/--set, else auto)")
    parser.add_argument("--branches", default=None,
                        help="comma-separated branches to project (default: all), e.g. rhythm,global")


def run(args: argparse.Namespace) -> int:
    from ecgproto.train.reproject import reproject_checkpoint

    branches = [b.strip() for b in args.branches.split(",")] if args.branches else None
    summary = reproject_checkpoint(args.checkpoint, args.out, data_root=args.data, unique=args.unique,
                                   branches=branches, overrides=args.overrides, config_path=args.config,
                                   device=args.device)
    print(f"wrote {args.out}/model.pt, prototypes.csv, projection.json")
    print("unique source ECGs per branch: " + json.dumps(summary["unique_source_ecgs"]))
    return 0
