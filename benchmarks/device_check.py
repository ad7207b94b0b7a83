"""Device check: GPU against CPU in one run (run it through ``benchmarks/device_check.sh``).

Sections, each written to the JSON as soon as it is done (a section that fails records its error
and the others still run; one that would overrun ``--budget-s`` is skipped and says so):

- ``train_steps``: training steps/s of each default-size branch (``configs/default.yaml``,
  15.07 M parameters, 1,037 prototypes) in the joint stage: forward, ``BranchLoss``, backward and
  Adam on a fixed device-resident batch of ``train.batch_size`` (32) records, through
  ``ecgproto.train.stages.train_step`` (what the training loop runs), no data loading; CPU fp32 and,
  with CUDA, GPU fp32 and bf16 (``train.precision``). Also each branch's evaluation forward pass
  (records/s at ``train.eval_batch_size``, no grad, fp32) and peak GPU memory.
- ``real_data_training``: ``ecgproto train`` (the CLI, ``--device``) of ``configs/default.yaml``
  on the PTB-XL folder ``--data`` (``../shared/data/ptbxl-dev``; a synthetic archive when none is
  found, labelled as such) with a short schedule (joint 1 epoch, projection, last layer 1 epoch,
  fusion 10 epochs); seconds per phase and validation macro AUROC. ``--quick`` trains at
  ``base_width`` 8 instead of the default 64.
- ``agreement``: fused probabilities of GPU vs CPU on the same records (the trained checkpoint of
  the previous section when there is one), largest absolute difference with torch's default TF32
  settings and with TF32 off.
- ``scoring``: ``ecgproto score`` end to end (WFDB files → Parquet + CSV, a manifest repeating the
  data's records) records/s on the GPU (workers read, the GPU scores) and on the CPU (workers score),
  in the same run; the bare forward pass on device-resident tensors for the ratio; peak GPU memory.
- ``estimate``: the full default PTB-XL schedule (17,418 training / 2,183 validation / 2,198 test
  records; every configured epoch: joint 200 + last layer 20 per branch, no early stopping: an
  upper bound) from the measured steps/s and eval records/s; plus the same estimator applied to the
  short real-data run against its measured time.

Targets (issue 13, one H200-class GPU): full default schedule ≤ 1 h; scoring ≥ 5,000 ECG/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ECGPROTO_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ecgproto.atomic import write_json_atomic  # noqa: E402
from ecgproto.config import load_config  # noqa: E402

FULL_PTBXL = {"train": 17418, "val": 2183, "test": 2198}  # PTB-XL v1.0.3, folds 1-8 / 9 / 10
TARGETS = {"full_default_schedule_h": 1.0, "scoring_records_per_s": 5000}
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): GPU part skipped"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: fewer steps and records, real-data training at base_width 8")
    p.add_argument("--data", default=None, help="PTB-XL folder (default: shared/data/ptbxl-dev in the repo, "
                                                "else ../shared/data/ptbxl-dev, else a synthetic archive)")
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "device_check.json"))
    p.add_argument("--budget-s", type=float, default=450.0, help="stop starting sections after this (default 450)")
    p.add_argument("--cpu-threads", type=int, default=0,
                   help="torch threads of the CPU measurements (0 = OMP_NUM_THREADS, else all cores)")
    p.add_argument("--score-records", type=int, default=0, help="records scored on the GPU (0 = 20,000; quick 64)")
    p.add_argument("--make-subset", nargs=2, metavar=("N", "DEST"), default=None,
                   help="only copy the first N records (100 Hz files) of --data into DEST (a PTB-XL folder small "
                        "enough to travel with the repo, e.g. shared/data/ptbxl-dev) and exit")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- helpers
class Run:
    """Shared state of the sections: devices, budget, data, the trained checkpoint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.cuda = torch.cuda.is_available()
        self.gpu = torch.device("cuda", 0) if self.cuda else None
        env_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.cpu_threads = args.cpu_threads or env_threads or (os.cpu_count() or 1)
        self.tmp = Path(tempfile.mkdtemp(prefix="device_check_"))
        self.data, self.data_kind = find_data(args.data, self.tmp)
        self.checkpoint: Path | None = None

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.t0)


