"""The scoring output table: its schema and how one chunk of rows is built.

Columns (one row per input record, in input order): ``record_id``, the source id
columns, ``path``, ``status``, ``error``, ``prob__<CODE>`` ×71 (float32, NaN for a bad
record), ``pred__<CODE>`` ×71 (int8 0/1 at the checkpoint's validation-tuned thresholds,
``prob >= threshold``; null for a bad record), ``top_labels`` (the ``top_k`` labels with the
highest probability among those that can be predicted — labels whose threshold is above 1, i.e. not
trained or without a validation positive, are never listed — ';'-joined, highest first), per branch ``<branch>_top_prototype``
(global prototype index, int32), ``<branch>_top_class`` and ``<branch>_top_similarity``
(float32), ``ood_score`` (float32; :mod:`ecgproto.model.ood`) and ``ood_flag`` (int8; null when the
checkpoint has no current OOD calibration or the record is bad). ``similarities.parquet`` holds ``record_id`` and
``sim__<index:04d>`` (float32) for every prototype.

A model without prototypes (the black-box twin, ``model.kind: blackbox``) has no
``<branch>_top_*`` columns; its ``ood_score`` is NaN and its ``ood_flag`` null for every record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ecgproto.model.ood import ood_scores, uncalibrated_scores


@dataclass(frozen=True)
class OutputSpec:
    """Everything needed to turn model outputs into output rows.

    ``labels``/``thresholds``: (71,) codes and decision thresholds; ``proto_branch``,
    ``proto_class``: (P,) branch and class code of each prototype in similarity-column
    order; ``ood_calibration``: a current calibration (:func:`ecgproto.model.ood.is_current`) or None
    (the uncalibrated score); ``ood_threshold`` None = no flag.
    """

    labels: tuple[str, ...]
    thresholds: np.ndarray
    proto_branch: tuple[str, ...]
    proto_class: tuple[str, ...]
    id_columns: tuple[str, ...]
    top_k: int
    ood_calibration: dict | None
    ood_threshold: float | None

    @property
    def branches(self) -> list[str]:
        return list(dict.fromkeys(self.proto_branch))

    def schema(self) -> pa.Schema:
        """Arrow schema of ``scores.parquet``."""
        fields = [pa.field("record_id", pa.string())]
        fields += [pa.field(c, pa.int64()) for c in self.id_columns]
        fields += [pa.field("path", pa.string()), pa.field("status", pa.string()), pa.field("error", pa.string())]
        fields += [pa.field(f"prob__{c}", pa.float32()) for c in self.labels]
        fields += [pa.field(f"pred__{c}", pa.int8()) for c in self.labels]
        fields.append(pa.field("top_labels", pa.string()))
        for b in self.branches:
            fields += [pa.field(f"{b}_top_prototype", pa.int32()), pa.field(f"{b}_top_class", pa.string()),
                       pa.field(f"{b}_top_similarity", pa.float32())]
        fields += [pa.field("ood_score", pa.float32()), pa.field("ood_flag", pa.int8())]
        return pa.schema(fields)

    def similarity_schema(self) -> pa.Schema:
        """Arrow schema of ``similarities.parquet``."""
        return pa.schema([pa.field("record_id", pa.string())]
                         + [pa.field(f"sim__{j:04d}", pa.float32()) for j in range(len(self.proto_branch))])


def _scatter(values: np.ndarray, ok: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Rows of ``values`` (n_ok, ...) placed at the ``ok`` rows of an (n, ...) float32 array."""
    out = np.full((len(ok),) + values.shape[1:], fill, dtype=np.float32)
    out[ok] = values
    return out


