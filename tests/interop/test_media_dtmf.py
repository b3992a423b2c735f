"""DTMF from real peers into the media engine: SIPp plays RTP captures, baresip presses keys.

A ``MediaUas`` (tests/interop/media_uas.py) answers each call with a stream of a real
``MediaEngine`` on loopback and hands it the negotiated media (``stream.set_media``); the engine
reports digits as ``MediaEvent(kind="digit")``. Each test asserts the engine reported exactly the
digits the peer sent, in order, once each, on the call's stream and from the right source.

What was sent is derived independently of ``pbx``: the captures are read with dpkt and decoded
by the small RFC 4733 reader below (an event is one (SSRC, RTP timestamp), RFC 4733 §2.5.1.1;
its duration the largest duration field seen), and in-band tones are classified by an FFT of
the decoded G.711 audio. Every test runs once per engine backend.

- SIPp plays the RFC 2833 captures it ships (/usr/share/sip-tester/dtmf_2833_*.pcap), digit by
  digit (scenario uac_dtmf_pcap.xml);
- SIPp plays a capture written here: a long PCMU call with RFC 4733 events between the speech
  frames, redundant end packets, a lost marker packet, lost end packets, a duplicated and two
  swapped packets, repeated digits, and sequence number and timestamp wrap-around;
- baresip (headless, ctrl_tcp) calls and sends a digit string with its ``sndcode`` command
  (RFC 4733 telephone-event, which baresip offers and sends by default); and the other way
  round, the engine sends digits (``stream.send_dtmf``) that baresip must decode;
- SIPp plays PCMU audio holding DTMF tones and offers no telephone-event: in-band detection.

The UAS itself is checked against SIPp's own UAC scenarios (answer, CANCEL, 2xx retransmission).
"""

from __future__ import annotations

import asyncio
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest

from pbx.media.dsp import ulaw_encode
from pbx.media.engine import (
    EngineConfig,
    MediaEngine,
    MediaEvent,
    Stream,
    StreamStats,
    available_backends,
)
from pbx.media.tones import dtmf_tones

from .audio import make_silence
from .baresip import Baresip
from .media_uas import MediaUas, UasCall, set_media
from .pbxproc import PortAllocator
from .sipp import SCENARIOS, SippResult, by_call

pytestmark = pytest.mark.interop

backends = pytest.mark.parametrize("backend", available_backends())

EVENT_CHARS = "0123456789*#ABCD"      # RFC 4733 §3.2: event codes 0-15
TE_PT = 101
RATE = 8000
FRAME = 160                           # samples (and µ-law bytes) per 20 ms
SETTLE = 0.5                          # seconds to wait for late or duplicate events


# -- reading captures: a minimal RFC 4733 decoder, independent of pbx -------------------------

@dataclass(frozen=True)
class Rtp:
    time: float
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def read_rtp(path: Path) -> list[Rtp]:
    """The RTP packets of an Ethernet/IPv4/UDP capture, in capture order."""
    out = []
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB, path
        for t, frame in reader:
            udp = dpkt.ethernet.Ethernet(frame).data.data
            data = bytes(udp.data)
            assert data[0] >> 6 == 2, f"{path}: not RTP version 2"
            b1, seq, ts, ssrc = struct.unpack_from("!xBHII", data)
            head = 12 + 4 * (data[0] & 0x0F)
            assert not data[0] & 0x30, f"{path}: padding or header extension"
            out.append(Rtp(t, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, data[head:]))
    return out


@dataclass(frozen=True)
class SentDigit:
    digit: str
    duration_ms: int


def rfc4733_digits(packets: list[Rtp], pt: int = TE_PT) -> list[SentDigit]:
    """The events of the telephone-event packets: one per (SSRC, RTP timestamp), in order of
    their first packet, with the largest duration any of their packets carries."""
    events: dict[tuple[int, int], list[int]] = {}      # key -> [code, max duration]
    for p in packets:
        if p.pt != pt:
            continue
        code, _flags, duration = struct.unpack_from("!BBH", p.payload)
        ev = events.setdefault((p.ssrc, p.ts), [code, 0])
        assert ev[0] == code, f"two events share RTP timestamp {p.ts}"
        ev[1] = max(ev[1], duration)
    return [SentDigit(EVENT_CHARS[code], round(dur * 1000 / RATE))
            for code, dur in events.values()]


