"""Fraction of MIMIC-IV ``diagnoses_icd`` rows mapped to phecodes (shipped maps).

    PYTHONPATH=. python scripts/phecode_coverage.py ../shared/data/mimic-iv-demo-hosp/diagnoses_icd.csv \
        --out reports/phecode_coverage_mimic_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from ecgproto.phenotype.phecodes import load_phecode_map, map_diagnoses


def coverage(diagnoses_csv: Path) -> dict:
    """Mapped-row fractions (overall, ICD-9, ICD-10) and observed phecodes for each shipped version."""
    diag = pd.read_csv(diagnoses_csv)
    out: dict = {"file": str(diagnoses_csv), "rows": int(len(diag)),
                 "subjects": int(diag["subject_id"].nunique()), "admissions": int(diag["hadm_id"].nunique())}
    for version in ("1.2", "X"):
        pmap = load_phecode_map(version)
        res = map_diagnoses(diag, pmap, source=str(diagnoses_csv))
        c = res.counts
        patients = res.pairs.groupby("phecode")["subject_id"].nunique()
        out[f"phecode_{version}"] = {
            **c,
            "fraction_mapped": round(c["rows_mapped"] / max(c["rows"], 1), 4),
            "fraction_mapped_icd9": round(c["rows_icd9_mapped"] / max(c["rows_icd9"], 1), 4),
            "fraction_mapped_icd10": round(c["rows_icd10_mapped"] / max(c["rows_icd10"], 1), 4),
            "phecodes_with_10_patients": int((patients >= 10).sum()),
            "top_unmapped": [f"{r.icd} (ICD-{r.icd_version}) x{r.rows}" for r in res.unmapped_top.head(10).itertuples()],
            "map_sha256": pmap.sha256,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("diagnoses", type=Path, help="MIMIC-IV hosp diagnoses_icd.csv(.gz)")
    parser.add_argument("--out", type=Path, default=Path("reports/phecode_coverage_mimic_demo.json"))
    args = parser.parse_args(argv)
    res = coverage(args.diagnoses)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, args.out)
    for v in ("1.2", "X"):
        r = res[f"phecode_{v}"]
        print(f"phecode {v}: {r['fraction_mapped']:.1%} of {res['rows']} rows mapped "
              f"(ICD-9 {r['fraction_mapped_icd9']:.1%}, ICD-10 {r['fraction_mapped_icd10']:.1%}), "
              f"{r['phecodes_observed']} phecodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
