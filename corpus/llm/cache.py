"""Content-addressed teacher cache: the journal that makes synthesis resumable and never pay twice.

The writable store is one SQLite file in WAL mode (``<cache_dir>/responses.sqlite3``). Every answer is
committed by :meth:`ResponseCache.put` itself, synchronously, the moment it arrives and before the
request counts as done: there is no writer thread and no group-commit window, so a SIGKILL can only
lose an answer whose response body had not yet been read when the process died (those requests are
counted as ``interrupted_requests`` by the stage, see :mod:`corpus.llm.journal`).

Durability: ``PRAGMA synchronous=NORMAL`` by default. In WAL mode a committed transaction is in the
WAL file (the operating system's page cache) when ``COMMIT`` returns, so it survives the death of the
process (SIGKILL, OOM kill, crash) without an fsync per answer; only an operating-system crash or a
power loss can drop the last transactions. ``synchronous=FULL`` (``synthesize.cache_synchronous:
full``) also survives those, at the price of one fsync per answer (milliseconds on most disks).

Several runs (and processes) share the file. Read-only JSONL caches (the shipped replay cache) are
consulted after it. Only answers are stored (any finish reason); failures are not, so a rerun retries
exactly the failures. The first answer stored for a key wins: a later ``put`` of the same key never
replaces it (``INSERT OR IGNORE``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from corpus.llm.request import Outcome

DB_NAME = "responses.sqlite3"
_FIELDS = ("status", "output", "finish_reason", "prompt_tokens", "completion_tokens", "response_id", "response_model")


class CacheError(RuntimeError):
    """The cache folder or a replay file cannot be used."""


def _outcome(row: dict, source: str) -> Outcome:
    return Outcome(status=row["status"], output=row.get("output"), finish_reason=row.get("finish_reason"),
                   prompt_tokens=int(row.get("prompt_tokens") or 0),
                   completion_tokens=int(row.get("completion_tokens") or 0), response_id=row.get("response_id"),
                   response_model=row.get("response_model"), source=source)


def read_jsonl_cache(path: Path) -> dict[str, dict]:
    """Entries of a JSONL cache file or of every ``*.jsonl`` in a folder, by key."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    out: dict[str, dict] = {}
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    out.setdefault(row["key"], row)
                except (ValueError, KeyError) as exc:
                    raise CacheError(f"{f}:{n}: not a cache entry ({exc})") from None
    return out


class ResponseCache:
    """Writable SQLite cache (optional) plus read-only JSONL replay caches."""

    def __init__(self, cache_dir: Path | None, replay: Iterable[Path] = (),
                 synchronous: Literal["normal", "full"] = "normal"):
        self.cache_dir = cache_dir
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(cache_dir / DB_NAME, timeout=60, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, status TEXT, output TEXT,"
                    " finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, response_id TEXT,"
                    " response_model TEXT, created REAL)")
            except (OSError, sqlite3.Error) as exc:
                raise CacheError(f"teacher cache {cache_dir}: {exc}") from None
        self._replay: dict[str, dict] = {}
        for p in replay:
            if p.exists():
                for k, v in read_jsonl_cache(p).items():
                    self._replay.setdefault(k, v)

    @property
    def path(self) -> Path | None:
        return self.cache_dir / DB_NAME if self.cache_dir else None

    def get(self, key: str) -> Outcome | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        if self._db is not None:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                cur = self._db.execute(
                    f"SELECT key,{','.join(_FIELDS)} FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for row in cur.fetchall():
                    out[row[0]] = _outcome(dict(zip(_FIELDS, row[1:], strict=True)), "cache")
        for k in keys:
            if k not in out and k in self._replay:
                out[k] = _outcome(self._replay[k], "replay")
        return out

    def put(self, key: str, model: str, o: Outcome) -> None:
        """Commit one answer now (first answer for a key wins); returns when it is in the database."""
        self.put_many([(key, model, o)])

    def put_many(self, items: Iterable[tuple[str, str, Outcome]]) -> None:
        """Commit several answers in one transaction (batch mode collects a whole output file at once)."""
        if self._db is None:
            return
        now = time.time()
        rows = [(key, model, o.status, o.output, o.finish_reason, o.prompt_tokens, o.completion_tokens,
                 o.response_id, o.response_model, now) for key, model, o in items]
        if not rows:
            return
        try:
            if len(rows) == 1:  # autocommit: one statement is one transaction
                self._db.execute("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?)", rows[0])
            else:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise CacheError(f"teacher cache {self.cache_dir}: cannot store an answer: {exc}") from None

    def flush(self) -> None:
        """Nothing to wait for: every ``put`` has committed before it returned (kept for callers)."""

    def __len__(self) -> int:
        n = len(self._replay)
        if self._db is not None:
            n += self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        return n

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
