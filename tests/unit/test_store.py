"""Location stores (memory and SQLite) and the in-memory user store."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pbx.config import User, parse_config
from pbx.errors import PbxError
from pbx.sip.location import Binding, LocationStore, MemoryLocationStore
from pbx.store import SCHEMA_VERSION, MemoryUserStore, SqliteLocationStore, UserStore

T = TypeVar("T")
AOR = "sip:1001@pbx.local"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def binding(contact: str = "sip:1001@10.0.0.1:5062", expires_at: float = 1000.0,
            aor: str = AOR, **kw: Any) -> Binding:
    fields: dict[str, Any] = {"q": 1.0, "call_id": "c1", "cseq": 1, "source": None,
                              "instance": None, "reg_id": None}
    fields.update(kw)
    return Binding(aor, contact, expires_at, **fields)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocationStore]:
    s: LocationStore
    s = MemoryLocationStore() if request.param == "memory" else SqliteLocationStore(
        tmp_path / "loc.sqlite3")
    yield s
    run(s.close())


def test_save_and_load_round_trip(store: LocationStore) -> None:
    full = binding("sip:1001@[2001:db8::1]:5062;transport=tcp;ob", 1234.5, q=0.7,
                   call_id="abc@host", cseq=42, source="tcp:[2001:db8::1]:40000",
                   instance='"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"', reg_id=1,
                   path=("<sip:edge1.example;lr>", "<sip:edge2.example;lr;x=\"a,b\">"))
    bare = binding("sip:1001@10.0.0.2:5060", 99.0)
    run(store.save(AOR, [full, bare]))
    assert run(store.load(AOR)) == [full, bare]
    assert run(store.load("sip:nobody@pbx.local")) == []


def test_save_replaces_the_whole_set_and_empty_deletes(store: LocationStore) -> None:
    a, b, c = (binding(f"sip:1001@10.0.0.{i}") for i in (1, 2, 3))
    other = binding("sip:1002@10.0.0.9", aor="sip:1002@pbx.local")
    run(store.save(AOR, [a, b]))
    run(store.save("sip:1002@pbx.local", [other]))
    run(store.save(AOR, [c]))
    assert run(store.load(AOR)) == [c]
    assert run(store.all_aors()) == ["sip:1001@pbx.local", "sip:1002@pbx.local"]
    run(store.save(AOR, []))
    assert run(store.load(AOR)) == []
    assert run(store.all_aors()) == ["sip:1002@pbx.local"]
    assert run(store.load("sip:1002@pbx.local")) == [other]


def test_save_many_writes_every_aor_at_once_and_refuses_a_mixed_set(
        store: LocationStore) -> None:
    b1 = binding("sip:1001@10.0.0.1")
    b2 = binding("sip:1002@10.0.0.2", aor="sip:1002@pbx.local")
    run(store.save(AOR, [binding("sip:1001@10.0.0.7")]))
    run(store.save_many({AOR: [b1], "sip:1002@pbx.local": [b2], "sip:1003@pbx.local": []}))
    assert run(store.load(AOR)) == [b1]
    assert run(store.load("sip:1002@pbx.local")) == [b2]
    assert run(store.all_aors()) == [AOR, "sip:1002@pbx.local"]
    with pytest.raises(ValueError):
        run(store.save_many({AOR: [b1], "sip:1003@pbx.local": [b1]}))
    assert run(store.load(AOR)) == [b1]          # nothing of the refused batch was written
    assert run(store.load("sip:1003@pbx.local")) == []


def test_stored_bindings_are_copies(store: LocationStore) -> None:
    b = binding()
    run(store.save(AOR, [b]))
    b.expires_at = 5.0
    loaded = run(store.load(AOR))
    assert loaded[0].expires_at == 1000.0
    loaded[0].cseq = 99
    assert run(store.load(AOR))[0].cseq == 1


def test_purge_expired_counts_bindings_and_drops_empty_aors(store: LocationStore) -> None:
    run(store.save(AOR, [binding("sip:a@h", 100.0), binding("sip:b@h", 200.0)]))
    run(store.save("sip:x@pbx.local", [binding("sip:x@h", 150.0, aor="sip:x@pbx.local")]))
    assert run(store.purge_expired(99.0)) == 0
    assert run(store.purge_expired(150.0)) == 2  # expires_at == now is expired
    assert run(store.load(AOR)) == [binding("sip:b@h", 200.0)]
    assert run(store.all_aors()) == [AOR]
    assert run(store.purge_expired(1e12)) == 1
    assert run(store.all_aors()) == []


def test_a_binding_of_another_aor_is_refused(store: LocationStore) -> None:
    with pytest.raises(ValueError, match="saved under"):
        run(store.save(AOR, [binding(aor="sip:1002@pbx.local")]))
    assert run(store.all_aors()) == []


# SQLite specifics -------------------------------------------------------------------------------

def test_sqlite_bindings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "loc.sqlite3"  # parent directories are created
    b = binding(source="udp:192.0.2.1:5060", path=("<sip:p;lr>",), reg_id=2, instance="x")

    async def first() -> None:
        s = SqliteLocationStore(path)
        await s.save(AOR, [b])
        await s.close()
        await s.close()  # idempotent

    async def second() -> tuple[list[str], list[Binding]]:
        s = SqliteLocationStore(path)
        try:
            return await s.all_aors(), await s.load(AOR)
        finally:
            await s.close()

    run(first())
    assert run(second()) == ([AOR], [b])


def test_sqlite_file_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "loc.sqlite3"
    s = SqliteLocationStore(path)
    run(s.save(AOR, [binding()]))
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert db.execute("SELECT aor, contact FROM binding").fetchall() == [
            (AOR, "sip:1001@10.0.0.1:5062")]
    finally:
        db.close()
        run(s.close())


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "loc.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(PbxError, match="schema version 2"):
        SqliteLocationStore(path)


def test_sqlite_reports_an_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(PbxError, match="cannot open location store"):
        SqliteLocationStore(tmp_path / "file" / "loc.sqlite3")


def test_sqlite_save_is_atomic(tmp_path: Path) -> None:
    s = SqliteLocationStore(tmp_path / "loc.sqlite3")
    good = binding()
    run(s.save(AOR, [good]))
    bad = binding("sip:bad@h", cseq=object())  # cannot be bound: fails mid-transaction
    with pytest.raises(sqlite3.Error):
        run(s.save(AOR, [binding("sip:new@h"), bad]))
    assert run(s.load(AOR)) == [good]
    run(s.save(AOR, [binding("sip:new@h")]))  # the connection is still usable
    assert [b.contact for b in run(s.load(AOR))] == ["sip:new@h"]
    run(s.close())


def test_sqlite_use_after_close_is_an_error(tmp_path: Path) -> None:
    s = SqliteLocationStore(tmp_path / "loc.sqlite3")
    run(s.close())
    with pytest.raises(PbxError, match="closed"):
        run(s.load(AOR))


# Users ----------------------------------------------------------------------------------------------

def test_memory_user_store_from_config() -> None:
    config = parse_config('[sip]\nlisten = ["udp:127.0.0.1:5060"]\ndomain = "pbx.local"\n'
                          '[[users]]\nuser = "1001"\npassword = "pw"\n'
                          '[[users]]\nuser = "legacy"\nha1 = "' + "a" * 32 + '"\n', "t.toml")
    users: UserStore = MemoryUserStore(config.users)
    md5 = hashlib.md5(b"1001:pbx.local:pw").hexdigest()
    sha = hashlib.sha256(b"1001:pbx.local:pw").hexdigest()
    assert users.get_ha1("1001", "MD5") == md5
    assert users.get_ha1("1001", "md5-sess") == md5
    assert users.get_ha1("1001", "SHA-256") == sha
    assert users.get_ha1("1001", "SHA-256-sess") == sha
    assert users.get_ha1("legacy", "MD5") == "a" * 32
    assert users.get_ha1("legacy", "SHA-256") is None
    assert users.get_ha1("1001", "SHA-512-256") is None
    assert users.get_ha1("nobody", "MD5") is None
    assert users.get_ha1("LEGACY", "MD5") is None  # user parts are case-sensitive


def test_memory_user_store_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        MemoryUserStore([User("a", "0" * 32), User("a", "1" * 32)])
