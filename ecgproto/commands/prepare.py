"""``ecgproto prepare``: read, validate, high-pass and cache a PTB-XL-shaped archive."""

from __future__ import annotations

import argparse

from ecgproto.config import load_config, replace, save_resolved_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None,
                        help="PTB-XL folder (or the folder written by `ecgproto synth`); overrides data.root")
    parser.add_argument("--out", default=None,
                        help="cache directory (overrides data.cache_dir); the cache goes into OUT/<key>/")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the cache even when one with the same key exists")


def run(args: argparse.Namespace) -> int:
    from ecgproto.data.cache import prepare_cache, summary_text

    cfg = load_config(args.config, args.overrides)
    data_cfg = cfg.data
    if args.out is not None:
        data_cfg = replace(data_cfg, cache_dir=args.out)
    if args.root is not None:
        data_cfg = replace(data_cfg, root=args.root)
    cfg = replace(cfg, data=data_cfg)
    archive = prepare_cache(data_cfg, force=args.force)
    save_resolved_config(cfg, archive.path)
    print(summary_text(archive))
    return 0
