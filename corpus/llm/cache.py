"""Content-addressed teacher cache: the journal that makes synthesis resumable and never pay twice.

The writable store is one SQLite file in WAL mode (``<cache_dir>/responses.sqlite3``); every answer
is handed to a writer thread the moment it arrives and committed there (answers arriving within 10 ms or
while a commit runs share one commit: group commit), so the event loop never waits on the disk and
a SIGKILL loses at most the answers of the last ~10 ms, never a committed one. Several runs
(and processes) share the file. Read-only JSONL caches (the shipped
replay cache) are consulted after it. Only answers are stored (any finish reason); failures are not,
so a rerun retries exactly the failures.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from corpus.llm.request import Outcome

DB_NAME = "responses.sqlite3"
#: how long the writer gathers answers before one commit (the most a SIGKILL can lose)
GROUP_COMMIT_SECONDS = 0.01
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

    def __init__(self, cache_dir: Path | None, replay: Iterable[Path] = ()):
        self.cache_dir = cache_dir
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(cache_dir / DB_NAME, timeout=60, isolation_level=None,
                                           check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, status TEXT, output TEXT,"
                    " finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, response_id TEXT,"
                    " response_model TEXT, created REAL)")
            except (OSError, sqlite3.Error) as exc:
                raise CacheError(f"teacher cache {cache_dir}: {exc}") from None
        self._pending: dict[str, tuple] = {}
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
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
        # pending answers first: one leaves _pending only after its commit, so looking there before the
        # database never misses an answer that is committed in between
        out = {k: _outcome(dict(zip(_FIELDS, row[2:9], strict=True)), "cache")
               for k in keys if (row := self._pending.get(k)) is not None}
        rest = [k for k in keys if k not in out]
        if self._db is not None:
            for i in range(0, len(rest), 500):
                chunk = rest[i:i + 500]
                cur = self._db.execute(
                    f"SELECT key,{','.join(_FIELDS)} FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for row in cur.fetchall():
                    out[row[0]] = _outcome(dict(zip(_FIELDS, row[1:], strict=True)), "cache")
        for k in rest:
            if k not in out and k in self._replay:
                out[k] = _outcome(self._replay[k], "replay")
        return out

    def put(self, key: str, model: str, o: Outcome) -> None:
        """Hand one answer to the writer thread (first answer for a key wins)."""
        if self._db is None:
            return
        if self._error is not None:
            raise CacheError(f"teacher cache {self.cache_dir}: writer failed: {self._error}")
        row = (key, model, o.status, o.output, o.finish_reason, o.prompt_tokens, o.completion_tokens, o.response_id,
               o.response_model, time.time())
        self._pending[key] = row
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="teacher-cache-writer", daemon=True)
            self._writer.start()
        self._queue.put(row)

    def _write_loop(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:  # keep draining the queue so flush() reports this instead of hanging
            self._error = exc
        stop = False
        while not stop:
            batch = [self._queue.get()]
            time.sleep(GROUP_COMMIT_SECONDS)  # let answers arriving meanwhile share this commit
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            rows = [r for r in batch if r is not None]
            if rows and db is not None:
                try:
                    db.execute("BEGIN")
                    db.executemany("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                    db.execute("COMMIT")
                except sqlite3.Error as exc:  # the answers stay in _pending: this process still uses them
                    self._error = exc
                else:
                    for r in rows:
                        if self._pending.get(r[0]) is r:
                            del self._pending[r[0]]
            for _ in batch:
                self._queue.task_done()
        if db is not None:
            db.close()

    def flush(self) -> None:
        """Wait until every answer handed over is committed."""
        if self._writer is not None:
            self._queue.join()
        if self._error is not None:
            raise CacheError(f"teacher cache {self.cache_dir}: writer failed: {self._error}")

    def __len__(self) -> int:
        n = len(self._replay)
        if self._db is not None:
            n += self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        return n

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._db is not None:
            self._db.close()
            self._db = None
