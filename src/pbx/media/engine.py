"""The media engine: every RTP socket of the process and one 20 ms media clock (an asyncio shell).

Two backends behind one interface, with the same behaviour:

- ``native`` (cext/engine.c): one epoll descriptor holds every RTP socket and is registered with
  the event loop through ``add_reader``; each wake-up is ONE C call that reads every ready socket,
  checks each packet and relays it. Python never sees single packets. Under load it drains on
  a 1 ms timer instead of waking per packet (``EngineConfig.coalesce``).
- ``python``: one asyncio datagram endpoint per socket, running the pure-Python twins of the C
  per-packet code (``pbx.media._engine_core``) on every packet.

Phase 1 covers streams, the remote peer, symmetric RTP (latching), relaying two streams with
SSRC/sequence/timestamp rewriting, per-stream counters, RTP inactivity timeouts and the media
clock. Playing, recording, conferences and digit collection through the engine (jitter buffer,
decode, mix and encode in the C tick) are phase 2 and not offered here yet.

Ports: each stream takes an even RTP port from the configured range and reserves port + 1 for
RTCP, bound too unless the stream uses rtcp-mux (RFC 5761). RTCP is counted and dropped in
phase 1, on either port. IPv4 and IPv6 (bind addresses per engine or per stream).

Events (``MediaEvent``: RTP timeout, latched to a new address) are delivered in batches after a
drain or a tick, to the ``on_event`` callback when one is given, else to ``engine.events`` (an
``asyncio.Queue``). Run the loop on uvloop (when installed) to speed up the python backend and
the rest of the process; the engine does not choose the loop.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pbx.errors import PbxError
from pbx.media import _engine_native
from pbx.media._engine_core import Counters
from pbx.media.engine_aio import EV_LATCHED, EV_TIMEOUT, PyBackend

__all__ = [
    "TICK",
    "EngineConfig",
    "EngineError",
    "EngineStats",
    "MediaEngine",
    "MediaEvent",
    "PortRangeExhausted",
    "Stream",
    "StreamStats",
    "available_backends",
]

log = logging.getLogger("pbx.media.engine")

TICK = 0.020
"""The media clock period: one frame of 20 ms."""

_monotonic = time.monotonic
RawEvent = tuple[int, int, float, "tuple[str, int] | None"]


class EngineError(PbxError):
    """A media engine operation that cannot be done (engine not started, stream closed, ...)."""


class PortRangeExhausted(EngineError):
    """Every RTP port pair of the configured range is in use."""


def available_backends() -> tuple[str, ...]:
    """The backends this build can run: ``("native", "python")`` or ``("python",)``."""
    return ("native", "python") if _engine_native.AVAILABLE else ("python",)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Where the engine binds and how streams behave unless told otherwise."""

    port_min: int = 20000            # RTP ports are the even ones in [port_min, port_max - 1]
    port_max: int = 30000            # inclusive; port + 1 (RTCP) must fit
    bind_host: str = "127.0.0.1"     # IPv4 or IPv6 literal; streams may override
    backend: Literal["auto", "native", "python"] = "auto"
    rtcp_mux: bool = False           # default for open_stream: no separate RTCP socket
    rtp_timeout: float = 30.0        # default for set_remote; 0 disables
    latch_packets: int = 3           # consecutive packets from a new address before latching
    max_catchup_ticks: int = 5       # a late clock runs at most this many missed ticks
    coalesce: float = 0.001          # native, under load: drain on a timer this often (0: off)
    max_events: int = 4096           # native event ring; overflow is counted, never blocks

    def __post_init__(self) -> None:
        if not 0 < self.port_min <= self.port_max <= 65535:
            raise ValueError(f"bad RTP port range {self.port_min}-{self.port_max}")
        first = self.port_min + (self.port_min & 1)
        if first + 1 > self.port_max:
            raise ValueError(f"RTP port range {self.port_min}-{self.port_max} holds no even/odd pair")
        _family(self.bind_host)
        if self.backend not in ("auto", "native", "python"):
            raise ValueError(f"unknown media engine backend {self.backend!r}")
        if self.latch_packets < 1:
            raise ValueError("latch_packets must be at least 1")
        if (self.rtp_timeout < 0 or self.max_catchup_ticks < 0 or self.max_events < 1
                or not 0 <= self.coalesce <= TICK):
            raise ValueError("rtp_timeout, max_catchup_ticks, max_events or coalesce out of range")


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream since it was opened. Drops are by reason."""

    packets_in: int          # RTP accepted from the peer
    bytes_in: int
    packets_out: int         # RTP sent to the peer
    bytes_out: int
    rtcp_in: int             # RTCP received (counted and dropped in phase 1)
    dropped_malformed: int   # not RTP v2, or a length field that does not fit
    dropped_source: int      # not from the peer (including packets while latching)
    dropped_payload_type: int  # a payload type that was not negotiated
    dropped_unrouted: int    # accepted but nowhere to go (not relayed, or partner has no peer)
    send_errors: int
    latched: int             # times the peer address changed by latching
    timeouts: int            # RTP timeout events

    @property
    def dropped(self) -> int:
        return (self.dropped_malformed + self.dropped_source + self.dropped_payload_type
                + self.dropped_unrouted)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Engine-wide figures."""

    backend: str
    streams: int
    ticks: int
    overruns: int            # ticks run late by at least one period (caught up)
    ticks_skipped: int       # ticks dropped because the clock was further behind than allowed
    wakeups: int             # native: drain calls; python: datagrams
    rounds: int              # native: epoll rounds with ready sockets
    packets: int             # datagrams read
    max_batch: int           # most datagrams read in one wake-up
    timed_drains: int        # native: drains run by the coalescing timer instead of readiness
    events_lost: int


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """Something the call layer should know about a stream."""

    kind: Literal["timeout", "latched"]
    stream: Stream
    at: float                              # monotonic time
    address: tuple[str, int] | None = None  # latched: the stream's new remote


