"""``ecgproto merge SHARD_DIR... --out OUT``: merge the ``ecgproto score --shard i/n`` outputs of one job."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", metavar="SHARD_DIR",
                        help="the --out folders of every `ecgproto score ... --shard i/n` run of one job (any order)")
    parser.add_argument("--out", required=True,
                        help="new folder for the merged scores.parquet, scores.csv (and similarities.parquet), "
                             "summary.json and scoring_manifest.json")
    parser.epilog = ("Refuses, before writing anything, shards of different jobs (checkpoint, input, options), "
                     "a shard given twice or missing, an unfinished shard, and chunks that overlap or leave a gap; "
                     "the merged output equals an unsharded run's row for row.")


def run(args: argparse.Namespace) -> int:
    from ecgproto.score.merge import merge_shards

    summary = merge_shards(args.shards, args.out)
    print(json.dumps({"status_counts": summary.status_counts, "n_records": summary.n_records,
                      "n_shards": summary.n_shards, "chunks_total": summary.chunks_total}, indent=1))
    print(f"wrote {', '.join(summary.outputs)} and summary.json in {args.out}")
    return 0
