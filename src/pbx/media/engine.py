"""The media engine: every RTP socket of the process and one 20 ms media clock (an asyncio shell).

Two backends behind one interface, with the same behaviour:

- ``native`` (cext/engine.c): one epoll descriptor holds every RTP socket and is registered with
  the event loop through ``add_reader``; each wake-up is ONE C call that reads every ready socket,
  checks each packet and relays it or puts it in the stream's jitter buffer. Python never sees
  single packets. Under load it drains on a 1 ms timer instead of waking per packet
  (``EngineConfig.coalesce``). Each 20 ms tick is ONE C call too: playout, decoding and
  concealment, in-band DTMF, recording taps, conference mixing, encoding and sending for every
  stream whose codec C has (G.711, G.722, L16); Opus runs through the Python codec objects, one
  frame per stream per tick, between the two halves of that call.
- ``python``: one asyncio datagram endpoint per socket, running the pure-Python twins of the C
  per-packet code (``pbx.media._engine_core``) on every packet and ``MediaCore``
  (``pbx.media._engine_media``) per stream per tick.

A stream is *relayed* (``engine.relay``: packets forwarded with SSRC/sequence/timestamp
rewritten and payload types mapped, no jitter buffer), *terminated* (``stream.set_media``: the
engine decodes what it receives and sends what it plays, its conference mix or silence), or
neither (packets counted and dropped). Terminated streams:

- receive: jitter buffer (``pbx.rtp.jitter``), decoding, G.711 Appendix I concealment, in-band
  DTMF (``enable_inband_dtmf``) and RFC 4733 telephone-events (both reported once per digit as
  ``MediaEvent(kind="digit")`` when the digit ends, with its duration); G.711, G.722 and L16
  packets of 10 to 120 ms (in 10 ms steps) are cut into or joined to 20 ms frames before the
  jitter buffer, each frame in its own slot;
- send: with the negotiated ``ptime`` (G.711, G.722, L16: 10 to 120 ms in 10 ms steps, two
  packets per tick at 10 ms, and at 30 ms a packet on two ticks of three as audio is ready;
  Opus and packets too large for the engine: 20 ms); every tick's frame is sent (or collected
  for the next packet) while the negotiated direction lets us send, even when there is nothing to
  play (encoded silence, no comfort-noise payload): peers and NATs see a live stream and the
  timestamps never jump. The frame sent is the next one of what the stream plays (``play``,
  ``send_dtmf``), else its conference mix, else silence;
- record (``record``) and mix (``engine.conference``).

Ports: each stream takes an even RTP port from the configured range and reserves port + 1 for
RTCP, bound too unless the stream uses rtcp-mux (RFC 5761). IPv4 and IPv6 (bind addresses per
engine or per stream).

RTCP (RFC 3550): counted on every stream; terminated streams also send a compound SR (or RR
while they do not send) with a report block about the peer's source (RFC 3550 A.1/A.8, kept
per packet by the backend) and SDES CNAME every ``EngineConfig.rtcp_interval`` seconds times
0.5-1.5 at random, and BYE when closed. What the peer sends from its address (the C engine
hands it over like telephone-events: it is rare) is parsed in Python: its SR for LSR/DLSR, its
report blocks about us for RTT and the loss and jitter it sees (``Stream.rtcp_stats``).
Relayed streams' RTCP is counted and dropped.

Events (``MediaEvent``: RTP timeout, latched to a new address, digit) are delivered in batches
after a drain or a tick, to the ``on_event`` callback when one is given, else to
``engine.events`` (an ``asyncio.Queue``). Run the loop on uvloop (when installed) to speed up
the python backend and the rest of the process; the engine does not choose the loop.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import ipaddress
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from pbx.errors import ParseError, PbxError
from pbx.media import _engine_native
from pbx.media._engine_aio_jobs import (
    Conference,
    FrameReader,
    Playback,
    Recording,
    RecordMode,
    _dtmf_entries,
    _Player,
    _SourceFrames,
)
from pbx.media._engine_core import Counters, RtcpInfo
from pbx.media._engine_media import KIND_EVENT, KIND_NONE, MediaConfig, kind_of
from pbx.media.codecs import UnknownCodecError, get_codec
from pbx.media.engine_aio import (
    EV_DIGIT,
    EV_LATCHED,
    EV_RTCP,
    EV_TELEVENT,
    EV_TIMEOUT,
    PyBackend,
)
from pbx.media.playback import FrameSource, PcmSource
from pbx.media.tones import dtmf_tones
from pbx.rtp.dtmf import EVENT_CODES, DigitEnd, DtmfReceiver
from pbx.rtp.jitter import JitterStats
from pbx.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    compact_from_seconds,
    ntp_compact,
    ntp_from_time,
    parse_rtcp,
)
from pbx.rtp.stats import rtt_from_report_block
from pbx.sip.offer_answer import NegotiatedMedia

__all__ = [
    "TICK",
    "Conference",
    "EngineConfig",
    "EngineError",
    "EngineStats",
    "FrameReader",
    "MediaEngine",
    "MediaEvent",
    "Playback",
    "PortRangeExhausted",
    "Recording",
    "RtcpStats",
    "Stream",
    "StreamStats",
    "available_backends",
]

log = logging.getLogger("pbx.media.engine")

TICK = 0.020
"""The media clock period: one frame of 20 ms."""

_monotonic = time.monotonic
RawEvent = tuple[int, int, float, Any]
Int16Array = npt.NDArray[np.int16]
_COLLECT_TICKS = 25             # recordings are collected from the backend every 0.5 s


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
    jitter_min_ms: int = 40          # terminated streams' jitter buffers (pbx.rtp.jitter): a
    jitter_max_ms: int = 300         # floor that absorbs 2 lost packets in a row without a stall
    jitter_start_ms: int = 40        # buffered before the first frame plays
    jitter_fixed_ms: int | None = None  # a fixed delay instead of the adaptive one
    rtcp_interval: float = 5.0       # terminated streams' RTCP reports (x 0.5-1.5 at random); 0: off

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
        if self.rtcp_interval < 0:
            raise ValueError("rtcp_interval must not be negative")
        if (min(self.jitter_min_ms, self.jitter_max_ms, self.jitter_start_ms) < 0
                or (self.jitter_fixed_ms is not None and self.jitter_fixed_ms < 0)):
            raise ValueError("jitter buffer delays must not be negative")


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream since it was opened. Drops are by reason."""

    packets_in: int          # RTP accepted from the peer
    bytes_in: int
    packets_out: int         # RTP sent to the peer
    bytes_out: int
    rtcp_in: int             # RTCP received (counted and dropped)
    dropped_malformed: int   # not RTP v2, or a length field that does not fit
    dropped_source: int      # not from the peer (including packets while latching)
    dropped_payload_type: int  # a payload type that was not negotiated
    dropped_unrouted: int    # accepted but nowhere to go (no media, not relayed, partner has no
                             # peer, or a payload type without a decoder)
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
    tick_mean_ms: float = 0.0  # time the backend spent per tick (mixing, coding, sending)
    tick_max_ms: float = 0.0
    frames_sent: int = 0     # packets terminated streams sent (audio and telephone-events)
    tap_lost: int = 0        # recorded frames dropped because they were not collected in time


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """Something the call layer should know about a stream.

    ``digit``: a DTMF digit ended (reported once, with how long it was held), received as an
    RFC 4733 telephone-event (``source="rfc4733"``) or detected in the audio (``"inband"``).
    """

    kind: Literal["timeout", "latched", "digit"]
    stream: Stream
    at: float                              # monotonic time
    address: tuple[str, int] | None = None  # latched: the stream's new remote
    digit: str | None = None               # digit: 0-9 * # A-D, or ! (flash, RFC 4733 only)
    source: Literal["rfc4733", "inband"] | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RtcpStats:
    """RTCP of a terminated stream (RFC 3550): what the peer reports about our packets, what we
    measure about its packets, and what we sent. None where nothing is known yet."""

    rtt: float | None                  # seconds, from the peer's last report block about us
    peer_fraction_lost: float | None   # of our packets, as the peer reported (0..1)
    peer_cumulative_lost: int | None
    peer_jitter: float | None          # seconds, as the peer reported
    fraction_lost: float | None        # of the peer's packets, in our last report interval
    cumulative_lost: int               # of the peer's packets (expected - received)
    jitter: float | None               # seconds, interarrival jitter of the peer's packets
    packets_sent: int                  # RTP, ours
    octets_sent: int                   # RTP payload octets, ours
    reports_sent: int
    reports_received: int              # RTCP compound packets from the peer
    peer_bye: bool                     # the peer sent BYE


