"""Call records: event sequences to records, the SQLite store, crash recovery, CSV export."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pbx.cdr import (
    CSV_COLUMNS,
    SCHEMA_VERSION,
    CallRecord,
    CdrStore,
    CdrWriter,
    Disposition,
    LegRecord,
    disposition_for,
    records_from_csv,
)
from pbx.errors import PbxError
from pbx.events import (
    CallAnswered,
    CallBridged,
    CallDataSet,
    CallEnded,
    CallRinging,
    CallStarted,
    CallTransferred,
    DigitsReceived,
    Event,
    EventBus,
    LegEnded,
    LegStarted,
    RecordingStarted,
    RegistrationChanged,
    RuleMatched,
)
from pbx.region import Region

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC).timestamp()   # 1714550400.0


@pytest.fixture
def store() -> Iterator[CdrStore]:
    s = CdrStore(":memory:")
    yield s
    s.close()


def feed(writer: CdrWriter, events: list[Event]) -> None:
    for event in events:
        writer(event)


def start(call_id: str = "c1", at: float = T0, **kw: object) -> CallStarted:
    fields: dict[str, object] = {"caller": "13800138000", "callee": "1001", "dialed": "8001"}
    fields.update(kw)
    return CallStarted(call_id=call_id, at=at, **fields)  # type: ignore[arg-type]


# Dispositions -------------------------------------------------------------------------------------

SCENARIOS = [
    ("answered", [CallRinging(call_id="c1", at=T0 + 1), CallAnswered(call_id="c1", at=T0 + 3),
                  CallEnded(call_id="c1", at=T0 + 10.25, side="caller", cause="BYE")],
     Disposition.ANSWERED, 8),
    ("busy from the callee", [CallEnded(call_id="c1", at=T0 + 1, status=486, side="callee")],
     Disposition.BUSY, 0),
    ("busy from a B leg, then the PBX hangs up", [
        LegStarted(call_id="c1", at=T0 + 0.5, leg_id="b", party="1002"),
        LegEnded(call_id="c1", at=T0 + 1, leg_id="b", status=486),
        CallEnded(call_id="c1", at=T0 + 4, side="system")], Disposition.BUSY, 0),
    ("busy by reason", [CallEnded(call_id="c1", at=T0 + 1, reason="busy", side="system")],
     Disposition.BUSY, 0),
    ("no answer (480)", [CallRinging(call_id="c1", at=T0 + 1),
                         CallEnded(call_id="c1", at=T0 + 30, status=480, side="callee")],
     Disposition.NO_ANSWER, 0),
    ("no answer (timeout)", [CallRinging(call_id="c1", at=T0 + 1),
                             CallEnded(call_id="c1", at=T0 + 30, reason="no_answer",
                                       side="system")], Disposition.NO_ANSWER, 0),
    ("failed (503)", [CallEnded(call_id="c1", at=T0 + 1, status=503, side="callee")],
     Disposition.FAILED, 0),
    ("failed (app error)", [CallEnded(call_id="c1", at=T0 + 1, reason="app_error",
                                      side="system")], Disposition.FAILED, 0),
    ("abandoned (caller hung up while ringing)", [
        CallRinging(call_id="c1", at=T0 + 1),
        CallEnded(call_id="c1", at=T0 + 5, side="caller", cause="CANCEL")],
     Disposition.ABANDONED, 0),
    ("abandoned (487)", [CallEnded(call_id="c1", at=T0 + 5, status=487)],
     Disposition.ABANDONED, 0),
    ("rejected by rule", [RuleMatched(call_id="c1", at=T0, rule="blacklist", branch="reject"),
                          CallEnded(call_id="c1", at=T0 + 0.5, status=603, reason="rule",
                                    side="system")], Disposition.REJECTED_BY_RULE, 0),
    ("interrupted while answered", [CallAnswered(call_id="c1", at=T0 + 2),
                                    CallEnded(call_id="c1", at=T0 + 9, reason="interrupted",
                                              side="system")], Disposition.INTERRUPTED, 7),
    ("override by the app (queue abandon after IVR answer)", [
        CallAnswered(call_id="c1", at=T0 + 1),
        CallEnded(call_id="c1", at=T0 + 60, side="caller", disposition="abandoned")],
     Disposition.ABANDONED, 59),
]


@pytest.mark.parametrize(("name", "events", "disposition", "billable"), SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_event_sequences_give_each_disposition(store: CdrStore, name: str, events: list[Event],
                                               disposition: Disposition, billable: int) -> None:
    writer = CdrWriter(store)
    feed(writer, [start(), *events])
    record = store.get("c1")
    assert record is not None
    assert record.disposition == disposition
    assert record.billable == billable
    end = events[-1].at
    assert record.end_time == end
    assert record.duration == round(end - T0, 3)
    assert all(leg.end_time is not None for leg in record.legs)
    assert writer.active == 0


def test_every_final_disposition_is_reachable() -> None:
    reached = {s[2] for s in SCENARIOS}
    assert reached == set(Disposition) - {Disposition.IN_PROGRESS}


def test_disposition_precedence() -> None:
    def d(**kw: object) -> Disposition:
        args: dict[str, object] = {"answered": False, "status": None, "reason": "normal",
                                   "side": ""}
        args.update(kw)
        return disposition_for(**args)  # type: ignore[arg-type]

    assert d() == Disposition.FAILED
    assert d(answered=True, status=486) == Disposition.ANSWERED
    assert d(answered=True, reason="interrupted") == Disposition.INTERRUPTED
    assert d(reason="busy", status=480, side="caller") == Disposition.BUSY
    assert d(status=600) == d(status=603) == Disposition.BUSY
    assert d(status=408) == Disposition.NO_ANSWER
    assert d(status=486, side="caller") == Disposition.BUSY       # status before side
    assert d(side="caller") == Disposition.ABANDONED
    assert d(side="callee") == Disposition.FAILED
    assert d(answered=True, override="busy") == Disposition.BUSY
    assert d(answered=True, override="in progress") == Disposition.ANSWERED  # not final: ignored
    assert d(override="bogus", side="caller") == Disposition.ABANDONED


# A full call --------------------------------------------------------------------------------------

def test_queue_call_with_legs_bridge_recording_data_and_path(store: CdrStore) -> None:
    region = Region("+8613800138000", True, "CN", "北京市", "北京市", "北京市", "中国移动")
    writer = CdrWriter(store)
    feed(writer, [
        start(tenant="acme", region=region, leg_id="A", app="support", data={"lang": "zh"}),
        RuleMatched(call_id="c1", at=T0 + 0.1, rule="hours", branch="open"),
        CallAnswered(call_id="c1", at=T0 + 0.5, leg_id="A"),          # IVR answers
        DigitsReceived(call_id="c1", at=T0 + 5, leg_id="A", digits="4111111111111111"),
        CallDataSet(call_id="c1", at=T0 + 6, data={"account": "42", "lang": "en"}),
        LegStarted(call_id="c1", at=T0 + 7, leg_id="B1", party="agent7", dialed="1007"),
        CallRinging(call_id="c1", at=T0 + 7.5, leg_id="B1"),
        LegEnded(call_id="c1", at=T0 + 20, leg_id="B1", status=480, reason="no_answer"),
        LegStarted(call_id="c1", at=T0 + 21, leg_id="B2", party="agent9"),
        CallRinging(call_id="c1", at=T0 + 21.5, leg_id="B2"),
        CallAnswered(call_id="c1", at=T0 + 24, leg_id="B2"),
        CallBridged(call_id="c1", at=T0 + 24, leg_id="A", peer_leg_id="B2", peer="agent9"),
        RecordingStarted(call_id="c1", at=T0 + 24, path="rec/c1.wav"),
        CallTransferred(call_id="c1", at=T0 + 50, leg_id="B2", target="1500"),
        CallEnded(call_id="c1", at=T0 + 80, side="callee", cause="BYE"),
        RegistrationChanged(at=T0 + 81, aor="sip:1@x", contact="sip:1@y", expires=60),
    ])
    r = store.get("c1")
    assert r is not None
    assert (r.tenant, r.caller, r.callee, r.dialed) == ("acme", "13800138000", "agent9", "8001")
    assert (r.caller_region, r.caller_country, r.caller_province, r.caller_city,
            r.caller_carrier) == ("北京市", "CN", "北京市", "北京市", "中国移动")
    assert (r.start_time, r.ring_time, r.answer_time, r.end_time) == (
        T0, T0 + 7.5, T0 + 0.5, T0 + 80)
    assert (r.duration, r.billable) == (80.0, 80)   # billed from the IVR's answer
    assert (r.disposition, r.status, r.hangup_side, r.hangup_cause) == (
        "answered", 480, "callee", "BYE")
    assert r.path == ["support", "hours:open", "transfer:1500"]
    assert r.recording == "rec/c1.wav"
    assert r.data == {"lang": "en", "account": "42"}
    assert "4111" not in repr(r)                   # digits are never stored
    assert [leg.leg_id for leg in r.legs] == ["A", "B1", "B2"]
    a, b1, b2 = r.legs
    assert (a.role, a.party, a.answer_time, a.end_time, a.bridged_to) == (
        "caller", "13800138000", T0 + 0.5, T0 + 80, "B2")
    assert (b1.role, b1.party, b1.dialed, b1.ring_time, b1.end_time, b1.status, b1.reason) == (
        "callee", "agent7", "1007", T0 + 7.5, T0 + 20, 480, "no_answer")
    assert (b2.start_time, b2.answer_time, b2.end_time, b2.bridged_to) == (
        T0 + 21, T0 + 24, T0 + 80, "A")
    assert r.seen_time == T0 + 80


def test_the_row_exists_from_the_first_event(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite3"
    with CdrStore(path) as store:
        writer = CdrWriter(store, region_lookup=lambda n: Region(n, True, "US", None, "Dallas",
                                                                 "Dallas, TX"))
        writer(start(caller="+12145550100"))
        with CdrStore(path, create=False) as reader:     # another connection sees it
            r = reader.get("c1")
            assert r is not None
            assert (r.disposition, r.end_time, r.duration, r.billable) == (
                "in progress", None, None, None)
            assert (r.caller_country, r.caller_city, r.caller_region) == (
                "US", "Dallas", "Dallas, TX")
            assert [(leg.leg_id, leg.role) for leg in r.legs] == [("a", "caller")]
        writer(CallAnswered(call_id="c1", at=T0 + 1))
        with CdrStore(path, create=False) as reader:
            r = reader.get("c1")
            assert r is not None and r.answer_time == T0 + 1


def test_unknown_late_and_duplicate_events(store: CdrStore,
                                           caplog: pytest.LogCaptureFixture) -> None:
    writer = CdrWriter(store)
    writer(CallAnswered(call_id="orphan", at=T0 + 5, tenant="t"))   # started missed
    writer(CallEnded(call_id="orphan", at=T0 + 9, side="caller"))
    r = store.get("orphan")
    assert r is not None
    assert (r.start_time, r.tenant, r.disposition, r.billable) == (T0 + 5, "t", "answered", 4)
    feed(writer, [start(), CallEnded(call_id="c1", at=T0 + 2, status=486)])
    writer(start(at=T0 + 3))                                # duplicate start: ignored
    writer(CallAnswered(call_id="c1", at=T0 + 4))           # after the end: ignored
    writer(CallAnswered(at=T0 + 4))                         # no call id: ignored
    r = store.get("c1")
    assert r is not None
    assert (r.start_time, r.answer_time, r.disposition) == (T0, None, "busy")
    assert "duplicate call.started" in caplog.text
    assert store.count() == 2


def test_a_new_writer_resumes_a_call_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite3"
    with CdrStore(path) as store:
        feed(CdrWriter(store), [start(leg_id="X"), CallAnswered(call_id="c1", at=T0 + 1)])
    with CdrStore(path) as store:
        feed(CdrWriter(store), [CallRinging(call_id="c1", at=T0 + 0.5, leg_id="X"),
                                CallEnded(call_id="c1", at=T0 + 5, side="caller")])
        r = store.get("c1")
        assert r is not None
        assert (r.disposition, r.billable, r.legs[0].leg_id, r.legs[0].ring_time) == (
            "answered", 4, "X", T0 + 0.5)


def test_data_that_is_not_json_is_kept_as_text(store: CdrStore) -> None:
    feed(CdrWriter(store), [start(data={"when": datetime(2024, 1, 2, tzinfo=UTC)}),
                            CallEnded(call_id="c1", at=T0 + 1)])
    r = store.get("c1")
    assert r is not None and r.data == {"when": "2024-01-02 00:00:00+00:00"}


def test_a_crashing_subscriber_does_not_stop_the_records(store: CdrStore) -> None:
    bus = EventBus()
    bus.subscribe(lambda e: 1 / 0)          # e.g. a broken app-level listener
    bus.subscribe(CdrWriter(store))
    bus.publish(start())
    bus.publish(CallEnded(call_id="c1", at=T0 + 1, reason="app_error", side="system"))
    r = store.get("c1")
    assert r is not None and r.disposition == "failed"


# Crash recovery -----------------------------------------------------------------------------------

CRASHER = textwrap.dedent("""
    import sys, time
    from pbx.cdr import CdrStore, CdrWriter
    from pbx.events import CallAnswered, CallEnded, CallStarted, EventBus
    bus = EventBus()
    writer = CdrWriter(CdrStore(sys.argv[1]))
    bus.subscribe(writer)
    t0 = float(sys.argv[2])
    bus.publish(CallStarted(call_id="up", at=t0, caller="1001", callee="1002"))
    bus.publish(CallAnswered(call_id="up", at=t0 + 2))
    bus.publish(CallStarted(call_id="ringing", at=t0 + 1, caller="1003", callee="1004"))
    bus.publish(CallStarted(call_id="done", at=t0, caller="1005", callee="1006"))
    bus.publish(CallEnded(call_id="done", at=t0 + 1, status=486))
    writer.heartbeat(t0 + 10.5)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_kill_9_mid_call_then_recover_marks_calls_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(path), str(T0)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with CdrStore(path) as store:
        assert store.count(disposition="in progress") == 2
        closed = store.recover_interrupted(now=T0 + 3600)
        assert sorted(closed) == ["ringing", "up"]
        up, ringing, done = (store.get(x) for x in ("up", "ringing", "done"))
        assert up is not None and ringing is not None and done is not None
        # Ended at the last sign of life (the heartbeat), not at the restart an hour later.
        assert (up.disposition, up.end_time, up.duration, up.billable) == (
            "interrupted", T0 + 10.5, 10.5, 9)
        assert (up.hangup_side, up.hangup_cause) == ("system", "pbx restarted")
        assert (ringing.disposition, ringing.billable, ringing.legs[0].end_time) == (
            "interrupted", 0, T0 + 10.5)
        assert done.disposition == "busy"
        assert store.recover_interrupted(now=T0 + 7200) == []     # idempotent


