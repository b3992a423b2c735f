"""Synthetic RTP network traces, seeded and deterministic, for jitter-buffer tests and benchmarks.

A trace is a list of ``TracePacket``: what a sender emitted (sequence number, timestamp, SSRC,
marker, payload, the sender's frame number) and when it reaches the receiver (``arrival``,
seconds). ``voice`` makes the sender's stream; the network functions return a new list with
delays, losses, duplicates and stream changes applied; ``arrivals`` sorts by arrival time for
replay; ``replay`` drives a jitter buffer with it on a 20 ms clock. Randomness comes from a
``numpy.random.Generator`` (or an int seed for one), so the same seed gives the same trace.
``scenario(name, seed)`` builds the named traces the benchmark uses (``SCENARIOS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

__all__ = [
    "SCENARIOS",
    "Replay",
    "TracePacket",
    "arrivals",
    "delay",
    "dtmf",
    "dtx",
    "duplicate",
    "frame_of",
    "gaussian_jitter",
    "gilbert_loss",
    "pareto_jitter",
    "random_loss",
    "random_spikes",
    "reorder",
    "replay",
    "scenario",
    "seq_jump",
    "spikes",
    "ssrc_change",
    "timestamp_jump",
    "voice",
]

Rng = np.random.Generator | int


def _rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@dataclass(frozen=True, slots=True)
class TracePacket:
    """One packet as sent, and when it arrives (receiver clock, seconds)."""

    arrival: float
    send: float
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int
    payload: bytes
    frame: int
    """The sender's frame number (-1 for telephone-event packets)."""
    silent: bool | None = None


def _payload(frame: int, size: int) -> bytes:
    return frame.to_bytes(4, "big") + bytes(max(0, size - 4))


def frame_of(payload: bytes) -> int:
    """The sender frame number ``voice`` wrote into a payload."""
    return int.from_bytes(payload[:4], "big")


def voice(duration: float, *, clock_rate: int = 8000, frame_samples: int = 160,
          ssrc: int = 0x5EED, seq0: int = 0, ts0: int = 0, skew_ppm: float = 0.0,
          start: float = 0.0, payload_type: int = 0, payload_size: int = 160,
          talk: tuple[float, float] | None = None, rng: Rng | None = None) -> list[TracePacket]:
    """A sender's stream of one frame per packet for ``duration`` seconds of its own clock.

    ``skew_ppm`` > 0: the sender's clock runs fast (more frames per true second). ``talk=(on,
    off)`` flags frames silent with exponential talkspurts/pauses of those mean lengths (needs
    ``rng``); otherwise ``silent`` is None (unknown). Packets are still sent in silence.
    """
    interval = frame_samples / clock_rate / (1.0 + skew_ppm * 1e-6)
    n = round(duration * clock_rate / frame_samples)
    silent: list[bool | None] = [None] * n
    if talk is not None:
        gen = _rng(0 if rng is None else rng)
        frame_s = frame_samples / clock_rate
        k, speaking = 0, True
        while k < n:
            length = max(1, int(gen.exponential(talk[0] if speaking else talk[1]) / frame_s))
            for i in range(k, min(n, k + length)):
                silent[i] = not speaking
            k += length
            speaking = not speaking
    return [TracePacket(arrival=start + i * interval, send=start + i * interval,
                        seq=(seq0 + i) & 0xFFFF, timestamp=(ts0 + i * frame_samples) & 0xFFFFFFFF,
                        ssrc=ssrc, marker=i == 0, payload_type=payload_type,
                        payload=_payload(i, payload_size), frame=i, silent=silent[i])
            for i in range(n)]


def delay(packets: Iterable[TracePacket], seconds: float) -> list[TracePacket]:
    """Constant network delay."""
    return [replace(p, arrival=p.arrival + seconds) for p in packets]


def _fifo(packets: list[TracePacket]) -> list[TracePacket]:
    """Keep send order: a packet never overtakes the one sent before it (one queue)."""
    out, last = [], -math.inf
    for p in sorted(packets, key=lambda q: q.send):
        last = max(last, p.arrival)
        out.append(replace(p, arrival=last) if p.arrival < last else p)
    return out


