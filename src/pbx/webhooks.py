"""Webhooks: events POSTed as signed JSON, durably, in order per call; and routing questions.

``WebhookDispatcher`` subscribes to the ``EventBus``. For each configured endpoint whose kind
filter matches, an event is first written to an outbox table in SQLite (inside ``publish``, so
once it returns a crash loses nothing), then POSTed by a delivery task:

- body: the event as JSON (``Event.to_dict()``); headers ``X-Pbx-Event`` (kind),
  ``X-Pbx-Delivery`` (an id that stays the same across retries: receivers dedupe on it, since
  delivery is at-least-once), ``X-Pbx-Timestamp`` (Unix seconds of this attempt) and, when the
  endpoint has a secret, ``X-Pbx-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." +
  body)>``. Receivers check it with ``verify_signature``.
- a 2xx deletes the row. A network error, timeout, 5xx, 408, 409, 425 or 429 is retried after
  ``backoff_delay`` (exponential with jitter from the injected ``rand``); any other 4xx, or a
  row older than ``max_age``, moves to the ``dead`` table (kept for inspection).
- order is kept per endpoint and per call (``Event.key``): a later event of a call waits until
  the earlier one is delivered or dead, while other calls' events go on.
- the outbox is its own SQLite file (WAL), not the call records' or the location store's: each
  file carries its own schema version. On start the dispatcher resumes whatever is left in it.

``ask`` POSTs a routing question ("which agent for this caller?") and returns the JSON answer,
or the fallback on timeout, error, non-2xx status, bad JSON or a failed ``validate``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from pbx import __version__
from pbx._sqlite import open_db
from pbx.errors import PbxError
from pbx.events import Event, EventBus, KindFilter
from pbx.metrics import Registry

__all__ = ["DeadLetter", "WebhookDispatcher", "WebhookEndpoint", "ask", "backoff_delay", "sign",
           "verify_signature"]

log = logging.getLogger("pbx.webhooks")

USER_AGENT = f"pbx-webhooks/{__version__}"
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_MAX_ANSWER = 1 << 20  # bytes of a routing answer


# Signatures ---------------------------------------------------------------------------------------

def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Pbx-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(_key(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str | bytes, timestamp: str, body: bytes, header: str, *,
                     now: float | None = None, tolerance: float = 300.0) -> bool:
    """True if ``header`` signs ``timestamp`` and ``body`` with ``secret`` (constant time).

    With ``now``, also reject a timestamp more than ``tolerance`` seconds away (replays).
    """
    if now is not None:
        try:
            if abs(now - int(timestamp)) > tolerance:
                return False
        except ValueError:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(),
                               header.strip().encode("utf-8", "replace"))


def _headers(kind: str, delivery: str, timestamp: str, body: bytes,
             secret: str | bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Pbx-Event": kind, "X-Pbx-Delivery": delivery, "X-Pbx-Timestamp": timestamp}
    if secret:
        headers["X-Pbx-Signature"] = sign(secret, timestamp, body)
    return headers


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds before retry number ``attempt`` (1 = first retry): ``base * 2**(attempt-1)``
    capped at ``cap``, then scaled into [50%, 100%] by ``rand()`` in [0, 1) ("equal jitter":
    never less than half, so retries stay spaced, yet receivers do not see them in lockstep)."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (0.5 + 0.5 * rand())


# Endpoints and the outbox -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """Where to POST events. ``kinds``: names or ``"call.*"`` prefixes (None: every event).
    ``name`` identifies the endpoint's rows in the outbox (default: the URL), so changing the
    URL of a named endpoint keeps its undelivered events."""

    url: str
    secret: str = field(default="", repr=False)
    kinds: tuple[str, ...] | None = None
    name: str = ""
    timeout: float = 10.0
    concurrency: int = 4            # deliveries in flight at once (for different calls)

    @property
    def id(self) -> str:
        return self.name or self.url


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event given up on: too old, or refused with a 4xx."""

    delivery: str
    endpoint: str
    key: str
    kind: str
    body: bytes
    created: float
    attempts: int
    failed_at: float
    error: str


