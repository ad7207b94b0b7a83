"""End-to-end phenotype analysis: scores + MIMIC-IV tables -> associations, comparisons, report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto import __version__
from ecgproto.atomic import write_atomic
from ecgproto.phenotype.association import FamilyResult, associate
from ecgproto.phenotype.auroc import cv_auroc
from ecgproto.phenotype.cohort import Cohort, build_cohort, require_columns
from ecgproto.phenotype.compare import best_per_phecode, compare_families, permutation_null, specificity
from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.phenotype.features import (
    FeatureFamily,
    class_family,
    concept_family,
    projected_only,
    prototype_class_family,
    prototype_family,
    unit_matrix,
)
from ecgproto.phenotype.intraclass import intraclass_analysis
from ecgproto.phenotype.phecodes import PhecodeMap, load_phecode_map
from ecgproto.errors import UserError


@dataclass
class PhenotypeResult:
    """Everything the report and the output files are made of."""

    cohort: Cohort
    families: dict[str, FamilyResult]
    best: pd.DataFrame
    comparison: pd.DataFrame
    specificity: pd.DataFrame
    intraclass: tuple[pd.DataFrame, dict, pd.DataFrame] | None
    auroc: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def associations(self) -> pd.DataFrame:
        return pd.concat([f.table for f in self.families.values()], ignore_index=True)


def run_analysis(scores: pd.DataFrame, similarities: pd.DataFrame, ecg_times: pd.DataFrame,
                 statements: pd.DataFrame | None, patients: pd.DataFrame, admissions: pd.DataFrame,
                 diagnoses: pd.DataFrame, cfg: PhenotypeConfig, *, pmap: PhecodeMap | None = None,
                 prototypes: pd.DataFrame | None = None, vectors: dict[str, np.ndarray] | None = None,
                 show_progress: bool = False) -> PhenotypeResult:
    """Run the whole analysis on in-memory tables.

    ``scores``: ``scores.parquet`` (record_id, subject_id, study_id, status, prob__*);
    ``similarities``: record_id + sim__NNNN; ``ecg_times``: record_list (subject_id, study_id,
    ecg_time); ``statements``: (subject_id, study_id, statements list) or None; hosp tables;
    ``prototypes``: checkpoint prototype table (index, branch, class_code, provenance ecg_id,
    window, local_index) and ``vectors`` (branch -> (P_g, D)); without them the prototype-class
    family and the intra-class analysis are skipped (said in ``notes``). Prototypes without a source
    ECG are left out unless ``cfg.include_latent_prototypes`` (counted in ``metadata["prototypes"]``).
    """
    notes: list[str] = []
    pmap = pmap or load_phecode_map(cfg.phecode_version, cfg.phecode_map or None)
    cohort = build_cohort(_scored_ecgs(scores, ecg_times), patients, admissions, diagnoses, pmap, cfg)
    if cohort.Y.shape[1] == 0:
        raise UserError(f"no phecode reaches min_cases={cfg.min_cases} / min_controls={cfg.min_controls} in "
                         f"{len(cohort.units)} units; lower phenotype.min_cases or use a larger cohort "
                         f"(cohort flow: {cohort.flow})")
    fams, proto_summary = _model_families(scores, similarities, prototypes, cfg, notes)
    concept_summary = _add_concepts(fams, statements, scores, cohort, cfg, notes)
    X = {name: unit_matrix(f, cohort.ecg_units, cohort.units, cfg.ecg_per_admission) for name, f in fams.items()}
    results = {name: associate(name, X[name], fams[name].info, cohort, cfg, show_progress) for name in fams}
    notes += [f"{r.name}: {r.table.attrs['refit_note']}" for r in results.values() if "refit_note" in r.table.attrs]
    best, comparison, spec = _compare(results, X, cohort, cfg, show_progress)
    intra = None
    if prototypes is not None and vectors is not None:
        t = results["prototype"].table
        intra = intraclass_analysis(fams["prototype"].info, vectors, t[t["q_bh"] < cfg.q_threshold],
                                    cfg.distance_permutations, cfg.seed)
    auroc = _auroc(cohort, X, cfg, notes)
    meta = _metadata(cohort, pmap, X, results, cfg, concept_summary, proto_summary, intra, notes)
    return PhenotypeResult(cohort=cohort, families=results, best=best, comparison=comparison, specificity=spec,
                           intraclass=intra, auroc=auroc, notes=notes, metadata=meta)


def _scored_ecgs(scores: pd.DataFrame, ecg_times: pd.DataFrame) -> pd.DataFrame:
    """Scored records (record_id, subject_id, study_id, status) with their ``ecg_time``."""
    require_columns(scores, ["record_id", "subject_id", "study_id", "status"], "scores.parquet")
    require_columns(ecg_times, ["subject_id", "study_id", "ecg_time"], "record_list.csv")
    times = ecg_times[["subject_id", "study_id", "ecg_time"]].drop_duplicates(["subject_id", "study_id"])
    ecgs = scores[["record_id", "subject_id", "study_id", "status"]].merge(times, on=["subject_id", "study_id"], how="left")
    ecgs["record_id"] = ecgs["record_id"].astype(str)
    return ecgs


def _model_families(scores: pd.DataFrame, similarities: pd.DataFrame, prototypes: pd.DataFrame | None,
                    cfg: PhenotypeConfig, notes: list[str]) -> tuple[dict[str, FeatureFamily], dict]:
    """The prototype, class and (with a prototype table) prototype-class families; latent prototypes
    (no source ECG) dropped unless ``cfg.include_latent_prototypes``. Returns them and a summary."""
    proto = prototype_family(similarities.assign(record_id=similarities["record_id"].astype(str)), prototypes)
    n_total = proto.values.shape[1]
    latent = int(proto.info["projected"].eq(False).sum())
    summary = {"total": n_total, "latent": latent, "latent_excluded": 0,
               "include_latent": cfg.include_latent_prototypes,
               "provenance_known": bool(proto.info["projected"].notna().any())}
    if not summary["provenance_known"]:
        notes.append("prototype provenance unknown (no --checkpoint, or no projection record): prototypes without "
                     "a source ECG cannot be told apart and are not excluded")
    elif latent == n_total and not cfg.include_latent_prototypes:
        raise UserError(f"all {n_total} prototypes of the checkpoint are latent (no source ECG: the model has no "
                        "projection stage), so none can be shown as a case; re-train with a projection stage or "
                        "pass --include-latent-prototypes to analyse the latent vectors anyway")
    elif latent and not cfg.include_latent_prototypes:
        proto, summary["latent_excluded"] = projected_only(proto)
        notes.append(f"{latent} of {n_total} prototypes have no source ECG (latent, never projected) and are "
                     "excluded from the prototype and prototype-class families and the intra-class analysis "
                     "(phenotype.include_latent_prototypes / --include-latent-prototypes includes them)")
    elif latent:
        notes.append(f"{latent} of {n_total} prototypes have no source ECG; included on request and labelled "
                     "'latent, no source ECG'")
    fams = {"prototype": proto, "class": class_family(scores.assign(record_id=scores["record_id"].astype(str)))}
    if prototypes is not None:
        fams["prototype_class"] = prototype_class_family(proto)
    else:
        notes.append("prototype_class family and intra-class analysis skipped: no checkpoint (--checkpoint) "
                     "to group prototypes by class")
    return fams, summary


def _add_concepts(fams: dict[str, FeatureFamily], statements: pd.DataFrame | None, scores: pd.DataFrame,
                  cohort: Cohort, cfg: PhenotypeConfig, notes: list[str]) -> dict:
    """Add the machine-statement concept family; concepts are kept when present in at least
    ``min_concept_count`` (default ``min_cases``) of the cohort's analysed ECGs."""
    if statements is None:
        notes.append("nlp_concept family skipped: machine_measurements.csv not found")
        return {}
    st = statements.merge(scores[["record_id", "subject_id", "study_id"]], on=["subject_id", "study_id"])
    st = st.assign(record_id=st["record_id"].astype(str))
    missing = set(cohort.units["first_record_id"]) - set(st["record_id"])
    if missing:  # ECGs without a machine_measurements row: all-zero concepts, counted
        st = pd.concat([st, pd.DataFrame({"record_id": sorted(missing), "statements": [[]] * len(missing)})])
    analysed = (cohort.units["first_record_id"] if cfg.ecg_per_admission == "first"
                else cohort.ecg_units["record_id"]).astype(str).to_numpy()
    min_count = cfg.min_cases if cfg.min_concept_count is None else cfg.min_concept_count
    fams["nlp_concept"], summary = concept_family(st, min_count, count_in=analysed)
    summary.update(cohort_ecgs_without_statements=len(missing), min_count=min_count,
                   counted_in=f"the cohort's {len(analysed)} analysed ECGs")
    if fams["nlp_concept"].values.shape[1] == 0:
        del fams["nlp_concept"]
        notes.append(f"no machine-statement concept is present in {min_count} of the cohort's analysed ECGs")
    return summary


