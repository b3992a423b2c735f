"""cffi glue for the native media engine (cext/engine.c).

Thin and I/O-free on the Python side: the shell in ``pbx.media.engine`` owns the sockets and the
event loop and hands file descriptors and ``now`` in; this module converts addresses and
counters between Python values and the C structs. ``AVAILABLE`` is false when the extension is
disabled (``PBX_NO_EXTENSIONS=1``) or built without the engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from pbx.media._engine_core import Counters
from pbx.media._native import ffi, lib

__all__ = ["AVAILABLE", "NativeCore", "RawEvent", "addr_from_c", "addr_to_c", "pt_mask"]

AVAILABLE: bool = lib is not None and hasattr(lib, "pbx_engine_new")

RawEvent = tuple[int, int, float, "tuple[str, int] | None"]
"""(kind, slot, at, address): an engine event as the C side reports it."""

_EVENT_BATCH = 256
_COUNTER_FIELDS = tuple(Counters.__dataclass_fields__)


def addr_to_c(host: str, port: int) -> Any:
    """A ``pbx_engine_addr *`` for an IP literal and port."""
    ip = ipaddress.ip_address(host)
    a = ffi.new("pbx_engine_addr *")
    a.family = ip.version
    a.port = port
    packed = ip.packed
    ffi.memmove(a.ip, packed, len(packed))
    return a


def addr_from_c(a: Any) -> tuple[str, int]:
    """(host, port) of a ``pbx_engine_addr``."""
    raw = bytes(ffi.buffer(a.ip, 16))
    ip = ipaddress.IPv4Address(raw[:4]) if a.family == 4 else ipaddress.IPv6Address(raw)
    return str(ip), int(a.port)


def pt_mask(payload_types: Iterable[int] | None) -> Any:
    """A 16-byte payload-type bitmap for C, or NULL for any payload type."""
    if payload_types is None:
        return ffi.NULL
    mask = ffi.new("uint8_t[16]")
    for pt in payload_types:
        mask[pt >> 3] |= 1 << (pt & 7)
    return mask


class NativeCore:
    """One C engine: its epoll fd, streams by slot, and the drain/tick/event calls."""

    def __init__(self, max_events: int) -> None:
        if not AVAILABLE:
            raise RuntimeError("the native media engine is not built (or PBX_NO_EXTENSIONS=1)")
        e = lib.pbx_engine_new(max_events)
        if e == ffi.NULL:
            raise OSError(ffi.errno, "pbx_engine_new failed")
        self._e: Any = e
        self._evbuf = ffi.new("pbx_engine_event[]", _EVENT_BATCH)
        self._counters = ffi.new("pbx_engine_counters *")
        self._addr = ffi.new("pbx_engine_addr *")
        self._totals = ffi.new("pbx_engine_totals *")
        self._evp = evp = ffi.new("int *")
        c_drain, c_tick = lib.pbx_engine_drain, lib.pbx_engine_tick

        def drain(now: float) -> int:
            """Read and handle every ready socket; the number of datagrams read."""
            return int(c_drain(e, now, evp))

        def pending() -> int:
            """Events waiting after the last ``drain``."""
            return int(evp[0])

        def tick(now: float) -> int:
            """The per-20-ms work for all streams; the number of events waiting."""
            return int(c_tick(e, now))

        self.drain, self.pending, self.tick = drain, pending, tick

    @property
    def fd(self) -> int:
        return int(lib.pbx_engine_fd(self._e))

    def close(self) -> None:
        if self._e is not None:
            lib.pbx_engine_free(self._e)
            self._e = None

    def add(self, fd: int, rtcp_fd: int, ssrc: int, seq0: int, ts0: int) -> int:
        slot = int(lib.pbx_engine_stream_add(self._e, fd, rtcp_fd, ssrc, seq0, ts0))
        if slot < 0:
            raise OSError(ffi.errno, "pbx_engine_stream_add failed")
        return slot

    def remove(self, slot: int) -> None:
        lib.pbx_engine_stream_remove(self._e, slot)

    def set_remote(self, slot: int, host: str, port: int, payload_types: Iterable[int] | None,
                   clock_rate: int, latch_n: int, timeout: float, now: float) -> None:
        rc = lib.pbx_engine_stream_set_remote(self._e, slot, addr_to_c(host, port),
                                              pt_mask(payload_types), clock_rate, latch_n,
                                              timeout, now)
        if rc < 0:
            raise ValueError(f"cannot set remote {host}:{port} on slot {slot}")

    def set_timeout(self, slot: int, timeout: float, now: float) -> None:
        lib.pbx_engine_stream_set_timeout(self._e, slot, timeout, now)

    def remote(self, slot: int) -> tuple[str, int] | None:
        if lib.pbx_engine_stream_remote(self._e, slot, self._addr) < 0:
            return None
        return addr_from_c(self._addr)

    def relay(self, a: int, b: int) -> None:
        if lib.pbx_engine_relay(self._e, a, b) < 0:
            raise ValueError(f"cannot relay slots {a} and {b}")

    def unrelay(self, slot: int) -> None:
        lib.pbx_engine_unrelay(self._e, slot)

    def counters(self, slot: int) -> Counters:
        c = self._counters
        if lib.pbx_engine_stream_counters(self._e, slot, c) < 0:
            raise ValueError(f"no stream in slot {slot}")
        return Counters(*(int(getattr(c, name)) for name in _COUNTER_FIELDS))

    def events(self) -> list[RawEvent]:
        out: list[RawEvent] = []
        buf = self._evbuf
        while True:
            n = lib.pbx_engine_events(self._e, buf, _EVENT_BATCH)
            for i in range(n):
                ev = buf[i]
                addr = addr_from_c(ev.addr) if ev.addr.family else None
                out.append((int(ev.kind), int(ev.slot), float(ev.at), addr))
            if n < _EVENT_BATCH:
                return out

    def totals(self) -> dict[str, int]:
        t = self._totals
        lib.pbx_engine_get_totals(self._e, t)
        return {name: int(getattr(t, name)) for name in
                ("wakeups", "rounds", "packets", "max_batch", "ticks", "events_lost",
                 "recv_errors")}
