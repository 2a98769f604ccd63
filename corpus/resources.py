"""Locate the data files shipped with the package: prompts, schemas, recipes, embedded samples.

In a wheel they live under ``corpus/_resources/``; in a source checkout (editable install) they are
the top-level ``prompts/``, ``schemas/`` and ``pipelines/`` folders.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def resource_dir(kind: str) -> Path:
    """Directory holding one kind of shipped data file: ``prompts``, ``schemas`` or ``pipelines``."""
    for base in (_PKG / "_resources", _PKG.parent):
        candidate = base / kind
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"shipped resource folder {kind!r} not found next to {_PKG}")


def resource(kind: str, name: str) -> Path:
    path = resource_dir(kind) / name
    if not path.exists():
        raise FileNotFoundError(f"shipped resource {kind}/{name} not found")
    return path


def samples_dir() -> Path:
    """Root of the embedded default data (small samples in each source's real layout)."""
    return _PKG / "samples"
