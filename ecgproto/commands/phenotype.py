"""``ecgproto phenotype SCORES_DIR --mimic MIMIC_ECG_ROOT --hosp HOSP_DIR --out DIR``."""

from __future__ import annotations

import argparse
import dataclasses
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores_dir", help="output folder of `ecgproto score` on a MIMIC-IV-ECG archive, run with "
                                           "--save-similarities (scores.parquet + similarities.parquet)")
    parser.add_argument("--mimic", required=True, help="MIMIC-IV-ECG root (record_list.csv; machine_measurements.csv "
                                                       "for the machine-statement concept family)")
    parser.add_argument("--hosp", required=True, help="MIMIC-IV hosp folder (patients, admissions, diagnoses_icd; "
                                                      ".csv or .csv.gz)")
    parser.add_argument("--out", required=True, help="output folder (associations.csv/.parquet, report.html, "
                                                     "run_metadata.json, ...)")
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint that produced the scores: needed to group prototypes by class "
                             "(prototype-class family), for intra-class distances and thumbnails")
    parser.add_argument("--source-data", default=None,
                        help="PTB-XL folder the checkpoint was trained on, for prototype thumbnails "
                             "(default: the folder stored in the checkpoint)")
    parser.add_argument("--lookback", type=float, default=None, metavar="DAYS",
                        help="extra days before ED registration/admission in which an ECG still links to the "
                             "admission (default phenotype.lookback_days = 0; 7 = bbj-lab window)")
    parser.add_argument("--tolerance-hours", type=float, default=None,
                        help="hours an ECG may precede ED registration/admission (cart clock drift; default 1)")
    parser.add_argument("--unit", choices=["patient", "admission"], default=None,
                        help="patient: first eligible admission per patient (default); admission: every admission, "
                             "with cluster-robust (by subject) score tests")
    parser.add_argument("--min-cases", type=int, default=None,
                        help="test a phecode only with at least this many cases and controls (default 100)")
    parser.add_argument("--phecode-version", choices=["1.2", "X"], default=None,
                        help="phecode map shipped with ecgproto (default 1.2, with exclusion ranges)")
    parser.add_argument("--permutations", type=int, default=None,
                        help="feature-row shuffles for the family-size null of best-feature strength (default "
                             "phenotype.permutations = 200, the protocol's 200-1,000; whole patients are shuffled "
                             "under --unit admission)")
    parser.add_argument("--threads", type=int, default=None,
                        help="permutation shuffles screened side by side (default phenotype.threads = 0: the CPU "
                             "cores this process may use; results do not depend on it)")
    parser.add_argument("--include-latent-prototypes", action="store_true", default=None,
                        help="also analyse prototypes without a source ECG (latent, never projected), labelled "
                             "'latent, no source ECG'; by default they are excluded and counted in the report")


def run(args: argparse.Namespace) -> int:
    from ecgproto.config import load_config, save_resolved_config
    from ecgproto.phenotype.inputs import read_checkpoint_prototypes, read_mimic, read_scores, thumbnail_maker
    from ecgproto.phenotype.pipeline import run_analysis, write_outputs
    from ecgproto.phenotype.report import write_report

    cfg = load_config(args.config, args.overrides)
    chosen = {"lookback_days": args.lookback, "tolerance_hours": args.tolerance_hours, "unit": args.unit,
              "phecode_version": args.phecode_version, "permutations": args.permutations,
              "include_latent_prototypes": args.include_latent_prototypes, "threads": args.threads}
    if args.min_cases is not None:
        chosen.update(min_cases=args.min_cases, min_controls=args.min_cases)
    pcfg = dataclasses.replace(cfg.phenotype, **{k: v for k, v in chosen.items() if v is not None})
    cfg = dataclasses.replace(cfg, phenotype=pcfg)
    scores, sims = read_scores(args.scores_dir)
    mimic = read_mimic(args.mimic, args.hosp)
    protos = read_checkpoint_prototypes(args.checkpoint) if args.checkpoint else None
    result = run_analysis(scores, sims, mimic.record_list, mimic.statements, mimic.patients, mimic.admissions,
                          mimic.diagnoses, pcfg, prototypes=None if protos is None else protos.table,
                          vectors=None if protos is None else protos.vectors, show_progress=True)
    result.notes.extend(mimic.notes)
    extra = {"inputs": {"scores_dir": str(args.scores_dir), "mimic": str(args.mimic), "hosp": str(args.hosp),
                        "checkpoint": args.checkpoint, "checkpoint_sha256": None if protos is None else protos.sha256},
             "config_hash": cfg.hash}
    thumb, why = (None, "no --checkpoint given") if protos is None else thumbnail_maker(protos, args.source_data)
    write_outputs(result, args.out, extra)
    write_report(result, args.out, thumb, why)
    save_resolved_config(cfg, args.out)
    md = result.metadata
    print(f"cohort: {md['cohort_flow']['units']} units, {md['cohort_flow']['phecodes_tested']} phecodes tested",
          file=sys.stderr)
    for name, f in md["families"].items():
        print(f"{name:16s} {f['features']:5d} features  {f['hits_q']:6d} hits q<{pcfg.q_threshold}  "
              f"{f['hits_bonferroni']:5d} Bonferroni", file=sys.stderr)
    print(f"wrote {args.out}/report.html", file=sys.stderr)
    return 0
