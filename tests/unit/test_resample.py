"""Rational resampler: frequency response, streaming continuity, delay, C kernel == Python twin."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import resample as rs

NATIVE = (_dsp.ffi, _dsp.lib)
I16 = npt.NDArray[np.int16]
IMPLS = [pytest.param(lambda s, d: rs.PyResampler(s, d), id="py"),
         pytest.param(lambda s, d: rs.CResampler(s, d, native=NATIVE), id="c")]


def tone(freq: float, rate: int, seconds: float, amp: float = 16000.0) -> I16:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def fit_tone(y: I16, freq: float, rate: int) -> tuple[float, float]:
    """(amplitude, SNR dB) of the best least-squares sine of ``freq`` in ``y``."""
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    fitted = basis @ coef
    resid = y - fitted
    return float(np.hypot(*coef)), float(10 * np.log10(np.var(fitted) / np.var(resid)))


def level_db(x: I16, ref: I16) -> float:
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9
    return float(20 * np.log10(rms / np.sqrt(np.mean(ref.astype(np.float64) ** 2))))


@pytest.mark.parametrize("make", IMPLS)
def test_1khz_survives_8k_48k_8k(make) -> None:  # type: ignore[no-untyped-def]
    x = tone(1000, 8000, 1.0)
    up = make(8000, 48000).process(x)
    back = make(48000, 8000).process(up)
    assert len(up) == 48000 and len(back) == 8000
    amp, snr = fit_tone(up[1000:-1000], 1000, 48000)
    assert abs(amp - 16000) < 16 and snr > 70
    amp, snr = fit_tone(back[200:-200], 1000, 8000)
    assert abs(amp - 16000) < 16 and snr > 70


@pytest.mark.parametrize("make", IMPLS)
def test_6khz_at_16k_is_removed_going_to_8k(make) -> None:  # type: ignore[no-untyped-def]
    x = tone(6000, 16000, 0.5)
    y = make(16000, 8000).process(x)
    assert level_db(y[200:], x) < -60


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (48000, 8000), (48000, 16000)])
def test_stop_band_and_flat_pass_band(src: int, dst: int) -> None:
    nyquist = min(src, dst) / 2
    for freq in (300, 1000, 2000, 0.86 * nyquist):       # pass band: flat within 0.05 dB
        x = tone(freq, src, 0.25)
        y = rs.resample(x, src, dst)
        assert abs(level_db(y[400:-100], x)) < 0.05, freq
    for freq in np.linspace(1.02 * nyquist, 0.98 * src / 2, 7):   # would alias: > 60 dB down
        x = tone(float(freq), src, 0.25)
        assert level_db(rs.resample(x, src, dst)[400:], x) < -60, freq


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (8000, 48000),
                                          (48000, 8000), (16000, 48000), (48000, 16000),
                                          (44100, 8000), (8000, 44100), (44100, 48000)])
def test_streaming_in_20ms_frames_equals_one_shot(make, src: int, dst: int) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(src + dst)
    x = rng.integers(-20000, 20000, src // 5).astype(np.int16)   # 200 ms
    r = make(src, dst)
    frames = [r.process(x[i:i + src // 50]) for i in range(0, len(x), src // 50)]
    assert all(len(f) == dst // 50 for f in frames)              # 20 ms in, 20 ms out
    assert np.array_equal(np.concatenate(frames), make(src, dst).process(x))


def test_one_shot_helper_and_equal_rates() -> None:
    x = tone(440, 16000, 0.1)
    assert np.array_equal(rs.resample(x, 16000, 48000), rs.PyResampler(16000, 48000).process(x))
    same = rs.resample(x, 16000, 16000)
    assert np.array_equal(same, x) and same is not x


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize(("src", "dst"), [(8000, 48000), (48000, 8000), (16000, 8000)])
def test_impulse_peaks_at_the_stated_delay(make, src: int, dst: int) -> None:  # type: ignore[no-untyped-def]
    r = make(src, dst)
    x = np.zeros(src // 10, np.int16)
    x[0] = 20000
    y = r.process(x)
    assert abs(int(np.argmax(y)) - r.delay) <= 0.5 + 1e-9
    assert 2 <= r.delay * 1000 / dst <= 6            # a few ms


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize(("src", "dst"), [(8000, 48000), (48000, 8000), (44100, 16000)])
def test_dc_passes_exactly(make, src: int, dst: int) -> None:  # type: ignore[no-untyped-def]
    r = make(src, dst)
    y = r.process(np.full(src // 5, -12345, np.int16))
    settled = y[int(2 * r.delay) + 2:]
    assert len(settled) > 100 and np.all(settled == -12345)


def test_design_tables() -> None:
    for src, dst in [(8000, 48000), (48000, 8000), (44100, 8000), (22050, 16000)]:
        up, down, coefs = rs.design(src, dst)
        assert (up, down) == (dst // np.gcd(src, dst), src // np.gcd(src, dst))
        assert coefs.shape[0] == up and coefs.dtype == np.int32
        assert np.all(coefs.sum(axis=1) == 32768)            # every phase has unity DC gain
        flat = coefs.T.reshape(-1)                            # the prototype, in order
        # Linear phase: symmetric but for the few LSBs that made each phase sum to 32768.
        assert np.abs(flat - flat[::-1]).max() <= 0.002 * np.abs(flat).max()
        c = rs.CResampler(src, dst, native=NATIVE)
        assert np.array_equal(c.coefs(), coefs)              # C designs the same table
        assert (c.up, c.down, c.taps) == (up, down, coefs.shape[1])


def test_saturates_instead_of_wrapping() -> None:
    x = np.tile(np.array([32767, 32767, -32768, -32768], np.int16), 400)   # 2 kHz square
    for r in (rs.PyResampler(8000, 16000), rs.CResampler(8000, 16000, native=NATIVE)):
        y = r.process(x)
        assert y.max() == 32767 and y.min() == -32768      # overshoot clipped, not wrapped


@pytest.mark.parametrize(("src", "dst"), [(0, 8000), (8000, -1), (44100, 48001),
                                          (8000, 2_000_000)])
def test_rejects_unsupported_ratios(src: int, dst: int) -> None:
    with pytest.raises(ValueError):
        rs.PyResampler(src, dst)
    with pytest.raises(ValueError):
        rs.CResampler(src, dst, native=NATIVE)


def test_reset_starts_from_silence_again() -> None:
    x = tone(700, 8000, 0.05)
    for r in (rs.PyResampler(8000, 16000), rs.CResampler(8000, 16000, native=NATIVE)):
        first = r.process(x)
        r.process(x)
        r.reset()
        assert np.array_equal(r.process(x), first)
