"""Playback sources: successive 20 ms int16 frames at a target rate, pulled by the media tick.

Every source has ``rate``, ``frame_samples`` (``rate // 50``) and ``read()``, which returns the
next frame or None once finished; the last partial frame is zero-padded, so every frame is full.
All sources here also ``rewind()``, which ``LoopSource`` relies on. Concatenating sources keeps
each one's zero padding: at most 20 ms of silence per boundary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pbx.media.resample import resample
from pbx.media.wav import read_wav

__all__ = [
    "FRAME_MS",
    "ConcatSource",
    "FrameSource",
    "LoopSource",
    "PcmSource",
    "RewindableSource",
    "SilenceSource",
    "WavSource",
    "frame_samples_for",
    "frames",
]

Int16Array = npt.NDArray[np.int16]

FRAME_MS = 20


def frame_samples_for(rate: int) -> int:
    """Samples in a 20 ms frame at ``rate``; ValueError unless that is a whole number."""
    if rate <= 0 or (rate * FRAME_MS) % 1000:
        raise ValueError(f"a {FRAME_MS} ms frame at {rate} Hz is not a whole number of samples")
    return rate * FRAME_MS // 1000


@runtime_checkable
class FrameSource(Protocol):
    """Anything the engine can play: full frames of ``frame_samples`` int16, then None."""

    rate: int
    frame_samples: int

    def read(self) -> Int16Array | None:
        """The next frame, or None when finished."""
        ...


@runtime_checkable
class RewindableSource(FrameSource, Protocol):
    """A source that can start again from its beginning."""

    def rewind(self) -> None:
        """Restart from the first frame."""
        ...


def frames(source: FrameSource) -> Iterator[Int16Array]:
    """Every remaining frame of ``source``."""
    while (frame := source.read()) is not None:
        yield frame


# --- sources ------------------------------------------------------------------------------

class PcmSource:
    """Frames cut from an int16 array already at ``rate``."""

    def __init__(self, samples: Int16Array, rate: int) -> None:
        samples = np.asarray(samples)
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("samples must be a 1-D int16 array")
        self.rate = rate
        self.frame_samples = frame_samples_for(rate)
        self.samples = samples
        self._pos = 0

    @property
    def frame_count(self) -> int:
        """Frames this source yields in total."""
        return math.ceil(len(self.samples) / self.frame_samples)

    def read(self) -> Int16Array | None:
        """The next frame, zero-padded at the end; None when finished."""
        if self._pos >= len(self.samples):
            return None
        chunk = self.samples[self._pos:self._pos + self.frame_samples]
        self._pos += self.frame_samples
        frame = np.zeros(self.frame_samples, np.int16)
        frame[:len(chunk)] = chunk
        return frame

    def rewind(self) -> None:
        """Restart from the first frame."""
        self._pos = 0


class WavSource(PcmSource):
    """A WAV file (any format ``pbx.media.wav`` reads) resampled to ``rate``, read at once.

    Resampling is ``pbx.media.resample.resample``: a linear-phase filter, so the prompt starts
    a few ms late and its last few ms are cut, both inaudible in a prompt.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int) -> None:
        frame_samples_for(rate)
        samples, file_rate = read_wav(path)
        super().__init__(resample(samples, file_rate, rate), rate)
        self.path = os.fspath(path)
        self.file_rate = file_rate


class SilenceSource(PcmSource):
    """``duration`` seconds of silence (rounded up to whole frames)."""

    def __init__(self, duration: float, rate: int = 8000) -> None:
        if duration < 0:
            raise ValueError("duration must be >= 0")
        super().__init__(np.zeros(round(duration * rate), np.int16), rate)


class ConcatSource:
    """The sources one after another; they must share one rate."""

    def __init__(self, sources: Sequence[FrameSource]) -> None:
        if not sources:
            raise ValueError("ConcatSource needs at least one source")
        rates = {s.rate for s in sources}
        if len(rates) != 1:
            raise ValueError(f"sources have different rates: {sorted(rates)}")
        self.sources = list(sources)
        self.rate = self.sources[0].rate
        self.frame_samples = self.sources[0].frame_samples
        self._index = 0

    def read(self) -> Int16Array | None:
        """The next frame of the current source, moving on as each one ends."""
        while self._index < len(self.sources):
            frame = self.sources[self._index].read()
            if frame is not None:
                return frame
            self._index += 1
        return None

    def rewind(self) -> None:
        """Rewind every source and start from the first (they must all be rewindable)."""
        for s in self.sources:
            if not isinstance(s, RewindableSource):
                raise TypeError(f"{type(s).__name__} cannot rewind")
            s.rewind()
        self._index = 0


class LoopSource:
    """``source`` played ``times`` times, or forever when ``times`` is None.

    An empty source ends the loop at once instead of spinning.
    """

    def __init__(self, source: RewindableSource, times: int | None = None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for forever)")
        self.source = source
        self.times = times
        self.rate = source.rate
        self.frame_samples = source.frame_samples
        self._done = 0       # complete passes
        self._fresh = True   # nothing read since the last rewind

    def read(self) -> Int16Array | None:
        """The next frame, rewinding the source at its end while passes remain."""
        while self.times is None or self._done < self.times:
            frame = self.source.read()
            if frame is not None:
                self._fresh = False
                return frame
            if self._fresh:      # a pass that produced nothing: the source is empty
                return None
            self._done += 1
            self.source.rewind()
            self._fresh = True
        return None

    def rewind(self) -> None:
        """Start the first pass again."""
        self.source.rewind()
        self._done = 0
        self._fresh = True
