"""``ecgproto explain CHECKPOINT RECORD... --out DIR``: case-based explanations of given records."""

from __future__ import annotations

import argparse
import sys

from ecgproto.config import load_config, replace, save_resolved_config
from ecgproto.device import DEVICE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt written by `ecgproto train`")
    parser.add_argument("records", nargs="+", metavar="RECORD",
                        help="WFDB record paths (with or without .hea; .dat or .mat signals, any lead order and "
                             "sampling rate: records are resampled and high-passed as the checkpoint expects)")
    parser.add_argument("--out", required=True,
                        help="output folder: <record>.html (self-contained page), <record>/*.png (one per "
                             "explanation), explanations.csv, index.html")
    parser.add_argument("--top-k", type=int, default=3,
                        help="prototypes shown per explained label, and labels explained when a record has no "
                             "label above its threshold (default 3)")
    parser.add_argument("--source-data", default=None, metavar="PTBXL_FOLDER",
                        help="PTB-XL-layout folder holding the prototypes' source training ECGs (default: the "
                             "training archive path stored in the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=64, help="records per forward pass (default 64)")
    parser.add_argument("--device", default=None, help=DEVICE_HELP + "; the forward passes run there")


def run(args: argparse.Namespace) -> int:
    from ecgproto.explain.report import explain_records

    cfg = load_config(args.config, args.overrides)
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    pages = explain_records(args.checkpoint, args.records, args.out, top_k=args.top_k,
                            source_data=args.source_data, batch_size=args.batch_size, device=cfg.device)
    save_resolved_config(cfg, args.out)
    bad = [p for p in pages if p.status != "ok"]
    n_png = sum(len(p.png_paths) for p in pages)
    print(f"wrote {len(pages)} page(s) with {n_png} explanation figure(s) in {args.out} (index.html)")
    for p in bad:
        print(f"not explained: {p.record}: {p.status}: {p.message}")
    if pages and len(bad) == len(pages):
        print(f"ecgproto explain: error: none of the {len(pages)} record(s) could be explained (see above)", file=sys.stderr)
        return 1
    return 0
