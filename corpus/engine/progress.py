"""Progress of a long stage: rows done, rate and ETA (a tqdm bar on a terminal, a log line otherwise)."""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("corpus.progress")

#: seconds between two log lines when stderr is not a terminal
LOG_EVERY = 10.0


class RowProgress:
    """Count rows as units finish; ``CORPUS_PROGRESS=0`` silences it."""

    def __init__(self, desc: str, total: int, done: int = 0):
        self.desc, self.total, self.done = desc, total, done
        self._start = time.monotonic()
        self._first = done
        self._last_log = self._start
        self._bar = None
        if os.environ.get("CORPUS_PROGRESS", "1") == "0":
            self._mode = "off"
        elif sys.stderr.isatty():
            from tqdm import tqdm

            self._mode = "bar"
            self._bar = tqdm(total=total, initial=done, desc=desc, unit="rows", dynamic_ncols=True, leave=False)
        else:
            self._mode = "log"

    def update(self, rows: int) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(rows)
        elif self._mode == "log" and time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (self.done - self._first) / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else "-"
        return f"{self.desc}: {self.done}/{self.total} rows, {rate:.0f} rows/s, ETA {eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._mode == "log" and self.done > self._first and time.monotonic() - self._start >= LOG_EVERY:
            log.info("%s (done)", self.line())