def ulaw_to_linear(codes: np.ndarray) -> np.ndarray:
    """G.711 µ-law decode (ITU-T G.711 table), vectorised."""
    u = ~codes.astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84)


_LOW = (697.0, 770.0, 852.0, 941.0)
_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")


def _strongest(burst: np.ndarray, group: tuple[float, ...]) -> int:
    """Index of the frequency of ``group`` with the most energy in ``burst``."""
    spectrum = np.abs(np.fft.rfft(burst * np.hanning(burst.size)))
    freqs = np.fft.rfftfreq(burst.size, 1 / RATE)
    return int(np.argmax([spectrum[np.argmin(np.abs(freqs - f))] for f in group]))


def inband_digits(packets: list[Rtp], pt: int = 0) -> list[str]:
    """DTMF tones in the PCMU packets: runs of loud frames, each classified by the strongest
    spectral line of the low and of the high DTMF group."""
    audio = np.concatenate([ulaw_to_linear(np.frombuffer(p.payload, np.uint8))
                            for p in sorted(packets, key=lambda p: p.seq) if p.pt == pt])
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 300
    digits, start = [], None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            burst = frames[start:i].ravel()
            digits.append(_KEYPAD[_strongest(burst, _LOW)][_strongest(burst, _HIGH)])
            start = None
    return digits


def scenario_pcaps(scenario: Path) -> list[Path]:
    """The captures a SIPp scenario plays, in order."""
    root = ET.parse(scenario).getroot()
    return [Path(e.attrib["play_pcap_audio"]) for e in root.iter("exec")
            if "play_pcap_audio" in e.attrib]


# -- writing captures ----------------------------------------------------------------------------

def rtp_packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def write_pcap(path: Path, packets: list[tuple[float, bytes]], sport: int = 6000,
               dport: int = 10000) -> Path:
    """RTP payloads as Ethernet/IPv4/UDP frames on loopback, at their times (what SIPp plays:
    it keeps the RTP bytes and the timing, and rewrites addresses and ports)."""
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for t, data in sorted(packets, key=lambda p: p[0]):
            udp = dpkt.udp.UDP(sport=sport, dport=dport, data=data, ulen=8 + len(data))
            ip = dpkt.ip.IP(src=bytes([127, 0, 0, 1]), dst=bytes([127, 0, 0, 1]),
                            p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp, len=20 + len(udp))
            eth = dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x00" * 6,
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            writer.writepkt(bytes(eth), ts=1_700_000_000 + t)
    return path


class _Sender:
    """One RTP source on a 20 ms grid: sequence numbers and timestamps as a real phone."""

    def __init__(self, ssrc: int, seq: int, ts: int) -> None:
        self.ssrc, self.seq, self.ts0 = ssrc, seq, ts
        self.slot = 0                   # 20 ms slots since the start
        self.out: list[tuple[float, bytes]] = []

    @property
    def now(self) -> float:
        return self.slot * 0.02

    def send(self, pt: int, ts: int, payload: bytes, marker: bool = False) -> None:
        self.out.append((self.now, rtp_packet(pt, self.seq, ts, self.ssrc, payload, marker)))
        self.seq += 1
        self.slot += 1

    def audio(self, frames: int, payload: bytes = b"\xff" * FRAME) -> None:
        for _ in range(frames):
            self.send(0, self.ts0 + self.slot * FRAME, payload)