def gaussian_jitter(packets: Sequence[TracePacket], rng: Rng, sigma: float, *,
                    fifo: bool = False) -> list[TracePacket]:
    """Add a half-normal delay of scale ``sigma`` seconds; ``fifo`` forbids reordering."""
    extra = np.abs(_rng(rng).normal(0.0, sigma, len(packets)))
    out = [replace(p, arrival=p.arrival + float(e)) for p, e in zip(packets, extra, strict=True)]
    return _fifo(out) if fifo else out


def pareto_jitter(packets: Sequence[TracePacket], rng: Rng, scale: float, alpha: float = 2.5, *,
                  fifo: bool = True) -> list[TracePacket]:
    """Add a heavy-tailed (Lomax) delay: ``scale * pareto(alpha)`` seconds."""
    extra = _rng(rng).pareto(alpha, len(packets)) * scale
    out = [replace(p, arrival=p.arrival + float(e)) for p, e in zip(packets, extra, strict=True)]
    return _fifo(out) if fifo else out


def spikes(packets: Iterable[TracePacket], at: Iterable[float], height: float,
           spacing: float = 0.0002) -> list[TracePacket]:
    """Link stalls: packets arriving in ``[t, t + height)`` are held and delivered as a burst at
    ``t + height`` (``spacing`` apart, in order), for each ``t`` in ``at``."""
    out = sorted(packets, key=lambda p: (p.arrival, p.send))
    for t in sorted(at):
        k = 0
        for i, p in enumerate(out):
            if t <= p.arrival < t + height:
                out[i] = replace(p, arrival=t + height + k * spacing)
                k += 1
        out.sort(key=lambda p: (p.arrival, p.send))
    return out


def random_spikes(packets: Sequence[TracePacket], rng: Rng, per_second: float,
                  height: tuple[float, float]) -> list[TracePacket]:
    """Stalls at Poisson times, ``per_second`` on average, heights uniform in ``height``."""
    gen = _rng(rng)
    if not packets:
        return []
    end = max(p.arrival for p in packets)
    out = list(packets)
    t = float(gen.exponential(1.0 / per_second))
    while t < end:
        out = spikes(out, [t], float(gen.uniform(*height)))
        t += float(gen.exponential(1.0 / per_second))
    return out


def reorder(packets: Sequence[TracePacket], rng: Rng, prob: float, max_frames: int = 2,
            frame_seconds: float = 0.02) -> list[TracePacket]:
    """Delay a fraction ``prob`` of packets by 1..``max_frames`` frame times plus a little, so
    they arrive after packets sent later."""
    gen = _rng(rng)
    hit = gen.random(len(packets)) < prob
    shift = gen.integers(1, max_frames + 1, len(packets))
    return [replace(p, arrival=p.arrival + float(s) * frame_seconds + 0.001) if h else p
            for p, h, s in zip(packets, hit, shift, strict=True)]


def duplicate(packets: Sequence[TracePacket], rng: Rng, prob: float,
              lag: float = 0.005) -> list[TracePacket]:
    """Deliver a fraction ``prob`` of packets twice, the copy ``lag`` seconds later."""
    hit = _rng(rng).random(len(packets)) < prob
    out: list[TracePacket] = []
    for p, h in zip(packets, hit, strict=True):
        out.append(p)
        if h:
            out.append(replace(p, arrival=p.arrival + lag))
    return out


def random_loss(packets: Sequence[TracePacket], rng: Rng, rate: float) -> list[TracePacket]:
    """Drop each packet independently with probability ``rate``."""
    keep = _rng(rng).random(len(packets)) >= rate
    return [p for p, k in zip(packets, keep, strict=True) if k]


def gilbert_loss(packets: Sequence[TracePacket], rng: Rng, p_gb: float, p_bg: float,
                 loss_bad: float = 1.0, loss_good: float = 0.0) -> list[TracePacket]:
    """Bursty loss (Gilbert-Elliott): good/bad states with these transition probabilities per
    packet and loss probabilities ``loss_good``/``loss_bad``."""
    u = _rng(rng).random((len(packets), 2))
    out, bad = [], False
    for p, (a, b) in zip(packets, u, strict=True):
        bad = (a >= p_bg) if bad else (a < p_gb)
        if b >= (loss_bad if bad else loss_good):
            out.append(p)
    return out