def find_data(given: str | None, tmp: Path) -> tuple[Path, str]:
    """The PTB-XL folder to use and what it is ("real PTB-XL" or "synthetic")."""
    candidates = [Path(given)] if given else [REPO / "shared" / "data" / "ptbxl-dev", REPO.parent / "shared" / "data" / "ptbxl-dev"]
    for c in candidates:
        if (c / "ptbxl_database.csv").is_file():
            return c, "real PTB-XL"
    if given:
        raise SystemExit(f"--data {given}: no ptbxl_database.csv there")
    from ecgproto.synth import write_synthetic_archive
    from ecgproto.synth.config import SynthConfig

    out = tmp / "synth"
    write_synthetic_archive(out, SynthConfig(n_records=1500, n_mimic_subjects=0, seed=1))
    return out / "ptbxl", "synthetic (no real PTB-XL folder found)"


def make_subset(src: Path, n: int, dst: Path) -> None:
    """Copy the first ``n`` records (100 Hz files) of the PTB-XL folder ``src`` to ``dst``."""
    import pandas as pd

    db = pd.read_csv(src / "ptbxl_database.csv").head(n)
    dst.mkdir(parents=True, exist_ok=True)
    db.to_csv(dst / "ptbxl_database.csv", index=False)
    for extra in ("scp_statements.csv",):
        if (src / extra).is_file():
            shutil.copy(src / extra, dst / extra)
    for name in db["filename_lr"]:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            shutil.copy(src / (name + ext), dst / (name + ext))
    print(f"copied {len(db)} records ({db['strat_fold'].value_counts().sort_index().to_dict()} per fold) to {dst}")


def environment(run: Run) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    env = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": run.cuda,
           "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "cpu_threads_used": run.cpu_threads, "load_average": list(os.getloadavg()), "git_commit": commit,
           "data": str(run.data), "data_kind": run.data_kind, "quick": run.args.quick}
    if run.cuda:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                      "cudnn": torch.backends.cudnn.version()}
    else:
        env["gpu"] = NO_CUDA
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def random_labels(n: int, seed: int = 0) -> np.ndarray:
    """(n, 71) uint8 with one to three positives per branch group (for pos_weight and co-occurrence)."""
    from ecgproto.data.labels import label_table

    rng = np.random.default_rng(seed)
    y = np.zeros((n, 71), np.uint8)
    for g in ("rhythm", "morphology", "global"):
        cols = np.asarray(label_table().indices(g))
        for i in range(n):
            y[i, rng.choice(cols, size=min(len(cols), int(rng.integers(1, 4))), replace=False)] = 1
    return y


