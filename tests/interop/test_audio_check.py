"""The measuring instrument of the baresip test, checked on sox-made files: a delayed G.711
round trip of the speech scores near 1 at the right lag; other speech, silence and truncations
score what they should."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from .audio import level_dbfs, make_silence, make_speech, read_wav, xcorr_peak

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    path = make_speech("The quick brown fox jumps over the lazy dog. One, two, three.",
                       d / "speech.wav")
    return d, path


def test_mulaw_round_trip_with_delay_scores_near_one(speech):
    d, path = speech
    ulaw = d / "speech.ul.wav"
    back = d / "speech.back.wav"
    # 0.5 s of leading silence, through 8-bit mu-law and back to 16-bit linear
    subprocess.run(["sox", str(path), "-e", "u-law", str(ulaw), "pad", "0.5", "0"],
                   check=True, timeout=30)
    subprocess.run(["sox", str(ulaw), "-e", "signed-integer", "-b", "16", str(back)],
                   check=True, timeout=30)
    rate, ref = read_wav(path)
    _, rec = read_wav(back)
    corr = xcorr_peak(ref, rec, rate)
    assert rate == 8000
    assert corr.peak > 0.99, corr
    assert corr.lag == 4000, corr
    # gain does not matter
    assert xcorr_peak(ref, 0.1 * rec, rate).peak == pytest.approx(corr.peak, abs=1e-9)


def test_other_speech_and_silence_score_low(speech):
    d, path = speech
    other = make_speech("Hello, this is somebody else entirely. Seven, eight, nine.",
                        d / "other.wav")
    silence = make_silence(d / "silence.wav", 3.0)
    _, ref = read_wav(path)
    _, oth = read_wav(other)
    _, sil = read_wav(silence)
    assert xcorr_peak(ref, oth).peak < 0.5
    assert xcorr_peak(ref, sil).peak == 0.0
    assert level_dbfs(sil) == -math.inf
    assert level_dbfs(ref) > -40.0
    noise = np.random.default_rng(1).normal(0.0, 0.03, 5 * 8000)   # about -30 dBFS
    assert xcorr_peak(ref, noise).peak < 0.1


def test_truncated_recordings_score_their_share_of_the_energy(speech):
    _, path = speech
    _, ref = read_wav(path)
    n = ref.size
    for start, stop in ((0, n // 3), (n // 2, n)):
        part = ref[start:stop]
        # the part that survived, alone and surrounded by silence
        rec = np.concatenate([np.zeros(800), part, np.zeros(800)])
        expected = math.sqrt(np.sum((ref[start:stop] - ref.mean()) ** 2)
                             / np.sum((ref - ref.mean()) ** 2))
        corr = xcorr_peak(ref, rec)
        assert corr.peak == pytest.approx(expected, abs=0.03), (start, stop, corr, expected)
        assert corr.lag == 800 - start, corr
        assert corr.peak < 0.95
