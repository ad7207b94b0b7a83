import numpy as np
import pytest
import torch

from ecgproto.data.labels import all_labels, group_labels
from ecgproto.model.inference import predict_arrays
from ecgproto.model.network import ProtoECGNet
from tests.model.helpers import FS, N_SAMPLES, tiny_config


def _model(*extra: str) -> ProtoECGNet:
    torch.manual_seed(0)
    return ProtoECGNet(tiny_config(*extra), N_SAMPLES, FS)


def test_output_shapes_every_branch_kind():
    model = _model()
    out = model(torch.randn(3, 12, N_SAMPLES))
    k = {"rhythm": 2, "morphology": 2, "global": 3}
    windows = {"rhythm": 1, "morphology": 30, "global": 1}  # T'=32, proto_time_len 3 → 30 windows
    assert out.logits.shape == (3, 71)
    total = sum(k[g] * len(group_labels(g)) for g in k)
    assert out.similarities.shape == (3, total) == (3, model.n_prototypes)
    for g, b in out.branch.items():
        branch = model.branches[g]
        p, c = k[g] * len(group_labels(g)), len(group_labels(g))
        assert b.logits.shape == (3, c)
        assert b.similarities.shape == (3, p)
        assert b.window_similarities.shape == (3, p, windows[g])
        assert branch.latent_windows(b.latent).shape == (3, windows[g], branch.window_dim)
        assert branch.prototype_vectors.shape == (p, branch.window_dim)
        assert branch.prototype_class_identity.shape == (p, c)
    assert list(model.branches) == ["rhythm", "morphology", "global"]
    assert model.branches["global"].window_dim == 32 * 32  # 8·width channels × whole latent axis


def test_lead_aware_branch_shapes():
    model = _model("model.branches.morphology.lead_aware=true", "model.branches.morphology.proto_lead_len=3")
    branch = model.branches["morphology"]
    out = model(torch.randn(2, 12, N_SAMPLES)).branch["morphology"]
    assert out.latent.shape == (2, 32, 12, 32)
    assert out.window_similarities.shape == (2, branch.n_prototypes, 10 * 30)
    assert branch.window_dim == 32 * 3 * 3
    assert branch.window_leads(0) == (0, 3)
    assert branch.window_leads(30) == (1, 4)  # lead offset first, then time offset
    assert branch.window_samples(30) == branch.window_samples(0)


def test_wrong_input_length_is_explained():
    model = _model()
    with pytest.raises(ValueError, match="1000 samples"):
        model(torch.randn(1, 12, 500))


def test_prototype_table_and_identity():
    model = _model()
    table = model.prototype_table()
    assert list(table.columns) == ["index", "branch", "local_index", "class_code"]
    assert len(table) == model.n_prototypes
    assert table["index"].tolist() == list(range(model.n_prototypes))
    first_morph = table[table.branch == "morphology"].iloc[0]
    assert first_morph.class_code == group_labels("morphology")[0] and first_morph.local_index == 0
    rhythm = model.branches["rhythm"]
    w = rhythm.last_layer.weight
    assert torch.equal(w[0, :2], torch.ones(2)) and torch.all(w[0, 2:] == -0.5)


def test_same_seed_same_init():
    a, b = _model(), _model()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    torch.manual_seed(1)
    c = ProtoECGNet(tiny_config(), N_SAMPLES, FS)
    assert not torch.equal(a.branches["rhythm"].prototype_vectors, c.branches["rhythm"].prototype_vectors)


def test_standardization_buffers():
    model = _model()
    model.eval()
    x = torch.randn(2, 12, N_SAMPLES)
    mean, std = torch.linspace(-1, 1, 12), torch.linspace(0.5, 2, 12)
    model.set_standardization(mean, std)
    ref = _model()
    ref.eval()
    expected = ref((x - mean[:, None]) / std[:, None]).logits
    assert torch.allclose(model(x).logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="12 means"):
        model.set_standardization(np.zeros(11), np.ones(12))
    with pytest.raises(ValueError, match="positive"):
        model.set_standardization(np.zeros(12), np.zeros(12))


