"""ITU-T G.722 (SB-ADPCM, 64 kbit/s mode) encoder and decoder.

Written from the description in ITU-T G.722 §3-§4 (blocks 1L-4L and 1H-4H, 16-bit fixed point
with saturating ``add``/``sub``/``mult``). A 24-tap QMF splits 16 kHz PCM into two 8 kHz
sub-bands; the lower one is coded with 6 bits (the predictor adapts on its 4-bit core), the higher
one with 2 bits; each output byte is ``ih << 6 | il``. Input is 16-bit PCM (the ITU 14-bit input
left-justified), output is 16-bit PCM.

``G722Encoder``/``G722Decoder`` run the C kernel (``cext/g722.c``) when it is built, else the
pure-Python twins ``PyG722Encoder``/``PyG722Decoder`` defined here, which are the readable
reference the C code is checked against (identical bytes and samples). The Python twin is slow
(about 2 ms per 20 ms frame); the C kernel encodes a frame in about 15 us and decodes it in 10.
The encoder was cross-checked byte for byte against libspandsp's (ITU test-vector conformant);
the decoder too, except that it saturates its output where spandsp's wraps around.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "CG722Decoder",
    "CG722Encoder",
    "G722Decoder",
    "G722Encoder",
    "PyG722Decoder",
    "PyG722Encoder",
]

Int16Array = npt.NDArray[np.int16]

# QMF coefficients h0..h23 (Table 11/G.722, scaled by 2**13).
_QMF = (3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
        3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3)

# Lower band: 6-bit quantizer decision levels (Q6) and 4-bit / 6-bit output levels.
_Q6 = (0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858,
       940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919)
_IL_POS: tuple[int, ...] = (0, *range(61, 31, -1))          # code for interval mil (1..30) of a positive error
_IL_NEG: tuple[int, ...] = (0, 63, 62, *range(31, 3, -1))   # ... of a negative error
_OQ4 = (0, 150, 323, 530, 786, 1121, 1612, 2557)
_RIL4 = (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0)   # 4-bit code -> level index
_NEG4: tuple[bool, ...] = (False, *([True] * 7), *([False] * 8))             # 4-bit code -> negative level
_OQ6 = (0, 17, 54, 91, 130, 170, 211, 254, 300, 347, 396, 447, 501, 558, 618, 682, 750, 822,
        899, 982, 1072, 1170, 1279, 1399, 1535, 1689, 1873, 2088, 2376, 2738, 3101)
_RIL6: tuple[int, ...] = (1, 1, 1, 1, *range(30, 2, -1), *range(30, 2, -1), 2, 1, 2, 1)
_NEG6: tuple[bool, ...] = (*([True] * 32), *([False] * 30), True, True)
_WL = (-60, -30, 58, 172, 334, 538, 1198, 3042)            # log scale factor steps, lower band
# Higher band: 2-bit quantizer.
_Q2 = 564
_OQ2 = (0, 202, 926)
_IH2 = (2, 1, 2, 1)                                        # 2-bit code -> level index
_WH = (0, -214, 798)
# Mantissa table of the log-to-linear scale factor conversion (ILB).
_ILB = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714,
        2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676,
        3756, 3838, 3922, 4008)


def _sat(x: int) -> int:
    """Saturate to int16 (the ITU ``add``/``sub`` result)."""
    return -32768 if x < -32768 else 32767 if x > 32767 else x


def _mult(a: int, b: int) -> int:
    """ITU ``mult``: (a * b) >> 15 with floor, saturated."""
    return _sat((a * b) >> 15)


def _scale(nb: int, shift: int) -> int:
    """Log scale factor to linear step size (SCALEL with shift 8, SCALEH with shift 10)."""
    mant = _ILB[(nb >> 6) & 31]
    e = shift - (nb >> 11)
    return (mant >> e if e >= 0 else mant << -e) << 2


class _Band:
    """Adaptive predictor (2 poles, 6 zeros) and scale factor of one sub-band (block 4)."""

    __slots__ = ("a", "b", "d", "det", "nb", "p", "r", "s", "sz")

    def __init__(self, det: int) -> None:
        self.det = det
        self.nb = 0
        self.s = 0
        self.sz = 0
        self.a = [0, 0, 0]
        self.b = [0] * 7
        self.d = [0] * 7
        self.p = [0, 0, 0]
        self.r = [0, 0, 0]

    def adapt(self, dq: int) -> None:
        """Reconstruct, update the predictor with quantized difference ``dq``, predict next."""
        d, b, a, p, r = self.d, self.b, self.a, self.p, self.r
        d[0] = dq
        p[0] = _sat(dq + self.sz)          # PARREC
        r[0] = _sat(self.s + dq)           # RECONS
        # UPZERO: sign-sign update of the zero coefficients, shift the difference line.
        step = 128 if dq != 0 else 0
        neg0 = dq < 0
        for i in range(6, 0, -1):
            b[i] = _sat((step if (d[i] < 0) == neg0 else -step) + _mult(b[i], 32640))
            d[i] = d[i - 1]
        # UPPOL2 then UPPOL1 (UPPOL1 limits a1 with the new a2).
        neg = (p[0] < 0, p[1] < 0, p[2] < 0)
        wd1 = _sat(a[1] << 2)
        wd2 = (_sat(-wd1) if neg[0] == neg[1] else wd1) >> 7
        a2 = _sat(_sat(wd2 + (128 if neg[0] == neg[2] else -128)) + _mult(a[2], 32512))
        a[2] = max(-12288, min(12288, a2))
        a1 = _sat((192 if neg[0] == neg[1] else -192) + _mult(a[1], 32640))
        lim = _sat(15360 - a[2])
        if a1 > lim:
            a1 = lim
        elif _sat(a1 + lim) < 0:
            a1 = -lim
        p[2] = p[1]
        p[1] = p[0]
        a[1] = a1
        # FILTEZ, FILTEP, PREDIC.
        sz = 0
        for i in range(6, 0, -1):
            sz = _sat(sz + _mult(_sat(d[i] + d[i]), b[i]))
        r[2] = r[1]
        r[1] = r[0]
        sp = _sat(_mult(a[1], _sat(r[1] + r[1])) + _mult(a[2], _sat(r[2] + r[2])))
        self.sz = sz
        self.s = _sat(sp + sz)


def _low_update(band: _Band, il: int) -> None:
    """INVQAL (4-bit core), LOGSCL, SCALEL and predictor update for lower-band code ``il``."""
    ril = il >> 2
    level = _OQ4[_RIL4[ril]] << 3
    dq = _mult(band.det, -level if _NEG4[ril] else level)
    nb = _sat(_mult(band.nb, 32512) + _WL[_RIL4[ril]])
    band.nb = max(0, min(18432, nb))
    band.det = _scale(band.nb, 8)
    band.adapt(dq)


def _high_update(band: _Band, ih: int) -> None:
    """INVQAH, LOGSCH, SCALEH and predictor update for higher-band code ``ih``."""
    level = _OQ2[_IH2[ih]] << 3
    dq = _mult(-level if ih < 2 else level, band.det)
    nb = _sat(_mult(band.nb, 32512) + _WH[_IH2[ih]])
    band.nb = max(0, min(22528, nb))
    band.det = _scale(band.nb, 10)
    band.adapt(dq)


def _quant_low(el: int, det: int) -> int:
    """QUANTL: 6-bit code of the lower-band prediction error."""
    wd = el if el >= 0 else 32767 - (el & 32767)
    mil = 1
    while mil < 30 and _mult(_Q6[mil] << 3, det) <= wd:
        mil += 1
    return _IL_POS[mil] if el >= 0 else _IL_NEG[mil]


def _quant_high(eh: int, det: int) -> int:
    """QUANTH: 2-bit code of the higher-band prediction error."""
    wd = eh if eh >= 0 else 32767 - (eh & 32767)
    big = wd >= _mult(_Q2 << 3, det)
    if eh >= 0:
        return 2 if big else 3
    return 0 if big else 1


class PyG722Encoder:
    """Pure-Python G.722 64 kbit/s encoder (reference twin of the C kernel)."""

    def __init__(self) -> None:
        self._low = _Band(32)
        self._high = _Band(8)
        self._x = [0] * 24            # QMF delay line, newest first

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode an even number of 16 kHz samples to one byte per pair."""
        samples = [int(v) for v in np.asarray(pcm, dtype=np.int16)]
        if len(samples) % 2:
            raise ValueError("G.722 encodes pairs of samples: the frame length must be even")
        out = bytearray(len(samples) // 2)
        x, low, high = self._x, self._low, self._high
        for k in range(len(out)):
            x[2:] = x[:22]
            x[1] = samples[2 * k]
            x[0] = samples[2 * k + 1]
            even = sum(_QMF[i] * x[i] for i in range(0, 24, 2))
            odd = sum(_QMF[i] * x[i] for i in range(1, 24, 2))
            xl = max(-16384, min(16383, (even + odd) >> 14))
            xh = max(-16384, min(16383, (even - odd) >> 14))
            il = _quant_low(_sat(xl - low.s), low.det)
            _low_update(low, il)
            ih = _quant_high(_sat(xh - high.s), high.det)
            _high_update(high, ih)
            out[k] = (ih << 6) | il
        return bytes(out)


class PyG722Decoder:
    """Pure-Python G.722 64 kbit/s decoder (reference twin of the C kernel)."""

    def __init__(self) -> None:
        self._low = _Band(32)
        self._high = _Band(8)
        self._y = [0] * 24            # QMF delay line, newest first

    def decode(self, data: bytes) -> Int16Array:
        """Decode G.722 bytes to two 16 kHz samples each."""
        out = np.empty(2 * len(data), dtype=np.int16)
        y, low, high = self._y, self._low, self._high
        for k, code in enumerate(data):
            il = code & 0x3F
            ih = code >> 6
            level = _OQ6[_RIL6[il]] << 3
            dl = _mult(low.det, -level if _NEG6[il] else level)   # INVQBL, 6 bits
            rl = max(-16384, min(16383, _sat(low.s + dl)))
            _low_update(low, il)
            _high_update(high, ih)
            rh = max(-16384, min(16383, high.r[0]))
            y[2:] = y[:22]
            y[1] = _sat(rl + rh)
            y[0] = _sat(rl - rh)
            even = sum(_QMF[i] * y[i] for i in range(0, 24, 2))
            odd = sum(_QMF[i] * y[i] for i in range(1, 24, 2))
            out[2 * k] = max(-32768, min(32767, even >> 11))
            out[2 * k + 1] = max(-32768, min(32767, odd >> 11))
        return out


class CG722Encoder:
    """G.722 encoder on the C kernel (``pbx_g722_encode``); ``native`` is (ffi, lib)."""

    def __init__(self, native: tuple[Any, Any] | None = None) -> None:
        self._ffi, self._lib = native if native is not None else (_ffi, _lib)
        if self._lib is None:
            raise RuntimeError("the C kernels are not available")
        self._state = self._ffi.new("pbx_g722_state *")
        self._lib.pbx_g722_init(self._state)

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode an even number of 16 kHz samples to one byte per pair."""
        src = np.ascontiguousarray(pcm, dtype=np.int16)
        if len(src) % 2:
            raise ValueError("G.722 encodes pairs of samples: the frame length must be even")
        n = len(src) // 2
        out = bytearray(n)
        self._lib.pbx_g722_encode(self._state, self._ffi.from_buffer("int16_t[]", src),
                                  len(src), self._ffi.from_buffer("uint8_t[]", out))
        return bytes(out)


class CG722Decoder:
    """G.722 decoder on the C kernel (``pbx_g722_decode``); ``native`` is (ffi, lib)."""

    def __init__(self, native: tuple[Any, Any] | None = None) -> None:
        self._ffi, self._lib = native if native is not None else (_ffi, _lib)
        if self._lib is None:
            raise RuntimeError("the C kernels are not available")
        self._state = self._ffi.new("pbx_g722_state *")
        self._lib.pbx_g722_init(self._state)

    def decode(self, data: bytes) -> Int16Array:
        """Decode G.722 bytes to two 16 kHz samples each."""
        out = np.empty(2 * len(data), dtype=np.int16)
        if data:
            self._lib.pbx_g722_decode(self._state, self._ffi.from_buffer("uint8_t[]", data),
                                      len(data), self._ffi.from_buffer("int16_t[]", out))
        return out


G722Encoder: type[CG722Encoder] | type[PyG722Encoder] = (
    CG722Encoder if _lib is not None else PyG722Encoder)
"""The live encoder: the C kernel when built, else the Python twin."""
G722Decoder: type[CG722Decoder] | type[PyG722Decoder] = (
    CG722Decoder if _lib is not None else PyG722Decoder)
"""The live decoder: the C kernel when built, else the Python twin."""
