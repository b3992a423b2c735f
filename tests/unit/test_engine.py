"""The media engine shell, both backends, over real UDP sockets on loopback.

Every behavioural test runs once per available backend (``native`` and ``python``; only
``python`` under ``PBX_NO_EXTENSIONS=1``), so the two are held to the same contract.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from pbx.media import _engine_native
from pbx.media.engine import (
    TICK,
    EngineConfig,
    EngineError,
    MediaEngine,
    MediaEvent,
    PortRangeExhausted,
    Stream,
    available_backends,
)

BACKENDS = available_backends()
PORT_MIN, PORT_MAX = 26000, 26199       # below the ephemeral range, so other tests rarely collide

backends = pytest.mark.parametrize("backend", BACKENDS)


def run(coro_fn: Callable[[], Awaitable[None]], *, use_uvloop: bool = False) -> None:
    factory = uvloop.new_event_loop if use_uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(coro_fn(), 20))


def config(backend: str, **kw: Any) -> EngineConfig:
    kw.setdefault("port_min", PORT_MIN)
    kw.setdefault("port_max", PORT_MAX)
    return EngineConfig(backend=backend, **kw)  # type: ignore[arg-type]


def rtp(seq: int, ts: int, ssrc: int, *, pt: int = 0, marker: bool = False,
        payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def header(pkt: bytes) -> tuple[bool, int, int, int, int]:
    """(marker, pt, seq, ts, ssrc)."""
    _, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", pkt)
    return bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc


class Peer(asyncio.DatagramProtocol):
    """A far end: sends datagrams, queues what it receives."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[tuple[bytes, tuple[Any, ...]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.addr: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        name = transport.get_extra_info("sockname")
        self.addr = (name[0], name[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.q.put_nowait((data, addr))

    def send(self, data: bytes, to: Stream | tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to.local if isinstance(to, Stream) else to)

    async def recv(self, timeout: float = 2.0) -> bytes:
        data, _ = await asyncio.wait_for(self.q.get(), timeout)
        return data

    async def nothing(self, wait: float = 0.08) -> bool:
        await asyncio.sleep(wait)
        return self.q.empty()

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


async def peer(host: str = "127.0.0.1") -> Peer:
    loop = asyncio.get_running_loop()
    _, p = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    return p


async def settle(until: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def relayed_pair(eng: MediaEngine, host: str = "127.0.0.1"
                       ) -> tuple[Stream, Stream, Peer, Peer]:
    a, b = await eng.open_stream(host=host), await eng.open_stream(host=host)
    pa, pb = await peer(host), await peer(host)
    a.set_remote(*pa.addr)
    b.set_remote(*pb.addr)
    eng.relay(a, b)
    return a, b, pa, pb


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    {"port_min": 30000, "port_max": 20000},
    {"port_min": 0, "port_max": 100},
    {"port_min": 20000, "port_max": 70000},
    {"port_min": 20001, "port_max": 20002},     # no even port with room for RTCP
    {"bind_host": "localhost"},                 # IP literals only
    {"backend": "java"},
    {"latch_packets": 0},
    {"rtp_timeout": -1.0},
])
def test_config_rejects(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**kw)


def test_auto_picks_native_when_built() -> None:
    eng = MediaEngine(EngineConfig(backend="auto"))
    assert eng.backend == ("native" if _engine_native.AVAILABLE else "python")
    if not _engine_native.AVAILABLE:
        with pytest.raises(EngineError, match="not available"):
            MediaEngine(EngineConfig(backend="native"))


@backends
def test_operations_need_a_started_engine(backend: str) -> None:
    async def main() -> None:
        eng = MediaEngine(config(backend))
        with pytest.raises(EngineError, match="not started"):
            await eng.open_stream()
        async with eng:
            s = await eng.open_stream()
        assert s.closed and not eng.running
        with pytest.raises(EngineError):
            s.set_remote("127.0.0.1", 4000)
    run(main)


# -- ports -------------------------------------------------------------------------------------


def bindable(port: int, family: socket.AddressFamily = socket.AF_INET,
             host: str = "127.0.0.1") -> bool:
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        return True
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE
        return False
    finally:
        s.close()


@backends
def test_ports_even_rtcp_reserved_and_released(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            s = await eng.open_stream()
            m = await eng.open_stream(rtcp_mux=True)
            for st in (s, m):
                assert st.port % 2 == 0 and PORT_MIN <= st.port < PORT_MAX
                assert not bindable(st.port)
            assert s.rtcp_port == s.port + 1 and not bindable(s.port + 1)
            assert m.rtcp_port == m.port and bindable(m.port + 1)
            assert s.local == ("127.0.0.1", s.port)
            s.close()
            s.close()                                   # idempotent
            await settle(lambda: bindable(s.port) and bindable(s.port + 1))
    run(main)


@backends
def test_exhausted_range_is_a_clear_error_and_close_gives_ports_back(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend, port_min=26101, port_max=26106)) as eng:
            s1, s2 = await eng.open_stream(), await eng.open_stream()
            assert {s1.port, s2.port} == {26102, 26104}
            with pytest.raises(PortRangeExhausted, match=r"26101-26106 \(2 pairs, 2 in use"):
                await eng.open_stream()
            s1.close()
            await settle(lambda: bindable(26102))
            for _ in range(20):
                await asyncio.sleep(0)
            s3 = await eng.open_stream()
            assert s3.port == s1.port
    run(main)


@backends
def test_ports_held_by_someone_else_are_skipped(backend: str) -> None:
    async def main() -> None:
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind(("127.0.0.1", 26113))                 # the RTCP half of the first pair
        try:
            async with MediaEngine(config(backend, port_min=26112, port_max=26115)) as eng:
                s = await eng.open_stream()
                assert s.port == 26114
                assert bindable(26112)                      # the half-bound pair was let go
        finally:
            squatter.close()
    run(main)


# -- relay ---------------------------------------------------------------------------------------


@backends
def test_relay_rewrites_each_direction_to_a_stable_leg_ssrc(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, b, pa, pb = await relayed_pair(eng)
            got_b, got_a = [], []
            for i in range(5):
                pa.send(rtp(1000 + i, 50000 + 160 * i, 0xAAAA, payload=bytes([i]) * 160), a)
                got_b.append(await pb.recv())
                pb.send(rtp(7 + i, 9 + 160 * i, 0xBBBB), b)
                got_a.append(await pa.recv())
            for got in (got_a, got_b):
                hdrs = [header(p) for p in got]
                assert len({h[4] for h in hdrs}) == 1               # one SSRC per leg
                assert hdrs[0][0] and not any(h[0] for h in hdrs[1:])  # marker on the anchor
                assert [(h[2] - hdrs[0][2]) & 0xFFFF for h in hdrs] == [0, 1, 2, 3, 4]
                assert [(h[3] - hdrs[0][3]) & 0xFFFFFFFF for h in hdrs] == [0, 160, 320, 480, 640]
            assert header(got_a[0])[4] != header(got_b[0])[4]
            assert [p[12:] for p in got_b] == [bytes([i]) * 160 for i in range(5)]
            sa, sb = a.stats(), b.stats()
            assert (sa.packets_in, sa.packets_out, sb.packets_in, sb.packets_out) == (5, 5, 5, 5)
            assert sa.bytes_in == sb.bytes_out == 5 * 172
            assert sa.dropped == sb.dropped == 0
            assert a.relayed_with is b and b.relayed_with is a
            st = eng.stats()
            assert st.backend == backend and st.streams == 2 and st.packets >= 10
    run(main)


@backends
def test_source_change_keeps_sequence_and_timestamps_continuous(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, _b, pa, pb = await relayed_pair(eng)
            out = []
            for i in range(3):
                pa.send(rtp(100 + i, 8000 + 160 * i, 0x1111), a)
                out.append(header(await pb.recv()))
            for i in range(3):                 # the far end restarts: new SSRC, seq and ts
                pa.send(rtp(60000 + i, 123 + 160 * i, 0x2222), a)
                out.append(header(await pb.recv()))
            pa.send(rtp(60003 + 40000, 123, 0x2222), a)   # same SSRC, absurd jump: new anchor
            out.append(header(await pb.recv()))
            seqs = [(h[2] - out[0][2]) & 0xFFFF for h in out]
            assert seqs == [0, 1, 2, 3, 4, 5, 6]
            assert [h[0] for h in out] == [True, False, False, True, False, False, True]
            assert len({h[4] for h in out}) == 1
            ts = [(h[3] - out[0][3]) & 0xFFFFFFFF for h in out]
            assert ts[:3] == [0, 160, 320]
            assert ts[3] >= ts[2] + 160 and ts[4] - ts[3] == 160 and ts[5] - ts[4] == 160
            assert ts[6] >= ts[5] + 160
    run(main)


@backends
def test_new_peer_after_reinvite(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, b, pa, pb = await relayed_pair(eng)
            pa.send(rtp(1, 0, 0x1), a)
            first = header(await pb.recv())
            pc = await peer()
            a.set_remote(*pc.addr)                      # re-INVITE: a's peer is now pc
            assert a.remote == pc.addr
            pa.send(rtp(2, 160, 0x1), a)                # the old peer is no longer accepted
            assert await pb.nothing()
            assert a.stats().dropped_source == 1
            pc.send(rtp(2, 160, 0x1), a)                # even with the same SSRC: re-anchored
            h = header(await pb.recv())
            assert h[0] and h[2] == (first[2] + 1) & 0xFFFF and h[4] == first[4]
            pb.send(rtp(5, 5, 0x9), b)                  # and b's side now reaches pc
            assert header(await pc.recv())[4] != first[4]
            assert await pa.nothing(0.02)
    run(main)


@backends
def test_unrouted_and_unrelay(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, b = await eng.open_stream(), await eng.open_stream()
            pa, pb = await peer(), await peer()
            a.set_remote(*pa.addr)
            pa.send(rtp(1, 0, 1), a)                    # accepted, nowhere to go
            await settle(lambda: a.stats().dropped_unrouted == 1)
            eng.relay(a, b)                             # b has no peer yet
            pa.send(rtp(2, 160, 1), a)
            await settle(lambda: a.stats().dropped_unrouted == 2)
            b.set_remote(*pb.addr)
            pa.send(rtp(3, 320, 1), a)
            await pb.recv()
            eng.unrelay(b)
            eng.unrelay(b)                              # no-op
            assert a.relayed_with is None and b.relayed_with is None
            pa.send(rtp(4, 480, 1), a)
            assert await pb.nothing()
            assert a.stats().dropped_unrouted == 3 and a.stats().packets_in == 4
    run(main)


@backends
def test_relay_misuse(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng, \
                MediaEngine(config(backend, port_min=26150)) as other:
            a = await eng.open_stream()
            b = await eng.open_stream()
            c = await eng.open_stream()
            x = await other.open_stream()
            with pytest.raises(ValueError):
                eng.relay(a, a)
            eng.relay(a, b)
            with pytest.raises(ValueError, match="already relayed"):
                eng.relay(a, c)
            with pytest.raises(EngineError, match="another engine"):
                eng.relay(c, x)
            c.close()
            with pytest.raises(EngineError, match="closed"):
                eng.relay(c, c)
            b.close()                                   # closing unrelays the partner
            assert a.relayed_with is None
            eng.relay(a, await eng.open_stream())
            with pytest.raises(ValueError):
                a.set_remote("::1", 4000)               # wrong family
            with pytest.raises(ValueError):
                a.set_remote("127.0.0.1", 0)
            with pytest.raises(ValueError):
                a.set_remote("127.0.0.1", 4000, payload_types=[128])
    run(main)


@backends
def test_relay_over_ipv6(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend, bind_host="::1")) as eng:
            a, b, pa, pb = await relayed_pair(eng, "::1")
            assert a.family == socket.AF_INET6 and a.local == ("::1", a.port)
            assert not bindable(a.port, socket.AF_INET6, "::1")
            pa.send(rtp(1, 0, 5), a)
            assert header(await pb.recv())[4] != 5
            pb.send(rtp(9, 0, 6), b)
            await pa.recv()
            stranger = await peer("::1")
            stranger.send(rtp(2, 160, 5), a)
            await settle(lambda: a.stats().dropped_source == 1)
            v4 = await eng.open_stream(host="127.0.0.1")  # one engine, both families
            assert v4.family == socket.AF_INET
    run(main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_relay_under_uvloop(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, b, pa, pb = await relayed_pair(eng)
            for i in range(3):
                pa.send(rtp(i, 160 * i, 1), a)
                pb.send(rtp(i, 160 * i, 2), b)
                await pb.recv()
                await pa.recv()
            await asyncio.sleep(3 * TICK)
            assert eng.stats().ticks >= 2
    run(main, use_uvloop=True)


@backends
def test_many_streams_in_one_burst(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend, rtcp_mux=True)) as eng:
            sink = await peer()
            src = await peer()
            pairs = []
            for _ in range(40):
                a, b = await eng.open_stream(), await eng.open_stream()
                a.set_remote(*src.addr)
                b.set_remote(*sink.addr)
                eng.relay(a, b)
                pairs.append((a, b))
            for i, (a, _) in enumerate(pairs):
                src.send(rtp(i, 0, 100 + i, payload=i.to_bytes(2, "big")), a)
            got = {(await sink.recv())[12:] for _ in pairs}
            assert got == {i.to_bytes(2, "big") for i in range(len(pairs))}
            assert all(b.stats().packets_out == 1 for _, b in pairs)
            if backend == "native":
                assert eng.stats().wakeups < eng.stats().packets   # several per C call
    run(main)


# -- acceptance ------------------------------------------------------------------------------------


@backends
def test_strangers_are_dropped_without_latching(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, _b, pa, pb = await relayed_pair(eng)
            stranger = await peer()
            for i in range(6):
                stranger.send(rtp(i, 160 * i, 0x77), a)
            await settle(lambda: a.stats().dropped_source == 6)
            assert await pb.nothing(0.02) and a.remote == pa.addr
            assert eng.events.empty()
    run(main)


@backends
def test_latching_needs_consecutive_packets_of_one_source(backend: str) -> None:
    async def main() -> None:
        events: list[MediaEvent] = []
        async with MediaEngine(config(backend), on_event=events.append) as eng:
            a, b = await eng.open_stream(), await eng.open_stream()
            pb = await peer()
            b.set_remote(*pb.addr)
            a.set_remote("127.0.0.1", 9, latch=True)   # the SDP address; the phone is NATed
            eng.relay(a, b)
            nat = await peer()
            other = await peer()
            sends = [(nat, 10, 1), (nat, 11, 1), (other, 12, 1),   # interleaved: other resets
                     (nat, 13, 1), (nat, 14, 2),                  # SSRC change resets
                     (nat, 16, 2),                                # gap resets
                     (nat, 17, 2), (nat, 18, 2)]                  # 16, 17, 18: latched on 18
            for p, seq, ssrc in sends:
                p.send(rtp(seq, 0, ssrc), a)
                await asyncio.sleep(0.003)
            h = header(await pb.recv())
            assert h[0]                                  # re-anchored
            assert await pb.nothing(0.03)
            s = a.stats()
            assert s.latched == 1 and s.dropped_source == 7 and s.packets_in == 1
            assert a.remote == nat.addr
            assert [(e.kind, e.stream, e.address) for e in events] == [("latched", a, nat.addr)]
            pb.send(rtp(1, 0, 3), b)                     # symmetric: b's side goes to the NAT
            await nat.recv()
    run(main)


@backends
def test_malformed_rtcp_and_payload_types(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, _b, pa, pb = await relayed_pair(eng)
            m = await eng.open_stream(rtcp_mux=True)
            m.set_remote(*pa.addr, payload_types=[0, 101])
            good = rtp(1, 0, 1)
            bad = [
                b"", b"\x80\x00\x00",                       # too short
                b"\x40" + good[1:],                         # version 1
                b"\x8f" + good[1:20],                       # 15 CSRCs in 20 bytes
                b"\x90" + good[1:12] + b"\x00\x00\x00\x09",  # extension longer than the packet
                b"\xa0" + good[1:12] + b"\x00" * 4,         # padding count 0
                b"\xa0" + good[1:12] + b"\x00\x00\x00\x20",  # padding past the header
                b"\x80\xc8\x00\x01\x00\x00\x00",            # RTCP, length not a multiple of 4
                rtp(9, 0, 1, payload=bytes(2037)),          # 2049 bytes: over the limit
            ]
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # asyncio skips empty sends
            for p in bad:
                raw.sendto(p, a.local)
            raw.close()
            await settle(lambda: a.stats().dropped_malformed == len(bad))
            sr = b"\x80\xc8\x00\x06" + b"\x00" * 24         # an RTCP SR on the RTP port
            pa.send(sr, m)
            pa.send(sr, a)
            pa.send(sr, ("127.0.0.1", a.rtcp_port))       # and on the RTCP port
            await settle(lambda: a.stats().rtcp_in == 2 and m.stats().rtcp_in == 1)
            pa.send(rtp(2, 0, 1, pt=8), m)
            pa.send(rtp(3, 0, 1, pt=101), m)
            pa.send(rtp(4, 0, 1, pt=0, payload=bytes(2036)), m)    # 2048 bytes: the limit
            await settle(lambda: m.stats().dropped_unrouted == 2)
            assert m.stats().dropped_payload_type == 1 and m.stats().packets_in == 2
            assert await pb.nothing(0.02) and a.stats().packets_in == 0
    run(main)


# -- timeouts and clock --------------------------------------------------------------------------


@backends
def test_rtp_timeout_fires_once_and_rearms(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            a, b, pa, pb = await relayed_pair(eng)
            t0 = time.monotonic()
            a.set_remote(*pa.addr, timeout=0.1)
            b.set_timeout(0)
            ev = await asyncio.wait_for(eng.events.get(), 1)
            waited = time.monotonic() - t0
            assert (ev.kind, ev.stream, ev.address) == ("timeout", a, None)
            assert 0.1 <= waited < 0.1 + 0.2 and ev.at >= t0 + 0.1
            await asyncio.sleep(0.15)
            assert eng.events.empty()                   # once per silence
            pa.send(rtp(1, 0, 1), a)                    # media resumes: armed again
            await pb.recv()
            t1 = time.monotonic()
            ev = await asyncio.wait_for(eng.events.get(), 1)
            assert ev.stream is a and time.monotonic() - t1 >= 0.09
            assert a.stats().timeouts == 2 and b.stats().timeouts == 0
    run(main)


@backends
def test_clock_keeps_absolute_deadlines_and_catches_up(backend: str) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend, max_catchup_ticks=10)) as eng:
            t0 = time.monotonic()
            base = eng.stats().ticks
            await asyncio.sleep(0.3)
            n = eng.stats().ticks - base
            assert abs(n - (time.monotonic() - t0) / TICK) <= 3
            time.sleep(0.09)                            # the loop is stuck for 4.5 ticks
            await asyncio.sleep(0.05)
            st = eng.stats()
            assert st.overruns >= 3 and st.ticks_skipped == 0
            assert abs(st.ticks - base - (time.monotonic() - t0) / TICK) <= 3   # no drift
            time.sleep(0.4)                             # 20 ticks: 10 caught up, the rest skipped
            await asyncio.sleep(0.05)
            st2 = eng.stats()
            assert st2.ticks_skipped >= 8 and st2.overruns - st.overruns <= 12
    run(main)


@backends
def test_close_releases_everything(backend: str) -> None:
    async def main() -> None:
        eng = MediaEngine(config(backend))
        await eng.start()
        streams = [await eng.open_stream() for _ in range(4)]
        eng.relay(streams[0], streams[1])
        ports = [s.port for s in streams]
        await eng.aclose()
        assert all(s.closed and s.remote is None for s in streams)
        assert all(bindable(p) and bindable(p + 1) for p in ports)
        await eng.aclose()                              # idempotent
    run(main)


if "native" in BACKENDS:

    def test_native_drains_on_a_timer_under_load_and_wakes_on_readiness_when_quiet() -> None:
        async def main() -> None:
            async with MediaEngine(config("native", rtcp_mux=True, coalesce=0.002)) as eng:
                src, sink = await peer(), await peer()
                assert sink.transport is not None   # timed drains send in bursts: room for them
                sink.transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                ins = []
                for _ in range(20):
                    a, b = await eng.open_stream(), await eng.open_stream()
                    a.set_remote(*src.addr)
                    b.set_remote(*sink.addr)
                    eng.relay(a, b)
                    ins.append(a)
                for k in range(20):             # one packet per loop turn: a wake-up each
                    for i, a in enumerate(ins):
                        src.send(rtp(k, 160 * k, i, payload=bytes([i, k])), a)
                        await asyncio.sleep(0)
                got = {(await sink.recv())[12:] for _ in range(400)}
                assert got == {bytes([i, k]) for i in range(20) for k in range(20)}
                assert eng.stats().timed_drains > 0
                await asyncio.sleep(0.05)               # quiet: back to readiness
                settled = eng.stats().timed_drains
                src.send(rtp(99, 0, 0), ins[0])
                await sink.recv()
                assert eng.stats().timed_drains == settled
        run(main)

    def test_native_without_coalescing_always_wakes_on_readiness() -> None:
        async def main() -> None:
            async with MediaEngine(config("native", coalesce=0.0)) as eng:
                a, _b, pa, pb = await relayed_pair(eng)
                for i in range(200):
                    pa.send(rtp(i, 160 * i, 1), a)
                    await asyncio.sleep(0)
                for _ in range(200):
                    await pb.recv()
                assert eng.stats().timed_drains == 0
        run(main)
