"""Call records (CDRs): one row per call with its legs, built from the event stream.

``CdrWriter`` is an ``EventBus`` subscriber. ``CallStarted`` inserts the row at once with
disposition ``"in progress"``, so a crash still leaves a trace; every later event of the call
updates it (one small SQLite transaction), and ``CallEnded`` closes it: end time, duration,
billable seconds, disposition, who hung up and why. At start-up, before the writer runs,
``CdrStore.recover_interrupted(now)`` closes the rows a crash left open as ``"interrupted"``.

Times are wall-clock seconds since the epoch. ``duration`` runs from start to end (seconds,
rounded to the millisecond); ``billable`` from the first answer to the end, in whole seconds
rounded up (what per-second billing charges), 0 if nothing answered. ``callee`` starts as the
party the call was routed to and becomes the party of the B leg that answered (the agent who
took a queue call); ``dialed`` keeps what the caller dialed.

The SQLite file is the store's alone (its schema version lives in ``PRAGMA user_version``): keep
it apart from the location store (``[cdr] path`` in the config). WAL mode with
``synchronous=NORMAL``: a commit survives the process being killed, and readers (``pbx cdr
export``) never block the writer.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from pbx._sqlite import open_db
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
    HangupSide,
    LegEnded,
    LegStarted,
    Reason,
    RecordingStarted,
    RuleMatched,
)
from pbx.region import Region

__all__ = ["CSV_COLUMNS", "SCHEMA_VERSION", "CallRecord", "CdrStore", "CdrWriter",
           "Disposition", "LegRecord", "disposition_for", "records_from_csv"]

log = logging.getLogger("pbx.cdr")


class Disposition(StrEnum):
    """How a call ended (``IN_PROGRESS`` until it has)."""

    IN_PROGRESS = "in progress"
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no answer"
    FAILED = "failed"
    ABANDONED = "abandoned"
    REJECTED_BY_RULE = "rejected by rule"
    INTERRUPTED = "interrupted"


_BY_REASON = {
    Reason.BUSY: Disposition.BUSY,
    Reason.NO_ANSWER: Disposition.NO_ANSWER,
    "timeout": Disposition.NO_ANSWER,
    Reason.CANCELLED: Disposition.ABANDONED,
    "abandoned": Disposition.ABANDONED,
    Reason.REJECTED_BY_RULE: Disposition.REJECTED_BY_RULE,
    Reason.FAILED: Disposition.FAILED,
    Reason.APP_ERROR: Disposition.FAILED,
}
_BY_STATUS = {
    486: Disposition.BUSY,        # Busy Here
    600: Disposition.BUSY,        # Busy Everywhere
    603: Disposition.BUSY,        # Decline: the callee refused, as good as busy for reports
    408: Disposition.NO_ANSWER,   # Request Timeout (no final answer in time)
    480: Disposition.NO_ANSWER,   # Temporarily Unavailable (not registered, no answer)
    487: Disposition.ABANDONED,   # Request Terminated: the caller cancelled
}
_FINAL = frozenset(Disposition) - {Disposition.IN_PROGRESS}


def disposition_for(*, answered: bool, status: int | None, reason: str, side: str,
                    override: str | None = None) -> Disposition:
    """The disposition of a call that ended.

    In order: a valid ``override``; ``reason`` "interrupted"; answered; a known ``reason`` token
    (busy, no_answer, cancelled, rule, failed, app_error); a known final SIP ``status`` (486/600/
    603 busy, 408/480 no answer, 487 abandoned); the caller hanging up first (abandoned); else
    failed.
    """
    if override is not None:
        if override in _FINAL:
            return Disposition(override)
        log.warning("ignoring unknown disposition override %r", override)
    if reason == Reason.INTERRUPTED:
        return Disposition.INTERRUPTED
    if answered:
        return Disposition.ANSWERED
    by_reason = _BY_REASON.get(reason)
    if by_reason is not None:
        return by_reason
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    if side == HangupSide.CALLER:
        return Disposition.ABANDONED
    return Disposition.FAILED


# Records ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class LegRecord:
    """One leg of a call: the caller's (role ``"caller"``) or one the PBX dialed."""

    leg_id: str
    role: str = "callee"
    party: str = ""
    dialed: str = ""
    start_time: float | None = None
    ring_time: float | None = None
    answer_time: float | None = None
    end_time: float | None = None
    status: int | None = None          # final SIP status when the leg failed with one
    reason: str = ""
    bridged_to: str = ""               # leg_id of the leg it was last bridged to


