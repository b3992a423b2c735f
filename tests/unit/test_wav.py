"""WAV reading (every supported encoding, built by hand, by `wave` and by sox), errors, writing."""

from __future__ import annotations

import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.errors import ParseError
from pbx.media import dsp
from pbx.media.wav import (
    HEADER_BYTES,
    WavError,
    parse_wav,
    read_wav,
    wav_bytes,
    wav_header,
    write_wav,
)

RNG = np.random.default_rng(1234)
SIGNAL = np.concatenate([np.array([0, 1, -1, 255, -256, 32767, -32768], np.int16),
                         RNG.integers(-32768, 32768, 200).astype(np.int16)])
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def riff(fmt_body: bytes, data: bytes, *, extra: bytes = b"", data_size: int | None = None) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra
    chunks += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def fmt(tag: int, channels: int, rate: int, bits: int, *, extensible_tag: int | None = None,
        block: int | None = None) -> bytes:
    block = channels * bits // 8 if block is None else block
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extensible_tag is not None:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", extensible_tag) + GUID_TAIL
    return body


def test_pcm16_mono() -> None:
    wav = parse_wav(riff(fmt(1, 1, 8000, 16), SIGNAL.astype("<i2").tobytes()))
    assert (wav.rate, wav.channels, wav.encoding, wav.bits) == (8000, 1, "pcm", 16)
    assert wav.samples.dtype == np.int16
    assert np.array_equal(wav.samples, SIGNAL)
    assert wav.duration == len(SIGNAL) / 8000


