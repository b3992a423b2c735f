"""Terminated streams of the media engine, both backends, over real UDP on loopback.

A test peer sends RTP the way a phone does (20 ms frames on a real-time grid) and checks what the
engine sends back with its own decoder (``pbx.media.dsp``); what the engine decoded is checked
through its recordings. Every test runs once per available backend.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbx.media.codecs import get_codec
from pbx.media.dsp import alaw_decode, ulaw_decode, ulaw_encode
from pbx.media.engine import (
    EngineConfig,
    EngineError,
    MediaEngine,
    MediaEvent,
    Stream,
    available_backends,
)
from pbx.media.inband import PyInbandDetector
from pbx.media.playback import PcmSource, WavSource
from pbx.media.resample import resample
from pbx.media.tones import dtmf_tones
from pbx.media.wav import parse_wav, write_wav
from pbx.sip.offer_answer import Codec, NegotiatedMedia

BACKENDS = available_backends()
PORT_MIN, PORT_MAX = 26200, 26399
backends = pytest.mark.parametrize("backend", BACKENDS)

PCMU = Codec("PCMU", 8000, 1, 0)
PCMA = Codec("PCMA", 8000, 1, 8)
G722 = Codec("G722", 8000, 1, 9)
OPUS = Codec("opus", 48000, 2, 111)
TE = Codec("telephone-event", 8000, 1, 101)
HDR = struct.Struct("!BBHII")


# -- helpers -------------------------------------------------------------------------------------


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 20))


def config(backend: str, **kw: Any) -> EngineConfig:
    kw.setdefault("port_min", PORT_MIN)
    kw.setdefault("port_max", PORT_MAX)
    kw.setdefault("jitter_start_ms", 80)     # generous: a loaded test machine stalls peers
    kw.setdefault("jitter_min_ms", 80)
    return EngineConfig(backend=backend, **kw)  # type: ignore[arg-type]


def negotiated(peer: tuple[str, int], codec: Codec = PCMU, *, te: Codec | None = TE,
               receive: tuple[Codec, ...] = (), direction: str = "sendrecv") -> NegotiatedMedia:
    """What offer/answer would agree with a peer at ``peer`` sending and taking ``codec``."""
    rx = {c.payload_type: c for c in (codec, *receive) if c.payload_type is not None}
    return NegotiatedMedia(0, peer[0], peer[1], peer[0], peer[1] + 1, codec, rx, te,
                           {te.payload_type: te.clock_rate} if te and te.payload_type else {},
                           20, direction, False)


def rtp(pt: int, seq: int, ts: int, payload: bytes, *, ssrc: int = 0x1234, marker: bool = False
        ) -> bytes:
    return HDR.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF,
                    ssrc) + payload


class Peer(asyncio.DatagramProtocol):
    """A phone: sends on a 20 ms grid, keeps what it receives."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.addr: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        name = transport.get_extra_info("sockname")
        self.addr = (name[0], name[1])

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.got.append(data)

    def send(self, data: bytes, to: Stream) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to.local)

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    def audio(self, pt: int = 0) -> list[bytes]:
        """Payloads received with payload type ``pt``, in sequence order."""
        pkts = [p for p in self.got if p[1] & 0x7F == pt]
        return [p[12:] for p in sorted(pkts, key=lambda p: unwrap_seq(pkts, p))]


def unwrap_seq(pkts: list[bytes], p: bytes) -> int:
    first = HDR.unpack_from(pkts[0])[2]
    return (HDR.unpack_from(p)[2] - first) & 0xFFFF


def send_n(p: Peer, pkt: bytes, to: Stream, n: int) -> None:
    for _ in range(n):
        p.send(pkt, to)


async def peer() -> Peer:
    _, p = await asyncio.get_running_loop().create_datagram_endpoint(
        Peer, local_addr=("127.0.0.1", 0))
    return p