def test_recover_never_ends_a_call_after_now_or_before_its_start(store: CdrStore) -> None:
    writer = CdrWriter(store)
    feed(writer, [start("a", T0), start("b", T0 + 100)])
    writer.heartbeat(T0 + 500)
    assert sorted(store.recover_interrupted(now=T0 + 50)) == ["a", "b"]
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert a.end_time == T0 + 50           # clamped to now
    assert b.end_time == T0 + 100          # now is before its start: zero length


def test_writer_close_ends_calls_still_up(store: CdrStore) -> None:
    writer = CdrWriter(store)
    feed(writer, [start(), CallAnswered(call_id="c1", at=T0 + 1)])
    writer.close(T0 + 3)
    r = store.get("c1")
    assert r is not None
    assert (r.disposition, r.billable, r.hangup_cause, writer.active) == (
        "interrupted", 2, "pbx stopped", 0)


# The store ----------------------------------------------------------------------------------------

def _records(store: CdrStore) -> None:
    writer = CdrWriter(store)
    rows = [("c1", T0, "1001", "2001", "8001", "t1", 486),
            ("c2", T0 + 60, "1002", "2001", "8001", "t1", None),
            ("c3", T0 + 120, "1001", "2002", "8002", "t2", None),
            ("c4", T0 + 180, "1003", "2003", "8001", "t2", 480)]
    for call_id, at, caller, callee, dialed, tenant, status in rows:
        writer(start(call_id, at, caller=caller, callee=callee, dialed=dialed, tenant=tenant))
        if status is None:
            writer(CallAnswered(call_id=call_id, at=at + 1))
        writer(CallEnded(call_id=call_id, at=at + 10, status=status))


