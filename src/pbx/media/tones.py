"""Tone generators: DTMF, ringback, busy, congestion, call waiting, beep and silence.

A tone is a :class:`ToneSpec`: a list of :class:`Segment` s (frequencies, length, level), played
once or repeated (a cadence). :class:`ToneSource` turns a spec into successive 20 ms frames of
PCM16 (numpy int16) at any rate; every frequency keeps its phase from frame to frame, so there
are no clicks at frame boundaries. Finite tones end with a zero-padded last frame, then ``None``.

Levels are in dBm0 per frequency component. Convention (G.711 mu-law, G.168): a full-scale sine
(peak 32767) is +3.14 dBm0, so a 0 dBm0 sine has a peak of 32767 * 10 ** (-3.14 / 20), about
22,820, and an RMS of about 16,140. A two-frequency tone at L dBm0 has each component at L dBm0.
Sums are saturated to int16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "CADENCES",
    "DTMF_COLS",
    "DTMF_FREQS",
    "DTMF_KEYS",
    "DTMF_ROWS",
    "FULL_SCALE_DBM0",
    "Segment",
    "ToneSource",
    "ToneSpec",
    "amplitude",
    "beep",
    "busy",
    "call_waiting",
    "congestion",
    "dtmf",
    "dtmf_tones",
    "ringback",
    "silence",
]

FULL_SCALE_DBM0 = 3.14
"""Level of a full-scale (peak 32767) sine, in dBm0."""

DTMF_ROWS = (697.0, 770.0, 852.0, 941.0)
DTMF_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
"""Keypad layout: DTMF_KEYS[row][col]."""

DTMF_FREQS: dict[str, tuple[float, float]] = {
    key: (DTMF_ROWS[r], DTMF_COLS[c])
    for r, keys in enumerate(DTMF_KEYS)
    for c, key in enumerate(keys)
}
"""Digit -> (low-group, high-group) frequency in Hz."""

FRAME_MS = 20
Frame = npt.NDArray[np.int16]


def amplitude(level_dbm0: float) -> float:
    """Peak amplitude (int16 scale) of a sine at ``level_dbm0``."""
    return float(32767.0 * 10.0 ** ((level_dbm0 - FULL_SCALE_DBM0) / 20.0))


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of tone: the sum of ``freqs`` (Hz) at ``level`` dBm0 each, for ``duration`` s.

    No frequencies is silence. ``duration=None`` lasts forever.
    """

    freqs: tuple[float, ...]
    duration: float | None
    level: float = -10.0


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A sequence of segments, played once or repeated forever (``repeat=True``)."""

    segments: tuple[Segment, ...]
    repeat: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a tone needs at least one segment")
        if self.repeat and all(s.duration == 0 for s in self.segments):
            raise ValueError("a repeated tone needs a segment of non-zero length")


def _on_off(freqs: tuple[float, ...], level: float, *pattern: float) -> tuple[Segment, ...]:
    """Alternating on/off segments: pattern = (on, off, on, off, ...)."""
    return tuple(Segment(freqs if i % 2 == 0 else (), d, level) for i, d in enumerate(pattern))


# Region -> tone name -> (frequencies, level dBm0, on/off pattern in seconds).
CADENCES: dict[str, dict[str, tuple[tuple[float, ...], float, tuple[float, ...]]]] = {
    "us": {  # North America (precise tone plan)
        "ringback": ((440.0, 480.0), -19.0, (2.0, 4.0)),
        "busy": ((480.0, 620.0), -24.0, (0.5, 0.5)),
        "congestion": ((480.0, 620.0), -24.0, (0.25, 0.25)),
        "call_waiting": ((440.0,), -13.0, (0.3, 9.7)),
    },
    "eu": {  # ITU-T E.180 / CEPT 425 Hz plan
        "ringback": ((425.0,), -10.0, (1.0, 4.0)),
        "busy": ((425.0,), -10.0, (0.5, 0.5)),
        "congestion": ((425.0,), -10.0, (0.25, 0.25)),
        "call_waiting": ((425.0,), -10.0, (0.2, 0.2, 0.2, 4.4)),
    },
    "cn": {  # China
        "ringback": ((450.0,), -10.0, (1.0, 4.0)),
        "busy": ((450.0,), -10.0, (0.35, 0.35)),
        "congestion": ((450.0,), -10.0, (0.7, 0.7)),
        "call_waiting": ((450.0,), -10.0, (0.4, 4.0)),
    },
}
CADENCES["itu"] = CADENCES["eu"]


def _cadence(region: str, name: str) -> ToneSpec:
    try:
        freqs, level, pattern = CADENCES[region][name]
    except KeyError:
        raise ValueError(f"no {name} tone for region {region!r}") from None
    return ToneSpec(_on_off(freqs, level, *pattern), repeat=True, name=f"{region}:{name}")


def ringback(region: str = "us") -> ToneSpec:
    """Ringback (audible ringing) cadence of ``region`` ("us", "eu"/"itu", "cn"); endless."""
    return _cadence(region, "ringback")


def busy(region: str = "us") -> ToneSpec:
    """Busy cadence of ``region``; endless."""
    return _cadence(region, "busy")


def congestion(region: str = "us") -> ToneSpec:
    """Congestion (reorder, all circuits busy) cadence of ``region``; endless."""
    return _cadence(region, "congestion")


def call_waiting(region: str = "us") -> ToneSpec:
    """Call-waiting beeps of ``region``; endless."""
    return _cadence(region, "call_waiting")


def beep(freq: float = 1000.0, duration: float = 0.25, level: float = -10.0) -> ToneSpec:
    """A single beep (the "speak after the tone" of voicemail and recording); finite."""
    return ToneSpec((Segment((freq,), duration, level),), name="beep")


def silence(duration: float | None = None) -> ToneSpec:
    """Silence, for ``duration`` seconds or forever."""
    return ToneSpec((Segment((), duration),), name="silence")


def dtmf(digits: str, duration: float = 0.1, gap: float = 0.1, level: float = -10.0,
         twist_db: float = 0.0) -> ToneSpec:
    """DTMF tones for ``digits`` (0-9 * # A-D), each ``duration`` s, ``gap`` s apart; finite.

    ``level`` is the low-group level in dBm0; the high group is ``twist_db`` stronger (negative
    for the usual normal twist, high group weaker).
    """
    segments: list[Segment] = []
    for i, digit in enumerate(digits):
        try:
            low, high = DTMF_FREQS[digit.upper()]
        except KeyError:
            raise ValueError(f"not a DTMF digit: {digit!r}") from None
        if i:
            segments.append(Segment((), gap))
        if twist_db:
            segments.append(_TwoLevel((low, high), duration, level, level + twist_db))
        else:
            segments.append(Segment((low, high), duration, level))
    if not segments:
        segments.append(Segment((), 0.0))
    return ToneSpec(tuple(segments), name=f"dtmf:{digits}")


@dataclass(frozen=True, slots=True)
class _TwoLevel(Segment):
    """A two-frequency segment whose second component has its own level."""

    level2: float = -10.0


class ToneSource:
    """Plays a :class:`ToneSpec` as successive 20 ms int16 frames at ``rate`` Hz."""

    def __init__(self, spec: ToneSpec, rate: int = 8000) -> None:
        if rate <= 0 or rate * FRAME_MS % 1000:
            raise ValueError(f"bad sample rate {rate}")
        self.spec = spec
        self.rate = rate
        self.frame_size = rate * FRAME_MS // 1000
        self.frame_samples = self.frame_size   # FrameSource: the engine plays tones directly
        self._phases: dict[float, float] = {}  # frequency -> phase (radians) at the next sample
        self._index = 0  # current segment
        self._left = self._length(spec.segments[0])  # samples left in it (None: endless)
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once a finite tone has been read to its end."""
        return self._finished

    def read(self, now: float | None = None) -> Frame | None:
        """The next frame, or None after the end of a finite tone.

        ``now`` is accepted for the source interface of the media engine and ignored: the
        engine pulls one frame per tick, which is what advances the tone.
        """
        if self._finished:
            return None
        out = np.zeros(self.frame_size, dtype=np.float64)
        pos = 0
        produced = False
        while pos < self.frame_size:
            if self._left == 0 and not self._advance():
                break
            take = self.frame_size - pos
            if self._left is not None:
                take = min(take, self._left)
                self._left -= take
            self._render(self.spec.segments[self._index], out[pos : pos + take])
            pos += take
            produced = True
        if not produced:
            self._finished = True
            return None
        if pos < self.frame_size:  # a finite tone ended inside this frame
            self._finished = True
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def frames(self, limit: int | None = None) -> list[Frame]:
        """Read up to ``limit`` frames (all of a finite tone when None)."""
        out: list[Frame] = []
        while limit is None or len(out) < limit:
            frame = self.read()
            if frame is None:
                break
            out.append(frame)
        return out

    def _length(self, seg: Segment) -> int | None:
        return None if seg.duration is None else round(seg.duration * self.rate)

    def _advance(self) -> bool:
        """Move to the next segment with samples; False at the end of a finite tone."""
        segments = self.spec.segments
        for _ in range(2 * len(segments)):
            nxt = self._index + 1
            if nxt >= len(segments):
                if not self.spec.repeat:
                    return False
                nxt = 0
            self._index = nxt
            self._left = self._length(segments[nxt])
            if self._left != 0:
                return True
        return False

    def _render(self, seg: Segment, out: npt.NDArray[np.float64]) -> None:
        n = len(out)
        ramp = np.arange(n, dtype=np.float64)
        for i, freq in enumerate(seg.freqs):
            level = seg.level2 if isinstance(seg, _TwoLevel) and i == 1 else seg.level
            step = 2.0 * math.pi * freq / self.rate
            phase = self._phases.get(freq, 0.0)
            out += amplitude(level) * np.sin(phase + step * ramp)
            self._phases[freq] = math.fmod(phase + step * n, 2.0 * math.pi)


def dtmf_tones(digits: str, rate: int = 8000, duration: float = 0.1, gap: float = 0.1,
               level: float = -10.0) -> npt.NDArray[np.int16]:
    """The DTMF tones of ``digits`` as one int16 array (whole 20 ms frames, zero padded)."""
    frames = ToneSource(dtmf(digits, duration, gap, level), rate).frames()
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
