"""Adaptive jitter buffer: clock-pulled playout of encoded RTP frames.

The caller ``put``\\ s every received packet and, once per frame period (20 ms), ``get``\\ s what to
play: a ``Frame`` (encoded payload; the caller decodes it) or a ``Missing`` saying why there is
none, so the caller runs its codec's ``conceal()`` or plays silence. Telephone-event (RFC 4733)
packets bypass the playout: they come out at once, in arrival order, from ``pop_events``, and are
never delayed, stretched or dropped by the adaptation. One ``put`` per frame of
``frame_samples``: a packet carrying several frames is split by the caller (as pjmedia does).

How it works (pjmedia jbuf and WebRTC NetEQ gave the ideas). All arithmetic is in integers: time
in RTP timestamp units ("samples") derived from ``now``, so the C twin (``cext/jitter.c``,
``pbx_jb_*``) makes exactly the same decisions; ``JitterBuffer`` uses it when built.

- Storage: a fixed ring of ``capacity`` slots indexed by the extended sequence number (the
  "index"), O(1) per packet. Duplicates, late packets (their slot already played or skipped) and
  packets beyond the ring are recognised by index.
- Timing: every audio packet gets a relative delay ``d = arrival - timestamp``. ``d_min``, the
  fastest packet of the last two 2-second windows, is the reference (it follows clock skew);
  ``j = d - d_min`` is how late the packet came. A decaying histogram of ``j`` (half-life about
  500 packets, O(1) update with a running percentile) gives the 95th percentile.
- Target delay: raised at once to any ``j`` above it, lowered towards the percentile with a time
  constant of 128 ticks (about 2.6 s), clamped to ``[min_delay, max_delay]``; ``fixed`` pins it.
- Current delay: ``now - play_ts - d_min`` at each ``get``, where ``play_ts`` is the timestamp
  being played: the slack a packet has between arriving and being played. A packet with lateness
  ``j`` is on time exactly when the current delay is at least ``j``.
- Adaptation: when the current delay exceeds the target by a frame (silent frames), a frame and a
  half (frames of unknown energy) or ``max(4 frames, target)`` (speech: forced), one frame is
  dropped; when it falls below the target by a sample (after a silent frame), half a frame
  (unknown) or two frames (speech), one concealment frame is inserted. At most one per tick.
  This also absorbs sender clock skew.
- Nothing buffered: if the current delay already covers the target, the frame due is taken for
  lost once (``LOST``: a random loss costs one frame, not a stall); otherwise, or after a silent
  frame (probably DTX), the playout stalls (``NOT_YET``) instead of advancing, so a delay spike
  costs no late loss. When packets come back the buffer refills to the target first,
  re-anchoring on the new timestamp after DTX silence; a sequence-continuous packet arriving
  after its index was taken for lost, but not yet due, is indexed after the skip. While the
  newest packet is a telephone event the sender sends no audio: ``GAP``, not concealment.
- Resync: a new SSRC, a sequence jump past the ring or of more than 100 backwards (confirmed by a
  second packet), or a timestamp that disagrees with the arrival time by more than ``max_delay``
  (marker bit set) or ``max(2 max_delay, 2 s)`` starts a new epoch: the new stream's indexes and
  timestamps continue right after the old ones (buffered frames still play), ``d_min`` restarts.
  Stragglers of the last four epochs (their source within a second of the switch, or at most
  3000 before the epoch's last packet) are late, not a switch back or a jump; so is any packet
  that maps before the start of the current epoch (the new mapping cannot place it).

Telephone events: ``pop_events`` returns them (``Frame`` with ``FLAG_EVENT``) in arrival order,
including ones whose sequence number was already played past (and stragglers of old epochs, with
index -1); only exact duplicates still in the ring are dropped, and at most 16 wait (more are
``DISCARDED``: call ``pop_events`` every tick).
Their sequence numbers are skipped by the playout without a tick or a loss.

Counters: ``received == played + removed + late + discarded + duplicated + events + buffered``
(``removed`` in frames). ``concealed_samples`` counts ``LOST``, ``NOT_YET`` and ``INSERTED`` ticks,
the ticks the caller should fill with its codec's ``conceal()``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from pbx.media._native import IMPLEMENTATION as _IMPL
from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "FLAG_DROPPED",
    "FLAG_EVENT",
    "FLAG_MARKER",
    "FLAG_RESYNC",
    "FLAG_SILENT",
    "IMPLEMENTATION",
    "Frame",
    "JitterBuffer",
    "JitterStats",
    "Missing",
    "MissingReason",
    "PutResult",
]

IMPLEMENTATION: str = _IMPL

FLAG_MARKER = 1
"""The packet had the RTP marker bit."""
FLAG_SILENT = 2
"""The caller flagged the frame silent."""
FLAG_RESYNC = 4
"""First audio frame after a resync (new SSRC or jump): reset the decoder."""
FLAG_DROPPED = 8
"""One frame was removed just before this one to shrink the delay."""
FLAG_EVENT = 16
"""A telephone-event packet (from ``pop_events``)."""


class PutResult(IntEnum):
    """What ``put`` did with a packet (same codes as ``PBX_JB_*`` in ``cext/jitter.h``)."""

    ACCEPTED = 0
    DUPLICATE = 1
    LATE = 2
    DISCARDED = 3
    """Too early (beyond the ring), ring full, or payload too big."""
    RESYNC = 4
    """Accepted as the first packet of a new epoch (not for the very first packet)."""
    EVENT = 5
    """Telephone-event packet queued for ``pop_events``."""


class MissingReason(StrEnum):
    """Why ``get`` has no frame for this tick."""

    STARTUP = "startup"
    """Buffering before the first frame: play silence."""
    NOT_YET = "not-yet"
    """Underflow: the next frame has not arrived (delay spike, sender pause); conceal."""
    LOST = "lost"
    """The frame at ``index`` never came but later ones did; conceal."""
    INSERTED = "inserted"
    """A frame inserted to grow the delay; conceal (or repeat silence)."""
    GAP = "gap"
    """The sender sent nothing for this time (DTX, telephone-event): comfort noise or silence."""


_CONCEAL = frozenset({MissingReason.NOT_YET, MissingReason.LOST, MissingReason.INSERTED})


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """An encoded frame to decode and play; ``index`` is the extended, resync-continuous sequence."""

    payload: bytes
    timestamp: int
    seq: int
    payload_type: int
    flags: int
    index: int

    def __repr__(self) -> str:
        return (f"Frame(index={self.index}, seq={self.seq}, timestamp={self.timestamp}, "
                f"payload_type={self.payload_type}, flags={self.flags}, "
                f"payload={self.payload[:8]!r}{'...' if len(self.payload) > 8 else ''})")

    @property
    def marker(self) -> bool:
        return bool(self.flags & FLAG_MARKER)

    @property
    def silent(self) -> bool:
        return bool(self.flags & FLAG_SILENT)


@dataclass(frozen=True, slots=True)
class Missing:
    """No frame this tick; ``index`` is set for ``LOST`` (the index of the lost frame)."""

    reason: MissingReason
    index: int | None = None

    @property
    def conceal(self) -> bool:
        """True when the caller should run packet-loss concealment rather than plain silence."""
        return self.reason in _CONCEAL


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters. ``received == played + removed_samples // frame + late + discarded + duplicated
    + events + buffered`` at all times."""

    received: int
    played: int
    late: int
    lost: int
    discarded: int
    duplicated: int
    reordered: int
    events: int
    concealed_samples: int
    inserted_samples: int
    removed_samples: int
    underflows: int
    resyncs: int
    buffered: int
    current_delay_ms: float
    target_delay_ms: float


