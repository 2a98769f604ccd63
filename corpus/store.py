"""Stage checkpoints on disk: Parquet parts, dropped rows, manifests, resume.

Layout of one stage inside a run directory::

    <run>/<stage>/part-00000.parquet      kept rows of work unit 0 (the commit marker of the unit)
    <run>/<stage>/dropped/part-00000.parquet   rows the unit dropped, with ``drop_reason``
    <run>/<stage>/<output>/part-00000.parquet  any extra named output (e.g. a held-out set)
    <run>/<stage>/_units/00000.json       per-unit counters (rows in, ...)
    <run>/<stage>/_progress.json          config hash + input fingerprint of the run in progress
    <run>/<stage>/_manifest.json          written last: the stage is complete

Every file is written under a temporary name (``.<name>.tmp-<pid>``) and renamed when complete, so a
SIGKILL leaves either a whole file or none; a resumed run removes the temporaries of dead processes.
A unit is done when its kept part exists; a resumed run redoes only the units without one, so it
ends with exactly the rows an uninterrupted run gives as long as each unit is a deterministic
function of the input.

Parts are verified, never trusted: ``_units/<unit>.json`` records the size and sha256 of every file
the unit wrote (before the kept part is renamed into place) and the manifest records them for the
finished stage. A resumed or rerun stage redoes a unit whose files do not match (changed, truncated,
copied over); a reader of a finished stage (:meth:`StageDir.parts`, :meth:`StageDir.fingerprint`)
raises :class:`CorruptPartError` naming the file instead of consuming it. The full sha256 is checked
(not only the size): a valid Parquet file copied over another can have a plausible size, and hashing
(~1 GB/s) costs less than decoding the Parquet that is read anyway; each file is hashed once per
process while its size, mtime and inode stay the same.

One process at a time works in a run directory: :func:`lock_run_dir` (``fcntl.flock`` on
``<run>/.lock``) is taken by the command line for the whole command.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
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
LOCK = ".lock"
_FILES = "_files"  # key of the file records inside a unit's counters file

log = logging.getLogger(__name__)


class CorruptPartError(RuntimeError):
    """A stage's file does not match what the stage recorded when it wrote it."""


class StageIncomplete(RuntimeError):
    """A stage stopped before every row was done; what was done is kept and a rerun resumes."""


class RunDirLocked(RuntimeError):
    """Another process is working in the run directory."""


def lock_run_dir(run_dir: Path | str):
    """Take the exclusive lock of a run directory for this process (released when it exits or the returned
    file is closed); raise :class:`RunDirLocked` at once, naming the holder's pid, when another holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = (run_dir / LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunDirLocked(f"run directory {run_dir} is in use by another corpus process (pid {holder}); "
                           "wait for it to finish or stop it (one run per directory)") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_parquet_tmp(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    return tmp


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``path`` under a temporary name, then rename it. A part of a stage's unit that already has a
    record (e.g. a stage rewriting its own finished parts before its manifest) gets its record updated
    first, so the rewrite is not mistaken for damage on resume."""
    tmp = _write_parquet_tmp(table, path)
    _update_unit_record(path, tmp)
    os.replace(tmp, path)