async def pace(sends: list[Callable[[], None]], period: float = 0.02) -> None:
    """Run one send per period on absolute deadlines (a phone's clock)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, send in enumerate(sends):
        delay = t0 + i * period - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        send()


def chirp(seconds: float, rate: int = 8000, f0: float = 200.0, f1: float = 3000.0,
          amp: float = 8000.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    k = (f1 - f0) / seconds
    return (amp * np.sin(2 * np.pi * (f0 * t + k * t * t / 2))).astype(np.int16)


def tone(freq: float, n: int, rate: int = 8000, amp: float = 6000.0, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def best_corr(x: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Largest normalised cross-correlation of ``ref`` within ``x``, and its lag."""
    x, ref = x.astype(np.float64), ref.astype(np.float64)
    if len(x) < len(ref):
        return 0.0, 0
    c = np.correlate(x, ref, "valid")
    win = np.sqrt(np.convolve(x * x, np.ones(len(ref)), "valid"))
    score = c / (win * np.linalg.norm(ref) + 1e-9)
    i = int(np.argmax(score))
    return float(score[i]), i


def level(x: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Amplitude of ``freq`` in ``x`` (Hann-windowed DFT bin)."""
    x = x.astype(np.float64) * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x)) * 4 / len(x)
    return float(spec[np.argmin(np.abs(np.fft.rfftfreq(len(x), 1 / rate) - freq))])


def pcmu_frames(pcm: np.ndarray) -> list[bytes]:
    codes = ulaw_encode(pcm.astype("<i2").tobytes())
    return [codes[i:i + 160] for i in range(0, len(codes) - 159, 160)]


def decode(payloads: list[bytes], law: str = "u") -> np.ndarray:
    fn = ulaw_decode if law == "u" else alaw_decode
    return np.frombuffer(fn(b"".join(payloads)), "<i2").astype(np.int16)


def read(path: Path) -> tuple[np.ndarray, int]:
    wav = parse_wav(path.read_bytes(), downmix=False)
    x = wav.samples
    return (x[:, 0] if x.ndim == 2 and x.shape[1] == 1 else x), wav.rate


def digits_of(events: list[MediaEvent]) -> list[tuple[str | None, str | None, int | None]]:
    return [(e.digit, e.source, e.duration_ms) for e in events if e.kind == "digit"]


# -- receiving -----------------------------------------------------------------------------------


@backends
def test_decodes_records_and_reports_rfc4733_digits_once(backend: str, tmp_path: Path) -> None:
    """PCMU in: the recording holds what was sent; a telephone-event with redundant end packets
    (and a duplicate) is one digit with its duration; nothing is dropped."""
    signal = chirp(0.4)
    frames = pcmu_frames(signal)

    async def main() -> None:
        events: list[MediaEvent] = []
        async with MediaEngine(config(backend), on_event=events.append) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr))
            rec = s.record(tmp_path / "rx.wav")
            sends: list[Callable[[], None]] = []
            seq, ts = 4000, 10_000
            for f in frames:
                sends.append(lambda f=f, seq=seq, ts=ts: p.send(rtp(0, seq, ts, f), s))
                seq, ts = seq + 1, ts + 160
            start = ts                               # the event: 100 ms of '7', 3 end packets
            for k in range(5):
                payload = struct.pack("!BBH", 7, 10, 160 * (k + 1))
                sends.append(lambda pl=payload, seq=seq, m=k == 0: p.send(
                    rtp(101, seq, start, pl, marker=m), s))
                seq += 1
            for k in range(3):
                end = rtp(101, seq, start, struct.pack("!BBH", 7, 0x80 | 10, 800))
                sends.append(functools.partial(send_n, p, end, s, 2 if k == 1 else 1))
                seq += 1
            ts += 6 * 160
            for f in frames[:5]:
                sends.append(lambda f=f, seq=seq, ts=ts: p.send(rtp(0, seq, ts, f), s))
                seq, ts = seq + 1, ts + 160
            await pace(sends)
            await asyncio.sleep(0.25)
            rec.stop()
            stats = s.stats()
            jb = s.jitter_stats()
            p.close()
        assert digits_of(events) == [("7", "rfc4733", 100)]
        assert stats.packets_in == len(frames) + 9 + 5 and stats.dropped == 0
        assert jb is not None and jb.late == 0 and jb.played == len(frames) + 5
        got, rate = read(tmp_path / "rx.wav")
        assert rate == 8000 and got.ndim == 1
        score, lag = best_corr(got, signal)
        assert score > 0.99, score
        assert 0 < lag < 8000 * 0.3                  # jitter buffer + concealment delay
        assert abs(len(got) / 8000 - 0.4 - 0.2 - 0.1 - 0.25) < 0.15

    run(main)


@backends
def test_inband_digits_detected_once_each(backend: str) -> None:
    digits = "15#*"
    pcm = np.concatenate([np.zeros(400, np.int16), dtmf_tones(digits, 8000),
                          np.zeros(400, np.int16)])
    frames = pcmu_frames(pcm)

    async def main() -> list[MediaEvent]:
        events: list[MediaEvent] = []
        async with MediaEngine(config(backend), on_event=events.append) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr, te=None))
            with pytest.raises(EngineError):
                (await eng.open_stream()).enable_inband_dtmf()     # no media yet
            s.enable_inband_dtmf()
            await pace([lambda i=i, f=f: p.send(rtp(0, i, 160 * i, f), s)
                        for i, f in enumerate(frames)])
            await asyncio.sleep(0.15)
            p.close()
        return events

    got = asyncio.run(asyncio.wait_for(main(), 20))
    assert [d for d, _, _ in digits_of(got)] == list(digits)
    assert all(src == "inband" and 60 <= (dur or 0) <= 140 for _, src, dur in digits_of(got))


# -- sending ---------------------------------------------------------------------------------------


@backends
def test_play_resamples_a_wav_and_keeps_sending_silence(backend: str, tmp_path: Path) -> None:
    """A 16 kHz WAV played into a PCMU stream arrives at 8 kHz, on one SSRC with consecutive
    sequence numbers and timestamps; the stream keeps sending (silence) once it is done."""
    speech16 = chirp(0.4, 16000, 300, 3400)
    write_wav(tmp_path / "prompt.wav", speech16, 16000)

    async def main() -> tuple[bool, Peer, int]:
        async with MediaEngine(config(backend)) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr))
            done = await s.play(WavSource(tmp_path / "prompt.wav", 16000))
            n = len(p.got)
            await asyncio.sleep(0.1)
            p.close()
            return done, p, n

    done, p, n_at_end = asyncio.run(asyncio.wait_for(main(), 20))
    assert done is True
    heads = [HDR.unpack_from(pkt) for pkt in p.got]
    assert len({h[4] for h in heads}) == 1 and {h[1] & 0x7F for h in heads} == {0}
    assert heads[0][1] & 0x80                       # marker on the first packet only
    assert not any(h[1] & 0x80 for h in heads[1:])
    for a, b in itertools.pairwise(heads):
        assert (b[2] - a[2]) & 0xFFFF == 1 and (b[3] - a[3]) & 0xFFFFFFFF == 160
    assert len(p.got) >= n_at_end + 3                # still sending after the prompt
    heard = decode(p.audio())
    ref = resample(speech16, 16000, 8000)
    score, _ = best_corr(heard, ref[200:-200])
    assert score > 0.97, score
    tail = decode([pkt[12:] for pkt in p.got[n_at_end + 1:]])
    assert np.abs(tail).max() <= 8                   # silence


@backends
def test_send_dtmf_as_telephone_events_or_tones(backend: str) -> None:
    async def main() -> tuple[Peer, Peer]:
        async with MediaEngine(config(backend)) as eng:
            p1, p2 = await peer(), await peer()
            s1, s2 = await eng.open_stream(), await eng.open_stream()
            s1.set_media(negotiated(p1.addr))
            s2.set_media(negotiated(p2.addr, te=None))
            with pytest.raises(ValueError):
                s1.send_dtmf("12x")
            a, b = s1.send_dtmf("42#", 100, gap_ms=60), s2.send_dtmf("42#", 100, gap_ms=60)
            assert await a and await b
            await asyncio.sleep(0.06)
            p1.close()
            p2.close()
            return p1, p2

    p1, p2 = asyncio.run(asyncio.wait_for(main(), 20))
    events: dict[int, list[tuple[int, bool, int, bool]]] = {}
    seqs = [HDR.unpack_from(pkt)[2] for pkt in p1.got]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    for pkt in p1.got:
        _, b1, _, ts, _ = HDR.unpack_from(pkt)
        if b1 & 0x7F == 101:
            code, flags, dur = struct.unpack_from("!BBH", pkt, 12)
            events.setdefault(ts, []).append((code, bool(b1 & 0x80), dur, bool(flags & 0x80)))
    assert [v[0][0] for v in events.values()] == [4, 2, 11]
    for pkts in events.values():
        assert pkts[0][1] and not any(m for _, m, _, _ in pkts[1:])   # marker: first only
        assert [e for _, _, _, e in pkts].count(True) == 3            # three end packets
        assert max(d for _, _, d, _ in pkts) == 800                   # 100 ms at 8 kHz
    det = PyInbandDetector(8000)
    assert "".join(det.feed(decode(p2.audio()))) == "42#"


@backends
def test_stereo_recording_and_stop(backend: str, tmp_path: Path) -> None:
    """Stereo: left what the stream receives, right what it sends; stop() ends a playback."""
    n = 25
    incoming = tone(440, 160 * n)

    async def main() -> tuple[bool, float]:
        async with MediaEngine(config(backend)) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr))
            rec = s.record(tmp_path / "both.wav", mode="stereo")
            mixed = s.record(tmp_path / "mixed.wav", mode="mixed")
            reader = s.read_frames()
            job = s.play(PcmSource(tone(1000, 8000 * 5), 8000))
            frames = pcmu_frames(incoming)
            await pace([lambda i=i, f=f: p.send(rtp(0, i, 160 * i, f), s)
                        for i, f in enumerate(frames)])
            pulled = []
            async for frame in reader:              # collected every tick: already there
                pulled.append(frame)
                if len(pulled) == 20:
                    break
            reader.close()
            assert reader.closed and [f async for f in reader] != []  # the rest, then the end
            assert all(len(f) == 160 for f in pulled)
            assert level(np.concatenate(pulled)[-1600:], 440) > 3000
            job.stop()
            stopped = await job
            await asyncio.sleep(0.15)
            rec.stop()
            mixed.stop()
            assert rec.closed and rec.duration > 0.4
            p.close()
            return stopped, rec.duration

    stopped, _ = asyncio.run(asyncio.wait_for(main(), 20))
    assert stopped is False
    both, rate = read(tmp_path / "both.wav")
    assert rate == 8000 and both.shape[1] == 2
    left, right = both[:, 0], both[:, 1]
    assert level(left, 440) > 3000 and level(left, 1000) < 100
    assert level(right[:1500], 1000) > 3000 and level(right, 440) < 100
    assert np.abs(right[-400:]).max() == 0           # stopped: silence after
    mono, _ = read(tmp_path / "mixed.wav")
    assert mono.ndim == 1 and level(mono, 440) > 3000 and level(mono[:1500], 1000) > 3000


# -- conferences -----------------------------------------------------------------------------------


@backends
def test_conference_each_hears_the_others_whisper_mute(backend: str, tmp_path: Path) -> None:
    """Three members (one on G.722, mixed at 8 kHz): each hears the other two and never itself;
    then C whispers to A and B is muted: A hears C, B hears neither; the recording has all."""
    freqs = {"A": 500.0, "B": 900.0, "C": 1300.0}
    g722 = get_codec("G722", 8000)

    async def main() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        async with MediaEngine(config(backend)) as eng:
            conf = eng.conference(8000)
            peers, streams, encoders = {}, {}, {}
            for name in freqs:
                p = await peer()
                s = await eng.open_stream()
                codec = G722 if name == "C" else PCMU
                s.set_media(negotiated(p.addr, codec))
                conf.join(s)
                peers[name], streams[name] = p, s
                encoders[name] = g722.encoder() if name == "C" else None
            with pytest.raises(ValueError):
                conf.join(streams["A"])
            with pytest.raises(ValueError):
                conf.whisper(streams["A"], streams["A"])
            rec = conf.record(tmp_path / "conf.wav")
            marks: dict[str, int] = {}

            def tick(i: int) -> None:
                for name, p in peers.items():
                    enc = encoders[name]
                    if enc is None:
                        payload = pcmu_frames(tone(freqs[name], 160, start=160 * i))[0]
                        p.send(rtp(0, i, 160 * i, payload), streams[name])
                    else:
                        pcm = tone(freqs[name], 320, 16000, start=320 * i)
                        p.send(rtp(9, i, 160 * i, enc.encode(pcm)), streams[name])
                if i == 20:
                    marks.update({n: len(p.got) for n, p in peers.items()})
                    conf.whisper(streams["C"], to=streams["A"])
                    conf.mute(streams["B"])

            await pace([lambda i=i: tick(i) for i in range(40)])
            await asyncio.sleep(0.05)
            rec.stop()
            g722_dec = g722.decoder()
            out = {}
            for name, p in peers.items():
                if name == "C":
                    pcm = np.concatenate([g722_dec.decode(x[12:]) for x in p.got])
                    pcm = resample(pcm, 16000, 8000)
                    k = marks[name] * 160
                else:
                    pcm = decode([x[12:] for x in p.got])
                    k = marks[name] * 160
                out[name] = (pcm[k - 1600:k - 160], pcm[k + 1600:])
                p.close()
            return out

    out = asyncio.run(asyncio.wait_for(main(), 20))
    for name, (before, _) in out.items():
        for other, f in freqs.items():
            if other == name:
                assert level(before, f) < 150, (name, other)
            else:
                assert level(before, f) > 2000, (name, other)
    a_after, b_after, c_after = out["A"][1], out["B"][1], out["C"][1]
    assert level(a_after, freqs["C"]) > 2000 and level(a_after, freqs["B"]) < 150
    assert level(b_after, freqs["C"]) < 150 and level(b_after, freqs["A"]) > 2000
    assert level(c_after, freqs["A"]) > 2000 and level(c_after, freqs["B"]) < 150
    mix, rate = read(tmp_path / "conf.wav")
    assert rate == 8000
    early = mix[: len(mix) // 2]
    assert all(level(early[-2400:], f) > 1500 for f in freqs.values())


@backends
def test_leave_deafen_and_close(backend: str) -> None:
    async def main() -> tuple[Peer, Peer]:
        async with MediaEngine(config(backend)) as eng:
            conf = eng.conference()
            pa, pb = await peer(), await peer()
            a, b = await eng.open_stream(), await eng.open_stream()
            a.set_media(negotiated(pa.addr))
            b.set_media(negotiated(pb.addr))
            conf.join(a, deaf=True)
            conf.join(b)
            assert conf.members == [a, b] and len(conf) == 2 and a.conference is conf

            def tick(i: int) -> None:
                pa.send(rtp(0, i, 160 * i, pcmu_frames(tone(700, 160, start=160 * i))[0]), a)
                pb.send(rtp(0, i, 160 * i, pcmu_frames(tone(1100, 160, start=160 * i))[0]), b)

            await pace([lambda i=i: tick(i) for i in range(20)])
            heard_a = decode(pa.audio())
            heard_b = decode(pb.audio())
            assert level(heard_a[-1600:], 1100) < 150          # deaf
            assert level(heard_b[-1600:], 700) > 2000
            conf.leave(a)
            assert a.conference is None and conf.members == [b]
            b.close()
            assert conf.members == []
            conf.close()
            with pytest.raises(ValueError):
                conf.join(a)
            pa.close()
            pb.close()
            return pa, pb

    asyncio.run(asyncio.wait_for(main(), 20))


# -- codecs, direction, relaying -----------------------------------------------------------------


@backends
def test_opus_both_ways(backend: str, tmp_path: Path) -> None:
    """Opus runs through the Python codec objects on both backends."""
    opus = get_codec("opus", 48000, 2)
    sig = chirp(0.6, 48000, 300, 3000)

    async def main() -> Peer:
        async with MediaEngine(config(backend)) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr, OPUS))
            rec = s.record(tmp_path / "opus.wav")
            s.play(PcmSource(sig, 48000))
            enc = opus.encoder()
            frames = [enc.encode(sig[i:i + 960]) for i in range(0, len(sig), 960)]
            await pace([lambda i=i, f=f: p.send(rtp(111, i, 960 * i, f), s)
                        for i, f in enumerate(frames)])
            await asyncio.sleep(0.15)
            rec.stop()
            p.close()
            return p

    p = asyncio.run(asyncio.wait_for(main(), 20))
    got, rate = read(tmp_path / "opus.wav")
    assert rate == 48000
    assert best_corr(got, sig[4800:-4800])[0] > 0.8
    dec = get_codec("opus", 48000, 2).decoder()
    heard = np.concatenate([dec.decode(x) for x in p.audio(111)])
    assert best_corr(heard, sig[4800:-4800])[0] > 0.8


@backends
def test_direction_and_reinvite(backend: str) -> None:
    """recvonly: nothing sent; a re-INVITE to PCMA switches the codec and starts sending."""
    async def main() -> Peer:
        async with MediaEngine(config(backend)) as eng:
            p = await peer()
            s = await eng.open_stream()
            s.set_media(negotiated(p.addr, direction="recvonly"))
            s.play(PcmSource(tone(600, 8000), 8000))
            await asyncio.sleep(0.15)
            assert p.got == [] and s.stats().packets_out == 0
            s.set_media(negotiated(p.addr, PCMA, receive=(PCMU,)))
            await asyncio.sleep(0.2)
            assert s.media is not None and s.media.send_codec == PCMA
            p.close()
            return p

    p = asyncio.run(asyncio.wait_for(main(), 20))
    assert p.got and {pkt[1] & 0x7F for pkt in p.got} == {8}
    assert level(decode(p.audio(8), "a"), 600) > 3000


@backends
def test_relay_maps_payload_types(backend: str) -> None:
    """Telephone-event is 101 on one leg and 96 on the other: the relay renumbers it, both ways,
    explicitly or derived from set_media."""
    te96 = Codec("telephone-event", 8000, 1, 96)

    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            for explicit in (True, False):
                pa, pb = await peer(), await peer()
                a, b = await eng.open_stream(), await eng.open_stream()
                a.set_media(negotiated(pa.addr))
                b.set_media(negotiated(pb.addr, te=te96))
                if explicit:
                    eng.relay(a, b, {101: 96}, {96: 101})
                else:
                    eng.relay(a, b)
                pa.send(rtp(101, 1, 0, b"\x01\x0a\x00\xa0"), a)
                pa.send(rtp(0, 2, 160, b"\xff" * 160), a)
                pb.send(rtp(96, 7, 0, b"\x02\x0a\x00\xa0"), b)
                await asyncio.sleep(0.1)
                assert [pkt[1] & 0x7F for pkt in pb.got] == [96, 0]
                assert [pkt[1] & 0x7F for pkt in pa.got] == [101]
                eng.unrelay(a)
                for x in (pa, pb):
                    x.close()

    run(main)


@backends
def test_misuse(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with MediaEngine(config(backend)) as eng:
            s = await eng.open_stream()
            with pytest.raises(EngineError):
                s.play(PcmSource(np.zeros(160, np.int16), 8000))
            with pytest.raises(EngineError):
                s.record(tmp_path / "x.wav")
            with pytest.raises(EngineError):
                s.send_dtmf("1")
            assert s.jitter_stats() is None and s.media is None
            with pytest.raises(EngineError):
                s.set_media(negotiated(("127.0.0.1", 9), Codec("GSM", 8000, 1, 3)))
            s.set_media(negotiated(("127.0.0.1", 9)))
            with pytest.raises(ValueError):
                s.record(tmp_path / "x.wav", mode="quad")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                eng.conference(8001)
            with pytest.raises(ValueError):
                eng.relay(s, await eng.open_stream(), {0: 200})
            job = s.play(PcmSource(np.zeros(8000, np.int16), 8000))
            s.close()
            assert await job is False

    run(main)
