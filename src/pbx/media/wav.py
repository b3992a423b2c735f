"""WAV files: read any common PCM/float/G.711 WAV into int16, and write 16-bit PCM WAV.

The RIFF parser is our own because the stdlib ``wave`` reads integer PCM only (no float, no
mu-law/A-law). Reading accepts integer PCM of 8 (unsigned), 16, 24 and 32 bits, IEEE float of 32
and 64 bits, G.711 mu-law (format 7) and A-law (format 6), any channel count (averaged to mono
unless ``downmix=False``), any rate, and ``WAVE_FORMAT_EXTENSIBLE`` wrapping any of those.
Anything else raises ``WavError`` (a ``ParseError``) whose ``reason`` says what is wrong.
Conversions to int16: integers keep their top 16 bits (truncation), floats are scaled by 32768,
rounded and clipped.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pbx.errors import ParseError
from pbx.media import dsp

__all__ = [
    "HEADER_BYTES",
    "MAX_DATA_BYTES",
    "Wav",
    "WavError",
    "parse_wav",
    "read_wav",
    "wav_bytes",
    "wav_header",
    "write_wav",
]

Int16Array = npt.NDArray[np.int16]

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
# The 14 bytes after the 2-byte format code in a KSDATAFORMAT_SUBTYPE_* GUID.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_NAMES = {_PCM: "pcm", _FLOAT: "float", _ALAW: "alaw", _ULAW: "ulaw"}

HEADER_BYTES = 44
"""Size of the canonical header ``wav_header`` builds; audio starts at this offset."""
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)
"""Largest data chunk whose RIFF size still fits in 32 bits."""


class WavError(ParseError):
    """A WAV file that is malformed, truncated or in an encoding we do not read."""


@dataclass(frozen=True, slots=True)
class Wav:
    """Decoded audio: ``samples`` is int16, shape (n,) when downmixed else (n, channels)."""

    samples: Int16Array
    rate: int
    channels: int       # in the file
    encoding: str       # "pcm", "float", "ulaw" or "alaw"
    bits: int           # per sample in the file

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / self.rate


@dataclass(frozen=True, slots=True)
class _Fmt:
    tag: int
    channels: int
    rate: int
    block_align: int
    bits: int


def _parse_fmt(body: bytes) -> _Fmt:
    if len(body) < 16:
        raise WavError(f"fmt chunk too short ({len(body)} bytes)", data=body)
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise WavError("WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes", data=body)
        sub = body[24:40]
        if sub[2:] != _GUID_TAIL:
            raise WavError("unsupported WAVE_FORMAT_EXTENSIBLE sub-format GUID", data=sub)
        tag = int.from_bytes(sub[:2], "little")
    if tag not in _NAMES:
        raise WavError(f"unsupported WAV format code {tag:#06x}", data=body[:2])
    if channels < 1:
        raise WavError("WAV with zero channels")
    if rate < 1:
        raise WavError("WAV with a sample rate of 0")
    allowed = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64), _ALAW: (8,), _ULAW: (8,)}[tag]
    if bits not in allowed:
        raise WavError(f"unsupported {_NAMES[tag]} sample size: {bits} bits")
    if block_align != channels * bits // 8:
        raise WavError(f"block align {block_align} does not match {channels} x {bits} bits")
    return _Fmt(tag, channels, rate, block_align, bits)


def _to_int16(raw: bytes, fmt: _Fmt) -> Int16Array:
    """Interleaved samples of ``raw`` as int16, shape (frames, channels)."""
    if fmt.tag == _ULAW:
        flat = np.frombuffer(dsp.ulaw_decode(raw), "<i2").astype(np.int16)
    elif fmt.tag == _ALAW:
        flat = np.frombuffer(dsp.alaw_decode(raw), "<i2").astype(np.int16)
    elif fmt.tag == _FLOAT:
        x = np.frombuffer(raw, "<f4" if fmt.bits == 32 else "<f8").astype(np.float64)
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        flat = np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
    elif fmt.bits == 8:
        flat = ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif fmt.bits == 16:
        flat = np.frombuffer(raw, "<i2").astype(np.int16)
    elif fmt.bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        # Top 16 bits of each little-endian 24-bit sample: bytes 1 (low) and 2 (high, signed).
        flat = (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    else:
        flat = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    return flat.reshape(-1, fmt.channels)


def parse_wav(data: bytes, *, downmix: bool = True, allow_truncated: bool = False) -> Wav:
    """Decode a whole WAV file held in ``data``.

    ``downmix`` averages the channels into mono. ``allow_truncated`` accepts a data chunk that
    claims more bytes than the file holds (streamed WAVs, e.g. ``espeak-ng --stdout``) and keeps
    the whole frames present; otherwise that is a ``WavError``.
    """
    if len(data) < 12:
        raise WavError("not a WAV file: shorter than a RIFF header", data=data)
    if data[:4] == b"RF64":
        raise WavError("RF64 WAV files are not supported", data=data[:12])
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file: missing RIFF/WAVE signature", data=data[:12])
    fmt: _Fmt | None = None
    pos = 12
    while True:
        if pos + 8 > len(data):
            raise WavError("truncated WAV: no data chunk" if fmt else "truncated WAV: no fmt chunk")
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body_at = pos + 8
        if cid == b"fmt ":
            if body_at + size > len(data):
                raise WavError("truncated WAV: fmt chunk cut short")
            fmt = _parse_fmt(data[body_at:body_at + size])
        elif cid == b"data":
            if fmt is None:
                raise WavError("WAV data chunk before the fmt chunk")
            end = body_at + size
            if end > len(data):
                if not allow_truncated:
                    raise WavError(f"truncated WAV: data chunk claims {size} bytes, "
                                   f"{len(data) - body_at} present")
                end = body_at + (len(data) - body_at) // fmt.block_align * fmt.block_align
            elif size % fmt.block_align:
                if not allow_truncated:
                    raise WavError(f"truncated WAV: {size} data bytes is not a whole number "
                                   f"of {fmt.block_align}-byte frames")
                end = body_at + size // fmt.block_align * fmt.block_align
            frames = _to_int16(data[body_at:end], fmt)
            if downmix and fmt.channels > 1:
                mixed = frames.sum(axis=1, dtype=np.int32) // fmt.channels
                samples: Int16Array = mixed.astype(np.int16)
            else:
                samples = frames[:, 0].copy() if downmix else frames
            return Wav(samples, fmt.rate, fmt.channels, _NAMES[fmt.tag], fmt.bits)
        pos = body_at + size + (size & 1)  # chunks are padded to even sizes


def read_wav(path: str | os.PathLike[str], *, allow_truncated: bool = False) -> tuple[Int16Array, int]:
    """Mono int16 samples and the sample rate of the WAV file at ``path``."""
    with open(path, "rb") as f:
        wav = parse_wav(f.read(), allow_truncated=allow_truncated)
    return wav.samples, wav.rate


def wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV whose data chunk holds ``data_bytes``."""
    if not 0 <= data_bytes <= MAX_DATA_BYTES:
        raise ValueError(f"WAV data size {data_bytes} out of range")
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, _PCM, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


def _interleave(samples: Int16Array) -> tuple[bytes, int]:
    a = np.asarray(samples)
    if a.dtype != np.int16 or a.ndim not in (1, 2):
        raise ValueError("samples must be int16 of shape (n,) or (n, channels)")
    channels = 1 if a.ndim == 1 else a.shape[1]
    return np.ascontiguousarray(a).astype("<i2").tobytes(), channels


def wav_bytes(samples: Int16Array, rate: int) -> bytes:
    """A complete 16-bit PCM WAV file of ``samples`` (shape (n,) or (n, channels))."""
    raw, channels = _interleave(samples)
    return wav_header(rate, channels, len(raw)) + raw


def write_wav(path: str | os.PathLike[str], samples: Int16Array, rate: int) -> None:
    """Write ``samples`` as a 16-bit PCM WAV file, atomically: readers see the old file or the
    complete new one (a uniquely named temporary file is renamed over ``path``)."""
    data = wav_bytes(samples, rate)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".wav-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