# ---------------------------------------------------------------------------------- sections
def train_steps(run: Run) -> dict[str, Any]:
    """Joint-stage training steps/s and eval records/s of each default-size branch per device/precision."""
    from ecgproto.model import build_network

    cfg = load_config(REPO / "configs" / "default.yaml")
    bs, eval_bs = cfg.train.batch_size, cfg.train.eval_batch_size
    torch.manual_seed(0)
    model = build_network(cfg.model, n_samples=1000, fs=100)
    labels = random_labels(256)
    rng = np.random.default_rng(0)
    x_host = torch.from_numpy(rng.normal(0, 0.3, (eval_bs, 12, 1000)).astype(np.float32))
    combos = [(torch.device("cpu"), "fp32")]
    combos += [(run.gpu, "fp32"), (run.gpu, "bf16")] if run.cuda else []
    out: dict[str, Any] = {"definition": "steps/s of the joint stage's train_step on a fixed device-resident batch "
                                         f"of {bs} (forward, BranchLoss, backward, Adam; no data loading); eval: "
                                         f"records/s of the branch forward pass at batch {eval_bs} (CPU: 64), "
                                         "no grad, fp32 in every row (validation, projection and features run "
                                         "in fp32 whatever train.precision)",
                           "model": {"config": "configs/default.yaml",
                                     "parameters": int(sum(p.numel() for p in model.parameters())),
                                     "prototypes": int(model.n_prototypes)},
                           "results": []}
    if not run.cuda:
        out["gpu"] = NO_CUDA
    torch.set_num_threads(run.cpu_threads)
    if run.cuda:
        torch.backends.cudnn.benchmark = True  # as `ecgproto train` sets on a GPU
    for device, precision in combos:
        on_gpu = device.type == "cuda"
        warm, timed = (5, 30) if on_gpu else (1, 2 if run.args.quick else 3)
        model.to(device)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        for group in model.branches:
            try:
                row = _measure_branch(model, group, cfg, labels, x_host, device, precision, warm, timed)
                print(f"train step {group:<10} {device} {precision}: {row['steps_per_s']:8.2f} steps/s, eval "
                      f"{row['eval_records_per_s']:9.1f} rec/s", flush=True)
            except Exception as exc:  # e.g. an op without a bf16 kernel: keep the other rows
                traceback.print_exc()
                row = {"device": str(device), "precision": precision, "branch": group,
                       "error": f"{type(exc).__name__}: {exc}"}
            out["results"].append(row)
        model.to("cpu")
    if run.cuda:
        torch.cuda.empty_cache()
    rates = {(r["device"], r["precision"], r["branch"]): r["steps_per_s"] for r in out["results"] if "steps_per_s" in r}

    def ratio(a: tuple, b: tuple, digits: int) -> float | None:
        return round(rates[a] / rates[b], digits) if a in rates and b in rates else None

    if run.cuda:
        gpu = str(run.gpu)
        out["speedup_vs_cpu"] = {f"{prec}/{g}": ratio((gpu, prec, g), ("cpu", "fp32", g), 1)
                                 for prec in ("fp32", "bf16") for g in model.branches}
        out["bf16_vs_fp32"] = {g: ratio((gpu, "bf16", g), (gpu, "fp32", g), 2) for g in model.branches}
    return out


def _measure_branch(model: torch.nn.Module, group: str, cfg: Any, labels: np.ndarray, x_host: torch.Tensor,
                    device: torch.device, precision: str, warm: int, timed: int) -> dict[str, Any]:
    """Steps/s of branch ``group``'s joint-stage train_step and its fp32 eval records/s on ``device``."""
    from ecgproto.train.branch_forward import BranchRunner, branch_forward, eval_mode
    from ecgproto.train.criterion import build_branch_criterion
    from ecgproto.train.stages import make_grad_scaler, setup_stage, train_step

    on_gpu = device.type == "cuda"
    bs = cfg.train.batch_size
    setup = setup_stage(model, group, "joint")
    criterion = build_branch_criterion(model, group, labels, cfg.model.loss).to(device)
    runner = BranchRunner(model, group)
    optimizer = torch.optim.Adam(setup.params, lr=1e-4, weight_decay=cfg.train.weight_decay)
    scaler = make_grad_scaler(precision, device)
    x = x_host[:bs].to(device)
    y = torch.from_numpy(labels[:bs][:, _cols(group)].astype(np.float32)).to(device)
    setup.train()
    for _ in range(warm):
        train_step(setup, model, runner, criterion, optimizer, x, y, precision, scaler)
    sync(device)
    t = time.perf_counter()
    for _ in range(timed):
        train_step(setup, model, runner, criterion, optimizer, x, y, precision, scaler)
    sync(device)
    step_s = (time.perf_counter() - t) / timed
    xe = x_host.to(device) if on_gpu else x_host[:64]
    with torch.no_grad(), eval_mode(model):  # validation, projection and features run in fp32
        for _ in range(2 if on_gpu else 0):
            branch_forward(model, group, xe)
        sync(device)
        t = time.perf_counter()
        reps = 5 if on_gpu else 1
        for _ in range(reps):
            branch_forward(model, group, xe).logits.float()
        sync(device)
        eval_rps = reps * len(xe) / (time.perf_counter() - t)
    return {"device": str(device), "precision": precision, "branch": group, "steps_per_s": round(1 / step_s, 3),
            "eval_records_per_s": round(eval_rps, 1), "timed_steps": timed, "peak_gpu_gib": peak_gib(device)}