@dataclass(slots=True)
class _Pending:
    id: int
    created: float
    next_try: float
    attempts: int


_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,   -- publish order
        delivery TEXT NOT NULL UNIQUE,
        endpoint TEXT NOT NULL,
        key TEXT NOT NULL,                      -- ordering key: the call id
        kind TEXT NOT NULL,
        body BLOB NOT NULL,
        created REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        last_error TEXT
    );
    CREATE TABLE dead (
        id INTEGER PRIMARY KEY,
        delivery TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        body BLOB NOT NULL,
        created REAL NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at REAL NOT NULL,
        error TEXT NOT NULL
    );
    CREATE INDEX dead_failed ON dead (failed_at);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_OK, _RETRY, _GIVE_UP = "ok", "retry", "give up"
QueueKey = tuple[str, str]  # (endpoint id, event key)


class WebhookDispatcher:
    """Durable, ordered, signed delivery of events to webhook endpoints.

    ``dispatcher = WebhookDispatcher(endpoints, "webhooks.sqlite3", bus=bus)``, then
    ``await dispatcher.start()`` (events published before are stored and sent then) and
    ``await dispatcher.stop()``. ``clock`` (wall-clock seconds), ``rand`` and ``sleep`` are
    injectable for tests. Counters go to ``metrics`` (one dispatcher per registry).
    """

    def __init__(self, endpoints: Iterable[WebhookEndpoint], outbox: str | Path, *,
                 bus: EventBus | None = None, base_delay: float = 1.0,
                 max_delay: float = 300.0, max_age: float = 86400.0,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 metrics: Registry | None = None) -> None:
        self.endpoints: dict[str, WebhookEndpoint] = {}
        self._filters: dict[str, KindFilter] = {}
        for ep in endpoints:
            if ep.id in self.endpoints:
                raise ValueError(f"duplicate webhook endpoint {ep.id!r}")
            if not ep.url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL must be http(s): {ep.url!r}")
            self.endpoints[ep.id] = ep
            self._filters[ep.id] = KindFilter(ep.kinds)
        self.base_delay, self.max_delay, self.max_age = base_delay, max_delay, max_age
        self._clock, self._rand, self._sleep = clock, rand, sleep
        self._queues: dict[QueueKey, deque[_Pending]] = {}
        self._tasks: dict[QueueKey, asyncio.Task[None]] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None   # set while running
        registry = metrics if metrics is not None else Registry()
        self.delivered = registry.counter("pbx_webhook_deliveries_total",
                                          "Webhook events delivered (2xx).", ["endpoint"])
        self.failures = registry.counter("pbx_webhook_failures_total",
                                         "Webhook delivery attempts that failed.", ["endpoint"])
        self.dead = registry.counter("pbx_webhook_dead_total",
                                     "Webhook events given up on (dead letters).", ["endpoint"])
        registry.computed("pbx_webhook_outbox_depth", "Webhook events waiting in the outbox.",
                          self._depths, ["endpoint"])
        self.path = Path(outbox)
        self._db = self._open(self.path)
        self._load()
        self._unsubscribe = bus.subscribe(self) if bus is not None else None

    # The outbox ---------------------------------------------------------------------------------
    def _open(self, path: Path) -> sqlite3.Connection | None:
        return open_db(path, _MIGRATIONS, "webhook outbox")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise PbxError(f"webhook outbox {self.path} is closed")
        return self._db

    def _load(self) -> None:
        """Queue what a previous run left undelivered; bury rows of removed endpoints."""
        rows = self._conn.execute("SELECT id, endpoint, key, created, next_try, attempts "
                                  "FROM outbox ORDER BY id").fetchall()
        for row_id, endpoint, key, created, next_try, attempts in rows:
            if endpoint not in self.endpoints:
                self._bury(row_id, "endpoint no longer configured", endpoint)
                continue
            self._queues.setdefault((endpoint, key), deque()).append(
                _Pending(row_id, created, next_try, attempts))
        if self._queues:
            log.info("webhook outbox: resuming %d event(s)", self.depth)

    def _bury(self, row_id: int, error: str, endpoint: str) -> None:
        db = self._conn
        db.execute("BEGIN")
        try:
            db.execute("INSERT INTO dead (id, delivery, endpoint, key, kind, body, created, "
                       "attempts, failed_at, error) SELECT id, delivery, endpoint, key, kind, "
                       "body, created, attempts, ?, ? FROM outbox WHERE id = ?",
                       (self._clock(), error, row_id))
            db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.dead.inc(endpoint=endpoint)
        log.error("webhook %s: gave up on event %d: %s", endpoint, row_id, error)

    @property
    def depth(self) -> int:
        """Events waiting in the outbox, all endpoints together."""
        return sum(len(q) for q in self._queues.values())

    def _depths(self) -> dict[tuple[str, ...], float]:
        depths: dict[tuple[str, ...], float] = {(ep,): 0 for ep in self.endpoints}
        for (ep, _), queue in self._queues.items():
            depths[(ep,)] += len(queue)
        return depths

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        rows = self._conn.execute(
            "SELECT delivery, endpoint, key, kind, body, created, attempts, failed_at, error "
            "FROM dead ORDER BY failed_at DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    # Publishing ---------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        """Store ``event`` for every endpoint that wants it (durable on return), then send."""
        targets = [ep for ep in self.endpoints if self._filters[ep](event.kind)]
        if not targets:
            return
        body = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()
        now = self._clock()
        key = event.key
        db = self._conn
        ids: list[int] = []
        db.execute("BEGIN")
        try:
            for ep in targets:
                cur = db.execute(
                    "INSERT INTO outbox (delivery, endpoint, key, kind, body, created, next_try) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (uuid.uuid4().hex, ep, key, event.kind, body, now, now))
                ids.append(cur.lastrowid or 0)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        for ep, row_id in zip(targets, ids, strict=True):
            qkey = (ep, key)
            self._queues.setdefault(qkey, deque()).append(_Pending(row_id, now, now, 0))
            self._kick(qkey)

    def _kick(self, qkey: QueueKey) -> None:
        if self._loop is not None and qkey not in self._tasks and qkey in self._queues:
            self._tasks[qkey] = self._loop.create_task(self._deliver(qkey))

    # Running ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start delivering (what the outbox holds first)."""
        if self._loop is not None:
            return
        if self._db is None:
            raise PbxError(f"webhook outbox {self.path} is closed: make a new dispatcher")
        self._session = aiohttp.ClientSession()
        self._sems = {ep.id: asyncio.Semaphore(max(1, ep.concurrency))
                      for ep in self.endpoints.values()}
        self._loop = asyncio.get_running_loop()
        for qkey in list(self._queues):
            self._kick(qkey)

    async def stop(self) -> None:
        """Stop delivering and close the outbox; undelivered events stay for the next run."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._loop = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def wait_idle(self) -> None:
        """Return once every queued event is delivered or dead (if started)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def _deliver(self, qkey: QueueKey) -> None:
        """Send the events of one (endpoint, call) in order, each until it succeeds or dies."""
        endpoint = self.endpoints[qkey[0]]
        queue = self._queues[qkey]
        try:
            while queue:
                item = queue[0]
                delay = item.next_try - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                async with self._sems[endpoint.id]:
                    outcome, error = await self._attempt(endpoint, item)
                if outcome == _OK:
                    self._conn.execute("DELETE FROM outbox WHERE id = ?", (item.id,))
                    self.delivered.inc(endpoint=endpoint.id)
                    queue.popleft()
                    continue
                item.attempts += 1
                self.failures.inc(endpoint=endpoint.id)
                now = self._clock()
                if outcome == _GIVE_UP or now - item.created >= self.max_age:
                    self._conn.execute("UPDATE outbox SET attempts = ? WHERE id = ?",
                                       (item.attempts, item.id))
                    self._bury(item.id, error, endpoint.id)
                    queue.popleft()
                    continue
                item.next_try = now + backoff_delay(item.attempts, base=self.base_delay,
                                                    cap=self.max_delay, rand=self._rand)
                log.warning("webhook %s: event %d failed (%s), attempt %d; retry in %.1f s",
                            endpoint.id, item.id, error, item.attempts, item.next_try - now)
                self._conn.execute(
                    "UPDATE outbox SET attempts = ?, next_try = ?, last_error = ? WHERE id = ?",
                    (item.attempts, item.next_try, error, item.id))
        finally:
            self._tasks.pop(qkey, None)
            if not queue and self._queues.get(qkey) is queue:
                del self._queues[qkey]

    async def _attempt(self, endpoint: WebhookEndpoint, item: _Pending) -> tuple[str, str]:
        row = self._conn.execute("SELECT delivery, kind, body FROM outbox WHERE id = ?",
                                 (item.id,)).fetchone()
        if row is None:
            return _OK, ""
        delivery, kind, body = row
        if self._session is None:
            raise PbxError("webhook dispatcher is not started")
        headers = _headers(kind, delivery, str(int(self._clock())), body, endpoint.secret)
        try:
            async with self._session.post(
                    endpoint.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=endpoint.timeout)) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _RETRY, f"{type(exc).__name__}: {exc}".rstrip(": ")
        if 200 <= status < 300:
            return _OK, ""
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            return _GIVE_UP, f"HTTP {status}"
        return _RETRY, f"HTTP {status}"

    async def ask(self, url: str, question: str, payload: Any, *, timeout: float = 2.0,
                  fallback: Any = None, secret: str | bytes = "",
                  validate: Callable[[Any], bool] | None = None) -> Any:
        """``ask`` on the dispatcher's HTTP session (one is made if it is not started)."""
        return await ask(url, question, payload, timeout=timeout, fallback=fallback,
                         secret=secret, validate=validate, session=self._session,
                         clock=self._clock)