class _Rtcp:
    """One terminated stream's RTCP state (RFC 3550 section 6), kept by the engine shell."""

    __slots__ = ("bye", "clock_rate", "due", "fraction", "lsr", "lsr_at", "peer_cum",
                 "peer_fraction", "peer_jitter", "received", "rtt", "sent")

    def __init__(self, clock_rate: int, due: float) -> None:
        self.clock_rate = clock_rate
        self.due = due
        self.lsr = 0                     # the peer's last SR (compact NTP) and when it came
        self.lsr_at = 0.0
        self.rtt: float | None = None
        self.peer_fraction: int | None = None
        self.peer_cum: int | None = None
        self.peer_jitter: int | None = None
        self.fraction: int | None = None
        self.sent = 0
        self.received = 0
        self.bye = False


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
    def relay(self, a: int, b: int, map_ab: dict[int, int] | None = None,
              map_ba: dict[int, int] | None = None) -> None: ...
    def unrelay(self, key: int) -> None: ...
    def counters(self, key: int) -> Counters: ...
    def tick(self, now: float) -> None: ...
    def totals(self) -> dict[str, int]: ...
    def close(self) -> None: ...
    # terminated streams
    def set_media(self, key: int, cfg: MediaConfig | None) -> int: ...
    def set_inband(self, key: int, on: bool) -> None: ...
    def jitter(self, key: int) -> tuple[int, ...] | None: ...
    def play_push(self, key: int, frames: Int16Array) -> int: ...
    def play_push_event(self, key: int, payload: bytes, marker: bool, ts_off: int) -> bool: ...
    def play_status(self, key: int) -> tuple[int, int]: ...
    def play_flush(self, key: int) -> int: ...
    def play_want(self, key: int, on: bool) -> None: ...
    def feed_list(self) -> list[int]: ...
    def tap(self, key: int, mode: int) -> None: ...
    def tap_read(self, key: int) -> tuple[Int16Array, Int16Array]: ...
    def conf_new(self, rate: int) -> int: ...
    def conf_free(self, cid: int) -> None: ...
    def conf_join(self, cid: int, key: int, flags: int) -> None: ...
    def conf_leave(self, key: int) -> None: ...
    def conf_set(self, key: int, flags: int, whisper_to: int) -> None: ...
    def conf_tap(self, cid: int, on: bool) -> None: ...
    def conf_tap_read(self, cid: int, frame: int) -> Int16Array: ...
    # RTCP
    def rtcp_info(self, key: int, report: bool) -> RtcpInfo: ...
    def send_rtcp(self, key: int, data: bytes, addr: tuple[str, int], mux: bool) -> None: ...


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

    def relay(self, a: int, b: int, map_ab: dict[int, int] | None = None,
              map_ba: dict[int, int] | None = None) -> None:
        self.core.relay(a, b, map_ab, map_ba)

    def unrelay(self, key: int) -> None:
        self.core.unrelay(key)

    # terminated streams: the core's own calls

    def set_media(self, key: int, cfg: MediaConfig | None) -> int:
        return self.core.set_media(key, cfg)

    def set_inband(self, key: int, on: bool) -> None:
        self.core.set_inband(key, on)

    def jitter(self, key: int) -> tuple[int, ...] | None:
        return self.core.jitter(key)

    def play_push(self, key: int, frames: Int16Array) -> int:
        return self.core.play_push(key, frames)

    def play_push_event(self, key: int, payload: bytes, marker: bool, ts_off: int) -> bool:
        return self.core.play_push_event(key, payload, marker, ts_off)

    def play_status(self, key: int) -> tuple[int, int]:
        return self.core.play_status(key)

    def play_flush(self, key: int) -> int:
        return self.core.play_flush(key)

    def play_want(self, key: int, on: bool) -> None:
        self.core.play_want(key, on)

    def feed_list(self) -> list[int]:
        return self.core.feed_list()

    def tap(self, key: int, mode: int) -> None:
        self.core.tap(key, mode)

    def tap_read(self, key: int) -> tuple[Int16Array, Int16Array]:
        return self.core.tap_read(key)

    def conf_new(self, rate: int) -> int:
        return self.core.conf_new(rate)

    def conf_free(self, cid: int) -> None:
        self.core.conf_free(cid)

    def conf_join(self, cid: int, key: int, flags: int) -> None:
        self.core.conf_join(cid, key, flags)

    def conf_leave(self, key: int) -> None:
        self.core.conf_leave(key)

    def conf_set(self, key: int, flags: int, whisper_to: int) -> None:
        self.core.conf_set(key, flags, whisper_to)

    def conf_tap(self, cid: int, on: bool) -> None:
        self.core.conf_tap(cid, on)

    def conf_tap_read(self, cid: int, frame: int) -> Int16Array:
        return self.core.conf_tap_read(cid, frame)

    def counters(self, key: int) -> Counters:
        return self.core.counters(key)

    def rtcp_info(self, key: int, report: bool) -> RtcpInfo:
        return self.core.rtcp_info(key, report)

    def send_rtcp(self, key: int, data: bytes, addr: tuple[str, int], mux: bool) -> None:
        socks = self._socks.get(key)
        if socks is None:
            return
        sock = socks[0] if mux or socks[1] is None else socks[1]
        try:
            sock.sendto(data, addr)
        except OSError:
            pass                       # like a lost datagram: the next report follows

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

    __slots__ = ("_closed", "_conference", "_engine", "_frame", "_key", "_media", "_partner",
                 "_rate", "_te_rates", "family", "host", "port", "rtcp_mux")

    def __init__(self, engine: MediaEngine, key: int, family: socket.AddressFamily, host: str,
                 port: int, rtcp_mux: bool) -> None:
        self._engine = engine
        self._key = key
        self._partner: Stream | None = None
        self._closed = False
        self._media: NegotiatedMedia | None = None
        self._conference: Conference | None = None
        self._rate = 0                  # PCM rate and samples per frame of a terminated stream
        self._frame = 0
        self._te_rates: dict[int, int] = {}
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

    @property
    def media(self) -> NegotiatedMedia | None:
        """What ``set_media`` was given last (None: not terminated)."""
        return self._media

    @property
    def sample_rate(self) -> int:
        """PCM rate of the frames the stream plays and records (0 without media)."""
        return self._rate

    @property
    def conference(self) -> Conference | None:
        return self._conference

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

    def set_media(self, media: NegotiatedMedia, *, latch: bool = False,
                  timeout: float | None = None) -> None:
        """Terminate the stream with what offer/answer agreed (again after a re-INVITE).

        The peer becomes ``media``'s remote address (``set_remote`` with the negotiated payload
        types: speech codecs and telephone-event); the engine decodes every payload type of
        ``media.receive_payload_types`` that has the send codec's sample rate and sends with
        ``media.send_codec``, telephone-events with ``media.telephone_event``. Nothing is sent
        while the direction does not let us (recvonly, inactive, or the peer holds the call);
        the RTP timeout is off while we do not receive. A relayed stream keeps relaying until
        ``unrelay``. Raises ``EngineError`` for a send codec the engine has no coder for.
        """
        engine = self._engine
        impl = engine._impl_for(self)
        sc = media.send_codec
        try:
            send = get_codec(sc.name, sc.clock_rate, sc.channels)
        except UnknownCodecError:
            raise EngineError(f"no coder for the send codec {sc.name}/{sc.clock_rate}") from None
        pt_kind: dict[int, int] = {}
        for pt, c in media.receive_payload_types.items():
            try:
                pt_kind[pt] = kind_of(get_codec(c.name, c.clock_rate, c.channels))
            except UnknownCodecError:
                pt_kind[pt] = KIND_NONE        # negotiated, accepted, not decoded
        for pt in media.receive_telephone_events:
            pt_kind[pt] = KIND_EVENT
        te = media.telephone_event
        cfg_e = engine.config
        remote_ip = ipaddress.ip_address(media.remote_address)
        sends = media.sends and not media.remote_hold and not remote_ip.is_unspecified
        cfg = MediaConfig(
            send_kind=kind_of(send), send_pt=media.send_payload_type,
            sample_rate=send.sample_rate, clock_rate=send.clock_rate,
            pt_kind={pt: k for pt, k in pt_kind.items() if k != KIND_NONE},
            te_pt=te.payload_type if te is not None and te.payload_type is not None else -1,
            sends=sends, jb_min=cfg_e.jitter_min_ms, jb_max=cfg_e.jitter_max_ms,
            jb_start=cfg_e.jitter_start_ms,
            jb_fixed=-1 if cfg_e.jitter_fixed_ms is None else cfg_e.jitter_fixed_ms, codec=send,
            ptime=media.ptime)
        if not remote_ip.is_unspecified:
            self.set_remote(str(remote_ip), media.remote_port, payload_types=pt_kind,
                            clock_rate=send.clock_rate, latch=latch,
                            timeout=timeout if media.receives else 0.0)
        engine._collect(self)                  # recordings of the old rate are complete
        frame = impl.set_media(self._key, cfg)
        if self._rate and self._rate != send.sample_rate:
            engine._stop_recordings(self, "the codec rate changed")
        self._media = media
        self._rate, self._frame = send.sample_rate, frame
        self._te_rates = dict(media.receive_telephone_events)
        engine._rtcp_start(self, send.clock_rate)

    def enable_inband_dtmf(self, on: bool = True) -> None:
        """Detect DTMF tones in the received audio (``MediaEvent(kind="digit",
        source="inband")``). Needs ``set_media`` first, at 8, 16, 24, 32 or 48 kHz."""
        impl = self._engine._impl_for(self)
        if self._media is None:
            raise EngineError("in-band DTMF detection needs set_media first")
        impl.set_inband(self._key, on)

    def play(self, source: FrameSource) -> Playback:
        """Play ``source`` (any rate: resampled to the codec's) after what is already playing.

        Returns a ``Playback``: ``await`` it (True when it played to the end) or ``stop()`` it.
        The frames replace the stream's conference mix while they play.
        """
        self._require_media()
        if not isinstance(source, FrameSource):
            raise TypeError("play() takes a FrameSource (pbx.media.playback)")
        job = Playback(self, f"source at {source.rate} Hz", source=_SourceFrames(source))
        self._engine._player_for(self).add(job)
        return job

    def send_dtmf(self, digits: str, duration_ms: int = 100, *, gap_ms: int = 100,
                  volume: int = 10) -> Playback:
        """Send ``digits`` (0-9 * # A-D): RFC 4733 telephone-events when negotiated (with
        ``gap_ms`` of silence after each), else in-band tones at -10 dBm0. Queued like ``play``.
        """
        media = self._require_media()
        bad = [d for d in digits if d.upper() not in EVENT_CODES]
        if bad or not digits:
            raise ValueError(f"not DTMF digits: {digits!r}")
        if duration_ms <= 0 or gap_ms < 0 or not 0 <= volume <= 63:
            raise ValueError("duration_ms must be positive, gap_ms not negative, volume 0..63")
        te = media.telephone_event
        if te is not None and te.payload_type is not None:
            job = Playback(self, f"dtmf {digits} (rfc4733)", events=_dtmf_entries(
                digits, duration_ms, gap_ms, te.clock_rate, volume))
        else:
            pcm = dtmf_tones(digits.upper(), self._rate, duration_ms / 1000, gap_ms / 1000)
            job = Playback(self, f"dtmf {digits} (in-band)",
                           source=_SourceFrames(PcmSource(pcm, self._rate)))
        self._engine._player_for(self).add(job)
        return job

    def stop_playing(self) -> None:
        """Stop what is playing and everything queued."""
        player = self._engine._players.get(self._key)
        if player is not None:
            for job in list(player.jobs):
                job.stop()

    def record(self, path: str | os.PathLike[str], *, mode: RecordMode = "mono") -> Recording:
        """Record to a WAV file at the codec's rate: ``mono`` what the stream receives,
        ``stereo`` that on the left and what it sends on the right, ``mixed`` both summed.
        Written as it goes and flushed every second; ``stop()`` ends it."""
        self._require_media()
        return self._engine._record_stream(self, path, mode)

    def read_frames(self, maxsize: int = 250) -> FrameReader:
        """What the stream receives, decoded (after the jitter buffer and concealment), as an
        async iterator of int16 frames at ``sample_rate``; ``close()`` the reader when done."""
        self._require_media()
        return self._engine._read_stream(self, maxsize)

    def jitter_stats(self) -> JitterStats | None:
        """The jitter buffer's counters (None unless terminated)."""
        c = self._engine._impl_for(self).jitter(self._key)
        if c is None or self._media is None:
            return None
        ms = 1000.0 / self._media.send_codec.clock_rate
        return JitterStats(
            received=c[0], played=c[1], late=c[2], lost=c[3], discarded=c[4], duplicated=c[5],
            reordered=c[6], events=c[7], concealed_samples=c[8], inserted_samples=c[9],
            removed_samples=c[10], underflows=c[11], resyncs=c[12], buffered=c[13],
            current_delay_ms=c[14] * ms, target_delay_ms=c[15] * ms)

    def rtcp_stats(self) -> RtcpStats | None:
        """RTCP figures of a terminated stream (None without media or with RTCP off)."""
        impl = self._engine._impl_for(self)
        r = self._engine._rtcp.get(self._key)
        if r is None:
            return None
        info = impl.rtcp_info(self._key, False)
        c = impl.counters(self._key)
        rate = float(r.clock_rate)
        return RtcpStats(
            rtt=r.rtt,
            peer_fraction_lost=None if r.peer_fraction is None else r.peer_fraction / 256,
            peer_cumulative_lost=r.peer_cum,
            peer_jitter=None if r.peer_jitter is None else r.peer_jitter / rate,
            fraction_lost=None if r.fraction is None else r.fraction / 256,
            cumulative_lost=info.expected - info.received,
            jitter=info.jitter / rate if info.has_source else None,
            packets_sent=c.packets_out, octets_sent=c.bytes_out - 12 * c.packets_out,
            reports_sent=r.sent, reports_received=r.received, peer_bye=r.bye)

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

    def _require_media(self) -> NegotiatedMedia:
        self._engine._impl_for(self)
        if self._media is None:
            raise EngineError(f"stream on port {self.port} has no media: call set_media first")
        return self._media


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
        self._players: dict[int, _Player] = {}
        self._recordings: dict[int, list[Recording | FrameReader]] = {}  # tap consumers
        self._readers: set[int] = set()         # streams with a FrameReader: collected per tick
        self._conferences: dict[int, Conference] = {}
        self._conf_recordings: dict[Conference, Recording] = {}
        self._receivers: dict[int, DtmfReceiver] = {}
        self._open_digits: set[int] = set()
        self._ticks = 0
        self._rtcp: dict[int, _Rtcp] = {}
        self._rtcp_due: list[tuple[float, int]] = []   # (when, stream key): a heap
        self._cname = f"{self._rng.getrandbits(64):016x}@pbx"
        self._ntp_offset = time.time() - _monotonic()   # monotonic -> wall clock, for SRs

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
        self._clock = _Clock(loop, self._on_tick, self.config.max_catchup_ticks)

    async def aclose(self) -> None:
        """Close every conference and stream, stop the clock and release the backend."""
        if self._impl is None:
            return
        for conf in list(self._conferences.values()):
            conf.close()
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

    def relay(self, a: Stream, b: Stream, pt_map_ab: dict[int, int] | None = None,
              pt_map_ba: dict[int, int] | None = None) -> None:
        """Relay ``a`` and ``b``: what a's peer sends goes out b to b's peer, and vice versa.

        Each direction is rewritten to the sending leg's own SSRC with continuous sequence
        numbers and timestamps, across source changes (the first packet after one carries the
        marker bit). No jitter buffer: microseconds added, or up to ``EngineConfig.coalesce``
        (1 ms) while the native engine is busy enough to drain on its timer.

        ``pt_map_ab`` renumbers the payload types of packets from a's peer as they go out to
        b's peer (``pt_map_ba`` the other way), e.g. ``{101: 96}`` when a's side sends
        telephone-event as 101 and b's side expects 96. Without maps, when both streams have
        media (``set_media``), the map is derived from it: each payload type a receives goes
        out as the number b's side uses for the same codec (or telephone-event rate).
        """
        impl = self._impl_for(a)
        self._impl_for(b)
        if a is b:
            raise ValueError("cannot relay a stream with itself")
        if a._partner is not None or b._partner is not None:
            raise ValueError("stream already relayed; unrelay it first")
        if pt_map_ab is None and pt_map_ba is None and a._media and b._media:
            pt_map_ab, pt_map_ba = _derive_map(a._media, b._media), _derive_map(b._media, a._media)
        for m in (pt_map_ab, pt_map_ba):
            if m is not None and not all(0 <= k < 128 and 0 <= v < 128 for k, v in m.items()):
                raise ValueError(f"payload type map {m} out of range")
        impl.relay(a._key, b._key, pt_map_ab or None, pt_map_ba or None)
        a._partner, b._partner = b, a

    def unrelay(self, stream: Stream) -> None:
        """Stop relaying ``stream`` and its partner (no-op when not relayed)."""
        impl = self._impl_for(stream)
        partner = stream._partner
        if partner is None:
            return
        impl.unrelay(stream._key)
        stream._partner = partner._partner = None

    def conference(self, rate: int = 8000) -> Conference:
        """A new conference mixing at ``rate`` Hz (see ``Conference``)."""
        impl = self._require()
        if rate <= 0 or rate % 50 or rate // 50 > 960:
            raise ValueError(f"bad conference rate {rate}")
        cid = impl.conf_new(rate)
        conf = Conference(self, cid, rate)
        self._conferences[cid] = conf
        return conf

    def stats(self) -> EngineStats:
        impl = self._require()
        t = impl.totals()
        clock = self._clock
        ticks = t["ticks"]
        return EngineStats(
            backend=self.backend, streams=len(self._streams), ticks=ticks,
            overruns=clock.overruns if clock else 0, ticks_skipped=clock.skipped if clock else 0,
            wakeups=t["wakeups"], rounds=t["rounds"], packets=t["packets"],
            max_batch=t["max_batch"], timed_drains=t.get("timed_drains", 0),
            events_lost=t["events_lost"],
            tick_mean_ms=t["tick_ns"] / ticks / 1e6 if ticks else 0.0,
            tick_max_ms=t["tick_ns_max"] / 1e6, frames_sent=t["frames_sent"],
            tap_lost=t["tap_lost"])

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
        player = self._players.pop(stream._key, None)
        if player is not None:
            player.close()
        self._stop_recordings(stream, None)
        conf = stream._conference
        if conf is not None:
            impl.conf_leave(stream._key)
            conf._forget(stream, closed=True)
        for other in self._conferences.values():
            if other is not conf:
                other._forget(stream, closed=True)
        if stream._key in self._rtcp:
            self._rtcp_send(stream, _monotonic(), bye=True)
            del self._rtcp[stream._key]
        self._receivers.pop(stream._key, None)
        self._open_digits.discard(stream._key)
        stream._closed = True
        del self._streams[stream._key]
        self._closing += 1
        port = stream.port

        def closed() -> None:
            self._closing -= 1
            self._pool.release(port)

        impl.remove(stream._key, closed)

    def _player_for(self, stream: Stream) -> _Player:
        player = self._players.get(stream._key)
        if player is None:
            player = self._players[stream._key] = _Player(self, stream)
        return player

    def _record_stream(self, stream: Stream, path: str | os.PathLike[str],
                       mode: RecordMode) -> Recording:
        rec = Recording(stream, path, stream._rate, mode)
        self._add_tap(stream, rec)
        return rec

    def _read_stream(self, stream: Stream, maxsize: int) -> FrameReader:
        reader = FrameReader(stream, maxsize)
        self._add_tap(stream, reader)
        self._readers.add(stream._key)
        return reader

    def _add_tap(self, stream: Stream, rec: Recording | FrameReader) -> None:
        impl = self._impl_for(stream)
        recs = self._recordings.setdefault(stream._key, [])
        taps = 0
        for r in recs:
            taps |= r.taps
        if taps | rec.taps != taps:            # a new tap direction: collect, then widen
            self._collect(stream)
            try:
                impl.tap(stream._key, taps | rec.taps)
            except ValueError:
                rec._close()
                raise
        recs.append(rec)

    def _record_conference(self, conf: Conference, path: str | os.PathLike[str]) -> Recording:
        if conf in self._conf_recordings:
            raise ValueError("the conference is being recorded already")
        rec = Recording(conf, path, conf.rate, "mono")
        self._require().conf_tap(conf._cid, True)
        self._conf_recordings[conf] = rec
        return rec

    def _stop_recording(self, rec: Recording | FrameReader) -> None:
        owner = rec.owner
        if isinstance(owner, Conference):
            assert isinstance(rec, Recording)
            if self._impl is not None and not owner.closed:
                self._collect_conference(owner, rec)
                self._impl.conf_tap(owner._cid, False)
            self._conf_recordings.pop(owner, None)
            rec._close()
            return
        recs = self._recordings.get(owner._key, [])
        if self._impl is not None and not owner._closed:
            self._collect(owner)
        if rec in recs:
            recs.remove(rec)
        rec._close()
        if self._impl is None or owner._closed:
            return
        taps = 0
        for r in recs:
            taps |= r.taps
        self._impl.tap(owner._key, taps)
        if not any(isinstance(r, FrameReader) for r in recs):
            self._readers.discard(owner._key)
        if not recs:
            self._recordings.pop(owner._key, None)

    def _stop_recordings(self, stream: Stream, why: str | None) -> None:
        recs = self._recordings.get(stream._key)
        self._readers.discard(stream._key)
        if not recs:
            return
        if why:
            log.warning("stopping %d recording(s) of %s: %s", len(recs), stream, why)
        for rec in list(recs):
            if isinstance(rec, Recording):
                rec.stop()
            else:
                rec.close()

    def _collect(self, stream: Stream) -> None:
        """Move a stream's tapped frames into its recordings and readers."""
        recs = self._recordings.get(stream._key)
        if not recs or self._impl is None:
            return
        rx, tx = self._impl.tap_read(stream._key)
        for rec in recs:
            rec.write(rx, tx)

    def _collect_conference(self, conf: Conference, rec: Recording) -> None:
        assert self._impl is not None
        rec.write(self._impl.conf_tap_read(conf._cid, conf.rate // 50), None)

    def _close_conference(self, conf: Conference) -> None:
        rec = self._conf_recordings.get(conf)
        if rec is not None:
            rec.stop()
        for stream in conf.members:
            conf._forget(stream)
        if self._impl is not None:
            self._impl.conf_free(conf._cid)
        conf._closed = True
        self._conferences.pop(conf._cid, None)

    def _on_tick(self, now: float) -> None:
        impl = self._impl
        if impl is None:
            return
        impl.tick(now)
        for key in impl.feed_list():
            player = self._players.get(key)
            if player is not None:
                player.feed()
        self._ticks += 1
        if self._ticks % _COLLECT_TICKS == 0:
            for key in list(self._recordings):
                stream = self._streams.get(key)
                if stream is not None:
                    self._collect(stream)
            for conf, rec in self._conf_recordings.items():
                self._collect_conference(conf, rec)
        elif self._readers:
            for key in list(self._readers):
                stream = self._streams.get(key)
                if stream is not None:
                    self._collect(stream)
        due = self._rtcp_due
        while due and due[0][0] <= now:
            _, key = heapq.heappop(due)
            r = self._rtcp.get(key)
            stream = self._streams.get(key)
            if r is None or stream is None or r.due > now:
                continue                       # gone, or rescheduled (a stale heap entry)
            self._rtcp_send(stream, now)
            self._rtcp_schedule(key, r, now)
        if self._open_digits:
            for key in list(self._open_digits):
                rcv = self._receivers.get(key)
                if rcv is None or rcv.deadline() is None:
                    self._open_digits.discard(key)
                    continue
                self._digits(key, rcv.poll(now), now)

    def _digits(self, key: int, got: list[Any], now: float) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        for ev in got:
            if isinstance(ev, DigitEnd):
                self._deliver(MediaEvent("digit", stream, now, digit=ev.digit, source="rfc4733",
                                         duration_ms=ev.duration_ms))
        rcv = self._receivers.get(key)
        if rcv is not None and rcv.deadline() is not None:
            self._open_digits.add(key)
        else:
            self._open_digits.discard(key)

    def _emit(self, raw: list[RawEvent]) -> None:
        for kind, key, at, data in raw:
            stream = self._streams.get(key)
            if stream is None:
                continue
            if kind == EV_RTCP:
                self._rtcp_received(stream, data, at)
                continue
            if kind == EV_TELEVENT:
                pt, marker, seq, ts, payload = data
                rcv = self._receivers.get(key)
                if rcv is None:
                    rcv = self._receivers[key] = DtmfReceiver(stream._te_rates.get(pt, 8000))
                self._digits(key, rcv.feed(payload, ts, marker, seq, at), at)
                continue
            if kind == EV_DIGIT:
                ev = MediaEvent("digit", stream, at, digit=data[0], source="inband",
                                duration_ms=data[1])
            else:
                ev = MediaEvent("timeout" if kind == EV_TIMEOUT else "latched", stream, at,
                                data if kind == EV_LATCHED else None)
            self._deliver(ev)

    # -- RTCP (RFC 3550 section 6) -------------------------------------------------------------

    def _rtcp_start(self, stream: Stream, clock_rate: int) -> None:
        interval = self.config.rtcp_interval
        if interval <= 0:
            return
        r = self._rtcp.get(stream._key)
        if r is not None:
            r.clock_rate = clock_rate
            return
        r = self._rtcp[stream._key] = _Rtcp(clock_rate, 0.0)
        self._rtcp_schedule(stream._key, r, _monotonic(), first=True)

    def _rtcp_schedule(self, key: int, r: _Rtcp, now: float, first: bool = False) -> None:
        """The next report: the interval times 0.5-1.5 at random (section 6.2; the first after
        half of that, section 6.2 "initial")."""
        t = self.config.rtcp_interval * self._rng.uniform(0.5, 1.5)
        r.due = now + (t / 2 if first else t)
        heapq.heappush(self._rtcp_due, (r.due, key))

    @staticmethod
    def _rtcp_mux(stream: Stream) -> bool:
        media = stream._media
        return stream.rtcp_mux or (media is not None and media.rtcp_mux)

    def _rtcp_addr(self, stream: Stream) -> tuple[str, int] | None:
        """Where RTCP goes: the peer's RTCP address from SDP, or (after latching, or without
        one) its RTP address, port + 1 unless RTCP is muxed."""
        remote = self._impl_for(stream).remote(stream._key)
        media = stream._media
        if remote is None:
            return None
        if self._rtcp_mux(stream):
            return remote
        if (media is not None and (media.remote_address, media.remote_port) == remote
                and media.remote_rtcp_port):
            return str(ipaddress.ip_address(media.remote_rtcp_address)), media.remote_rtcp_port
        return remote[0], remote[1] + 1

    def _rtcp_send(self, stream: Stream, now: float, bye: bool = False) -> None:
        """A compound packet: SR (we sent RTP within two intervals) or RR, with a report block
        about the peer's source when we have one, SDES CNAME, and BYE when closing."""
        impl = self._impl_for(stream)
        r = self._rtcp[stream._key]
        addr = self._rtcp_addr(stream)
        if addr is None:
            return
        info = impl.rtcp_info(stream._key, True)
        blocks: tuple[ReportBlock, ...] = ()
        if info.has_source:
            dlsr = compact_from_seconds(max(0.0, now - r.lsr_at)) if r.lsr else 0
            blocks = (ReportBlock(info.ssrc, info.fraction, info.cumulative, info.ext_highest,
                                  info.jitter, r.lsr, dlsr),)
            r.fraction = info.fraction
        ssrc = info.tx_ssrc
        packets: list[RtcpPacket] = []
        if info.tx_has_sent and now - info.tx_sent_at < 2 * self.config.rtcp_interval:
            c = impl.counters(stream._key)
            ts = (info.tx_ts + round((now - info.tx_sent_at) * r.clock_rate)) & 0xFFFFFFFF
            packets.append(SenderReport(
                ssrc, ntp_from_time(now + self._ntp_offset), ts, c.packets_out & 0xFFFFFFFF,
                (c.bytes_out - 12 * c.packets_out) & 0xFFFFFFFF, blocks))
        else:
            packets.append(ReceiverReport(ssrc, blocks))
        packets.append(SourceDescription((SdesChunk.with_cname(ssrc, self._cname),)))
        if bye:
            packets.append(Bye((ssrc,)))
        impl.send_rtcp(stream._key, build_rtcp(packets), addr, self._rtcp_mux(stream))
        r.sent += 1

    def _rtcp_received(self, stream: Stream, data: bytes, at: float) -> None:
        """The peer's compound packet: its SR (for LSR/DLSR), report blocks about us (RTT,
        loss and jitter it sees), BYE. Malformed ones are ignored."""
        r = self._rtcp.get(stream._key)
        if r is None or self._impl is None:
            return
        try:
            packets = parse_rtcp(data)
        except ParseError:
            return
        r.received += 1
        ours = self._impl.rtcp_info(stream._key, False).tx_ssrc
        for p in packets:
            if isinstance(p, SenderReport):
                r.lsr = ntp_compact(p.ntp_timestamp)
                r.lsr_at = at
            if isinstance(p, (SenderReport, ReceiverReport)):
                for b in p.reports:
                    if b.ssrc != ours:
                        continue
                    rtt = rtt_from_report_block(b, at, ntp_offset=self._ntp_offset)
                    if rtt is not None:
                        r.rtt = rtt
                    r.peer_fraction = b.fraction_lost
                    r.peer_cum = b.cumulative_lost
                    r.peer_jitter = b.jitter
            elif isinstance(p, Bye):
                r.bye = True

    def _deliver(self, ev: MediaEvent) -> None:
        if self._on_event is None:
            self.events.put_nowait(ev)
            return
        try:
            self._on_event(ev)
        except Exception:
            log.exception("media event handler failed for %s", ev.kind)


def _derive_map(src: NegotiatedMedia, dst: NegotiatedMedia) -> dict[int, int]:
    """Payload types src's peer sends -> the numbers dst's peer uses for the same thing."""
    by_codec = {c.key: pt for pt, c in dst.receive_payload_types.items()}
    if dst.send_codec.payload_type is not None:
        by_codec.setdefault(dst.send_codec.key, dst.send_codec.payload_type)
    by_rate = {rate: pt for pt, rate in dst.receive_telephone_events.items()}
    te = dst.telephone_event
    if te is not None and te.payload_type is not None:
        by_rate.setdefault(te.clock_rate, te.payload_type)
    out: dict[int, int] = {}
    for pt, c in src.receive_payload_types.items():
        to = by_codec.get(c.key)
        if to is not None and to != pt:
            out[pt] = to
    for pt, rate in src.receive_telephone_events.items():
        to = by_rate.get(rate)
        if to is not None and to != pt:
            out[pt] = to
    return out



