"""Configuration of the three prototype branches, the fusion head and the losses.

Branch fields left unset (``None``) take the defaults of the branch's group (see
``GROUP_DEFAULTS``), so ``--set model.branches.morphology.base_width=8`` changes only
that field; the resolved config always holds concrete values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

BRANCH_GROUPS: tuple[str, ...] = ("rhythm", "morphology", "global")
BACKBONES: tuple[str, ...] = ("resnet1d18", "resnet1d34", "resnet18_2d", "resnet34_2d")

_COMMON_DEFAULTS: dict[str, Any] = {
    "base_width": 64,
    "proto_lead_len": 1,
    "proto_dim": 0,
    "pooling": "max",
    "lead_aware": False,
    "add_on_activation": "sigmoid",
    "last_layer_negative": -0.5,
    "pretrained": "",
    "padding": "zeros",
}

#: Reference-scale defaults per group (protoecgnet_reference.md §2, §3, §13).
GROUP_DEFAULTS: dict[str, dict[str, Any]] = {
    "rhythm": {
        **_COMMON_DEFAULTS,
        "kind": "1d",
        "backbone": "resnet1d18",
        "prototypes_per_class": 5,
        "proto_time_len": 0,
        "similarity_scale": 1.0,
        "dropout": 0.0,
    },
    "morphology": {
        **_COMMON_DEFAULTS,
        "kind": "2d",
        "backbone": "resnet18_2d",
        "prototypes_per_class": 18,
        "proto_time_len": 3,
        "similarity_scale": 1.0,  # reference 13 (with mean pooling); 1 learns faster with max pooling
        "dropout": 0.35,
    },
    "global": {
        **_COMMON_DEFAULTS,
        "kind": "2d",
        "backbone": "resnet18_2d",
        "prototypes_per_class": 7,
        "proto_time_len": 0,
        "similarity_scale": 4.0,
        "dropout": 0.35,
    },
}


@dataclass(frozen=True)
class BranchConfig:
    """One prototype branch: backbone → add-on → prototypes → last layer.

    kind: "1d" = latent globally average-pooled (one global prototype vector per
    prototype); "2d" = latent keeps its time axis (and lead axis if ``lead_aware``).
    proto_time_len: latent time steps per prototype; 0 = the whole latent axis (global).
    proto_lead_len: leads per prototype window when ``lead_aware``; 0 = all 12 leads.
    proto_dim: channels of the add-on output; 0 = the backbone's channel count (reference).
    similarity_scale: factor on the cosine (defaults 1 / 1 / 4; reference 1 / 13 / 4, see docs/readme/model.md).
    last_layer_negative: initial prototype→other-class weight (own class gets +1).
    pretrained: "" (default: random initialisation) or the path of a local torchvision ResNet-18/34
    ImageNet state dict (e.g. ``resnet18-f37072fd.pth``) whose bn1 and layers 1–4 initialise a 2D
    branch at base_width 64 (the reference; conv1 stays random there too); ``"imagenet"`` raises
    NotImplementedError (ecgproto never downloads weights). See ``ecgproto.model.pretrained``.
    padding: how the backbone's convolutions pad the record ends in time: "zeros" (default, the
    reference) or "replicate" (repeat the edge sample; see docs/readme/explain.md, record-end windows).
    """

    kind: Literal["1d", "2d"] | None = None
    backbone: Literal["resnet1d18", "resnet1d34", "resnet18_2d", "resnet34_2d"] | None = None
    base_width: int | None = None
    prototypes_per_class: int | None = None
    proto_time_len: int | None = None
    proto_lead_len: int | None = None
    proto_dim: int | None = None
    pooling: Literal["max", "mean"] | None = None
    lead_aware: bool | None = None
    add_on_activation: Literal["sigmoid", "relu", "none"] | None = None
    similarity_scale: float | None = None
    last_layer_negative: float | None = None
    dropout: float | None = None
    pretrained: str | None = None
    padding: Literal["zeros", "replicate"] | None = None

    def resolved(self, group: str) -> BranchConfig:
        """Copy with every unset field filled from ``GROUP_DEFAULTS[group]``, validated."""
        if group not in GROUP_DEFAULTS:
            raise ValueError(f"unknown branch group {group!r}; expected one of {list(BRANCH_GROUPS)}")
        values = {
            f.name: GROUP_DEFAULTS[group][f.name] if getattr(self, f.name) is None else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }
        out = BranchConfig(**values)
        out._validate(group)
        return out

    def _validate(self, group: str) -> None:
        where = f"model.branches.{group}"
        if self.base_width < 1:
            raise ValueError(f"{where}.base_width must be >= 1, got {self.base_width}")
        if self.prototypes_per_class < 1:
            raise ValueError(f"{where}.prototypes_per_class must be >= 1, got {self.prototypes_per_class}")
        if self.proto_time_len < 0 or self.proto_lead_len < 0 or self.proto_dim < 0:
            raise ValueError(f"{where}: proto_time_len, proto_lead_len and proto_dim must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{where}.dropout must be in [0, 1), got {self.dropout}")
        if self.similarity_scale <= 0:
            raise ValueError(f"{where}.similarity_scale must be > 0, got {self.similarity_scale}")
        if self.kind == "1d":
            if not self.backbone.startswith("resnet1d"):
                raise ValueError(f"{where}: kind '1d' needs a resnet1d* backbone, got {self.backbone!r}")
            if self.lead_aware or self.proto_time_len not in (0, 1):
                raise ValueError(
                    f"{where}: kind '1d' pools the latent globally; set lead_aware: false and proto_time_len: 0"
                )
        elif not self.backbone.endswith("_2d"):
            raise ValueError(f"{where}: kind '2d' needs a resnet*_2d backbone, got {self.backbone!r}")
        if self.pretrained and (self.kind != "2d" or self.lead_aware or self.base_width != 64):
            raise ValueError(f"{where}.pretrained: ImageNet weights fit a 2d branch with base_width 64 and "
                             "lead_aware false only (the reference's torchvision ResNet)")


def _default_branches() -> dict[str, BranchConfig]:
    return {g: BranchConfig() for g in BRANCH_GROUPS}


@dataclass(frozen=True)
class FusionConfig:
    """Fusion of the concatenated branch similarities into the 71 logits.

    head: "sign_constrained" (each label's logit = bias + Σ_j w_cj·s̃_j, w_cj ≥ 0 for the label's
    own prototypes and ≤ 0 for the other prototypes connected by ``mask``), "masked_nonneg"
    (w_cj ≥ 0 on every connected prototype) or "linear" (dense, signed; the reference head).
    mask: prototypes connected to a label — "own_class" (its own prototypes in its branch),
    "own_branch" (every prototype of its branch), "own_class_and_other_branches" (own
    prototypes plus every prototype of the two other branches) or "all"; ignored by "linear".
    normalize: standardise each branch's similarities with one mean/std per branch
    (fitted on training similarities) before the head.
    """

    head: Literal["sign_constrained", "masked_nonneg", "linear"] = "sign_constrained"
    mask: Literal["own_class", "own_branch", "own_class_and_other_branches", "all"] = "all"
    normalize: bool = True


@dataclass(frozen=True)
class LossConfig:
    """Weights of each loss term (0 switches a term off) and their options (ecgproto.model.losses).

    Each option's second value is the reference's rule (protoecgnet_reference.md §1.4, §4):
    pos_weight_rule "records" (N − n_c)/n_c or "label_sum" (Σ_k n_k − n_c)/n_c, capped at
    pos_weight_cap (0 = uncapped); cluster_separation "per_sample" (masks per sample) or
    "reference" (per sample × class, zeros in the max, mean over B×C); diversity_scope "class"
    or "all" prototype pairs; contrastive_pairs "different_class" or "all" (same-class pairs
    and j = k attracted too).
    """

    pos_weight_cap: float = 100.0
    pos_weight_rule: Literal["records", "label_sum"] = "records"
    clustering: float = 0.004
    separation: float = 0.0004
    cluster_separation: Literal["per_sample", "reference"] = "per_sample"
    diversity: float = 250.0
    diversity_scope: Literal["class", "all"] = "class"
    contrastive: float = 300.0
    contrastive_pairs: Literal["different_class", "all"] = "different_class"
    l1_last_layer: float = 1e-4
    l1_fusion: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("pos_weight_cap", "clustering", "separation", "diversity", "contrastive",
                     "l1_last_layer", "l1_fusion"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.loss.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelConfig:
    """Three branches (keys rhythm, morphology, global), the fusion head and the losses.

    kind: "prototype" (ProtoECGNet) or "blackbox" (its twin: the same backbones and add-on layers
    with plain linear heads on the pooled latent and a dense linear fusion; prototype settings,
    losses other than BCE/L1 and the fusion head/mask are ignored).
    """

    kind: Literal["prototype", "blackbox"] = "prototype"
    branches: dict[str, BranchConfig] = field(default_factory=_default_branches)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.branches) - set(BRANCH_GROUPS))
        if unknown:
            raise ValueError(f"unknown branch(es) {unknown} in model.branches; allowed: {list(BRANCH_GROUPS)}")
        resolved = {g: self.branches.get(g, BranchConfig()).resolved(g) for g in BRANCH_GROUPS}
        object.__setattr__(self, "branches", resolved)
