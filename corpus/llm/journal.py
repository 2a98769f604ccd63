"""The request journal: which teacher requests were on the wire when the process died.

One append-only text file per stage attempt (``<run>/synthesize/_requests.log``): ``S <key>`` is
written just before a request is sent, ``E <key>`` once its response was read (and, for an answer,
committed to the cache) or it failed. A request killed mid-flight (SIGKILL, power loss, or cut by the
circuit breaker) keeps its ``S`` without an ``E``; a real API may still bill it, so the stage reports
``interrupted_requests`` = lines ``S`` minus lines ``E``. Lines are written with one unbuffered
``write`` each (no fsync: the file only has to survive the death of the process, like the cache).
"""

from __future__ import annotations

import os
from pathlib import Path


class RequestJournal:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def sent(self, key: str) -> None:
        os.write(self._fd, f"S {key}\n".encode())

    def done(self, key: str) -> None:
        os.write(self._fd, f"E {key}\n".encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def interrupted_requests(path: Path) -> int:
    """Requests sent but never finished, over every attempt that wrote ``path``."""
    if not path.exists():
        return 0
    started = finished = 0
    with path.open("rb") as f:
        for line in f:
            if line.startswith(b"S "):
                started += 1
            elif line.startswith(b"E ") and line.endswith(b"\n"):
                finished += 1
    return max(0, started - finished)
