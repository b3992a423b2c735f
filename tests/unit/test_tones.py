"""Tone generators: frames, levels, frequencies, cadences, phase continuity, finite ends."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from pbx.media.tones import (
    CADENCES,
    DTMF_FREQS,
    Segment,
    ToneSource,
    ToneSpec,
    amplitude,
    beep,
    busy,
    call_waiting,
    congestion,
    dtmf,
    dtmf_tones,
    ringback,
    silence,
)


def peaks(x: np.ndarray, rate: int, count: int) -> list[float]:
    """The ``count`` strongest frequencies (Hz, 1 Hz resolution) of ``x``."""
    n = rate  # one second of signal gives 1 Hz bins
    spectrum = np.abs(np.fft.rfft(x[:n].astype(np.float64), n))
    return sorted(float(f) for f in np.argsort(spectrum)[-count:])


def on_off_runs(x: np.ndarray, block: int = 8) -> list[tuple[bool, int]]:
    """Run lengths of (sounding, samples), judged per ``block`` samples (every cadence boundary
    here falls on one; a block of a tone is never all zeros, one of silence always is)."""
    assert len(x) % block == 0
    loud = np.abs(x.reshape(-1, block)).max(axis=1) > 0
    runs: list[tuple[bool, int]] = []
    for v in loud.tolist():
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + block)
        else:
            runs.append((v, block))
    return runs


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_frames_are_20ms_int16(rate: int) -> None:
    src = ToneSource(ringback("us"), rate)
    for _ in range(3):
        frame = src.read(0.0)
        assert frame is not None
        assert frame.dtype == np.int16
        assert frame.shape == (rate // 50,)


def test_dbm0_convention() -> None:
    assert amplitude(3.14) == pytest.approx(32767)
    assert amplitude(0.0) == pytest.approx(32767 / 10 ** (3.14 / 20))
    assert amplitude(-20.0) == pytest.approx(amplitude(0.0) / 10)


@pytest.mark.parametrize("digit", list("123A456B789C*0#D"))
def test_dtmf_digit_frequencies_and_level(digit: str) -> None:
    x = ToneSource(dtmf(digit, duration=1.0, level=-10.0), 8000).frames()
    sig = np.concatenate(x)
    assert len(sig) == 8000
    assert peaks(sig, 8000, 2) == list(DTMF_FREQS[digit])
    rms = math.sqrt(float(np.mean(sig.astype(np.float64) ** 2)))
    assert rms == pytest.approx(amplitude(-10.0), rel=0.01)  # two components at A/sqrt(2) each


def test_dtmf_twist_sets_high_group_level() -> None:
    sig = np.concatenate(ToneSource(dtmf("1", 1.0, level=-10.0, twist_db=-6.0), 8000).frames())
    spectrum = np.abs(np.fft.rfft(sig.astype(np.float64)))
    assert 20 * math.log10(spectrum[1209] / spectrum[697]) == pytest.approx(-6.0, abs=0.1)


def test_dtmf_finite_sequence_and_padding() -> None:
    src = ToneSource(dtmf("12", duration=0.05, gap=0.03), 8000)
    frames = src.frames()
    total = 400 + 240 + 400
    assert len(frames) == math.ceil(total / 160)
    sig = np.concatenate(frames)
    assert np.all(sig[total:] == 0)
    assert [(on, n) for on, n in on_off_runs(sig[:total])] == [(True, 400), (False, 240),
                                                                (True, 400)]
    assert src.read() is None
    assert src.read() is None
    assert src.finished


def test_dtmf_tones_convenience_matches_source() -> None:
    sig = dtmf_tones("59", rate=16000, duration=0.1, gap=0.05, level=-20.0)
    ref = np.concatenate(ToneSource(dtmf("59", 0.1, 0.05, -20.0), 16000).frames())
    assert np.array_equal(sig, ref)
    assert len(dtmf_tones("", 8000)) == 0


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        dtmf("1x")
    with pytest.raises(ValueError):
        ringback("mars")
    with pytest.raises(ValueError):
        ToneSource(beep(), 8001)
    with pytest.raises(ValueError):
        ToneSpec(())


def test_phase_continuous_across_frames() -> None:
    src = ToneSource(ToneSpec((Segment((440.0, 1000.0), None, -10.0),)), 8000)
    sig = np.concatenate(src.frames(50)).astype(np.float64)
    n = np.arange(len(sig))
    ref = amplitude(-10.0) * (np.sin(2 * np.pi * 440 * n / 8000) + np.sin(2 * np.pi * 1000 * n / 8000))
    assert np.max(np.abs(sig - ref)) <= 0.5 + 1e-6  # only the rounding to int16


@pytest.mark.parametrize(("region", "freqs", "on", "off"), [
    ("us", [440.0, 480.0], 2.0, 4.0),
    ("cn", [450.0], 1.0, 4.0),
    ("eu", [425.0], 1.0, 4.0),
    ("itu", [425.0], 1.0, 4.0),
])
def test_ringback_cadence(region: str, freqs: list[float], on: float, off: float) -> None:
    rate = 8000
    sig = np.concatenate(ToneSource(ringback(region), rate).frames(int(2 * (on + off) * 50)))
    assert peaks(sig, rate, len(freqs)) == freqs
    runs = on_off_runs(sig)
    assert runs == [(True, on * rate), (False, off * rate)] * 2


@pytest.mark.parametrize(("factory", "region", "freqs", "on", "off"), [
    (busy, "us", [480.0, 620.0], 0.5, 0.5),
    (busy, "cn", [450.0], 0.35, 0.35),
    (busy, "eu", [425.0], 0.5, 0.5),
    (congestion, "us", [480.0, 620.0], 0.25, 0.25),
    (congestion, "cn", [450.0], 0.7, 0.7),
    (congestion, "eu", [425.0], 0.25, 0.25),
])
def test_busy_and_congestion_cadences(factory: Callable[[str], ToneSpec], region: str, freqs: list[float], on: float,
                                      off: float) -> None:
    rate = 8000
    cycles = 4
    frames = ToneSource(factory(region), rate).frames(round(cycles * (on + off) * 50))
    sig = np.concatenate(frames)
    assert peaks(sig[: int(on * rate)], rate, len(freqs)) == freqs
    assert on_off_runs(sig) == [(True, round(on * rate)), (False, round(off * rate))] * cycles


def test_cadence_table_levels() -> None:
    assert CADENCES["us"]["ringback"][1] == -19.0
    sig = np.concatenate(ToneSource(busy("us"), 8000).frames(25))  # the first 0.5 s: tone
    rms = math.sqrt(float(np.mean(sig.astype(np.float64) ** 2)))
    assert rms == pytest.approx(amplitude(-24.0), rel=0.01)


def test_call_waiting_repeats() -> None:
    sig = np.concatenate(ToneSource(call_waiting("eu"), 8000).frames(2 * 250))
    assert on_off_runs(sig) == [(True, 1600), (False, 1600), (True, 1600), (False, 35200)] * 2
    sig = np.concatenate(ToneSource(call_waiting("us"), 8000).frames(500))
    assert on_off_runs(sig)[:2] == [(True, 2400), (False, 77600)]


def test_beep_is_finite_single_tone() -> None:
    src = ToneSource(beep(1000.0, 0.25, -10.0), 16000)
    frames = src.frames()
    assert len(frames) == 13  # 250 ms: 12.5 frames, the last one padded
    sig = np.concatenate(frames)
    assert peaks(np.concatenate([sig, np.zeros(16000, np.int16)]), 16000, 1) == [1000.0]
    assert np.all(sig[4000:] == 0)
    assert src.read() is None


def test_silence() -> None:
    frames = ToneSource(silence(0.1), 8000).frames()
    assert len(frames) == 5
    assert all(not f.any() for f in frames)
    endless = ToneSource(silence(), 8000)
    assert len(endless.frames(200)) == 200
    assert not endless.finished


def test_saturates_instead_of_wrapping() -> None:
    sig = np.concatenate(ToneSource(dtmf("D", 0.1, level=3.0), 8000).frames())
    assert sig.max() == 32767
    assert sig.min() == -32768
    ref = amplitude(3.0) * (np.sin(2 * np.pi * 941 * np.arange(800) / 8000)
                            + np.sin(2 * np.pi * 1633 * np.arange(800) / 8000))
    assert np.all(np.sign(sig[:800]) == np.sign(np.rint(np.clip(ref, -32768, 32767))))
