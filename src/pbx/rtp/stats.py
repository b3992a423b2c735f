"""RTP receiver and sender statistics (RFC 3550 §6.4, appendix A.3 and A.8) and RTT (§6.4.1).

``ReceiverStats`` follows one source: sequence validation and loss (``SequenceTracker``),
interarrival jitter (``JitterEstimator``, integer arithmetic as in A.8 so the C twin
``pbx_rtp_jitter_update`` agrees exactly), and the LSR/DLSR of the last SR it sent, all of which
``report_block(now)`` turns into a report block. ``SenderStats`` counts what we send and makes SRs.
``now`` is float seconds on any monotonic clock; NTP timestamps are made from ``now +
ntp_offset``, so RTT only needs the same offset on both sides of the computation. Malformed
packets never reach these classes: the caller counts what ``parse_rtp`` rejects.
"""

from __future__ import annotations

from collections.abc import Iterable

from pbx.rtp.packet import RtpPacket
from pbx.rtp.rtcp import (
    ReportBlock,
    SenderReport,
    compact_from_seconds,
    ntp_compact,
    ntp_from_time,
)
from pbx.rtp.seq import MIN_SEQUENTIAL, SequenceTracker

__all__ = ["JitterEstimator", "ReceiverStats", "SenderStats", "rtt_from_report_block"]

_U32 = 0xFFFFFFFF
# A, LSR and DLSR are each rounded to 1/65536 s, so a true RTT of ~0 can come out 1-2 units
# negative; more than that means the report is not about our SR timeline.
_RTT_SLACK = 2


def _signed32(value: int) -> int:
    return ((value + 0x80000000) & _U32) - 0x80000000


class JitterEstimator:
    """A.8 interarrival jitter, ``J += (|D| - J) / 16``, kept as 16 * J in an integer."""

    __slots__ = ("_jitter_q4", "_started", "_transit")

    def __init__(self) -> None:
        self._transit = 0
        self._started = False
        self._jitter_q4 = 0

    def update(self, arrival: int, timestamp: int) -> int:
        """Feed one packet (arrival time and RTP timestamp in the same units, mod 2**32);
        returns ``jitter``."""
        transit = (arrival - timestamp) & _U32
        if self._started:
            d = abs(_signed32(transit - self._transit))
            self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)
        else:
            self._started = True
        self._transit = transit
        return self._jitter_q4 >> 4

    @property
    def jitter(self) -> int:
        """Jitter in RTP timestamp units, as a report block carries it."""
        return self._jitter_q4 >> 4

    @property
    def jitter_q4(self) -> int:
        """Sixteen times the jitter (the estimator's exact state)."""
        return self._jitter_q4


