"""DTMF properties: RFC 4733 round-trips, sender invariants, receiver de-duplication under any
loss / duplication / reordering, and the in-band C kernel against its Python twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.errors import ParseError
from pbx.media.inband import FREQS, CInbandDetector, PyInbandDetector, py_goertzel
from pbx.media.tones import DTMF_FREQS, amplitude
from pbx.rtp.dtmf import (
    EVENT_CODES,
    MAX_DURATION,
    DigitBegin,
    DigitEnd,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    parse_events,
)

DIGITS = "0123456789*#ABCD"

# ------------------------------------------------------------------------------- RFC 4733 wire


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_event_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end, volume, duration)
    data = ev.build()
    assert len(data) == 4
    assert TelephoneEvent.parse(data) == ev


@given(st.binary(min_size=4, max_size=4))
def test_any_block_parses_and_rebuilds_without_r_bit(data: bytes) -> None:
    assert TelephoneEvent.parse(data).build() == data[:1] + bytes([data[1] & 0xBF]) + data[2:]


@given(st.binary(max_size=40))
def test_parse_events_only_raises_parse_error(data: bytes) -> None:
    try:
        events = parse_events(data)
    except ParseError:
        assert len(data) % 4 or not data
    else:
        assert b"".join(e.build() for e in events) == bytes(
            b if i % 4 != 1 else b & 0xBF for i, b in enumerate(data))


@given(st.binary(max_size=12), st.integers(0, 2**32 - 1), st.booleans(), st.integers(0, 0xFFFF))
def test_receiver_never_raises_on_garbage(data: bytes, ts: int, marker: bool, seq: int) -> None:
    rx = DtmfReceiver()
    for i in range(3):
        for ev in rx.feed(data, ts, marker, seq + i, i * 0.02):
            assert isinstance(ev, DigitBegin | DigitEnd)
    rx.poll(10.0)


# -------------------------------------------------------------------------------------- sender


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DIGITS), st.integers(0, 2**32 - 1), st.sampled_from([8000, 16000, 48000]),
       st.integers(0, 12000), st.integers(0, 63), st.sampled_from([10, 20, 30]))
def test_sender_invariants(digit: str, start: int, rate: int, duration_ms: int, volume: int,
                           ptime: int) -> None:
    packets = DtmfSender(digit, start, clock_rate=rate, duration_ms=duration_ms, volume=volume,
                         ptime_ms=ptime).packets()
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    total = rate * max(duration_ms, 40) // 1000
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert [e.end for e in events] == [False] * (len(events) - 3) + [True] * 3
    assert len({(p.timestamp, p.payload) for p in packets[-3:]}) == 1
    assert {e.event for e in events} == {EVENT_CODES[digit]}
    assert {e.volume for e in events} == {volume}
    # Tick k (1, 2, ...) covers min(k * step, total) units of the event. Segment k starts at
    # start + k * 0xFFFF; a running packet carries the elapsed time of its segment; a segment
    # closes (duration 0xFFFF) on the tick that would overflow it; the ends carry the total.
    step = rate * ptime // 1000
    first_end = len(packets) - 3
    for tick, (p, e) in enumerate(zip(packets, events, strict=True), start=1):
        elapsed = min(tick * step, total)
        offset = (p.timestamp - start) % 2**32
        assert offset % MAX_DURATION == 0
        if e.end:
            assert offset + e.duration == total
            assert 0 < e.duration <= MAX_DURATION
        elif e.duration == MAX_DURATION and offset + MAX_DURATION < elapsed:
            assert (packets[tick].timestamp - p.timestamp) % 2**32 == MAX_DURATION
        else:
            assert offset + e.duration == elapsed < total
    assert (first_end + 1) * step >= total  # the first end packet goes on the tick reaching it


# ------------------------------------------------------------------------------------ receiver


@dataclass
class Sent:
    index: int  # which event
    packet: DtmfPacket
    seq: int
    time: float


def transmit(digits: list[tuple[str, int, int]], rate: int = 8000) -> list[Sent]:
    """Packets of successive events (digit, duration ms, pause ms), one per 20 ms tick."""
    out: list[Sent] = []
    ts, tick = 123456, 0
    for index, (digit, duration, pause) in enumerate(digits):
        sender = DtmfSender(digit, ts, clock_rate=rate, duration_ms=duration)
        for packet in sender.packets():
            out.append(Sent(index, packet, (1000 + tick) % 65536, tick * 0.02))
            tick += 1
        ts = (ts + sender.total + rate * pause // 1000) % 2**32
        tick += pause // 20 + 1
    return out


events_strategy = st.lists(
    st.tuples(st.sampled_from(DIGITS), st.integers(40, 400), st.integers(40, 600)),
    min_size=1, max_size=6)


def deliver(received: list[Sent], rx: DtmfReceiver, arrival_gap: float = 0.0
            ) -> list[DigitBegin | DigitEnd]:
    """Feed packets in the given order; poll before each like the engine's timer would."""
    events: list[DigitBegin | DigitEnd] = []
    now = 0.0
    for s in received:
        now = max(now, s.time + arrival_gap)
        events += rx.poll(now)
        events += rx.feed(s.packet.payload, s.packet.timestamp, s.packet.marker, s.seq, now)
    events += rx.poll(now + 10.0)
    return events


