"""Verdicts kept across batches (an LRU in memory) and across runs (an SQLite file).

A GRPO run asks about the same (note, trace, code) many times: the n samples of a
group often agree, and resumed or repeated runs replay prompts. A verdict is a
pure function of its cache key (see :mod:`._render`), so it is kept:

* in memory, an LRU of ``cache_size`` verdicts, shared by every thread;
* on disk when ``cache_path`` is set: one SQLite table, written in batches from a
  worker thread (never on the event loop), WAL mode so that several processes (the
  reward workers of one run) can share the file.

Only verdicts are cached, never failures: a judge that was down must be asked again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["VerdictCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    score INTEGER NOT NULL,
    template TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL
)
"""
_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


class VerdictCache:
    """Memory LRU plus optional SQLite store of verdicts by cache key.

    Args:
        size: verdicts kept in memory (0: no memory cache).
        path: SQLite file (created with its directory), or None for no disk cache.
        template, model: recorded next to each verdict on disk (for inspection).
    """

    def __init__(self, size: int, path: str | None, *, template: str, model: str) -> None:
        self.size = size
        self.path = None if path is None else Path(path).expanduser()
        self._labels = (template, model)
        self._memory: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        self._unsaved: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._memory)

    # -- memory (any thread, no I/O) ---------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, int]:
        """The verdicts in memory among ``keys`` (marked as recently used)."""
        found: dict[str, int] = {}
        if not self.size:
            return found
        memory = self._memory
        with self._lock:
            for key in keys:
                score = memory.get(key)
                if score is not None:
                    memory.move_to_end(key)
                    found[key] = score
        return found

    def put(self, key: str, score: int) -> None:
        """Remember a verdict (in memory now; on disk at the next :meth:`flush`)."""
        with self._lock:
            if self.size:
                self._memory[key] = score
                self._memory.move_to_end(key)
                while len(self._memory) > self.size:
                    self._memory.popitem(last=False)
            if self.path is not None:
                self._unsaved[key] = score

    def _remember(self, found: Mapping[str, int]) -> None:
        if not self.size or not found:
            return
        with self._lock:
            for key, score in found.items():
                self._memory[key] = score
            while len(self._memory) > self.size:
                self._memory.popitem(last=False)

    # -- disk (blocking: call from a worker thread) ------------------------------------

    def load_many(self, keys: list[str]) -> dict[str, int]:
        """The verdicts on disk among ``keys``; they are also put in memory."""
        if self.path is None or not keys:
            return {}
        found: dict[str, int] = {}
        with self._db_lock:
            db = self._connection()
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, score FROM verdicts WHERE key IN ({marks})", chunk)
                found.update((str(k), int(s)) for k, s in rows)
        self._remember(found)
        return found

    def flush(self) -> int:
        """Write the verdicts added since the last flush to disk; returns how many."""
        if self.path is None:
            return 0
        with self._lock:
            pending, self._unsaved = self._unsaved, {}
        if not pending:
            return 0
        template, model = self._labels
        now = time.time()
        rows = [(k, s, template, model, now) for k, s in pending.items()]
        with self._db_lock:
            db = self._connection()
            with db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    def close(self) -> None:
        """Flush and close the SQLite connection (it reopens on next use)."""
        try:
            self.flush()
        finally:
            with self._db_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
            self._db = db
        return self._db
