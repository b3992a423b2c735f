"""Packet-loss concealment after ITU-T G.711 Appendix I, in integer arithmetic.

While frames arrive, ``good`` keeps a history of the last 48.75 ms (390 samples at 8 kHz) and
returns each frame delayed by ``delay`` samples (3.75 ms, a quarter of the longest pitch
period), so that the first concealed frame can be blended into audio not yet played. For a lost
frame, ``missing``:

- at the start of a loss, estimates the pitch period by normalized cross-correlation of the last
  20 ms with the history (periods of 5 to 15 ms; coarse search on every ``ndec``-th sample, then
  a fine search around the best lag), and replays the last period, overlap-adding a quarter
  period at the seam and over the delayed tail of the real signal;
- after 10 ms and again after 20 ms of loss, widens the replayed buffer to two and then three
  pitch periods (cross-faded), which avoids the buzz of a single period repeated for long;
- from 10 ms on, attenuates linearly by 20 % per 10 ms, and is silent from 60 ms on.

On the first good frame after a loss the concealment signal is overlap-added into it (over a
quarter period plus 4 ms per extra 10 ms lost). Work is done in 10 ms blocks; every length scales
with the rate, so 8, 16, 24, 32 and 48 kHz all work (multiples of 8 kHz).

Integer arithmetic throughout (Q15 weights and gains, round half up, saturation; the pitch scores
are ``corr / sqrt(energy)`` in IEEE double from exact integer sums), so the C kernel
(``cext/plc.c``) and the Python twin ``PyPlc`` give identical samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = ["SUPPORTED_RATES", "CPlc", "Plc", "PyPlc"]

Int16Array = npt.NDArray[np.int16]
I64 = npt.NDArray[np.int64]

SUPPORTED_RATES = (8000, 16000, 24000, 32000, 48000)
"""Rates the concealment supports (all lengths are the 8 kHz ones times rate / 8000)."""

_MIN_POWER = 250      # energy floor of the pitch score (avoids dividing by ~0 on silence)
_ATTEN_BLOCKS = 5     # 20 % per 10 ms: gain reaches 0 after 5 attenuated blocks
_SILENT_AFTER = 6     # blocks (60 ms) after which the output is silence
_MAX_ERASED = 1000    # the loss counter stops here (its effect saturates long before)


class _Dims:
    """Every length of the algorithm at one rate."""

    def __init__(self, rate: int) -> None:
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"PLC supports rates {SUPPORTED_RATES}, not {rate}")
        k = rate // 8000
        self.block = 80 * k               # 10 ms processing unit
        self.pitch_min = 40 * k           # 5 ms (200 Hz)
        self.pitch_max = 120 * k          # 15 ms (66.7 Hz)
        self.overlap_max = self.pitch_max // 4
        self.hist = 3 * self.pitch_max + self.overlap_max
        self.corr_len = 160 * k           # 20 ms compared
        self.ndec = 2 * k                 # coarse search step
        self.eoverlap_incr = 32 * k       # 4 ms more merge per extra 10 ms lost


def _ola(left: I64, right: I64) -> I64:
    """Cross-fade from ``left`` to ``right`` (weights (i + 1) / n), saturated."""
    n = len(left)
    rw = (np.arange(1, n + 1, dtype=np.int64) << 15) // n
    out: I64 = np.clip((left * (32768 - rw) + right * rw + 16384) >> 15, -32768, 32767)
    return out


class PyPlc:
    """G.711 Appendix I style concealment, pure Python/numpy reference twin of the C kernel."""

    def __init__(self, rate: int, frame_samples: int) -> None:
        self._d = _Dims(rate)
        if frame_samples <= 0 or frame_samples % self._d.block:
            raise ValueError(f"frame_samples must be a multiple of {self._d.block} (10 ms)")
        self.rate = rate
        self.frame_samples = frame_samples
        self.delay = self._d.overlap_max
        """Output lags input by this many samples (3.75 ms)."""
        self._history = np.zeros(self._d.hist, dtype=np.int64)
        self._pitchbuf = np.zeros(self._d.hist, dtype=np.int64)
        self._lastq = np.zeros(0, dtype=np.int64)
        self.erased = 0
        """Consecutive 10 ms blocks concealed so far (0 while frames arrive)."""
        self.pitch = 0
        """Pitch period (samples) found at the start of the current or last loss."""
        self._poverlap = 0
        self._poffset = 0
        self._pitchblen = 0

    # -- the two calls ------------------------------------------------------------------------

    def good(self, frame: Int16Array) -> Int16Array:
        """A received frame (any length): returns the same number of samples, ``delay`` late."""
        x = np.asarray(frame, dtype=np.int16).astype(np.int64)
        out = np.empty(len(x), dtype=np.int16)
        block = self._d.block
        for start in range(0, len(x), block):
            chunk = x[start:start + block].copy()
            if self.erased:
                olen = min(self._poverlap + (self.erased - 1) * self._d.eoverlap_incr,
                           block, len(chunk))
                self._merge(chunk, self._fespeech(olen), olen)
                self.erased = 0
            out[start:start + len(chunk)] = self._save(chunk)
        return out

    def missing(self, samples: int | None = None) -> Int16Array:
        """Concealment for a lost frame of ``samples`` (default ``frame_samples``; a multiple of
        10 ms), returned ``delay`` late like every frame."""
        n = self.frame_samples if samples is None else samples
        if n < 0 or n % self._d.block:
            raise ValueError(f"concealment comes in multiples of {self._d.block} samples (10 ms)")
        out = np.empty(n, dtype=np.int16)
        for start in range(0, n, self._d.block):
            out[start:start + self._d.block] = self._conceal_block()
        return out

    # -- internals ----------------------------------------------------------------------------

    def _save(self, chunk: I64) -> Int16Array:
        """Append to the history and return the delayed output of the same length."""
        n, h, lag = len(chunk), self._d.hist, self._d.overlap_max
        self._history = np.concatenate([self._history[n:], chunk])
        return self._history[h - n - lag:h - lag].astype(np.int16)

    def _fespeech(self, count: int) -> I64:
        """The next ``count`` samples of the replayed pitch buffer."""
        start = self._d.hist - self._pitchblen
        period = self._pitchbuf[start:]
        idx = (self._poffset + np.arange(count)) % self._pitchblen
        self._poffset = (self._poffset + count) % self._pitchblen
        return period[idx]

    def _merge(self, chunk: I64, conceal: I64, olen: int) -> None:
        """Fade the concealment (at its current gain) out and the new frame in over ``olen``."""
        gain = max(0, (32768 * (_ATTEN_BLOCKS + 1 - self.erased)) // _ATTEN_BLOCKS)
        i = np.arange(olen, dtype=np.int64)
        lw = (gain * (olen - 1 - i)) // olen
        rw = ((i + 1) << 15) // olen
        chunk[:olen] = np.clip((conceal * lw + chunk[:olen] * rw + 16384) >> 15, -32768, 32767)

    def _tail_ola(self) -> None:
        """Blend the saved original tail into the samples before the replay start (the seam)."""
        h, po = self._d.hist, self._poverlap
        start = h - self._pitchblen
        self._pitchbuf[h - po:] = _ola(self._lastq, self._pitchbuf[start - po:start])

    def _attenuate(self, s: I64) -> I64:
        block = self._d.block
        steps = (self.erased - 1) * block + np.arange(block, dtype=np.int64)
        gain = 32768 - (steps * 32768) // (_ATTEN_BLOCKS * block)
        return (s * gain + 16384) >> 15

    def _conceal_block(self) -> Int16Array:
        d = self._d
        if self.erased == 0:
            self._pitchbuf = self._history.copy()
            self.pitch = self._find_pitch()
            self._poverlap = self.pitch >> 2
            self._lastq = self._pitchbuf[d.hist - self._poverlap:].copy()
            self._poffset = 0
            self._pitchblen = self.pitch
            self._tail_ola()
            self._history[d.hist - self._poverlap:] = self._pitchbuf[d.hist - self._poverlap:]
            s = self._fespeech(d.block)
        elif self.erased in (1, 2):
            saved = self._poffset
            old = self._fespeech(self._poverlap)
            self._poffset = saved
            while self._poffset > self.pitch:
                self._poffset -= self.pitch
            self._pitchblen += self.pitch
            self._tail_ola()
            s = self._fespeech(d.block)
            s[:self._poverlap] = _ola(old, s[:self._poverlap])
            s = self._attenuate(s)
        elif self.erased >= _SILENT_AFTER:
            s = np.zeros(d.block, dtype=np.int64)
        else:
            s = self._attenuate(self._fespeech(d.block))
        self.erased = min(self.erased + 1, _MAX_ERASED)
        return self._save(s)

    def _find_pitch(self) -> int:
        """Pitch period in samples: best normalized correlation of the last 20 ms."""
        d = self._d
        buf = self._pitchbuf
        ref = buf[d.hist - d.corr_len:]
        base = d.hist - d.corr_len - d.pitch_max
        diff = d.pitch_max - d.pitch_min

        def score(j: int, step: int, floor: int) -> float:
            seg = buf[base + j:base + j + d.corr_len:step]
            corr = int(np.dot(seg, ref[::step]))
            energy = max(int(np.dot(seg, seg)), floor)
            return corr / math.sqrt(energy)

        best, best_j = score(0, d.ndec, _MIN_POWER), 0
        for j in range(d.ndec, diff + 1, d.ndec):
            sc = score(j, d.ndec, _MIN_POWER)
            if sc >= best:
                best, best_j = sc, j
        lo = max(0, best_j - (d.ndec - 1))
        hi = min(diff, best_j + (d.ndec - 1))
        fine_floor = _MIN_POWER * d.ndec // 2
        best, match = score(lo, 1, fine_floor), lo
        for j in range(lo + 1, hi + 1):
            sc = score(j, 1, fine_floor)
            if sc > best:
                best, match = sc, j
        return d.pitch_max - match


class CPlc:
    """The same concealment on the C kernel (``pbx_plc_*``); ``native`` is (ffi, lib)."""

    def __init__(self, rate: int, frame_samples: int,
                 native: tuple[Any, Any] | None = None) -> None:
        d = _Dims(rate)
        if frame_samples <= 0 or frame_samples % d.block:
            raise ValueError(f"frame_samples must be a multiple of {d.block} (10 ms)")
        self._ffi, self._lib = native if native is not None else (_ffi, _lib)
        if self._lib is None:
            raise RuntimeError("the C kernels are not available")
        self._st = self._ffi.new("pbx_plc *")
        if self._lib.pbx_plc_init(self._st, rate) != 0:
            raise ValueError(f"PLC supports rates {SUPPORTED_RATES}, not {rate}")
        self.rate = rate
        self.frame_samples = frame_samples
        self.delay = d.overlap_max
        """Output lags input by this many samples (3.75 ms)."""
        self._block = d.block

    @property
    def erased(self) -> int:
        """Consecutive 10 ms blocks concealed so far (0 while frames arrive)."""
        return int(self._st.erasecnt)

    @property
    def pitch(self) -> int:
        """Pitch period (samples) found at the start of the current or last loss."""
        return int(self._st.pitch)

    def good(self, frame: Int16Array) -> Int16Array:
        """A received frame (any length): returns the same number of samples, ``delay`` late."""
        x = np.ascontiguousarray(frame, dtype=np.int16)
        out = np.empty(len(x), dtype=np.int16)
        if len(x):
            self._lib.pbx_plc_good(self._st, self._ffi.from_buffer("int16_t[]", x),
                                   self._ffi.from_buffer("int16_t[]", out), len(x))
        return out

    def missing(self, samples: int | None = None) -> Int16Array:
        """Concealment for a lost frame of ``samples`` (default ``frame_samples``; a multiple of
        10 ms), returned ``delay`` late like every frame."""
        n = self.frame_samples if samples is None else samples
        out = np.empty(max(n, 0), dtype=np.int16)
        if n < 0 or self._lib.pbx_plc_missing(self._st, self._ffi.from_buffer("int16_t[]", out),
                                              n) != 0:
            raise ValueError(f"concealment comes in multiples of {self._block} samples (10 ms)")
        return out


Plc: type[CPlc] | type[PyPlc] = CPlc if _lib is not None else PyPlc
"""The live concealment: the C kernel when built, else the Python twin."""