def test_pcm8_unsigned() -> None:
    raw = ((SIGNAL.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()
    wav = parse_wav(riff(fmt(1, 1, 11025, 8), raw))
    assert np.array_equal(wav.samples, (SIGNAL.astype(np.int32) >> 8) << 8)
    assert wav.rate == 11025


def test_pcm24_keeps_the_top_16_bits() -> None:
    low = RNG.integers(0, 256, len(SIGNAL))
    v = SIGNAL.astype(np.int64) * 256 + low
    raw = b"".join(int(x).to_bytes(3, "little", signed=True) for x in v)
    wav = parse_wav(riff(fmt(1, 1, 44100, 24), raw))
    assert np.array_equal(wav.samples, SIGNAL)


def test_pcm32() -> None:
    v = SIGNAL.astype(np.int64) * 65536 + RNG.integers(0, 65536, len(SIGNAL))
    wav = parse_wav(riff(fmt(1, 1, 48000, 32), v.astype("<i4").tobytes()))
    assert np.array_equal(wav.samples, SIGNAL)


@pytest.mark.parametrize(("bits", "dtype"), [(32, "<f4"), (64, "<f8")])
def test_float(bits: int, dtype: str) -> None:
    x = SIGNAL.astype(np.float64) / 32768
    x = np.concatenate([x, [1.5, -2.0, np.nan]])  # out of range clips, NaN is silence
    wav = parse_wav(riff(fmt(3, 1, 16000, bits), x.astype(dtype).tobytes()))
    assert wav.encoding == "float"
    assert np.array_equal(wav.samples, np.concatenate([SIGNAL, [32767, -32768, 0]]))


def test_ulaw_and_alaw_known_codes() -> None:
    ulaw = parse_wav(riff(fmt(7, 1, 8000, 8), bytes([0xFF, 0x7F, 0x00, 0x80])))
    assert ulaw.encoding == "ulaw"
    assert ulaw.samples.tolist() == [0, 0, -32124, 32124]
    alaw = parse_wav(riff(fmt(6, 1, 8000, 8), bytes([0xD5, 0x55, 0xAA, 0x2A])))
    assert alaw.encoding == "alaw"
    assert alaw.samples.tolist() == [8, -8, 32256, -32256]


def test_ulaw_matches_the_codec() -> None:
    codes = dsp.ulaw_encode(SIGNAL.astype("<i2").tobytes())
    wav = parse_wav(riff(fmt(7, 1, 8000, 8), codes))
    assert wav.samples.tobytes() == dsp.ulaw_decode(codes)


@pytest.mark.parametrize(("tag", "bits"), [(1, 16), (1, 24), (3, 32), (7, 8)])
def test_extensible(tag: int, bits: int) -> None:
    if tag == 1 and bits == 16:
        raw = SIGNAL.astype("<i2").tobytes()
    elif tag == 1:
        raw = b"".join((int(s) * 256).to_bytes(3, "little", signed=True) for s in SIGNAL)
    elif tag == 3:
        raw = (SIGNAL / 32768).astype("<f4").tobytes()
    else:
        raw = dsp.ulaw_encode(SIGNAL.astype("<i2").tobytes())
    wav = parse_wav(riff(fmt(0xFFFE, 1, 8000, bits, extensible_tag=tag), raw))
    expected = (np.frombuffer(dsp.ulaw_decode(raw), "<i2") if tag == 7 else SIGNAL)
    assert np.array_equal(wav.samples, expected)


def test_stereo_is_averaged_unless_asked_not_to() -> None:
    left, right = SIGNAL, SIGNAL[::-1].copy()
    raw = np.stack([left, right], axis=1).astype("<i2").tobytes()
    data = riff(fmt(1, 2, 8000, 16), raw)
    wav = parse_wav(data)
    assert wav.channels == 2
    assert np.array_equal(wav.samples, (left.astype(np.int32) + right) // 2)
    both = parse_wav(data, downmix=False).samples
    assert both.shape == (len(SIGNAL), 2)
    assert np.array_equal(both[:, 0], left) and np.array_equal(both[:, 1], right)


def test_three_channels_and_odd_chunks_are_handled() -> None:
    raw = np.stack([SIGNAL, SIGNAL, SIGNAL], axis=1).astype("<i2").tobytes()
    extra = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd size, padded
    wav = parse_wav(riff(fmt(1, 3, 8000, 16), raw, extra=extra))
    assert np.array_equal(wav.samples, SIGNAL)


def test_stdlib_wave_files(tmp_path: Path) -> None:
    for width in (1, 2):
        path = tmp_path / f"w{width}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(width)
            w.setframerate(22050)
            frames = np.stack([SIGNAL, SIGNAL], axis=1)
            if width == 1:
                w.writeframes(((frames.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes())
            else:
                w.writeframes(frames.astype("<i2").tobytes())
        samples, rate = read_wav(path)
        assert rate == 22050
        expected = SIGNAL if width == 2 else (SIGNAL.astype(np.int32) >> 8) << 8
        assert np.array_equal(samples, expected)


@pytest.mark.parametrize("args", [["-b", "24"], ["-e", "floating-point", "-b", "32"],
                                  ["-e", "mu-law"], ["-e", "a-law"], ["-b", "8"]])
def test_sox_conversions(tmp_path: Path, args: list[str]) -> None:
    src = tmp_path / "src.wav"
    write_wav(src, np.stack([SIGNAL, SIGNAL], axis=1), 11025)
    dst = tmp_path / "dst.wav"
    subprocess.run(["sox", "-D", str(src), *args, str(dst)], check=True, capture_output=True)
    wav = parse_wav(dst.read_bytes())
    assert (wav.rate, wav.channels, len(wav.samples)) == (11025, 2, len(SIGNAL))
    error = np.abs(wav.samples.astype(np.int32) - SIGNAL)
    if (args[0] == "-b" and args[1] != "8") or args[1] == "floating-point":
        assert error.max() == 0
    else:  # companded or 8-bit: within one quantisation step
        assert (error <= np.abs(SIGNAL.astype(np.int32)) // 16 + 256).all()


def test_truncated_data_is_an_error_unless_allowed() -> None:
    raw = SIGNAL.astype("<i2").tobytes()
    data = riff(fmt(1, 1, 8000, 16), raw + b"\x01", data_size=0x7FFFF000)
    with pytest.raises(WavError, match="truncated"):
        parse_wav(data)
    wav = parse_wav(data, allow_truncated=True)
    assert np.array_equal(wav.samples, SIGNAL)  # the odd trailing byte is dropped
    partial = riff(fmt(1, 1, 8000, 16), raw + b"\x01")
    with pytest.raises(WavError, match="whole number"):
        parse_wav(partial)
    assert len(parse_wav(partial, allow_truncated=True).samples) == len(SIGNAL)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "shorter"),
    (b"RIFX" + bytes(8), "signature"),
    (b"RF64" + bytes(8), "RF64"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no fmt"),
    (riff(fmt(2, 1, 8000, 4), b"\x00"), "format code 0x0002"),
    (riff(fmt(1, 1, 8000, 12, block=2), b"\x00\x00"), "12 bits"),
    (riff(fmt(3, 1, 8000, 16), b"\x00\x00"), "float sample size"),
    (riff(fmt(1, 1, 8000, 16, block=4), b"\x00\x00"), "block align"),
    (riff(fmt(1, 0, 8000, 16, block=0), b""), "zero channels"),
    (riff(fmt(1, 1, 0, 16), b""), "rate of 0"),
    (riff(b"\x01\x00", b""), "fmt chunk too short"),
    (riff(fmt(0xFFFE, 1, 8000, 16), b""), "shorter than 40"),
    (riff(fmt(0xFFFE, 1, 8000, 16, extensible_tag=1)[:-1] + b"\x00", b""), "GUID"),
    (b"RIFF\x10\x00\x00\x00WAVEdata\x00\x00\x00\x00", "before the fmt"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "fmt chunk cut short"),
    (riff(fmt(1, 1, 8000, 16), b"")[:36], "no data chunk"),
])
def test_errors_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(WavError, match=reason) as info:
        parse_wav(data)
    assert isinstance(info.value, ParseError)
    assert reason in info.value.reason


def test_writer_round_trips_through_stdlib_wave(tmp_path: Path) -> None:
    stereo = np.stack([SIGNAL, -(SIGNAL // 2)], axis=1).astype(np.int16)
    for samples, channels in ((SIGNAL, 1), (stereo, 2)):
        path = tmp_path / f"out{channels}.wav"
        write_wav(path, samples, 16000)
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (channels, 2, 16000)
            got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert np.array_equal(got, samples.reshape(-1))
        assert path.stat().st_size == HEADER_BYTES + samples.size * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out1.wav", "out2.wav"]  # no temp left
    assert wav_bytes(SIGNAL, 8000) == wav_header(8000, 1, 2 * len(SIGNAL)) + SIGNAL.tobytes()
    with pytest.raises(ValueError):
        wav_header(8000, 1, -1)
    with pytest.raises(ValueError):
        wav_bytes(SIGNAL.astype(np.int32), 8000)  # type: ignore[arg-type]
