"""Speech files for the softphones, and the measure of whether a recording contains them.

``make_speech`` renders text with espeak-ng and converts it with sox to what the G.711 path
carries (8 kHz, mono, 16-bit). ``xcorr_peak`` is the normalised cross-correlation between a
reference and a recording, over every lag: 1.0 means the recording holds the reference exactly
(up to gain); a clean G.711 round trip measures about 0.99; unrelated speech stays far below 0.5.
"""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Correlation", "level_dbfs", "make_silence", "make_speech", "read_wav", "xcorr_peak"]

RATE = 8000


def make_speech(text: str, path: Path, *, pad_seconds: float = 0.0) -> Path:
    """``text`` spoken into ``path`` (8 kHz mono 16-bit WAV), with ``pad_seconds`` of silence
    appended. Raises if espeak-ng or sox is missing or fails: a missing tool is a failure."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=30,
                   capture_output=True)
    cmd = ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
           str(path)]
    if pad_seconds > 0:
        cmd += ["pad", "0", f"{pad_seconds:g}"]
    subprocess.run(cmd, check=True, timeout=30, capture_output=True)
    raw.unlink()
    return path


def make_silence(path: Path, seconds: float) -> Path:
    """Digital silence (-D: no dither) as an 8 kHz mono 16-bit WAV."""
    subprocess.run(["sox", "-D", "-n", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(path), "trim", "0", f"{seconds:g}"], check=True, timeout=30,
                   capture_output=True)
    return path


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(sample rate, samples as float64 in [-1, 1)) of a 16-bit PCM WAV; stereo is averaged."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return rate, data / 32768.0


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


@dataclass(frozen=True, slots=True)
class Correlation:
    peak: float          # normalised cross-correlation at the best lag, in [-1, 1]
    lag: int             # samples the reference is delayed by in the recording (may be < 0)
    rate: int

    @property
    def lag_seconds(self) -> float:
        return self.lag / self.rate


def xcorr_peak(reference: np.ndarray, recording: np.ndarray, rate: int = RATE) -> Correlation:
    """Normalised cross-correlation of ``reference`` against ``recording`` at every lag.

    At lag L the score is  sum(ref[n] * rec[n + L]) / (|ref| * |rec[L : L + len(ref)]|),  where
    |ref| is the energy of the WHOLE reference: a recording holding only part of the reference
    scores at most sqrt(fraction of the reference's energy it holds). Negative lags (the start of
    the reference missing from the recording) count too. Computed with one real FFT.
    """
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(recording, dtype=np.float64)
    if ref.size == 0 or rec.size == 0:
        return Correlation(0.0, 0, rate)
    ref = ref - ref.mean()
    rec = rec - rec.mean()
    n, m = ref.size, rec.size
    nfft = 1 << (n + m - 1).bit_length()
    spec = np.fft.rfft(rec, nfft) * np.conj(np.fft.rfft(ref, nfft))
    circ = np.fft.irfft(spec, nfft)
    lags = np.arange(-(n - 1), m)
    corr = np.concatenate([circ[nfft - (n - 1):], circ[:m]])   # circ[k] is lag k, mod nfft
    # energy of the recording under the reference, for every lag (clipped at both ends)
    csum = np.concatenate([[0.0], np.cumsum(rec * rec)])
    lo = np.clip(lags, 0, m)
    hi = np.clip(lags + n, 0, m)
    rec_energy = csum[hi] - csum[lo]
    ref_norm = float(np.sqrt(np.sum(ref * ref)))
    denom = ref_norm * np.sqrt(np.maximum(rec_energy, 0.0))
    # a window of (near) digital silence cannot match anything: keep it out of the maximum
    floor = 1e-9 * ref_norm * ref_norm
    score = np.where(rec_energy > floor, corr / np.where(denom > 0, denom, 1.0), 0.0)
    best = int(np.argmax(score))
    return Correlation(float(score[best]), int(lags[best]), rate)
