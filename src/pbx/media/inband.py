"""In-band DTMF detection (Goertzel) for peers that send digits as tones in the audio.

Input: PCM16 mono frames (numpy int16) of any length at 8 kHz (or a multiple of 8 kHz up to
48 kHz: the windows scale with the rate; a caller may as well decimate to 8 kHz first).

Method, per window of 102 samples at 8 kHz (12.75 ms; 204 at 16 kHz ...) taken every half window
(6.375 ms, windows overlap by half):

* the energy ``|X(f)|^2`` at the 8 DTMF frequencies (a Goertzel filter each; the Python twin
  computes the same DFT values with a matrix product), turned into the mean-square power of each
  component, ``P = 2 |X|^2 / N^2`` (a sine of peak A gives A^2 / 2);
* a window is a *hit* for digit (row, col) when the strongest row and the strongest column
  - are each at least -36 dBm0 (a full-scale sine is +3.14 dBm0, see ``pbx.media.tones``),
  - beat every other row (column) by 8 dB (one clear pair, not a chord or a sweep),
  - are within the twist limits: low group at most 8 dB above the high group (normal twist),
    high group at most 4 dB above the low group (reverse twist),
  - carry at least 65 % of the window's total power (speech and music spread their energy;
    a DTMF pair off by more than about 3.5 % in frequency fails this too);
* timing: a digit is reported once 4 successive windows are hits for it (a tone of 40 ms always
  is; one of 20 ms is not), and held until 4 successive windows are not (any pause of 40 ms
  ends it), so a 100 ms digit is reported exactly once and a new digit needs a pause first.

:class:`PyInbandDetector` is the readable reference; :class:`CInbandDetector` runs the same
algorithm in ``cext/goertzel.c`` (``pbx_goertzel_*``, state in ``pbx_goertzel_det`` so the
native engine can drive it from C). :data:`InbandDetector` is the C one when the extension is
loaded, else the twin. Both give the same digits for the same samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib
from pbx.media.tones import DTMF_COLS, DTMF_KEYS, DTMF_ROWS, amplitude

__all__ = [
    "ENERGY_RATIO",
    "FREQS",
    "HITS_TO_BEGIN",
    "KEYS",
    "MIN_LEVEL_DBM0",
    "MISSES_TO_END",
    "NORMAL_TWIST_DB",
    "REL_PEAK_DB",
    "REVERSE_TWIST_DB",
    "WINDOW_8K",
    "CInbandDetector",
    "InbandDetector",
    "PyInbandDetector",
    "py_goertzel",
]

FREQS: tuple[float, ...] = DTMF_ROWS + DTMF_COLS
"""The 8 analysed frequencies: rows 697..941 Hz, then columns 1209..1633 Hz."""
KEYS = "".join(DTMF_KEYS)
"""Digit of index row * 4 + col."""

WINDOW_8K = 102
HITS_TO_BEGIN = 4
MISSES_TO_END = 4
MIN_LEVEL_DBM0 = -36.0
NORMAL_TWIST_DB = 8.0
REVERSE_TWIST_DB = 4.0
REL_PEAK_DB = 8.0
ENERGY_RATIO = 0.65

Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]


def _window_length(rate: int) -> int:
    if rate < 8000 or rate > 48000 or rate % 8000:
        raise ValueError(f"in-band DTMF detection needs 8000..48000 Hz in steps of 8000, not {rate}")
    return WINDOW_8K * (rate // 8000)


def py_goertzel(samples: npt.ArrayLike, freq: float, rate: int) -> float:
    """|X(freq)|^2 of ``samples`` by the Goertzel recursion (the textbook form, for reference)."""
    coef = 2.0 * np.cos(2.0 * np.pi * freq / rate)
    s1 = s2 = 0.0
    for x in np.asarray(samples, dtype=np.float64).tolist():
        s1, s2 = x + coef * s1 - s2, s1
    return float(s1 * s1 + s2 * s2 - coef * s1 * s2)


class PyInbandDetector:
    """Pure-Python in-band DTMF detector (the reference twin of ``cext/goertzel.c``)."""

    def __init__(self, rate: int = 8000) -> None:
        self.rate = rate
        self.win = _window_length(rate)
        self.hop = self.win // 2
        self.min_power = amplitude(MIN_LEVEL_DBM0) ** 2 / 2.0
        self.normal_twist = 10.0 ** (NORMAL_TWIST_DB / 10.0)
        self.reverse_twist = 10.0 ** (REVERSE_TWIST_DB / 10.0)
        self.rel_peak = 10.0 ** (REL_PEAK_DB / 10.0)
        self.energy_ratio = ENERGY_RATIO
        n = np.arange(self.win, dtype=np.float64)
        omega = 2.0 * np.pi * np.asarray(FREQS) / rate
        self._basis = np.exp(-1j * np.outer(n, omega))  # (win, 8): X(f) = x @ basis
        self.windows = 0
        self.last_energy: Floats = np.zeros(len(FREQS))
        self.last_total = 0.0
        self.last_hit = -1
        self.reset()

    def reset(self) -> None:
        """Forget the signal (buffered samples and timing)."""
        self._buf: Samples = np.zeros(0, dtype=np.int16)
        self.digit = -1
        self._streak_digit = -1
        self._streak = 0
        self._misses = 0

    def energies(self, windows: npt.ArrayLike) -> tuple[Floats, Floats]:
        """|X(f)|^2 at the 8 frequencies and the sum of squares, per window (rows of ``windows``)."""
        x = np.atleast_2d(np.asarray(windows, dtype=np.float64))
        energy = np.abs(x @ self._basis) ** 2
        return energy, np.einsum("ij,ij->i", x, x)

    def classify(self, energy: Floats, total: float) -> int:
        """Digit index (row * 4 + col) when one window holds a valid DTMF pair, else -1."""
        p = [2.0 * float(e) / (self.win * self.win) for e in energy]
        rows, cols = p[:4], p[4:]
        row, col = _best(rows), _best(cols)
        pr, pc = rows[row], cols[col]
        if any(i != row and q * self.rel_peak > pr for i, q in enumerate(rows)):
            return -1
        if any(i != col and q * self.rel_peak > pc for i, q in enumerate(cols)):
            return -1
        if pr < self.min_power or pc < self.min_power:
            return -1
        if pr > pc * self.normal_twist or pc > pr * self.reverse_twist:
            return -1
        if pr + pc < self.energy_ratio * (total / self.win):
            return -1
        return row * 4 + col

    def feed(self, frame: npt.ArrayLike, now: float = 0.0) -> list[str]:
        """Analyse ``frame``; returns the digits detected in it (usually none, at most one).

        ``now`` is accepted for the interface of the media cores; timing comes from the samples.
        """
        data = np.concatenate((self._buf, np.asarray(frame, dtype=np.int16).ravel()))
        count = (len(data) - self.win) // self.hop + 1 if len(data) >= self.win else 0
        out: list[str] = []
        if count:
            windows = np.lib.stride_tricks.sliding_window_view(data, self.win)[::self.hop][:count]
            energy, total = self.energies(windows)
            for e, t in zip(energy, total, strict=True):
                digit = self._window(e, float(t))
                if digit >= 0:
                    out.append(KEYS[digit])
            self.last_energy, self.last_total = energy[-1], float(total[-1])
        self._buf = data[count * self.hop :].copy()
        return out

    def _window(self, energy: Floats, total: float) -> int:
        hit = self.last_hit = self.classify(energy, total)
        self.windows += 1
        if self.digit < 0:
            if hit < 0:
                self._streak_digit, self._streak = -1, 0
            elif hit == self._streak_digit:
                self._streak += 1
            else:
                self._streak_digit, self._streak = hit, 1
            if self._streak >= HITS_TO_BEGIN:
                self.digit, self._misses = hit, 0
                return hit
        elif hit == self.digit:
            self._misses = 0
        else:
            self._misses += 1
            if self._misses >= MISSES_TO_END:
                self.digit, self._streak_digit, self._streak = -1, -1, 0
        return -1


def _best(values: list[float]) -> int:
    """Index of the largest value, the first one on ties (as the C loop)."""
    best = 0
    for i in range(1, len(values)):
        if values[i] > values[best]:
            best = i
    return best


class CInbandDetector:
    """In-band DTMF detector running ``cext/goertzel.c``; same interface as the twin.

    ``ffi``/``lib`` default to the loaded extension; tests pass them explicitly to compare the
    kernel with the twin even when ``PBX_NO_EXTENSIONS=1``.
    """

    def __init__(self, rate: int = 8000, *, ffi: Any = _ffi, lib: Any = _lib) -> None:
        if lib is None:
            raise RuntimeError("the C extension pbx._dsp is not loaded")
        _window_length(rate)
        self._ffi, self._lib = ffi, lib
        self._det = ffi.new("pbx_goertzel_det *")
        if lib.pbx_goertzel_init(self._det, rate) != 0:
            raise ValueError(f"bad rate {rate}")
        self.rate = rate
        self.win: int = self._det.win
        self.hop: int = self._det.hop
        self._out = ffi.new("char[]", 64)

    def reset(self) -> None:
        """Forget the signal (buffered samples and timing)."""
        self._lib.pbx_goertzel_reset(self._det)

    @property
    def digit(self) -> int:
        """Index of the digit being held, -1 when none."""
        return int(self._det.digit)

    @property
    def windows(self) -> int:
        """Windows analysed so far."""
        return int(self._det.windows)

    @property
    def last_hit(self) -> int:
        """Classification of the last window."""
        return int(self._det.last_hit)

    @property
    def last_energy(self) -> Floats:
        """|X(f)|^2 of the last window."""
        return np.array(list(self._det.energy), dtype=np.float64)

    @property
    def last_total(self) -> float:
        """Sum of squares of the last window."""
        return float(self._det.total)

    def energies(self, windows: npt.ArrayLike) -> tuple[Floats, Floats]:
        """|X(f)|^2 at the 8 frequencies and the sum of squares, per window (rows of ``windows``)."""
        x = np.ascontiguousarray(np.atleast_2d(np.asarray(windows, dtype=np.int16)))
        energy = np.zeros((len(x), len(FREQS)), dtype=np.float64)
        total = np.zeros(len(x), dtype=np.float64)
        e_out = self._ffi.new("double[8]")
        t_out = self._ffi.new("double *")
        for i, row in enumerate(x):
            self._lib.pbx_goertzel_energies(self._det, self._ffi.from_buffer("int16_t[]", row),
                                            e_out, t_out)
            energy[i] = list(e_out)
            total[i] = t_out[0]
        return energy, total

    def classify(self, energy: Floats, total: float) -> int:
        """Digit index (row * 4 + col) when one window holds a valid DTMF pair, else -1."""
        e = self._ffi.new("double[8]", [float(v) for v in energy])
        return int(self._lib.pbx_goertzel_classify(self._det, e, float(total)))

    def feed(self, frame: npt.ArrayLike, now: float = 0.0) -> list[str]:
        """Analyse ``frame``; returns the digits detected in it (usually none, at most one)."""
        pcm = np.ascontiguousarray(np.asarray(frame, dtype=np.int16).ravel())
        size = len(pcm) // (2 * self.win) + 2
        out = self._out if size <= len(self._out) else self._ffi.new("char[]", size)
        n = self._lib.pbx_goertzel_feed(self._det, self._ffi.from_buffer("int16_t[]", pcm),
                                        len(pcm), out, len(out))
        return list(self._ffi.unpack(out, n).decode("ascii")) if n else []


InbandDetector: type[CInbandDetector] | type[PyInbandDetector] = (
    CInbandDetector if _lib is not None else PyInbandDetector
)
"""The live implementation: the C kernel when loaded, else the Python twin."""