def ssrc_change(packets: Iterable[TracePacket], at: float, ssrc: int, seq0: int, ts0: int,
                frame_samples: int = 160) -> list[TracePacket]:
    """From sender time ``at`` on, a new source: new SSRC, sequence and timestamp bases."""
    out, first = [], None
    for p in sorted(packets, key=lambda q: q.send):
        if p.send >= at and p.frame >= 0:
            if first is None:
                first = p.frame
            k = p.frame - first
            p = replace(p, ssrc=ssrc, seq=(seq0 + k) & 0xFFFF, marker=k == 0,
                        timestamp=(ts0 + k * frame_samples) & 0xFFFFFFFF)
        out.append(p)
    return out


def timestamp_jump(packets: Iterable[TracePacket], at: float, jump: int,
                   marker: bool = True) -> list[TracePacket]:
    """From sender time ``at`` on, timestamps are off by ``jump`` (marker on the first)."""
    out, seen = [], False
    for p in sorted(packets, key=lambda q: q.send):
        if p.send >= at:
            p = replace(p, timestamp=(p.timestamp + jump) & 0xFFFFFFFF,
                        marker=p.marker or (marker and not seen))
            seen = True
        out.append(p)
    return out


def seq_jump(packets: Iterable[TracePacket], at: float, jump: int) -> list[TracePacket]:
    """From sender time ``at`` on, sequence numbers are off by ``jump``."""
    return [replace(p, seq=(p.seq + jump) & 0xFFFF) if p.send >= at else p
            for p in sorted(packets, key=lambda q: q.send)]


def dtx(packets: Iterable[TracePacket], start: float, end: float) -> list[TracePacket]:
    """Discontinuous transmission: nothing is sent in ``[start, end)`` (sender time). Later
    packets keep consecutive sequence numbers while timestamps run on; the first is marked."""
    src = sorted(packets, key=lambda q: q.send)
    gap = sum(1 for p in src if start <= p.send < end)
    out, first = [], True
    for p in src:
        if start <= p.send < end:
            continue
        if p.send >= end:
            p = replace(p, seq=(p.seq - gap) & 0xFFFF, marker=p.marker or first)
            first = False
        out.append(p)
    return out


def dtmf(packets: Iterable[TracePacket], at: float, duration: float, *, digit: int = 1,
         payload_type: int = 101, volume: int = 10,
         frame_samples: int = 160) -> list[TracePacket]:
    """Replace the audio packets sent in ``[at, at + duration)`` with RFC 4733 telephone-event
    packets for ``digit``: same sequence numbers, the event's start timestamp, a duration growing
    by a frame per packet, the last three packets the redundant end packets (E bit)."""
    src = sorted(packets, key=lambda q: q.send)
    idx = [i for i, p in enumerate(src) if at <= p.send < at + duration]
    if not idx:
        return src
    start_ts = src[idx[0]].timestamp
    first_end = max(0, len(idx) - 3)
    for n, i in enumerate(idx):
        p = src[i]
        length = min(0xFFFF, (min(n, first_end) + 1) * frame_samples)
        flags = (0x80 if n >= first_end else 0) | (volume & 0x3F)
        body = bytes([digit & 0xFF, flags]) + length.to_bytes(2, "big")
        src[i] = replace(p, payload_type=payload_type, timestamp=start_ts, marker=n == 0,
                         payload=body, frame=-1, silent=None)
    return src


def arrivals(packets: Iterable[TracePacket]) -> list[TracePacket]:
    """Packets in the order the receiver sees them."""
    return sorted(packets, key=lambda p: (p.arrival, p.send))


class _Buffer(Protocol):
    def put(self, seq: int, timestamp: int, marker: bool, payload_type: int, payload: bytes,
            ssrc: int, now: float, *, silent: bool | None = None) -> Any: ...
    def get(self, now: float) -> Any: ...
    def pop_events(self) -> list[Any]: ...


@dataclass(slots=True)
class Replay:
    """What a buffer did with a trace: ``ticks`` are ``(time, Frame | Missing)``, ``puts`` are
    ``(packet, PutResult)``, ``events`` are ``(time popped, event Frame)``."""

    ticks: list[tuple[float, Any]]
    puts: list[tuple[TracePacket, Any]]
    events: list[tuple[float, Any]]


