"""Opening the embedded SQLite stores: one way for all of them.

WAL journal, ``synchronous=NORMAL`` (a crash loses at most the last transactions, never the
file), a busy timeout, and schema migrations counted in ``PRAGMA user_version``. A file written by
a newer pbx (a higher version than we know) is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from pbx.errors import PbxError

__all__ = ["open_db"]


def open_db(path: str | Path, migrations: Sequence[str], what: str) -> sqlite3.Connection:
    """Connect (autocommit; callers BEGIN/COMMIT themselves) and bring the schema up to date.

    ``path`` ``":memory:"`` opens a private in-memory database; otherwise the parent directory
    is created. ``what`` names the store in errors ("location store", "call records", ...).
    """
    memory = str(path) == ":memory:"
    try:
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(":memory:" if memory else path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            db.close()
            raise PbxError(f"{what} {path} has schema version {version}; "
                           f"this pbx knows up to {len(migrations)}")
        for n in range(version, len(migrations)):
            # executescript() commits first, so BEGIN/COMMIT go inside the script.
            db.executescript(f"BEGIN; {migrations[n]} PRAGMA user_version = {n + 1}; COMMIT;")
    except (OSError, sqlite3.Error) as exc:
        raise PbxError(f"cannot open {what} {path}: {exc}") from exc
    return db
