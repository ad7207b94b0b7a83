from pathlib import Path

import pytest
import yaml

from ecgproto.config import Config, load_config, save_resolved_config
from ecgproto.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_override():
    cfg = load_config(None, ["train.batch_size=8", "data.train_folds=[1,2]"])
    assert cfg.train.batch_size == 8
    assert cfg.data.train_folds == (1, 2)
    assert isinstance(cfg, Config)


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  branches:\n    rhythm:\n      prototypes_per_klass: 3\n")
    with pytest.raises(ConfigError, match=r"prototypes_per_klass.*model\.branches\.rhythm"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(path)
    path.write_text("data:\n  standardize: 1\n")
    with pytest.raises(ConfigError, match=r"data\.standardize"):
        load_config(path)


def test_literal_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.fusion\.head"):
        load_config(None, ["model.fusion.head=dense"])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/file.yaml")


def test_hash_stable_and_sensitive():
    a, b = load_config(None), load_config(None)
    assert a.hash == b.hash
    assert load_config(None, ["seed=1"]).hash != a.hash


def test_resolved_config_roundtrip(tmp_path):
    cfg = load_config(None, ["seed=7"])
    path = save_resolved_config(cfg, tmp_path)
    text = path.read_text()
    assert cfg.hash in text.splitlines()[0]
    again = load_config(path)
    assert again == cfg and again.hash == cfg.hash


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert yaml.safe_load((REPO / "configs" / name).read_text())
    assert cfg.hash
