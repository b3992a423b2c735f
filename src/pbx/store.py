"""Embedded stores of the reference PBX: SQLite bindings and in-memory credentials.

``SqliteLocationStore`` runs its queries in the event-loop thread: in WAL mode with
``synchronous=NORMAL`` a commit writes the WAL without fsync and costs tens of microseconds, far
less than a thread hop would. The schema is versioned with ``PRAGMA user_version`` and migrated
forward on open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from pbx._sqlite import open_db
from pbx.config import User
from pbx.errors import PbxError
from pbx.sip.location import Binding, check_aor

__all__ = ["MemoryUserStore", "SqliteLocationStore", "UserStore"]

# _MIGRATIONS[n] takes the schema from version n to n + 1.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE binding (
        aor TEXT NOT NULL,
        position INTEGER NOT NULL,
        contact TEXT NOT NULL,
        expires_at REAL NOT NULL,
        q REAL NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        source TEXT,
        instance TEXT,
        reg_id INTEGER,
        path TEXT NOT NULL,
        PRIMARY KEY (aor, position)
    ) WITHOUT ROWID;
    CREATE INDEX binding_expires ON binding (expires_at);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT = ("INSERT INTO binding (aor, position, contact, expires_at, q, call_id, cseq, source, "
           "instance, reg_id, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_SELECT = ("SELECT contact, expires_at, q, call_id, cseq, source, instance, reg_id, path "
           "FROM binding WHERE aor = ? ORDER BY position")


class SqliteLocationStore:
    """A ``LocationStore`` in one SQLite file (created with its parent directory if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = open_db(self.path, _MIGRATIONS, "location store")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise PbxError(f"location store {self.path} is closed")
        return self._db

    async def load(self, aor: str) -> list[Binding]:
        rows = self._conn.execute(_SELECT, (aor,)).fetchall()
        return [Binding(aor, contact, expires_at, q, call_id, cseq, source, instance, reg_id,
                        tuple(json.loads(path)))
                for contact, expires_at, q, call_id, cseq, source, instance, reg_id, path in rows]

    async def save(self, aor: str, bindings: list[Binding]) -> None:
        await self.save_many({aor: bindings})

    async def save_many(self, items: Mapping[str, list[Binding]]) -> None:
        for aor, bindings in items.items():
            check_aor(aor, bindings)
        if not items:
            return
        db = self._conn
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM binding WHERE aor = ?", [(aor,) for aor in items])
            db.executemany(_INSERT, [
                (aor, i, b.contact, b.expires_at, b.q, b.call_id, b.cseq, b.source,
                 b.instance, b.reg_id, json.dumps(list(b.path)) if b.path else "[]")
                for aor, bindings in items.items() for i, b in enumerate(bindings)])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def all_aors(self) -> list[str]:
        return [aor for (aor,) in self._conn.execute(
            "SELECT DISTINCT aor FROM binding ORDER BY aor")]

    async def purge_expired(self, now: float) -> int:
        cur = self._conn.execute("DELETE FROM binding WHERE expires_at <= ?", (now,))
        return cur.rowcount

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class UserStore(Protocol):
    """Digest credentials by user name."""

    def get_ha1(self, user: str, algorithm: str) -> str | None:
        """HA1 hex of ``user`` for ``algorithm`` ("MD5" or "SHA-256", "-sess" variants too),
        or None if the user is unknown or has no HA1 for it."""
        ...


class MemoryUserStore:
    """A ``UserStore`` built from the config's users: two dict lookups, O(1)."""

    def __init__(self, users: Iterable[User]) -> None:
        self._ha1: dict[str, dict[str, str]] = {"MD5": {}, "SHA-256": {}}
        seen: set[str] = set()
        for u in users:
            if u.user in seen:
                raise ValueError(f"duplicate user {u.user!r}")
            seen.add(u.user)
            if u.ha1_md5 is not None:
                self._ha1["MD5"][u.user] = u.ha1_md5
            if u.ha1_sha256 is not None:
                self._ha1["SHA-256"][u.user] = u.ha1_sha256

    def get_ha1(self, user: str, algorithm: str) -> str | None:
        algo = algorithm.upper().removesuffix("-SESS")
        table = self._ha1.get(algo)
        return None if table is None else table.get(user)
