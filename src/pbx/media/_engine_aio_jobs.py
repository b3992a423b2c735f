"""What the media engine's shell plays, records and mixes: Playback, Recording, Conference.

Shell objects of ``pbx.media.engine`` (asyncio lives here: a ``Playback`` is awaitable). The
frame work itself is the backend's: Python only hands it prompt frames a few ticks ahead (the
playout ring, ``RING`` entries) and collects recorded frames in batches (the taps, every half
second), so a playing or recording stream costs Python one call per few ticks, not per frame.

- Playing: a stream plays its ``Playback`` jobs one after another (FIFO). Only the job at the
  head has entries in the ring, so stopping it flushes the ring and the next job starts on the
  next tick. A job completes after the tick that sent its last frame; sources at any rate are
  resampled to the stream's codec rate (and again if a re-INVITE changes it).
- Recording: WAV through ``pbx.media.recorder.WavRecorder``, flushed every second; mono (what
  the stream receives), stereo (left: what it receives, right: what it sends) or mixed (the
  saturated sum of both); a conference records its mix of everyone.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from pbx.media.playback import FrameSource
from pbx.media.recorder import WavRecorder
from pbx.media.resample import Resampler
from pbx.rtp.dtmf import DtmfSender

if TYPE_CHECKING:
    from pbx.media.engine import MediaEngine, Stream

__all__ = ["RING", "Conference", "FrameReader", "Playback", "RecordMode", "Recording"]

RING = 8                       # playout ring entries per stream (PBX_ENGINE_RING)
TAP_RX, TAP_TX = 1, 2
CONF_MUTED, CONF_DEAF = 1, 2
WHISPER_NOBODY = -2

Int16Array = npt.NDArray[np.int16]
RecordMode = Literal["mono", "stereo", "mixed"]
Entry = tuple[Any, ...]        # (0, pcm frame) or (1, payload, marker, ts_off)


class _SourceFrames:
    """Frames of a ``FrameSource`` at the rate asked for, resampled when it differs."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._rate = 0
        self._resampler: Any = None
        self._fifo = np.zeros(0, np.int16)
        self._ended = False

    def next(self, rate: int, frame: int) -> Int16Array | None:
        if rate != self._rate:
            self._rate = rate
            self._resampler = None if rate == self.source.rate else Resampler(self.source.rate,
                                                                              rate)
            self._fifo = np.zeros(0, np.int16)
        while len(self._fifo) < frame and not self._ended:
            got = self.source.read()
            if got is None:
                self._ended = True
                break
            x = np.asarray(got, np.int16)
            if self._resampler is not None:
                x = self._resampler.process(x)
            self._fifo = np.concatenate((self._fifo, x))
        if not len(self._fifo):
            return None
        out = np.zeros(frame, np.int16)
        take = self._fifo[:frame]
        out[:len(take)] = take
        self._fifo = self._fifo[frame:]
        return out


