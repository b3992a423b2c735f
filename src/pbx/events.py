"""Typed call and registration events, and the in-process bus that fans them out.

Whatever happens to a call is published once, as a frozen event, on one ``EventBus``; the call
records (``pbx.cdr``), webhooks (``pbx.webhooks``), metrics (``pbx.metrics``) and the WebSocket
stream are subscribers. The publisher (the ``Call`` object, the registrar) never waits for them.

Every event carries ``call_id`` (our own opaque id, never a SIP Call-ID), ``at`` (wall-clock
seconds since the epoch, as the publisher saw it) and ``tenant``. ``leg_id`` ``""`` means the
call's first (A) leg. Events of one call are published in the order they happened; subscribers
rely on that order and on nothing else (calls interleave freely).

Subscribers:

- a plain callable is called synchronously inside ``publish``; an exception is logged and never
  reaches the publisher or the other subscribers;
- an ``async def`` callable gets its own bounded queue and worker task, so it sees the events in
  order without blocking the publisher (when the queue is full the oldest event is dropped and
  counted);
- ``bus.stream()`` is an async iterator with the same bounded, drop-oldest queue, for slow
  consumers such as a WebSocket.

``publish`` is not re-entrant: an event published by a subscriber is delivered after the current
event has reached every subscriber, so all subscribers see one global order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar

from pbx.region import Region

__all__ = [
    "EVENT_KINDS", "CallAnswered", "CallBridged", "CallDataSet", "CallEnded", "CallRinging",
    "CallStarted", "CallTransferred", "DigitsReceived", "Event", "EventBus", "HangupSide",
    "KindFilter", "LegEnded", "LegStarted", "Reason", "RecordingStarted", "RegistrationChanged",
    "RuleMatched", "Subscription", "event_from_dict",
]

log = logging.getLogger("pbx.events")


class HangupSide(StrEnum):
    """Who ended a call."""

    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"     # the PBX: an app, a rule, a timeout, a shutdown


class Reason(StrEnum):
    """Reason tokens understood by ``pbx.cdr.disposition_for`` (any other text is kept as is)."""

    NORMAL = "normal"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"        # the caller gave up before an answer
    REJECTED_BY_RULE = "rule"      # a routing rule refused the call (blacklist, hours...)
    FAILED = "failed"
    APP_ERROR = "app_error"        # the app raised; the call was torn down
    INTERRUPTED = "interrupted"    # the PBX stopped or crashed under the call


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields common to every event. Subclasses set ``kind``."""

    kind: ClassVar[str] = ""
    call_id: str = ""
    at: float
    tenant: str = ""

    @property
    def key(self) -> str:
        """The ordering key: events with the same key must be handled in publish order."""
        return self.call_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``kind`` first, then every field (``region`` as a dict)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Region):
                value = dataclasses.asdict(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The event ``to_dict`` produced; raises ``ValueError`` on an unknown kind or bad fields."""
    kind = data.get("kind")
    cls = EVENT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    args = {k: v for k, v in data.items() if k != "kind"}
    region = args.get("region")
    if isinstance(region, Mapping):
        args["region"] = Region(**region)
    try:
        return cls(**args)
    except TypeError as exc:
        raise ValueError(f"bad {kind} event: {exc}") from None


# The events ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    """A call entered the PBX (inbound INVITE accepted for processing, or an originated call)."""

    kind: ClassVar[str] = "call.started"
    caller: str
    callee: str
    dialed: str = ""                 # as the caller dialed it (callee is who we route to)
    region: Region | None = None     # of the caller (pbx.region.region_of)
    leg_id: str = ""                 # id of the A leg ("" means the call has one anonymous leg)
    app: str = ""                    # the app or rule set that takes the call
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegStarted(Event):
    """The PBX dialed another party for this call (a B leg: agent, extension, trunk)."""

    kind: ClassVar[str] = "leg.started"
    leg_id: str
    party: str
    dialed: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRinging(Event):
    """A leg is alerting (180, or 183 with early media)."""

    kind: ClassVar[str] = "call.ringing"
    leg_id: str = ""
    status: int = 180


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(Event):
    """A leg answered (2xx). The A leg answered means the PBX took the call (app or bridge)."""

    kind: ClassVar[str] = "call.answered"
    leg_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsReceived(Event):
    """DTMF collected on a leg (RFC 4733, SIP INFO or in-band)."""

    kind: ClassVar[str] = "call.digits"
    leg_id: str = ""
    digits: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallBridged(Event):
    """Two legs now hear each other."""

    kind: ClassVar[str] = "call.bridged"
    leg_id: str = ""
    peer_leg_id: str
    peer: str = ""                  # the party on the peer leg


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred(Event):
    """A leg was transferred (REFER, or an app's blind/attended transfer) to ``target``."""

    kind: ClassVar[str] = "call.transferred"
    leg_id: str = ""
    target: str
    attended: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMatched(Event):
    """A routing rule or app step chose ``branch`` for this call."""

    kind: ClassVar[str] = "rule.matched"
    rule: str
    branch: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(Event):
    """The call (or one leg) is being recorded to ``path``."""

    kind: ClassVar[str] = "call.recording"
    leg_id: str = ""
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDataSet(Event):
    """Call-associated data set by an app (merged into what the call already has)."""

    kind: ClassVar[str] = "call.data"
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEnded(Event):
    """A leg ended while the call goes on (an agent did not answer, a transfer completed...)."""

    kind: ClassVar[str] = "leg.ended"
    leg_id: str
    status: int | None = None       # final SIP status of the leg, if it failed with one
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    """The call is over; its last event.

    ``status``: final SIP status when the call failed with one (486, 480...); ``reason``: a
    ``Reason`` token or free text; ``side``: a ``HangupSide``; ``cause``: free text for people
    ("BYE", "Q.850 17", "queue timeout"). ``disposition`` overrides the one computed from the
    rest, for apps that know better (a queue deciding a call was abandoned).
    """

    kind: ClassVar[str] = "call.ended"
    status: int | None = None
    reason: str = Reason.NORMAL
    side: str = ""
    cause: str = ""
    disposition: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged(Event):
    """A binding was added, refreshed (``expires`` > 0) or removed (``expires`` == 0)."""

    kind: ClassVar[str] = "registration.changed"
    aor: str
    contact: str
    expires: int
    source: str = ""

    @property
    def key(self) -> str:
        return self.call_id or f"aor:{self.aor}"


EVENT_KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    CallStarted, LegStarted, CallRinging, CallAnswered, DigitsReceived, CallBridged,
    CallTransferred, RuleMatched, RecordingStarted, CallDataSet, LegEnded, CallEnded,
    RegistrationChanged)}