def build_rows(records: pd.DataFrame, status: list[str], message: list[str], probs: np.ndarray,
               similarities: np.ndarray, spec: OutputSpec, with_similarities: bool = False,
               ood_features: np.ndarray | None = None) -> tuple[pa.Table, pa.Table | None]:
    """Output rows of one chunk.

    ``records``: the chunk's slice of the record list (record_id, id columns, path);
    ``status``/``message``: one per record; ``probs`` (n_ok, 71), ``similarities``
    (n_ok, P) and, with a calibration, ``ood_features`` (n_ok, F) for the records with status
    "ok", in order. Returns the scores table and, when ``with_similarities``, the similarities
    table (same rows; else None).
    """
    n = len(records)
    ok = np.asarray(status, dtype=object) == "ok"
    n_ok = int(ok.sum())
    if probs.shape != (n_ok, len(spec.labels)) or similarities.shape != (n_ok, len(spec.proto_branch)):
        raise ValueError(f"model outputs {probs.shape}/{similarities.shape} do not match {n_ok} good records")
    columns: dict[str, object] = {"record_id": records["record_id"].to_numpy(dtype=object)}
    for c in spec.id_columns:
        columns[c] = records[c].to_numpy(dtype=np.int64)
    columns["path"] = records["path"].to_numpy(dtype=object)
    columns["status"] = np.asarray(status, dtype=object)
    columns["error"] = np.asarray(message, dtype=object)

    prob_all = _scatter(probs.astype(np.float32, copy=False), ok)
    pred = probs >= spec.thresholds[None, :]
    for j, code in enumerate(spec.labels):
        columns[f"prob__{code}"] = prob_all[:, j]
    for j, code in enumerate(spec.labels):
        columns[f"pred__{code}"] = pa.array(_scatter(pred[:, j].astype(np.float32), ok, 0).astype(np.int8),
                                            mask=~ok)

    labels = np.asarray(spec.labels, dtype=object)
    # labels that can never be predicted (threshold above 1: not trained, or no validation positive) are not listed
    predictable = spec.thresholds <= 1.0
    ranked = np.where(predictable[None, :], probs, -np.inf)
    top = np.argsort(-ranked, axis=1, kind="stable")[:, : min(spec.top_k, int(predictable.sum()))]
    top_text = np.full(n, None, dtype=object)
    top_text[ok] = [";".join(row) for row in labels[top]]
    columns["top_labels"] = top_text

    branch_of = np.asarray(spec.proto_branch, dtype=object)
    proto_class = np.asarray(spec.proto_class, dtype=object)
    for b in spec.branches:
        cols = np.flatnonzero(branch_of == b)
        best = cols[np.argmax(similarities[:, cols], axis=1)] if n_ok else np.zeros(0, dtype=np.int64)
        index = np.zeros(n, dtype=np.int32)
        index[ok] = best
        cls = np.full(n, None, dtype=object)
        cls[ok] = proto_class[best]
        columns[f"{b}_top_prototype"] = pa.array(index, mask=~ok)
        columns[f"{b}_top_class"] = cls
        columns[f"{b}_top_similarity"] = _scatter(similarities[np.arange(n_ok), best], ok)

    if n_ok and spec.proto_branch and spec.ood_calibration is not None:
        if ood_features is None:
            raise ValueError("an OOD calibration needs the records' OOD features")
        score = ood_scores(ood_features, spec.ood_calibration)
    elif n_ok and spec.proto_branch:
        score = uncalibrated_scores(similarities, spec.proto_branch)
    else:  # no good record, or a model without prototypes (the black-box twin): no score
        score = np.full(n_ok, np.nan)
    columns["ood_score"] = _scatter(score.astype(np.float32), ok)
    flag_mask = ~ok if spec.ood_threshold is not None else np.ones(n, dtype=bool)
    flag = np.zeros(n, dtype=np.int8)
    if spec.ood_threshold is not None:
        flag[ok] = score >= spec.ood_threshold
    columns["ood_flag"] = pa.array(flag, mask=flag_mask)

    schema = spec.schema()
    scores = pa.table([pa.array(columns[f.name], type=f.type) if not isinstance(columns[f.name], pa.Array)
                       else columns[f.name] for f in schema], schema=schema)
    if not with_similarities:
        return scores, None
    sims = _scatter(similarities.astype(np.float32, copy=False), ok)
    sim_schema = spec.similarity_schema()
    sim_table = pa.table([pa.array(columns["record_id"], type=pa.string())]
                         + [pa.array(sims[:, j]) for j in range(sims.shape[1])], schema=sim_schema)
    return scores, sim_table
