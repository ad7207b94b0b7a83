"""Window index → input samples/leads, checked by perturbing the input."""

import pytest
import torch

from ecgproto.model.backbones import Backbone, TimeGeometry
from ecgproto.model.branch import PrototypeBranch
from ecgproto.model.config import BranchConfig
from ecgproto.model.prototypes import WindowGeometry, pool_windows

N = 1000


def test_resnet18_time_geometry_matches_reference():
    geo = Backbone("resnet18_2d", 4).time_geometry(N)
    # reference notes §2.1: 1000 → 500 → 250 → 250 → 125 → 63 → 32, receptive field ≈ 435 samples
    assert (geo.length, geo.jump, geo.size) == (32, 32, 435)
    assert Backbone("resnet1d34", 4).time_geometry(500).length == 16
    with pytest.raises(ValueError, match="too short"):
        TimeGeometry.from_layers([(7, 2, 0)], 3)


def _branch(**kw) -> PrototypeBranch:
    torch.manual_seed(0)
    cfg = BranchConfig(base_width=4, prototypes_per_class=1, **kw)
    branch = PrototypeBranch("morphology", cfg, ("IMI", "ASMI"), N, 100)
    return branch.eval()


def _window(branch: PrototypeBranch, x: torch.Tensor, w: int) -> torch.Tensor:
    with torch.no_grad():
        return branch.latent_windows(branch.encode(x))[:, w]


@pytest.mark.parametrize("w", [0, 7, 29])
def test_receptive_field_is_exact(w):
    branch = _branch()
    x = torch.randn(1, 12, N)
    base = _window(branch, x, w)
    lo, hi = branch.receptive_field(w)
    assert 0 <= lo < hi <= N
    for outside in [lo - 1, hi]:
        if 0 <= outside < N:
            y = x.clone()
            y[:, :, outside] += 1e3
            assert torch.allclose(_window(branch, y, w), base, atol=1e-6, rtol=0), outside
    for inside in [lo, hi - 1]:
        changed = False
        for delta in (1e3, -1e3):
            y = x.clone()
            y[:, :, inside] += delta
            changed |= not torch.allclose(_window(branch, y, w), base, atol=1e-6, rtol=0)
        assert changed, inside
    s0, s1 = branch.window_samples(w)
    assert lo <= s0 < s1 <= hi


def test_window_samples_spans_stride_per_step():
    branch = _branch()
    s0, s1 = branch.window_samples(10)
    assert s1 - s0 == 3 * 32  # proto_time_len latent steps × stride 32
    assert branch.window_samples(11)[0] == s0 + 32
    assert branch.window_samples(0)[0] == 0 and branch.window_samples(29)[1] == N
    with pytest.raises(IndexError):
        branch.window_samples(30)


def test_lead_aware_windows_depend_only_on_their_leads():
    branch = _branch(lead_aware=True, proto_lead_len=2)
    x = torch.randn(1, 12, N)
    w = 5 * branch.window_geometry.n_time_windows + 12  # leads 5-6 (aVF, V1), time offset 12
    l0, l1 = branch.window_leads(w)
    assert (l0, l1) == (5, 7)
    base = _window(branch, x, w)
    lo, hi = branch.receptive_field(w)
    y = x.clone()
    y[:, [4, 7], :] += 5.0  # neighbouring leads, whole record
    assert torch.allclose(_window(branch, y, w), base, atol=1e-6, rtol=0)
    y = x.clone()
    y[:, 6, lo:hi] += 5.0
    assert not torch.allclose(_window(branch, y, w), base, atol=1e-6, rtol=0)
    y = x.clone()
    y[:, 5, hi:] += 1e3
    assert torch.allclose(_window(branch, y, w), base, atol=1e-6, rtol=0)


def test_global_and_1d_windows_cover_the_record():
    torch.manual_seed(0)
    rhythm = PrototypeBranch("rhythm", BranchConfig(base_width=4), ("SR", "AFIB"), N, 100)
    assert rhythm.n_windows == 1
    assert rhythm.window_samples(0) == rhythm.receptive_field(0) == (0, N)
    glob = PrototypeBranch("global", BranchConfig(base_width=4), ("DIG", "NORM", "EL"), N, 100)
    assert glob.n_windows == 1 and glob.receptive_field(0) == (0, N)


def test_window_geometry_rejects_too_long_prototypes():
    with pytest.raises(ValueError, match="proto_time_len"):
        WindowGeometry(1, 32, 1, 40)
    with pytest.raises(ValueError, match="proto_time_len"):
        PrototypeBranch("morphology", BranchConfig(base_width=4, proto_time_len=20), ("IMI",), 300, 100)


def test_pooling_rules():
    ws = torch.tensor([[[0.1, 0.9, 0.2]]])
    assert pool_windows(ws, "max").item() == pytest.approx(0.9)
    assert pool_windows(ws, "mean").item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="pooling"):
        pool_windows(ws, "median")
    mean_branch = _branch(pooling="mean")
    out = mean_branch(torch.randn(2, 12, N))
    assert torch.allclose(out.similarities, out.window_similarities.mean(-1))


def test_scaled_cosine_value():
    branch = _branch(similarity_scale=13.0)
    x = torch.randn(1, 12, N)
    with torch.no_grad():
        out = branch(x)
        win = branch.latent_windows(out.latent)[0, 4]
        p = branch.prototype_vectors[1]
    manual = 13.0 * (win @ p) / (torch.sqrt((win**2).sum() + 1e-4) * torch.sqrt((p**2).sum() + 1e-4))
    assert out.window_similarities[0, 1, 4].item() == pytest.approx(manual.item(), rel=1e-5)


@pytest.mark.parametrize("lead_aware", [False, True])
def test_prototype_set_to_a_latent_window_matches_it_best(lead_aware):
    """The window layout of latent_windows is the prototype layout (what projection relies on)."""
    kw = {"lead_aware": True, "proto_lead_len": 2} if lead_aware else {}
    branch = _branch(similarity_scale=13.0, **kw)
    x = torch.randn(2, 12, N)
    with torch.no_grad():
        windows = branch.latent_windows(branch.encode(x))
        branch.prototype_vectors[1] = windows[1, 17]
        out = branch(x)
    assert out.window_similarities[1, 1, 17].item() == pytest.approx(13.0, rel=1e-3)
    assert int(out.window_similarities[1, 1].argmax()) == 17
    assert out.similarities[1, 1].item() == pytest.approx(13.0, rel=1e-3)