def rfc4733_capture(digits: str, *, tone_packets: int = 5, gap_frames: int = 4,
                    ssrc: int = 0x5EED0001, seq0: int = 65500, ts0: int = 2**32 - 16000
                    ) -> list[tuple[float, bytes]]:
    """A PCMU call (silence frames) with RFC 4733 events between the frames, as a phone sends
    them: each event's packets carry the timestamp of its start and growing durations, the
    first has the marker bit, the last is sent three times (with new sequence numbers); no
    audio meanwhile. Sequence numbers and timestamps wrap around during the capture. Then the
    network's doing, by digit index: 1 loses its marker packet, 3 two of its three end packets,
    4 two middle packets, 6 has a packet duplicated, 8 two packets swapped; speech frames are
    lost too."""
    s = _Sender(ssrc, seq0, ts0)
    s.audio(10)
    events: list[list[int]] = []          # per digit: indexes into s.out of its packets
    for d in digits:
        start = s.ts0 + s.slot * FRAME
        code = EVENT_CHARS.index(d)
        first = len(s.out)
        for k in range(tone_packets):
            s.send(TE_PT, start, struct.pack("!BBH", code, 10, FRAME * (k + 1)), marker=k == 0)
        for _ in range(3):
            s.send(TE_PT, start, struct.pack("!BBH", code, 0x80 | 10, FRAME * tone_packets))
        events.append(list(range(first, len(s.out))))
        s.audio(gap_frames)
    s.audio(10)

    packets = list(s.out)
    lost: set[int] = {3, 11, len(packets) - 5}                  # speech frames
    if len(events) > 8:
        lost |= {events[1][0], events[3][-3], events[3][-2], events[4][1], events[4][2]}
        t, data = packets[events[6][2]]
        packets.append((t + 0.005, data))                      # a duplicate, 5 ms later
        a, b = events[8][2], events[8][3]
        packets[a], packets[b] = (packets[b][0], packets[a][1]), (packets[a][0], packets[b][1])
    return [p for i, p in enumerate(packets) if i not in lost]


def inband_capture(digits: str, *, ssrc: int = 0x1BA4D, seq0: int = 1000,
                   ts0: int = 8000) -> list[tuple[float, bytes]]:
    """A PCMU call carrying the DTMF tones of ``digits`` (100 ms tones, 100 ms apart, -10 dBm0),
    after and before 300 ms of silence."""
    silence = np.zeros(300 * RATE // 1000, dtype=np.int16)
    pcm = np.concatenate([silence, dtmf_tones(digits, RATE), silence])
    codes = ulaw_encode(pcm.astype("<i2").tobytes())
    s = _Sender(ssrc, seq0, ts0)
    for i in range(0, len(codes) - FRAME + 1, FRAME):
        s.audio(1, codes[i:i + FRAME])
    return s.out


# -- the engine side -------------------------------------------------------------------------

class DigitLog:
    """The engine's ``on_event``: keeps the digit events, and lets a test wait for them."""

    def __init__(self) -> None:
        self.events: list[MediaEvent] = []
        self.other: list[MediaEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, ev: MediaEvent) -> None:
        (self.events if ev.kind == "digit" else self.other).append(ev)
        self._changed.set()

    def of(self, stream: Stream | None) -> list[MediaEvent]:
        return [e for e in self.events if e.stream is stream]

    def digits(self, stream: Stream | None) -> str:
        return "".join(e.digit for e in self.of(stream))

    async def wait(self, stream: Stream | None, count: int, timeout: float) -> list[MediaEvent]:
        """Wait for ``count`` digits on ``stream``, then SETTLE seconds more for extra ones."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.of(stream)) < count and (left := deadline - loop.time()) > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                break
        await asyncio.sleep(SETTLE)
        return self.of(stream)


@dataclass(repr=False)
class Outcome:
    """What the engine reported for one call, and the stream's counters when the call ended."""

    got: list[MediaEvent]
    stats: StreamStats | None
    call: UasCall

    def __repr__(self) -> str:
        rows = [f"{e.digit!r} {e.source} {e.duration_ms} ms" for e in self.got]
        return (f"engine reported {len(self.got)} digits: {rows}; stream {self.stats}; "
                f"call {self.call.reason}, requests {self.call.requests}")

    def check_delivery(self) -> None:
        """Every packet came from the negotiated peer with a negotiated payload type."""
        assert self.stats is not None and self.stats.packets_in > 0, self
        assert (self.stats.dropped_source, self.stats.dropped_payload_type) == (0, 0), self


async def outcome(log: DigitLog, call: UasCall, count: int, timeout: float) -> Outcome:
    got = await log.wait(call.stream, count, timeout)
    stream = call.stream
    return Outcome(got, stream.stats() if stream is not None and not stream.closed else None, call)


def check_digits(out: Outcome, sent: list[SentDigit], source: str) -> None:
    """Exactly the sent digits, in order, once each, with their durations, from ``source``."""
    out.check_delivery()
    assert [e.digit for e in out.got] == [d.digit for d in sent], out
    assert all(e.source == source for e in out.got), out
    assert [e.duration_ms for e in out.got] == [d.duration_ms for d in sent], out


def engine_config(backend: str, ports: PortAllocator) -> EngineConfig:
    base = ports.block(40)
    return EngineConfig(backend=backend, port_min=base, port_max=base + 39)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 40))


