"""cffi glue for the native media engine (cext/engine.c).

Thin and I/O-free on the Python side: the shell in ``pbx.media.engine`` owns the sockets and the
event loop and hands file descriptors and ``now`` in; this module converts addresses, counters,
media configurations, frames and events between Python values and the C structs. ``AVAILABLE``
is false when the extension is disabled (``PBX_NO_EXTENSIONS=1``) or built without the engine.

External (Opus) streams: when any exist, ``NativeCore.tick`` runs the tick in two halves and
decodes and encodes their frames in Python in between (``ExternalCoder``), one frame per stream
per tick; every other codec stays in the one C call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._engine_core import Counters, RtcpInfo
from pbx.media._engine_media import EXT_MAX_PAYLOAD, ExternalCoder, MediaConfig
from pbx.media._native import ffi, lib
from pbx.rtp.jitter import Frame

__all__ = [
    "AVAILABLE",
    "EV_DIGIT",
    "EV_LATCHED",
    "EV_RTCP",
    "EV_TELEVENT",
    "EV_TIMEOUT",
    "NativeCore",
    "RawEvent",
    "addr_from_c",
    "addr_to_c",
    "media_config_to_c",
    "pt_mask",
]

AVAILABLE: bool = lib is not None and hasattr(lib, "pbx_engine_tick_rx")

EV_TIMEOUT, EV_LATCHED, EV_DIGIT, EV_TELEVENT, EV_RTCP = 1, 2, 3, 4, 5

RawEvent = tuple[int, int, float, Any]
"""(kind, slot, at, data): an engine event. data: the new address (latched), (digit,
duration_ms) (digit), (pt, marker, seq, ts, payload) (televent), None (timeout)."""

Int16Array = npt.NDArray[np.int16]
_EVENT_BATCH = 256
_COUNTER_FIELDS = tuple(Counters.__dataclass_fields__)
_JB_FRAME, _JB_STARTUP, _JB_GAP = 0, 1, 5
_TAP_MAX = 100                      # PBX_ENGINE_TAP_FRAMES
_TOTALS = ("wakeups", "rounds", "packets", "max_batch", "ticks", "events_lost", "recv_errors",
           "tick_ns", "tick_ns_max", "frames_sent", "tap_lost")


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


def _pt_map(mapping: dict[int, int] | None) -> Any:
    if mapping is None:
        return ffi.NULL
    table = ffi.new("uint8_t[128]", list(range(128)))
    for src, dst in mapping.items():
        table[src] = dst
    return table


def media_config_to_c(cfg: MediaConfig, c_ffi: Any = None) -> Any:
    """A ``pbx_engine_media_config *`` (``c_ffi``: another build's ffi, for twin checks)."""
    f = c_ffi or ffi
    c = f.new("pbx_engine_media_config *")
    c.send_kind = cfg.send_kind
    c.send_pt = cfg.send_pt
    c.sample_rate = cfg.sample_rate
    c.clock_rate = cfg.clock_rate
    c.te_pt = cfg.te_pt
    c.sends = 1 if cfg.sends else 0
    c.ptime = cfg.ptime
    c.jb_min, c.jb_max, c.jb_start, c.jb_fixed = cfg.jb_min, cfg.jb_max, cfg.jb_start, cfg.jb_fixed
    for pt, kind in cfg.pt_kind.items():
        c.pt_kind[pt] = kind
    return c


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
        self._u64 = ffi.new("uint64_t *")
        self._i64x16 = ffi.new("int64_t[16]")
        self._slots = ffi.new("int[]", 1024)
        self._ext_buf = ffi.new("uint8_t[]", EXT_MAX_PAYLOAD)
        self._ext_len = ffi.new("int *")
        self._rtcp_buf = ffi.new("uint8_t[]", int(lib.PBX_ENGINE_RTCP_MAX))
        self._rtcp_info = ffi.new("pbx_engine_rtcp_info *")
        self.frames: dict[int, int] = {}           # slot -> PCM samples per frame
        self.external: dict[int, ExternalCoder] = {}
        c_drain, c_tick = lib.pbx_engine_drain, lib.pbx_engine_tick

        def drain(now: float) -> int:
            """Read and handle every ready socket; the number of datagrams read."""
            return int(c_drain(e, now, evp))

        def pending() -> int:
            """Events waiting after the last ``drain``."""
            return int(evp[0])

        def tick(now: float) -> int:
            """The per-20-ms work for all streams; the number of events waiting."""
            if self.external:
                return self._tick_external(now)
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
        self.frames.pop(slot, None)
        self.external.pop(slot, None)

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

    def relay(self, a: int, b: int, map_ab: dict[int, int] | None = None,
              map_ba: dict[int, int] | None = None) -> None:
        if lib.pbx_engine_relay(self._e, a, b, _pt_map(map_ab), _pt_map(map_ba)) < 0:
            raise ValueError(f"cannot relay slots {a} and {b}")

    def unrelay(self, slot: int) -> None:
        lib.pbx_engine_unrelay(self._e, slot)

    def counters(self, slot: int) -> Counters:
        c = self._counters
        if lib.pbx_engine_stream_counters(self._e, slot, c) < 0:
            raise ValueError(f"no stream in slot {slot}")
        return Counters(*(int(getattr(c, name)) for name in _COUNTER_FIELDS))

    # -- terminated streams ---------------------------------------------------------------------

    def set_media(self, slot: int, cfg: MediaConfig | None) -> int:
        """Make the stream terminated (or plain again with None); PCM samples per frame."""
        if cfg is None:
            lib.pbx_engine_stream_set_media(self._e, slot, ffi.NULL)
            self.frames.pop(slot, None)
            self.external.pop(slot, None)
            return 0
        frame = int(lib.pbx_engine_stream_set_media(self._e, slot, media_config_to_c(cfg)))
        if frame < 0:
            raise ValueError(f"the engine cannot take media {cfg}")
        self.frames[slot] = frame
        if cfg.codec is not None and cfg.codec.kind == "opus":
            old = self.external.get(slot)
            if old is None or old.codec != cfg.codec:
                self.external[slot] = ExternalCoder(cfg.codec)
        else:
            self.external.pop(slot, None)
        return frame

    def set_inband(self, slot: int, on: bool) -> None:
        if lib.pbx_engine_stream_set_inband(self._e, slot, 1 if on else 0) < 0:
            raise ValueError("in-band DTMF detection needs media at 8..48 kHz in steps of 8 kHz")

    def jitter(self, slot: int) -> tuple[int, ...] | None:
        out = self._i64x16
        if lib.pbx_engine_stream_jitter(self._e, slot, out) < 0:
            return None
        return tuple(int(v) for v in out)

    def play_push(self, slot: int, frames: Int16Array) -> int:
        """Queue whole frames (rows of ``frames``); how many fitted."""
        x = np.ascontiguousarray(frames, np.int16)
        if not len(x):
            return 0
        n = lib.pbx_engine_play_push(self._e, slot, ffi.from_buffer("int16_t[]", x), len(x))
        return max(int(n), 0)

    def play_push_event(self, slot: int, payload: bytes, marker: bool, ts_off: int) -> bool:
        return bool(lib.pbx_engine_play_push_event(self._e, slot, payload, len(payload),
                                                   1 if marker else 0, ts_off & 0xFFFFFFFF) > 0)

    def play_status(self, slot: int) -> tuple[int, int]:
        """(entries queued, entries consumed since the stream was added)."""
        queued = int(lib.pbx_engine_play_status(self._e, slot, self._u64))
        return queued, int(self._u64[0])

    def play_flush(self, slot: int) -> int:
        return int(lib.pbx_engine_play_flush(self._e, slot))

    def play_want(self, slot: int, on: bool) -> None:
        lib.pbx_engine_play_want(self._e, slot, 1 if on else 0)

    def feed_list(self) -> list[int]:
        buf = self._slots
        out: list[int] = []
        while True:
            n = lib.pbx_engine_feed_list(self._e, buf, len(buf))
            out.extend(buf[i] for i in range(n))
            if n < len(buf):
                return out

    def tap(self, slot: int, mode: int) -> None:
        if lib.pbx_engine_tap(self._e, slot, mode) < 0:
            raise ValueError(f"cannot tap slot {slot}")

    def tap_read(self, slot: int) -> tuple[Int16Array, Int16Array]:
        """The frames tapped since the last read: (received, sent) as (frames, samples)."""
        frame = self.frames.get(slot, 0)
        rx = np.empty((_TAP_MAX, frame), np.int16)
        tx = np.empty((_TAP_MAX, frame), np.int16)
        n = lib.pbx_engine_tap_read(self._e, slot, ffi.from_buffer("int16_t[]", rx),
                                    ffi.from_buffer("int16_t[]", tx), _TAP_MAX)
        n = max(int(n), 0)
        return rx[:n], tx[:n]

    # -- conferences ----------------------------------------------------------------------------

    def conf_new(self, rate: int) -> int:
        cid = int(lib.pbx_engine_conf_new(self._e, rate))
        if cid < 0:
            raise ValueError(f"bad conference rate {rate}")
        return cid

    def conf_free(self, cid: int) -> None:
        lib.pbx_engine_conf_free(self._e, cid)

    def conf_join(self, cid: int, slot: int, flags: int) -> None:
        if lib.pbx_engine_conf_join(self._e, cid, slot, flags) < 0:
            raise ValueError(f"cannot join slot {slot} to conference {cid}")

    def conf_leave(self, slot: int) -> None:
        lib.pbx_engine_conf_leave(self._e, slot)

    def conf_set(self, slot: int, flags: int, whisper_to: int) -> None:
        if lib.pbx_engine_conf_set(self._e, slot, flags, whisper_to) < 0:
            raise ValueError(f"cannot change slot {slot}")

    def conf_tap(self, cid: int, on: bool) -> None:
        if lib.pbx_engine_conf_tap(self._e, cid, 1 if on else 0) < 0:
            raise ValueError(f"cannot tap conference {cid}")

    def conf_tap_read(self, cid: int, frame: int) -> Int16Array:
        out = np.empty((_TAP_MAX, frame), np.int16)
        n = lib.pbx_engine_conf_tap_read(self._e, cid, ffi.from_buffer("int16_t[]", out),
                                         _TAP_MAX)
        return out[:max(int(n), 0)]

    # -- the tick with external codecs ------------------------------------------------------------

    def _tick_external(self, now: float) -> int:
        e = self._e
        lib.pbx_engine_tick_rx(e, now)
        buf, ext_len = self._ext_buf, self._ext_len
        slots = self._slots
        n = lib.pbx_engine_ext_list(e, slots, len(slots))
        for i in range(n):
            slot = slots[i]
            coder = self.external.get(slot)
            if coder is None:
                continue
            code = lib.pbx_engine_ext_rx(e, slot, buf, EXT_MAX_PAYLOAD, ext_len)
            frame = (Frame(bytes(ffi.buffer(buf, ext_len[0])), 0, 0, 0, 0, 0)
                     if code == _JB_FRAME else None)
            pcm = np.ascontiguousarray(
                coder.rx(frame, code not in (_JB_FRAME, _JB_STARTUP, _JB_GAP)), np.int16)
            lib.pbx_engine_ext_rx_pcm(e, slot, ffi.from_buffer("int16_t[]", pcm), now)
        waiting = int(lib.pbx_engine_tick_tx(e, now))
        for slot, coder in self.external.items():
            pcm = np.empty(coder.frame, np.int16)
            if lib.pbx_engine_ext_tx(e, slot, ffi.from_buffer("int16_t[]", pcm)):
                payload = coder.encode(pcm)
                lib.pbx_engine_ext_send(e, slot, payload, len(payload), now)
        return waiting

    def rtcp_info(self, slot: int, report: bool) -> RtcpInfo:
        """``pbx_engine_stream_rtcp_info``: the figures an RTCP report needs."""
        i = self._rtcp_info
        if lib.pbx_engine_stream_rtcp_info(self._e, slot, 1 if report else 0, i) < 0:
            raise ValueError(f"no stream in slot {slot}")
        return RtcpInfo(bool(i.has_source), int(i.ssrc), int(i.received), int(i.expected),
                        int(i.jitter), int(i.fraction), int(i.cumulative), int(i.ext_highest),
                        int(i.tx_ssrc), int(i.tx_ts), float(i.tx_sent_at), bool(i.tx_has_sent))

    # -- events and totals ----------------------------------------------------------------------

    def events(self) -> list[RawEvent]:
        out: list[RawEvent] = []
        buf = self._evbuf
        while True:
            n = lib.pbx_engine_events(self._e, buf, _EVENT_BATCH)
            for i in range(n):
                ev = buf[i]
                kind = int(ev.kind)
                data: Any = None
                if kind == EV_LATCHED:
                    data = addr_from_c(ev.addr)
                elif kind == EV_DIGIT:
                    data = (ev.digit.decode("ascii"), int(ev.duration_ms))
                elif kind == EV_TELEVENT:
                    payload = bytes(ffi.buffer(ev.payload, ev.len)) if ev.len >= 0 else b"\0"
                    data = (int(ev.pt), bool(ev.marker), int(ev.seq), int(ev.ts), payload)
                elif kind == EV_RTCP:
                    n = lib.pbx_engine_rtcp_read(self._e, ev.seq, self._rtcp_buf, len(self._rtcp_buf))
                    data = bytes(ffi.buffer(self._rtcp_buf, n)) if n >= 0 else b""
                out.append((kind, int(ev.slot), float(ev.at), data))
            if n < _EVENT_BATCH:
                return out

    def totals(self) -> dict[str, int]:
        t = self._totals
        lib.pbx_engine_get_totals(self._e, t)
        return {name: int(getattr(t, name)) for name in _TOTALS}