# Routing questions --------------------------------------------------------------------------------

async def ask(url: str, question: str, payload: Any, *, timeout: float = 2.0,
              fallback: Any = None, secret: str | bytes = "",
              validate: Callable[[Any], bool] | None = None,
              session: aiohttp.ClientSession | None = None,
              clock: Callable[[], float] = time.time) -> Any:
    """POST ``{"question": question, "data": payload}`` to ``url`` and return the JSON answer.

    Signed like events (``X-Pbx-Event: question``, ``X-Pbx-Question``). Returns ``fallback``
    if no 2xx answer arrives within ``timeout`` seconds, if it is not JSON, or if
    ``validate(answer)`` is false; never raises for the remote side's faults.
    """
    body = json.dumps({"question": question, "data": payload}, ensure_ascii=False,
                      separators=(",", ":"), default=str).encode()
    headers = _headers("question", uuid.uuid4().hex, str(int(clock())), body, secret)
    headers["X-Pbx-Question"] = question
    own = session is None
    if session is None:
        session = aiohttp.ClientSession()
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, data=body, headers=headers,
                                    allow_redirects=False) as resp:
                status = resp.status
                raw = await resp.content.read(_MAX_ANSWER + 1)
        if not 200 <= status < 300:
            raise ValueError(f"HTTP {status}")
        if len(raw) > _MAX_ANSWER:
            raise ValueError("answer too large")
        answer = json.loads(raw)
        if validate is not None and not _accepts(validate, answer):
            raise ValueError(f"answer refused by validate: {answer!r:.200}")
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        log.warning("question %r to %s: %s; using the fallback", question, url,
                    f"{type(exc).__name__}: {exc}".rstrip(": "))
        return fallback
    finally:
        if own:
            await session.close()
    return answer


def _accepts(validate: Callable[[Any], bool], answer: Any) -> bool:
    try:
        return bool(validate(answer))
    except Exception:
        log.exception("validate failed on a routing answer")
        return False
