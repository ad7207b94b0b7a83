"""Worker for the torchrun test: trains the tiny config on every rank and saves its weights."""

import sys
from pathlib import Path

import torch

from ecgproto.train.distributed import init_distributed, shutdown_distributed
from ecgproto.train.run import train_model
from tests.train.helpers import tiny_archive, tiny_config


def main(out: Path) -> None:
    info = init_distributed("cpu")  # the CPU (gloo) test, also on a machine with GPUs
    data_dir = out / f"data{info.rank}"
    data_dir.mkdir(parents=True, exist_ok=True)
    arc = tiny_archive(data_dir)
    cfg = tiny_config("train.stages=[{name: joint, epochs: 2, lr: 0.001}, {name: projection}, "
                      "{name: last_layer, epochs: 1, lr: 0.001}]", "train.fusion_epochs=2", "device=cpu")
    outcome = train_model(cfg, arc, out / "run", dist_info=info)
    torch.save({k: v.clone() for k, v in outcome.model.state_dict().items()}, out / f"rank{info.rank}.pt")
    shutdown_distributed(info)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
