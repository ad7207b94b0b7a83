"""The 71 PTB-XL SCP statements, the three ecgproto branch groups and the benchmark label sets.

Shipped as ``ecgproto/resources/scp_labels.csv`` (derived from PTB-XL v1.0.3
``scp_statements.csv``, CC BY 4.0, Wagner et al. 2020), in ``scp_statements.csv`` row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

GROUPS: tuple[str, ...] = ("rhythm", "morphology", "global")
BENCHMARK_SETS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")


@dataclass(frozen=True)
class LabelTable:
    """Label names in SCP order plus the branch group of each label."""

    codes: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    frame: pd.DataFrame

    def indices(self, group: str) -> list[int]:
        """Column indices (into the 71-label vector) of a branch group's labels."""
        if group not in self.groups:
            raise KeyError(f"unknown label group {group!r}; expected one of {list(self.groups)}")
        pos = {c: i for i, c in enumerate(self.codes)}
        return [pos[c] for c in self.groups[group]]


@lru_cache(maxsize=1)
def label_table() -> LabelTable:
    """Load the shipped label table (71 rows, SCP order)."""
    with resources.files("ecgproto.resources").joinpath("scp_labels.csv").open() as fh:
        frame = pd.read_csv(fh, keep_default_na=False)
    codes = tuple(frame["code"])
    groups = {g: tuple(frame.loc[frame["group"] == g, "code"]) for g in GROUPS}
    return LabelTable(codes=codes, groups=groups, frame=frame)


def all_labels() -> tuple[str, ...]:
    """The 71 SCP statement codes in ``scp_statements.csv`` order."""
    return label_table().codes


def group_labels(group: str) -> tuple[str, ...]:
    """Codes of one branch group (rhythm: 16, morphology: 52, global: 3), in SCP order."""
    table = label_table()
    if group not in table.groups:
        raise KeyError(f"unknown label group {group!r}; expected one of {list(table.groups)}")
    return table.groups[group]


def benchmark_label_set(name: str) -> tuple[str, ...]:
    """Target names of a PTB-XL benchmark task (Strodthoff et al. 2021).

    ``all``/``diagnostic``/``form``/``rhythm`` are SCP codes; ``subdiagnostic`` and
    ``superdiagnostic`` are the ``diagnostic_subclass``/``diagnostic_class`` names.
    """
    frame = label_table().frame
    if name == "all":
        return tuple(frame["code"])
    if name in ("diagnostic", "form", "rhythm"):
        return tuple(frame.loc[frame[name] == 1, "code"])
    if name == "subdiagnostic":
        return tuple(sorted(set(frame.loc[frame["diagnostic"] == 1, "diagnostic_subclass"])))
    if name == "superdiagnostic":
        return tuple(sorted(set(frame.loc[frame["diagnostic"] == 1, "diagnostic_class"])))
    raise KeyError(f"unknown label set {name!r}; expected one of {list(BENCHMARK_SETS)}")


def code_to_benchmark_target(name: str) -> dict[str, str]:
    """For sub/superdiagnostic sets: SCP code → target name (diagnostic codes only)."""
    frame = label_table().frame
    diag = frame[frame["diagnostic"] == 1]
    column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}.get(name)
    if column is None:
        return {c: c for c in benchmark_label_set(name)}
    return dict(zip(diag["code"], diag[column]))


def label_statistics(labels: np.ndarray) -> dict[str, Any]:
    """``{"n": N, "positives": (L,), "pairs": (L, L)}`` co-occurrence counts of multi-hot (N, L) labels
    (stored in checkpoints as ``meta["label_stats"]`` from the training split)."""
    y = np.asarray(labels, dtype=np.int64)
    return {"n": int(y.shape[0]), "positives": y.sum(axis=0).tolist(), "pairs": (y.T @ y).tolist()}
