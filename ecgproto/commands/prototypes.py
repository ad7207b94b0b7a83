"""``ecgproto prototypes CHECKPOINT --out DIR``: gallery of every projected prototype."""

from __future__ import annotations

import argparse

from ecgproto.config import load_config, save_resolved_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt written by `ecgproto train`")
    parser.add_argument("--out", required=True,
                        help="output folder: prototype_<index>.png (source ECG with its window shaded) and index.html")
    parser.add_argument("--source-data", default=None, metavar="PTBXL_FOLDER",
                        help="PTB-XL-layout folder holding the prototypes' source training ECGs (default: the "
                             "training archive path stored in the checkpoint)")
    parser.add_argument("--branch", action="append", choices=("rhythm", "morphology", "global"), default=None,
                        help="only this branch's prototypes (repeatable; default: all branches)")
    parser.add_argument("--dpi", type=int, default=80, help="resolution of the PNGs (default 80)")


def run(args: argparse.Namespace) -> int:
    from ecgproto.explain.gallery import render_prototype_gallery

    cfg = load_config(args.config, args.overrides)
    result = render_prototype_gallery(args.checkpoint, args.out, source_data=args.source_data,
                                      branches=args.branch, dpi=args.dpi)
    save_resolved_config(cfg, args.out)
    print(f"wrote {result.n_rendered} prototype figure(s) ({result.n_unprojected} unprojected, "
          f"{result.n_source_missing} without source ECG, {result.n_unique_sources} unique source ECGs) "
          f"in {args.out} (index.html)")
    return 0
