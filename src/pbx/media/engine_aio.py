"""The python backend of the media engine: one asyncio datagram endpoint per socket.

Same behaviour as the native backend (cext/engine.c), using the pure-Python twins in
``pbx.media._engine_core`` on every packet and ``pbx.media._engine_media.MediaCore`` per
terminated stream (jitter buffer, codecs, concealment, in-band DTMF: each on its C kernel
through cffi when built), ``pbx.media.mixer.Conference`` for conferences. This is the portable
fallback and the reference the native backend is measured against; per-packet and per-frame
Python is what limits it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._engine_core import (
    DROP_PT,
    DROP_SOURCE,
    LATCHED,
    MALFORMED,
    MAX_PACKET,
    RTCP,
    Counters,
    RtcpInfo,
    RxState,
    TxState,
    rtcp_info,
    rtp_check,
)
from pbx.media._engine_media import MediaConfig, MediaCore, payload_bounds
from pbx.media.mixer import Conference
from pbx.media.resample import Resampler
from pbx.rtp.jitter import PutResult
from pbx.rtp.stats import ReceiverStats

__all__ = ["EV_DIGIT", "EV_LATCHED", "EV_RTCP", "EV_TELEVENT", "EV_TIMEOUT", "PyBackend"]

EV_TIMEOUT, EV_LATCHED, EV_DIGIT, EV_TELEVENT, EV_RTCP = 1, 2, 3, 4, 5
RTCP_MAX = 1500          # PBX_ENGINE_RTCP_MAX
CONF_MUTED, CONF_DEAF = 1, 2
WHISPER_NOBODY = -2
RING = 8                 # playout entries per stream, as PBX_ENGINE_RING
RING_LOW = 3             # PBX_ENGINE_RING_LOW
TAP_FRAMES = 100         # PBX_ENGINE_TAP_FRAMES
EV_PAYLOAD = 64          # PBX_ENGINE_EV_PAYLOAD

RawEvent = tuple[int, int, float, Any]
Emit = Callable[[list[RawEvent]], None]
Int16Array = npt.NDArray[np.int16]

_HDR = struct.Struct("!BBHII")
_monotonic = time.monotonic
_perf_ns = time.perf_counter_ns
_TAP_KEY = ("conference", "tap")          # the mixer member that hears everyone, for recordings


def _canonical(addr: tuple[Any, ...]) -> tuple[str, int]:
    host = str(addr[0]).partition("%")[0]
    return str(ipaddress.ip_address(host)), int(addr[1])


def televent_payload(payload: bytes) -> bytes:
    """What a telephone-event event carries of a payload (as the C engine's event struct)."""
    if len(payload) <= EV_PAYLOAD:
        return payload
    return payload[-EV_PAYLOAD:] if len(payload) % 4 == 0 else b"\0"


class _PyConf:
    """A conference: the mixer, its rate and the recording tap."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frame = rate // 50
        self.mixer = Conference(rate, self.frame)
        self.members: dict[int, _PyStream] = {}
        self.tap: list[Int16Array] | None = None


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
        self.pt_map: bytes | None = None
        self.timeout = 0.0
        self.last_rx = 0.0
        self.timed_out = False
        self.on_closed: Callable[[], None] | None = None
        self._open = 0
        # terminated streams
        self.media: MediaCore | None = None
        self.frame = 0
        self.ring: deque[tuple[Any, ...]] = deque()
        self.consumed = 0
        self.want_feed = False
        self.on_feed = False
        self.te_ts = 0
        self.tap_mode = 0
        self.tap_rx: list[Int16Array] = []
        self.tap_tx: list[Int16Array] = []
        self.tap_count = 0
        self.rx_pcm: Int16Array = np.zeros(0, np.int16)
        self.conf: _PyConf | None = None
        self.conf_flags = 0
        self.up: Any = None
        self.down: Any = None
        self.conf_in: Int16Array | None = None
        self.conf_out: Int16Array | None = None
        self.rstats: ReceiverStats | None = None   # the peer's source (terminated streams)

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
                self.on_rtcp(data, addr, now)
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
                self.backend.emit([(EV_LATCHED, self.key, now, rx.remote)])
        c.packets_in += 1
        c.bytes_in += len(data)
        self.last_rx = now
        self.timed_out = False
        if self.media is not None and self.peer is None:
            rs = self.rstats
            if rs is None or rs.ssrc != ssrc:
                rs = self.rstats = ReceiverStats(ssrc, self.media.cfg.clock_rate)
            rs.on_packet(seq, _HDR.unpack_from(data)[3], now)
        peer = self.peer
        if peer is not None:
            if peer.rx.remote is None or peer.transport is None:
                c.dropped_unrouted += 1
                return
            pkt = bytearray(data)
            if self.pt_map is not None:
                pkt[1] = (pkt[1] & 0x80) | self.pt_map[pkt[1] & 0x7F]
            peer.tx.rewrite(pkt, now)
            peer.send(pkt)
            return
        media = self.media
        if media is None:
            c.dropped_unrouted += 1
            return
        r = media.put(data, now)
        if r == PutResult.EVENT:
            start, end = payload_bounds(data)
            _, b1, seq, ts, _ = _HDR.unpack_from(data)
            self.backend.emit([(EV_TELEVENT, self.key, now,
                                (b1 & 0x7F, bool(b1 & 0x80), seq, ts,
                                 televent_payload(data[start:end])))])
        elif r < 0:
            c.dropped_unrouted += 1

    def on_rtcp(self, data: bytes, addr: tuple[Any, ...], now: float) -> None:
        """RTCP: counted; a terminated stream's, from its peer's address, goes to the engine."""
        self.c.rtcp_in += 1
        remote = self.rx.remote
        if self.media is None or self.peer is not None or remote is None or len(data) > RTCP_MAX:
            return
        if _canonical(addr)[0] != remote[0]:  # type: ignore[index]
            return
        self.backend.emit([(EV_RTCP, self.key, now, bytes(data))])

    def send(self, pkt: bytes | bytearray) -> None:
        if self.transport is None or self.rx.remote is None:
            return
        self.transport.sendto(pkt, self.rx.remote)  # type: ignore[arg-type]
        self.c.packets_out += 1
        self.c.bytes_out += len(pkt)

    # -- the tick ------------------------------------------------------------------------------

    def tick_rx(self, now: float, events: list[RawEvent]) -> None:
        media = self.media
        assert media is not None
        _, pcm, digit = media.rx(now)
        if digit is not None:
            events.append((EV_DIGIT, self.key, now, digit))
        self.rx_pcm = pcm
        if self.conf is not None:
            self.conf_in = self.up.process(pcm) if self.up is not None else pcm

    def tick_tx(self, now: float) -> int:
        """Send this tick's frame; 1 when the engine made a packet."""
        media = self.media
        assert media is not None
        pcm: Int16Array | None = None
        entry = None
        if self.conf_out is not None:
            pcm = self.down.process(self.conf_out) if self.down is not None else self.conf_out
        if self.ring:
            entry = self.ring.popleft()
            self.consumed += 1
            if entry[0] == 0:
                pcm, entry = entry[1], None
            else:
                pcm = None
        if pcm is None:
            pcm = np.zeros(self.frame, np.int16)
        if self.tap_mode:
            if self.tap_count < TAP_FRAMES:
                if self.tap_mode & 1:
                    self.tap_rx.append(self.rx_pcm)
                if self.tap_mode & 2:
                    self.tap_tx.append(pcm)
                self.tap_count += 1
            else:
                self.backend.tap_lost += 1
        if self.want_feed and len(self.ring) <= RING_LOW and not self.on_feed:
            self.on_feed = True
            self.backend.feed.append(self.key)
        cfg = media.cfg
        if not cfg.sends or self.rx.remote is None or self.transport is None:
            media.tx_acc.clear()
            return 0
        if entry is not None:
            media.tx_acc.clear()             # events replace the audio
            if cfg.te_pt < 0:
                return 0
            seq, ts, _ = self.tx.next(media.step, now)
            _, payload, marker, ts_off = entry
            if marker:
                self.te_ts = ts
            self.send(_HDR.pack(0x80, (0x80 if marker else 0) | cfg.te_pt, seq,
                                (self.te_ts + ts_off) & 0xFFFFFFFF, self.tx.ssrc) + payload)
            return 1
        sent = 0
        for payload, step in media.packets(pcm):
            seq, ts, marker = self.tx.next(step, now)
            self.send(_HDR.pack(0x80, (0x80 if marker else 0) | cfg.send_pt, seq, ts,
                                self.tx.ssrc) + payload)
            sent += 1
        return sent


class _PyRtcp(asyncio.DatagramProtocol):
    """The RTCP socket of a stream without rtcp-mux: counted."""

    def __init__(self, stream: _PyStream) -> None:
        self.stream = stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stream.rtcp_transport = transport  # type: ignore[assignment]
        self.stream._open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream._closed_one()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stream.on_rtcp(data, addr, _monotonic())


class PyBackend:
    """Streams keyed by small integers, as the native backend's slots are."""

    name = "python"

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self._streams: dict[int, _PyStream] = {}
        self._confs: dict[int, _PyConf] = {}
        self._next_key = 0
        self._next_conf = 0
        self._ticks = 0
        self._tick_ns = 0
        self._tick_ns_max = 0
        self._frames_sent = 0
        self.tap_lost = 0
        self.feed: list[int] = []

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
        self.conf_leave(key)
        st = self._streams.pop(key)
        st.on_closed = on_closed
        st.media = None
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

    def relay(self, a: int, b: int, map_ab: dict[int, int] | None = None,
              map_ba: dict[int, int] | None = None) -> None:
        sa, sb = self._streams[a], self._streams[b]
        if a == b or sa.peer is not None or sb.peer is not None:
            raise ValueError(f"cannot relay streams {a} and {b}")
        sa.peer, sb.peer = sb, sa
        sa.tx.resync = sb.tx.resync = True
        sa.pt_map = _table(map_ab)
        sb.pt_map = _table(map_ba)

    def unrelay(self, key: int) -> None:
        st = self._streams[key]
        if st.peer is not None:
            st.peer.peer = None
            st.peer.pt_map = None
            st.peer = None
            st.pt_map = None

    def counters(self, key: int) -> Counters:
        c = self._streams[key].c
        return Counters(**c.as_dict())

    def rtcp_info(self, key: int, report: bool) -> RtcpInfo:
        st = self._streams[key]
        return rtcp_info(st.rstats, st.tx, report)

    def send_rtcp(self, key: int, data: bytes, addr: tuple[str, int], mux: bool) -> None:
        st = self._streams.get(key)
        if st is None:
            return
        t = st.transport if mux or st.rtcp_transport is None else st.rtcp_transport
        if t is not None and not t.is_closing():
            t.sendto(data, addr)

    # -- terminated streams -------------------------------------------------------------------

    def set_media(self, key: int, cfg: MediaConfig | None) -> int:
        st = self._streams[key]
        if cfg is None:
            self.play_flush(key)
            st.media = None
            st.frame = 0
            st.tap_mode = 0
            st.tap_rx, st.tap_tx, st.tap_count = [], [], 0
            self._conf_io(st)
            return 0
        old = st.media
        if old is not None and cfg.same_core(old.cfg):
            old.reconfigure(cfg)
            st.tx.set_clock_rate(cfg.clock_rate)
            return st.frame
        core = MediaCore(cfg)
        if old is not None and old.det is not None:
            core.set_inband(True)
        st.media = core
        if core.frame != st.frame:
            self.play_flush(key)
            st.frame = core.frame
            st.tap_rx, st.tap_tx, st.tap_count = [], [], 0
        st.tx.set_clock_rate(cfg.clock_rate)
        self._conf_io(st)
        return st.frame

    def set_inband(self, key: int, on: bool) -> None:
        media = self._streams[key].media
        if media is None:
            raise ValueError("in-band DTMF detection needs media")
        media.set_inband(on)

    def jitter(self, key: int) -> tuple[int, ...] | None:
        media = self._streams[key].media
        return None if media is None else media.jitter()

    def play_push(self, key: int, frames: Int16Array) -> int:
        st = self._streams[key]
        if st.media is None:
            return 0
        n = min(len(frames), RING - len(st.ring))
        for i in range(n):
            st.ring.append((0, np.array(frames[i], np.int16)))
        return max(n, 0)

    def play_push_event(self, key: int, payload: bytes, marker: bool, ts_off: int) -> bool:
        st = self._streams[key]
        if st.media is None or len(st.ring) >= RING:
            return False
        st.ring.append((1, bytes(payload), bool(marker), ts_off & 0xFFFFFFFF))
        return True

    def play_status(self, key: int) -> tuple[int, int]:
        st = self._streams[key]
        return len(st.ring), st.consumed

    def play_flush(self, key: int) -> int:
        st = self._streams[key]
        n = len(st.ring)
        st.consumed += n
        st.ring.clear()
        return n

    def play_want(self, key: int, on: bool) -> None:
        self._streams[key].want_feed = on

    def feed_list(self) -> list[int]:
        out = [k for k in self.feed if k in self._streams]
        for k in out:
            self._streams[k].on_feed = False
        self.feed = []
        return out

    def tap(self, key: int, mode: int) -> None:
        st = self._streams[key]
        if st.media is None:
            raise ValueError(f"cannot tap stream {key}: no media")
        st.tap_mode = mode & 3
        st.tap_rx, st.tap_tx, st.tap_count = [], [], 0

    def tap_read(self, key: int) -> tuple[Int16Array, Int16Array]:
        st = self._streams[key]
        shape = (0, st.frame)
        rx = np.array(st.tap_rx, np.int16) if st.tap_rx else np.zeros(shape, np.int16)
        tx = np.array(st.tap_tx, np.int16) if st.tap_tx else np.zeros(shape, np.int16)
        st.tap_rx, st.tap_tx, st.tap_count = [], [], 0
        return rx, tx

    # -- conferences ----------------------------------------------------------------------------

    def conf_new(self, rate: int) -> int:
        if rate <= 0 or rate % 50 or rate // 50 > 960:
            raise ValueError(f"bad conference rate {rate}")
        cid = self._next_conf
        self._next_conf += 1
        self._confs[cid] = _PyConf(rate)
        return cid

    def conf_free(self, cid: int) -> None:
        conf = self._confs.pop(cid, None)
        if conf is not None:
            for key in list(conf.members):
                st = conf.members.pop(key)
                st.conf = None
                self._conf_io(st)

    def _conf_io(self, st: _PyStream) -> None:
        st.up = st.down = None
        st.conf_in = st.conf_out = None
        conf = st.conf
        if conf is None or st.media is None:
            return
        rate = st.media.cfg.sample_rate
        if rate != conf.rate:
            st.up, st.down = Resampler(rate, conf.rate), Resampler(conf.rate, rate)

    def conf_join(self, cid: int, key: int, flags: int) -> None:
        conf = self._confs[cid]
        st = self._streams[key]
        if st.conf is not None:
            raise ValueError(f"stream {key} is in a conference already")
        conf.mixer.join(key, muted=bool(flags & CONF_MUTED), deaf=bool(flags & CONF_DEAF))
        conf.members[key] = st
        st.conf = conf
        st.conf_flags = flags & 3
        self._conf_io(st)

    def conf_leave(self, key: int) -> None:
        st = self._streams.get(key)
        if st is None or st.conf is None:
            return
        conf = st.conf
        conf.mixer.leave(key)
        del conf.members[key]
        st.conf = None
        self._conf_io(st)

    def conf_set(self, key: int, flags: int, whisper_to: int) -> None:
        st = self._streams[key]
        conf = st.conf
        if conf is None or whisper_to == key:
            raise ValueError(f"cannot change stream {key}")
        mixer = conf.mixer
        (mixer.mute if flags & CONF_MUTED else mixer.unmute)(key)
        (mixer.deafen if flags & CONF_DEAF else mixer.undeafen)(key)
        st.conf_flags = flags & 3
        if whisper_to == -1:
            mixer.whisper(key, None)
        elif whisper_to >= 0:
            if whisper_to not in conf.members:
                raise ValueError(f"stream {whisper_to} is not in the conference")
            mixer.whisper(key, whisper_to)

    def conf_tap(self, cid: int, on: bool) -> None:
        conf = self._confs[cid]
        if on and conf.tap is None:
            conf.mixer.join(_TAP_KEY, muted=True)
            conf.tap = []
        elif not on and conf.tap is not None:
            conf.mixer.leave(_TAP_KEY)
            conf.tap = None

    def conf_tap_read(self, cid: int, frame: int) -> Int16Array:
        conf = self._confs[cid]
        frames = conf.tap or []
        out = np.array(frames, np.int16) if frames else np.zeros((0, frame), np.int16)
        if conf.tap is not None:
            conf.tap.clear()
        return out

    # -- the tick -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        t0 = _perf_ns()
        self._ticks += 1
        events: list[RawEvent] = []
        terminated = []
        for st in self._streams.values():
            if (st.timeout > 0 and st.rx.remote is not None and not st.timed_out
                    and now - st.last_rx >= st.timeout):
                st.timed_out = True
                st.c.timeouts += 1
                events.append((1, st.key, now, None))
            st.conf_in = st.conf_out = None
            if st.media is not None and st.peer is None:
                terminated.append(st)
        for st in terminated:
            st.tick_rx(now, events)
        for conf in self._confs.values():
            if not conf.members and conf.tap is None:
                continue
            outs = conf.mixer.mix({k: s.conf_in for k, s in conf.members.items()})
            for k, s in conf.members.items():
                s.conf_out = outs.get(k) if s.media is not None else None
            if conf.tap is not None:
                tapped = outs.get(_TAP_KEY)
                if len(conf.tap) < TAP_FRAMES and tapped is not None:
                    conf.tap.append(tapped)
                else:
                    self.tap_lost += 1
        sent = 0
        for st in terminated:
            sent += st.tick_tx(now)
        self._frames_sent += sent
        if events:
            self.emit(events)
        ns = _perf_ns() - t0
        self._tick_ns += ns
        self._tick_ns_max = max(self._tick_ns_max, ns)

    def totals(self) -> dict[str, int]:
        packets = sum(s.c.packets_in + s.c.rtcp_in + s.c.dropped_malformed + s.c.dropped_source
                      + s.c.dropped_payload_type for s in self._streams.values())
        return {"wakeups": packets, "rounds": packets, "packets": packets,
                "max_batch": 1 if packets else 0, "ticks": self._ticks, "events_lost": 0,
                "recv_errors": 0, "tick_ns": self._tick_ns, "tick_ns_max": self._tick_ns_max,
                "frames_sent": self._frames_sent, "tap_lost": self.tap_lost}

    def close(self) -> None:
        self._streams.clear()
        self._confs.clear()


def _table(mapping: dict[int, int] | None) -> bytes | None:
    if mapping is None:
        return None
    table = bytearray(range(128))
    for src, dst in mapping.items():
        table[src] = dst & 0x7F
    return bytes(table)