def test_query_filters_order_and_paging(store: CdrStore) -> None:
    _records(store)

    def ids(**kw: object) -> list[str]:
        return [r.call_id for r in store.query(**kw)]  # type: ignore[arg-type]

    assert ids() == ["c1", "c2", "c3", "c4"]
    assert ids(since=T0 + 60) == ["c2", "c3", "c4"]
    assert ids(since=T0 + 60, until=T0 + 180) == ["c2", "c3"]
    beijing = timezone(timedelta(hours=8))
    assert ids(since=datetime(2024, 5, 1, 16, 1, 1, tzinfo=beijing)) == ["c3", "c4"]
    assert ids(until=datetime(2024, 5, 1, 16, 1, tzinfo=beijing)) == ["c1"]
    assert ids(caller="1001") == ["c1", "c3"]
    assert ids(callee="2001") == ["c1", "c2"]
    assert ids(dialed="8002") == ["c3"]
    assert ids(disposition="answered") == ["c2", "c3"]
    assert ids(disposition="no answer") == ["c4"]
    assert ids(tenant="t2", caller="1001") == ["c3"]
    assert ids(limit=2) == ["c1", "c2"]
    assert ids(limit=2, offset=3) == ["c4"]
    assert ids(offset=1) == ["c2", "c3", "c4"]
    assert store.count(tenant="t1") == 2
    assert store.count(caller="nobody") == 0
    assert all(len(r.legs) == 1 for r in store.query())


