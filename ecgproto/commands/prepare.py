"""``ecgproto prepare``: read, validate, high-pass and cache a PTB-XL-shaped archive."""

from __future__ import annotations

import argparse
import time

from ecgproto.config import load_config, replace, save_resolved_config
from ecgproto.data.cache import prepare_cache


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="PTB-XL folder (or the folder written by `ecgproto synth`); overrides data.root")
    parser.add_argument("--out", default=None,
                        help="cache directory (overrides data.cache_dir); the cache goes into OUT/<key>/")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the cache even when one with the same key exists")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    data_cfg = cfg.data
    if args.out is not None:
        data_cfg = replace(data_cfg, cache_dir=args.out)
    if args.root is not None:
        data_cfg = replace(data_cfg, root=args.root)
    cfg = replace(cfg, data=data_cfg)
    started = time.time()
    archive = prepare_cache(data_cfg, force=args.force)
    save_resolved_config(cfg, archive.path)
    meta = archive.meta
    verb = "reused" if archive.reused else f"written in {time.time() - started:.1f} s"
    print(f"cache {archive.path} ({verb}); key {archive.key}")
    print(f"records: {meta['n_records']} read, {meta['n_ok']} cached as ({meta['n_ok']}, 12, {meta['n_samples']}) "
          f"float32 at {archive.fs} Hz")
    print("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["split_counts"].items())))
    rejected = {k: v for k, v in meta["status_counts"].items() if k != "ok"}
    if rejected:
        print("excluded (failed validation, listed in rejected.csv): "
              + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
    return 0
