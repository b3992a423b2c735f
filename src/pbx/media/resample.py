"""Sample-rate conversion by a rational factor with a windowed-sinc polyphase FIR.

The ratio ``dst/src`` is reduced to ``up/down``. One Kaiser-windowed sinc prototype (designed at
``src * up``) is cut into ``up`` phases of ``taps`` coefficients each, quantized to Q15 (each
phase then sums to exactly 32768, so DC passes at unity gain). Output sample ``n`` sits at
upsampled position ``n * down``: input index ``(n * down) // up`` and phase ``(n * down) % up``.
Anti-aliasing: pass band up to 0.43 * min(src, dst), stop band (>= 70 dB) from 0.5 * min(src,
dst), so telephone audio (to 3.4 kHz at 8 kHz) passes flat and nothing folds back.

The filter is linear phase: the output lags the input by ``delay`` output samples (about 4 ms for
8 <-> 48 kHz). ``Resampler`` keeps the last ``taps - 1`` input samples and the phase across calls,
so feeding 20 ms frames gives exactly the same samples as one call on their concatenation;
``resample`` is one such call from silence. Every 20 ms frame at rates that are multiples of
50 Hz maps to a whole number of output samples.

Arithmetic is integer (int16 samples, int32 Q15 coefficients, 64-bit sums, round half up,
saturate), so the C kernel (``cext/resample.c``) and the Python twin (``PyResampler``, numpy)
give bit-identical output; the filter design is done in IEEE double with the same operations in
the same order on both sides (and checked equal by the tests).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "MAX_TAPS",
    "MAX_UP",
    "CResampler",
    "PyResampler",
    "Resampler",
    "design",
    "resample",
]

Int16Array = npt.NDArray[np.int16]
Int32Array = npt.NDArray[np.int32]

MAX_UP = 2048
"""Largest interpolation factor (``dst / gcd``) accepted."""
MAX_TAPS = 1 << 19
"""Largest prototype filter length (``up * taps``) accepted."""

_ATTEN_DB = 70.0      # stop band attenuation the filter length is chosen for
_BETA = 0.1102 * (_ATTEN_DB - 8.7)
_BLOCK = 4096         # outputs computed per numpy step (bounds the temporary arrays)


def _bessel_i0(x: float) -> float:
    """Modified Bessel function I0 by its power series (same order of operations as in C)."""
    half = x / 2.0
    term = 1.0
    total = 1.0
    k = 1
    while True:
        term = term * half / k
        sq = term * term
        total = total + sq
        if sq < total * 1e-21:
            return total
        k += 1


def _params(src_rate: int, dst_rate: int) -> tuple[int, int, int]:
    """(up, down, taps per phase) for a conversion, or ValueError."""
    if not (0 < src_rate <= 1_000_000 and 0 < dst_rate <= 1_000_000):
        raise ValueError(f"unsupported sample rates {src_rate} -> {dst_rate}")
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    if up > MAX_UP:
        raise ValueError(f"ratio {dst_rate}/{src_rate} needs interpolation by {up} > {MAX_UP}")
    fmin = min(src_rate, dst_rate)
    fu = src_rate * up
    dw = 2.0 * math.pi * (7.0 * fmin) / (100.0 * fu)      # transition width 0.07 * fmin
    n0 = math.ceil((_ATTEN_DB - 8.0) / (2.285 * dw)) + 1
    taps = max(2, (n0 + up - 1) // up)
    if taps * up > MAX_TAPS:
        raise ValueError(f"ratio {dst_rate}/{src_rate} needs a filter longer than {MAX_TAPS}")
    return up, down, taps


@lru_cache(maxsize=64)
def _design(src_rate: int, dst_rate: int) -> tuple[int, int, Int32Array]:
    up, down, taps = _params(src_rate, dst_rate)
    n = taps * up
    fmin = min(src_rate, dst_rate)
    fu = src_rate * up
    fc = (93.0 * fmin) / (200.0 * fu)                      # cutoff 0.465 * fmin, cycles/sample
    centre = (n - 1) / 2.0
    i0b = _bessel_i0(_BETA)
    q = np.zeros(n, dtype=np.int64)
    for k in range(n):
        t = k - centre
        h = 2.0 * fc if t == 0.0 else math.sin(2.0 * math.pi * fc * t) / (math.pi * t)
        r = 2.0 * k / (n - 1) - 1.0
        w = _bessel_i0(_BETA * math.sqrt(1.0 - r * r)) / i0b
        q[k] = math.floor(up * (h * w) * 32768.0 + 0.5)
    coefs = q.reshape(taps, up).T.copy()                  # coefs[p, t] = q[p + t * up]
    for p in range(up):                                   # each phase sums to exactly 1.0
        big = int(np.argmax(np.abs(coefs[p])))
        coefs[p, big] += 32768 - int(coefs[p].sum())
    out = coefs.astype(np.int32)
    out.setflags(write=False)
    return up, down, out


def design(src_rate: int, dst_rate: int) -> tuple[int, int, Int32Array]:
    """(up, down, coefs) with ``coefs[phase, tap]`` in Q15; read-only, cached per ratio."""
    return _design(src_rate, dst_rate)


class PyResampler:
    """Streaming rational resampler, pure Python/numpy reference twin of the C kernel."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.up, self.down, self._coefs = design(src_rate, dst_rate)
        self.taps = self._coefs.shape[1]
        self._c64 = self._coefs.astype(np.int64)
        self.reset()

    @property
    def delay(self) -> float:
        """Group delay of the filter in output samples."""
        return float((self.taps * self.up - 1) / (2.0 * self.down))

    def reset(self) -> None:
        """Forget the history: the next call starts from silence."""
        self._hist = np.zeros(self.taps - 1, dtype=np.int64)
        self._pos = 0

    def process(self, frame: Int16Array) -> Int16Array:
        """Resample the next chunk of the stream (any length)."""
        x = np.asarray(frame, dtype=np.int16)
        k = len(x)
        ext = np.concatenate([self._hist, x.astype(np.int64)])
        span = k * self.up
        count = (span - self._pos + self.down - 1) // self.down if span > self._pos else 0
        out = np.empty(count, dtype=np.int16)
        back = np.arange(self.taps, dtype=np.int64)
        for start in range(0, count, _BLOCK):
            pos = self._pos + self.down * np.arange(start, min(count, start + _BLOCK),
                                                    dtype=np.int64)
            base = pos // self.up + (self.taps - 1)
            acc = (ext[base[:, None] - back[None, :]] * self._c64[pos % self.up]).sum(axis=1)
            out[start:start + len(pos)] = np.clip((acc + 16384) >> 15, -32768, 32767)
        self._pos += count * self.down - span
        self._hist = ext[len(ext) - (self.taps - 1):]
        return out


