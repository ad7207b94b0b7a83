"""Golden numbers of a tiny seeded model: the forward pass of the untrained network and a short
seeded training run, compared with ``golden_tiny_model.json`` (stored) within a tolerance.

A change of architecture, initialisation, losses, stages or selection that moves these numbers
makes the test fail. When the change is intended, regenerate the file and commit it with the change:

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.model.test_golden --update
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).with_name("golden_tiny_model.json")
ATOL = 1e-4  # float32 CPU arithmetic; the stored values have 6 significant digits


def _round(values: Any) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 6).tolist()


def forward_numbers() -> dict[str, Any]:
    """Seeded untrained tiny network on seeded input: fused probabilities and branch similarities."""
    from ecgproto.model import build_network

    from ..train.helpers import N_SAMPLES, FS, tiny_config

    cfg = tiny_config()
    torch.manual_seed(cfg.seed)
    model = build_network(cfg.model, n_samples=N_SAMPLES, fs=FS).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0.0, 0.3, (3, 12, N_SAMPLES)).astype(np.float32))
    with torch.no_grad():
        out = model(x)
    return {
        "probs": _round(torch.sigmoid(out.logits)[:, :12]),
        "features": _round(out.features[:, :16]),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }


def training_numbers() -> dict[str, Any]:
    """A seeded run of every stage on the in-memory tiny archive: the validation metric of each
    logged epoch, the test-fold macro AUROCs and a few probabilities of the trained model."""
    from ecgproto.train.run import train_model

    from ..train.helpers import tiny_archive, tiny_config

    with tempfile.TemporaryDirectory() as tmp:
        archive = tiny_archive(Path(tmp))
        outcome = train_model(tiny_config(), archive, Path(tmp) / "run")
        log = [(row["phase"], int(row["epoch"]), row["val_macro_auroc"]) for row in _log_rows(Path(tmp) / "run")]
        x = torch.from_numpy(np.array(archive.signals[-4:], dtype=np.float32))
        with torch.no_grad():
            probs = torch.sigmoid(outcome.model(x).logits)[:, :12]
    return {
        "log": [[p, e, round(float(v), 6)] for p, e, v in log],
        "test_macro_auroc": {k: None if v is None else round(v, 6)
                             for k, v in outcome.summary["macro_auroc"]["test"].items()},
        "probs": _round(probs),
    }


def _log_rows(run: Path) -> list[dict[str, Any]]:
    import pandas as pd

    return pd.read_csv(run / "train_log.csv").to_dict("records")


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    assert GOLDEN.is_file(), f"{GOLDEN} missing: run `python -m tests.model.test_golden --update`"
    return json.loads(GOLDEN.read_text())


def test_forward_pass_matches_the_golden_numbers(golden):
    now = forward_numbers()
    assert now["n_parameters"] == golden["forward"]["n_parameters"]
    np.testing.assert_allclose(now["probs"], golden["forward"]["probs"], atol=ATOL)
    np.testing.assert_allclose(now["features"], golden["forward"]["features"], atol=ATOL)


def test_seeded_training_matches_the_golden_numbers(golden):
    now, then = training_numbers(), golden["training"]
    assert [r[:2] for r in now["log"]] == [r[:2] for r in then["log"]], "phases/epochs of the run changed"
    np.testing.assert_allclose([r[2] for r in now["log"]], [r[2] for r in then["log"]], atol=ATOL)
    assert now["test_macro_auroc"].keys() == then["test_macro_auroc"].keys()
    for k, v in then["test_macro_auroc"].items():
        assert now["test_macro_auroc"][k] == pytest.approx(v, abs=ATOL), k
    np.testing.assert_allclose(now["probs"], then["probs"], atol=ATOL)


def test_the_comparison_fails_on_a_changed_number(golden):
    """The tolerance is tight enough to notice a change in the fourth decimal."""
    changed = np.asarray(golden["forward"]["probs"]) + 5 * ATOL
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(changed, golden["forward"]["probs"], atol=ATOL)


if __name__ == "__main__":
    if "--update" not in sys.argv:
        sys.exit("usage: python -m tests.model.test_golden --update   (rewrites golden_tiny_model.json)")
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({"forward": forward_numbers(), "training": training_numbers()}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