def test_predict_arrays_matches_forward():
    model = _model()
    model.train()
    x = np.random.default_rng(0).normal(size=(5, 12, N_SAMPLES)).astype(np.float32)
    pred = predict_arrays(model, x, batch_size=2)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    assert pred.probs.shape == (5, len(all_labels()))
    np.testing.assert_allclose(pred.probs, torch.sigmoid(out.logits).numpy(), atol=1e-5)
    np.testing.assert_allclose(pred.similarities, out.similarities.numpy(), atol=1e-5)
    for g, b in out.branch.items():
        np.testing.assert_allclose(pred.branch_probs[g], torch.sigmoid(b.logits).numpy(), atol=1e-5)
        np.testing.assert_array_equal(pred.best_windows[g], b.window_similarities.argmax(-1).numpy())


def test_seeded_tiny_model_matches_stored_outputs():
    """Numeric drift guard: seed 0 tiny model, fixed input (values recorded with torch 2.13 CPU)."""
    model = _model().eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 12, N_SAMPLES)).astype(np.float32))
    with torch.no_grad():
        out = model(x)
    logits = [0.076053, 0.035947, 0.019554, -0.013488, 0.05362, 0.029989, 0.014366, -0.031919]
    sims = [0.312963, -0.002192, 0.156165, -0.137942, 0.30202, 0.005102, 0.159233, -0.080932]
    np.testing.assert_allclose(out.logits[:, [0, 4, 40, 70]].flatten().numpy(), logits, atol=1e-4)
    np.testing.assert_allclose(out.similarities[:, [0, 50, 100, 144]].flatten().numpy(), sims, atol=1e-4)


def test_branch_initialisation_independent_of_other_branches():
    """Resizing one branch leaves the other branches' initial weights unchanged."""
    base = _model().state_dict()
    wider = _model("model.branches.rhythm.base_width=8").state_dict()
    assert any(base[k].shape != wider[k].shape for k in base if k.startswith("branches.rhythm."))
    for key, value in base.items():
        if key.startswith(("branches.morphology.", "branches.global.")):
            assert torch.equal(value, wider[key]), key


def test_state_dict_round_trip_plain_tensors(tmp_path):
    model = _model("model.branches.morphology.lead_aware=true")
    model.set_standardization(torch.linspace(-1, 1, 12), torch.linspace(0.5, 2, 12))
    model.fusion.fit_normalization(torch.randn(20, model.n_prototypes) + 3)
    model.eval()
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(5)  # different initial weights: everything must come from the file
    other = ProtoECGNet(tiny_config("model.branches.morphology.lead_aware=true"), N_SAMPLES, FS)
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    x = torch.randn(2, 12, N_SAMPLES)
    with torch.no_grad():
        assert torch.equal(model(x).logits, other(x).logits)
    assert not any(k.endswith(("fusion.mask", "fusion.sign")) for k in model.state_dict())


def test_replicate_padding_changes_only_how_record_ends_are_padded():
    import torch

    from ecgproto.model.backbones import Backbone

    torch.manual_seed(0)
    zeros = Backbone("resnet1d18", 4).eval()
    torch.manual_seed(0)
    replicate = Backbone("resnet1d18", 4, padding_mode="replicate").eval()
    assert replicate.time_geometry(1000) == zeros.time_geometry(1000)  # same receptive-field arithmetic
    convs = [m for m in replicate.modules() if isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] > 1]
    assert convs and all(m.padding_mode == "replicate" for m in convs)
    x = torch.randn(2, 12, 1000) + 3.0  # an offset makes zero padding visible at the ends
    with torch.no_grad():
        a, b = zeros(x), replicate(x)
    assert a.shape == b.shape
    ends = (a - b).abs()[..., [0, -1]].mean()
    middle = (a - b).abs()[..., 10:-10].mean()
    assert ends > 10 * middle