def _cols(group: str) -> list[int]:
    from ecgproto.data.labels import label_table

    return list(label_table().indices(group))


def real_data_training(run: Run) -> dict[str, Any]:
    """A short ``ecgproto train`` at default size (quick: width 8) on the data folder, on the GPU if any."""
    import pandas as pd

    from ecgproto.cli import main

    device = "cuda" if run.cuda else "cpu"
    out = run.tmp / "train"
    sets = ["train.stages=[{name: joint, epochs: 1, lr: 0.0001}, {name: projection}, "
            "{name: last_layer, epochs: 1, lr: 0.0001}]", "train.fusion_epochs=10",
            f"data.cache_dir={run.tmp / 'cache'}", f"data.num_workers={min(8, os.cpu_count() or 1)}",
            f"train.threads={run.cpu_threads}"]
    if run.cuda:
        sets += [f"train.num_workers={min(4, os.cpu_count() or 1)}"]
    if run.args.quick:
        sets += [f"model.branches.{g}.base_width=8" for g in ("rhythm", "morphology", "global")]
    argv = ["train", "--config", str(REPO / "configs" / "default.yaml"), "--data", str(run.data), "--out", str(out),
            "--device", device]
    for s in sets:
        argv += ["--set", s]
    t = time.perf_counter()
    if run.cuda:
        torch.cuda.reset_peak_memory_stats(run.gpu)
    rc = main(argv)
    wall = time.perf_counter() - t
    if rc != 0:
        return {"error": f"ecgproto train exited {rc}", "argv": argv}
    summary = json.loads((out / "train_summary.json").read_text())
    log = pd.read_csv(out / "train_log.csv")
    per_phase = log.groupby("phase", sort=False)["seconds"].sum().round(2).to_dict()
    run.checkpoint = out / "model.pt"
    return {"device": device, "data": run.data_kind, "model": "configs/default.yaml"
            + (" at base_width 8 (--quick)" if run.args.quick else " (default size)"),
            "schedule": "joint 1 epoch, projection, last layer 1 epoch, fusion 10 epochs", "n_records": summary["n_records"],
            "wall_s": round(wall, 1), "seconds_training_total": summary["seconds_training_total"],
            "seconds_per_phase": per_phase, "val_macro_auroc": summary["macro_auroc"]["val"],
            "peak_gpu_gib": peak_gib(run.gpu) if run.cuda else None, "argv": argv[1:]}


def _checkpoint(run: Run) -> tuple[torch.nn.Module, dict, Path]:
    """The trained checkpoint of the real-data section, else an untrained default-size one."""
    from ecgproto.model.checkpoint import load_checkpoint, save_checkpoint
    from ecgproto.yaml_dataclass import to_dict

    if run.checkpoint is None:
        from ecgproto.data.labels import all_labels
        from ecgproto.model import build_network

        cfg = load_config(REPO / "configs" / "default.yaml")
        torch.manual_seed(0)
        model = build_network(cfg.model, n_samples=1000, fs=100).eval()
        meta = {"config": to_dict(cfg), "labels": list(all_labels()), "sampling_rate": 100, "n_samples": 1000,
                "highpass": {"cutoff_hz": 0.5, "order": 1, "edge": "reflect"}, "standardization": None,
                "thresholds": [0.5] * 71}
        run.checkpoint = save_checkpoint(run.tmp / "untrained.pt", model, meta)
    model, meta = load_checkpoint(run.checkpoint)
    return model, meta, run.checkpoint


