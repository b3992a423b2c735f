"""Selects the C media kernels or their pure-Python twins.

``PBX_NO_EXTENSIONS=1`` forces the twins. ``IMPLEMENTATION`` is ``"c"`` or ``"py"``; benchmarks
print it. The Python functions here are the readable reference the C code is checked against.
"""

from __future__ import annotations

from pbx.media._native import IMPLEMENTATION as _IMPL
from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "IMPLEMENTATION",
    "alaw_decode",
    "alaw_encode",
    "py_alaw_decode",
    "py_alaw_encode",
    "py_ulaw_decode",
    "py_ulaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def _py_linear_to_ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    value = -sample if sign else sample
    value = min(value, _ULAW_CLIP) + _ULAW_BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not value & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (value >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _py_ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    value = (((code & 0x0F) << 3) + _ULAW_BIAS) << exponent
    value -= _ULAW_BIAS
    return -value if code & 0x80 else value


def _py_linear_to_alaw(sample: int) -> int:
    if sample >= 0:
        mask, value = 0xD5, sample
    else:
        mask, value = 0x55, -sample - 1
    value >>= 3
    if value < 32:
        return ((value >> 1) & 0x0F) ^ mask
    seg = 1
    while seg < 8 and value >= (32 << seg):
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> seg) & 0x0F)) ^ mask


def _py_alaw_to_linear(code: int) -> int:
    code ^= 0x55
    seg = (code & 0x70) >> 4
    value = (code & 0x0F) << 4
    value = value + 8 if seg == 0 else (value + 0x108) << (seg - 1)
    return value if code & 0x80 else -value


_ULAW_DECODE_TABLE = [_py_ulaw_to_linear(c) for c in range(256)]
_ALAW_DECODE_TABLE = [_py_alaw_to_linear(c) for c in range(256)]


def _to_samples(pcm: bytes) -> list[int]:
    return [int.from_bytes(pcm[i : i + 2], "little", signed=True) for i in range(0, len(pcm) - 1, 2)]


def _from_samples(samples: list[int]) -> bytes:
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


def py_ulaw_encode(pcm: bytes) -> bytes:
    """Little-endian int16 PCM to G.711 mu-law bytes."""
    return bytes(_py_linear_to_ulaw(s) for s in _to_samples(pcm))


def py_ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law bytes to little-endian int16 PCM."""
    return _from_samples([_ULAW_DECODE_TABLE[c] for c in data])


def py_alaw_encode(pcm: bytes) -> bytes:
    """Little-endian int16 PCM to G.711 A-law bytes."""
    return bytes(_py_linear_to_alaw(s) for s in _to_samples(pcm))


def py_alaw_decode(data: bytes) -> bytes:
    """G.711 A-law bytes to little-endian int16 PCM."""
    return _from_samples([_ALAW_DECODE_TABLE[c] for c in data])


IMPLEMENTATION: str = _IMPL

if _lib is not None:

    def ulaw_encode(pcm: bytes) -> bytes:
        """Little-endian int16 PCM to G.711 mu-law bytes (C kernel)."""
        n = len(pcm) // 2
        out = _ffi.new("uint8_t[]", n)
        _lib.pbx_ulaw_encode(_ffi.from_buffer("int16_t[]", pcm), out, n)
        return bytes(_ffi.buffer(out, n))

    def ulaw_decode(data: bytes) -> bytes:
        """G.711 mu-law bytes to little-endian int16 PCM (C kernel)."""
        n = len(data)
        out = _ffi.new("int16_t[]", n)
        _lib.pbx_ulaw_decode(_ffi.from_buffer("uint8_t[]", data), out, n)
        return bytes(_ffi.buffer(out, 2 * n))

    def alaw_encode(pcm: bytes) -> bytes:
        """Little-endian int16 PCM to G.711 A-law bytes (C kernel)."""
        n = len(pcm) // 2
        out = _ffi.new("uint8_t[]", n)
        _lib.pbx_alaw_encode(_ffi.from_buffer("int16_t[]", pcm), out, n)
        return bytes(_ffi.buffer(out, n))

    def alaw_decode(data: bytes) -> bytes:
        """G.711 A-law bytes to little-endian int16 PCM (C kernel)."""
        n = len(data)
        out = _ffi.new("int16_t[]", n)
        _lib.pbx_alaw_decode(_ffi.from_buffer("uint8_t[]", data), out, n)
        return bytes(_ffi.buffer(out, 2 * n))

else:
    ulaw_encode = py_ulaw_encode
    ulaw_decode = py_ulaw_decode
    alaw_encode = py_alaw_encode
    alaw_decode = py_alaw_decode
