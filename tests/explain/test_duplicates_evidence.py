"""Duplicate-prototype groups and the evidence window inside a receptive field."""

from __future__ import annotations

import numpy as np
import torch

from ecgproto.explain.duplicates import duplicate_groups
from ecgproto.explain.evidence import attributions, evidence_window


def _prov(index, branch, ecg_id, ws=0, we=96):
    return {"index": index, "branch": branch, "ecg_id": ecg_id, "window_start": ws, "window_end": we,
            "lead_start": 0, "lead_end": 12}


def test_groups_join_shared_source_windows_and_near_identical_vectors():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 8))
    a[3] = a[2] * 2.0 + 1e-4  # cosine ~1 with prototype 2
    b = rng.normal(size=(3, 8))
    prov = [_prov(0, "r", 5), _prov(1, "r", 5), _prov(2, "r", 6), _prov(3, "r", None),
            _prov(4, "m", 7, 0, 96), _prov(5, "m", 7, 96, 192), _prov(6, "m", None)]
    groups = duplicate_groups([a, b], prov)
    # 0 and 1 share a source window, 2 and 3 are the same vector; 4 and 5 are different windows of one ECG
    assert groups.tolist() == [0, 0, 2, 2, 4, 5, 6]


def test_evidence_window_finds_the_largest_attribution_inside_the_field():
    attr = np.zeros((12, 1000))
    attr[1, 420:450] = 1.0  # inside the field
    attr[:, 900:960] = 5.0  # larger, but outside the field
    start, end = evidence_window(attr, (200, 700), 96)
    assert end - start == 96 and start <= 420 and end >= 450 and 200 <= start and end <= 700
    # lead-aware: only the prototype's leads count
    attr2 = np.zeros((12, 1000))
    attr2[0, 300:320] = 3.0
    attr2[5, 600:620] = 1.0
    assert evidence_window(attr2, (200, 700), 50, leads=(3, 6))[0] <= 600 <= evidence_window(attr2, (200, 700), 50, leads=(3, 6))[1]


def test_attributions_are_gradient_times_input_of_the_window_similarity():
    from tests.explain.test_contributions import _model

    model = _model()
    x = np.random.default_rng(1).normal(size=(12, 1000)).astype(np.float32) * 0.3
    (attr,) = attributions(model, x, "morphology", [(0, 3)])
    t = torch.tensor(x[None], requires_grad=True)
    model.forward_branch("morphology", t).window_similarities[0, 0, 3].backward()
    np.testing.assert_allclose(attr, (t.grad[0] * t[0]).abs().detach().numpy(), rtol=1e-5, atol=1e-7)
    assert model.training is False
