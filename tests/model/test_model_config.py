import pytest

from ecgproto.config import load_config, save_resolved_config
from ecgproto.errors import ConfigError
from ecgproto.model.config import GROUP_DEFAULTS, BranchConfig


def test_partial_branch_override_keeps_group_defaults():
    cfg = load_config(None, ["model.branches.morphology.base_width=8"]).model
    morph = cfg.branches["morphology"]
    assert morph.base_width == 8 and morph.kind == "2d" and morph.proto_time_len == 3
    assert cfg.branches["rhythm"] == BranchConfig().resolved("rhythm")
    assert list(cfg.branches) == ["rhythm", "morphology", "global"]
    assert cfg.branches["global"].prototypes_per_class == GROUP_DEFAULTS["global"]["prototypes_per_class"]


def test_resolved_model_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.branches.global.lead_aware=true", "model.fusion.head=linear"])
    again = load_config(save_resolved_config(cfg, tmp_path))
    assert again.model == cfg.model


@pytest.mark.parametrize("override,message", [
    ("model.branches.rhythm.lead_aware=true", r"model\.branches\.rhythm"),
    ("model.branches.morphology.backbone=resnet1d18", r"model\.branches\.morphology.*resnet\*_2d"),
    ("model.branches.global.base_width=0", r"base_width"),
    ("model.branches.global.dropout=1.5", r"dropout"),
    ("model.loss.diversity=-1", r"model\.loss\.diversity"),
])
def test_invalid_branch_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_branch_rejected():
    with pytest.raises(ConfigError, match="unknown branch"):
        load_config(None, ["model.branches.extra.base_width=8"])
