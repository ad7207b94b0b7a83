"""Progress bars for long loops (tqdm on stderr), shown only where someone watches them.

By default a bar is drawn when stderr is a terminal and left out when it is a file or a pipe
(logs of batch jobs stay readable). ``ECGPROTO_NO_PROGRESS=1`` turns bars off everywhere;
``ECGPROTO_NO_PROGRESS=0`` draws them even when stderr is not a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether :func:`progress` draws a bar (see the module docstring)."""
    setting = os.environ.get("ECGPROTO_NO_PROGRESS", "")
    if setting == "":
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return setting == "0"


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar when :func:`progress_enabled`."""
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(), dynamic_ncols=True))
