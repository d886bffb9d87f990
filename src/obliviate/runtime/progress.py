"""Progress a person can read in a terminal and in a log file.

On a terminal (stderr is a TTY) a long loop shows a tqdm bar that redraws itself in place. Anywhere else
(CI, ``nohup``, a batch scheduler's log) every redraw would be kept: a 6-epoch tiny fine-tune wrote ~200 KB
of bar frames. There the bar is replaced by one line when the phase ends, with its count, time and rate
(``TOFU scoring: 450 items in 12.3s (36.6 items/s)``); the training loop writes its own line per epoch
instead (with the ETA of the remaining epochs, ``train.epoch_line``). Only the main process of a
multi-process run shows either.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable

from . import dist


def interactive() -> bool:
    """Whether stderr is a terminal (where a redrawn bar is readable)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class LineProgress:
    """tqdm's small API (iterate, ``update``, ``set_postfix``, ``close``) writing at most one line, at close."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "items", line: bool = True):
        self.iterable, self.total, self.desc, self.unit, self.line = iterable, total, desc, unit, line
        self.n = 0
        self.postfix: dict = {}
        self.t0 = time.time()
        self.closed = False

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.n += 1

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **kw) -> None:
        self.postfix = kw

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.line or self.n == 0:
            return
        secs = time.time() - self.t0
        rate = f"{self.n / secs:.1f} {self.unit}/s" if secs > 0 else "-"
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        dist.log_on_main(f"{self.desc}: {self.n} {self.unit} in {secs:.1f}s ({rate}{extra})")


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enabled: bool = True, unit: str = "items", line: bool = True):
    """A tqdm bar on a terminal, else a :class:`LineProgress` (one line at the end when ``line``; nothing when
    not ``enabled``, or on a process other than the main one)."""
    if enabled and dist.is_main() and interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return LineProgress(iterable, total, desc, unit, line=line and enabled and dist.is_main())