class ReceiverStats:
    """Reception statistics about one source (SSRC) at ``clock_rate`` Hz."""

    __slots__ = ("_clock_rate", "_jitter", "_last_sr_time", "_lsr", "_seq", "ssrc")

    def __init__(self, ssrc: int, clock_rate: int, *,
                 min_sequential: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.ssrc = ssrc
        self._clock_rate = clock_rate
        self._seq = SequenceTracker(min_sequential)
        self._jitter = JitterEstimator()
        self._lsr = 0
        self._last_sr_time: float | None = None

    def on_packet(self, sequence: int, timestamp: int, now: float) -> int | None:
        """Account one packet arriving at ``now``; its extended sequence number, or ``None``
        while the source is on probation or after an unconfirmed jump (see ``SequenceTracker``).
        Jitter is updated for every counted packet."""
        ext = self._seq.update(sequence)
        if ext is not None:
            arrival = round(now * self._clock_rate) & _U32
            self._jitter.update(arrival, timestamp)
        return ext

    def on_rtp(self, packet: RtpPacket, now: float) -> int | None:
        """``on_packet`` for a parsed packet."""
        return self.on_packet(packet.sequence, packet.timestamp, now)

    def on_sender_report(self, sr: SenderReport, now: float) -> None:
        """Remember an SR from this source, for LSR/DLSR in our next report block."""
        self._lsr = ntp_compact(sr.ntp_timestamp)
        self._last_sr_time = now

    def report_block(self, now: float) -> ReportBlock:
        """The report block about this source at ``now``; starts a new loss interval."""
        fraction, cumulative, ext_highest = self._seq.report()
        dlsr = 0
        if self._last_sr_time is not None:
            dlsr = compact_from_seconds(max(0.0, now - self._last_sr_time))
        return ReportBlock(self.ssrc, fraction, cumulative, ext_highest,
                           min(self._jitter.jitter, _U32), self._lsr, dlsr)

    @property
    def sequence(self) -> SequenceTracker:
        return self._seq

    @property
    def clock_rate(self) -> int:
        return self._clock_rate

    @property
    def received(self) -> int:
        return self._seq.received

    @property
    def expected(self) -> int:
        return self._seq.expected

    @property
    def lost(self) -> int:
        """Cumulative packets lost (expected - received, unclamped)."""
        return self._seq.lost

    @property
    def duplicates(self) -> int:
        return self._seq.duplicates

    @property
    def jitter(self) -> float:
        """Interarrival jitter in RTP timestamp units."""
        return self._jitter.jitter_q4 / 16

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self._clock_rate


class SenderStats:
    """What we sent on one SSRC, for our SRs; ``ntp_offset`` maps ``now`` to wall-clock time."""

    __slots__ = ("_clock_rate", "_last_sent", "_last_timestamp", "ntp_offset", "octet_count",
                 "packet_count", "ssrc")

    def __init__(self, ssrc: int, clock_rate: int, *, ntp_offset: float = 0.0,
                 initial_timestamp: int = 0) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.ssrc = ssrc
        self._clock_rate = clock_rate
        self.ntp_offset = ntp_offset
        self.packet_count = 0
        self.octet_count = 0
        self._last_timestamp = initial_timestamp & _U32
        self._last_sent: float | None = None

    def on_sent(self, timestamp: int, payload_size: int, now: float) -> None:
        """Account one RTP packet sent at ``now`` (payload octets, header and padding excluded)."""
        self.packet_count = (self.packet_count + 1) & _U32
        self.octet_count = (self.octet_count + payload_size) & _U32
        self._last_timestamp = timestamp & _U32
        self._last_sent = now

    def on_rtp(self, packet: RtpPacket, now: float) -> None:
        """``on_sent`` for a packet we built."""
        self.on_sent(packet.timestamp, len(packet.payload), now)

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp corresponding to ``now``: the last one sent, advanced by the time
        since at the clock rate."""
        if self._last_sent is None:
            return self._last_timestamp
        elapsed = round((now - self._last_sent) * self._clock_rate)
        return (self._last_timestamp + elapsed) & _U32

    def sender_report(self, now: float, reports: Iterable[ReportBlock] = ()) -> SenderReport:
        """An SR for ``now`` carrying ``reports``."""
        return SenderReport(self.ssrc, ntp_from_time(now + self.ntp_offset),
                            self.rtp_timestamp_at(now), self.packet_count, self.octet_count,
                            tuple(reports))

    def rtt(self, block: ReportBlock, now: float) -> float | None:
        """Round-trip time from a report block about our SSRC (see ``rtt_from_report_block``)."""
        return rtt_from_report_block(block, now, ntp_offset=self.ntp_offset)

    @property
    def has_sent(self) -> bool:
        return self._last_sent is not None


def rtt_from_report_block(block: ReportBlock, now: float, *,
                          ntp_offset: float = 0.0) -> float | None:
    """Round-trip time in seconds from a report block received at ``now`` (RFC 3550 §6.4.1:
    arrival - LSR - DLSR in NTP short format). ``None`` when the block carries no LSR (the peer
    has not had an SR from us) or the result is negative beyond rounding."""
    if block.lsr == 0:
        return None
    arrival = ntp_compact(ntp_from_time(now + ntp_offset))
    rtt = _signed32(arrival - block.lsr - block.dlsr)
    if rtt < -_RTT_SLACK:
        return None
    return max(0, rtt) / 65536.0
