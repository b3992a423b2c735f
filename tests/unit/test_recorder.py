"""Streaming WAV recorder: layouts, flushing, and a file that survives `kill -9`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.media.recorder import RecorderError, WavRecorder
from pbx.media.wav import HEADER_BYTES, parse_wav

RATE = 8000


def tone(i: int, n: int = 160) -> np.ndarray:
    """Frame ``i`` of a deterministic signal, so a prefix of the file can be checked exactly."""
    t = np.arange(i * n, (i + 1) * n)
    return ((t * 37) % 20011 - 10005).astype(np.int16)


def stdlib_read(path: Path) -> tuple[int, int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")


def header_frames(path: Path, channels: int = 1) -> int:
    data = path.read_bytes()
    return int.from_bytes(data[40:44], "little") // (2 * channels)


def test_mono_write_and_close(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    with WavRecorder(path, RATE) as rec:
        for i in range(10):
            rec.write(tone(i))
        assert rec.frames_written == 1600 and rec.frames_flushed == 0
        assert rec.duration == 0.2
    assert rec.closed
    channels, rate, samples = stdlib_read(path)
    assert (channels, rate) == (1, RATE)
    assert np.array_equal(samples, np.concatenate([tone(i) for i in range(10)]))
    rec.close()  # idempotent
    with pytest.raises(RecorderError):
        rec.write(tone(0))


def test_stereo_puts_a_left_and_b_right(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    a, b = tone(1), tone(2)
    with WavRecorder(path, RATE, channels=2) as rec:
        rec.write_stereo(a, b)
        rec.write_stereo(None, b)
        rec.write_stereo(a, None)
        with pytest.raises(ValueError):
            rec.write(a)
    channels, _, samples = stdlib_read(path)
    frames = samples.reshape(-1, 2)
    z = np.zeros(160, np.int16)
    assert channels == 2
    assert np.array_equal(frames[:, 0], np.concatenate([a, z, a]))
    assert np.array_equal(frames[:, 1], np.concatenate([b, b, z]))


def test_mixed_mono_is_the_saturated_sum(tmp_path: Path) -> None:
    path = tmp_path / "mix.wav"
    left = np.array([30000, -30000, 5, 0], np.int16)
    right = np.array([30000, -30000, -7, 1], np.int16)
    with WavRecorder(path, RATE) as rec:
        rec.write_stereo(left, right)
        rec.write_stereo(None, right)
    assert stdlib_read(path)[2].tolist() == [32767, -32768, -2, 1, 30000, -30000, -7, 1]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        WavRecorder(tmp_path / "x.wav", RATE, channels=3)
    with WavRecorder(tmp_path / "y.wav", RATE, channels=2) as rec:
        with pytest.raises(ValueError):
            rec.write_stereo(None, None)
        with pytest.raises(ValueError):
            rec.write_stereo(tone(0, 4), tone(0, 5))
        with pytest.raises(ValueError):
            rec.write_stereo(tone(0).astype(np.int32), None)  # type: ignore[arg-type]


def test_header_is_rewritten_at_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    rec = WavRecorder(path, RATE, flush_seconds=0.5)
    assert header_frames(path) == 0 and path.stat().st_size == HEADER_BYTES
    for i in range(24):                      # 0.48 s: below the flush threshold
        rec.write(tone(i))
    assert header_frames(path) == 0 and rec.frames_flushed == 0
    rec.write(tone(24))                      # 0.5 s: flush
    assert header_frames(path) == 4000 == rec.frames_flushed
    assert path.stat().st_size == HEADER_BYTES + 8000
    _, _, samples = stdlib_read(path)        # valid while still recording
    assert np.array_equal(samples, np.concatenate([tone(i) for i in range(25)]))
    rec.write(tone(25))
    rec.flush()
    assert header_frames(path) == 4160
    rec.close()


def test_fsync_mode(tmp_path: Path) -> None:
    path = tmp_path / "sync.wav"
    with WavRecorder(path, RATE, fsync=True, flush_seconds=0.02) as rec:
        rec.write(tone(0))
        assert header_frames(path) == 160
    assert len(stdlib_read(path)[2]) == 160


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path[:0] = {paths!r}
    from pbx.media.recorder import WavRecorder

    def tone(i, n=160):
        t = np.arange(i * n, (i + 1) * n)
        return ((t * 37) % 20011 - 10005).astype(np.int16)

    rec = WavRecorder(sys.argv[1], 8000, channels=int(sys.argv[2]))
    frames = int(sys.argv[3])
    i = 0
    while frames < 0 or i < frames:
        if rec.channels == 1:
            rec.write(tone(i))
        else:
            rec.write_stereo(tone(i), -tone(i))
        i += 1
        if i == frames:
            print("written", flush=True)
        if frames < 0 and i % 50 == 0:
            if i == 500:
                print("running", flush=True)
            time.sleep(0.001)
    time.sleep(60)
""")


def run_and_kill(tmp_path: Path, channels: int, frames: int) -> Path:
    path = tmp_path / f"killed{channels}.wav"
    paths = [p for p in sys.path if p]
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(paths=paths))
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(channels), str(frames)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() in ("written", "running"), line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return path


def check_with_sox(path: Path, frames: int, channels: int) -> None:
    soxi = subprocess.run(["soxi", "-s", str(path)], capture_output=True, text=True, check=True)
    assert int(soxi.stdout) == frames
    chans = subprocess.run(["soxi", "-c", str(path)], capture_output=True, text=True, check=True)
    assert int(chans.stdout) == channels
    # sox decodes the whole file; its statistics see the real (non-silent) signal.
    stat = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True,
                          check=True)
    assert "Samples read" in stat.stderr
    assert int(stat.stderr.split("Samples read:")[1].split()[0]) == frames * channels


@pytest.mark.parametrize("channels", [1, 2])
def test_sigkill_leaves_everything_up_to_the_last_flush(tmp_path: Path, channels: int) -> None:
    # 3.5 s written, flushes every 1 s: the killed process leaves exactly 3 s.
    path = run_and_kill(tmp_path, channels, frames=175)
    got_channels, rate, samples = stdlib_read(path)
    assert (got_channels, rate) == (channels, 8000)
    expected = np.concatenate([tone(i) for i in range(150)])
    if channels == 1:
        assert np.array_equal(samples, expected)
    else:
        pairs = samples.reshape(-1, 2)
        assert np.array_equal(pairs[:, 0], expected) and np.array_equal(pairs[:, 1], -expected)
    check_with_sox(path, 24000, channels)


def test_sigkill_at_a_random_moment_leaves_a_valid_prefix(tmp_path: Path) -> None:
    path = run_and_kill(tmp_path, 1, frames=-1)   # writes until killed
    _, _, samples = stdlib_read(path)
    assert len(samples) >= 8000 and len(samples) % 8000 == 0   # whole flushes only
    n_frames = len(samples) // 160
    assert np.array_equal(samples, np.concatenate([tone(i) for i in range(n_frames)]))
    assert path.stat().st_size >= HEADER_BYTES + 2 * len(samples)
    wav = parse_wav(path.read_bytes())  # our reader agrees; any unflushed tail is ignored
    assert len(wav.samples) == len(samples)
    check_with_sox(path, len(samples), 1)