def _update_unit_record(path: Path, tmp: Path) -> None:
    if not (path.name.startswith("part-") and path.name.endswith(".parquet")):
        return
    unit = path.name[5:-8]
    stage_dir = next((d for d in (path.parent, path.parent.parent) if (d / "_units").is_dir()), None)
    if not unit.isdigit() or stage_dir is None:
        return
    record = stage_dir / "_units" / f"{int(unit):05d}.json"
    if not record.exists():
        return
    data = json.loads(record.read_text(encoding="utf-8"))
    if isinstance(data.get(_FILES), dict):
        data[_FILES][path.relative_to(stage_dir).as_posix()] = {"bytes": tmp.stat().st_size,
                                                              "sha256": file_sha256(tmp)}
        write_json_atomic(record, data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.*.tmp-<pid>`` files under ``folder`` left by processes that no longer run (or by this one)."""
    removed = []
    for tmp in folder.rglob(".*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1]
        if tmp.is_file() and pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def part_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_HASHED: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256: each file hashed once per process


def file_record(path: Path) -> dict:
    """``{"bytes", "sha256"}`` of a file (the hash reused while size, mtime and inode are unchanged)."""
    st = path.stat()
    ident = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    sha = _HASHED.get(ident)
    if sha is None:
        sha = _HASHED[ident] = file_sha256(path)
    return {"bytes": st.st_size, "sha256": sha}


def _unreadable(path: Path) -> str | None:
    try:
        pq.ParquetFile(path).metadata  # noqa: B018 (reads and checks the footer)
    except (OSError, pa.ArrowException) as exc:
        return f"not a readable Parquet file ({exc})"
    return None


def mismatch(path: Path, expected: dict | None) -> str | None:
    """Why ``path`` does not match its record (``None`` when it does)."""
    if expected is None:
        return "no record of this file"
    if not path.exists():
        return "missing"
    if path.stat().st_size != expected["bytes"]:
        return f"{path.stat().st_size} bytes, recorded {expected['bytes']}"
    actual = file_record(path)
    if actual["sha256"] != expected["sha256"]:
        return f"sha256 {actual['sha256'][:12]}..., recorded {expected['sha256'][:12]}..."
    return None


class StageDir:
    """Read access to one stage's checkpoint."""

    def __init__(self, run_dir: Path | str, stage: str):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.path = self.run_dir / stage

    def parts(self, output: str | None = None) -> list[Path]:
        """The parts of the kept rows (or of ``output``); for a finished stage each is first checked
        against the manifest (:class:`CorruptPartError` names a file that does not match)."""
        found = self._listed(output)
        m = self.manifest()
        if m is not None and isinstance(m.get("part_files"), dict):
            self._verify(found, output, m["part_files"])
        return found

    def _listed(self, output: str | None = None) -> list[Path]:
        base = self.path / output if output else self.path
        return sorted(base.glob("part-*.parquet")) if base.is_dir() else []

    def _verify(self, found: list[Path], output: str | None, files: dict[str, dict]) -> None:
        prefix = f"{output}/" if output else ""
        expected = {rel for rel in files if rel.startswith(prefix) and "/" not in rel[len(prefix):]}
        for p in found:
            rel = p.relative_to(self.path).as_posix()
            expected.discard(rel)
            why = mismatch(p, files.get(rel))
            if why is not None:
                raise CorruptPartError(self._bad_part_message(rel, why))
        if expected:
            raise CorruptPartError(self._bad_part_message(sorted(expected)[0], "missing"))

    def _bad_part_message(self, rel: str, why: str) -> str:
        return (f"{self.path / rel}: does not match the manifest of stage {self.stage!r} ({why}); it was changed "
                f"after the stage finished and is not used. Rerun the stage without --force "
                f"(`corpus run` or `corpus {self.stage}`): it redoes the unit of that part only")

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
        self.parts()
        for name in m.get("outputs") or {}:
            self.parts(name)
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

    def unit_file(self, unit: int) -> Path:
        return self.path / "_units" / f"{unit:05d}.json"

    def unit_counters(self) -> dict[int, dict]:
        """Counters each unit recorded, by unit (file records left out)."""
        out = {}
        for p in sorted((self.path / "_units").glob("*.json")):
            if p.stem.isdigit():
                c = json.loads(p.read_text(encoding="utf-8"))
                c.pop(_FILES, None)
                out[int(p.stem)] = c
        return out


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
        """Write one unit's files; the kept part is renamed into place last (the commit), after the unit's
        counters and the size and sha256 of each of its files."""
        where = f"{self.stage}/{part_name(unit)}"
        kept = self.schema.conform(kept, where)
        files: dict[str, dict] = {}
        (self.path / "dropped" / part_name(unit)).unlink(missing_ok=True)  # no stale file of an earlier attempt
        if dropped is not None and dropped.num_rows:
            target = self.path / "dropped" / part_name(unit)
            write_parquet_atomic(self.dropped_schema.conform(dropped, where + " (dropped)"), target)
            files[f"dropped/{part_name(unit)}"] = file_record(target)
        for name, table in (outputs or {}).items():
            target = self.path / name / part_name(unit)
            write_parquet_atomic(self.schema.conform(table, f"{where} ({name})"), target)
            files[f"{name}/{part_name(unit)}"] = file_record(target)
        tmp = _write_parquet_tmp(kept, self.path / part_name(unit))
        files[part_name(unit)] = {"bytes": tmp.stat().st_size, "sha256": file_sha256(tmp)}
        write_json_atomic(self.path / "_units" / f"{unit:05d}.json", {**dict(counters or {}), _FILES: files})
        os.replace(tmp, self.path / part_name(unit))


class StageWriter(StageDir):
    """Write one stage's checkpoint unit by unit; resume an interrupted run; finish with a manifest.

    ``config`` is everything that decides the stage's output (hashed into the manifest);
    ``input_fingerprint`` identifies the input (usually the upstream stage's fingerprint).
    A finished stage whose files no longer match its manifest is reopened: the bad units are redone.
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
        self.redone_units: list[int] = []
        self.removed_temporaries = remove_stale_temporaries(self.path) if self.path.is_dir() else []
        m = self.manifest()
        if m is not None and not force and all(m.get(k) == v for k, v in key.items()):
            bad = self._bad_finished_units(m)
            if not bad:
                self.skipped = True
                return
            self._discard(bad)
            self.reopen()
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
        else:
            self._discard(self._bad_resumed_units())
        self.resumed_units = len(self.done_units())

    def reopen(self) -> None:
        """Turn a finished (skipped) stage back into one in progress: its manifest is removed, its units kept;
        the caller then redoes the units it :meth:`discard` s (e.g. rows to retry)."""
        (self.path / MANIFEST).unlink(missing_ok=True)
        if not (self.path / PROGRESS).exists():
            write_json_atomic(self.path / PROGRESS, {"key": self._key, "started": self._started})
        self.skipped = False
        self.resumed_units = len(self.done_units())

    def discard(self, units: set[int] | list[int]) -> None:
        """Forget finished units so that this run redoes them."""
        self._discard(units)
        self.resumed_units = len(self.done_units())

    def _discard(self, units) -> None:
        for unit in sorted(units):
            (self.path / part_name(unit)).unlink(missing_ok=True)  # the commit marker first
            self.redone_units.append(unit)

    def _unit_files(self, unit: int) -> dict | None:
        p = self.unit_file(unit)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8")).get(_FILES)
        except ValueError:
            return None

    def _bad_resumed_units(self) -> list[int]:
        """Done units whose files do not match what the unit recorded when it wrote them."""
        bad = []
        for part in self._listed():
            unit = int(part.stem.split("-")[1])
            files = self._unit_files(unit)
            if files is None:  # written without file records (an older writer): keep it if it reads as Parquet
                why = _unreadable(part)
            else:
                why = next((w for rel, rec in files.items() if (w := mismatch(self.path / rel, rec)) is not None),
                           None)
            if why is not None:
                log.warning("%s: unit %d is redone: %s (%s)", self.stage, unit, part_name(unit), why)
                bad.append(unit)
        return bad

    def _bad_finished_units(self, m: dict) -> list[int]:
        """Units of a finished stage whose files do not match its manifest (all units of an old manifest
        without file records are trusted)."""
        files = m.get("part_files")
        if not isinstance(files, dict):
            return []
        bad: set[int] = set()
        on_disk = {p.relative_to(self.path).as_posix() for name in [None, *(m.get("outputs") or {})]
                   for p in self._listed(name)}
        for rel in sorted(set(files) | on_disk):
            if not rel.rsplit("/", 1)[-1].startswith("part-"):
                continue
            why = mismatch(self.path / rel, files.get(rel))
            if why is not None:
                log.warning("%s: %s does not match the manifest (%s); its unit is redone", self.stage, rel, why)
                bad.add(int(rel.rsplit("/", 1)[-1].split("-")[1].split(".")[0]))
                if rel not in files:
                    (self.path / rel).unlink(missing_ok=True)
        return sorted(bad)

    def done_units(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self._listed()}

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
        for p in self._listed("dropped"):
            counts.update(pq.read_table(p, columns=["drop_reason"]).column("drop_reason").to_pylist())
        return dict(sorted(counts.items()))

    def finish(self, extra: dict[str, Any] | None = None) -> dict:
        """Aggregate the units into ``_manifest.json`` (the stage is then complete)."""
        counters: Counter[str] = Counter()
        done = self.done_units()
        for unit, c in self.unit_counters().items():
            if unit in done:
                counters.update(c)
        outputs = sorted(
            d.name for d in self.path.iterdir() if d.is_dir() and not d.name.startswith("_") and d.name != "dropped"
        )
        progress = json.loads((self.path / PROGRESS).read_text(encoding="utf-8"))
        parts = self._listed()
        files = [(p.relative_to(self.path).as_posix(), file_record(p)["sha256"]) for p in parts]
        for name in outputs:
            files += [(p.relative_to(self.path).as_posix(), file_record(p)["sha256"]) for p in self._listed(name)]
        records = {p.relative_to(self.path).as_posix(): file_record(p)
                   for name in [None, "dropped", *outputs] for p in self._listed(name)}
        now = time.time()
        manifest = {
            "stage": self.stage,
            **self._key,
            "rows_in": int(counters.pop("rows_in", 0)),
            "rows_out": self._rows(None),
            "rows_dropped": self._rows("dropped"),
            "drop_reasons": self.drop_counts(),
            "outputs": {name: self._rows(name) for name in outputs},
            "parts": len(parts),
            "counters": dict(sorted(counters.items())),
            "output_fingerprint": stable_hash(files),
            "part_files": records,
            "timings": {
                "first_started": progress.get("started"),
                "this_attempt_started": self._started,
                "finished": now,
                "this_attempt_seconds": round(now - self._started, 3),
                "units_resumed": self.resumed_units,
                "units_redone": sorted(set(self.redone_units)),
                "temporaries_removed": len(self.removed_temporaries),
            },
            **(extra or {}),
        }
        write_json_atomic(self.path / MANIFEST, manifest)
        return manifest

    def _rows(self, output: str | None) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self._listed(output))
