"""RTP sequence validation and extended sequence numbers (RFC 3550 appendix A.1, loss per A.3).

A source is valid after ``min_sequential`` packets in sequence (probation). After that, a packet
up to ``MAX_DROPOUT`` ahead advances the highest sequence number (counting wraps in ``cycles``),
one up to ``MAX_MISORDER`` behind is a late or duplicate packet, and anything else is a "bad" jump
that is dropped unless the next packet follows it, in which case the source restarts there (the
peer restarted or jumped). Two deliberate departures from the RFC's C code, shared with the C
twin ``pbx_rtp_seq_*`` in ``cext/rtp.c``: the probation "in sequence" test wraps at 65535, and a
128-packet window counts duplicates (which A.1 counts as received, as §6.4.1 says; they are
reported separately in ``duplicates``).
"""

from __future__ import annotations

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "MIN_SEQUENTIAL", "SEQ_MOD", "SequenceTracker"]

MIN_SEQUENTIAL = 2
MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16

_WINDOW_BITS = 128
_WINDOW_MASK = (1 << _WINDOW_BITS) - 1
_NOT_A_SEQ = SEQ_MOD + 1


class SequenceTracker:
    """Sequence state of one source; ``update`` once per received packet."""

    __slots__ = ("_bad_seq", "_base_seq", "_cycles", "_duplicates", "_expected_prior",
                 "_max_seq", "_min_sequential", "_probation", "_received", "_received_prior",
                 "_started", "_window")

    def __init__(self, min_sequential: int = MIN_SEQUENTIAL) -> None:
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1")
        self._min_sequential = min_sequential
        self._started = False
        self._probation = 0
        self._max_seq = 0
        self._base_seq = 0
        self._bad_seq = _NOT_A_SEQ
        self._cycles = 0
        self._received = 0
        self._duplicates = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._window = 0

    def _restart(self, seq: int) -> None:
        """A.1 ``init_seq``: counting starts over at ``seq``."""
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = _NOT_A_SEQ
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._window = 1

    def update(self, seq: int) -> int | None:
        """The packet's extended sequence number, or ``None`` while on probation or for a jump
        not (yet) confirmed by a following packet. May be negative for a packet from before the
        first one counted."""
        if not self._started:
            self._restart(seq)
            self._max_seq = (seq - 1) & 0xFFFF
            self._probation = self._min_sequential
            self._started = True
        udelta = (seq - self._max_seq) & 0xFFFF
        behind = 0
        if self._probation:
            if udelta == 1:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._restart(seq)
                    self._received += 1
                    return seq
            else:
                self._probation = self._min_sequential - 1
                self._max_seq = seq
            return None
        if udelta < MAX_DROPOUT:
            # in order, with a permissible gap (0: a duplicate of the highest)
            if seq < self._max_seq:
                self._cycles += 1
            if udelta == 0:
                self._duplicates += self._window & 1
            else:
                self._window = ((self._window << udelta) | 1) & _WINDOW_MASK
            self._max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            # a very large jump: restart if the previous packet was seq - 1
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                return None
            self._restart(seq)
        else:
            # late or duplicate
            behind = SEQ_MOD - udelta
            bit = 1 << behind
            if self._window & bit:
                self._duplicates += 1
            self._window |= bit
        self._received += 1
        return (self._cycles << 16) + self._max_seq - behind

    @property
    def valid(self) -> bool:
        """Probation is over: packets are being counted."""
        return self._started and not self._probation

    @property
    def received(self) -> int:
        """Packets counted since the (re)start, duplicates and late ones included (A.1)."""
        return self._received

    @property
    def duplicates(self) -> int:
        """Packets seen again within 128 of the highest sequence number."""
        return self._duplicates

    @property
    def base_seq(self) -> int:
        return self._base_seq

    @property
    def max_seq(self) -> int:
        """Highest sequence number seen (16-bit)."""
        return self._max_seq

    @property
    def cycles(self) -> int:
        """How many times the sequence number wrapped."""
        return self._cycles

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number."""
        return (self._cycles << 16) + self._max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the first counted one (A.3); 0 while not valid."""
        if not self.valid:
            return 0
        return self.extended_max - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Expected minus received; negative when duplicates outnumber losses."""
        return self.expected - self._received

    def report(self) -> tuple[int, int, int]:
        """``(fraction_lost, cumulative_lost, ext_highest_seq)`` for a report block (A.3).

        Starts a new interval for the fraction; cumulative is clamped to signed 24 bits and the
        extended sequence number is cut to 32 bits, as the report block carries them.
        """
        expected = self.expected
        lost = max(-0x800000, min(0x7FFFFF, expected - self._received))
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self._received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = self._received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return fraction, lost, self.extended_max & 0xFFFFFFFF
