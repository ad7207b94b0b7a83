import copy

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


def _model(*overrides: str) -> ProtoECGNet:
    torch.manual_seed(0)
    return ProtoECGNet(tiny_config(*overrides).model, N_SAMPLES, FS)


def _competing_model() -> ProtoECGNet:
    """4 morphology prototypes per class, each near its class's first one: they rank the class's ECGs
    alike, so under ``unique`` most of them must take a later candidate."""
    model = _model("model.branches.morphology.prototypes_per_class=4")
    with torch.no_grad():
        vectors = model.branches["morphology"].prototype_vectors
        first = vectors[::4].repeat_interleave(4, dim=0)
        vectors.copy_(first + 0.01 * torch.randn(vectors.shape, generator=torch.Generator().manual_seed(1)))
    return model


def _batched_windows(model, group, x, batch_size):
    """Latent windows and window similarities of x, forwarded in the batches projection uses."""
    parts = [_latent_windows(model, group, x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _two_pass_reference(model, group, arc, rows, batch_size, unique):
    """The former algorithm, written out independently: all candidates of the batched forward sorted
    by (-similarity, row), best or greedy-unique choice, then one forward per chosen ECG (batch of one).
    Returns (rows (P,), windows (P,), vectors (P, D)); -1 / the old vector for prototypes without one."""
    branch = model.branches[group]
    x = torch.from_numpy(np.asarray(arc.signals[rows]))
    _, win_sim = _batched_windows(model, group, x, batch_size)
    sim, win = (t.numpy() for t in win_sim.max(dim=2))  # (N, P)
    labels = arc.labels[rows][:, label_table().indices(group)].astype(np.float32)
    eligible = labels @ branch.prototype_class_identity.numpy().T > 0
    sim = np.where(eligible, sim, -np.inf).T  # (P, N)
    k = min(branch.n_prototypes, len(rows)) if unique else 1
    order = np.stack([np.lexsort((rows, -s)) for s in sim])[:, :k]  # best first, ties by smaller row
    cand_sim = np.take_along_axis(sim, order, 1)
    cand_row, cand_win = rows[order], np.take_along_axis(win.T, order, 1)
    has = np.isfinite(cand_sim[:, 0])
    choice = greedy_unique(cand_sim, cand_row) if unique else np.where(has, 0, -1)
    choice[(choice < 0) & has] = 0
    idx = np.arange(branch.n_prototypes)
    placed = choice >= 0
    src_row = np.where(placed, cand_row[idx, np.maximum(choice, 0)], -1)
    src_win = np.where(placed, cand_win[idx, np.maximum(choice, 0)], -1)
    vectors = branch.prototype_vectors.detach().clone()
    for j in np.flatnonzero(placed):
        own, _ = _latent_windows(model, group, torch.from_numpy(np.asarray(arc.signals[[src_row[j]]])))
        vectors[j] = own[0, src_win[j]]
    return src_row, src_win, vectors


@pytest.mark.parametrize("unique", [False, True])
def test_each_prototype_becomes_a_window_of_an_eligible_training_ecg(tmp_path, unique):
    arc = tiny_archive(tmp_path)
    model = _model()
    rows = np.flatnonzero(arc.index["split"] == "train")
    x = torch.from_numpy(np.asarray(arc.signals[rows]))
    before = {g: _batched_windows(model, g, x, 5) for g in model.branches}
    result = project_model(model, arc, rows, batch_size=5, unique=unique)
    assert len(result.provenance) == model.n_prototypes
    assert [p["index"] for p in result.provenance] == list(range(model.n_prototypes))
    assert result.reforwarded == {g: 0 for g in model.branches}  # tiny model: every candidate vector kept
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
        # the prototype is exactly the window of the projection's own (batched) forward whose similarity
        # the provenance records, and equals that ECG's latent window run on its own to float rounding
        assert torch.equal(branch.prototype_vectors[j], windows[pos, p["window"]])
        own, _ = _latent_windows(model, g, x[pos : pos + 1])
        torch.testing.assert_close(branch.prototype_vectors[j], own[0, p["window"]], rtol=0, atol=1e-5)
        assert p["similarity"] == float(win_sim[pos, j, p["window"]])
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


def _budget(model, name: str) -> int:
    m = model.branches["morphology"]
    return {"default": 256 * 2**20, "one_column": m.n_prototypes * m.window_dim * 4, "none": 0}[name]


@pytest.mark.parametrize("batch_size", [5, 1])
@pytest.mark.parametrize("budget", ["default", "one_column", "none"])
@pytest.mark.parametrize("unique", [False, True])
def test_single_pass_equals_the_two_pass_projection(tmp_path, unique, budget, batch_size):
    arc = tiny_archive(tmp_path, n=50)
    model = _competing_model()
    rows = np.flatnonzero(arc.index["split"] == "train")
    reference = {g: _two_pass_reference(model, g, arc, rows, batch_size, unique) for g in model.branches}
    projected = copy.deepcopy(model)
    result = project_model(projected, arc, rows, batch_size=batch_size, unique=unique,
                           window_budget_bytes=_budget(model, budget))
    for g, (ref_row, ref_win, ref_vec) in reference.items():
        prov = [p for p in result.provenance if p["branch"] == g]
        got_row = np.array([-1 if p["archive_row"] is None else p["archive_row"] for p in prov])
        got_win = np.array([-1 if p["window"] is None else p["window"] for p in prov])
        np.testing.assert_array_equal(got_row, ref_row)
        np.testing.assert_array_equal(got_win, ref_win)
        torch.testing.assert_close(projected.branches[g].prototype_vectors.detach(), ref_vec, rtol=0, atol=1e-5)
    n_placed = {g: int((reference[g][0] >= 0).sum()) for g in model.branches}
    if budget == "none":
        assert result.reforwarded == n_placed
    elif budget == "one_column" and unique:
        # 4 prototypes per class share each class's ECGs: some choices fall beyond the one kept column
        assert 0 < result.reforwarded["morphology"] < n_placed["morphology"]
    else:
        assert result.reforwarded["morphology"] == 0


@pytest.mark.parametrize("unique", [False, True])
def test_recorded_similarity_is_the_prototype_to_its_own_source_window(tmp_path, unique):
    """Provenance ``similarity`` = the pre-projection prototype vs its source window (fresh batch of one),
    and after projection the prototype is that window: its similarity to it is the self-similarity."""
    arc = tiny_archive(tmp_path)
    model = _competing_model()
    old = {g: b.prototype_vectors.detach().clone() for g, b in model.branches.items()}
    rows = np.flatnonzero(arc.index["split"] == "train")
    result = project_model(model, arc, rows, batch_size=7, unique=unique,
                           window_budget_bytes=_budget(model, "one_column"))
    projected = {g: b.prototype_vectors.detach().clone() for g, b in model.branches.items()}
    checked = 0
    for p in result.provenance:
        if p["ecg_id"] is None:
            continue
        g, j, w = p["branch"], p["local_index"], p["window"]
        branch = model.branches[g]
        own, _ = _latent_windows(model, g, torch.from_numpy(np.asarray(arc.signals[[p["archive_row"]]])))
        with torch.no_grad():
            branch.prototype_vectors.data.copy_(old[g])
            before = branch.window_similarities(own)[0, j, w].item()
            branch.prototype_vectors.data.copy_(projected[g])
            after = branch.window_similarities(own)[0, j, w].item()
            self_sim = branch.window_similarities(projected[g][j].reshape(1, 1, -1))[0, j, 0].item()
        assert p["similarity"] == pytest.approx(before, abs=1e-5)
        assert after == pytest.approx(self_sim, abs=1e-5)
        checked += 1
    assert checked > 0


def test_greedy_unique_takes_pairs_by_similarity():
    sim = np.array([[0.9, 0.8], [0.95, 0.1], [0.5, -np.inf]])
    row = np.array([[1, 2], [1, 3], [2, -1]])
    choice = greedy_unique(sim, row)
    # prototype 1 takes row 1 (0.95), prototype 0 falls back to row 2, prototype 2 has nothing left
    assert choice.tolist() == [1, 0, -1]
