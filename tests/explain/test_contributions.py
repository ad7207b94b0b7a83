"""Top prototype contributions per predicted label (w·s̃ with the class-masked head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgproto.config import load_config
from ecgproto.data.labels import all_labels
from ecgproto.explain.contributions import RANK_BY_CONTRIBUTION, RANK_BY_SIMILARITY, selected_labels, top_contributions
from ecgproto.model.network import ProtoECGNet


def _model(*extra: str) -> ProtoECGNet:
    overrides = [f"model.branches.{g}.base_width=4" for g in ("rhythm", "morphology", "global")]
    overrides += ["model.branches.morphology.prototypes_per_class=4", "model.branches.rhythm.prototypes_per_class=2",
                  "model.branches.global.prototypes_per_class=2", *extra]
    torch.manual_seed(0)
    model = ProtoECGNet(load_config(None, overrides).model, 1000, 100).eval()
    with torch.no_grad():
        model.fusion.weight_raw.normal_()
        model.fusion.bias.normal_()
        model.fusion.load_normalization({g: {"mean": 0.3, "std": 2.0} for g in ("rhythm", "morphology", "global")})
    return model


def _inputs(model, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sims = torch.rand(n, model.n_prototypes, generator=g) * 4 - 1
    with torch.no_grad():
        probs = torch.sigmoid(model.fusion(sims)).numpy()
    thresholds = np.full(71, 0.5)
    thresholds[:] = np.quantile(probs, 0.9)  # a handful of labels predicted
    return sims.numpy(), probs, thresholds


def test_selected_labels_threshold_and_fallback():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]])
    rec, lab, pred = selected_labels(probs, np.array([0.5, 0.5, 0.5]), fallback=2)
    assert rec.tolist() == [0, 0, 1, 1]
    assert lab.tolist() == [0, 2, 1, 2]  # by probability within a record
    assert pred.tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="thresholds"):
        selected_labels(probs, np.array([0.5, 0.5]), fallback=1)


@pytest.mark.parametrize("head,mask", [("sign_constrained", "own_branch"), ("masked_nonneg", "own_class")])
def test_masked_head_contributions_are_exact_terms_of_the_logit(head, mask):
    model = _model(f"model.fusion.head={head}", f"model.fusion.mask={mask}")
    sims, probs, thresholds = _inputs(model)
    k = 3
    table = top_contributions(model, sims, probs, thresholds, k=k)
    assert len(table) > 0 and (table["ranking"] == RANK_BY_CONTRIBUTION).all()
    full = model.fusion.contributions(torch.as_tensor(sims)).detach().numpy()  # (N, 71, P)
    codes = all_labels()
    # every predicted label is explained, with at most k own-class prototypes in descending order
    expected = {(n, codes[c]) for n, c in zip(*np.nonzero(probs >= thresholds))}
    got = set(zip(table.loc[table["predicted"], "record_index"], table.loc[table["predicted"], "label"]))
    assert got == expected
    for (n, label), rows in table.groupby(["record_index", "label"]):
        c = codes.index(label)
        supporting = model.fusion.sign[c].numpy() > 0
        assert len(rows) == min(k, int(supporting.sum())) and rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert (rows["prototype_class"] == label).all()  # supporting = the label's own prototypes here
        assert (rows["weight"] >= 0).all()
        np.testing.assert_allclose(rows["contribution"], full[n, c, rows["prototype"]], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["contribution"], rows["weight"] * rows["normalized_similarity"], rtol=1e-5)
        np.testing.assert_allclose(rows["similarity"], sims[n, rows["prototype"]], rtol=1e-6)
        own = np.sort(full[n, c][supporting])[::-1][: len(rows)]
        np.testing.assert_allclose(rows["contribution"], own, rtol=1e-5, atol=1e-6)
        # bias + supporting + opposing terms reproduce the logit
        logit = np.log(probs[n, c] / (1 - probs[n, c]))
        first = rows.iloc[0]
        assert first["logit"] == pytest.approx(logit, rel=1e-3, abs=1e-3)
        assert first["bias"] + first["supporting_total"] + first["opposing_total"] == pytest.approx(logit, rel=1e-3, abs=1e-3)
        assert first["supporting_total"] == pytest.approx(full[n, c][supporting].sum(), rel=1e-4, abs=1e-5)
        if head == "masked_nonneg":
            assert first["opposing_total"] == 0.0


def test_record_without_predictions_gets_top_k_labels():
    model = _model()
    sims, probs, _ = _inputs(model, n=2)
    table = top_contributions(model, sims, probs, np.full(71, 1.01), k=2)
    assert not table["predicted"].any()
    for n in range(2):
        labels = table.loc[table["record_index"] == n, "label"].unique()
        assert set(labels) == {all_labels()[c] for c in np.argsort(-probs[n])[:2]}


def test_linear_head_shows_similarity_and_weight_separately():
    model = _model("model.fusion.head=linear")
    sims, probs, thresholds = _inputs(model)
    table = top_contributions(model, sims, probs, thresholds, k=2)
    assert len(table) and (table["ranking"] == RANK_BY_SIMILARITY).all()
    assert table["contribution"].isna().all() and table["weight"].notna().all() and table["logit"].isna().all()
    for _, rows in table.groupby(["record_index", "label"]):
        assert (rows["prototype_class"] == rows["label"]).all()
        assert rows["similarity"].is_monotonic_decreasing


def test_argument_errors():
    model = _model()
    sims, probs, thresholds = _inputs(model)
    with pytest.raises(ValueError, match="similarities"):
        top_contributions(model, sims[:, :5], probs, thresholds)
    with pytest.raises(ValueError, match="k must"):
        top_contributions(model, sims, probs, thresholds, k=0)


def test_duplicate_prototypes_are_ranked_as_one_with_their_summed_contribution():
    model = _model()
    sims, probs, thresholds = _inputs(model)
    plain = top_contributions(model, sims, probs, thresholds, k=2)
    row = plain.iloc[0]
    first, second = int(row["prototype"]), int(plain.iloc[1]["prototype"])
    assert plain.iloc[1]["label"] == row["label"] and plain.iloc[1]["record_index"] == row["record_index"]
    groups = np.arange(model.n_prototypes)
    groups[second] = groups[first] = min(first, second)  # the two best are duplicates
    merged = top_contributions(model, sims, probs, thresholds, k=2, groups=groups)
    top = merged[(merged["record_index"] == row["record_index"]) & (merged["label"] == row["label"])]
    assert int(top.iloc[0]["prototype"]) == first and set(top.iloc[0]["members"]) == {first, second}
    assert top.iloc[0]["contribution"] == pytest.approx(row["contribution"] + plain.iloc[1]["contribution"], rel=1e-5)
    assert second not in set(top["prototype"])  # never shown twice
    # the logit decomposition is unchanged by the grouping
    assert np.allclose(merged["bias"] + merged["supporting_total"] + merged["opposing_total"], merged["logit"], atol=1e-4)


def test_untrained_labels_are_not_fallback_explanations():
    probs = np.array([[0.9, 0.2, 0.6]])
    rec, lab, pred = selected_labels(probs, np.array([1.01, 1.01, 1.01]), fallback=2, untrained=np.array([True, False, False]))
    assert lab.tolist() == [2, 1] and not pred.any()
