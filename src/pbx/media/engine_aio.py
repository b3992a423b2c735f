"""The python backend of the media engine: one asyncio datagram endpoint per socket.

Same behaviour as the native backend (cext/engine.c), using the pure-Python twins in
``pbx.media._engine_core`` on every packet. This is the portable fallback and the reference the
native backend is measured against; per-packet Python is what limits it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from pbx.media._engine_core import (
    DROP_PT,
    DROP_SOURCE,
    LATCHED,
    MALFORMED,
    MAX_PACKET,
    RTCP,
    Counters,
    RxState,
    TxState,
    rtp_check,
)

__all__ = ["EV_LATCHED", "EV_TIMEOUT", "PyBackend"]

EV_TIMEOUT = 1
EV_LATCHED = 2

RawEvent = tuple[int, int, float, "tuple[str, int] | None"]
Emit = Callable[[list[RawEvent]], None]

_HDR = struct.Struct("!BBHII")
_monotonic = time.monotonic


def _canonical(addr: tuple[Any, ...]) -> tuple[str, int]:
    host = str(addr[0]).partition("%")[0]
    return str(ipaddress.ip_address(host)), int(addr[1])


class _PyStream(asyncio.DatagramProtocol):
    """One stream: its RTP endpoint and the twin of the C stream state."""

    def __init__(self, backend: PyBackend, key: int, ssrc: int, seq0: int, ts0: int) -> None:
        self.backend = backend
        self.key = key
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp_transport: asyncio.DatagramTransport | None = None
        self.rx = RxState()
        self.tx = TxState(ssrc, seq0, ts0)
        self.c = Counters()
        self.peer: _PyStream | None = None
        self.timeout = 0.0
        self.last_rx = 0.0
        self.timed_out = False
        self.on_closed: Callable[[], None] | None = None
        self._open = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_one()

    def _closed_one(self) -> None:
        self._open -= 1
        if self._open == 0 and self.on_closed is not None:
            self.on_closed()
            self.on_closed = None

    def error_received(self, exc: Exception) -> None:
        self.c.send_errors += 1

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        now = _monotonic()
        c = self.c
        kind = rtp_check(data) if len(data) <= MAX_PACKET else MALFORMED
        if kind:
            if kind == RTCP:
                c.rtcp_in += 1
            else:
                c.dropped_malformed += 1
            return
        _, b1, seq, _, ssrc = _HDR.unpack_from(data)
        src = addr if len(addr) == 2 else addr[:2]
        rx = self.rx
        if src != rx.remote:
            src = _canonical(addr)      # the kernel may spell it differently (IPv6, scope)
        v = rx.verdict(src, ssrc, seq, b1)
        if v:
            if v == DROP_SOURCE:
                c.dropped_source += 1
                return
            if v == DROP_PT:
                c.dropped_payload_type += 1
                return
            if v == LATCHED:
                c.latched += 1
                if self.peer is not None:
                    self.peer.tx.resync = True
                self.backend.emit([(EV_LATCHED, self.key, now, rx.remote)])  # type: ignore[list-item]
        c.packets_in += 1
        c.bytes_in += len(data)
        self.last_rx = now
        self.timed_out = False
        peer = self.peer
        if peer is None or peer.rx.remote is None or peer.transport is None:
            c.dropped_unrouted += 1     # phase 2: jitter buffer / RFC 4733 receiver
            return
        pkt = bytearray(data)
        peer.tx.rewrite(pkt, now)
        peer.transport.sendto(pkt, peer.rx.remote)  # type: ignore[arg-type]
        pc = peer.c
        pc.packets_out += 1
        pc.bytes_out += len(pkt)


class _PyRtcp(asyncio.DatagramProtocol):
    """The RTCP socket of a stream without rtcp-mux: counted (phase 2: RTCP statistics)."""

    def __init__(self, stream: _PyStream) -> None:
        self.stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream.rtcp_transport = transport  # type: ignore[assignment]
        self.stream._open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream._closed_one()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stream.c.rtcp_in += 1


class PyBackend:
    """Streams keyed by small integers, as the native backend's slots are."""

    name = "python"

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self._streams: dict[int, _PyStream] = {}
        self._next_key = 0
        self._ticks = 0

    async def add(self, loop: asyncio.AbstractEventLoop, sock: Any, rtcp_sock: Any, ssrc: int,
                  seq0: int, ts0: int) -> int:
        key = self._next_key
        self._next_key += 1
        st = _PyStream(self, key, ssrc, seq0, ts0)
        await loop.create_datagram_endpoint(lambda: st, sock=sock)
        if rtcp_sock is not None:
            try:
                await loop.create_datagram_endpoint(lambda: _PyRtcp(st), sock=rtcp_sock)
            except BaseException:
                assert st.transport is not None
                st.transport.close()
                raise
        self._streams[key] = st
        return key

    def remove(self, key: int, on_closed: Callable[[], None]) -> None:
        """Close the stream's endpoints; ``on_closed`` runs once its sockets are closed."""
        self.unrelay(key)
        st = self._streams.pop(key)
        st.on_closed = on_closed
        for t in (st.transport, st.rtcp_transport):
            if t is not None:
                t.close()

    def set_remote(self, key: int, host: str, port: int, payload_types: Iterable[int] | None,
                   clock_rate: int, latch_n: int, timeout: float, now: float) -> None:
        st = self._streams[key]
        rx = st.rx
        rx.remote = (host, port)
        rx.latch_n = max(latch_n, 0)
        rx.cand_count = 0
        rx.pt_allowed = None if payload_types is None else frozenset(payload_types)
        st.tx.set_clock_rate(clock_rate)
        st.timeout = timeout
        st.last_rx = now
        st.timed_out = False
        if st.peer is not None:
            st.peer.tx.resync = True

    def set_timeout(self, key: int, timeout: float, now: float) -> None:
        st = self._streams[key]
        st.timeout = timeout
        st.last_rx = now
        st.timed_out = False

    def remote(self, key: int) -> tuple[str, int] | None:
        return self._streams[key].rx.remote  # type: ignore[return-value]

    def relay(self, a: int, b: int) -> None:
        sa, sb = self._streams[a], self._streams[b]
        if a == b or sa.peer is not None or sb.peer is not None:
            raise ValueError(f"cannot relay streams {a} and {b}")
        sa.peer, sb.peer = sb, sa
        sa.tx.resync = sb.tx.resync = True

    def unrelay(self, key: int) -> None:
        st = self._streams[key]
        if st.peer is not None:
            st.peer.peer = None
            st.peer = None

    def counters(self, key: int) -> Counters:
        c = self._streams[key].c
        return Counters(**c.as_dict())

    def tick(self, now: float) -> None:
        self._ticks += 1
        events: list[RawEvent] = []
        for st in self._streams.values():
            if (st.timeout > 0 and st.rx.remote is not None and not st.timed_out
                    and now - st.last_rx >= st.timeout):
                st.timed_out = True
                st.c.timeouts += 1
                events.append((EV_TIMEOUT, st.key, now, None))
        if events:
            self.emit(events)

    def totals(self) -> dict[str, int]:
        packets = sum(s.c.packets_in + s.c.rtcp_in + s.c.dropped_malformed + s.c.dropped_source
                      + s.c.dropped_payload_type for s in self._streams.values())
        return {"wakeups": packets, "rounds": packets, "packets": packets,
                "max_batch": 1 if packets else 0, "ticks": self._ticks, "events_lost": 0,
                "recv_errors": 0}

    def close(self) -> None:
        self._streams.clear()