async def sipp_call(run_sipp: Callable[..., Any], uas: MediaUas, name: str, scenario: Path | str,
                    **kw: Any) -> tuple[SippResult, UasCall]:
    """One SIPp call to the UAS; waits for SIPp to finish, returns its result and the call."""
    proc = run_sipp(name, scenario=scenario, remote=f"127.0.0.1:{uas.port}", service="media",
                    calls=1, timeout=kw.pop("timeout", 20), **kw)
    result = await asyncio.to_thread(proc.wait)
    result.check(1)
    assert len(uas.calls) == 1, uas.calls
    call = uas.calls[0]
    await call.wait_terminated(2)
    assert (call.reason, call.requests) == ("bye", ["INVITE", "ACK", "BYE"]), call
    return result, call


# -- SIPp plays RFC 2833 captures --------------------------------------------------------------

@backends
def test_sipp_rfc2833_pcaps_reported_once_each(backend, run_sipp, ports):
    scenario = SCENARIOS / "uac_dtmf_pcap.xml"
    pcaps = scenario_pcaps(scenario)
    sent = [d for p in pcaps for d in rfc4733_digits(read_rtp(p))]
    assert len(sent) == len(pcaps) >= 10, sent          # one event per capture

    async def main() -> Outcome:
        log = DigitLog()
        async with MediaEngine(engine_config(backend, ports), on_event=log) as engine, \
                MediaUas(engine) as uas:
            _, call = await sipp_call(run_sipp, uas, "dtmf-pcaps", scenario)
            return await outcome(log, call, len(sent), timeout=3)

    check_digits(run(main()), sent, "rfc4733")


@backends
def test_sipp_rfc4733_capture_with_loss_reorder_and_wrap(backend, run_sipp, ports, tmp_path):
    digits = "2580*#AD55019"
    packets = rfc4733_capture(digits)
    pcap = write_pcap(tmp_path / "rtp.pcap", packets)
    captured = read_rtp(pcap)
    sent = rfc4733_digits(captured)
    assert "".join(d.digit for d in sent) == digits          # the capture says what we meant
    assert {p.pt for p in captured} == {0, TE_PT}
    assert max(p.seq for p in captured) > 65000 > min(p.seq for p in captured)  # wraps
    length_ms = round(1000 * (captured[-1].time - captured[0].time)) + 300

    async def main() -> Outcome:
        log = DigitLog()
        async with MediaEngine(engine_config(backend, ports), on_event=log) as engine, \
                MediaUas(engine) as uas:
            _, call = await sipp_call(run_sipp, uas, "dtmf-capture", SCENARIOS / "uac_play_pcap.xml",
                                      extra=["-key", "formats", f"0 {TE_PT}", "-d", str(length_ms)])
            assert call.media is not None and TE_PT in call.media.receive_telephone_events
            return await outcome(log, call, len(sent), timeout=3)

    check_digits(run(main()), sent, "rfc4733")


# -- in-band tones -------------------------------------------------------------------------------