_LEG_FIELDS = tuple(f.name for f in dataclasses.fields(LegRecord))


@dataclass(slots=True)
class CallRecord:
    """One call. Empty text means unknown; ``None`` times mean it never happened."""

    call_id: str
    tenant: str = ""
    caller: str = ""
    callee: str = ""
    dialed: str = ""
    caller_region: str = ""            # Region.description ("广东省深圳市", "United States")
    caller_country: str = ""           # ISO 3166-1 alpha-2
    caller_province: str = ""
    caller_city: str = ""
    caller_carrier: str = ""
    start_time: float = 0.0
    ring_time: float | None = None
    answer_time: float | None = None
    end_time: float | None = None
    duration: float | None = None
    billable: int | None = None
    disposition: str = Disposition.IN_PROGRESS
    status: int | None = None
    hangup_side: str = ""
    hangup_cause: str = ""
    path: list[str] = field(default_factory=list)      # rules/apps taken: "rule:branch"
    recording: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    legs: list[LegRecord] = field(default_factory=list)
    seen_time: float | None = None     # last sign of life: last event or writer heartbeat

    def set_region(self, region: Region) -> None:
        self.caller_region = region.description
        self.caller_country = region.country or ""
        self.caller_province = region.province or ""
        self.caller_city = region.city or ""
        self.caller_carrier = region.carrier or ""

    def close(self, at: float, *, status: int | None, reason: str, side: str, cause: str,
              override: str | None = None) -> None:
        """End the call at ``at``: close open legs, compute duration, billable, disposition.

        ``status`` None falls back to the last final status a leg ended with.
        """
        at = max(at, self.start_time)
        self.end_time = at
        if status is None:
            for leg in self.legs:
                if leg.status is not None:
                    status = leg.status
        for leg in self.legs:
            if leg.end_time is None:
                leg.end_time = at
                if leg.role == "caller" and not leg.reason:
                    leg.status, leg.reason = status, reason
        self.status = status
        self.hangup_side = side
        self.hangup_cause = cause or reason
        self.disposition = disposition_for(answered=self.answer_time is not None,
                                           status=status, reason=reason, side=side,
                                           override=override)
        self.duration = round(at - self.start_time, 3)
        if self.answer_time is None:
            self.billable = 0
        else:
            self.billable = math.ceil(round(max(0.0, at - self.answer_time), 3))
        self.seen_time = max(self.seen_time or at, at)


# The store ----------------------------------------------------------------------------------------

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE call (
        call_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        dialed TEXT NOT NULL,
        caller_region TEXT NOT NULL,
        caller_country TEXT NOT NULL,
        caller_province TEXT NOT NULL,
        caller_city TEXT NOT NULL,
        caller_carrier TEXT NOT NULL,
        start_time REAL NOT NULL,
        ring_time REAL,
        answer_time REAL,
        end_time REAL,
        duration REAL,
        billable INTEGER,
        disposition TEXT NOT NULL,
        status INTEGER,
        hangup_side TEXT NOT NULL,
        hangup_cause TEXT NOT NULL,
        path TEXT NOT NULL,          -- JSON array of strings
        recording TEXT NOT NULL,
        data TEXT NOT NULL,          -- JSON object
        seen_time REAL
    );
    CREATE INDEX call_start ON call (start_time);
    CREATE INDEX call_caller ON call (caller, start_time);
    CREATE INDEX call_callee ON call (callee, start_time);
    CREATE INDEX call_dialed ON call (dialed, start_time);
    CREATE INDEX call_tenant ON call (tenant, start_time);
    CREATE INDEX call_open ON call (disposition) WHERE disposition = 'in progress';
    CREATE TABLE leg (
        call_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        leg_id TEXT NOT NULL,
        role TEXT NOT NULL,
        party TEXT NOT NULL,
        dialed TEXT NOT NULL,
        start_time REAL,
        ring_time REAL,
        answer_time REAL,
        end_time REAL,
        status INTEGER,
        reason TEXT NOT NULL,
        bridged_to TEXT NOT NULL,
        PRIMARY KEY (call_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX leg_party ON leg (party);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord) if f.name != "legs")
