"""RFC 4733 telephone-events (DTMF over RTP): payload, sender and de-duplicating receiver.

Sans-I/O. The payload is four bytes per event (RFC 4733 §2.3)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |     event     |E|R| volume    |          duration             |

``volume`` is the power level of the tone in -dBm0 (0..63), ``duration`` the length of the event
so far in RTP timestamp units, counted from the RTP timestamp of the packet, which stays at the
event start for every packet of the event (§2.5.1.1).

The sender (:class:`DtmfSender`) is pulled by the media clock: one call of
:meth:`DtmfSender.next_packet` per 20 ms tick returns the packet to send on that tick (payload,
marker bit and RTP timestamp; the caller adds the RTP header with its own sequence number and
SSRC) or ``None`` once the event and its three redundant end packets are out.

The receiver (:class:`DtmfReceiver`) turns the packets of one RTP stream into exactly one
:class:`DigitBegin` and one :class:`DigitEnd` per event, whatever the duplication, reordering or
loss, as long as one packet of the event arrives.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pbx.errors import ParseError

__all__ = [
    "CODE_EVENTS",
    "EVENT_CODES",
    "FLASH",
    "MAX_DURATION",
    "DigitBegin",
    "DigitEnd",
    "DtmfEvent",
    "DtmfPacket",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "parse_events",
]

FLASH = "!"
"""The character this module uses for the hook-flash event (code 16)."""

EVENT_CODES: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
    FLASH: 16,
}
"""Digit character -> RFC 4733 event code (§3.2, Table 1)."""

CODE_EVENTS: dict[int, str] = {code: digit for digit, code in EVENT_CODES.items()}
"""RFC 4733 event code -> digit character."""

MAX_DURATION = 0xFFFF
"""Largest duration one packet (one segment of a long event) can carry."""

_TS_MOD = 1 << 32
_SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One 4-byte RFC 4733 event block."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code out of range: {self.event}")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume out of range: {self.volume}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"duration out of range: {self.duration}")

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse exactly one event block; ParseError unless ``data`` is 4 bytes long."""
        if len(data) != 4:
            raise ParseError(f"telephone-event payload must be 4 bytes, got {len(data)}",
                             data=bytes(data))
        return cls(event=data[0], end=bool(data[1] & 0x80), volume=data[1] & 0x3F,
                   duration=int.from_bytes(data[2:4], "big"))

    def build(self) -> bytes:
        """The 4-byte wire form (the reserved R bit is sent as zero)."""
        return bytes((self.event, (0x80 if self.end else 0) | self.volume)) + \
            self.duration.to_bytes(2, "big")

    @property
    def digit(self) -> str | None:
        """The DTMF character of this event, or None for a non-DTMF event code."""
        return CODE_EVENTS.get(self.event)


def parse_events(data: bytes) -> list[TelephoneEvent]:
    """Parse a payload of one or more event blocks (RFC 4733 §2.5.1.5 allows several)."""
    if not data or len(data) % 4:
        raise ParseError(f"telephone-event payload length {len(data)} is not a multiple of 4",
                         data=bytes(data))
    return [TelephoneEvent.parse(data[i : i + 4]) for i in range(0, len(data), 4)]


