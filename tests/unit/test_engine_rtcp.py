"""RTCP of terminated streams (RFC 3550), both backends, over real UDP on loopback.

A peer sends RTP (with a few packets lost) and RTCP, and parses what the engine sends it by
hand (the bytes, not only ``pbx.rtp.rtcp``): SR with our RTP SSRC and counts, a report block
about the peer's source, SDES CNAME, BYE on close; its RR referencing our SR gives a sane RTT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import struct
import time
from typing import Any

import numpy as np
import pytest
from test_engine_media import PCMU, negotiated, pcmu_frames, rtp, tone

from pbx.media.engine import EngineConfig, MediaEngine, Stream, available_backends
from pbx.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_compact,
    ntp_from_time,
    parse_rtcp,
)

backends = pytest.mark.parametrize("backend", available_backends())
PORT_MIN, PORT_MAX = 26600, 26799
INTERVAL = 0.2


class RtcpPeer(asyncio.DatagramProtocol):
    """One socket of the peer: keeps (arrival, bytes) of everything it receives."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.got.append((time.monotonic(), data))

    def rtcp(self) -> list[tuple[float, bytes]]:
        return [(t, d) for t, d in self.got if len(d) > 1 and 192 <= d[1] <= 223]


async def endpoint(port: int = 0) -> RtcpPeer:
    _, p = await asyncio.get_running_loop().create_datagram_endpoint(
        RtcpPeer, local_addr=("127.0.0.1", port))
    return p


async def pair() -> tuple[RtcpPeer, RtcpPeer]:
    """An RTP socket on an even port and the RTCP one on the next."""
    for _ in range(50):
        rtp_p = await endpoint()
        if rtp_p.port % 2 == 0:
            try:
                return rtp_p, await endpoint(rtp_p.port + 1)
            except OSError:
                pass
        assert rtp_p.transport is not None
        rtp_p.transport.close()
    raise RuntimeError("no even/odd port pair")


def by_hand(data: bytes) -> list[tuple[int, int, bytes]]:
    """(packet type, count, body) of each packet of a compound RTCP packet, checked by hand."""
    out, off = [], 0
    while off < len(data):
        b0, pt, words = struct.unpack_from("!BBH", data, off)
        assert b0 >> 6 == 2 and not b0 & 0x20
        end = off + 4 * (words + 1)
        assert end <= len(data)
        out.append((pt, b0 & 0x1F, data[off + 4:end]))
        off = end
    return out


def cname_of(body: bytes) -> tuple[int, str]:
    ssrc, item, n = struct.unpack_from("!IBB", body)
    assert item == 1
    return ssrc, body[6:6 + n].decode()


async def run_call(backend: str, mux: bool, lose: set[int]) -> dict[str, Any]:
    frames = pcmu_frames(tone(440, 160 * 60))
    cfg = EngineConfig(backend=backend, rtcp_interval=INTERVAL, jitter_start_ms=60,  # type: ignore[arg-type]
                       port_min=PORT_MIN, port_max=PORT_MAX)
    async with MediaEngine(cfg, rng=random.Random(7)) as eng:
        p_rtp, p_rtcp = await pair()
        s: Stream = await eng.open_stream(rtcp_mux=mux)
        media = dataclasses.replace(negotiated(("127.0.0.1", p_rtp.port)), rtcp_mux=mux)
        s.set_media(media)
        assert p_rtp.transport is not None and p_rtcp.transport is not None
        peer_ssrc, t0 = 0xCAFE, time.monotonic()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, f in enumerate(frames):
            if i not in lose:
                p_rtp.transport.sendto(rtp(0, 100 + i, 160 * i, f, ssrc=peer_ssrc), s.local)
            await asyncio.sleep(max(0.0, start + 0.02 * (i + 1) - loop.time()))
        ours = p_rtcp if not mux else p_rtp
        reports = ours.rtcp()
        assert reports, "no RTCP from the engine"
        # the peer answers the newest SR with an RR (our SSRC, its LSR, held 50 ms) and an SR
        sr_at, sr_bytes = reports[-1]
        sr = parse_rtcp(sr_bytes)[0]
        assert isinstance(sr, SenderReport)
        await asyncio.sleep(0.05)
        dlsr = round((time.monotonic() - sr_at) * 65536)
        block = ReportBlock(sr.ssrc, 0x40, 7, 100 + len(frames), 80,
                            ntp_compact(sr.ntp_timestamp), dlsr)
        peer_ntp = ntp_from_time(1_000_000.5)
        answer = build_rtcp([ReceiverReport(peer_ssrc, (block,)),
                             SenderReport(peer_ssrc, peer_ntp, 1234, 5, 800)])
        sent_at = time.monotonic()
        (p_rtp if mux else p_rtcp).transport.sendto(  # type: ignore[union-attr]
            answer, (s.host, s.rtcp_port))
        bad = b"\x80\xc9\x00\x05" + b"\0" * 3            # malformed: ignored, counted
        (p_rtp if mux else p_rtcp).transport.sendto(bad, (s.host, s.rtcp_port))  # type: ignore[union-attr]
        await asyncio.sleep(INTERVAL * 1.6 + 0.05)         # at least one more report of ours
        stats = s.rtcp_stats()
        counters = s.stats()
        n_before_close = len(ours.rtcp())
        s.close()
        await asyncio.sleep(0.05)
        out = {"stats": stats, "counters": counters, "reports": ours.rtcp(),
               "n_before_close": n_before_close, "sent_at": sent_at, "t0": t0,
               "ssrc": sr.ssrc, "peer_ntp": peer_ntp, "rtp": [d for _, d in p_rtp.got
                                                             if not 192 <= d[1] <= 223]}
        for ep in (p_rtp, p_rtcp):
            assert ep.transport is not None
            ep.transport.close()
    return out