def test_iter_records_reads_in_batches(store: CdrStore) -> None:
    records = [CallRecord(f"c{i:04d}", start_time=T0 + i, disposition="answered",
                          legs=[LegRecord("a", "caller", f"{i}"), LegRecord("b", party="x")])
               for i in range(1234)]
    store.put(*records)
    got = list(store.iter_records())
    assert [r.call_id for r in got] == [r.call_id for r in records]
    assert got == records


def test_purge_deletes_old_closed_calls_only(store: CdrStore) -> None:
    _records(store)
    CdrWriter(store)(start("open", T0 - 1000))
    assert store.purge(T0 + 100) == 2
    assert [r.call_id for r in store.query()] == ["open", "c3", "c4"]
    leftover = store._conn.execute(  # legs went with their calls
        "SELECT count(*) FROM leg WHERE call_id IN ('c1', 'c2')").fetchone()[0]
    assert leftover == 0


def test_schema_indexes_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite3"
    CdrStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert {"call_start", "call_caller", "call_callee", "call_tenant", "call_open"} <= indexes
    plan = " ".join(str(row) for row in db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM call WHERE caller = ? AND start_time >= ?", ("1", 0)))
    assert "call_caller" in plan
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(PbxError, match="schema version"):
        CdrStore(path)
    with pytest.raises(PbxError, match="no call records"):
        CdrStore(tmp_path / "missing.sqlite3", create=False)
    store = CdrStore(tmp_path / "x.sqlite3")
    store.close()
    with pytest.raises(PbxError, match="closed"):
        store.get("c1")


# CSV ----------------------------------------------------------------------------------------------

def test_export_csv_in_process(store: CdrStore) -> None:
    _records(store)
    out = io.StringIO(newline="")
    assert store.export_csv(out, tenant="t2") == 2
    out.seek(0)
    rows = list(csv.reader(out))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row[0] for row in rows[1:]] == ["c3", "c4"]
    cell = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert cell["start_time"] == "2024-05-01T08:02:00.000+00:00"
    assert (cell["duration"], cell["billable"], cell["disposition"], cell["status"]) == (
        "10.000", "9", "answered", "")
    out.seek(0)
    expected = [dataclasses.replace(r, seen_time=None) for r in store.query(tenant="t2")]
    assert records_from_csv(out) == expected
    with pytest.raises(ValueError, match="unexpected CSV columns"):
        records_from_csv(io.StringIO("a,b\n1,2\n"))