@backends
def test_sipp_inband_tones_detected(backend, run_sipp, ports, tmp_path):
    digits = "159#*2580"
    pcap = write_pcap(tmp_path / "rtp.pcap", inband_capture(digits))
    captured = read_rtp(pcap)
    sent_digits = inband_digits(captured)
    assert "".join(sent_digits) == digits                     # the tones are what we meant
    length_ms = round(1000 * (captured[-1].time - captured[0].time)) + 300

    def setup(call: UasCall) -> None:
        set_media(call)
        assert call.stream is not None
        call.stream.enable_inband_dtmf(True)

    async def main() -> Outcome:
        log = DigitLog()
        async with MediaEngine(engine_config(backend, ports), on_event=log) as engine, \
                MediaUas(engine, setup=setup) as uas:
            _, call = await sipp_call(run_sipp, uas, "dtmf-inband", SCENARIOS / "uac_play_pcap.xml",
                                      extra=["-key", "formats", "0", "-d", str(length_ms)])
            assert call.media is not None and not call.media.receive_telephone_events
            return await outcome(log, call, len(sent_digits), timeout=3)

    out = run(main())
    out.check_delivery()
    assert [e.digit for e in out.got] == sent_digits, out
    assert all(e.source == "inband" for e in out.got), out
    # 100 ms tones: reported about that long (the detector decides on 6.375 ms steps)
    assert all(60 <= e.duration_ms <= 140 for e in out.got), out


# -- baresip presses keys ------------------------------------------------------------------------

def caller_phone(tmp_path: Path, ports: PortAllocator) -> Baresip:
    """A headless baresip that calls with PCMU (and telephone-event, which it always offers),
    playing silence that outlasts the call (at its end of file baresip would hang up)."""
    silence = make_silence(tmp_path / "silence.wav", 20)
    sip = ports.block(2)                                   # baresip binds TLS on port + 1
    rtp = ports.block(20)
    return Baresip("caller", tmp_path / "caller", sip_port=sip, ctrl_port=ports.port(),
                   rtp_ports=(rtp, rtp + 19),
                   account=f"<sip:caller@127.0.0.1:{sip}>;regint=0;audio_codecs=PCMU",
                   audio_source=silence)


async def baresip_calls(phone: Baresip, uas: MediaUas) -> UasCall:
    """baresip dials the UAS; returns the call once it is up and the phone's RTP arrives."""
    await asyncio.to_thread(phone.start, lifetime=30)
    await asyncio.to_thread(phone.command, "dial", uas.uri())
    call = await uas.next_call(5)
    await call.wait_confirmed(5)
    await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED", 5)
    assert call.media is not None and call.stream is not None
    assert call.media.receive_telephone_events, call.offer      # baresip offers it
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while call.stream.stats().packets_in < 5:                   # its audio starts after the ACK
        assert loop.time() < deadline, f"no RTP from the phone: {call.stream.stats()}"
        await asyncio.sleep(0.05)
    return call


async def baresip_hangs_up(phone: Baresip, call: UasCall) -> None:
    await asyncio.to_thread(phone.command, "hangup")
    await call.wait_terminated(5)
    assert call.reason == "bye", call


@backends
def test_baresip_sends_dtmf(backend, ports, tmp_path):
    digits = "1470#*5599D"
    phone = caller_phone(tmp_path, ports)

    async def main() -> Outcome:
        log = DigitLog()
        async with MediaEngine(engine_config(backend, ports), on_event=log) as engine, \
                MediaUas(engine) as uas:
            try:
                call = await baresip_calls(phone, uas)
                await asyncio.to_thread(phone.command, "sndcode", digits)
                out = await outcome(log, call, len(digits), timeout=10)
                await baresip_hangs_up(phone, call)
            finally:
                await asyncio.to_thread(phone.stop)
            return out

    out = run(main())
    why = f"{out}\n{phone.output()}"
    out.check_delivery()
    assert "".join(e.digit for e in out.got) == digits, why
    assert all(e.source == "rfc4733" for e in out.got), why
    # baresip holds a key for 9 packets of 20 ms (libre's telev: TXC_DIGIT_MIN), 180 ms
    assert all(150 <= e.duration_ms <= 400 for e in out.got), why


