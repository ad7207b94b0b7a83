"""Checkpoint prototypes (table, vectors, thumbnails) and scoring-output readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgproto.phenotype.features import prototype_class_family, prototype_family
from ecgproto.phenotype.inputs import read_checkpoint_prototypes, read_scores, thumbnail_maker
from ecgproto.phenotype.intraclass import intraclass_analysis
from tests.explain.helpers import tiny_checkpoint


def test_checkpoint_prototypes_vectors_and_thumbnail(tmp_path, ptbxl_sample) -> None:
    model, _ = tiny_checkpoint(tmp_path / "m.pt", str(ptbxl_sample), *(f"model.branches.{g}.prototypes_per_class=2" for g in ("rhythm", "morphology", "global")))
    protos = read_checkpoint_prototypes(tmp_path / "m.pt")
    table = protos.table
    assert {"index", "branch", "class_code", "ecg_id", "rf_start", "rf_end"} <= set(table.columns)
    for name, branch in model.branches.items():
        assert protos.vectors[name].shape[0] == int((table["branch"] == name).sum())
        assert protos.vectors[name].shape[0] == branch.prototype_vectors.shape[0]
    make, why = thumbnail_maker(protos, ptbxl_sample)
    assert make is not None, why
    png = make("P0000")
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"

    # prototype-class family and intra-class distances on the checkpoint's own prototypes
    rng = np.random.default_rng(0)
    P = len(table)
    sims = pd.DataFrame(rng.normal(size=(20, P)), columns=[f"sim__{j:04d}" for j in range(P)])
    fam = prototype_family(sims.assign(record_id=[str(i) for i in range(20)]), table)
    pc = prototype_class_family(fam)
    assert pc.values.shape == (20, 71)
    np.testing.assert_allclose(pc.values[:, 0], fam.values[:, (fam.info["prototype_class"] == pc.info["prototype_class"][0]).to_numpy()].max(1))
    first = fam.info.groupby(["branch", "prototype_class"]).head(1)
    hits = pd.DataFrame({"feature_id": first["feature_id"].to_numpy(), "phecode": "427.21", "score_z": 3.0})
    classes, test, pairs = intraclass_analysis(fam.info, protos.vectors, hits, n_perm=50, seed=0)
    multi = classes["n_prototypes"] > 1
    assert multi.all() and len(classes) == 71 and len(pairs) == 71
    assert (classes.loc[multi, "status"] == "mixed").all()
    assert classes.loc[multi, "mean_cosine_distance"].between(0, 2).all()


def test_read_scores_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_scores(tmp_path / "missing")
    (tmp_path / "s").mkdir()
    with pytest.raises(FileNotFoundError, match="scores.parquet"):
        read_scores(tmp_path / "s")
    pd.DataFrame({"record_id": ["1"], "status": ["ok"]}).to_parquet(tmp_path / "s" / "scores.parquet")
    pd.DataFrame({"record_id": ["1"], "sim__0000": [0.1]}).to_parquet(tmp_path / "s" / "similarities.parquet")
    with pytest.raises(ValueError, match="subject_id"):
        read_scores(tmp_path / "s")