CONFIG = """\
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "pbx.local"
[cdr]
path = "records/cdr.sqlite3"
"""


def test_csv_round_trip_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "pbx.toml"
    config.write_text(CONFIG)
    with CdrStore(tmp_path / "records" / "cdr.sqlite3") as store:
        writer = CdrWriter(store)
        _records(store)
        feed(writer, [
            start("tricky", T0 + 90.125, caller='"Zhang, San"', tenant="t1",
                  data={"note": 'line1\nline2, "quoted"', "n": [1, 2]},
                  region=Region("+8675512345678", True, "CN", "广东省", "深圳市", "广东省深圳市")),
            RuleMatched(call_id="tricky", at=T0 + 90.25, rule="vip", branch="gold"),
            LegStarted(call_id="tricky", at=T0 + 90.5, leg_id="b", party="agent,1"),
            CallAnswered(call_id="tricky", at=T0 + 91.75, leg_id="b"),
            CallEnded(call_id="tricky", at=T0 + 100.5, side="callee")])
        expected = [dataclasses.replace(r, seen_time=None)
                    for r in store.query(since=T0 + 60, until=T0 + 180)]
    assert [r.call_id for r in expected] == ["c2", "tricky", "c3"]
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "pbx", "cdr", "export", "--config", str(config), "--format", "csv",
         "--since", "2024-05-01T16:01:00+08:00", "--until", "2024-05-01T08:03:00Z",
         "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    with out.open(newline="", encoding="utf-8") as f:
        assert records_from_csv(f) == expected
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["caller"] == '"Zhang, San"'
    assert rows[1]["caller_region"] == "广东省深圳市"
    assert rows[1]["start_time"] == "2024-05-01T08:01:30.125+00:00"
    assert rows[1]["path"] == '["vip:gold"]'
    # Without --out, the CSV goes to stdout.
    proc = subprocess.run([sys.executable, "-m", "pbx", "cdr", "export", "--config", str(config),
                           "--format", "csv"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert len(list(csv.DictReader(io.StringIO(proc.stdout)))) == 5


def test_deferred_writer_writes_the_start_at_once_and_the_rest_on_flush(tmp_path: Path) -> None:
    from pbx.cdr import CdrStore, CdrWriter
    from pbx.events import CallAnswered, CallEnded, CallStarted, LegEnded

    store = CdrStore(tmp_path / "cdr.sqlite3")
    writer = CdrWriter(store, deferred=True)
    writer(CallStarted(call_id="d1", at=100.0, caller="1001", callee="200"))
    assert store.get("d1") is not None                       # a crash now still leaves it
    writer(CallAnswered(call_id="d1", at=101.0))
    writer(CallEnded(call_id="d1", at=110.0, side="caller"))
    stored = store.get("d1")
    assert stored is not None and stored.disposition == "in progress"
    writer(LegEnded(call_id="d1", at=111.0, leg_id="x"))      # after the end: ignored
    assert writer.flush() == 1 and writer.flush() == 0
    stored = store.get("d1")
    assert stored is not None and stored.disposition == "answered"
    assert stored.answer_time == 101.0 and stored.end_time == 110.0
    assert [leg.leg_id for leg in stored.legs] == ["a"]
    writer(CallStarted(call_id="d2", at=200.0, caller="1001", callee="200"))
    writer(CallAnswered(call_id="d2", at=201.0))
    writer.close(205.0)                                      # flushes, then closes d2
    stored = store.get("d2")
    assert stored is not None and stored.disposition == "interrupted"
    assert stored.answer_time == 201.0