@backends
def test_engine_sends_dtmf_to_baresip(backend, ports, tmp_path):
    """The other direction: ``stream.send_dtmf`` sends RFC 4733 events that baresip decodes
    (its ctrl_tcp reports CALL_DTMF_START and CALL_DTMF_END per digit); then the UAS hangs up."""
    digits = "3690*#B88"
    phone = caller_phone(tmp_path, ports)

    async def main() -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]], StreamStats]:
        async with MediaEngine(engine_config(backend, ports)) as engine, MediaUas(engine) as uas:
            try:
                call = await baresip_calls(phone, uas)
                assert call.stream is not None
                done = await asyncio.wait_for(call.stream.send_dtmf(digits), 10)
                starts = await asyncio.to_thread(phone.wait_events, "CALL_DTMF_START",
                                                 len(digits), 5)
                ends = await asyncio.to_thread(phone.wait_events, "CALL_DTMF_END", len(digits), 5)
                await asyncio.sleep(SETTLE)                 # no extra digits afterwards
                stats = call.stream.stats()
                bye = await uas.hangup(call)                # this time the UAS hangs up
                assert bye.status == 200, bye
                await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", 5)
            finally:
                await asyncio.to_thread(phone.stop)
            return done, starts, ends, stats

    done, starts, ends, stats = run(main())
    why = f"stream {stats}\n{phone.output()}"
    assert done, why
    assert "".join(ev.get("param", "") for ev in starts) == digits, (starts, why)
    assert len(ends) == len(digits), (ends, why)
    assert len([e for e in phone.events if e.get("type") == "CALL_DTMF_START"]) == len(digits), why


# -- the UAS itself ----------------------------------------------------------------------------

def test_media_uas_answers_sipp_calls(run_sipp, ports):
    """SIPp's built-in UAC: three calls answered with an SDP answer for a stream of the engine
    (the stream's port, PCMU), ACKed and hung up by SIPp; each call has its own stream."""
    async def main() -> tuple[SippResult, list[UasCall]]:
        async with MediaEngine(engine_config("python", ports)) as engine, \
                MediaUas(engine) as uas:
            proc = run_sipp("uac", scenario="uac", remote=f"127.0.0.1:{uas.port}",
                            service="media", calls=3, timeout=15)
            result = await asyncio.to_thread(proc.wait)
            for call in uas.calls:
                await call.wait_terminated(2)
            return result, list(uas.calls)

    result, calls = run(main())
    result.check(3)
    assert [(c.state, c.reason, c.requests) for c in calls] == \
        [("terminated", "bye", ["INVITE", "ACK", "BYE"])] * 3
    assert len({c.stream.port for c in calls if c.stream is not None}) == 3
    for call, msgs in zip(calls, [m for _, m in by_call(result.messages())], strict=True):
        ok = [m for m in msgs if m.direction == "received" and m.status == 200
              and m.method == "INVITE"]
        assert ok, msgs
        assert call.stream is not None
        assert f"m=audio {call.stream.port} RTP/AVP 0" in ok[0].text, ok[0].text


def test_media_uas_cancel_while_ringing(run_sipp, ports):
    async def main() -> tuple[SippResult, UasCall]:
        async with MediaEngine(engine_config("python", ports)) as engine, \
                MediaUas(engine, ring=5.0) as uas:
            proc = run_sipp("cancel", scenario=SCENARIOS / "uac_cancel.xml",
                            remote=f"127.0.0.1:{uas.port}", service="media", calls=1,
                            timeout=10)
            result = await asyncio.to_thread(proc.wait)
            return result, uas.calls[0]

    result, call = run(main())
    result.check(1)
    assert (call.state, call.reason, call.requests) == \
        ("terminated", "cancel", ["INVITE", "CANCEL", "ACK"])


def test_media_uas_retransmits_2xx_until_ack(run_sipp, ports):
    async def main() -> tuple[SippResult, UasCall]:
        async with MediaEngine(engine_config("python", ports)) as engine, \
                MediaUas(engine, t1=0.1) as uas:
            proc = run_sipp("ignore200", scenario=SCENARIOS / "uac_ignore_200.xml",
                            remote=f"127.0.0.1:{uas.port}", service="media", calls=1,
                            timeout=10, extra=["-nr"])
            result = await asyncio.to_thread(proc.wait)
            await uas.calls[0].wait_terminated(2)
            return result, uas.calls[0]

    result, call = run(main())
    result.check(1)
    assert (call.reason, call.requests) == ("bye", ["INVITE", "ACK", "BYE"])
    oks = [m for m in result.messages() if m.direction == "received" and m.status == 200
           and m.method == "INVITE"]
    assert len(oks) >= 2 and oks[0].text == oks[1].text, [m.start_line for m in oks]
