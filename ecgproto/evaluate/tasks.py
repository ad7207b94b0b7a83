"""Evaluation tasks: which model output is scored on which label set, and which records count.

A task pairs an output (``fused`` = the 71 fused probabilities, or a branch name whose
probabilities cover its own label group) with a label set: the 71 labels, a branch group,
or a PTB-XL benchmark set. The sub- and superdiagnostic benchmark targets aggregate SCP
codes: a record is positive if any member code is positive and the target's probability
is the maximum of its member codes' probabilities (a heuristic: the benchmark models are
trained on these targets directly).

Test-set conventions: ``keep_all`` (ProtoECGNet) scores every record of the split;
``drop_unlabeled`` (PTB-XL benchmark) scores only records with at least one positive
label of the task's label set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgproto.data.labels import (
    GROUPS,
    all_labels,
    benchmark_label_set,
    code_to_benchmark_target,
    group_labels,
)

AGGREGATED_SETS = ("subdiagnostic", "superdiagnostic")


@dataclass(frozen=True)
class Task:
    """One (output, label set) pair; ``targets`` are the label names scored."""

    output: str
    label_set: str
    targets: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.output}:{self.label_set}"

    @property
    def aggregated(self) -> bool:
        return self.label_set.removeprefix("benchmark:") in AGGREGATED_SETS


def default_tasks(outputs: list[str], benchmark_sets: tuple[str, ...]) -> list[Task]:
    """Fused on all 71 labels and on each group, each branch on its group, fused on benchmark sets."""
    tasks = [Task("fused", "all71", all_labels())]
    for g in GROUPS:
        tasks.append(Task("fused", f"group:{g}", group_labels(g)))
    for g in GROUPS:
        if g in outputs:
            tasks.append(Task(g, f"group:{g}", group_labels(g)))
    for name in benchmark_sets:
        if name == "all":
            continue  # identical to fused:all71
        tasks.append(Task("fused", f"benchmark:{name}", benchmark_label_set(name)))
    return tasks


def output_codes(output: str) -> tuple[str, ...]:
    """Label codes (in column order) of an output's probability matrix."""
    return all_labels() if output == "fused" else group_labels(output)


def task_arrays(
    task: Task, labels71: np.ndarray, probs: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (N, C), probabilities (N, C) and source columns for ``task``.

    ``labels71`` (N, 71) multi-hot in ``all_labels()`` order; ``probs`` maps output name
    to its (N, C_output) probabilities. The third value gives, per target, the column in
    the output's matrix (−1 for aggregated targets, which have no single column).
    """
    if task.output not in probs:
        raise KeyError(f"task {task.name}: no probabilities for output {task.output!r}")
    label_pos = {c: i for i, c in enumerate(all_labels())}
    out_pos = {c: i for i, c in enumerate(output_codes(task.output))}
    p_out = np.asarray(probs[task.output], dtype=np.float64)
    y71 = np.asarray(labels71).astype(bool)
    if not task.aggregated:
        cols = np.array([out_pos[c] for c in task.targets])
        return y71[:, [label_pos[c] for c in task.targets]], p_out[:, cols], cols
    mapping = code_to_benchmark_target(task.label_set.removeprefix("benchmark:"))
    y = np.zeros((len(y71), len(task.targets)), dtype=bool)
    p = np.zeros((len(y71), len(task.targets)))
    for j, target in enumerate(task.targets):
        members = [c for c, t in mapping.items() if t == target]
        y[:, j] = y71[:, [label_pos[c] for c in members]].any(1)
        p[:, j] = p_out[:, [out_pos[c] for c in members]].max(1)
    return y, p, np.full(len(task.targets), -1)


def record_mask(task_labels: np.ndarray, drop_unlabeled: bool) -> np.ndarray:
    """Records scored for a task (N,) bool: all, or those with ≥ 1 positive task label."""
    y = np.asarray(task_labels).astype(bool)
    return y.any(1) if drop_unlabeled else np.ones(len(y), dtype=bool)
