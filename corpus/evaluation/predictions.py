"""Prediction files in GuardReasoner's released layout: ``<DIR>/<Benchmark>/generated_predictions.jsonl``.

One JSON object per line with ``prompt`` (the guard instruction, a newline, the guard input), ``label``
(the gold as the benchmark file writes it) and ``predict`` (the model's answer). Lines this toolkit writes
also carry the gold per task (``request_label``, ``response_label``, ``refusal_label``), the sample ``id``
and the ``images`` paths; the released scorer ignores extra keys. ``.jsonl.gz`` is read as well.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from corpus.sources.base import SourceError

PREDICTIONS_FILE = "generated_predictions.jsonl"


class PredictionsError(SourceError):
    """A predictions folder or file cannot be read (names the file and line)."""


def prediction_files(root: Path | str) -> dict[str, Path]:
    """``{benchmark: file}`` of every ``<root>/<Benchmark>/generated_predictions.jsonl[.gz]``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"predictions folder not found: {root}")
    found: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in (PREDICTIONS_FILE, PREDICTIONS_FILE + ".gz"):
            if (sub / name).is_file():
                found[sub.name] = sub / name
                break
    if not found:
        raise PredictionsError(f"{root}: no <Benchmark>/{PREDICTIONS_FILE} inside (GuardReasoner's layout)")
    return found


def read_predictions(path: Path | str) -> list[dict]:
    """The lines of a predictions file; a line that is not a JSON object with ``predict`` is an error."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[dict] = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise PredictionsError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(line, dict) or "predict" not in line:
                raise PredictionsError(f"{path}:{lineno}: expected an object with 'prompt', 'label', 'predict'")
            out.append(line)
    return out


def write_predictions(path: Path, lines: list[dict]) -> None:
    """Write the lines (one JSON object each, UTF-8) under a temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
