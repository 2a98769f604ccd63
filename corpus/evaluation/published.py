"""The published F1 tables, shipped as data (``published.yaml`` beside this module)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from corpus.evaluation.protocols import canonical

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")


@cache
def published_models() -> dict[str, dict[str, Any]]:
    """``{model name: entry}`` with ``results`` ({task: {benchmark: F1}}), ``weighted``, ``aliases``, ``paper``."""
    doc = yaml.safe_load(PUBLISHED_FILE.read_text(encoding="utf-8"))
    return doc["models"]


def find_published(name: str | None) -> tuple[str, dict[str, Any]] | None:
    """``(model name, entry)`` for a model name or one of its aliases (case-insensitive), else None."""
    if not name:
        return None
    key = name.strip().lower()
    for model, entry in published_models().items():
        if key == model.lower() or key in (a.lower() for a in entry.get("aliases", [])):
            return model, entry
    return None


def require_published(name: str) -> tuple[str, dict[str, Any]]:
    """Like :func:`find_published`, but an unknown name is an error listing the known ones."""
    found = find_published(name)
    if found is None:
        raise ValueError(f"no published figures for {name!r}; known: {sorted(published_models())}")
    return found


def published_f1(entry: dict[str, Any], benchmark: str, task: str) -> float | None:
    return (entry.get("results", {}).get(task) or {}).get(canonical(benchmark))