def _family(host: str) -> socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not an IP address: {host!r}") from None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _bind(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


_Socks = tuple[socket.socket, "socket.socket | None"]


class _PortPool:
    """Even RTP ports of a range, handed out round-robin so a released port rests a while."""

    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min & 1)
        self.port_min, self.port_max = port_min, port_max
        self._free: deque[int] = deque(range(first, port_max, 2))
        self.size = len(self._free)
        self.used: set[int] = set()

    def allocate(self, bind: Callable[[int], _Socks]) -> tuple[int, _Socks]:
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                socks = bind(port)
            except OSError as exc:
                self._free.append(port)
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue        # taken by someone else: try the next one
                raise
            self.used.add(port)
            return port, socks
        raise PortRangeExhausted(
            f"no free RTP port pair in {self.port_min}-{self.port_max} "
            f"({self.size} pairs, {len(self.used)} in use by this engine)")

    def release(self, port: int) -> None:
        if port in self.used:
            self.used.remove(port)
            self._free.append(port)


class _Backend(Protocol):
    name: str

    async def add(self, loop: asyncio.AbstractEventLoop, sock: Any, rtcp_sock: Any, ssrc: int,
                  seq0: int, ts0: int) -> int: ...
    def remove(self, key: int, on_closed: Callable[[], None]) -> None: ...
    def set_remote(self, key: int, host: str, port: int, payload_types: Iterable[int] | None,
                   clock_rate: int, latch_n: int, timeout: float, now: float) -> None: ...
    def set_timeout(self, key: int, timeout: float, now: float) -> None: ...
    def remote(self, key: int) -> tuple[str, int] | None: ...
    def relay(self, a: int, b: int) -> None: ...
    def unrelay(self, key: int) -> None: ...
    def counters(self, key: int) -> Counters: ...
    def tick(self, now: float) -> None: ...
    def totals(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class _NativeBackend:
    """The C engine, its epoll fd registered with the loop; the sockets stay Python objects.

    Wake-ups adapt to the load, like NAPI: while the epoll fd wakes the loop more often than
    twice per ``coalesce`` interval, the reader is removed and the engine drains on a timer
    every ``coalesce`` seconds instead (each drain then handles many packets, and the cost of a
    wake-up, large on virtual machines, is paid once per interval); when a timed drain finds
    (almost) nothing the engine goes back to waking on readiness. ``coalesce=0`` disables it.
    """

    name = "native"

    def __init__(self, emit: Callable[[list[RawEvent]], None], max_events: int,
                 loop: asyncio.AbstractEventLoop, coalesce: float) -> None:
        self.core = core = _engine_native.NativeCore(max_events)
        self.emit = emit
        self._loop = loop
        self._socks: dict[int, _Socks] = {}
        self._fd = fd = core.fd
        self._timer: asyncio.TimerHandle | None = None
        self.timed_drains = 0
        drain, pending = core.drain, core.pending
        window = 0.01                                # wake-up rate measured over 10 ms
        max_wakeups = int(2 * window / coalesce) if coalesce > 0 else 0
        state = [0, _monotonic()]                    # wake-ups in the window, window start

        def readable() -> None:
            now = _monotonic()
            drain(now)
            if pending():
                emit(core.events())
            if max_wakeups:
                state[0] += 1
                if now - state[1] >= window:
                    state[0], state[1] = 1, now
                elif state[0] > max_wakeups:     # busy: drain on a timer from now on
                    loop.remove_reader(fd)
                    self._timer = loop.call_later(coalesce, timed)

        def timed() -> None:
            self.timed_drains += 1
            now = _monotonic()
            n = drain(now)
            if pending():
                emit(core.events())
            if n < 2:                                # quiet again: wake on readiness
                self._timer = None
                state[0], state[1] = 0, now
                loop.add_reader(fd, readable)
            else:
                self._timer = loop.call_later(coalesce, timed)

        loop.add_reader(fd, readable)

    async def add(self, loop: asyncio.AbstractEventLoop, sock: Any, rtcp_sock: Any, ssrc: int,
                  seq0: int, ts0: int) -> int:
        rtcp_fd = rtcp_sock.fileno() if rtcp_sock is not None else -1
        slot = self.core.add(sock.fileno(), rtcp_fd, ssrc, seq0, ts0)
        self._socks[slot] = (sock, rtcp_sock)
        return slot

    def remove(self, key: int, on_closed: Callable[[], None]) -> None:
        self.core.remove(key)           # out of epoll before the fds close
        for s in self._socks.pop(key):
            if s is not None:
                s.close()
        on_closed()

    def set_remote(self, key: int, host: str, port: int, payload_types: Iterable[int] | None,
                   clock_rate: int, latch_n: int, timeout: float, now: float) -> None:
        self.core.set_remote(key, host, port, payload_types, clock_rate, latch_n, timeout, now)

    def set_timeout(self, key: int, timeout: float, now: float) -> None:
        self.core.set_timeout(key, timeout, now)

    def remote(self, key: int) -> tuple[str, int] | None:
        return self.core.remote(key)

    def relay(self, a: int, b: int) -> None:
        self.core.relay(a, b)

    def unrelay(self, key: int) -> None:
        self.core.unrelay(key)

    def counters(self, key: int) -> Counters:
        return self.core.counters(key)

    def tick(self, now: float) -> None:
        if self.core.tick(now):
            self.emit(self.core.events())

    def totals(self) -> dict[str, int]:
        return {**self.core.totals(), "timed_drains": self.timed_drains}

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop.remove_reader(self._fd)
        for key in list(self._socks):
            self.remove(key, lambda: None)
        self.core.close()


class _Clock:
    """The 20 ms media clock on absolute deadlines: tick k is due at start + k * TICK.

    A late wake-up runs the missed ticks (counted as overruns), at most ``max_catchup`` of them;
    older ones are skipped and counted. Deadlines never drift.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_tick: Callable[[float], None],
                 max_catchup: int) -> None:
        self._loop = loop
        self._on_tick = on_tick
        self.max_catchup = max_catchup
        self.start = loop.time()
        self.k = 0
        self.overruns = 0
        self.skipped = 0
        self._handle: asyncio.TimerHandle | None = loop.call_at(self.start + TICK, self._fire)

    def _fire(self) -> None:
        loop = self._loop
        due = int((loop.time() - self.start) / TICK)
        k = self.k + 1                  # this wake-up runs tick k, even if woken a hair early
        late = max(due - k, 0)
        if late > self.max_catchup:
            self.skipped += late - self.max_catchup
            k += late - self.max_catchup
            late = self.max_catchup
        try:
            for _ in range(late + 1):
                self._on_tick(_monotonic())
        except Exception:
            log.exception("media tick failed")
        finally:
            self.overruns += late
            self.k = k + late
            self._handle = loop.call_at(self.start + (self.k + 1) * TICK, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Stream:
    """One RTP stream: a local port pair and, once set, the remote peer it talks to."""

    __slots__ = ("_closed", "_engine", "_key", "_partner", "family", "host", "port", "rtcp_mux")

    def __init__(self, engine: MediaEngine, key: int, family: socket.AddressFamily, host: str,
                 port: int, rtcp_mux: bool) -> None:
        self._engine = engine
        self._key = key
        self._partner: Stream | None = None
        self._closed = False
        self.family = family
        self.host = host
        self.port = port
        self.rtcp_mux = rtcp_mux

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"remote={self.remote}"
        return f"<Stream {self.host}:{self.port} {state}>"

    @property
    def local(self) -> tuple[str, int]:
        """(host, RTP port) to put in SDP."""
        return self.host, self.port

    @property
    def rtcp_port(self) -> int:
        """The RTCP port: the RTP port with rtcp-mux, else the RTP port + 1."""
        return self.port if self.rtcp_mux else self.port + 1

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def remote(self) -> tuple[str, int] | None:
        """The peer packets are accepted from and sent to (changes when latching)."""
        if self._closed:
            return None
        return self._engine._impl_for(self).remote(self._key)

    @property
    def relayed_with(self) -> Stream | None:
        return self._partner

    def set_remote(self, host: str, port: int, *, payload_types: Iterable[int] | None = None,
                   clock_rate: int = 8000, latch: bool = False,
                   timeout: float | None = None) -> None:
        """Talk to ``host:port`` (an IP literal of the stream's family), e.g. from SDP.

        ``payload_types``: accept only these (None: any). ``clock_rate``: of the codec, for
        timestamps across a source change. ``latch``: symmetric RTP, follow the peer to a new
        address after ``EngineConfig.latch_packets`` consecutive packets from it (NAT).
        ``timeout``: seconds without RTP before a ``timeout`` event (default from the config,
        0 disables); the timer starts now. Calling again (re-INVITE) resets all of it.
        """
        impl = self._engine._impl_for(self)
        if _family(host) != self.family:
            raise ValueError(f"{host} is not of the stream's address family")
        if not 0 < port < 65536:
            raise ValueError(f"bad RTP port {port}")
        pts = None if payload_types is None else frozenset(payload_types)
        if pts is not None and not all(0 <= pt < 128 for pt in pts):
            raise ValueError(f"bad payload types {sorted(pts)}")
        if not 0 < clock_rate < 2**31:
            raise ValueError(f"bad clock rate {clock_rate}")
        cfg = self._engine.config
        tmo = cfg.rtp_timeout if timeout is None else timeout
        if tmo < 0:
            raise ValueError("timeout must not be negative")
        impl.set_remote(self._key, str(ipaddress.ip_address(host)), port, pts, clock_rate,
                        cfg.latch_packets if latch else 0, tmo, _monotonic())

    def set_timeout(self, seconds: float) -> None:
        """Change the RTP timeout (0 disables, e.g. on hold); the timer restarts now."""
        if seconds < 0:
            raise ValueError("timeout must not be negative")
        self._engine._impl_for(self).set_timeout(self._key, seconds, _monotonic())

    def stats(self) -> StreamStats:
        return StreamStats(**self._engine._impl_for(self).counters(self._key).as_dict())

    def close(self) -> None:
        """Stop the stream and give its ports back. Idempotent."""
        if not self._closed:
            self._engine._close_stream(self)


class MediaEngine:
    """Owns the RTP sockets and the media clock. Use ``async with MediaEngine(cfg) as engine``."""

    def __init__(self, config: EngineConfig | None = None, *,
                 on_event: Callable[[MediaEvent], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config or EngineConfig()
        want = self.config.backend
        if want == "native" and not _engine_native.AVAILABLE:
            raise EngineError("the native media engine is not available "
                              "(extension not built, or PBX_NO_EXTENSIONS=1)")
        self.backend: str = "native" if want == "auto" and _engine_native.AVAILABLE else (
            "python" if want == "auto" else want)
        self.events: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self._on_event = on_event
        self._rng = rng or random.SystemRandom()
        self._pool = _PortPool(self.config.port_min, self.config.port_max)
        self._streams: dict[int, Stream] = {}
        self._impl: _Backend | None = None
        self._clock: _Clock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = 0

    async def __aenter__(self) -> MediaEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._impl is not None

    async def start(self) -> None:
        """Create the backend and start the media clock on the running loop."""
        if self._impl is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self.backend == "native":
            self._impl = _NativeBackend(self._emit, self.config.max_events, loop,
                                        self.config.coalesce)
        else:
            self._impl = PyBackend(self._emit)
        self._clock = _Clock(loop, self._impl.tick, self.config.max_catchup_ticks)

    async def aclose(self) -> None:
        """Close every stream, stop the clock and release the backend."""
        if self._impl is None:
            return
        for stream in list(self._streams.values()):
            stream.close()
        for _ in range(100):             # python backend: sockets close on the next loop turns
            if not self._closing:
                break
            await asyncio.sleep(0)
        if self._clock is not None:
            self._clock.stop()
        self._impl.close()
        self._impl = None
        self._clock = None

    @property
    def streams(self) -> list[Stream]:
        return list(self._streams.values())

    async def open_stream(self, *, host: str | None = None, rtcp_mux: bool | None = None) -> Stream:
        """A new stream on a free even port of the range (and port + 1 unless rtcp-mux).

        Raises ``PortRangeExhausted`` when no pair is free.
        """
        impl = self._require()
        assert self._loop is not None
        host = self.config.bind_host if host is None else host
        family = _family(host)
        mux = self.config.rtcp_mux if rtcp_mux is None else rtcp_mux

        def bind(port: int) -> _Socks:
            rtp = _bind(family, host, port)
            if mux:
                return rtp, None
            try:
                return rtp, _bind(family, host, port + 1)
            except BaseException:
                rtp.close()
                raise

        port, (sock, rtcp_sock) = self._pool.allocate(bind)
        rng = self._rng
        try:
            key = await impl.add(self._loop, sock, rtcp_sock, rng.getrandbits(32),
                                 rng.getrandbits(16), rng.getrandbits(32))
        except BaseException:
            sock.close()
            if rtcp_sock is not None:
                rtcp_sock.close()
            self._pool.release(port)
            raise
        stream = Stream(self, key, family, host, port, mux)
        self._streams[key] = stream
        return stream

    def relay(self, a: Stream, b: Stream) -> None:
        """Relay ``a`` and ``b``: what a's peer sends goes out b to b's peer, and vice versa.

        Each direction is rewritten to the sending leg's own SSRC with continuous sequence
        numbers and timestamps, across source changes (the first packet after one carries the
        marker bit). No jitter buffer: microseconds added, or up to ``EngineConfig.coalesce``
        (1 ms) while the native engine is busy enough to drain on its timer.
        """
        impl = self._impl_for(a)
        self._impl_for(b)
        if a is b:
            raise ValueError("cannot relay a stream with itself")
        if a._partner is not None or b._partner is not None:
            raise ValueError("stream already relayed; unrelay it first")
        impl.relay(a._key, b._key)
        a._partner, b._partner = b, a

    def unrelay(self, stream: Stream) -> None:
        """Stop relaying ``stream`` and its partner (no-op when not relayed)."""
        impl = self._impl_for(stream)
        partner = stream._partner
        if partner is None:
            return
        impl.unrelay(stream._key)
        stream._partner = partner._partner = None

    def stats(self) -> EngineStats:
        impl = self._require()
        t = impl.totals()
        clock = self._clock
        return EngineStats(
            backend=self.backend, streams=len(self._streams), ticks=t["ticks"],
            overruns=clock.overruns if clock else 0, ticks_skipped=clock.skipped if clock else 0,
            wakeups=t["wakeups"], rounds=t["rounds"], packets=t["packets"],
            max_batch=t["max_batch"], timed_drains=t.get("timed_drains", 0),
            events_lost=t["events_lost"])

    # -- internals --------------------------------------------------------------------------

    def _require(self) -> _Backend:
        if self._impl is None:
            raise EngineError("media engine not started")
        return self._impl

    def _impl_for(self, stream: Stream) -> _Backend:
        impl = self._require()
        if stream._engine is not self:
            raise EngineError("stream belongs to another engine")
        if stream._closed:
            raise EngineError(f"stream on port {stream.port} is closed")
        return impl

    def _close_stream(self, stream: Stream) -> None:
        impl = self._require()
        if stream._partner is not None:
            self.unrelay(stream)
        stream._closed = True
        del self._streams[stream._key]
        self._closing += 1
        port = stream.port

        def closed() -> None:
            self._closing -= 1
            self._pool.release(port)

        impl.remove(stream._key, closed)

    def _emit(self, raw: list[RawEvent]) -> None:
        for kind, key, at, addr in raw:
            stream = self._streams.get(key)
            if stream is None:
                continue
            ev = MediaEvent("timeout" if kind == EV_TIMEOUT else "latched", stream, at,
                            addr if kind == EV_LATCHED else None)
            if self._on_event is None:
                self.events.put_nowait(ev)
                continue
            try:
                self._on_event(ev)
            except Exception:
                log.exception("media event handler failed for %s", ev.kind)