# --------------------------------------------------------------------------------------- sender


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One telephone-event packet to send: the caller wraps it in an RTP header."""

    payload: bytes
    marker: bool
    timestamp: int
    """RTP timestamp: the start of the event (of the segment, for long events)."""
    end: bool


class DtmfSender:
    """Produces the RFC 4733 packets of one event, one per media tick.

    The event starts at RTP ``timestamp`` (in ``clock_rate`` units). Tick ``k`` (0, 1, ...)
    covers the first ``(k + 1) * ptime`` of the event; the packets of all ticks but the last carry
    that running duration, the first one with the marker bit. When the full duration is reached
    the end packet (E bit, final duration) is sent on three successive ticks (§2.5.1.4). Events
    longer than 0xFFFF units are cut into segments (§2.5.1.3): a segment closes with a packet of
    duration 0xFFFF, and the next one starts at timestamp + 0xFFFF, without marker bit, with its
    duration counted from its own start; only the last segment has end packets.

    ``duration_ms`` is raised to 40 ms (the shortest digit a receiver must accept) when shorter.
    """

    MIN_DURATION_MS = 40
    END_PACKETS = 3

    def __init__(self, digit: str | int, timestamp: int, *, clock_rate: int = 8000,
                 duration_ms: int = 100, volume: int = 10, ptime_ms: int = 20) -> None:
        if isinstance(digit, int):
            self.event = digit
        else:
            try:
                self.event = EVENT_CODES[digit.upper()]
            except KeyError:
                raise ValueError(f"not a DTMF digit: {digit!r}") from None
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code out of range: {self.event}")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume out of range: {volume}")
        if clock_rate <= 0 or ptime_ms <= 0:
            raise ValueError("clock_rate and ptime_ms must be positive")
        self.volume = volume
        self.start = timestamp % _TS_MOD
        self.step = clock_rate * ptime_ms // 1000
        self.total = clock_rate * max(duration_ms, self.MIN_DURATION_MS) // 1000
        self._tick = 0
        self._segment = 0  # index of the current segment (of MAX_DURATION units each)
        self._ends_sent = 0

    @property
    def done(self) -> bool:
        """True once every packet of the event has been returned."""
        return self._ends_sent >= self.END_PACKETS

    def next_packet(self) -> DtmfPacket | None:
        """The packet for the next tick, or None when the event is finished."""
        if self.done:
            return None
        elapsed = min((self._tick + 1) * self.step, self.total)
        self._tick += 1
        base = self._segment * MAX_DURATION
        ts = (self.start + base) % _TS_MOD
        if elapsed - base > MAX_DURATION:
            # Close this segment at the maximum duration; the next tick opens the next one.
            self._segment += 1
            return self._packet(ts, MAX_DURATION, end=False)
        if elapsed < self.total:
            return self._packet(ts, elapsed - base, end=False)
        self._ends_sent += 1
        return self._packet(ts, self.total - base, end=True)

    def packets(self) -> list[DtmfPacket]:
        """Every remaining packet, in sending order (one per tick)."""
        out: list[DtmfPacket] = []
        while (packet := self.next_packet()) is not None:
            out.append(packet)
        return out

    def _packet(self, ts: int, duration: int, *, end: bool) -> DtmfPacket:
        first = self._tick == 1
        payload = TelephoneEvent(self.event, end, self.volume, duration).build()
        return DtmfPacket(payload=payload, marker=first, timestamp=ts, end=end)


# ------------------------------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class DigitBegin:
    """The first packet of a new event arrived."""

    digit: str
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class DigitEnd:
    """The event ended: by its end packet, by a newer event, or by the timeout."""

    digit: str
    duration_ms: int
    volume: int
    timestamp: int = 0


DtmfEvent = DigitBegin | DigitEnd


class _Open:
    """The event being received."""

    __slots__ = ("base", "digit", "duration", "last", "seg_ts", "start_ts", "volume")

    def __init__(self, digit: str, ts: int, volume: int, duration: int, now: float) -> None:
        self.digit = digit
        self.start_ts = ts
        self.seg_ts = ts
        self.base = 0  # units of the segments before seg_ts
        self.duration = duration
        self.volume = volume
        self.last = now


class DtmfReceiver:
    """De-duplicating RFC 4733 receiver for one RTP stream (one SSRC).

    Events are told apart by their RTP timestamp (§2.5.2.1). Feed every telephone-event packet
    with :meth:`feed`; call :meth:`poll` at :meth:`deadline` so an event whose end packets were
    all lost still ends ``timeout`` seconds after its last packet. A packet of a new timestamp
    ends the open event. Packets of finished events (redundant end packets, retransmissions,
    late duplicates) and packets older than the newest event are ignored. A continuation
    segment of a long event (same code, no marker, timestamp a multiple of 0xFFFF after the
    open segment) extends the open event. Non-DTMF event codes are counted and ignored. For a
    payload with several blocks the last one (the current event) is used.
    """

    HISTORY = 32
    """How many finished event timestamps are remembered for de-duplication."""

    def __init__(self, clock_rate: int = 8000, timeout: float = 0.25) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._open: _Open | None = None
        self._newest: int | None = None  # timestamp of the newest event or segment seen
        self._last_seq: int | None = None
        self._finished: deque[int] = deque(maxlen=self.HISTORY)
        self.malformed = 0
        self.ignored = 0
        self.duplicates = 0
        self.stale = 0
        self.reordered = 0

    def reset(self) -> None:
        """Forget everything (new SSRC); counters are kept."""
        self._open = None
        self._newest = None
        self._last_seq = None
        self._finished.clear()

    def deadline(self) -> float | None:
        """When :meth:`poll` must next be called, or None when no event is open."""
        return None if self._open is None else self._open.last + self.timeout

    def poll(self, now: float) -> list[DtmfEvent]:
        """End the open event if no packet came for ``timeout`` seconds."""
        ev = self._open
        if ev is not None and now >= ev.last + self.timeout:
            return [self._finish()]
        return []

    def feed(self, payload: bytes, timestamp: int, marker: bool, seq: int,
             now: float) -> list[DtmfEvent]:
        """Process one telephone-event packet; returns the digit events it causes."""
        try:
            block = parse_events(payload)[-1]
        except ParseError:
            self.malformed += 1
            return []
        ts = timestamp % _TS_MOD
        if self._last_seq is not None and 0 < (self._last_seq - seq) % _SEQ_MOD < 0x8000:
            self.reordered += 1
        else:
            self._last_seq = seq % _SEQ_MOD
        digit = block.digit
        if digit is None:
            self.ignored += 1
            return []
        if ts in self._finished:
            self.duplicates += 1
            return []
        out: list[DtmfEvent] = []
        ev = self._open
        if ev is not None and ts == ev.seg_ts:
            self._update(ev, block, now)
        elif ev is not None and self._continues(ev, block, ts, marker):
            self._finished.append(ev.seg_ts)  # late packets of the old segment are duplicates
            ev.base += (ts - ev.seg_ts) % _TS_MOD
            ev.seg_ts = ts
            ev.duration = 0
            self._newest = ts
            self._update(ev, block, now)
        elif self._is_stale(ts):
            self.stale += 1
            return []
        else:
            if ev is not None:
                out.append(self._finish())
            ev = self._open = _Open(digit, ts, block.volume, block.duration, now)
            self._newest = ts
            out.append(DigitBegin(digit, ts))
        if block.end:
            out.append(self._finish())
        return out

    def _update(self, ev: _Open, block: TelephoneEvent, now: float) -> None:
        ev.duration = max(ev.duration, block.duration)
        ev.volume = block.volume
        ev.last = now

    def _continues(self, ev: _Open, block: TelephoneEvent, ts: int, marker: bool) -> bool:
        if marker or CODE_EVENTS.get(block.event) != ev.digit:
            return False
        delta = (ts - ev.seg_ts) % _TS_MOD
        return 0 < delta < 0x80000000 and delta % MAX_DURATION == 0

    def _is_stale(self, ts: int) -> bool:
        # Older than the newest event, but by less than ten seconds (a larger step backwards
        # is a sender that restarted its clock, not a late packet).
        if self._newest is None:
            return False
        behind = (self._newest - ts) % _TS_MOD
        return 0 < behind < 10 * self.clock_rate

    def _finish(self) -> DigitEnd:
        ev = self._open
        assert ev is not None
        self._open = None
        self._finished.append(ev.seg_ts)
        units = ev.base + ev.duration
        return DigitEnd(ev.digit, round(units * 1000 / self.clock_rate), ev.volume, ev.start_ts)