"""Every event class by its ``kind`` string."""


# Kind filters -------------------------------------------------------------------------------------

class KindFilter:
    """Matches event kinds against names (``"call.ended"``), classes, or ``"call.*"`` prefixes.

    ``None`` matches everything. A name that matches no known kind is a ``ValueError``, so a typo
    in a webhook's configuration fails at start instead of silently filtering everything out.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, kinds: Iterable[str | type[Event]] | None = None) -> None:
        self._exact: frozenset[str] | None = None
        self._prefixes: tuple[str, ...] = ()
        if kinds is None:
            return
        exact: set[str] = set()
        prefixes: list[str] = []
        for kind in kinds:
            name = kind if isinstance(kind, str) else kind.kind
            if name == "*":
                return
            if name.endswith(".*"):
                prefix = name[:-1]
                if not any(k.startswith(prefix) for k in EVENT_KINDS):
                    raise ValueError(f"no event kind matches {name!r}")
                prefixes.append(prefix)
            elif name in EVENT_KINDS:
                exact.add(name)
            else:
                raise ValueError(f"unknown event kind {name!r} "
                                 f"(known: {', '.join(sorted(EVENT_KINDS))})")
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __call__(self, kind: str) -> bool:
        if self._exact is None or kind in self._exact:
            return True
        return any(kind.startswith(p) for p in self._prefixes)


# The bus ------------------------------------------------------------------------------------------

Callback = Callable[[Event], object]


class _Queue:
    """A bounded FIFO that drops its oldest item when full, counting what it dropped."""

    __slots__ = ("bus", "dropped", "items", "maxsize")

    def __init__(self, maxsize: int, bus: EventBus) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be >= 1")
        self.maxsize = maxsize
        self.items: deque[Event] = deque()
        self.dropped = 0
        self.bus = bus

    def put(self, event: Event) -> None:
        if len(self.items) >= self.maxsize:
            self.items.popleft()
            self.dropped += 1
            self.bus.dropped += 1
        self.items.append(event)


class _Sync:
    __slots__ = ("callback", "matches")

    def __init__(self, callback: Callback, matches: KindFilter) -> None:
        self.callback = callback
        self.matches = matches

    def deliver(self, event: Event) -> None:
        try:
            result = self.callback(event)
        except Exception:
            log.exception("event subscriber %r failed on %s", self.callback, event.kind)
            return
        if inspect.iscoroutine(result):  # an async callable we did not recognise as such
            result.close()
            log.error("event subscriber %r returned a coroutine; subscribe it as async",
                      self.callback)


class _Async:
    """An async subscriber: its own queue, drained in order by one worker task at a time."""

    __slots__ = ("callback", "matches", "queue", "task")

    def __init__(self, callback: Callable[[Event], Awaitable[object]], matches: KindFilter,
                 maxsize: int, bus: EventBus) -> None:
        self.callback = callback
        self.matches = matches
        self.queue = _Queue(maxsize, bus)
        self.task: asyncio.Task[None] | None = None

    def deliver(self, event: Event) -> None:
        self.queue.put(event)
        self.kick()

    def kick(self) -> None:
        """Start the worker if there is work, none runs, and a loop is running."""
        if self.task is not None or not self.queue.items:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the events wait in the queue for drain() or the next publish
        self.task = loop.create_task(self._work())

    async def _work(self) -> None:
        try:
            while self.queue.items:
                event = self.queue.items.popleft()
                try:
                    await self.callback(event)
                except Exception:
                    log.exception("event subscriber %r failed on %s", self.callback,
                                  event.kind)
        finally:
            self.task = None


class Subscription:
    """``async for event in bus.stream(): ...`` with a bounded, drop-oldest queue.

    ``dropped`` counts the events lost because the consumer was too slow. ``close()`` (or leaving
    ``async with``) unsubscribes; events already queued are still yielded, then the iteration ends.
    """

    def __init__(self, bus: EventBus, kinds: Iterable[str | type[Event]] | None,
                 maxsize: int) -> None:
        self._queue = _Queue(maxsize, bus)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.matches = KindFilter(kinds)
        self._unsubscribe = bus._add(self)

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def __len__(self) -> int:
        return len(self._queue.items)

    def deliver(self, event: Event) -> None:
        self._queue.put(event)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> Event | None:
        """The next queued event, or None."""
        return self._queue.items.popleft() if self._queue.items else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue.items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.items.popleft()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_Subscriber = _Sync | _Async | Subscription


class EventBus:
    """Synchronous fan-out of events to subscribers, in one global order.

    ``queue_size`` bounds each async subscriber's queue (``stream`` takes its own).
    """

    def __init__(self, *, queue_size: int = 10_000) -> None:
        self._subscribers: tuple[_Subscriber, ...] = ()
        self._pending: deque[Event] = deque()
        self._publishing = False
        self._queue_size = queue_size
        self.published = 0
        self.dropped = 0        # events lost so far by full queues (async subscribers, streams)

    def subscribe(self, callback: Callback, kinds: Iterable[str | type[Event]] | None = None,
                  ) -> Callable[[], None]:
        """Call ``callback(event)`` for every event whose kind matches ``kinds`` (None: all).

        ``async def`` callbacks (or objects whose ``__call__`` is one) run in their own worker
        task. Returns the function that unsubscribes.
        """
        matches = KindFilter(kinds)
        sub: _Subscriber
        if _is_async(callback):
            sub = _Async(callback, matches, self._queue_size, self)  # type: ignore[arg-type]
        else:
            sub = _Sync(callback, matches)
        return self._add(sub)

    def stream(self, kinds: Iterable[str | type[Event]] | None = None, *,
               maxsize: int = 1000) -> Subscription:
        """An async iterator over the matching events published from now on."""
        return Subscription(self, kinds, maxsize)

    def _add(self, sub: _Subscriber) -> Callable[[], None]:
        self._subscribers = (*self._subscribers, sub)

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber; returns once sync ones have run."""
        self._pending.append(event)
        if self._publishing:
            return  # published from inside a subscriber: delivered after the current event
        self._publishing = True
        try:
            while self._pending:
                current = self._pending.popleft()
                self.published += 1
                for sub in self._subscribers:
                    if sub.matches(current.kind):
                        sub.deliver(current)
        finally:
            self._publishing = False

    async def drain(self) -> None:
        """Wait until every async subscriber has handled everything published so far."""
        while True:
            tasks: list[asyncio.Task[None]] = []
            for sub in self._subscribers:
                if isinstance(sub, _Async):
                    sub.kick()
                    if sub.task is not None:
                        tasks.append(sub.task)
            if not tasks:
                return
            await asyncio.wait(tasks)


def _is_async(callback: Callback) -> bool:
    if inspect.iscoroutinefunction(callback):
        return True
    call = getattr(callback, "__call__", None)  # noqa: B004 - we want the bound __call__
    return call is not None and inspect.iscoroutinefunction(call)
