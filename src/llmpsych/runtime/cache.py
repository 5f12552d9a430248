"""A content-addressed cache of model calls in one SQLite file.

Keys are hashes of everything that determines a result (model fingerprint, messages, parameters,
seed); values are JSON. Writes are committed batch by batch, so a run killed at any moment keeps
every finished batch and a rerun executes only what is missing. WAL mode lets several processes
(for example two runs sharing the user cache) read and write safely: readers never wait, and a writer
takes the write lock when its transaction begins (BEGIN IMMEDIATE), waiting up to two minutes for another.

A cache that cannot be written (a read-only folder, a full disk) is a one-line UserError naming it.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError, disk_full_error, is_disk_full


class CallCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.Error) as error:
            self._raise_user_error(error, self.path)
            raise

    def _open(self) -> sqlite3.Connection:
        """Connect, switch to WAL and create the table. Two processes opening a new cache at the same moment
        can get "database is locked" at once from the journal-mode switch, whose lock upgrade SQLite refuses
        without calling its busy handler (to avoid a deadlock), so the whole setup is retried for two minutes."""
        deadline = time.monotonic() + 120
        while True:
            db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # WAL is stored in the file
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                           "value TEXT NOT NULL, created REAL NOT NULL)")
                db.execute("DELETE FROM calls WHERE 0")  # a write: a read-only cache fails here, before any work
                return db
            except sqlite3.OperationalError as error:
                db.close()
                if getattr(error, "sqlite_errorname", "").startswith("SQLITE_BUSY") and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.01, 0.1))
                    continue
                raise

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of those keys that are present."""
        keys = list(keys)
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):  # SQLite limits the number of bound parameters
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM calls WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]]) -> None:
        """Store several results in one transaction."""
        now = time.time()
        rows = [(key, kind, json.dumps(value), now) for key, value in items]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as error:
            self._raise_user_error(error, f"{self.path} ({len(rows)} {kind} results)")
            raise

    def _raise_user_error(self, error: Exception, what: object) -> None:
        """Raise a UserError when `error` is the user's to fix: a full disk, a read-only folder, a file that is
        not a SQLite database (anything else is left to the caller to re-raise)."""
        name = getattr(error, "sqlite_errorname", "")
        if is_disk_full(error) or name in ("SQLITE_FULL", "SQLITE_IOERR_WRITE"):
            raise disk_full_error(what, error) from None
        if isinstance(error, PermissionError) or name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            raise UserError(f"cache directory {self.path.parent}: cannot write the call cache {self.path.name} "
                            f"({error}); make the folder writable, or set LLMPSYCH_CACHE to another folder") from None
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            raise UserError(f"{self.path}: not a usable call cache ({error}); move it away to start an empty one, "
                            "or set LLMPSYCH_CACHE to another folder") from None
