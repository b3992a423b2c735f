"""Playback sources: framing, zero padding, resampling lengths, concatenation and loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pbx.media.playback import (
    ConcatSource,
    FrameSource,
    LoopSource,
    PcmSource,
    RewindableSource,
    SilenceSource,
    WavSource,
    frame_samples_for,
    frames,
)
from pbx.media.wav import write_wav


def ramp(n: int) -> np.ndarray:
    return (np.arange(n) % 30000).astype(np.int16)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 8000) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_frame_sizes() -> None:
    assert [frame_samples_for(r) for r in (8000, 16000, 48000, 44100)] == [160, 320, 960, 882]
    with pytest.raises(ValueError):
        frame_samples_for(11025)


def test_pcm_source_frames_and_pads_the_last_one() -> None:
    src = PcmSource(ramp(400), 8000)
    assert isinstance(src, RewindableSource) and isinstance(src, FrameSource)
    assert src.frame_count == 3
    got = list(frames(src))
    assert [len(f) for f in got] == [160, 160, 160]
    assert all(f.dtype == np.int16 for f in got)
    assert np.array_equal(np.concatenate(got)[:400], ramp(400))
    assert not got[2][80:].any()
    assert src.read() is None and src.read() is None
    src.rewind()
    assert np.array_equal(src.read(), ramp(160))


def test_frames_are_copies() -> None:
    data = ramp(160)
    src = PcmSource(data, 8000)
    frame = src.read()
    assert frame is not None
    frame[:] = 0
    assert data.any()


def test_pcm_source_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        PcmSource(np.zeros(10, np.int32), 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PcmSource(np.zeros((10, 2), np.int16), 8000)


def test_empty_source() -> None:
    assert PcmSource(np.zeros(0, np.int16), 8000).read() is None


def test_silence() -> None:
    src = SilenceSource(0.05, 16000)
    got = list(frames(src))
    assert len(got) == 3 and all(len(f) == 320 and not f.any() for f in got)
    assert list(frames(SilenceSource(0))) == []
    with pytest.raises(ValueError):
        SilenceSource(-1)


@pytest.mark.parametrize(("file_rate", "target", "expected_frames"), [
    (16000, 8000, 50), (8000, 8000, 50), (8000, 16000, 50), (48000, 8000, 50),
    (44100, 8000, 50), (22050, 48000, 50), (11025, 8000, 50)])
def test_wav_source_resamples_to_the_target_rate(tmp_path: Path, file_rate: int, target: int,
                                                  expected_frames: int) -> None:
    path = tmp_path / "one_second.wav"
    write_wav(path, sine(440, file_rate, 1.0), file_rate)
    src = WavSource(path, target)
    assert (src.rate, src.file_rate, src.frame_samples) == (target, file_rate, target // 50)
    got = list(frames(src))
    assert len(got) == expected_frames
    assert all(len(f) == target // 50 for f in got)
    # The tone survives: dominant frequency 440 Hz at the new rate, level about the same.
    x = np.concatenate(got).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * target / len(x) - 440) <= 2
    assert 0.8 < np.sqrt(np.mean(x**2)) / (8000 / np.sqrt(2)) < 1.1


def test_downsampled_prompts_lose_what_the_new_rate_cannot_carry(tmp_path: Path) -> None:
    levels = {}
    for freq in (1000, 6000):  # 6 kHz is above the 4 kHz Nyquist frequency of 8 kHz
        path = tmp_path / f"{freq}.wav"
        write_wav(path, sine(freq, 48000, 0.5), 48000)
        x = np.concatenate(list(frames(WavSource(path, 8000)))).astype(np.float64)
        assert len(x) == 4000
        levels[freq] = np.sqrt(np.mean(x[200:-200] ** 2))
    assert levels[6000] < 0.1 * levels[1000]


def test_concat_source() -> None:
    a = PcmSource(ramp(200), 8000)
    b = SilenceSource(0.02)
    c = PcmSource(ramp(160) + 1, 8000)
    src = ConcatSource([a, b, c])
    got = list(frames(src))
    assert len(got) == 2 + 1 + 1
    assert np.array_equal(got[0], ramp(160))
    assert np.array_equal(got[1][:40], ramp(200)[160:]) and not got[1][40:].any()
    assert not got[2].any()
    assert np.array_equal(got[3], ramp(160) + 1)
    src.rewind()
    assert len(list(frames(src))) == 4
    with pytest.raises(ValueError):
        ConcatSource([a, PcmSource(ramp(10), 16000)])
    with pytest.raises(ValueError):
        ConcatSource([])


def test_loop_source_times_and_forever() -> None:
    inner = PcmSource(ramp(320), 8000)
    three = list(frames(LoopSource(inner, times=3)))
    assert len(three) == 6
    assert all(np.array_equal(three[k], three[k % 2]) for k in range(6))
    forever = LoopSource(PcmSource(ramp(160), 8000))
    for _ in range(1000):
        assert np.array_equal(forever.read(), ramp(160))
    loop = LoopSource(LoopSource(PcmSource(ramp(160), 8000), times=2), times=2)
    assert len(list(frames(loop))) == 4
    loop.rewind()
    assert len(list(frames(loop))) == 4
    with pytest.raises(ValueError):
        LoopSource(inner, times=0)


def test_looping_an_empty_source_ends() -> None:
    assert LoopSource(PcmSource(np.zeros(0, np.int16), 8000)).read() is None
    assert LoopSource(SilenceSource(0)).read() is None
