"""The black-box twin (model.kind: blackbox): same backbones, linear heads, trained and saved like ecgproto."""

import json

import numpy as np
import pandas as pd
import torch

from ecgproto.data.labels import label_table
from ecgproto.model import BlackBoxECGNet, ProtoECGNet, build_network
from ecgproto.model.checkpoint import load_checkpoint
from ecgproto.train.fusion import init_fusion_from_branches
from ecgproto.train.loop import plan_phases
from ecgproto.train.run import train_model
from ecgproto.train.stages import setup_stage

from .helpers import FS, N_SAMPLES, tiny_archive, tiny_config

STAGES = ("train.stages=[{name: warmup, epochs: 1, lr: 0.001}, {name: prototype_init}, "
          "{name: joint, epochs: 1, lr: 0.001}, {name: projection}, {name: last_layer, epochs: 1, lr: 0.001}]")


def test_twin_shares_the_prototype_models_initial_backbones():
    cfg = tiny_config()
    twin_cfg = tiny_config("model.kind=blackbox")
    torch.manual_seed(5)
    proto = build_network(cfg.model, N_SAMPLES, FS)
    torch.manual_seed(5)
    twin = build_network(twin_cfg.model, N_SAMPLES, FS)
    assert isinstance(proto, ProtoECGNet) and isinstance(twin, BlackBoxECGNet)
    for g in ("rhythm", "morphology", "global"):
        for part in ("backbone", "add_on"):
            a = getattr(proto.branches[g], part).state_dict()
            b = getattr(twin.branches[g], part).state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (g, part)
    assert twin.n_prototypes == 0 and twin.prototype_table().empty


def test_twin_fusion_starts_at_its_branch_heads():
    torch.manual_seed(0)
    twin = build_network(tiny_config("model.kind=blackbox").model, N_SAMPLES, FS).eval()
    x = torch.randn(6, 12, N_SAMPLES)
    with torch.no_grad():
        out = twin(x)
        assert out.similarities.shape == (6, 0)
        twin.fusion.fit_normalization(out.features)
        init_fusion_from_branches(twin)
        fused = twin(x).logits
    tab = label_table()
    for g in ("rhythm", "morphology", "global"):
        np.testing.assert_allclose(fused[:, tab.indices(g)].numpy(), out.branch[g].logits.numpy(), atol=1e-4)


def test_twin_stages_train_whole_branch_then_head():
    twin = build_network(tiny_config("model.kind=blackbox").model, N_SAMPLES, FS)
    names = lambda: {n for n, p in twin.named_parameters() if p.requires_grad}  # noqa: E731
    setup_stage(twin, "morphology", "warmup")
    assert any(".backbone." in n for n in names()) and "branches.morphology.last_layer.weight" in names()
    setup_stage(twin, "morphology", "last_layer")
    assert names() == {"branches.morphology.last_layer.weight", "branches.morphology.last_layer.bias"}


def test_twin_trains_without_prototype_stages_and_round_trips(tmp_path):
    arc = tiny_archive(tmp_path)
    cfg = tiny_config("model.kind=blackbox", STAGES)
    assert [p.name for p in plan_phases(cfg)][:3] == ["rhythm/warmup", "rhythm/joint", "rhythm/last_layer"]
    outcome = train_model(cfg, arc, tmp_path / "twin")
    log = pd.read_csv(tmp_path / "twin" / "train_log.csv")
    assert not log["stage"].isin(["projection", "prototype_init"]).any()
    model, meta = load_checkpoint(tmp_path / "twin" / "model.pt")
    assert isinstance(model, BlackBoxECGNet) and meta["model_kind"] == "blackbox"
    assert meta["prototypes"] == [] and meta["ood"] is None and len(meta["thresholds"]) == 71
    x = torch.from_numpy(np.array(arc.signals[:4]))
    with torch.no_grad():
        assert torch.equal(model(x).logits, outcome.model(x).logits)
    summary = json.loads((tmp_path / "twin" / "train_summary.json").read_text())
    assert summary["n_prototypes"] == 0 and summary["macro_auroc"]["val"]["fused"] is not None
