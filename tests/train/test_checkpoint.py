import pytest
import torch

from ecgproto.yaml_dataclass import to_dict
from ecgproto.model import ProtoECGNet
from ecgproto.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, to_plain

from .helpers import FS, N_SAMPLES, tiny_config


def _meta(cfg):
    return {"config": to_dict(cfg), "sampling_rate": FS, "n_samples": N_SAMPLES, "thresholds": [0.5] * 71,
            "prototypes": [{"index": 0, "ecg_id": None}]}


def test_round_trip_gives_identical_outputs(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = ProtoECGNet(cfg.model, N_SAMPLES, FS)
    model.set_standardization(torch.rand(12), torch.rand(12) + 0.5)
    model.eval()
    path = save_checkpoint(tmp_path / "m.pt", model, _meta(cfg))
    raw = torch.load(path, weights_only=True)  # plain tensors + plain data only
    assert raw["meta"]["n_samples"] == N_SAMPLES
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta["thresholds"] == [0.5] * 71
    x = torch.randn(3, 12, N_SAMPLES)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.similarities, b.similarities)
    assert not list(tmp_path.glob(".*tmp*"))


def test_meta_must_be_plain_and_complete(tmp_path):
    cfg = tiny_config()
    model = ProtoECGNet(cfg.model, N_SAMPLES, FS)
    with pytest.raises(TypeError, match="meta.bad"):
        save_checkpoint(tmp_path / "m.pt", model, {**_meta(cfg), "bad": object()})
    with pytest.raises(ValueError, match="n_samples"):
        save_checkpoint(tmp_path / "m.pt", model, {"config": {}, "sampling_rate": FS})
    assert not (tmp_path / "m.pt").exists()
    assert to_plain({"a": (1, 2.0)}) == {"a": [1, 2.0]}


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        read_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not an ecgproto checkpoint"):
        read_checkpoint(other)
