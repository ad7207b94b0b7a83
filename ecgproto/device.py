"""The torch device a command runs on (``--device`` / config ``device``) and mixed precision.

``auto`` is the CUDA device when torch sees one, else the CPU (MPS only when asked for:
``mps``). On the CPU nothing changes: the same float32 code path as before, bit for bit.
torch is imported inside the functions, so ``ecgproto --help`` stays torch-free.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

from ecgproto.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = ("torch device: auto (CUDA when torch sees a GPU, else CPU), cpu, cuda, cuda:N or mps "
               "(default: the config's `device`, auto)")
PRECISIONS = ("fp32", "bf16", "fp16")
INSTALL_HINT = ('install a CUDA build (pip install torch --index-url https://download.pytorch.org/whl/cu<version>, '
                'see README "CPU or CUDA torch")')
_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """``name`` lower-cased when it is auto, cpu, cuda, cuda:N or mps (syntax only: no torch, no hardware check)."""
    text = str(name).strip().lower()
    if not _NAME.match(text):
        raise UserError(f"device {name!r}: expected auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps")
    return text


def _build() -> str:
    import torch

    cuda = torch.version.cuda
    return f"torch {torch.__version__} ({f'CUDA {cuda}' if cuda else 'a CPU-only build'})"


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for ``name`` (auto|cpu|cuda|cuda:N|mps); UserError when it is not available.

    ``local_rank`` (a torchrun process's LOCAL_RANK) picks the GPU of ``auto``/``cuda``; an
    explicit ``cuda:N`` is kept as given.
    """
    import torch

    text = check_device_name(name)
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"mps requested but torch.backends.mps.is_available() is False: this torch build is "
                            f"{_build()}; MPS needs Apple silicon and a macOS torch build, or use --device cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise UserError(f"{text} requested but torch.cuda.is_available() is False: this torch build is {_build()}; "
                        f"{INSTALL_HINT}, or use --device cpu")
    index = int(text.split(":")[1]) if ":" in text else (local_rank or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(f"{text if ':' in text else f'cuda (local rank {index})'} requested but only {count} CUDA "
                        f"device(s) are visible (cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES")
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """One line naming the device, e.g. ``cuda:0 (NVIDIA H200, torch 2.5.1 (CUDA 12.4))``."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}, {_build()})"
    return f"{device} ({_build()})"


def check_precision(precision: str, device: torch.device) -> None:
    """UserError for a precision the device cannot run (fp16 autocast needs CUDA here)."""
    if precision not in PRECISIONS:
        raise UserError(f"train.precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"train.precision fp16 needs a CUDA device (got {device}); use bf16 or fp32 on {device.type}")


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for ``precision`` (fp32: a no-op, so fp32 runs are unchanged)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing only; a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["DEVICE_HELP", "PRECISIONS", "autocast", "check_device_name", "check_precision", "describe",
           "resolve_device", "synchronize"]
