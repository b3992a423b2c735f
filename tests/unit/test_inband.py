"""In-band DTMF detection: every digit once, in noise, and nothing on speech, noise or tones.

Every test runs both the Python twin and the C kernel (loaded from ``pbx._dsp`` directly, so the
kernel is tested in the ``PBX_NO_EXTENSIONS=1`` run too).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import inband
from pbx.media._native import IMPLEMENTATION
from pbx.media.inband import CInbandDetector, InbandDetector, PyInbandDetector
from pbx.media.tones import DTMF_FREQS, amplitude, dtmf_tones

ALL = "123A456B789C*0#D"
Detector = PyInbandDetector | CInbandDetector


def c_detector(rate: int = 8000) -> CInbandDetector:
    return CInbandDetector(rate, ffi=_dsp.ffi, lib=_dsp.lib)


IMPLS: dict[str, Callable[[int], Detector]] = {"py": PyInbandDetector, "c": c_detector}


@pytest.fixture(params=sorted(IMPLS))
def make(request: pytest.FixtureRequest) -> Callable[[int], Detector]:
    return IMPLS[request.param]


def run(det: Detector, x: np.ndarray, frame: int = 160) -> str:
    det.reset()
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    out: list[str] = []
    for i in range(0, len(pcm), frame):
        out += det.feed(pcm[i : i + frame], i / 8000)
    return "".join(out)


def tone(freqs: tuple[float, ...], levels: tuple[float, ...], seconds: float, rate: int = 8000,
         pad: float = 0.05, offset: int = 0) -> np.ndarray:
    n = np.arange(round(seconds * rate))
    x = sum(amplitude(lv) * np.sin(2 * np.pi * f * n / rate + 0.3)
            for f, lv in zip(freqs, levels, strict=True))
    lead = np.zeros(round(pad * rate) + offset)
    return np.concatenate([lead, np.asarray(x, dtype=np.float64), np.zeros(round(pad * rate))])


def with_noise(x: np.ndarray, level: float, snr_db: float, seed: int) -> np.ndarray:
    """White noise at ``snr_db`` below the power of a DTMF pair at ``level`` dBm0 per tone."""
    rng = np.random.default_rng(seed)
    signal_power = amplitude(level) ** 2  # two components of A^2 / 2
    return x + rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(x))


def test_live_implementation_follows_extension_switch() -> None:
    expected = CInbandDetector if IMPLEMENTATION == "c" else PyInbandDetector
    assert InbandDetector is expected


@pytest.mark.parametrize("level", [-10.0, -25.0])
@pytest.mark.parametrize("seed", range(3))
def test_every_digit_once_in_noise(make: Callable[[int], Detector], level: float,
                                   seed: int) -> None:
    x = dtmf_tones(ALL, 8000, duration=0.1, gap=0.1, level=level).astype(np.float64)
    x = with_noise(np.concatenate([np.zeros(400), x, np.zeros(800)]), level, 20.0, seed)
    assert run(make(8000), x) == ALL


@pytest.mark.parametrize("level", [-10.0, -25.0])
def test_minimum_duration_and_gap_accepted(make: Callable[[int], Detector], level: float) -> None:
    """40 ms tones with 40 ms pauses: each digit once (ITU-T Q.24 timing)."""
    x = dtmf_tones("1155" + ALL, 8000, duration=0.04, gap=0.04, level=level).astype(np.float64)
    x = with_noise(np.concatenate([np.zeros(400), x, np.zeros(800)]), level, 20.0, 7)
    assert run(make(8000), x) == "1155" + ALL


@pytest.mark.parametrize("offset", range(0, 160, 9))
def test_short_tones_rejected_at_any_alignment(make: Callable[[int], Detector],
                                               offset: int) -> None:
    det = make(8000)
    for digit in "159#":
        assert run(det, tone(DTMF_FREQS[digit], (-10.0, -10.0), 0.02, offset=offset)) == ""
        assert run(det, tone(DTMF_FREQS[digit], (-10.0, -10.0), 0.04, offset=offset)) == digit


def test_long_digit_reported_once(make: Callable[[int], Detector]) -> None:
    x = with_noise(tone(DTMF_FREQS["7"], (-15.0, -15.0), 2.0), -15.0, 20.0, 3)
    assert run(make(8000), x) == "7"


def test_silence_and_noise_never_detect(make: Callable[[int], Detector]) -> None:
    det = make(8000)
    assert run(det, np.zeros(8000 * 5)) == ""
    rng = np.random.default_rng(11)
    for sd in (3.0, 100.0, 1000.0, 8000.0, 30000.0):
        assert run(det, rng.normal(0.0, sd, 8000 * 4)) == "", sd
    assert run(det, rng.integers(-32768, 32768, 8000 * 4)) == ""


@pytest.mark.parametrize("freq", [350.0, 425.0, 440.0, 480.0, 620.0, 697.0, 770.0, 852.0, 941.0,
                                  1000.0, 1209.0, 1336.0, 1477.0, 1633.0, 2100.0])
def test_single_tones_never_detect(make: Callable[[int], Detector], freq: float) -> None:
    det = make(8000)
    for level in (-25.0, -10.0, 0.0):
        assert run(det, with_noise(tone((freq,), (level,), 1.0), level, 30.0, 1)) == ""


def test_progress_tones_never_detect(make: Callable[[int], Detector]) -> None:
    det = make(8000)
    for pair in ((350.0, 440.0), (440.0, 480.0), (480.0, 620.0)):
        assert run(det, tone(pair, (-10.0, -10.0), 1.0)) == ""


@pytest.mark.parametrize(("twist_db", "detected"), [
    (-6.0, True),    # high group 6 dB weaker: within the 8 dB normal twist
    (-10.0, False),  # beyond it
    (3.0, True),     # high group 3 dB stronger: within the 4 dB reverse twist
    (6.0, False),    # beyond it
])
def test_twist_limits(make: Callable[[int], Detector], twist_db: float, detected: bool) -> None:
    det = make(8000)
    for digit in ALL:
        x = tone(DTMF_FREQS[digit], (-12.0, -12.0 + twist_db), 0.1)
        assert run(det, x) == (digit if detected else ""), digit


@pytest.mark.parametrize(("deviation", "detected"), [
    (-0.015, True), (0.015, True), (-0.035, False), (0.035, False)])
def test_frequency_tolerance(make: Callable[[int], Detector], deviation: float,
                             detected: bool) -> None:
    det = make(8000)
    for digit in ALL:
        freqs = tuple(f * (1 + deviation) for f in DTMF_FREQS[digit])
        assert run(det, tone(freqs, (-10.0, -10.0), 0.1)) == (digit if detected else ""), digit


def test_level_threshold(make: Callable[[int], Detector]) -> None:
    det = make(8000)
    assert run(det, tone(DTMF_FREQS["5"], (-33.0, -33.0), 0.1)) == "5"
    assert run(det, tone(DTMF_FREQS["5"], (-40.0, -40.0), 0.1)) == ""


@pytest.mark.parametrize("frame", [1, 37, 51, 160, 480, 4000])
def test_any_frame_size(make: Callable[[int], Detector], frame: int) -> None:
    x = dtmf_tones("4#7", 8000, duration=0.06, gap=0.05, level=-20.0)
    assert run(make(8000), x, frame) == "4#7"


def test_wideband_rate(make: Callable[[int], Detector]) -> None:
    x = dtmf_tones("90*", 16000, duration=0.05, gap=0.05, level=-20.0)
    assert run(make(16000), x, 320) == "90*"
    with pytest.raises(ValueError):
        make(11025)
    with pytest.raises(ValueError):
        make(44100)


def test_c_and_py_thresholds_agree() -> None:
    py, c = PyInbandDetector(8000), c_detector(8000)
    d = c._det
    assert (d.win, d.hop) == (py.win, py.hop) == (inband.WINDOW_8K, inband.WINDOW_8K // 2)
    assert (d.hits_to_begin, d.misses_to_end) == (inband.HITS_TO_BEGIN, inband.MISSES_TO_END)
    assert d.min_power == py.min_power
    assert d.normal_twist == py.normal_twist
    assert d.reverse_twist == py.reverse_twist
    assert d.rel_peak == py.rel_peak
    assert d.energy_ratio == py.energy_ratio


def _speech(tmp_path: Path, seconds: float = 10.0) -> np.ndarray:
    """About ``seconds`` of espeak-ng speech, at 8 kHz PCM16 (resampled by sox)."""
    text = ("Thank you for calling. All of our agents are busy at the moment. Please enter your "
            "account number followed by the pound key, or press star to return to the main "
            "menu. One two three four five six seven eight nine zero.")
    raw, low = tmp_path / "speech.wav", tmp_path / "speech8k.wav"
    assert shutil.which("espeak-ng") and shutil.which("sox"), "espeak-ng and sox are required"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(raw), text], check=True,
                   capture_output=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(low)], check=True,
                   capture_output=True, timeout=60)
    with wave.open(str(low)) as w:
        assert w.getframerate() == 8000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert len(pcm) >= 8000 * 8
    return pcm[: round(seconds * 8000)]


def test_no_detection_on_speech(tmp_path: Path) -> None:
    speech = _speech(tmp_path).astype(np.float64)
    counts = {}
    for name, factory in IMPLS.items():
        det = factory(8000)
        found = ""
        for gain in (0.5, 1.0, 3.0):  # quiet, as synthesised, and loud (clipping)
            found += run(det, speech * gain)
        counts[name] = len(found)
    print(f"in-band DTMF false positives on {len(speech) / 8000:.1f} s of speech x3 gains:",
          counts)
    assert counts == {"c": 0, "py": 0}


def test_digits_detected_after_speech(tmp_path: Path) -> None:
    speech = _speech(tmp_path, 3.0).astype(np.float64)
    digits = dtmf_tones("2580", 8000, duration=0.08, gap=0.08, level=-15.0).astype(np.float64)
    x = np.concatenate([speech, np.zeros(400), digits, np.zeros(400), speech])
    for factory in IMPLS.values():
        assert run(factory(8000), x) == "2580"
