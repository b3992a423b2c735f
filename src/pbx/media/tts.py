"""Text-to-speech behind a small provider interface, with Debian ``espeak-ng`` as the provider.

``synthesize`` is synchronous and blocks while the synthesizer runs (tens to hundreds of ms):
the engine shell calls it through ``loop.run_in_executor``. Results are cached on disk, keyed by
a hash of everything that shapes the audio (text, voice, speed, rate), so a prompt said twice
is synthesized once; the cache is safe to share between threads and processes (files appear
atomically) and to delete at any time. Upgrading espeak-ng does not invalidate it: clear the
directory if the voice must change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pbx.errors import PbxError
from pbx.media.resample import resample
from pbx.media.wav import WavError, parse_wav, read_wav, write_wav

__all__ = ["VOICE_ALIASES", "EspeakNgProvider", "TtsError", "TtsProvider"]

Int16Array = npt.NDArray[np.int16]

VOICE_ALIASES = {"zh": "cmn", "zh-cn": "cmn", "zh-cmn": "cmn", "mandarin": "cmn",
                 "cantonese": "yue", "zh-yue": "yue"}
"""Friendly voice names mapped to espeak-ng's (Mandarin is ``cmn`` there)."""

_VOICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]{0,63}")


class TtsError(PbxError):
    """Synthesis failed: synthesizer missing, unknown voice, or a failed run."""


@runtime_checkable
class TtsProvider(Protocol):
    """Turns text into int16 mono samples at (or near) ``rate``; returns them with their rate."""

    def synthesize(self, text: str, *, voice: str = "en", rate: int = 8000) -> tuple[Int16Array, int]:
        """Speak ``text`` in ``voice``; blocking."""
        ...


class EspeakNgProvider:
    """``espeak-ng --stdout`` in a subprocess, resampled to the asked rate, cached on disk.

    ``cache_dir`` None disables caching. ``speed`` is words per minute (80 to 450, espeak-ng's
    range). ``hits`` and ``misses`` count cache outcomes.
    """

    name = "espeak-ng"

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, *,
                 executable: str = "espeak-ng", speed: int = 160, timeout: float = 60.0) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.executable = executable
        self.speed = self._check_speed(speed)
        self.timeout = timeout
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _check_speed(speed: int) -> int:
        if not 80 <= speed <= 450:
            raise ValueError("speed must be 80..450 words per minute")
        return speed

    @staticmethod
    def resolve_voice(voice: str) -> str:
        """The espeak-ng voice for ``voice`` (aliases such as ``zh`` -> ``cmn`` applied)."""
        resolved = VOICE_ALIASES.get(voice.lower(), voice)
        if not _VOICE_RE.fullmatch(resolved):
            raise TtsError(f"invalid voice name {voice!r}")
        return resolved

    def cache_path(self, text: str, *, voice: str = "en", rate: int = 8000,
                   speed: int | None = None) -> Path | None:
        """Where the audio for these arguments is (or would be) cached."""
        if self.cache_dir is None:
            return None
        key = json.dumps({"engine": self.name, "text": text, "voice": self.resolve_voice(voice),
                          "speed": speed or self.speed, "rate": rate}, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.wav"

    def synthesize(self, text: str, *, voice: str = "en", rate: int = 8000,
                   speed: int | None = None) -> tuple[Int16Array, int]:
        """Speak ``text``: int16 mono samples at ``rate``, and ``rate``.

        Raises TtsError when espeak-ng is missing, the voice is unknown or the run fails.
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        speed = self._check_speed(speed) if speed is not None else self.speed
        espeak_voice = self.resolve_voice(voice)
        if not text.strip():
            return np.zeros(0, np.int16), rate
        path = self.cache_path(text, voice=voice, rate=rate, speed=speed)
        if path is not None and path.exists():
            with contextlib.suppress(WavError, OSError):
                samples, file_rate = read_wav(path)
                if file_rate == rate:
                    self.hits += 1
                    return samples, rate
        self.misses += 1
        samples = resample(*self._run(text, espeak_voice, speed), rate)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, samples, rate)
        return samples, rate

    def _run(self, text: str, voice: str, speed: int) -> tuple[Int16Array, int]:
        exe = shutil.which(self.executable)
        if exe is None:
            raise TtsError(f"{self.executable} not found: install the Debian package espeak-ng")
        try:
            # Text goes through stdin, never argv: it cannot be taken for an option.
            proc = subprocess.run([exe, "--stdout", "-v", voice, "-s", str(speed), "-b", "1"],
                                  input=text.encode("utf-8"), capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TtsError(f"espeak-ng took longer than {self.timeout} s") from None
        except OSError as exc:
            raise TtsError(f"cannot run {exe}: {exc}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise TtsError(f"espeak-ng failed (voice {voice!r}): {err or proc.returncode}")
        if not proc.stdout:
            return np.zeros(0, np.int16), 22050
        try:
            # Written to a pipe, the header cannot carry the final size: take what is there.
            wav = parse_wav(proc.stdout, allow_truncated=True)
        except WavError as exc:
            raise TtsError(f"espeak-ng produced unreadable audio: {exc.reason}") from None
        return wav.samples, wav.rate
