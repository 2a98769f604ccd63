"""Stage checkpoints on disk: Parquet parts, dropped rows, manifests, resume.

Layout of one stage inside a run directory::

    <run>/<stage>/part-00000.parquet      kept rows of work unit 0 (the commit marker of the unit)
    <run>/<stage>/dropped/part-00000.parquet   rows the unit dropped, with ``drop_reason``
    <run>/<stage>/<output>/part-00000.parquet  any extra named output (e.g. a held-out set)
    <run>/<stage>/_units/00000.json       per-unit counters (rows in, ...)
    <run>/<stage>/_progress.json          config hash + input fingerprint of the run in progress
    <run>/<stage>/_manifest.json          written last: the stage is complete

Every file is written under a temporary name and renamed when complete, so a SIGKILL leaves either
a whole file or none. A unit is done when its kept part exists; a resumed run redoes only the
units without one, so it ends with exactly the rows an uninterrupted run gives as long as each unit
is a deterministic function of the input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.schema import Schema, load_schema

MANIFEST = "_manifest.json"
PROGRESS = "_progress.json"


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def part_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StageDir:
    """Read access to one stage's checkpoint."""

    def __init__(self, run_dir: Path | str, stage: str):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.path = self.run_dir / stage

    def parts(self, output: str | None = None) -> list[Path]:
        base = self.path / output if output else self.path
        return sorted(base.glob("part-*.parquet")) if base.is_dir() else []

    def manifest(self) -> dict | None:
        p = self.path / MANIFEST
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    @property
    def complete(self) -> bool:
        return self.manifest() is not None

    def fingerprint(self) -> str:
        """Content fingerprint of the finished stage (what downstream stages key on)."""
        m = self.manifest()
        if m is None:
            raise FileNotFoundError(f"stage {self.stage!r} has not finished in {self.run_dir}")
        return m["output_fingerprint"]

    def iter_tables(self, output: str | None = None, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for p in self.parts(output):
            yield pq.read_table(p, columns=columns)

    def read(self, output: str | None = None, columns: list[str] | None = None) -> pa.Table | None:
        tables = list(self.iter_tables(output, columns))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def num_rows(self, output: str | None = None) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.parts(output))


@dataclass(frozen=True)
class UnitSink:
    """Writes the files of one unit into a stage directory; the kept part is renamed into place last."""

    path: Path
    stage: str
    schema: Schema
    dropped_schema: Schema

    def write(
        self,
        unit: int,
        kept: pa.Table,
        dropped: pa.Table | None = None,
        outputs: dict[str, pa.Table] | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        where = f"{self.stage}/{part_name(unit)}"
        kept = self.schema.conform(kept, where)
        if dropped is not None and dropped.num_rows:
            write_parquet_atomic(self.dropped_schema.conform(dropped, where + " (dropped)"),
                                 self.path / "dropped" / part_name(unit))
        for name, table in (outputs or {}).items():
            write_parquet_atomic(self.schema.conform(table, f"{where} ({name})"), self.path / name / part_name(unit))
        write_json_atomic(self.path / "_units" / f"{unit:05d}.json", dict(counters or {}))
        write_parquet_atomic(kept, self.path / part_name(unit))


class StageWriter(StageDir):
    """Write one stage's checkpoint unit by unit; resume an interrupted run; finish with a manifest.

    ``config`` is everything that decides the stage's output (hashed into the manifest);
    ``input_fingerprint`` identifies the input (usually the upstream stage's fingerprint).
    """

    def __init__(
        self,
        run_dir: Path | str,
        stage: str,
        schema: Schema,
        config: Any,
        input_fingerprint: str,
        force: bool = False,
        dropped_schema: Schema | None = None,
    ):
        super().__init__(run_dir, stage)
        self.schema = schema
        self.dropped_schema = dropped_schema or load_schema("dropped")
        self.config_hash = stable_hash(config)
        self.input_fingerprint = input_fingerprint
        self._started = time.time()
        key = {
            "schema": schema.name,
            "schema_version": schema.version,
            "config_hash": self.config_hash,
            "input_fingerprint": input_fingerprint,
        }
        self._key = key
        m = self.manifest()
        if m is not None and not force and all(m.get(k) == v for k, v in key.items()):
            self.skipped = True
            return
        self.skipped = False
        progress = self.path / PROGRESS
        resumable = (
            not force
            and m is None
            and progress.exists()
            and json.loads(progress.read_text(encoding="utf-8")).get("key") == key
        )
        if not resumable and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "_units").mkdir(exist_ok=True)
        if not resumable:
            write_json_atomic(progress, {"key": key, "started": self._started})
        self.resumed_units = len(self.done_units())

    def done_units(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.parts()}

    def sink(self) -> UnitSink:
        """A picklable writer of this stage's units (engine workers commit their own units with it)."""
        return UnitSink(self.path, self.stage, self.schema, self.dropped_schema)

    def write_unit(
        self,
        unit: int,
        kept: pa.Table,
        dropped: pa.Table | None = None,
        outputs: dict[str, pa.Table] | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """Write one unit's files; the kept part is renamed into place last (the commit)."""
        self.sink().write(unit, kept, dropped, outputs, counters)

    def drop_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for p in self.parts("dropped"):
            counts.update(pq.read_table(p, columns=["drop_reason"]).column("drop_reason").to_pylist())
        return dict(sorted(counts.items()))

    def finish(self, extra: dict[str, Any] | None = None) -> dict:
        """Aggregate the units into ``_manifest.json`` (the stage is then complete)."""
        counters: Counter[str] = Counter()
        done = self.done_units()
        for p in sorted((self.path / "_units").glob("*.json")):
            if int(p.stem) in done:
                counters.update(json.loads(p.read_text(encoding="utf-8")))
        outputs = sorted(
            d.name for d in self.path.iterdir() if d.is_dir() and not d.name.startswith("_") and d.name != "dropped"
        )
        progress = json.loads((self.path / PROGRESS).read_text(encoding="utf-8"))
        files = [(p.relative_to(self.path).as_posix(), file_sha256(p)) for p in self.parts()]
        for name in outputs:
            files += [(p.relative_to(self.path).as_posix(), file_sha256(p)) for p in self.parts(name)]
        now = time.time()
        manifest = {
            "stage": self.stage,
            **self._key,
            "rows_in": int(counters.pop("rows_in", 0)),
            "rows_out": self.num_rows(),
            "rows_dropped": self.num_rows("dropped"),
            "drop_reasons": self.drop_counts(),
            "outputs": {name: self.num_rows(name) for name in outputs},
            "parts": len(self.parts()),
            "counters": dict(sorted(counters.items())),
            "output_fingerprint": stable_hash(files),
            "timings": {
                "first_started": progress.get("started"),
                "this_attempt_started": self._started,
                "finished": now,
                "this_attempt_seconds": round(now - self._started, 3),
                "units_resumed": self.resumed_units,
            },
            **(extra or {}),
        }
        write_json_atomic(self.path / MANIFEST, manifest)
        return manifest