def _describe(path: Path, model: torch.nn.Module) -> str:
    which = "trained in real_data_training" if path.parent.name == "train" else "untrained, configs/default.yaml"
    return f"{which}: {sum(p.numel() for p in model.parameters()):,} parameters, {model.n_prototypes} prototypes"


def _records(run: Run, n: int) -> list[str]:
    import pandas as pd

    db = pd.read_csv(run.data / "ptbxl_database.csv")
    paths = [str(run.data / f) for f in db["filename_lr"]]
    return [paths[i % len(paths)] for i in range(n)]


def agreement(run: Run) -> dict[str, Any]:
    """Largest |p_GPU - p_CPU| of the fused probabilities on 16 records (TF32 default and off)."""
    if not run.cuda:
        return {"skipped": NO_CUDA}
    from ecgproto.model.inference import predict_arrays
    from ecgproto.data.preprocess import Preprocessing
    from ecgproto.score.worker import read_batch

    model, meta, path = _checkpoint(run)
    signals = read_batch(_records(run, 16), Preprocessing.from_meta(meta)).signals
    torch.set_num_threads(run.cpu_threads)
    cpu = predict_arrays(model, signals, batch_size=16, device="cpu")
    res: dict[str, Any] = {"checkpoint": _describe(path, model), "n_records": int(len(signals))}
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for name, tf32 in (("tf32_default", saved), ("tf32_off", (False, False))):
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
            gpu = predict_arrays(model, signals, batch_size=16, device=run.gpu)
            res[name] = {"max_abs_prob_diff": float(np.abs(gpu.probs - cpu.probs).max()),
                         "max_abs_similarity_diff": float(np.abs(gpu.similarities - cpu.similarities).max())}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    res["tolerance"] = {"tf32_off": 1e-4, "tf32_default": 1e-2}
    res["pass"] = bool(res["tf32_off"]["max_abs_prob_diff"] <= 1e-4 and res["tf32_default"]["max_abs_prob_diff"] <= 1e-2)
    return res


