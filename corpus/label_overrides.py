"""Reviewed labels (``ingest.label_overrides``): a file a person corrected, read back by row id.

The file is the review file ``corpus audit-labels`` writes (JSONL or CSV) or any file with an ``id``
column and ``reviewed_request_label`` / ``reviewed_response_label`` columns; an empty value keeps the
gold label. The filter applies them where gold meets teacher, so a rerun re-buys nothing: the cached
teacher answer is judged against the reviewed label, and the row records ``label_origin: reviewed``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

LABELS = {"harmful", "unharmful"}
FIELDS = {"request": "reviewed_request_label", "response": "reviewed_response_label"}
REVIEWED = "reviewed"


class OverrideError(ValueError):
    """The overrides file is missing, unreadable or holds a value that is not a label."""


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        raise OverrideError(f"ingest.label_overrides: no file at {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise OverrideError(f"ingest.label_overrides: {path} is not JSONL ({exc})") from None


def load_overrides(path: Path | None) -> dict[str, dict[str, str]]:
    """``{row id: {"request"|"response": label}}`` of the reviewed values that are set."""
    if path is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for n, rec in enumerate(_records(path), start=1):
        row_id = (rec.get("id") or "").strip() if isinstance(rec.get("id"), str) else rec.get("id")
        if not row_id:
            raise OverrideError(f"ingest.label_overrides: {path} record {n} has no id")
        for kind, field in FIELDS.items():
            value = rec.get(field)
            value = value.strip().lower() if isinstance(value, str) else value
            if value in (None, ""):
                continue
            if value not in LABELS:
                raise OverrideError(f"ingest.label_overrides: {path} record {n} ({row_id}): {field}={value!r} "
                                    f"is not one of {sorted(LABELS)} (empty keeps the gold label)")
            out.setdefault(str(row_id), {})[kind] = value
    return out


def apply_override(row: dict, overrides: dict[str, dict[str, str]]) -> dict:
    """The row with its reviewed labels (``label_origin`` ``reviewed``), or the row itself."""
    reviewed = overrides.get(row.get("id"))
    if not reviewed:
        return row
    origin = dict(row.get("label_origin") or {})
    row = dict(row)
    for kind, label in reviewed.items():
        if kind == "response" and row.get("response") is None:
            continue  # nothing to label
        row[f"{kind}_label"] = label
        origin[kind] = REVIEWED
    row["label_origin"] = origin
    return row