def _compare(results: dict[str, FamilyResult], X: dict[str, np.ndarray], cohort: Cohort,
             cfg: PhenotypeConfig, show_progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Best feature per (family, phecode) with its permutation null, feature specificity and the
    family comparison."""
    best = pd.concat([best_per_phecode(r, cohort, cfg.q_threshold) for r in results.values()], ignore_index=True)
    null = None
    if cfg.permutations > 0:
        dtype = np.float32 if cfg.screen_dtype == "float32" else np.float64
        groups = cohort.units["subject_id"].to_numpy() if cfg.unit == "admission" else None
        observed = {f: g["best_mlog10p"].to_numpy() for f, g in best.groupby("family", sort=False)}
        null = permutation_null(X, cohort, cfg.permutations, cfg.seed, dtype, groups=groups, observed=observed,
                                threads=cfg.threads, show_progress=show_progress)
        best = best.merge(null, on=["family", "phecode"], how="left")
    spec = specificity(pd.concat([r.table for r in results.values()]), cfg.q_threshold)
    comparison = compare_families(best.drop(columns=[c for c in best if c.startswith("null_")]), spec, null)
    return best, comparison, spec


def _metadata(cohort: Cohort, pmap: PhecodeMap, X: dict[str, np.ndarray], results: dict[str, FamilyResult],
              cfg: PhenotypeConfig, concepts: dict, prototypes: dict, intra: tuple | None, notes: list[str]) -> dict:
    return {
        "package_version": __version__, "phecode_map": pmap.metadata(), "cohort_flow": cohort.flow,
        "diagnosis_mapping": cohort.mapping_counts, "concepts": concepts, "prototypes": prototypes,
        "families": {n: {"features": int(X[n].shape[1]), "tests": int(np.isfinite(r.screen.p).sum()),
                         "bonferroni_p": r.bonferroni_p, "hits_q": int((r.table["q_bh"] < cfg.q_threshold).sum()),
                         "hits_bonferroni": int(r.table["bonferroni_sig"].sum())} for n, r in results.items()},
        "phecode_line_p": 0.05 / max(cohort.Y.shape[1], 1),
        "odds_ratio_unit": "per SD of the feature over the whole cohort (the screen's standardisation)",
        "thresholds": {"q": cfg.q_threshold, "min_cases": cfg.min_cases, "min_controls": cfg.min_controls,
                       "firth_below_cases": cfg.firth_below_cases,
                       "min_concept_count": cfg.min_cases if cfg.min_concept_count is None else cfg.min_concept_count},
        "seeds": {"seed": cfg.seed, "permutations": cfg.permutations,
                  "permutation_unit": "patients (whole clusters)" if cfg.unit == "admission" else "units",
                  "distance_permutations": cfg.distance_permutations, "auroc_bootstrap": cfg.auroc_bootstrap},
        "intraclass": intra[1] if intra else None, "notes": notes,
    }


def _auroc(cohort: Cohort, X: dict[str, np.ndarray], cfg: PhenotypeConfig, notes: list[str]) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    Z, _ = cohort.covariates()
    codes = list(cohort.phecodes["phecode"])
    for code in cfg.auroc_phecodes:
        if code not in codes:
            notes.append(f"AUROC for phecode {code} skipped: not tested (below minimum counts or absent)")
            continue
        k = codes.index(code)
        m = cohort.mask[:, k]
        y = cohort.Y[m, k]
        groups = cohort.units["subject_id"].to_numpy()[m]
        if min(int(y.sum()), int((1 - y).sum())) < cfg.auroc_folds or len(np.unique(groups)) < cfg.auroc_folds:
            notes.append(f"AUROC for phecode {code} skipped: fewer than {cfg.auroc_folds} cases/controls")
            continue
        sets = {name: x[m] for name, x in X.items()}
        out[code] = cv_auroc(sets, Z[m, 1:], y, groups, cfg.auroc_folds, cfg.auroc_bootstrap, cfg.seed)
    return out


def write_outputs(result: PhenotypeResult, out_dir: str | Path, extra_meta: dict | None = None) -> list[Path]:
    """associations.csv/.parquet, family_best.csv, family_comparison.csv, auroc.csv,
    intraclass_classes.csv, cohort_phecodes.csv and run_metadata.json (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    assoc = result.associations()
    written.append(write_atomic(out / "associations.parquet", lambda p: assoc.to_parquet(p, index=False)))
    written.append(write_atomic(out / "associations.csv", lambda p: assoc.to_csv(p, index=False)))
    tables = {"family_best.csv": result.best, "family_comparison.csv": result.comparison,
              "cohort_phecodes.csv": result.cohort.phecodes, "feature_specificity.csv": result.specificity}
    if result.auroc:
        tables["auroc.csv"] = pd.concat([t.assign(phecode=k) for k, t in result.auroc.items()], ignore_index=True)
    if result.intraclass:
        tables["intraclass_classes.csv"] = result.intraclass[0]
    for name, frame in tables.items():
        written.append(write_atomic(out / name, lambda p, f=frame: f.to_csv(p, index=False)))
    meta = dict(result.metadata, **(extra_meta or {}))
    written.append(write_atomic(out / "run_metadata.json",
                           lambda p: Path(p).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")))
    return written


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
