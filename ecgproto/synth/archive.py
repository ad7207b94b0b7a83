"""``write_synthetic_archive``: the PTB-XL-shaped and MIMIC-IV-shaped synthetic archive.

Layout written under ``out_dir`` (see docs/readme/synth.md):

- ``ptbxl/``: ptbxl_database.csv, scp_statements.csv, findings.csv, records100/ (+ records500/)
- ``mimic/``: record_list.csv, machine_measurements.csv, files/p…/p…/s…/… (500 Hz),
  hosp/{patients,admissions,diagnoses_icd}.csv, truth/{associations,ecg_labels,findings,
  subject_exposures,admission_cases}.csv
- ``synth_summary.json``: counts (deterministic; timings are only returned)

Everything is written into a temporary sibling folder that is renamed into place at the
end, so ``out_dir`` is never half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgproto.synth.config import SynthConfig
from ecgproto.data.labels import all_labels
from ecgproto.synth.findings import localise_findings
from ecgproto.synth.labels_sampler import sample_labels, scp_codes_strings, share_chronic
from ecgproto.synth.mimic_ecg import ecg_labels, ecg_times, machine_measurements, subject_exposures
from ecgproto.synth.mimic_hosp import ASSOCIATIONS, EXPOSURES, draw_admissions, draw_diagnoses, draw_subjects, finish_tables
from ecgproto.synth.ptbxl_meta import assign_folds, draw_cohort, ptbxl_table
from ecgproto.synth.simulator import SynthPlan, plan_records, simulate
from ecgproto.synth.writers import (
    MIMIC_GAIN, MIMIC_ORDER, MIMIC_SIG_NAMES, PTBXL_GAIN, PTBXL_SIG_NAMES, mimic_path, write_csv, write_record,
)
from ecgproto.progress import progress

SUMMARY_NAME = "synth_summary.json"
STREAM_100, STREAM_500, STREAM_MIMIC = 100, 500, 1500


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    ptbxl, mimic = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(ptbxl), np.random.default_rng(mimic)


def build_ptbxl(cfg: SynthConfig) -> tuple[pd.DataFrame, SynthPlan, pd.DataFrame]:
    """In-memory PTB-XL-shaped archive: (ptbxl_database frame, plan, findings frame).

    Signals are rendered on demand with ``simulate(plan, rows, fs)``; row i of the plan is
    ``ecg_id`` i + 1.
    """
    rng, _ = _rngs(cfg.seed)
    cohort = draw_cohort(rng, cfg.n_records, cfg.records_per_patient)
    lab = share_chronic(rng, sample_labels(rng, cohort.age, cfg.rare_label_floor), cohort.first_index)
    plan = plan_records(rng, cohort.age, seed=cfg.seed, labels=lab, noise_scale=cfg.noise_scale,
                        powerline_hz=cfg.powerline_hz)
    ecg_ids = np.arange(1, cfg.n_records + 1)
    folds = assign_folds(rng, cohort.patient_id, lab.labels)
    table = ptbxl_table(rng, ecg_ids, cohort, folds, lab, plan.morph, plan.schedule, plan.noise)
    return table, plan, localise_findings(plan, ecg_ids, "ecg_id")


def _write_ptbxl(root: Path, cfg: SynthConfig, timings: dict[str, float]) -> dict[str, Any]:
    t0 = time.perf_counter()
    table, plan, findings = build_ptbxl(cfg)
    write_csv(table, root / "ptbxl_database.csv")
    write_csv(findings, root / "findings.csv")
    with resources.files("ecgproto.resources").joinpath("scp_statements.csv").open("rb") as fh:
        (root / "scp_statements.csv").write_bytes(fh.read())
    rates = [(100, STREAM_100, "filename_lr", 256)] + ([(500, STREAM_500, "filename_hr", 64)] if cfg.write_500hz else [])
    for fs, stream, column, chunk in rates:
        starts = range(0, plan.n, chunk)
        for start in progress(starts, desc=f"synth ptbxl {fs} Hz", total=len(starts), unit="chunk"):
            rows = np.arange(start, min(start + chunk, plan.n))
            t1 = time.perf_counter()
            signals = simulate(plan, rows, fs, stream=stream)
            t2 = time.perf_counter()
            for i, sig in zip(rows, signals):
                write_record(root / table[column].iat[i], sig, fs, PTBXL_SIG_NAMES, PTBXL_GAIN)
            t3 = time.perf_counter()
            timings[f"ptbxl_simulate_{fs}hz_s"] = timings.get(f"ptbxl_simulate_{fs}hz_s", 0.0) + t2 - t1
            timings[f"ptbxl_write_{fs}hz_s"] = timings.get(f"ptbxl_write_{fs}hz_s", 0.0) + t3 - t2
    timings["ptbxl_total_s"] = time.perf_counter() - t0
    codes = all_labels()
    counts = plan.labels.labels.sum(axis=0)
    return {
        "n_records": int(plan.n),
        "n_patients": int(table["patient_id"].nunique()),
        "folds": {int(k): int(v) for k, v in table["strat_fold"].value_counts().sort_index().items()},
        "label_counts": {codes[j]: int(counts[j]) for j in np.flatnonzero(counts)},
        "n_labels_present": int((counts > 0).sum()),
        "n_findings_rows": int(len(findings)),
        "sampling_rates": [r[0] for r in rates],
    }


def _odds_ratio(exposed: np.ndarray, case: np.ndarray) -> float:
    a = np.sum(exposed & case) + 0.5
    b = np.sum(exposed & ~case) + 0.5
    c = np.sum(~exposed & case) + 0.5
    d = np.sum(~exposed & ~case) + 0.5
    return float(a * d / (b * c))


def _write_mimic(root: Path, cfg: SynthConfig, timings: dict[str, float]) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, rng = _rngs(cfg.seed)
    subjects = draw_subjects(rng, cfg.n_mimic_subjects)
    admissions = draw_admissions(rng, subjects)
    events = ecg_times(rng, admissions)
    sub_row = subjects.set_index("subject_id").loc[events["subject_id"]]
    ecg_year = events["ecg_time"].to_numpy().astype("datetime64[Y]").astype(int) + 1970
    age = sub_row["true_age"].to_numpy() + ecg_year - sub_row["anchor_year"].to_numpy()
    lab, persistent = ecg_labels(rng, events, age.astype(float), cfg.rare_label_floor)
    exposures = subject_exposures(events, lab.labels)
    adm_exp = admissions[["subject_id"]].merge(exposures, on="subject_id", how="left").fillna(0)
    diagnoses, cases = draw_diagnoses(rng, admissions, adm_exp)
    patients, adm_table = finish_tables(rng, subjects, admissions)
    study_ids = 40_000_000 + rng.choice(10_000_000, size=len(events), replace=False)
    paths = [mimic_path(int(s), int(t)) for s, t in zip(events["subject_id"], study_ids)]
    record_list = pd.DataFrame({
        "subject_id": events["subject_id"].to_numpy(), "study_id": study_ids, "file_name": study_ids,
        "ecg_time": events["ecg_time"].dt.strftime("%Y-%m-%d %H:%M:%S"), "path": paths,
    })
    plan = plan_records(rng, age.astype(float), seed=cfg.seed, labels=lab, noise_scale=cfg.noise_scale,
                        powerline_hz=cfg.powerline_hz)
    measurements = machine_measurements(rng, events, study_ids, lab, plan.morph, plan.schedule)
    findings = localise_findings(plan, study_ids, "study_id")
    findings.insert(0, "subject_id", findings["study_id"].map(dict(zip(study_ids, events["subject_id"]))))

    assoc_rows = []
    for ph in ASSOCIATIONS:
        for exp_name, odds in ph.odds_ratios:
            exposed = adm_exp[exp_name].to_numpy() == 1
            case = cases[ph.name].to_numpy() == 1
            assoc_rows.append({
                "exposure": exp_name, "scp_codes": ";".join(EXPOSURES[exp_name]), "phenotype": ph.name,
                "icd9_codes": ";".join(ph.icd9), "icd10_codes": ";".join(ph.icd10),
                "planted_odds_ratio": odds, "base_rate": ph.base_rate,
                "n_admissions": len(case), "n_exposed": int(exposed.sum()), "n_cases": int(case.sum()),
                "empirical_odds_ratio": round(_odds_ratio(exposed, case), 3),
            })
    ecg_truth = pd.DataFrame({
        "subject_id": events["subject_id"].to_numpy(), "study_id": study_ids,
        "hadm_id": events["hadm_id"].to_numpy(), "ecg_kind": events["ecg_kind"].to_numpy(),
        "persistent_af": persistent, "scp_codes": scp_codes_strings(lab),
    })
    write_csv(record_list, root / "record_list.csv")
    write_csv(measurements, root / "machine_measurements.csv")
    write_csv(patients, root / "hosp" / "patients.csv")
    write_csv(adm_table, root / "hosp" / "admissions.csv")
    write_csv(diagnoses, root / "hosp" / "diagnoses_icd.csv")
    truth = root / "truth"
    write_csv(pd.DataFrame(assoc_rows), truth / "associations.csv")
    write_csv(ecg_truth, truth / "ecg_labels.csv")
    write_csv(findings, truth / "findings.csv")
    write_csv(exposures, truth / "subject_exposures.csv")
    write_csv(cases, truth / "admission_cases.csv")

    chunk = 64
    starts = range(0, plan.n, chunk)
    times = events["ecg_time"].dt.to_pydatetime()
    for start in progress(starts, desc="synth mimic 500 Hz", total=len(starts), unit="chunk"):
        rows = np.arange(start, min(start + chunk, plan.n))
        t1 = time.perf_counter()
        signals = simulate(plan, rows, 500, stream=STREAM_MIMIC)[:, MIMIC_ORDER]
        t2 = time.perf_counter()
        for i, sig in zip(rows, signals):
            write_record(root / paths[i], sig, 500, MIMIC_SIG_NAMES, MIMIC_GAIN, base_datetime=times[i])
        t3 = time.perf_counter()
        timings["mimic_simulate_s"] = timings.get("mimic_simulate_s", 0.0) + t2 - t1
        timings["mimic_write_s"] = timings.get("mimic_write_s", 0.0) + t3 - t2
    timings["mimic_total_s"] = time.perf_counter() - t0
    return {
        "n_subjects": int(len(subjects)),
        "n_admissions": int(len(admissions)),
        "n_ecgs": int(len(events)),
        "ecg_kinds": {str(k): int(v) for k, v in events["ecg_kind"].value_counts().sort_index().items()},
        "n_diagnoses": int(len(diagnoses)),
        "icd_versions": {int(k): int(v) for k, v in diagnoses["icd_version"].value_counts().sort_index().items()},
        "associations": assoc_rows,
    }


def write_synthetic_archive(out_dir: str | Path, cfg: SynthConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Write the synthetic archive under ``out_dir`` and return summary counts (plus a
    ``timings`` dict in seconds, which is not written to disk).

    Raises FileExistsError if ``out_dir`` exists and is not empty, unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; choose another --out or pass --force to replace it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    timings: dict[str, float] = {}
    try:
        summary: dict[str, Any] = {"seed": cfg.seed, "ptbxl": _write_ptbxl(tmp / "ptbxl", cfg, timings)}
        if cfg.n_mimic_subjects > 0:
            summary["mimic"] = _write_mimic(tmp / "mimic", cfg, timings)
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["timings"] = timings
    return summary
