"""Progress of long loops: a bar when stderr is a terminal, otherwise one log line at a steady
interval (done/total, rate, ETA), so a batch job's log shows how far a run is.

The lines go to the ``varscore.io.progress`` logger at INFO (the command line shows them on stderr
as ``varscore: annotate 120/600 alleles, 3.1/s, ETA 2m35s``). The interval is 10 seconds, or
``VARSCORE_PROGRESS_INTERVAL`` seconds (e.g. ``0.5`` to see lines in a short test run)."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from types import TracebackType
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

INTERVAL_VARIABLE = "VARSCORE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
Item = TypeVar("Item")


def interval_seconds() -> float:
    """Seconds between two progress lines: ``VARSCORE_PROGRESS_INTERVAL`` when it holds a positive
    number, otherwise :data:`DEFAULT_INTERVAL`."""
    try:
        value = float(os.environ.get(INTERVAL_VARIABLE, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value > 0 else DEFAULT_INTERVAL


def duration_text(seconds: float) -> str:
    """``2m35s``, ``1h04m``, ``12s``: how long, at the resolution a log reader needs."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts the work done in a loop (:meth:`update`) and shows it: a tqdm bar on a terminal, timed
    log lines elsewhere (``terminal`` None asks stderr), nothing when not ``enabled``. ``clock``
    returns seconds (``time.monotonic``; a fake one in tests). Use as a context manager, or call
    :meth:`close`; the last line says how long the whole took when the work lasted an interval."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        enabled: bool = True,
        *,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self.clock = clock
        self.interval = interval_seconds()
        self.start = self.last = clock()
        self.lines_written = 0
        self.bar: Any = None
        self.logging = False
        if enabled:
            if sys.stderr.isatty() if terminal is None else terminal:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
            else:
                self.logging = True

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.logging:
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.start
        counted = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if final:
            logger.info("%s %s %s in %s", self.desc, counted, self.unit, duration_text(elapsed))
        else:
            left = ""
            if self.total is not None and rate > 0:
                left = f", ETA {duration_text(max(0, self.total - self.done) / rate)}"
            logger.info("%s %s %s, %s/s%s", self.desc, counted, self.unit, _rate_text(rate), left)
        self.lines_written += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.logging:
            self.logging = False
            if self.lines_written:
                self._line(self.clock(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self.bar is not None:
            self.bar.close()
        self.logging = False  # no "done" line for a loop that failed


def _rate_text(rate: float) -> str:
    return f"{rate:.1f}" if rate >= 0.1 else f"{rate:.3f}"


def progress_iter(
    items: Iterable[Item], desc: str, unit: str, enabled: bool, total: int | None = None
) -> Iterator[Item]:
    """Yield ``items``, counting each in a :class:`Progress` (``total`` defaults to ``len(items)``
    where items has a length)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with Progress(total, desc, unit, enabled) as counter:
        for item in items:
            yield item
            counter.update()


class StderrLines(logging.Handler):
    """Writes each progress line as ``varscore: MESSAGE`` to the stderr of the moment (a handler
    that kept the stream it started with would write to a closed one after a test swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"varscore: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # a closed or broken stderr must not end the run
            self.handleError(record)


def show_lines_on_stderr() -> None:
    """Route the progress lines to stderr (once; the command line calls this)."""
    if not any(isinstance(h, StderrLines) for h in logger.handlers):
        logger.addHandler(StderrLines())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not a second time through -v's root handler
