"""Reading the phenotype inputs from disk: scoring outputs, MIMIC-IV tables, checkpoint prototypes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.errors import InputNotFoundError, UserError


def read_scores(scores_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``scores.parquet`` and ``similarities.parquet`` from an ``ecgproto score`` output folder."""
    d = Path(scores_dir)
    if not d.is_dir():
        raise InputNotFoundError(f"scores folder {d} does not exist; run `ecgproto score CHECKPOINT MIMIC_ROOT "
                                f"--out {d} --save-similarities` first")
    scores_path, sim_path = d / "scores.parquet", d / "similarities.parquet"
    if not scores_path.is_file():
        raise InputNotFoundError(f"{scores_path} not found; is {d} an `ecgproto score` output folder?")
    if not sim_path.is_file():
        raise InputNotFoundError(f"{sim_path} not found; re-run `ecgproto score` with --save-similarities")
    scores = pd.read_parquet(scores_path)
    for col in ("record_id", "subject_id", "study_id", "status"):
        if col not in scores.columns:
            raise UserError(f"{scores_path}: missing column {col!r}; score a MIMIC-IV-ECG folder (record_list.csv) "
                             "so that subject_id and study_id are kept")
    sims = pd.read_parquet(sim_path)
    if "record_id" not in sims.columns:
        raise UserError(f"{sim_path}: missing column 'record_id'")
    return scores, sims


@dataclass(frozen=True)
class MimicInputs:
    record_list: pd.DataFrame
    statements: pd.DataFrame | None
    patients: pd.DataFrame
    admissions: pd.DataFrame
    diagnoses: pd.DataFrame
    notes: tuple[str, ...]


def read_mimic(mimic_root: str | Path, hosp_dir: str | Path) -> MimicInputs:
    """MIMIC-IV-ECG ``record_list.csv`` (+ ``machine_measurements.csv`` if present) and the hosp tables."""
    from ecgproto.data.mimic import load_hosp, load_machine_statements, load_record_list

    record_list = load_record_list(mimic_root)
    notes: list[str] = []
    try:
        statements = load_machine_statements(mimic_root)
    except FileNotFoundError as exc:
        statements = None
        notes.append(f"machine statements unavailable ({exc})")
    hosp = load_hosp(hosp_dir)
    return MimicInputs(record_list, statements, hosp.patients, hosp.admissions, hosp.diagnoses, tuple(notes))


@dataclass(frozen=True)
class CheckpointPrototypes:
    """Prototype table (index, branch, local_index, class_code + provenance columns from meta),
    vectors per branch ((P_g, D) in local_index order), the checkpoint meta and its sha256."""

    table: pd.DataFrame
    vectors: dict[str, np.ndarray]
    meta: dict
    sha256: str


def read_checkpoint_prototypes(path: str | Path) -> CheckpointPrototypes:
    """Load a checkpoint and extract what the phenotype analysis needs about its prototypes."""
    import hashlib

    path = Path(path)
    model, meta = load_checkpoint(path)
    table = model.prototype_table()
    prov = pd.DataFrame(meta.get("prototypes") or [])
    if len(prov) and "index" in prov.columns:
        extra = [c for c in prov.columns if c not in table.columns or c == "index"]
        table = table.merge(prov[extra], on="index", how="left")
    vectors = {name: branch.prototype_vectors.detach().cpu().numpy().reshape(branch.prototype_vectors.shape[0], -1)
               for name, branch in model.branches.items()}
    return CheckpointPrototypes(table, vectors, meta, hashlib.sha256(path.read_bytes()).hexdigest())


def thumbnail_maker(protos: CheckpointPrototypes, source_data: str | Path | None) -> tuple[Callable[[str], bytes | None] | None, str]:
    """A function feature_id -> PNG of the prototype's source training ECG with its window highlighted,
    or (None, reason) when the training archive cannot be found."""
    try:
        from ecgproto.explain.plot_ecg import figure_png_bytes, plot_12lead
        from ecgproto.explain.source import SourceArchive
    except ImportError as exc:  # explain branch not merged
        return None, f"explain module unavailable ({exc})"
    archive = SourceArchive.resolve(protos.meta, source_data)
    if not archive.available:
        return None, archive.reason
    table = protos.table.set_index("index")
    fs = archive.prep.fs

    def make(feature_id: str) -> bytes | None:
        import matplotlib.pyplot as plt

        j = int(feature_id.lstrip("P"))
        if j not in table.index or "ecg_id" not in table.columns:
            return None
        row = table.loc[j]
        if pd.isna(row["ecg_id"]):  # prototype without provenance (not projected)
            return None
        signal, _ = archive.signal(int(row["ecg_id"]))
        if signal is None:
            return None
        has_span = "rf_start" in table.columns and pd.notna(row["rf_start"]) and pd.notna(row["rf_end"])
        span = (int(row["rf_start"]), int(row["rf_end"])) if has_span else None
        fig = plot_12lead(signal, fs, highlight=span, title=f"{feature_id} class {row['class_code']} "
                          f"(source ecg_id {int(row['ecg_id'])})", layout="12x1")
        png = figure_png_bytes(fig, dpi=60)
        plt.close(fig)
        return png

    return make, ""