def scoring(run: Run) -> dict[str, Any]:
    """``score_archive`` records/s on the GPU and the CPU in this run, and the bare forward pass."""
    import pandas as pd

    from ecgproto.score.scorer import ScoreOptions, score_archive

    model, meta, path = _checkpoint(run)
    cores = os.cpu_count() or 1
    res: dict[str, Any] = {"checkpoint": _describe(path, model), "ood_features": meta.get("ood") is not None,
                           "definition": "records_per_s of the run's summary.json (WFDB files -> scores.parquet + "
                                         "scores.csv, chunks committed), records repeated from the data folder; "
                                         "bare: the model's forward pass on device-resident tensors"}
    setups = []
    if run.cuda:
        n_gpu = run.args.score_records or 20000
        setups.append(("gpu", n_gpu, ScoreOptions(batch_size=256, workers=max(1, min(14, cores - 2)), chunk_size=4096,
                                                  threads=1, device="cuda")))
    else:
        res["gpu"] = NO_CUDA
    n_cpu = 64 if run.args.quick else 512
    cpu_workers = 0 if run.args.quick else max(1, min(4, cores // 4))
    setups.append(("cpu", n_cpu, ScoreOptions(batch_size=64, workers=cpu_workers, chunk_size=1024,
                                              threads=max(1, run.cpu_threads // max(cpu_workers, 1)), device="cpu")))
    for name, n, options in setups:
        manifest = run.tmp / f"manifest_{name}.csv"
        pd.DataFrame({"record_id": [f"r{i}" for i in range(n)], "record": _records(run, n)}).to_csv(manifest, index=False)
        if name == "gpu":
            torch.cuda.reset_peak_memory_stats(run.gpu)
        try:
            summary = score_archive(path, manifest, run.tmp / f"scores_{name}", options)
        except Exception as exc:  # keep the other device's figure
            traceback.print_exc()
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        res[name] = {"n_records": n, "records_per_s": summary.records_per_s, "elapsed_s": summary.elapsed_s,
                     "status_counts": summary.status_counts, "workers": options.workers, "threads": options.threads,
                     "batch_size": options.batch_size, "peak_gpu_gib": peak_gib(run.gpu) if name == "gpu" else None}
        print(f"scoring {name}: {summary.records_per_s:.1f} records/s over {n} records", flush=True)
    # bare forward pass, same model and batch size
    for name, device, bs in ([("gpu", run.gpu, 256)] if run.cuda else []) + [("cpu", torch.device("cpu"), 64)]:
        torch.set_num_threads(run.cpu_threads)
        model.to(device)
        x = torch.randn(bs, 12, int(meta["n_samples"]), device=device) * 0.3
        with torch.inference_mode():
            model(x)
            sync(device)
            reps = 10 if device.type == "cuda" else 1
            t = time.perf_counter()
            for _ in range(reps):
                model(x).logits.float()
            sync(device)
        res.setdefault(name, {})["bare_forward_records_per_s"] = round(reps * bs / (time.perf_counter() - t), 1)
        if "records_per_s" in res[name]:
            res[name]["end_to_end_over_bare"] = round(res[name]["records_per_s"] / res[name]["bare_forward_records_per_s"], 3)
        model.to("cpu")
    if run.cuda and "records_per_s" in res.get("gpu", {}) and "records_per_s" in res.get("cpu", {}):
        res["gpu_over_cpu"] = round(res["gpu"]["records_per_s"] / res["cpu"]["records_per_s"], 1)
        res["target_records_per_s"] = TARGETS["scoring_records_per_s"]
        res["meets_target"] = bool(res["gpu"]["records_per_s"] >= TARGETS["scoring_records_per_s"])
    return res


def _schedule_seconds(rates: dict[str, dict[str, float]], n: dict[str, int], joint: int, last: int,
                      batch: int) -> dict[str, float]:
    """Seconds of the staged schedule per branch and in all, from steps/s and eval records/s per branch."""
    per: dict[str, float] = {}
    for g, r in rates.items():
        steps = math.ceil(n["train"] / batch)
        epoch = steps / r["steps_per_s"] + n["val"] / r["eval_records_per_s"]
        candidates = 2 * n["val"] / r["eval_records_per_s"]  # the starting weights of each stage are validated
        projection = n["train"] / r["eval_records_per_s"]
        evaluate = (n["val"] + n["test"]) / r["eval_records_per_s"]
        per[g] = (joint + last) * epoch + candidates + projection + evaluate
    fused = 1.0 / sum(1.0 / r["eval_records_per_s"] for r in rates.values())  # all branches per record
    features = (n["train"] + n["val"] + n["test"] + n["train"] + n["val"]) / fused  # fusion + OOD features
    return {**{g: round(s, 1) for g, s in per.items()}, "fusion_and_ood_features": round(features, 1),
            "total": round(sum(per.values()) + features, 1)}


def estimate(run: Run, report: dict[str, Any]) -> dict[str, Any]:
    """Full default PTB-XL schedule from the measured rates; the estimator against the short real run."""
    steps = [r for r in report.get("train_steps", {}).get("results", []) if "steps_per_s" in r]
    if not steps:
        return {"skipped": "train_steps gave no rates"}
    cfg = load_config(REPO / "configs" / "default.yaml")
    stages = {s.name: s.epochs for s in cfg.train.stages}
    joint, last = stages.get("joint", 0), stages.get("last_layer", 0)
    res: dict[str, Any] = {"definition": f"every configured epoch (joint {joint} + last layer {last} per branch, no "
                                         "early stopping: an upper bound), training steps at the measured steps/s, "
                                         "validation each epoch, projection, evaluation and feature passes at the "
                                         "measured eval records/s; fusion epochs on cached features and data loading "
                                         "not counted", "records": FULL_PTBXL}
    n_branches = len(cfg.model.branches)
    for r_dev, prec in sorted({(r["device"], r["precision"]) for r in steps}):
        rates = {r["branch"]: r for r in steps if r["device"] == r_dev and r["precision"] == prec}
        if len(rates) < n_branches:
            continue
        secs = _schedule_seconds(rates, FULL_PTBXL, joint, last, cfg.train.batch_size)
        res[f"{r_dev}/{prec}"] = {"seconds": secs, "hours": round(secs["total"] / 3600, 2)}
    gpu_hours = [res[f"{run.gpu}/{p}"]["hours"] for p in ("fp32", "bf16") if f"{run.gpu}/{p}" in res]
    if gpu_hours:
        res["target_hours"] = TARGETS["full_default_schedule_h"]
        res["meets_target"] = bool(min(gpu_hours) <= TARGETS["full_default_schedule_h"])
    real = report.get("real_data_training", {})
    if "seconds_training_total" in real and not run.args.quick:
        device = str(run.gpu) if real["device"] == "cuda" else "cpu"
        rates = {r["branch"]: r for r in steps if r["device"] == device and r["precision"] == "fp32"}
        if len(rates) < n_branches:
            return res
        n = {k: int(v) for k, v in real["n_records"].items()}
        predicted = _schedule_seconds(rates, n, 1, 1, cfg.train.batch_size)["total"]
        res["check_on_short_run"] = {"predicted_s": predicted, "measured_training_s": real["seconds_training_total"],
                                     "measured_over_predicted": round(real["seconds_training_total"] / predicted, 2)}
    return res


# ---------------------------------------------------------------------------------- main
def summary_of(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (printed at the end)."""
    out: dict[str, Any] = {"gpu": report["environment"].get("gpu")}
    ts = report.get("train_steps", {})
    if "results" in ts:
        out["train_steps_per_s"] = {f"{r['device']}/{r['precision']}/{r['branch']}": r.get("steps_per_s", r.get("error")) for r in ts["results"]}
    sc = report.get("scoring", {})
    for k in ("gpu", "cpu"):
        if isinstance(sc.get(k), dict):
            out[f"scoring_{k}_records_per_s"] = sc[k].get("records_per_s")
    ag = report.get("agreement", {})
    out["agreement"] = ag.get("skipped") or {k: ag.get(k) for k in ("tf32_default", "tf32_off", "pass")}
    est = report.get("estimate", {})
    out["full_ptbxl_hours"] = {k: v["hours"] for k, v in est.items() if isinstance(v, dict) and "hours" in v}
    out["errors"] = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.make_subset:
        n, dest = args.make_subset
        src = Path(args.data) if args.data else REPO.parent / "shared" / "data" / "ptbxl-dev"
        make_subset(src, int(n), Path(dest))
        return 0
    run = Run(args)
    report: dict[str, Any] = {"benchmark": "benchmarks/device_check.sh", "targets": TARGETS,
                              "environment": environment(run)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections = [("train_steps", train_steps, 60), ("real_data_training", real_data_training, 120),
                ("agreement", agreement, 20), ("scoring", scoring, 60), ("estimate", None, 0)]
    try:
        for name, fn, needs_s in sections:
            if run.left() < needs_s:
                report[name] = {"skipped": f"time budget: {run.left():.0f} s left of --budget-s {args.budget_s:g}"}
            else:
                t = time.perf_counter()
                try:
                    report[name] = fn(run) if fn is not None else estimate(run, report)
                except Exception as exc:  # one broken section must not lose the others of a one-shot GPU run
                    traceback.print_exc()
                    report[name] = {"error": f"{type(exc).__name__}: {exc}"}
                report[name]["section_s"] = round(time.perf_counter() - t, 1)
            report["wall_s"] = round(time.monotonic() - run.t0, 1)
            write_json_atomic(out, report, indent=1)
    finally:
        shutil.rmtree(run.tmp, ignore_errors=True)
    print(json.dumps(summary_of(report), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
