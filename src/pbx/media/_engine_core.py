"""The media engine's per-packet decisions, in pure Python: the readable twin of cext/engine.c.

Three pieces, each mirroring one C function exactly so hypothesis can check they agree:

- ``rtp_check``: RTP version 2 header check (CSRC count, extension and padding lengths), RTCP
  recognised by packet type 192-223 (rtcp-mux, RFC 5761 section 4);
- ``RxState.verdict``: who may send to a stream (the negotiated peer; a new address only when
  latching is on and after N consecutive packets with one SSRC and consecutive sequence numbers);
- ``TxState.rewrite``: a relayed packet mapped into the outgoing leg's own SSRC, sequence and
  timestamp space by fixed offsets, re-anchored right after the last packet sent whenever the
  source changes (new SSRC, a sequence jump beyond RFC 3550's dropout/misorder limits, or a
  resync request after the peer changed), so the receiver sees one continuous stream;
- ``TxState.next``: the sequence number and timestamp of a packet the engine makes itself
  (terminated streams), one 20 ms step after the last one, or by the time that passed (with the
  marker bit) after relayed packets or a pause.

Sans-I/O: ``now`` is passed in. The python backend of the engine runs these on every packet.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from dataclasses import dataclass, fields

from pbx.rtp.stats import ReceiverStats

__all__ = [
    "ACCEPT",
    "DROP_PT",
    "DROP_SOURCE",
    "LATCHED",
    "MALFORMED",
    "MAX_PACKET",
    "RTCP",
    "RTP",
    "Counters",
    "RtcpInfo",
    "RxState",
    "TxState",
    "rtcp_info",
    "rtp_check",
]

RTP, MALFORMED, RTCP = 0, 1, 2
ACCEPT, LATCHED, DROP_SOURCE, DROP_PT = 0, 1, 2, 3

MAX_PACKET = 2048    # larger datagrams are dropped as malformed (the C receive buffer)
MAX_MISORDER = 100   # RFC 3550 A.1: older than this, or newer than MAX_DROPOUT, is a new source
MAX_DROPOUT = 3000
PAUSE = 0.25         # seconds between own packets that make a pause (marker, timestamp jump)
_TS_CAP = 10**18

_SEQ_TS_SSRC = struct.Struct("!HII")


def rtp_check(pkt: bytes | bytearray) -> int:
    """``RTP``, ``RTCP`` (a packet type 192-223 with a sane length) or ``MALFORMED``."""
    n = len(pkt)
    if n < 4 or pkt[0] >> 6 != 2:
        return MALFORMED
    if 192 <= pkt[1] <= 223:
        return RTCP if n >= 8 and n % 4 == 0 else MALFORMED
    if n < 12:
        return MALFORMED
    b0 = pkt[0]
    hlen = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if hlen + 4 > n:
            return MALFORMED
        hlen += 4 + 4 * ((pkt[hlen + 2] << 8) | pkt[hlen + 3])
    if hlen > n:
        return MALFORMED
    if b0 & 0x20:
        pad = pkt[n - 1]
        if pad == 0 or hlen + pad > n:
            return MALFORMED
    return RTP


class RxState:
    """Receive-side acceptance of one stream. Addresses are any hashable, compared by equality."""

    __slots__ = ("cand", "cand_count", "cand_seq", "cand_ssrc", "latch_n", "pt_allowed", "remote")

    def __init__(self) -> None:
        self.remote: Hashable | None = None
        self.latch_n = 0                     # 0: latching off
        self.pt_allowed: frozenset[int] | None = None  # None: any payload type
        self.cand: Hashable | None = None
        self.cand_ssrc = 0
        self.cand_seq = 0
        self.cand_count = 0

    def verdict(self, src: Hashable, ssrc: int, seq: int, pt: int) -> int:
        """``ACCEPT``, ``LATCHED`` (accepted; ``remote`` is now ``src``), ``DROP_SOURCE``, ``DROP_PT``."""
        if self.pt_allowed is not None and (pt & 0x7F) not in self.pt_allowed:
            return DROP_PT
        if src == self.remote and self.remote is not None:
            return ACCEPT
        if self.latch_n <= 0:
            return DROP_SOURCE
        if (self.cand_count > 0 and src == self.cand and ssrc == self.cand_ssrc
                and seq == (self.cand_seq + 1) & 0xFFFF):
            self.cand_count += 1
            self.cand_seq = seq
        else:
            self.cand = src
            self.cand_ssrc = ssrc
            self.cand_seq = seq
            self.cand_count = 1
        if self.cand_count >= self.latch_n:
            self.remote = self.cand
            self.cand_count = 0
            return LATCHED
        return DROP_SOURCE


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


class TxState:
    """Send-side sequence space of one stream (our SSRC, sequence and timestamp)."""

    __slots__ = ("clock_rate", "has_sent", "in_seq", "in_ssrc", "in_ts", "local", "resync",
                 "sent_at", "seq", "seq_off", "ssrc", "synced", "ts", "ts_off", "ts_step")

    def __init__(self, ssrc: int, seq0: int, ts0: int, clock_rate: int = 8000) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.clock_rate = clock_rate or 8000
        self.seq = (seq0 - 1) & 0xFFFF       # the first anchor maps the first packet to seq0, ts0
        self.ts = ts0 & 0xFFFFFFFF
        self.sent_at = 0.0
        self.has_sent = False
        self.synced = False
        self.resync = False
        self.in_ssrc = 0
        self.in_seq = 0
        self.in_ts = 0
        self.ts_step = self.clock_rate // 50
        self.seq_off = 0
        self.ts_off = 0
        self.local = False                   # the last packet sent was made by the engine

    def set_clock_rate(self, clock_rate: int) -> None:
        """A new clock rate (and a 20 ms default packet step) for later re-anchors."""
        if clock_rate and clock_rate != self.clock_rate:
            self.clock_rate = clock_rate
            self.ts_step = clock_rate // 50

    def rewrite(self, pkt: bytearray, now: float) -> None:
        """Map a valid RTP packet (at least 12 bytes) into this sequence space, in place."""
        in_seq, in_ts, in_ssrc = _SEQ_TS_SSRC.unpack_from(pkt, 2)
        same = False
        if self.synced and not self.resync and in_ssrc == self.in_ssrc:
            d = _s16(in_seq - self.in_seq)
            if -MAX_MISORDER <= d < MAX_DROPOUT:
                same = True
                if d > 0:
                    step = (in_ts - self.in_ts) & 0xFFFFFFFF
                    if d == 1 and 0 < step <= self.clock_rate:
                        self.ts_step = step
                    self.in_seq = in_seq
                    self.in_ts = in_ts
        if not same:
            gap = self._elapsed(now, self.ts_step) if self.has_sent else 0
            self.seq_off = (self.seq + 1 - in_seq) & 0xFFFF
            self.ts_off = (self.ts + gap - in_ts) & 0xFFFFFFFF
            self.in_ssrc = in_ssrc
            self.in_seq = in_seq
            self.in_ts = in_ts
            self.synced = True
            self.resync = False
            pkt[1] |= 0x80
        out_seq = (in_seq + self.seq_off) & 0xFFFF
        out_ts = (in_ts + self.ts_off) & 0xFFFFFFFF
        if not self.has_sent or _s16(out_seq - self.seq) > 0:
            self.seq = out_seq
            self.ts = out_ts
            self.sent_at = now
            self.has_sent = True
        self.local = False
        _SEQ_TS_SSRC.pack_into(pkt, 2, out_seq, out_ts, self.ssrc)

    def next(self, step: int, now: float) -> tuple[int, int, bool]:
        """(sequence number, timestamp, marker) of the next packet the engine makes itself."""
        marker = False
        t = self.ts
        if not self.has_sent:
            marker = True
        elif self.local and now - self.sent_at < PAUSE:
            t = (t + step) & 0xFFFFFFFF
        else:                                # after relayed packets or a pause
            t = (t + self._elapsed(now, step)) & 0xFFFFFFFF
            marker = True
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = t
        self.sent_at = now
        self.has_sent = True
        self.local = True
        self.resync = True                   # relayed packets after these re-anchor
        return self.seq, t, marker

    def _elapsed(self, now: float, least: int) -> int:
        """Timestamp units since the last packet sent (rounded), at least ``least``."""
        x = (now - self.sent_at) * float(self.clock_rate)
        x = x + 0.5
        g = 0 if x <= 0.0 else _TS_CAP if x >= 1e18 else int(x)
        return max(g, least) & 0xFFFFFFFF


@dataclass(slots=True)
class Counters:
    """Per-stream counters; the same fields as the C ``pbx_engine_counters``."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    rtcp_in: int = 0
    dropped_malformed: int = 0
    dropped_source: int = 0
    dropped_payload_type: int = 0
    dropped_unrouted: int = 0
    send_errors: int = 0
    latched: int = 0
    timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class RtcpInfo:
    """What an RTCP report needs to know about a stream (the C ``pbx_engine_rtcp_info``):
    the peer's source as ``ReceiverStats`` counts it (``fraction``, ``cumulative`` and
    ``ext_highest`` only when asked for a report, which starts a new loss interval) and the
    last packet we sent."""

    has_source: bool
    ssrc: int
    received: int
    expected: int
    jitter: int                 # RTP timestamp units, as a report block carries it
    fraction: int
    cumulative: int
    ext_highest: int
    tx_ssrc: int
    tx_ts: int
    tx_sent_at: float
    tx_has_sent: bool


def rtcp_info(stats: ReceiverStats | None, tx: TxState, report: bool) -> RtcpInfo:
    """The twin of ``pbx_engine_stream_rtcp_info``."""
    fraction = cumulative = ext_highest = 0
    if stats is not None and report:
        fraction, cumulative, ext_highest = stats.sequence.report()
    return RtcpInfo(
        stats is not None, stats.ssrc if stats else 0, stats.received if stats else 0,
        stats.expected if stats else 0, int(stats.jitter) if stats else 0, fraction,
        cumulative, ext_highest, tx.ssrc, tx.ts, tx.sent_at, tx.has_sent)