_LEG_FIELDS = tuple(f.name for f in dataclasses.fields(LegRecord))
_UPSERT_CALL = (
    f"INSERT INTO call ({', '.join(_CALL_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(_CALL_FIELDS))}) ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _CALL_FIELDS[1:]))
_INSERT_LEG = (f"INSERT INTO leg (call_id, position, {', '.join(_LEG_FIELDS)}) "
               f"VALUES (?, ?, {', '.join('?' * len(_LEG_FIELDS))})")
_SELECT_CALL = f"SELECT {', '.join(_CALL_FIELDS)} FROM call"
_SELECT_LEGS = f"SELECT call_id, {', '.join(_LEG_FIELDS)} FROM leg WHERE call_id IN "
_PATH = _CALL_FIELDS.index("path")
_DATA = _CALL_FIELDS.index("data")
_BATCH = 500

TimeArg = float | datetime | None


def _timestamp(value: TimeArg) -> float | None:
    """Seconds since the epoch; a naive datetime is local time."""
    if value is None or isinstance(value, int | float):
        return value
    return value.timestamp()


def _json(value: Any) -> str:
    # default=str: call data from apps may hold anything; a record is never lost over it.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class CdrStore:
    """Call records in one SQLite file (``":memory:"`` for tests).

    Methods run in the caller's thread and are quick (one indexed statement or a small
    transaction); ``iter_records`` streams in batches for exports of any size.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        memory = str(path) == ":memory:"
        if not memory and not create and not self.path.exists():
            raise PbxError(f"no call records at {self.path}")
        self._db: sqlite3.Connection | None = open_db(
            ":memory:" if memory else self.path, _MIGRATIONS, "call records")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise PbxError(f"call records {self.path} are closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> CdrStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # Writing ------------------------------------------------------------------------------------
    def put(self, *records: CallRecord) -> None:
        """Insert or replace each record with its legs, all in one transaction."""
        db = self._conn
        db.execute("BEGIN")
        try:
            for r in records:
                row = [getattr(r, name) for name in _CALL_FIELDS]
                row[_PATH] = _json(r.path)
                row[_DATA] = _json(r.data)
                db.execute(_UPSERT_CALL, row)
                db.execute("DELETE FROM leg WHERE call_id = ?", (r.call_id,))
                db.executemany(_INSERT_LEG, [
                    (r.call_id, i, *[getattr(leg, name) for name in _LEG_FIELDS])
                    for i, leg in enumerate(r.legs)])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def touch_open(self, now: float) -> int:
        """Record ``now`` as the last sign of life of every call in progress."""
        cur = self._conn.execute(
            "UPDATE call SET seen_time = ? WHERE disposition = ? AND "
            "(seen_time IS NULL OR seen_time < ?)", (now, Disposition.IN_PROGRESS, now))
        return cur.rowcount

    def recover_interrupted(self, now: float) -> list[str]:
        """Close the calls a crash left in progress as ``"interrupted"``; their call ids.

        Run it at start-up, before a ``CdrWriter`` writes. A call's end is its last sign of
        life (last event, or the writer's last ``heartbeat``), never later than ``now``.
        """
        records = list(self.iter_records(disposition=Disposition.IN_PROGRESS))
        for r in records:
            last = max(r.start_time, r.seen_time if r.seen_time is not None else r.start_time)
            r.close(min(now, last), status=None, reason=Reason.INTERRUPTED,
                    side=HangupSide.SYSTEM, cause="pbx restarted")
        if records:
            self.put(*records)
            log.warning("closed %d call record(s) left in progress as interrupted",
                        len(records))
        return [r.call_id for r in records]

    def purge(self, before: TimeArg) -> int:
        """Delete the closed calls that started before ``before``; how many (retention)."""
        db = self._conn
        params = (_timestamp(before), Disposition.IN_PROGRESS)
        where = "start_time < ? AND disposition != ?"
        db.execute("BEGIN")
        try:
            db.execute(f"DELETE FROM leg WHERE call_id IN (SELECT call_id FROM call WHERE {where})",
                       params)
            count = db.execute(f"DELETE FROM call WHERE {where}", params).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return count

    # Reading ------------------------------------------------------------------------------------
    def get(self, call_id: str) -> CallRecord | None:
        rows = self._conn.execute(f"{_SELECT_CALL} WHERE call_id = ?", (call_id,)).fetchall()
        records = self._with_legs(rows)
        return records[0] if records else None

    def query(self, *, since: TimeArg = None, until: TimeArg = None, caller: str | None = None,
              callee: str | None = None, dialed: str | None = None,
              disposition: str | None = None, tenant: str | None = None,
              limit: int | None = None, offset: int = 0) -> list[CallRecord]:
        """Records that started in ``[since, until)`` and match every given field exactly,
        oldest first."""
        where, params = _where(since, until, caller, callee, dialed, disposition, tenant)
        sql = f"{_SELECT_CALL}{where} ORDER BY start_time, call_id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        return self._with_legs(self._conn.execute(sql, params).fetchall())

    def count(self, *, since: TimeArg = None, until: TimeArg = None, caller: str | None = None,
              callee: str | None = None, dialed: str | None = None,
              disposition: str | None = None, tenant: str | None = None) -> int:
        where, params = _where(since, until, caller, callee, dialed, disposition, tenant)
        n: int = self._conn.execute(f"SELECT count(*) FROM call{where}", params).fetchone()[0]
        return n

    def iter_records(self, *, since: TimeArg = None, until: TimeArg = None,
                     caller: str | None = None, callee: str | None = None,
                     dialed: str | None = None, disposition: str | None = None,
                     tenant: str | None = None) -> Iterator[CallRecord]:
        """Like ``query`` without limits, read in batches so memory stays flat."""
        where, params = _where(since, until, caller, callee, dialed, disposition, tenant)
        cur = self._conn.execute(f"{_SELECT_CALL}{where} ORDER BY start_time, call_id", params)
        while rows := cur.fetchmany(_BATCH):
            yield from self._with_legs(rows)

    def _with_legs(self, rows: Sequence[Sequence[Any]]) -> list[CallRecord]:
        records: list[CallRecord] = []
        by_id: dict[str, CallRecord] = {}
        for row in rows:
            values = list(row)
            values[_PATH] = json.loads(values[_PATH])
            values[_DATA] = json.loads(values[_DATA])
            record = CallRecord(**dict(zip(_CALL_FIELDS, values, strict=True)))
            records.append(record)
            by_id[record.call_id] = record
        ids = list(by_id)
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start:start + _BATCH]
            sql = f"{_SELECT_LEGS}({', '.join('?' * len(chunk))}) ORDER BY call_id, position"
            for call_id, *leg in self._conn.execute(sql, chunk):
                by_id[call_id].legs.append(LegRecord(*leg))
        return records

    # Export -------------------------------------------------------------------------------------
    def export_csv(self, file: TextIO, *, since: TimeArg = None, until: TimeArg = None,
                   caller: str | None = None, callee: str | None = None,
                   dialed: str | None = None, disposition: str | None = None,
                   tenant: str | None = None) -> int:
        """Write the matching records as CSV (header row first); how many were written.

        Times are ISO 8601 in UTC to the millisecond; ``path``, ``data`` and ``legs`` are JSON.
        Open ``file`` with ``newline=""``.
        """
        out = csv.writer(file)
        out.writerow(CSV_COLUMNS)
        n = 0
        for r in self.iter_records(since=since, until=until, caller=caller, callee=callee,
                                   dialed=dialed, disposition=disposition, tenant=tenant):
            out.writerow(_csv_row(r))
            n += 1
        return n


def _where(since: TimeArg, until: TimeArg, caller: str | None, callee: str | None,
           dialed: str | None, disposition: str | None,
           tenant: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (("start_time >= ?", _timestamp(since)),
                          ("start_time < ?", _timestamp(until)),
                          ("caller = ?", caller), ("callee = ?", callee), ("dialed = ?", dialed),
                          ("disposition = ?", disposition), ("tenant = ?", tenant)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# CSV ----------------------------------------------------------------------------------------------

CSV_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(CallRecord) if f.name != "seen_time")
_TIME_FIELDS = frozenset({"start_time", "ring_time", "answer_time", "end_time"})


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _from_iso(text: str) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _csv_row(r: CallRecord) -> list[str]:
    row: list[str] = []
    for name in CSV_COLUMNS:
        value = getattr(r, name)
        if name in _TIME_FIELDS:
            row.append(_iso(value))
        elif name == "legs":
            row.append(_json([{k: _iso(v) if k in _TIME_FIELDS else v
                               for k, v in dataclasses.asdict(leg).items()} for leg in value]))
        elif name in ("path", "data"):
            row.append(_json(value))
        elif name == "duration":
            row.append("" if value is None else f"{value:.3f}")
        else:
            row.append("" if value is None else str(value))
    return row


def records_from_csv(file: TextIO) -> list[CallRecord]:
    """Read back what ``export_csv`` wrote (times to the millisecond; no ``seen_time``)."""
    records: list[CallRecord] = []
    reader = csv.DictReader(file)
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ValueError(f"unexpected CSV columns: {reader.fieldnames}")
    for row in reader:
        values: dict[str, Any] = dict(row)
        for name in _TIME_FIELDS:
            values[name] = _from_iso(row[name])
        values["start_time"] = values["start_time"] or 0.0
        values["duration"] = float(row["duration"]) if row["duration"] else None
        for name in ("billable", "status"):
            values[name] = int(row[name]) if row[name] else None
        values["path"] = json.loads(row["path"])
        values["data"] = json.loads(row["data"])
        legs: list[dict[str, Any]] = json.loads(row["legs"])
        for leg in legs:
            for name in _TIME_FIELDS:
                leg[name] = _from_iso(leg[name])
        values["legs"] = [LegRecord(**leg) for leg in legs]
        records.append(CallRecord(**values))
    return records


# The writer ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Live:
    record: CallRecord
    a_leg: str


class CdrWriter:
    """Builds call records from events: ``bus.subscribe(writer)``.

    ``region_lookup`` (e.g. ``pbx.region.region_of``) fills the caller's region when
    ``CallStarted`` brings none. Call ``heartbeat(now)`` every few seconds so that a crash is
    dated to within that period, and ``close(now)`` at shutdown for calls still up.

    ``deferred``: a call's start is written at once, its later changes when ``flush()`` is
    called (the PBX does every 50 ms), all changed records in one transaction. One commit per
    event was most of a call's cost in the B2BUA load benchmark; a crash loses at most the
    changes of the last flush period, and the call is still there, closed as interrupted.
    """

    def __init__(self, store: CdrStore, *,
                 region_lookup: Callable[[str], Region] | None = None,
                 deferred: bool = False) -> None:
        self.store = store
        self.region_lookup = region_lookup
        self.deferred = deferred
        self._live: dict[str, _Live] = {}
        self._pending: dict[str, CallRecord] = {}

    @property
    def active(self) -> int:
        """Calls started and not yet ended."""
        return len(self._live)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self._start(event)
            return
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return  # not about a call (registrations), or nothing a record keeps
        live = self._find(event)
        if live is None:
            return
        record = live.record
        record.seen_time = max(record.seen_time or event.at, event.at)
        if isinstance(event, CallEnded):
            record.close(event.at, status=event.status, reason=event.reason,
                         side=event.side, cause=event.cause, override=event.disposition)
            del self._live[event.call_id]
        else:
            handler(live, event)
        if self.deferred:
            self._pending[record.call_id] = record
        else:
            self.store.put(record)

    def flush(self) -> int:
        """Write the records changed since the last flush (``deferred``); how many."""
        if not self._pending:
            return 0
        records, self._pending = list(self._pending.values()), {}
        self.store.put(*records)
        return len(records)

    def heartbeat(self, now: float) -> None:
        self.flush()
        for live in self._live.values():
            live.record.seen_time = max(live.record.seen_time or now, now)
        self.store.touch_open(now)

    def close(self, now: float) -> None:
        """Close every call still up as interrupted (the PBX is stopping)."""
        self.flush()
        records = []
        for live in self._live.values():
            live.record.close(now, status=None, reason=Reason.INTERRUPTED,
                              side=HangupSide.SYSTEM, cause="pbx stopped")
            records.append(live.record)
        self._live.clear()
        if records:
            self.store.put(*records)

    def _start(self, e: CallStarted) -> None:
        if not e.call_id:
            log.warning("call.started without a call_id ignored")
            return
        if e.call_id in self._live or self.store.get(e.call_id) is not None:
            log.warning("duplicate call.started for %s ignored", e.call_id)
            return
        a_leg = e.leg_id or "a"
        record = CallRecord(e.call_id, tenant=e.tenant, caller=e.caller, callee=e.callee,
                            dialed=e.dialed, start_time=e.at, data=dict(e.data), seen_time=e.at,
                            legs=[LegRecord(a_leg, "caller", e.caller, e.dialed, e.at)])
        region = e.region
        if region is None and self.region_lookup is not None and e.caller:
            region = self.region_lookup(e.caller)
        if region is not None:
            record.set_region(region)
        if e.app:
            record.path.append(e.app)
        self._live[e.call_id] = _Live(record, a_leg)
        self.store.put(record)

    def _find(self, event: Event) -> _Live | None:
        live = self._live.get(event.call_id)
        if live is not None:
            return live
        pending = self._pending.get(event.call_id)
        if pending is not None and pending.disposition != Disposition.IN_PROGRESS:
            log.debug("%s for closed call %s ignored", event.kind, event.call_id)
            return None
        if not event.call_id:
            log.warning("%s without a call_id ignored", event.kind)
            return None
        stored = self.store.get(event.call_id)
        if stored is not None and stored.disposition != Disposition.IN_PROGRESS:
            log.debug("%s for closed call %s ignored", event.kind, event.call_id)
            return None
        if stored is None:
            # Its call.started was missed (subscribed late): keep what we can.
            log.warning("%s for unknown call %s: starting its record here", event.kind,
                        event.call_id)
            stored = CallRecord(event.call_id, tenant=event.tenant, start_time=event.at,
                                legs=[LegRecord("a", "caller", start_time=event.at)])
        a_leg = next((leg.leg_id for leg in stored.legs if leg.role == "caller"), "a")
        live = self._live[event.call_id] = _Live(stored, a_leg)
        return live


def _leg(live: _Live, leg_id: str, at: float) -> LegRecord:
    """The leg ``leg_id`` ("" is the A leg), created on first mention."""
    leg_id = leg_id or live.a_leg
    for leg in live.record.legs:
        if leg.leg_id == leg_id:
            return leg
    leg = LegRecord(leg_id, start_time=at)
    live.record.legs.append(leg)
    return leg


def _on_leg_started(live: _Live, e: Event) -> None:
    assert isinstance(e, LegStarted)
    leg = _leg(live, e.leg_id, e.at)
    leg.party = e.party
    leg.dialed = e.dialed


def _on_ringing(live: _Live, e: Event) -> None:
    assert isinstance(e, CallRinging)
    leg = _leg(live, e.leg_id, e.at)
    if leg.ring_time is None:
        leg.ring_time = e.at
    if live.record.ring_time is None:
        live.record.ring_time = e.at


def _on_answered(live: _Live, e: Event) -> None:
    assert isinstance(e, CallAnswered)
    leg = _leg(live, e.leg_id, e.at)
    if leg.answer_time is None:
        leg.answer_time = e.at
    if live.record.answer_time is None:
        live.record.answer_time = e.at
    if leg.role != "caller" and leg.party:
        live.record.callee = leg.party


def _on_bridged(live: _Live, e: Event) -> None:
    assert isinstance(e, CallBridged)
    leg = _leg(live, e.leg_id, e.at)
    peer = _leg(live, e.peer_leg_id, e.at)
    if e.peer and not peer.party:
        peer.party = e.peer
    leg.bridged_to = peer.leg_id
    peer.bridged_to = leg.leg_id
    if live.a_leg in (leg.leg_id, peer.leg_id):
        other = peer if leg.leg_id == live.a_leg else leg
        if other.party:
            live.record.callee = other.party


def _on_transferred(live: _Live, e: Event) -> None:
    assert isinstance(e, CallTransferred)
    live.record.path.append(f"transfer:{e.target}")


def _on_rule(live: _Live, e: Event) -> None:
    assert isinstance(e, RuleMatched)
    live.record.path.append(f"{e.rule}:{e.branch}" if e.branch else e.rule)


def _on_recording(live: _Live, e: Event) -> None:
    assert isinstance(e, RecordingStarted)
    live.record.recording = e.path


def _on_data(live: _Live, e: Event) -> None:
    assert isinstance(e, CallDataSet)
    live.record.data.update(e.data)


def _on_leg_ended(live: _Live, e: Event) -> None:
    assert isinstance(e, LegEnded)
    leg = _leg(live, e.leg_id, e.at)
    if leg.end_time is None:
        leg.end_time = e.at
    leg.status = e.status
    leg.reason = e.reason


def _on_nothing(live: _Live, e: Event) -> None:
    """Digits are not kept (they may be card numbers); the event still dates the call."""


_HANDLERS: dict[type[Event], Callable[[_Live, Event], None]] = {
    LegStarted: _on_leg_started,
    CallRinging: _on_ringing,
    CallAnswered: _on_answered,
    CallBridged: _on_bridged,
    CallTransferred: _on_transferred,
    RuleMatched: _on_rule,
    RecordingStarted: _on_recording,
    CallDataSet: _on_data,
    LegEnded: _on_leg_ended,
    DigitsReceived: _on_nothing,
    CallEnded: _on_nothing,   # handled in CdrWriter.__call__
}
