"""Progress bars for long loops (tqdm on stderr; silenced with ECGPROTO_NO_PROGRESS=1)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar unless disabled by the environment."""
    disable = os.environ.get("ECGPROTO_NO_PROGRESS", "") not in ("", "0")
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True))
