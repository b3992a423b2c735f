"""Streaming WAV recorder whose file stays valid if the process dies.

Audio is buffered in memory and flushed at least every ``flush_seconds`` of audio (1 s by
default): the samples are appended first, then the RIFF and data sizes are rewritten with one
``pwrite`` of the 44-byte header. A process killed at any instant (even SIGKILL) therefore leaves
a playable file holding everything up to the last flush; at worst it is followed by some bytes
the header does not count yet, which readers ignore. The OS keeps written data across a process
crash without ``fsync``; pass ``fsync=True`` to survive a power loss too, at the cost of a disk
sync per flush.

Two layouts: ``channels=2`` puts party A on the left and B on the right (``write_stereo``);
``channels=1`` records one stream (``write``) or the saturated sum of two (``write_stereo``).
Writes are plain blocking file I/O of a few KB per second: cheap enough for the media tick.
"""

from __future__ import annotations

import os
from types import TracebackType

import numpy as np
import numpy.typing as npt

from pbx.errors import PbxError
from pbx.media.wav import HEADER_BYTES, MAX_DATA_BYTES, wav_header

__all__ = ["RecorderError", "WavRecorder"]

Int16Array = npt.NDArray[np.int16]


class RecorderError(PbxError):
    """The recording cannot continue: closed, or the 4 GiB WAV size limit reached."""


def _check(frame: Int16Array | None, name: str) -> Int16Array | None:
    if frame is not None and (frame.dtype != np.int16 or frame.ndim != 1):
        raise ValueError(f"{name} must be a 1-D int16 array")
    return frame


class WavRecorder:
    """16-bit PCM WAV written as it goes: ``write``/``write_stereo`` per frame, ``close`` at the end.

    ``flush_seconds`` bounds how much audio a crash can lose (flushes happen once that much is
    buffered); ``flush()`` forces one.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int, channels: int = 1, *,
                 flush_seconds: float = 1.0, fsync: bool = False) -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 (mono or mixed) or 2 (stereo)")
        if rate <= 0 or flush_seconds <= 0:
            raise ValueError("rate and flush_seconds must be positive")
        self.path = os.fspath(path)
        self.rate = rate
        self.channels = channels
        self.fsync = fsync
        self._flush_frames = max(1, int(rate * flush_seconds))
        self._pending: list[bytes] = []
        self._pending_frames = 0
        self._flushed_bytes = 0
        self._total_bytes = 0
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._write_all(wav_header(rate, channels, 0))

    # -- state -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close`` has run."""
        return self._fd is None

    @property
    def frames_written(self) -> int:
        """Sample frames (one sample per channel) accepted so far."""
        return self._total_bytes // (2 * self.channels)

    @property
    def frames_flushed(self) -> int:
        """Sample frames safely in the file and counted by its header."""
        return self._flushed_bytes // (2 * self.channels)

    @property
    def duration(self) -> float:
        """Seconds of audio accepted so far."""
        return self.frames_written / self.rate

    # -- writing ---------------------------------------------------------------------------

    def write(self, frame: Int16Array) -> None:
        """Append one mono frame (mono recorders only)."""
        if self.channels != 1:
            raise ValueError("write() is for mono recorders; use write_stereo(left, right)")
        _check(frame, "frame")
        self._append(frame.astype("<i2", copy=False).tobytes(), len(frame))

    def write_stereo(self, left: Int16Array | None, right: Int16Array | None) -> None:
        """Append party A (``left``) and party B (``right``); None is silence for that party.

        Stereo recorders keep one party per channel, mono ones store the saturated sum.
        """
        _check(left, "left")
        _check(right, "right")
        ref = left if left is not None else right
        if ref is None:
            raise ValueError("write_stereo needs at least one frame")
        n = len(ref)
        if (left is not None and len(left) != n) or (right is not None and len(right) != n):
            raise ValueError("left and right frames differ in length")
        if self.channels == 2:
            both = np.zeros((n, 2), "<i2")
            if left is not None:
                both[:, 0] = left
            if right is not None:
                both[:, 1] = right
            self._append(both.tobytes(), n)
            return
        total = np.zeros(n, np.int32)
        for part in (left, right):
            if part is not None:
                total += part
        self._append(np.clip(total, -32768, 32767).astype("<i2").tobytes(), n)

    def _append(self, raw: bytes, frames: int) -> None:
        if self._fd is None:
            raise RecorderError(f"recorder for {self.path} is closed")
        if self._total_bytes + len(raw) > MAX_DATA_BYTES:
            raise RecorderError(f"{self.path}: WAV size limit (4 GiB) reached")
        self._pending.append(raw)
        self._pending_frames += frames
        self._total_bytes += len(raw)
        if self._pending_frames >= self._flush_frames:
            self.flush()

    def _write_all(self, raw: bytes) -> None:
        assert self._fd is not None
        view = memoryview(raw)
        while view:
            view = view[os.write(self._fd, view):]

    def flush(self) -> None:
        """Append the buffered audio, then rewrite the header sizes in one ``pwrite``."""
        if self._fd is None or not self._pending:
            return
        self._write_all(b"".join(self._pending))
        self._pending.clear()
        self._pending_frames = 0
        self._flushed_bytes = self._total_bytes
        header = wav_header(self.rate, self.channels, self._flushed_bytes)
        assert len(header) == HEADER_BYTES
        if os.pwrite(self._fd, header, 0) != HEADER_BYTES:  # pragma: no cover - disk full
            raise RecorderError(f"{self.path}: short header write")
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush what is left and close the file. Idempotent."""
        if self._fd is None:
            return
        try:
            self.flush()
            if self.fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WavRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
