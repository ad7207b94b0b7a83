import numpy as np
import pytest
import torch

from ecgproto.data.labels import label_table
from ecgproto.model import ProtoECGNet
from ecgproto.train.projection import greedy_unique, project_model

from .helpers import FS, N_SAMPLES, tiny_archive, tiny_config


def _latent_windows(model, group, x):
    with torch.no_grad():
        model.eval()
        out = model.forward_branch(group, x)
        return model.branches[group].latent_windows(out.latent), out.window_similarities


@pytest.mark.parametrize("unique", [False, True])
def test_each_prototype_becomes_a_window_of_an_eligible_training_ecg(tmp_path, unique):
    arc = tiny_archive(tmp_path)
    torch.manual_seed(0)
    model = ProtoECGNet(tiny_config().model, N_SAMPLES, FS)
    rows = np.flatnonzero(arc.index["split"] == "train")
    x = torch.from_numpy(np.asarray(arc.signals[rows]))
    before = {g: _latent_windows(model, g, x) for g in model.branches}
    result = project_model(model, arc, rows, batch_size=5, unique=unique)
    assert len(result.provenance) == model.n_prototypes
    assert [p["index"] for p in result.provenance] == list(range(model.n_prototypes))
    for p in result.provenance:
        if p["ecg_id"] is None:
            continue
        g, j = p["branch"], p["local_index"]
        branch = model.branches[g]
        windows, win_sim = before[g]
        pos = int(np.flatnonzero(rows == p["archive_row"])[0])
        assert arc.index["ecg_id"].iloc[p["archive_row"]] == p["ecg_id"]
        # source ECG carries the prototype's class
        col = list(label_table().codes).index(p["class_code"])
        assert arc.labels[p["archive_row"], col] == 1
        # the prototype now equals that ECG's latent window exactly (record run on its own)
        own, _ = _latent_windows(model, g, x[pos : pos + 1])
        assert torch.equal(branch.prototype_vectors[j], own[0, p["window"]])
        torch.testing.assert_close(branch.prototype_vectors[j], windows[pos, p["window"]], rtol=0, atol=1e-5)
        assert p["window_start"] < p["window_end"] and p["rf_start"] <= p["window_start"]
        assert p["rf_end"] >= p["window_end"]
        if not unique:  # nearest eligible window by brute force, with the model's own similarity
            c = branch.prototype_classes[j].item()
            eligible = arc.labels[rows][:, label_table().indices(g)[c]] == 1
            sims = win_sim[:, j, :].clone()
            sims[~torch.from_numpy(eligible)] = -torch.inf
            assert p["similarity"] == pytest.approx(float(sims.max()), abs=1e-6)
    if unique:
        for g in model.branches:
            ids = [p["ecg_id"] for p in result.provenance if p["branch"] == g and p["ecg_id"] is not None]
            if result.shared_fallback[g] == 0:
                assert len(ids) == len(set(ids))
            assert result.unique_ecgs[g] == len(set(ids))
    assert result.summary()["unique_source_ecgs_total"] >= 1


def test_greedy_unique_takes_pairs_by_similarity():
    sim = np.array([[0.9, 0.8], [0.95, 0.1], [0.5, -np.inf]])
    row = np.array([[1, 2], [1, 3], [2, -1]])
    choice = greedy_unique(sim, row)
    # prototype 1 takes row 1 (0.95), prototype 0 falls back to row 2, prototype 2 has nothing left
    assert choice.tolist() == [1, 0, -1]
