"""The resolved ecgproto configuration: one frozen dataclass per pipeline stage.

``load_config`` reads a YAML file under ``configs/``, applies ``--set key=value``
overrides and returns a :class:`Config`; ``save_resolved_config`` writes the
resolved config (with its sha256 hash) next to an output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecgproto.atomic import write_text_atomic
from ecgproto.device import check_device_name
from ecgproto.errors import ConfigError
from ecgproto.yaml_dataclass import (
    check_key_path,
    config_hash,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    to_dict,
)
from ecgproto.data.config import DataConfig
from ecgproto.synth.config import SynthConfig
from ecgproto.evaluate.config import EvaluateConfig
from ecgproto.model.config import ModelConfig
from ecgproto.phenotype.config import PhenotypeConfig
from ecgproto.score.config import ScoreConfig
from ecgproto.train.config import TrainConfig

__all__ = ["Config", "ConfigError", "load_config", "save_resolved_config", "config_hash"]

RESOLVED_CONFIG_NAME = "config.resolved.yaml"


@dataclass(frozen=True)
class Config:
    """Everything a run needs; sections mirror the pipeline."""

    seed: int = 42
    # torch device of train, project, evaluate, score and explain (their --device overrides it):
    # auto (CUDA when available, else CPU), cpu, cuda, cuda:N, mps; see ecgproto/device.py
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    phenotype: PhenotypeConfig = field(default_factory=PhenotypeConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", check_device_name(self.device))

    @property
    def hash(self) -> str:
        return config_hash(self)


def config_from_mapping(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a plain mapping (missing keys take defaults)."""
    return from_dict(Config, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (YAML; None = defaults only) and apply ``key.path=value`` overrides.

    An error names its source: the YAML file, or the ``--set`` override (with the closest key
    when the key does not exist).
    """
    data = read_yaml(path) if path is not None else {}
    try:
        config_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    extra = parse_overrides(overrides)
    for item in overrides or []:
        try:
            check_key_path(Config, item.split("=", 1)[0].strip())
        except ConfigError as exc:
            raise ConfigError(f"--set {item}: {exc}") from exc
    try:
        return config_from_mapping(deep_merge(data, extra))
    except ConfigError as exc:
        raise ConfigError(f"{' '.join(f'--set {o}' for o in overrides or [])}: {exc}") from exc


def config_to_yaml(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_resolved_config(cfg: Config, out_dir: str | Path) -> Path:
    """Write ``config.resolved.yaml`` (with the config hash as a comment) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out_dir / RESOLVED_CONFIG_NAME, f"# config sha256: {cfg.hash}\n" + config_to_yaml(cfg))


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported for convenience."""
    return dataclasses.replace(cfg, **changes)
