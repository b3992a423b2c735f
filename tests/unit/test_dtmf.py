"""RFC 4733 telephone-events: payload, sender packet sequence, receiver de-duplication."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pbx.errors import ParseError
from pbx.rtp.dtmf import (
    EVENT_CODES,
    MAX_DURATION,
    DigitBegin,
    DigitEnd,
    DtmfEvent,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    parse_events,
)


def expected(ts: int, durations: list[int], end: int, *, event: int = 5, volume: int = 10,
             first_marker: bool = True) -> list[tuple[bool, int, bytes]]:
    """(marker, timestamp, payload) of a one-segment event: running durations, then 3 ends."""
    out = []
    for i, d in enumerate(durations):
        out.append((first_marker and i == 0, ts, bytes([event, volume]) + d.to_bytes(2, "big")))
    for _ in range(3):
        out.append((False, ts, bytes([event, 0x80 | volume]) + end.to_bytes(2, "big")))
    return out


def wire(packets: list[DtmfPacket]) -> list[tuple[bool, int, bytes]]:
    return [(p.marker, p.timestamp, p.payload) for p in packets]


# ------------------------------------------------------------------------------ payload format


def test_build_exact_bytes() -> None:
    assert TelephoneEvent(5, True, 10, 800).build() == b"\x05\x8a\x03\x20"
    assert TelephoneEvent(11, False, 63, 0xFFFF).build() == b"\x0b\x3f\xff\xff"
    assert TelephoneEvent(255, True, 0, 0).build() == b"\xff\x80\x00\x00"


def test_parse_fields() -> None:
    ev = TelephoneEvent.parse(b"\x0b\xca\x01\x40")  # E and R set, volume 10
    assert ev == TelephoneEvent(event=11, end=True, volume=10, duration=320)
    assert ev.digit == "#"
    assert TelephoneEvent.parse(ev.build()) == ev
    assert ev.build() == b"\x0b\x8a\x01\x40"  # R is sent as zero


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_parse_bad_length(data: bytes) -> None:
    with pytest.raises(ParseError):
        TelephoneEvent.parse(data)


def test_parse_events_multiple_blocks() -> None:
    blocks = [TelephoneEvent(1, True, 10, 800), TelephoneEvent(2, False, 12, 160)]
    assert parse_events(b"".join(b.build() for b in blocks)) == blocks
    for bad in (b"", b"\x00" * 6, b"\x00" * 9):
        with pytest.raises(ParseError):
            parse_events(bad)


@pytest.mark.parametrize("kwargs", [{"event": 256}, {"event": -1}, {"event": 1, "volume": 64},
                                    {"event": 1, "duration": 0x10000}])
def test_field_ranges(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TelephoneEvent(**kwargs)  # type: ignore[arg-type]


def test_event_codes() -> None:
    assert [EVENT_CODES[c] for c in "0123456789*#ABCD!"] == list(range(17))
    assert TelephoneEvent(16).digit == "!"
    assert TelephoneEvent(70).digit is None


# ------------------------------------------------------------------------------------- sender


def test_sender_100ms_exact_sequence() -> None:
    sender = DtmfSender("5", timestamp=1000)
    assert wire(sender.packets()) == expected(1000, [160, 320, 480, 640], 800)
    assert sender.done
    assert sender.next_packet() is None


def test_sender_pulled_one_packet_per_tick() -> None:
    sender = DtmfSender("#", timestamp=0, duration_ms=60, volume=7)
    got = []
    while not sender.done:
        packet = sender.next_packet()
        assert packet is not None
        got.append(packet)
    assert wire(got) == expected(0, [160, 320], 480, event=11, volume=7)
    assert [p.end for p in got] == [False, False, True, True, True]


def test_sender_minimum_duration_is_40ms() -> None:
    assert wire(DtmfSender("1", 7, duration_ms=10).packets()) == expected(7, [160], 320, event=1)


def test_sender_duration_not_a_multiple_of_ptime() -> None:
    packets = DtmfSender("9", 0, duration_ms=130).packets()
    assert wire(packets) == expected(0, [160, 320, 480, 640, 800, 960], 1040, event=9)


def test_sender_wideband_clock_and_ptime() -> None:
    packets = DtmfSender("A", 50, clock_rate=16000, duration_ms=100, ptime_ms=30).packets()
    assert wire(packets) == expected(50, [480, 960, 1440], 1600, event=12)


def test_sender_timestamp_wraps() -> None:
    packets = DtmfSender("0", 2**32 + 5).packets()
    assert {p.timestamp for p in packets} == {5}


def test_sender_rejects_bad_input() -> None:
    for bad in ("x", "12", ""):
        with pytest.raises(ValueError):
            DtmfSender(bad, 0)
    with pytest.raises(ValueError):
        DtmfSender("1", 0, volume=64)
    assert DtmfSender(16, 0).event == 16  # hook flash by code
    assert DtmfSender("b", 0).event == 13


def test_sender_long_event_is_segmented() -> None:
    start = 2**32 - 1000  # the second segment's timestamp wraps
    packets = DtmfSender("7", start, duration_ms=9000).packets()  # 72,000 units
    ev = [TelephoneEvent.parse(p.payload) for p in packets]
    # Segment 1: 409 running packets (160 .. 65,440), then the close packet at 0xFFFF.
    assert [e.duration for e in ev[:410]] == [160 * k for k in range(1, 410)] + [MAX_DURATION]
    assert {p.timestamp for p in packets[:410]} == {start}
    # Segment 2 starts 0xFFFF later, no marker, its duration counted from its own start.
    seg2 = (start + MAX_DURATION) % 2**32
    assert {p.timestamp for p in packets[410:]} == {seg2}
    assert ev[410].duration == 160 * 411 - MAX_DURATION
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert [e.end for e in ev] == [False] * (len(ev) - 3) + [True] * 3
    assert {e.duration for e in ev[-3:]} == {72000 - MAX_DURATION}
    assert all(a.duration < b.duration for a, b in pairwise(ev[410:-3]))
    # One packet per 20 ms tick (the close packet takes a tick), then two more end packets.
    assert len(packets) == 72000 // 160 + 2


def test_sender_event_of_exactly_max_duration_has_one_segment() -> None:
    packets = DtmfSender("3", 0, clock_rate=8000, duration_ms=8192).packets()  # 65,536 units
    assert TelephoneEvent.parse(packets[-4].payload).duration == MAX_DURATION  # segment closed
    assert [(p.timestamp, TelephoneEvent.parse(p.payload).duration) for p in packets[-3:]] == [
        (MAX_DURATION, 1)] * 3
    packets = DtmfSender("3", 0, clock_rate=1000, duration_ms=MAX_DURATION).packets()
    assert {p.timestamp for p in packets} == {0}
    assert TelephoneEvent.parse(packets[-1].payload).duration == MAX_DURATION


# ----------------------------------------------------------------------------------- receiver


def feed_all(rx: DtmfReceiver, packets: list[DtmfPacket], now: float = 0.0, seq: int = 0,
             step: float = 0.02) -> list[list[DtmfEvent]]:
    out = []
    for i, p in enumerate(packets):
        out.append(list(rx.feed(p.payload, p.timestamp, p.marker, seq + i, now + i * step)))
    return out


def test_receiver_reports_begin_and_end_once() -> None:
    rx = DtmfReceiver()
    got = feed_all(rx, DtmfSender("5", 1000, volume=12).packets())
    assert got == [[DigitBegin("5", 1000)], [], [], [], [DigitEnd("5", 100, 12, 1000)], [], []]
    assert rx.duplicates == 2
    assert rx.deadline() is None


def test_receiver_duplicated_packets() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("5", 1000).packets()
    doubled = [p for p in packets for _ in range(2)]
    events = [e for batch in feed_all(rx, doubled) for e in batch]
    assert events == [DigitBegin("5", 1000), DigitEnd("5", 100, 10, 1000)]


def test_receiver_end_packets_lost_times_out() -> None:
    rx = DtmfReceiver(timeout=0.25)
    now = 10.0
    events = feed_all(rx, DtmfSender("8", 0).packets()[:4], now=now)
    assert [e for batch in events for e in batch] == [DigitBegin("8", 0)]
    last = now + 3 * 0.02
    assert rx.deadline() == pytest.approx(last + 0.25)
    assert rx.poll(last + 0.2) == []
    assert rx.poll(last + 0.25) == [DigitEnd("8", 80, 10, 0)]
    assert rx.poll(last + 5) == []
    assert rx.deadline() is None
    # A late end packet of that event is a duplicate, not a new digit.
    late = DtmfSender("8", 0).packets()[-1]
    assert rx.feed(late.payload, late.timestamp, False, 9, last + 6) == []


def test_receiver_new_timestamp_ends_open_event() -> None:
    rx = DtmfReceiver()
    first = DtmfSender("1", 0).packets()[:2]
    second = DtmfSender("2", 1600).packets()
    events = [e for batch in feed_all(rx, first + second) for e in batch]
    assert events == [DigitBegin("1", 0), DigitEnd("1", 40, 10, 0), DigitBegin("2", 1600),
                      DigitEnd("2", 100, 10, 1600)]


def test_receiver_only_end_packet_arrives() -> None:
    rx = DtmfReceiver()
    end = DtmfSender("*", 320).packets()[-1]
    assert rx.feed(end.payload, end.timestamp, end.marker, 1, 0.0) == [
        DigitBegin("*", 320), DigitEnd("*", 100, 10, 320)]


def test_receiver_reordered_end_first() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("4", 0).packets()
    order = [4, 0, 2, 1, 3, 6, 5]
    events = [e for i in order for e in rx.feed(packets[i].payload, packets[i].timestamp,
                                                packets[i].marker, i, 0.01 * i)]
    assert events == [DigitBegin("4", 0), DigitEnd("4", 100, 10, 0)]
    assert rx.reordered > 0


def test_receiver_stale_packet_of_older_event_ignored() -> None:
    rx = DtmfReceiver()
    old = DtmfSender("1", 0).packets()
    new = DtmfSender("2", 2000).packets()
    assert rx.feed(new[0].payload, 2000, True, 10, 0.0) == [DigitBegin("2", 2000)]
    assert rx.feed(old[0].payload, 0, True, 1, 0.01) == []
    assert rx.stale == 1


def test_receiver_same_digit_twice() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("5", 0).packets() + DtmfSender("5", 1600).packets()
    events = [e for batch in feed_all(rx, packets) for e in batch]
    assert events == [DigitBegin("5", 0), DigitEnd("5", 100, 10, 0), DigitBegin("5", 1600),
                      DigitEnd("5", 100, 10, 1600)]


def test_receiver_malformed_and_non_dtmf() -> None:
    rx = DtmfReceiver()
    assert rx.feed(b"\x01\x02\x03", 0, True, 0, 0.0) == []
    assert rx.malformed == 1
    assert rx.feed(TelephoneEvent(70, False, 10, 160).build(), 0, True, 1, 0.0) == []
    assert rx.ignored == 1
    assert rx.deadline() is None


def test_receiver_uses_last_block_of_multi_event_payload() -> None:
    rx = DtmfReceiver()
    payload = TelephoneEvent(1, True, 10, 800).build() + TelephoneEvent(2, False, 10, 160).build()
    assert rx.feed(payload, 5000, True, 0, 0.0) == [DigitBegin("2", 5000)]


def test_receiver_long_event_one_digit() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("7", 2**32 - 1000, duration_ms=9000).packets()
    events = [e for batch in feed_all(rx, packets) for e in batch]
    assert events == [DigitBegin("7", 2**32 - 1000), DigitEnd("7", 9000, 10, 2**32 - 1000)]


def test_receiver_long_event_segment_close_lost() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("7", 0, duration_ms=9000).packets()
    kept = packets[:400] + packets[411:]  # lose the end of segment 1 and the first of segment 2
    events = [e for batch in feed_all(rx, kept) for e in batch]
    assert events == [DigitBegin("7", 0), DigitEnd("7", 9000, 10, 0)]


def test_receiver_timestamp_wrap_between_events() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("1", 2**32 - 800).packets() + DtmfSender("2", 800).packets()
    events = [e for batch in feed_all(rx, packets) for e in batch]
    assert [type(e).__name__ + e.digit for e in events] == [
        "DigitBegin1", "DigitEnd1", "DigitBegin2", "DigitEnd2"]


def test_receiver_sender_clock_restart_is_a_new_event() -> None:
    rx = DtmfReceiver()
    far = DtmfSender("1", 1_000_000).packets()
    near = DtmfSender("2", 100).packets()  # ~125 s earlier: a restart, not a late packet
    events = [e for batch in feed_all(rx, far + near) for e in batch]
    assert [e.digit for e in events] == ["1", "1", "2", "2"]


def test_receiver_reset() -> None:
    rx = DtmfReceiver()
    packets = DtmfSender("3", 0).packets()
    feed_all(rx, packets)
    rx.reset()
    events = [e for batch in feed_all(rx, packets) for e in batch]
    assert events == [DigitBegin("3", 0), DigitEnd("3", 100, 10, 0)]
