"""Text-to-speech through espeak-ng: real audio, the disk cache, voices and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pbx.errors import PbxError
from pbx.media.tts import EspeakNgProvider, TtsError, TtsProvider
from pbx.media.wav import read_wav


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_speech_is_real_audio_and_the_second_call_hits_the_cache(tmp_path: Path) -> None:
    tts = EspeakNgProvider(tmp_path / "cache")
    assert isinstance(tts, TtsProvider)
    samples, rate = tts.synthesize("Hello, this is a test of the exchange.", voice="en", rate=8000)
    assert rate == 8000 and samples.dtype == np.int16 and samples.ndim == 1
    assert 1.0 < len(samples) / rate < 6.0
    assert rms(samples) > 500
    # Speech has pauses: the loudest 100 ms is far louder than the quietest.
    blocks = samples[: len(samples) // 800 * 800].reshape(-1, 800)
    levels = [rms(b) for b in blocks]
    assert max(levels) > 10 * (min(levels) + 1)
    assert (tts.hits, tts.misses) == (0, 1)
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".wav"
    tts.executable = "/nonexistent/espeak-ng"      # a cache hit must not run anything
    again, rate2 = tts.synthesize("Hello, this is a test of the exchange.", voice="en", rate=8000)
    assert (tts.hits, tts.misses) == (1, 1)
    assert rate2 == 8000 and np.array_equal(again, samples)
    assert np.array_equal(read_wav(cached[0])[0], samples)


def test_cache_key_covers_text_voice_rate_and_speed(tmp_path: Path) -> None:
    tts = EspeakNgProvider(tmp_path)
    paths = {tts.cache_path("one", voice="en", rate=8000),
             tts.cache_path("two", voice="en", rate=8000),
             tts.cache_path("one", voice="de", rate=8000),
             tts.cache_path("one", voice="en", rate=16000),
             tts.cache_path("one", voice="en", rate=8000, speed=300)}
    assert len(paths) == 5
    assert tts.cache_path("x", voice="zh") == tts.cache_path("x", voice="cmn")
    assert EspeakNgProvider(None).cache_path("x") is None


def test_mandarin_and_rates(tmp_path: Path) -> None:
    tts = EspeakNgProvider(tmp_path)
    samples, rate = tts.synthesize("你好，欢迎致电。", voice="zh", rate=16000)
    assert rate == 16000 and 0.5 < len(samples) / rate < 6.0 and rms(samples) > 500


def test_speed_changes_duration() -> None:
    tts = EspeakNgProvider(None)
    text = "one two three four five six seven eight nine ten"
    slow, _ = tts.synthesize(text, speed=100)
    fast, _ = tts.synthesize(text, speed=300)
    assert len(fast) < 0.6 * len(slow)
    assert tts.misses == 2 and tts.hits == 0
    with pytest.raises(ValueError):
        tts.synthesize(text, speed=10)


def test_text_is_never_taken_for_an_option() -> None:
    samples, _ = EspeakNgProvider(None).synthesize("--help -v xx")
    assert len(samples) > 0 and rms(samples) > 100


def test_empty_text_needs_no_synthesizer() -> None:
    tts = EspeakNgProvider(None, executable="/nonexistent/espeak-ng")
    samples, rate = tts.synthesize("   ", rate=8000)
    assert len(samples) == 0 and rate == 8000


def test_errors(tmp_path: Path) -> None:
    missing = EspeakNgProvider(tmp_path, executable="no-such-espeak-ng-binary")
    with pytest.raises(TtsError, match="install the Debian package espeak-ng"):
        missing.synthesize("hello")
    with pytest.raises(TtsError, match="voice"):
        EspeakNgProvider(None).synthesize("hello", voice="xx-nonexistent")
    with pytest.raises(TtsError, match="invalid voice"):
        EspeakNgProvider(None).synthesize("hello", voice="-x; rm")
    assert issubclass(TtsError, PbxError)
    with pytest.raises(ValueError):
        EspeakNgProvider(None, speed=1000)


def test_a_corrupt_cache_file_is_replaced(tmp_path: Path) -> None:
    tts = EspeakNgProvider(tmp_path)
    path = tts.cache_path("hello", rate=8000)
    assert path is not None
    path.write_bytes(b"garbage")
    samples, _ = tts.synthesize("hello", rate=8000)
    assert len(samples) > 0 and tts.misses == 1
    assert np.array_equal(read_wav(path)[0], samples)