def check_exactly_once(events: list[DigitBegin | DigitEnd], digits: list[tuple[str, int, int]]
                       ) -> None:
    expected = [d for d, _, _ in digits]
    assert [e.digit for e in events if isinstance(e, DigitBegin)] == expected
    assert [e.digit for e in events if isinstance(e, DigitEnd)] == expected
    # Each end follows its own begin: the events alternate begin/end.
    assert [type(e) for e in events] == [DigitBegin, DigitEnd] * len(expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.data())
def test_any_loss_keeping_one_packet_yields_each_digit_once(
        digits: list[tuple[str, int, int]], data: st.DataObject) -> None:
    sent = transmit(digits)
    keep = data.draw(st.lists(st.booleans(), min_size=len(sent), max_size=len(sent)))
    for index in range(len(digits)):  # at least one packet of every event survives
        mine = [i for i, s in enumerate(sent) if s.index == index]
        if not any(keep[i] for i in mine):
            keep[data.draw(st.sampled_from(mine))] = True
    received = [s for s, k in zip(sent, keep, strict=True) if k]
    events = deliver(received, DtmfReceiver(timeout=5.0))  # no event times out early
    check_exactly_once(events, digits)
    # When an end packet arrived, the reported duration is the sent one.
    ends = [e for e in events if isinstance(e, DigitEnd)]
    for index, (_, duration, _) in enumerate(digits):
        if any(s.index == index and s.packet.end for s in received):
            assert ends[index].duration_ms == max(duration, 40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.data())
def test_duplication_and_reordering_within_events(
        digits: list[tuple[str, int, int]], data: st.DataObject) -> None:
    sent = transmit(digits)
    received: list[Sent] = []
    for index in range(len(digits)):
        mine = [s for s in sent if s.index == index]
        keep = data.draw(st.lists(st.booleans(), min_size=len(mine), max_size=len(mine)))
        mine = [s for s, k in zip(mine, keep, strict=True) if k] or mine[:1]
        mine += data.draw(st.lists(st.sampled_from(mine), max_size=4))  # duplicates
        received += data.draw(st.permutations(mine))
    rx = DtmfReceiver()
    events = deliver(received, rx, arrival_gap=0.0)
    check_exactly_once(events, digits)


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(1, 3))
def test_redundant_sending_is_idempotent(digits: list[tuple[str, int, int]], copies: int) -> None:
    sent = transmit(digits)
    once = deliver(sent, DtmfReceiver())
    many = deliver([s for s in sent for _ in range(copies)], DtmfReceiver())
    assert many == once
    check_exactly_once(once, digits)
    assert [e.duration_ms for e in once if isinstance(e, DigitEnd)] == [
        max(d, 40) for _, d, _ in digits]


# ------------------------------------------------------------------ in-band: C kernel == twin


def c_detector(rate: int = 8000) -> CInbandDetector:
    return CInbandDetector(rate, ffi=_dsp.ffi, lib=_dsp.lib)


def assert_same_run(pcm: np.ndarray, sizes: list[int], rate: int = 8000) -> str:
    py, c = PyInbandDetector(rate), c_detector(rate)
    out_py: list[str] = []
    out_c: list[str] = []
    pos = 0
    i = 0
    while pos < len(pcm):
        size = sizes[i % len(sizes)]
        frame = pcm[pos : pos + size]
        pos += size
        i += 1
        out_py += py.feed(frame, 0.0)
        out_c += c.feed(frame, 0.0)
        assert out_py == out_c
        assert py.windows == c.windows
        assert py.last_hit == c.last_hit
        assert py.digit == c.digit
        if py.windows:
            np.testing.assert_allclose(py.last_energy, c.last_energy, rtol=1e-9, atol=1e-3)
            assert py.last_total == c.last_total  # integer sums: exact in both
    return "".join(out_py)


