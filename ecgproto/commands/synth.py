"""``ecgproto synth``: write the synthetic PTB-XL- and MIMIC-IV-shaped archive."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ecgproto.config import load_config, save_resolved_config
from ecgproto.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty unless --force)")
    parser.add_argument("--n-records", type=int, default=None,
                        help="number of PTB-XL-shaped records (overrides synth.n_records)")
    parser.add_argument("--n-mimic-subjects", type=int, default=None,
                        help="number of MIMIC-shaped subjects, 0 = no MIMIC folder (overrides synth.n_mimic_subjects)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides synth.seed); same seed = same bytes")
    parser.add_argument("--write-500hz", action="store_true", default=None,
                        help="also write PTB-XL records500/ (overrides synth.write_500hz)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")


def run(args: argparse.Namespace) -> int:
    from ecgproto.synth import write_synthetic_archive

    cfg = load_config(args.config, args.overrides)
    changes = {
        "n_records": args.n_records, "n_mimic_subjects": args.n_mimic_subjects,
        "seed": args.seed, "write_500hz": args.write_500hz,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        try:
            cfg = dataclasses.replace(cfg, synth=dataclasses.replace(cfg.synth, **changes))
        except ValueError as exc:
            raise UserError(f"invalid option: {exc}") from exc
    try:
        summary = write_synthetic_archive(args.out, cfg.synth, overwrite=args.force)
    except FileExistsError as exc:
        raise UserError(str(exc)) from exc
    save_resolved_config(cfg, args.out)
    timings = summary.pop("timings")
    ptb = summary["ptbxl"]
    print(f"wrote {args.out}: {ptb['n_records']} PTB-XL-shaped records ({ptb['n_labels_present']} labels present)")
    if "mimic" in summary:
        m = summary["mimic"]
        print(f"  MIMIC-shaped: {m['n_subjects']} subjects, {m['n_admissions']} admissions, {m['n_ecgs']} ECGs, "
              f"{m['n_diagnoses']} diagnoses")
    print("  timings (s): " + json.dumps({k: round(v, 2) for k, v in timings.items()}))
    return 0