class RtpLike(Protocol):
    """What ``put_packet`` reads from a packet (``pbx.rtp.packet.RtpPacket`` fits)."""

    @property
    def sequence(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def marker(self) -> bool: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def ssrc(self) -> int: ...


# --- the reference twin -------------------------------------------------------------------------

# get() result kinds (PBX_JB_FRAME, PBX_JB_STARTUP ... in cext/jitter.h)
_K_FRAME, _K_STARTUP, _K_NOT_YET, _K_LOST, _K_INSERTED, _K_GAP = range(6)
_ACCEPTED, _DUPLICATE, _LATE, _DISCARDED, _RESYNC, _EVENT = range(6)
# slot states
_EMPTY, _AUDIO, _TOMB, _DONE = range(4)

_NBINS = 128                    # delay histogram bins, together spanning max_delay
_HIST_GAIN = 65625              # weight growth per packet, Q16: half-life about 511 packets
_HIST_W0 = 1 << 20              # first weight; all weights are shifted down past _HIST_TOP
_HIST_TOP = 1 << 40
_HIST_SHIFT = 20
_DECAY_SHIFT = 7                # target lowers with a time constant of 128 ticks (2.6 s)
_MAX_MISORDER = 100             # RFC 3550 A.1
_HISTORY = 4                    # past epochs remembered to recognise their stragglers
_STALE = range(0, 3001)         # that far before an old epoch's last packet is a straggler
_EVENT_QUEUE = 16
_EVENT_MAX_PAYLOAD = 64
_MAX_CAPACITY = 4096
_INF = 1 << 62


def _config(clock_rate: int, frame: int, min_s: int, max_s: int, start_s: int, fixed_s: int,
            capacity: int) -> tuple[int, int, int, int, int, int]:
    """Normalised (min, max, start, fixed, capacity, bin width): identical in the C twin."""
    max_s = max(max_s, frame)
    min_s = min(max(min_s, 0), max_s)
    start_s = min(max(start_s, min_s), max_s)
    span = max(max_s, fixed_s)
    if capacity <= 0:
        capacity = 2 * ((span + frame - 1) // frame) + 8
    cap = 4
    while cap < capacity and cap < _MAX_CAPACITY:
        cap <<= 1
    bin_w = max(1, (max_s + _NBINS - 1) // _NBINS)
    return min_s, max_s, start_s, fixed_s, cap, bin_w


class _PyCore:
    """The readable reference. Same state, same integer steps, same results as ``cext/jitter.c``."""

    def __init__(self, clock_rate: int, frame: int, min_s: int, max_s: int, start_s: int,
                 fixed_s: int, capacity: int, max_payload: int, dtmf_pt: int) -> None:
        self.rate = clock_rate
        self.frame = frame
        (self.min_s, self.max_s, self.start_s, self.fixed_s, self.cap,
         self.bin_w) = _config(clock_rate, frame, min_s, max_s, start_s, fixed_s, capacity)
        self.mask = self.cap - 1
        self.max_payload = max_payload
        self.dtmf_pt = dtmf_pt
        self.win = 2 * clock_rate
        self.thr_marker = max(self.max_s, 4 * frame)
        self.thr_plain = max(2 * self.max_s, 2 * clock_rate)
        # indexed by silent code + 1 (unknown, speech, silent)
        self.shrink_thr = ((3 * frame) >> 1, 4 * frame, frame)
        self.grow_thr = (max(1, frame >> 1), 2 * frame, 1)
        self.reset()

    def reset(self) -> None:
        cap = self.cap
        self.st = [_EMPTY] * cap
        self.si = [0] * cap
        self.smts = [0] * cap
        self.sts = [0] * cap
        self.sseq = [0] * cap
        self.spt = [0] * cap
        self.sflags = [0] * cap
        self.ssil = [0] * cap
        self.spay: list[bytes] = [b""] * cap
        self.events: deque[tuple[int, bytes, int, int, int, int]] = deque()
        self.t0 = 0
        self.last_us = 0
        self.clock_valid = False
        self.have_stream = False
        self.ssrc = 0
        # the last _HISTORY epochs: source, its highest sequence number, straggler deadline
        self.prev_ssrc = [-1] * _HISTORY
        self.prev_seq = [0] * _HISTORY
        self.prev_until = [0] * _HISTORY
        self.prev_pos = 0
        self.bad_seq = -1
        self.epoch_start = -_INF
        self.hi_seq = 0
        self.hi_index = -1
        self.hi_ts = 0
        self.hi_mts = 0
        self.max_index = -1
        self.max_mts = -self.frame
        self.next = 0
        self.moved = False
        self.count = 0
        self.started = False
        self.rebuffering = False
        self.skipped = False
        self.last_event = False
        self.play_valid = False
        self.play_ts = 0
        self.last_silent = -1
        self.resync_flag = 0
        self.fresh = True
        self.win_start = 0
        self.cur_min = _INF
        self.prev_min = _INF
        self.dmin = _INF
        self.hist = [0] * _NBINS
        self.total = 0
        self.weight = _HIST_W0
        self.pct = 0
        self.below = 0
        self.tstate = self.start_s
        self.target = self.fixed_s if self.fixed_s >= 0 else self.start_s
        self.current = 0
        # counters
        self.received = self.played = self.late = self.lost = self.discarded = 0
        self.duplicated = self.reordered = self.nevents = self.underflows = self.resyncs = 0
        self.concealed = self.inserted = self.removed = 0

    # -- time and delay estimation

    def _clock(self, now_us: int) -> int:
        if not self.clock_valid:
            self.clock_valid = True
            self.t0 = self.last_us = now_us
        if now_us < self.last_us:
            now_us = self.last_us
        self.last_us = now_us
        return (now_us - self.t0) * self.rate // 1_000_000

    def _set_target(self) -> None:
        if self.fixed_s >= 0:
            self.target = self.fixed_s
        else:
            self.target = min(max(self.tstate, self.min_s), self.max_s)

    def _observe(self, d: int, now_s: int) -> None:
        """One audio packet's relative delay: d_min windows, histogram, raise-at-once."""
        if self.fresh:  # first audio packet of an epoch: the timing reference starts over
            self.fresh = False
            self.cur_min = self.prev_min = _INF
            self.win_start = now_s
        elif now_s - self.win_start >= self.win:
            self.prev_min = self.cur_min if now_s - self.win_start < 2 * self.win else _INF
            self.cur_min = _INF
            self.win_start = now_s
        if d < self.cur_min:
            self.cur_min = d
        self.dmin = min(self.cur_min, self.prev_min)
        j = d - self.dmin
        b = min(j // self.bin_w, _NBINS - 1)
        w = self.weight
        self.hist[b] += w
        self.total += w
        if b < self.pct:
            self.below += w
        self.weight = (w * _HIST_GAIN) >> 16
        if self.weight > _HIST_TOP:
            self.weight >>= _HIST_SHIFT
            for i in range(_NBINS):
                self.hist[i] >>= _HIST_SHIFT
            self.total = sum(self.hist)
            self.below = sum(self.hist[: self.pct])
        self._move_percentile()
        if j > self.tstate:
            self.tstate = min(j, self.max_s)
            self._set_target()

    def _move_percentile(self) -> None:
        hist, total = self.hist, self.total
        p, below = self.pct, self.below
        while p < _NBINS - 1 and (below + hist[p]) * 20 < total * 19:
            below += hist[p]
            p += 1
        while p > 0 and below * 20 >= total * 19:
            p -= 1
            below -= hist[p]
        self.pct, self.below = p, below

    def _decay(self) -> None:
        floor = (self.pct + 1) * self.bin_w if self.total > 0 else 0
        t = self.tstate
        if t < floor:
            t = floor
        elif t > floor:
            t -= (t - floor + (1 << _DECAY_SHIFT) - 1) >> _DECAY_SHIFT
        self.tstate = t
        self._set_target()

    def _new_epoch(self, seq: int, ts: int, ssrc: int, now_s: int) -> None:
        """Continue the indexes and timestamps of a new stream right after the old ones."""
        if self.have_stream:
            self.resyncs += 1
            # the old source: its stragglers are late (for a second, or when not newer)
            k = self.prev_pos
            self.prev_until[k] = now_s + self.rate if ssrc != self.ssrc else 0
            self.prev_ssrc[k] = self.ssrc
            self.prev_seq[k] = self.hi_seq
            self.prev_pos = (k + 1) % _HISTORY
            self.epoch_start = max(self.max_index + 1, self.next)
            if self.count == 0 and self.started:
                self.rebuffering = True
            self.resync_flag = FLAG_RESYNC
        self.have_stream = True
        self.ssrc = ssrc
        self.bad_seq = -1
        self.hi_seq = seq
        self.hi_index = max(self.max_index + 1, self.next)
        self.hi_ts = ts
        self.hi_mts = self.max_mts + self.frame
        self.fresh = True

    # -- the two operations

    def put(self, seq: int, ts: int, marker: int, pt: int, payload: bytes, ssrc: int, now_us: int,
            silent: int) -> int:
        """One packet (``silent``: 1, 0, -1 unknown); a ``PutResult`` code."""
        now_s = self._clock(now_us)
        self.received += 1
        event = pt == self.dtmf_pt
        if len(payload) > (_EVENT_MAX_PAYLOAD if event else self.max_payload):
            self.discarded += 1
            return _DISCARDED
        resync = not self.have_stream
        index = 0
        if not resync and ssrc != self.ssrc:
            if self._stale(ssrc, seq, now_s):
                return self._unplaced(event, seq, ts, pt, payload, marker)
            resync = True
        if not resync:
            dseq = ((seq - self.hi_seq + 0x8000) & 0xFFFF) - 0x8000
            if dseq < -_MAX_MISORDER:
                if self._stale(ssrc, seq, _INF):  # from before a jump
                    return self._unplaced(event, seq, ts, pt, payload, marker)
                if seq != self.bad_seq:  # a restart needs a second packet to confirm it
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return self._unplaced(event, seq, ts, pt, payload, marker)
                resync = True
            else:
                index = self.hi_index + dseq
                if index >= self.next + self.cap:
                    if self._stale(ssrc, seq, _INF):
                        return self._unplaced(event, seq, ts, pt, payload, marker)
                    resync = self.max_index + 1 < self.next + self.cap
                elif not event and index > self.max_index and not self.fresh:
                    mts = self.hi_mts + ((ts - self.hi_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                    d = now_s - mts
                    thr = self.thr_marker if marker else self.thr_plain
                    resync = d - self.dmin > thr or self.dmin - d > thr
                if (not resync and not event and self.started and index > self.max_index
                        and index < self.next):
                    # skipped as probably lost while nothing was buffered, yet not due: the sender
                    # paused (DTX) without a sequence gap. Index it after the skip instead.
                    mts = self.hi_mts + ((ts - self.hi_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                    if mts >= self.play_ts:
                        self.hi_index += self.next - index
                        index = self.next
        result = _ACCEPTED
        if resync:
            result = _RESYNC if self.have_stream else _ACCEPTED
            self._new_epoch(seq, ts, ssrc, now_s)
            index = self.hi_index
        nxt = self.next
        if index < self.epoch_start:  # from before the last resync: the mapping cannot place it
            return self._unplaced(event, seq, ts, pt, payload, marker)
        if index >= nxt + self.cap:
            if event:
                return self._queue_event(index, seq, ts, pt, payload, marker)
            self.discarded += 1
            return _DISCARDED
        if index < nxt and not self.moved and self.max_index - index < self.cap:
            self.next = nxt = index  # nothing consumed yet: an earlier packet moves the start back
        s = index & self.mask
        state = self.st[s]
        if state != _EMPTY and self.si[s] == index:
            self.duplicated += 1
            return _DUPLICATE
        if index < self.max_index:
            self.reordered += 1
        if event:
            result = self._queue_event(index, seq, ts, pt, payload, marker)
            if result == _EVENT and index >= nxt:
                self.st[s] = _TOMB
                self.si[s] = index
                if index > self.max_index:
                    self.max_index = index
                    self.last_event = True
                if index > self.hi_index:
                    self.hi_index = index
                    self.hi_seq = seq
            return result
        mts = self.hi_mts + ((ts - self.hi_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        self._observe(now_s - mts, now_s)
        if index < nxt:
            self.late += 1
            return _LATE
        self.st[s] = _AUDIO
        self.si[s] = index
        self.smts[s] = mts
        self.sts[s] = ts
        self.sseq[s] = seq
        self.spt[s] = pt
        self.sflags[s] = ((FLAG_MARKER if marker else 0) | (FLAG_SILENT if silent > 0 else 0)
                          | self.resync_flag)
        self.resync_flag = 0
        self.ssil[s] = silent
        self.spay[s] = payload
        self.count += 1
        if index > self.max_index:
            self.max_index = index
            self.last_event = False
        if index > self.hi_index:
            self.hi_index = index
            self.hi_seq = seq
            self.hi_ts = ts
            self.hi_mts = mts
        if mts > self.max_mts:
            self.max_mts = mts
        return result

    def _stale(self, ssrc: int, seq: int, now_s: int) -> bool:
        """A straggler of a recent epoch: within a second of the switch away from its source
        (``now_s`` _INF: ignore that), or at most 3000 before the epoch's last packet."""
        for k in range(_HISTORY):
            if self.prev_ssrc[k] == ssrc:
                age = self.prev_seq[k] - seq  # how far before the epoch's last packet
                if now_s < self.prev_until[k] or ((age + 0x8000) & 0xFFFF) - 0x8000 in _STALE:
                    return True
        return False

    def _unplaced(self, event: bool, seq: int, ts: int, pt: int, payload: bytes,
                  marker: int) -> int:
        """A packet the current mapping cannot place: late, or a telephone event passed on
        anyway (index -1)."""
        if event:
            return self._queue_event(-1, seq, ts, pt, payload, marker)
        self.late += 1
        return _LATE

    def _queue_event(self, index: int, seq: int, ts: int, pt: int, payload: bytes,
                     marker: int) -> int:
        if len(self.events) >= _EVENT_QUEUE:
            self.discarded += 1
            return _DISCARDED
        self.events.append((index, payload, ts, seq, pt, FLAG_EVENT | (FLAG_MARKER if marker else 0)))
        self.nevents += 1
        return _EVENT

    def pop_event(self) -> tuple[int, bytes, int, int, int, int] | None:
        return self.events.popleft() if self.events else None

    def get(self, now_us: int) -> tuple[Any, ...]:
        """One tick: ``(kind, ...)``, frame fields after ``_K_FRAME``, the index after ``_K_LOST``."""
        now_s = self._clock(now_us)
        if self.started and self.fixed_s < 0:
            self._decay()
        if not self.have_stream:
            return (_K_STARTUP,)
        frame, mask, st, si = self.frame, self.mask, self.st, self.si
        nxt = self.next
        while nxt <= self.max_index:
            s = nxt & mask
            if st[s] == _TOMB and si[s] == nxt:
                st[s] = _DONE
                nxt += 1
                self.moved = True
                continue
            break
        self.next = nxt
        s = nxt & mask
        if st[s] != _AUDIO or si[s] != nxt:
            if nxt < self.max_index:
                self.lost += 1
                self.concealed += frame
                self.next = nxt + 1
                self.moved = True
                if self.play_valid:
                    self.play_ts += frame
                return (_K_LOST, nxt)
            if not self.started:
                return (_K_STARTUP,)
            if self.last_event:  # the sender sends telephone events instead of audio
                self.rebuffering = True
                return (_K_GAP,)
            cur = now_s - self.play_ts - self.dmin
            if (not self.rebuffering and not self.skipped and cur >= self.target
                    and self.last_silent != 1):
                # it should be here by now: take it for lost (once) rather than stall; after a
                # silent frame the sender more likely paused (DTX), so stall then
                self.current = cur
                self.skipped = True
                self.lost += 1
                self.concealed += frame
                self.next = nxt + 1
                self.moved = True
                self.play_ts += frame
                return (_K_LOST, nxt)
            if not self.rebuffering:
                self.rebuffering = True
                self.underflows += 1
            self.concealed += frame
            return (_K_NOT_YET,)
        mts = self.smts[s]
        extra = 0
        if self.rebuffering or not self.started:
            if not self.started or not self.play_valid or mts > self.play_ts:
                self.play_ts = mts
                self.play_valid = True
            self.current = now_s - self.play_ts - self.dmin
            if self.current < self.target:
                if not self.started:
                    return (_K_STARTUP,)
                self.concealed += frame
                return (_K_NOT_YET,)
            self.started = True
            self.rebuffering = False
        else:
            if mts - self.play_ts >= frame:
                self.play_ts += frame
                return (_K_GAP,)
            self.current = now_s - self.play_ts - self.dmin
            excess = self.current - self.target
            sil = self.ssil[s]
            # speech is dropped only when far off: over max(4 frames, target) too much
            if excess >= (max(self.shrink_thr[1], self.target) if sil == 0
                          else self.shrink_thr[sil + 1]):
                n2 = nxt + 1
                s2 = n2 & mask
                after = max(self.play_ts, mts) + frame
                if st[s2] == _AUDIO and si[s2] == n2 and self.smts[s2] - after < frame:
                    st[s] = _DONE
                    self.spay[s] = b""
                    self.count -= 1
                    self.removed += frame
                    self.play_ts = after
                    nxt, s, mts = n2, s2, self.smts[s2]
                    extra = FLAG_DROPPED
            elif -excess >= self.grow_thr[self.last_silent + 1]:
                self.inserted += frame
                self.concealed += frame
                return (_K_INSERTED,)
        st[s] = _DONE
        payload = self.spay[s]
        self.spay[s] = b""
        self.count -= 1
        self.played += 1
        self.next = nxt + 1
        self.moved = True
        self.play_ts = max(self.play_ts, mts) + frame
        self.last_silent = self.ssil[s]
        self.skipped = False
        return (_K_FRAME, nxt, payload, self.sts[s], self.sseq[s], self.spt[s],
                self.sflags[s] | extra)

    def counters(self) -> tuple[int, ...]:
        return (self.received, self.played, self.late, self.lost, self.discarded,
                self.duplicated, self.reordered, self.nevents, self.concealed, self.inserted,
                self.removed, self.underflows, self.resyncs, self.count, self.current,
                self.target)


# --- the C twin through cffi --------------------------------------------------------------------


class _CCore:
    """``cext/jitter.c`` behind the same interface as ``_PyCore``."""

    def __init__(self, clock_rate: int, frame: int, min_s: int, max_s: int, start_s: int,
                 fixed_s: int, capacity: int, max_payload: int, dtmf_pt: int) -> None:
        assert _lib is not None and _ffi is not None
        cfg = _ffi.new("pbx_jb_config_t *")
        cfg.clock_rate = clock_rate
        cfg.frame_samples = frame
        cfg.min_delay = min_s
        cfg.max_delay = max_s
        cfg.start_delay = start_s
        cfg.fixed_delay = fixed_s
        cfg.capacity = capacity
        cfg.max_payload = max_payload
        cfg.dtmf_pt = dtmf_pt
        jb = _lib.pbx_jb_new(cfg)
        if jb == _ffi.NULL:
            raise MemoryError("pbx_jb_new failed")
        self._jb = _ffi.gc(jb, _lib.pbx_jb_free)
        self._out = _ffi.new("pbx_jb_frame_t *")
        self._stats = _ffi.new("pbx_jb_stats_t *")
        self.cap = int(_lib.pbx_jb_capacity(jb))
        self._put = _lib.pbx_jb_put
        self._get = _lib.pbx_jb_get
        self._buf = _ffi.buffer

    def reset(self) -> None:
        _lib.pbx_jb_reset(self._jb)

    def put(self, seq: int, ts: int, marker: int, pt: int, payload: bytes, ssrc: int, now_us: int,
            silent: int) -> int:
        return int(self._put(self._jb, seq, ts, marker, pt, payload, len(payload), ssrc, now_us,
                             silent))

    def get(self, now_us: int) -> tuple[Any, ...]:
        out = self._out
        kind = self._get(self._jb, now_us, out)
        if kind == _K_FRAME:
            return (kind, out.index, bytes(self._buf(out.payload, out.len)), out.timestamp,
                    out.seq, out.payload_type, out.flags)
        if kind == _K_LOST:
            return (kind, out.index)
        return (kind,)

    def pop_event(self) -> tuple[int, bytes, int, int, int, int] | None:
        out = self._out
        if not _lib.pbx_jb_pop_event(self._jb, out):
            return None
        return (out.index, bytes(self._buf(out.payload, out.len)), out.timestamp, out.seq,
                out.payload_type, out.flags)

    def counters(self) -> tuple[int, ...]:
        s = self._stats
        _lib.pbx_jb_get_stats(self._jb, s)
        return (s.received, s.played, s.late, s.lost, s.discarded, s.duplicated, s.reordered,
                s.events, s.concealed, s.inserted, s.removed, s.underflows, s.resyncs,
                s.buffered, s.current_delay, s.target_delay)


# --- the public class ---------------------------------------------------------------------------

_REASONS = {
    _K_STARTUP: MissingReason.STARTUP,
    _K_NOT_YET: MissingReason.NOT_YET,
    _K_INSERTED: MissingReason.INSERTED,
    _K_GAP: MissingReason.GAP,
}
_SHARED_MISSING = {k: Missing(r) for k, r in _REASONS.items()}
_RESULTS = tuple(PutResult)


def _us(now: float) -> int:
    return round(now * 1_000_000)


class JitterBuffer:
    """Clock-pulled adaptive jitter buffer for one RTP stream (see the module docstring).

    Delays are in milliseconds: ``min_delay``/``max_delay`` bound the adaptive target,
    ``start_delay`` is buffered before the first frame, ``fixed`` (not None) pins the target.
    ``dtmf_payload_type`` names the telephone-event payload type, whose packets go to
    ``pop_events``. ``implementation`` forces ``"c"`` or ``"py"`` (default: C when built).
    """

    def __init__(self, clock_rate: int = 8000, frame_samples: int = 160, *,
                 min_delay: float = 0.0, max_delay: float = 500.0, start_delay: float = 60.0,
                 fixed: float | None = None, dtmf_payload_type: int | None = None,
                 max_payload: int = 1500, capacity: int | None = None,
                 implementation: str | None = None) -> None:
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock_rate and frame_samples must be positive")
        if not 0 < max_payload <= 65535:
            raise ValueError("max_payload must be 1..65535")
        if dtmf_payload_type is not None and not 0 <= dtmf_payload_type <= 127:
            raise ValueError("dtmf_payload_type must be 0..127")
        if min(min_delay, max_delay, start_delay) < 0 or (fixed is not None and fixed < 0):
            raise ValueError("delays must not be negative")
        if capacity is not None and not 0 < capacity <= _MAX_CAPACITY:
            raise ValueError(f"capacity must be 1..{_MAX_CAPACITY}")
        impl = implementation or IMPLEMENTATION
        if impl not in ("c", "py") or (impl == "c" and _lib is None):
            raise ValueError(f"implementation {impl!r} is not available")

        def samples(ms: float) -> int:
            return min(round(ms * clock_rate / 1000), 1 << 30)

        args = (clock_rate, frame_samples, samples(min_delay), samples(max_delay),
                samples(start_delay), -1 if fixed is None else samples(fixed), capacity or 0,
                max_payload, -1 if dtmf_payload_type is None else dtmf_payload_type)
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.implementation = impl
        self._core: _PyCore | _CCore = _CCore(*args) if impl == "c" else _PyCore(*args)

    @property
    def capacity(self) -> int:
        """Ring size in frames (a power of two)."""
        return self._core.cap

    def put(self, seq: int, timestamp: int, marker: bool, payload_type: int, payload: bytes,
            ssrc: int, now: float, *, silent: bool | None = None) -> PutResult:
        """Store one received packet (``now`` in seconds, monotonic)."""
        code = self._core.put(seq & 0xFFFF, timestamp & 0xFFFFFFFF, 1 if marker else 0,
                              payload_type & 0x7F, payload, ssrc & 0xFFFFFFFF, _us(now),
                              -1 if silent is None else int(bool(silent)))
        return _RESULTS[code]

    def put_packet(self, packet: RtpLike, now: float, *, silent: bool | None = None) -> PutResult:
        """``put`` taking the fields from a parsed packet."""
        return self.put(packet.sequence, packet.timestamp, packet.marker, packet.payload_type,
                        packet.payload, packet.ssrc, now, silent=silent)

    def get(self, now: float) -> Frame | Missing:
        """What to play for the tick at ``now``; call once per frame period."""
        r = self._core.get(_us(now))
        kind = r[0]
        if kind == _K_FRAME:
            return Frame(r[2], r[3], r[4], r[5], r[6], r[1])
        if kind == _K_LOST:
            return Missing(MissingReason.LOST, r[1])
        return _SHARED_MISSING[kind]

    def pop_events(self) -> list[Frame]:
        """Telephone-event packets received since the last call, in arrival order."""
        out = []
        while (e := self._core.pop_event()) is not None:
            out.append(Frame(e[1], e[2], e[3], e[4], e[5], e[0]))
        return out

    def reset(self) -> None:
        """Forget everything (stream, delay history, counters); keep the configuration."""
        self._core.reset()

    @property
    def stats(self) -> JitterStats:
        c = self._core.counters()
        ms = 1000.0 / self.clock_rate
        return JitterStats(
            received=c[0], played=c[1], late=c[2], lost=c[3], discarded=c[4], duplicated=c[5],
            reordered=c[6], events=c[7], concealed_samples=c[8], inserted_samples=c[9],
            removed_samples=c[10], underflows=c[11], resyncs=c[12], buffered=c[13],
            current_delay_ms=c[14] * ms, target_delay_ms=c[15] * ms)

    def counters(self) -> tuple[int, ...]:
        """The raw integer state the C and Python twins must agree on (stats, delays in samples)."""
        return self._core.counters()
