import pytest
import torch

from ecgproto.model import ProtoECGNet
from ecgproto.train.stages import make_warmup_head, setup_stage

from .helpers import FS, N_SAMPLES, tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ProtoECGNet(tiny_config().model, N_SAMPLES, FS)


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_last_layer_stage_trains_only_the_last_layer_in_eval_mode(model):
    setup = setup_stage(model, "morphology", "last_layer")
    setup.train()
    assert _trainable(model) == {"branches.morphology.last_layer.weight"}
    assert all(not m.training for m in model.modules())  # BN/dropout of frozen modules never drift


def test_joint_stage_freezes_last_layer_and_other_branches(model):
    setup = setup_stage(model, "rhythm", "joint")
    setup.train()
    names = _trainable(model)
    assert "branches.rhythm.prototype_vectors" in names
    assert "branches.rhythm.last_layer.weight" not in names
    assert all(n.startswith("branches.rhythm.") for n in names)
    assert model.branches["rhythm"].training and not model.branches["global"].training
    assert not model.fusion.training


def test_warmup_stage_has_no_prototypes_and_needs_its_head(model):
    with pytest.raises(ValueError, match="WarmupHead"):
        setup_stage(model, "global", "warmup")
    head = make_warmup_head(model, "global", N_SAMPLES, seed=0)
    setup = setup_stage(model, "global", "warmup", head)
    names = _trainable(model)
    assert "branches.global.prototype_vectors" not in names
    assert any(n.startswith("branches.global.backbone") for n in names)
    assert all(p.requires_grad for p in head.parameters())
    assert len(setup.params) == len(names) + len(list(head.parameters()))
    with pytest.raises(ValueError, match="no trainable parameters"):
        setup_stage(model, "global", "projection")


def test_joint_stage_options_train_last_layer_or_keep_backbone_frozen(model):
    setup_stage(model, "rhythm", "joint", train_last_layer=True)
    assert "branches.rhythm.last_layer.weight" in _trainable(model)
    setup = setup_stage(model, "rhythm", "joint", train_backbone=False)
    setup.train()
    names = _trainable(model)
    assert "branches.rhythm.prototype_vectors" in names and any(".add_on." in n for n in names)
    assert not any(".backbone." in n for n in names)
    assert not model.branches["rhythm"].backbone.training  # frozen BatchNorm statistics stay put


def test_selection_auroc_ignores_labels_with_few_validation_positives():
    import numpy as np

    from ecgproto.train.stages import selection_auroc

    y = np.zeros((40, 3), dtype=np.uint8)
    y[:20, 0] = 1   # 20 positives, perfectly ranked below
    y[:2, 1] = 1    # 2 positives, ranked worst
    scores = np.zeros((40, 3))
    scores[:, 0] = -np.arange(40)
    scores[:, 1] = np.arange(40)
    assert selection_auroc(y, scores, 1) == pytest.approx(np.mean([1.0, 0.0]))  # column 2 undefined
    assert selection_auroc(y, scores, 10) == pytest.approx(1.0)
    assert selection_auroc(y[:, 1:], scores[:, 1:], 10) == pytest.approx(0.0)  # none has 10: every defined one