@backends
@pytest.mark.parametrize("mux", [False, True])
def test_reports_rtt_and_bye(backend: str, mux: bool) -> None:
    lose = {10, 11, 30}
    r = asyncio.run(asyncio.wait_for(run_call(backend, mux, lose), 20))
    stats, reports, ssrc = r["stats"], r["reports"], r["ssrc"]
    # our RTP SSRC is the reports' SSRC
    assert {struct.unpack_from("!I", d, 8)[0] for d in r["rtp"]} == {ssrc}
    # about every INTERVAL * 0.5-1.5 (the first after half of one), during 1.2 s + 0.4 s
    times = [t for t, _ in reports[:r["n_before_close"]]]
    assert 4 <= len(times) <= 1.7 / (INTERVAL * 0.5) + 1
    gaps = np.diff(times)
    assert gaps.min() > INTERVAL * 0.5 - 0.03 and gaps.max() < INTERVAL * 1.5 + 0.06, gaps
    # every report parsed by hand: SR (we send) + SDES CNAME; the last adds BYE
    for i, (_, data) in enumerate(reports):
        parts = by_hand(data)
        kinds = [pt for pt, _, _ in parts]
        last = i == len(reports) - 1
        assert kinds == ([200, 202, 203] if last else [200, 202]), kinds
        _, count, body = parts[0]
        sender, _ntp, _ts, packets, octets = struct.unpack_from("!IQIII", body)
        assert sender == ssrc and packets > 0 and octets == 160 * packets
        assert count in (0, 1) and len(body) == 24 + 24 * count
        assert cname_of(parts[1][2])[0] == ssrc
        if last:
            assert parts[2][1] == 1 and struct.unpack_from("!I", parts[2][2])[0] == ssrc
        assert parse_rtcp(data)[0] == SenderReport(sender, _ntp, _ts, packets, octets,
                                                   parse_rtcp(data)[0].reports)   # type: ignore[union-attr]
        assert isinstance(parse_rtcp(data)[1], SourceDescription)
        assert not last or isinstance(parse_rtcp(data)[-1], Bye)
    # the report block about the peer's source, in the reports after all RTP was sent
    final = parse_rtcp(reports[-1][1])[0]
    assert isinstance(final, SenderReport) and len(final.reports) == 1
    b = final.reports[0]
    assert b.ssrc == 0xCAFE
    assert b.ext_highest_seq == 100 + 59 and b.cumulative_lost == len(lose)
    # ... with LSR/DLSR of the peer's SR
    assert b.lsr == ntp_compact(r["peer_ntp"]) and 0 < b.dlsr < 65536
    # what the peer reported, and the RTT
    assert stats is not None
    assert stats.rtt is not None and 0 <= stats.rtt < 0.05, stats.rtt
    assert stats.peer_fraction_lost == 0.25 and stats.peer_cumulative_lost == 7
    assert stats.peer_jitter == pytest.approx(0.01)
    assert stats.cumulative_lost == len(lose)
    assert stats.jitter is not None and 0 <= stats.jitter < 0.02
    assert stats.reports_received == 1 and stats.reports_sent >= 4
    assert stats.packets_sent > 50 and stats.octets_sent == 160 * stats.packets_sent
    c = r["counters"]                                     # muxed: the bad one is malformed RTP
    assert c.rtcp_in + c.dropped_malformed == 2 and c.rtcp_in >= 1


@backends
def test_receiver_report_when_not_sending_and_rtcp_off(backend: str) -> None:
    """recvonly: RR (no sender info); rtcp_interval=0: nothing, and no rtcp_stats."""

    async def main() -> tuple[list[bytes], list[bytes]]:
        got: list[list[bytes]] = []
        for interval in (INTERVAL, 0.0):
            cfg = EngineConfig(backend=backend, rtcp_interval=interval,  # type: ignore[arg-type]
                               port_min=PORT_MIN, port_max=PORT_MAX)
            async with MediaEngine(cfg) as eng:
                p_rtp, p_rtcp = await pair()
                s = await eng.open_stream()
                s.set_media(negotiated(("127.0.0.1", p_rtp.port), PCMU, direction="recvonly"))
                await asyncio.sleep(INTERVAL * 2.5)
                assert (s.rtcp_stats() is None) == (interval == 0)
                got.append([d for _, d in p_rtcp.rtcp()])
                for ep in (p_rtp, p_rtcp):
                    assert ep.transport is not None
                    ep.transport.close()
        return got[0], got[1]

    on, off = asyncio.run(asyncio.wait_for(main(), 20))
    assert off == []
    assert len(on) >= 2
    for data in on:
        pkts = parse_rtcp(data)
        assert isinstance(pkts[0], ReceiverReport) and pkts[0].reports == ()
        assert by_hand(data)[0][0] == 201