int16s = st.integers(-32768, 32767)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(int16s, max_size=400), max_size=12))
def test_c_equals_python_on_random_frames(frames: list[list[int]]) -> None:
    pcm = np.array([v for f in frames for v in f], dtype=np.int16)
    sizes = [max(len(f), 1) for f in frames] or [160]
    assert_same_run(pcm, sizes)
    assert_same_windows(pcm)


@settings(max_examples=80, deadline=None)
@given(st.lists(int16s, min_size=204, max_size=204), st.sampled_from([8000, 16000, 48000]))
def test_raw_goertzel_energies_agree(samples: list[int], rate: int) -> None:
    py, c = PyInbandDetector(rate), c_detector(rate)
    x = np.resize(np.array(samples, dtype=np.int16), py.win)
    e_py, t_py = py.energies(x)
    e_c, t_c = c.energies(x)
    np.testing.assert_allclose(e_py, e_c, rtol=1e-9, atol=1e-3)
    assert t_py[0] == t_c[0] == float(np.sum(x.astype(np.float64) ** 2))
    # The textbook recursion agrees with both.
    ref = [py_goertzel(x, f, rate) for f in FREQS]
    np.testing.assert_allclose(e_py[0], ref, rtol=1e-9, atol=1e-3)
    assert py.classify(e_py[0], t_py[0]) == c.classify(e_py[0], t_py[0])


def assert_same_windows(pcm: np.ndarray, rate: int = 8000) -> None:
    """Energies and the classification of every window agree between the twins."""
    py, c = PyInbandDetector(rate), c_detector(rate)
    if len(pcm) < py.win:
        return
    windows = np.lib.stride_tricks.sliding_window_view(pcm, py.win)[:: py.hop]
    e_py, t_py = py.energies(windows)
    e_c, t_c = c.energies(windows)
    np.testing.assert_allclose(e_py, e_c, rtol=1e-9, atol=1e-3)
    assert np.array_equal(t_py, t_c)
    assert [py.classify(e, t) for e, t in zip(e_py, t_py, strict=True)] == [
        c.classify(e, t) for e, t in zip(e_c, t_c, strict=True)]


# Draw often near the thresholds (level -36 dBm0, twist -8 / +4 dB, frequency +-2..3.5 %).
levels = st.one_of(st.floats(-42.0, -3.0), st.floats(-38.0, -34.0))
twists = st.one_of(st.floats(-11.0, 7.0), st.floats(-9.5, -6.5), st.floats(2.5, 5.5))
deviations = st.one_of(st.floats(-0.04, 0.04), st.floats(0.015, 0.035).map(lambda d: -d),
                       st.floats(0.015, 0.035))


@settings(max_examples=60, deadline=None)
@given(
    digits=st.text(alphabet=DIGITS, min_size=1, max_size=4),
    level=levels,
    twist=twists,
    deviation=deviations,
    duration=st.integers(10, 120),
    gap=st.integers(10, 100),
    snr=st.floats(0.0, 40.0),
    frame=st.sampled_from([1, 80, 160, 333]),
    seed=st.integers(0, 2**32 - 1),
)
def test_c_equals_python_on_noisy_tones(digits: str, level: float, twist: float,
                                        deviation: float, duration: int, gap: int, snr: float,
                                        frame: int, seed: int) -> None:
    rate = 8000
    rng = np.random.default_rng(seed)
    parts = [np.zeros(rng.integers(0, 300))]
    for d in digits:
        n = np.arange(duration * rate // 1000)
        low, high = (f * (1 + deviation) for f in DTMF_FREQS[d])
        parts.append(amplitude(level) * np.sin(2 * np.pi * low * n / rate + rng.uniform(0, 6))
                     + amplitude(level + twist) * np.sin(2 * np.pi * high * n / rate))
        parts.append(np.zeros(gap * rate // 1000))
    x = np.concatenate(parts)
    x += rng.normal(0.0, amplitude(level) / 10 ** (snr / 20), len(x))
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    assert_same_windows(pcm)
    found = assert_same_run(pcm, [frame])
    assert set(found) <= set(digits)