def replay(buffer: _Buffer, packets: Sequence[TracePacket], *, tick: float = 0.02,
           phase: float = 0.0, until: float | None = None,
           on_tick: Callable[[float, Any], None] | None = None) -> Replay:
    """Drive ``buffer``: every packet is put at its arrival time, and ``get`` is called at
    ``phase + k * tick`` (microsecond-exact) until ``until`` (default: last arrival + 1 s);
    every packet arriving by ``until`` is put. A packet arriving exactly at a tick is put first.
    Events are popped after every put."""
    pkts = arrivals(packets)
    end = until if until is not None else (pkts[-1].arrival + 1.0 if pkts else 1.0)
    tick_us, phase_us = round(tick * 1e6), round(phase * 1e6)
    result = Replay([], [], [])
    i, k = 0, 0
    while True:
        now = (phase_us + k * tick_us) / 1e6
        if now > end:
            break
        while i < len(pkts) and pkts[i].arrival <= now:
            p = pkts[i]
            r = buffer.put(p.seq, p.timestamp, p.marker, p.payload_type, p.payload, p.ssrc,
                           p.arrival, silent=p.silent)
            result.puts.append((p, r))
            result.events.extend((p.arrival, e) for e in buffer.pop_events())
            i += 1
        out = buffer.get(now)
        result.ticks.append((now, out))
        if on_tick is not None:
            on_tick(now, out)
        k += 1
    while i < len(pkts) and pkts[i].arrival <= end:  # after the last tick, before ``until``
        p = pkts[i]
        r = buffer.put(p.seq, p.timestamp, p.marker, p.payload_type, p.payload, p.ssrc,
                       p.arrival, silent=p.silent)
        result.puts.append((p, r))
        result.events.extend((p.arrival, e) for e in buffer.pop_events())
        i += 1
    return result


# --- named scenarios ----------------------------------------------------------------------------


def _lan(seed: int, duration: float) -> list[TracePacket]:
    g = np.random.default_rng(seed)
    p = voice(duration, talk=(1.2, 1.5), rng=g)
    return gaussian_jitter(delay(random_loss(p, g, 0.001), 0.001), g, 0.0005)


def _wifi(seed: int, duration: float) -> list[TracePacket]:
    g = np.random.default_rng(seed)
    p = voice(duration, talk=(1.2, 1.5), rng=g)
    p = gaussian_jitter(delay(random_loss(p, g, 0.01), 0.004), g, 0.012)
    return random_spikes(p, g, 0.1, (0.06, 0.16))


def _cellular(seed: int, duration: float) -> list[TracePacket]:
    g = np.random.default_rng(seed)
    p = voice(duration, talk=(1.2, 1.5), rng=g)
    p = gilbert_loss(p, g, 0.01, 0.3)
    p = pareto_jitter(delay(p, 0.06), g, 0.02, 2.5)
    return random_spikes(p, g, 0.05, (0.2, 0.4))


def _skew(ppm: float) -> Callable[[int, float], list[TracePacket]]:
    def build(seed: int, duration: float) -> list[TracePacket]:
        g = np.random.default_rng(seed)
        p = voice(duration, talk=(1.2, 1.5), rng=g, skew_ppm=ppm)
        return gaussian_jitter(delay(p, 0.02), g, 0.003)
    return build


def _spiky(seed: int, duration: float) -> list[TracePacket]:
    g = np.random.default_rng(seed)
    p = voice(duration, talk=(1.2, 1.5), rng=g)
    p = gaussian_jitter(delay(p, 0.02), g, 0.002)
    return spikes(p, [5.0 + 7.0 * k for k in range(int(duration // 7))], 0.3)


SCENARIOS: dict[str, Callable[[int, float], list[TracePacket]]] = {
    "lan": _lan,
    "wifi": _wifi,
    "3g": _cellular,
    "skew+1000ppm": _skew(1000.0),
    "skew-1000ppm": _skew(-1000.0),
    "spikes": _spiky,
}
"""Named traces: ``SCENARIOS[name](seed, duration)``, talkspurts flagged silent/speech."""


def scenario(name: str, seed: int = 1, duration: float = 60.0) -> list[TracePacket]:
    """The named trace (see ``SCENARIOS``), in arrival order."""
    return arrivals(SCENARIOS[name](seed, duration))