def _dtmf_entries(digits: str, duration_ms: int, gap_ms: int, clock_rate: int,
                  volume: int) -> Iterator[Entry | None]:
    """RFC 4733 packets of ``digits`` (one ring entry per tick), with ``gap_ms`` of silence
    (None entries) after each digit. Timestamps are relative to each event's start."""
    for digit in digits:
        for p in DtmfSender(digit, 0, clock_rate=clock_rate, duration_ms=duration_ms,
                            volume=volume).packets():
            yield (1, p.payload, p.marker, p.timestamp)
        for _ in range(max(gap_ms, 0) // 20):
            yield None


class Playback:
    """A source or digits being played into a stream.

    ``await playback`` waits until the last frame went out (True) or it was stopped (False);
    awaiting does not stop it when the awaiting task is cancelled: call ``stop()``.
    """

    def __init__(self, stream: Stream, what: str, source: _SourceFrames | None = None,
                 events: Iterator[Entry | None] | None = None) -> None:
        self.stream = stream
        self.what = what
        self._source = source
        self._events = events
        self._future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.end_mark: int | None = None
        self.started = False

    def __repr__(self) -> str:
        state = ("stopped" if self.stopped else "done") if self.done else "playing"
        return f"<Playback {self.what} on port {self.stream.port} {state}>"

    @property
    def done(self) -> bool:
        return self._future.done()

    @property
    def stopped(self) -> bool:
        """True when it ended before its last frame (``stop()``, or the stream closed)."""
        return self._future.done() and not self._future.result()

    def stop(self) -> None:
        """Stop at once (the frames already queued are dropped). Idempotent."""
        if not self.done:
            self.stream._engine._player_for(self.stream).stop(self)

    def __await__(self) -> Generator[Any, None, bool]:
        return asyncio.shield(self._future).__await__()

    def next_entry(self, rate: int, frame: int) -> Entry | None:
        """The next ring entry, or None at the end."""
        if self._events is not None:
            try:
                e = next(self._events)
            except StopIteration:
                return None
            return e if e is not None else (0, np.zeros(frame, np.int16))
        assert self._source is not None
        pcm = self._source.next(rate, frame)
        return None if pcm is None else (0, pcm)

    def _finish(self, completed: bool) -> None:
        if not self._future.done():
            self._future.set_result(completed)


class _Player:
    """One stream's playout queue, feeding the backend's ring."""

    def __init__(self, engine: MediaEngine, stream: Stream) -> None:
        self.engine = engine
        self.stream = stream
        self.jobs: deque[Playback] = deque()

    def add(self, job: Playback) -> None:
        self.jobs.append(job)
        self.engine._require().play_want(self.stream._key, True)
        self.feed()

    def stop(self, job: Playback) -> None:
        if job not in self.jobs:
            job._finish(False)
            return
        impl = self.engine._require()
        if job is self.jobs[0] and job.started:
            impl.play_flush(self.stream._key)
        self.jobs.remove(job)
        job._finish(False)
        self.feed()

    def close(self) -> None:
        for job in self.jobs:
            job._finish(False)
        self.jobs.clear()

    def feed(self) -> None:
        """Complete the jobs that went out; top the ring up with the head job's entries."""
        impl = self.engine._require()
        key = self.stream._key
        queued, consumed = impl.play_status(key)
        rate, frame = self.stream._rate, self.stream._frame
        while self.jobs:
            job = self.jobs[0]
            if job.end_mark is not None:
                if consumed < job.end_mark:
                    return
                self.jobs.popleft()
                job._finish(True)
                continue
            batch: list[Int16Array] = []
            while queued + len(batch) < RING:
                entry = job.next_entry(rate, frame)
                if entry is None:
                    job.end_mark = consumed + queued + len(batch)
                    break
                job.started = True
                if entry[0] == 0:
                    batch.append(entry[1])
                    continue
                queued += self._push(batch)
                batch = []
                if impl.play_push_event(key, entry[1], entry[2], entry[3]):
                    queued += 1
            queued += self._push(batch)
            if job.end_mark is None:
                return
        impl.play_want(key, False)

    def _push(self, batch: list[Int16Array]) -> int:
        if not batch:
            return 0
        return self.engine._require().play_push(self.stream._key, np.stack(batch))


class Recording:
    """A WAV file being written from a stream's or a conference's audio; ``stop()`` ends it."""

    def __init__(self, owner: Stream | Conference, path: str | os.PathLike[str], rate: int,
                 mode: RecordMode) -> None:
        if mode not in ("mono", "stereo", "mixed"):
            raise ValueError(f"record mode must be mono, stereo or mixed, not {mode!r}")
        self.owner = owner
        self.mode: RecordMode = mode
        self.rate = rate
        self._rec = WavRecorder(path, rate, 2 if mode == "stereo" else 1, flush_seconds=1.0)
        self.path = self._rec.path

    def __repr__(self) -> str:
        return f"<Recording {self.path} {self.mode} {self.duration:.1f} s>"

    @property
    def taps(self) -> int:
        return TAP_RX if self.mode == "mono" else TAP_RX | TAP_TX

    @property
    def closed(self) -> bool:
        return self._rec.closed

    @property
    def duration(self) -> float:
        """Seconds recorded so far (collected from the engine every half second)."""
        return self._rec.duration

    def write(self, rx: Int16Array, tx: Int16Array | None) -> None:
        if self._rec.closed or not len(rx):
            return
        if self.mode == "mono":
            self._rec.write(rx.ravel())
        else:
            assert tx is not None
            self._rec.write_stereo(rx.ravel(), tx.ravel())

    def stop(self) -> None:
        """Write what is left and close the file. Idempotent."""
        if not self._rec.closed:
            self.owner._engine._stop_recording(self)

    def _close(self) -> None:
        self._rec.close()


class FrameReader:
    """What a stream receives, decoded, as it comes: ``async for frame in reader``.

    Frames are int16 at the stream's rate, collected from the engine after every tick (one
    backend call per tick while a reader is open). At most ``maxsize`` wait; older ones are
    dropped and counted in ``dropped``. ``close()`` ends the iteration.
    """

    taps = TAP_RX

    def __init__(self, owner: Stream, maxsize: int = 250) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.owner = owner
        self.maxsize = maxsize
        self.dropped = 0
        self._q: deque[Int16Array] = deque()
        self._wake: asyncio.Event = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, rx: Int16Array, tx: Int16Array | None) -> None:
        for row in rx:
            if len(self._q) >= self.maxsize:
                self._q.popleft()
                self.dropped += 1
            self._q.append(np.array(row, np.int16))
        if len(rx):
            self._wake.set()

    def __aiter__(self) -> FrameReader:
        return self

    async def __anext__(self) -> Int16Array:
        while not self._q:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._q.popleft()

    def close(self) -> None:
        """Stop reading (frames already collected can still be taken). Idempotent."""
        if not self._closed:
            self.owner._engine._stop_recording(self)

    def _close(self) -> None:
        self._closed = True
        self._wake.set()


