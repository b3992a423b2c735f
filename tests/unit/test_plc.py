"""G.711 Appendix I style concealment: pitch, replay quality, fade-out, merge; C == Python."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import plc

NATIVE = (_dsp.ffi, _dsp.lib)
I16 = npt.NDArray[np.int16]
Make = Callable[[int, int], "plc.PyPlc | plc.CPlc"]
IMPLS = [pytest.param(plc.PyPlc, id="py"),
         pytest.param(lambda r, n: plc.CPlc(r, n, native=NATIVE), id="c")]


def voiced(f0: float, rate: int, seconds: float) -> I16:
    """Three harmonics of f0: periodic, like a steady vowel."""
    t = np.arange(int(rate * seconds)) / rate
    x = (6000 * np.sin(2 * np.pi * f0 * t) + 3000 * np.sin(2 * np.pi * 2 * f0 * t + 1)
         + 1500 * np.sin(2 * np.pi * 3 * f0 * t + 2))
    return x.astype(np.int16)


def play(p: plc.PyPlc | plc.CPlc, x: I16, lost: set[int]) -> I16:
    """Run x through p in frames, dropping the frames in ``lost``."""
    n = p.frame_samples
    out = [p.missing() if i in lost else p.good(x[i * n:(i + 1) * n])
           for i in range(len(x) // n)]
    return np.concatenate(out)


def energy(x: npt.ArrayLike) -> float:
    return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_good_frames_pass_through_delayed(make: Make, rate: int) -> None:
    p = make(rate, rate // 50)
    assert p.delay == rate * 30 // 8000                      # 3.75 ms
    x = np.random.default_rng(1).integers(-32768, 32768, rate // 5).astype(np.int16)
    y = play(p, x, set())
    d = p.delay
    assert np.array_equal(y[d:], x[:-d]) and not y[:d].any()


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("f0", [70.0, 95.0, 137.0, 190.0])
def test_pitch_is_found(make: Make, rate: int, f0: float) -> None:
    p = make(rate, rate // 50)
    play(p, voiced(f0, rate, 0.2), {9})
    assert abs(p.pitch - rate / f0) <= 1
    assert p.erased == 2                                     # two 10 ms blocks


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_one_lost_frame_is_far_closer_than_silence_and_keeps_the_pitch(make: Make,
                                                                       rate: int) -> None:
    f0 = 137.0
    x = voiced(f0, rate, 0.4)
    p = make(rate, rate // 50)
    n, d = p.frame_samples, p.delay
    y = play(p, x, {10})
    ref = np.concatenate([np.zeros(d, np.int16), x])[:len(y)]      # what came out, undelayed
    seg = slice(10 * n, 11 * n)
    assert energy(y[seg] - ref[seg].astype(np.float64)) < 0.1 * energy(ref[seg])   # > 10 dB
    spectrum = np.abs(np.fft.rfft(y[seg].astype(np.float64), 8 * n))
    assert abs(np.argmax(spectrum) * rate / (8 * n) - f0) < 10
    after = slice(12 * n, 20 * n)                            # back on the real signal
    assert np.array_equal(y[after], ref[after])


@pytest.mark.parametrize("make", IMPLS)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_long_loss_fades_by_20_percent_per_10ms_to_silence_at_60ms(make: Make, rate: int) -> None:
    x = voiced(110.0, rate, 0.5)
    p = make(rate, rate // 100)                              # 10 ms frames
    n, d = p.frame_samples, p.delay
    lost = set(range(20, 30))                                # 100 ms
    y = play(p, x, lost).astype(np.float64)
    level = np.sqrt(np.mean(x[15 * n:20 * n].astype(np.float64) ** 2))
    blocks = [np.sqrt(np.mean(y[(20 + k) * n + d:(21 + k) * n + d] ** 2)) for k in range(6)]
    assert 0.85 * level < blocks[0] < 1.15 * level           # first 10 ms at full level
    for k in range(1, 6):                                    # gain falls 1 - 0.2 (k - 1) -> 1 - 0.2 k
        a, b = 1 - 0.2 * (k - 1), 1 - 0.2 * k
        assert abs(blocks[k] / blocks[0] - np.sqrt((a * a + a * b + b * b) / 3)) < 0.1, k
        assert blocks[k] < blocks[k - 1]
    assert not y[26 * n + d:30 * n + d].any()                # silent from 60 ms on
    assert p.erased == 0                                     # a good frame arrived since


@pytest.mark.parametrize("make", IMPLS)
def test_first_good_frame_is_merged_without_a_click(make: Make) -> None:
    rate = 8000
    x = voiced(123.0, rate, 0.4)
    p = make(rate, 160)
    y = play(p, x, {8, 9}).astype(np.float64)
    step = np.abs(np.diff(y[160:]))                          # after the start-up delay
    normal = np.abs(np.diff(x.astype(np.float64))).max()
    assert step.max() <= 1.2 * normal                        # no jump at any seam


@pytest.mark.parametrize("make", IMPLS)
def test_output_never_exceeds_the_input_peak(make: Make) -> None:
    rng = np.random.default_rng(4)
    x = (rng.normal(size=8000) * 6000).clip(-20000, 20000).astype(np.int16)
    p = make(8000, 160)
    lost = {i for i in range(50) if rng.random() < 0.3}
    y = play(p, x, lost)
    assert np.abs(y.astype(np.int64)).max() <= np.abs(x.astype(np.int64)).max() + 1


def test_twins_agree_sample_for_sample() -> None:
    rng = np.random.default_rng(9)
    for rate in (8000, 16000, 24000, 32000, 48000):
        x = voiced(float(rng.uniform(70, 190)), rate, 0.6)
        x = (x + rng.normal(size=len(x)) * 500).astype(np.int16)
        lost = {i for i in range(30) if rng.random() < 0.35}
        a, b = plc.PyPlc(rate, rate // 50), plc.CPlc(rate, rate // 50, native=NATIVE)
        assert np.array_equal(play(a, x, lost), play(b, x, lost))
        assert (a.pitch, a.erased) == (b.pitch, b.erased)


@pytest.mark.parametrize("make", IMPLS)
def test_bad_arguments(make: Make) -> None:
    with pytest.raises(ValueError):
        make(44100, 882)
    with pytest.raises(ValueError):
        make(8000, 100)                                      # not whole 10 ms blocks
    p = make(8000, 160)
    with pytest.raises(ValueError):
        p.missing(100)
    assert len(p.missing(80)) == 80 and len(p.missing(240)) == 240
    assert len(p.good(np.zeros(37, np.int16))) == 37         # any length of good frame


def test_live_class_is_one_of_the_twins() -> None:
    assert plc.Plc in (plc.PyPlc, plc.CPlc)
    assert len(plc.Plc(8000, 160).missing()) == 160