class CResampler:
    """Streaming rational resampler on the C kernel; ``native`` is (ffi, lib)."""

    def __init__(self, src_rate: int, dst_rate: int,
                 native: tuple[Any, Any] | None = None) -> None:
        self._ffi, self._lib = native if native is not None else (_ffi, _lib)
        if self._lib is None:
            raise RuntimeError("the C kernels are not available")
        _params(src_rate, dst_rate)                        # same ValueError as the twin
        ptr = self._lib.pbx_resample_new(src_rate, dst_rate)
        if ptr == self._ffi.NULL:
            raise ValueError(f"unsupported sample rates {src_rate} -> {dst_rate}")
        self._r = self._ffi.gc(ptr, self._lib.pbx_resample_free)
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        up = self._ffi.new("int32_t *")
        down = self._ffi.new("int32_t *")
        taps = self._ffi.new("int32_t *")
        self._lib.pbx_resample_info(self._r, up, down, taps)
        self.up, self.down, self.taps = up[0], down[0], taps[0]

    @property
    def delay(self) -> float:
        """Group delay of the filter in output samples."""
        return float((self.taps * self.up - 1) / (2.0 * self.down))

    def coefs(self) -> Int32Array:
        """The C kernel's Q15 coefficient table, ``[phase, tap]`` (for checking the design)."""
        n = self.up * self.taps
        buf = self._ffi.buffer(self._lib.pbx_resample_coefs(self._r), 4 * n)
        return np.frombuffer(buf, dtype=np.int32).reshape(self.up, self.taps).copy()

    def reset(self) -> None:
        """Forget the history: the next call starts from silence."""
        self._lib.pbx_resample_reset(self._r)

    def process(self, frame: Int16Array) -> Int16Array:
        """Resample the next chunk of the stream (any length)."""
        x = np.ascontiguousarray(frame, dtype=np.int16)
        out = np.empty(self._lib.pbx_resample_max_out(self._r, len(x)), dtype=np.int16)
        n = self._lib.pbx_resample_process(self._r, self._ffi.from_buffer("int16_t[]", x),
                                           len(x), self._ffi.from_buffer("int16_t[]", out))
        return out[:n]


Resampler: type[CResampler] | type[PyResampler] = CResampler if _lib is not None else PyResampler
"""The live streaming resampler: the C kernel when built, else the Python twin."""


def resample(samples: Int16Array, src_rate: int, dst_rate: int) -> Int16Array:
    """Resample a whole signal (from silence); equal rates return a copy."""
    if src_rate == dst_rate:
        return np.array(samples, dtype=np.int16)
    return Resampler(src_rate, dst_rate).process(samples)
