"""Helpers of the text-source tests: read a local source through its adapter, split drafts from drops.

A module of its own (not conftest) so that importing it cannot clash with other folders' conftest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from realdata_path import REALDATA

from corpus.recipe import SourceSpec
from corpus.sources.base import Draft, Drop, adapter_class

REAL = REALDATA


@dataclass
class Result:
    drafts: list[Draft] = field(default_factory=list)
    drops: list[tuple[int, Drop]] = field(default_factory=list)

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, d in self.drops:
            out[d.reason] = out.get(d.reason, 0) + 1
        return out


def read_source(adapter: str, path: Path, **spec_fields) -> Result:
    """Read every record of a local source through its adapter, as the ingest stage does."""
    spec = SourceSpec(name=spec_fields.pop("name", f"test_{adapter}"), adapter=adapter, path=str(path), **spec_fields)
    source = adapter_class(adapter)(spec)
    res = Result()
    for rec in source.records(path):
        if rec.fields is None:
            res.drops.append((rec.index, rec.drop))
            continue
        out = source.convert(rec.fields, rec.index)
        if isinstance(out, Drop):
            res.drops.append((rec.index, out))
        else:
            res.drafts.extend(out)
    return res
