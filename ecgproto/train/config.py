"""Configuration of staged training (per branch) and fusion training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StageName = Literal["warmup", "prototype_init", "joint", "projection", "last_layer"]


@dataclass(frozen=True)
class StageConfig:
    """One training stage of a branch.

    ``warmup``: backbone + add-on + a temporary linear head on pooled latents, no prototypes;
    ``prototype_init``: one pass, no training: every prototype is set to the nearest latent window
    of a training ECG of its class (the projection search used as a data-driven start for
    ``joint`` after a warm-up; no provenance is kept, a later ``projection`` records it);
    ``joint``: backbone + add-on + prototypes (last layer fixed unless ``train_last_layer``, which
    trains it too, with the last-layer L1 on off-class weights; ``train_backbone: false`` keeps the
    backbone frozen, in eval mode, as warm-up left it); ``projection``: one pass, no
    training; ``last_layer``: only the last layer, L1 on off-class weights.
    ``refit_epochs`` (projection and prototype_init): afterwards the branch's last layer is
    re-fitted for up to that many full-batch epochs at ``lr`` on the branch's cached training
    similarities and selected on validation (ecgproto.train.refit); ``epochs`` is ignored there.
    """

    name: StageName = "joint"
    epochs: int = 10
    lr: float = 1e-4
    train_last_layer: bool = False
    train_backbone: bool = True
    refit_epochs: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"stage {self.name}: epochs must be >= 0, got {self.epochs}")
        one_pass = self.name in ("projection", "prototype_init")
        if (self.epochs > 0 if not one_pass else self.refit_epochs > 0) and self.lr <= 0:
            raise ValueError(f"stage {self.name}: lr must be > 0, got {self.lr}")
        if self.refit_epochs < 0 or (self.refit_epochs and not one_pass):
            raise ValueError(f"stage {self.name}: refit_epochs (>= 0) applies to projection and prototype_init only")
        if (self.train_last_layer or not self.train_backbone) and self.name != "joint":
            raise ValueError(f"stage {self.name}: train_last_layer and train_backbone apply to the joint stage only")


def _default_stages() -> tuple[StageConfig, ...]:
    return (
        StageConfig("joint", 200, 1e-4),
        StageConfig("projection", 0, 0.0),
        StageConfig("last_layer", 20, 1e-4),
    )


@dataclass(frozen=True)
class TrainConfig:
    """Staged branch training, then fusion on cached branch similarities.

    ``stages`` apply to every branch unless ``branch_stages[<group>]`` gives that branch its own list.
    Model selection and early stopping use the dataset-level macro AUROC on the full validation fold.
    """

    stages: tuple[StageConfig, ...] = field(default_factory=_default_stages)
    branch_stages: dict[str, tuple[StageConfig, ...]] = field(default_factory=dict)
    fusion_epochs: int = 200
    # "branches": the fusion head starts at the branches' own last layers (fused = branch logits);
    # "default": the head's own initialisation (+own-class weights, zero bias)
    fusion_init: Literal["branches", "default"] = "branches"
    fusion_lr: float = 1e-4
    fusion_batch_size: int = 256
    batch_size: int = 32
    eval_batch_size: int = 256
    weight_decay: float = 1.7e-4
    patience: int = 10  # epochs without validation improvement before a stage stops
    # the same for the fusion head (None = ``patience``); its epochs run on cached features, so cheap
    fusion_patience: int | None = None
    threads: int = 1  # torch intra-op threads per process; 0 = torch's default (all cores)
    unique_projection: bool = True  # no two prototypes of a branch project onto the same ECG (measured: docs/readme/train.md)
    scheduler: Literal["cosine", "none"] = "cosine"
    augment_scale: float = 0.0  # amplitude jitter ±fraction (0 = off)
    augment_noise_mv: float = 0.0  # Gaussian noise SD in mV (0 = off)
    augment_shift_samples: int = 0  # circular time shift up to ± samples (0 = off)
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU
    # model selection (stage epochs, last-layer re-fits, fusion) uses the validation macro AUROC
    # over labels with at least this many validation positives; train_log.csv keeps the macro
    # AUROC over every label with a positive as well (1 = every label with a positive)
    selection_min_positives: int = 1
    # fraction of validation (in-distribution) records the stored OOD threshold flags
    ood_flag_rate: float = 0.05
    # accelerators (the device itself is the top-level ``device``): mixed precision of the branch
    # training steps (autocast; fp16 adds a GradScaler and needs CUDA; validation, projection and
    # features stay fp32), torch.compile of the training forward, DataLoader worker processes
    # reading the memmap cache (0 = the main process) and pinned memory for the copies to a GPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    num_workers: int = 0
    pin_memory: bool = True  # applies on CUDA only

    def __post_init__(self) -> None:
        unknown = set(self.branch_stages) - {"rhythm", "morphology", "global"}
        if unknown:
            raise ValueError(f"branch_stages: unknown branch(es) {sorted(unknown)}")
        for stages in (self.stages, *self.branch_stages.values()):
            names = [s.name for s in stages]
            if names.count("projection") > 1 or names.count("prototype_init") > 1:
                raise ValueError("a branch can have at most one projection and one prototype_init stage")
            if "prototype_init" in names and "joint" in names and names.index("prototype_init") > names.index("joint"):
                raise ValueError("prototype_init must come before the joint stage")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.fusion_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def cached_patience(self) -> int:
        """Patience of the phases trained on cached features (fusion, last-layer re-fits)."""
        return self.fusion_patience or self.patience

    def stages_for(self, group: str) -> tuple[StageConfig, ...]:
        """The stage list of branch ``group``."""
        return self.branch_stages.get(group, self.stages)