class _Member:
    __slots__ = ("deaf", "muted", "whisper_to")

    def __init__(self, muted: bool, deaf: bool) -> None:
        self.muted = muted
        self.deaf = deaf
        self.whisper_to: Stream | None = None

    @property
    def flags(self) -> int:
        return (CONF_MUTED if self.muted else 0) | (CONF_DEAF if self.deaf else 0)


class Conference:
    """N-party mixing in the engine: every member hears the others, never itself.

    Mixed at ``rate`` (members whose codec runs at another rate are resampled both ways). Each
    change (join, leave, mute, deafen, whisper) takes effect at the next tick, never within a
    frame. A member is heard by every other one unless muted, or whispering: then only by the
    member it whispers to (a whisper to a member who left is heard by nobody). A deaf member
    receives nothing from the conference (silence, or what it plays).
    """

    def __init__(self, engine: MediaEngine, cid: int, rate: int) -> None:
        self._engine = engine
        self._cid = cid
        self.rate = rate
        self._members: dict[Stream, _Member] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<Conference {self._cid} at {self.rate} Hz, {len(self._members)} members>"

    @property
    def members(self) -> list[Stream]:
        return list(self._members)

    @property
    def closed(self) -> bool:
        return self._closed

    def __contains__(self, stream: object) -> bool:
        return stream in self._members

    def __len__(self) -> int:
        return len(self._members)

    def join(self, stream: Stream, *, muted: bool = False, deaf: bool = False) -> None:
        """Add ``stream`` (one conference at a time per stream)."""
        impl = self._live()
        self._engine._impl_for(stream)
        if stream._conference is not None:
            raise ValueError(f"{stream} is in a conference already")
        m = _Member(muted, deaf)
        impl.conf_join(self._cid, stream._key, m.flags)
        self._members[stream] = m
        stream._conference = self
        for other, om in self._members.items():    # whispers to it are heard again
            if om.whisper_to is stream:
                self._apply(other, om)

    def leave(self, stream: Stream) -> None:
        """Remove ``stream``; whispers to it are heard by nobody until it joins again."""
        self._live().conf_leave(stream._key)
        self._forget(stream)

    def mute(self, stream: Stream, on: bool = True) -> None:
        m = self._member(stream)
        m.muted = on
        self._apply(stream, m)

    def deafen(self, stream: Stream, on: bool = True) -> None:
        m = self._member(stream)
        m.deaf = on
        self._apply(stream, m)

    def whisper(self, stream: Stream, to: Stream | None = None) -> None:
        """From the next tick ``stream`` is heard by ``to`` only (None: by everyone again)."""
        m = self._member(stream)
        if to is not None:
            if to is stream:
                raise ValueError("a member cannot whisper to itself")
            self._member(to)
        m.whisper_to = to
        self._apply(stream, m)

    def record(self, path: str | os.PathLike[str]) -> Recording:
        """Record the mix of everyone (whispers excepted) as a mono WAV at the conference rate."""
        self._live()
        return self._engine._record_conference(self, path)

    def close(self) -> None:
        """Every member leaves; recordings stop. Idempotent."""
        if self._closed:
            return
        self._engine._close_conference(self)

    # -- internals ----------------------------------------------------------------------------

    def _live(self) -> Any:
        if self._closed:
            raise ValueError("conference closed")
        return self._engine._require()

    def _member(self, stream: Stream) -> _Member:
        self._live()
        try:
            return self._members[stream]
        except KeyError:
            raise ValueError(f"{stream} is not in the conference") from None

    def _apply(self, stream: Stream, m: _Member) -> None:
        to = m.whisper_to               # a member that left (or closed): heard by nobody
        if to is None:
            target = -1
        elif to in self._members:
            target = to._key
        else:
            target = WHISPER_NOBODY
        self._engine._require().conf_set(stream._key, m.flags, target)

    def _forget(self, stream: Stream, closed: bool = False) -> None:
        self._members.pop(stream, None)
        stream._conference = None
        if closed:            # it can never rejoin, and its slot may be reused: nobody hears
            for other, om in self._members.items():
                if om.whisper_to is stream:
                    self._apply(other, om)
