"""Codec registry and per-stream coders: G.711, L16, G.722 (C kernel and Python twin), Opus."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.errors import PbxError
from pbx.media import g722
from pbx.media.codecs import (
    Codec,
    OpusDecoder,
    OpusEncoder,
    UnknownCodecError,
    codec_for_payload_type,
    codecs,
    get_codec,
    static_payload_types,
)

NATIVE = (_dsp.ffi, _dsp.lib)   # the C kernels, whatever PBX_NO_EXTENSIONS says
I16 = npt.NDArray[np.int16]
F64 = npt.NDArray[np.float64]


def sine(freq: float, rate: int, seconds: float, amp: float = 10000.0) -> I16:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def speech_like(rate: int, seconds: float, seed: int = 7) -> I16:
    """A resonant AR(2) process with a 3 Hz syllable envelope: formant-ish, not periodic."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    e = rng.normal(size=n)
    s = np.zeros(n)
    for i in range(2, n):
        s[i] = 1.6 * s[i - 1] - 0.8 * s[i - 2] + e[i]
    env = 0.3 + np.abs(np.sin(2 * np.pi * 3 * np.arange(n) / rate))
    return (s / np.abs(s).max() * 12000 * env).astype(np.int16)


def through(codec: Codec, x: I16, impl: str | None = None) -> I16:
    """Encode frame by frame, decode, concatenate (including the decoder's delay)."""
    enc, dec = codec.encoder(impl), codec.decoder(impl)
    n = codec.frame_samples()
    return np.concatenate([dec.decode(enc.encode(x[i:i + n])) for i in range(0, len(x), n)])


def snr_db(ref: npt.ArrayLike, got: npt.ArrayLike) -> float:
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(got, dtype=np.float64)
    return float(10 * np.log10(np.sum(a**2) / max(np.sum((a - b) ** 2), 1e-9)))


def best_lag(x: I16, y: I16, lags: range) -> tuple[int, float]:
    """(lag, SNR) of y[lag:] against x maximizing the SNR."""
    m = len(x) - lags.stop - 1
    scores = [(snr_db(x[200:m], y[200 + lag:m + lag]), lag) for lag in lags]
    snr, lag = max(scores)
    return lag, snr


# -- registry ------------------------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_gives_the_static_payload_types() -> None:
    for name in ("PCMU", "pcmu", "PcMu"):
        assert get_codec(name, 8000) is get_codec("PCMU", 8000)
    assert get_codec("pcmu", 8000).payload_type == 0
    assert get_codec("PCMA", 8000).payload_type == 8
    g = get_codec("g722", 8000)
    assert (g.name, g.payload_type, g.clock_rate, g.sample_rate) == ("G722", 9, 8000, 16000)
    assert get_codec("L16", 44100, 2).payload_type == 10
    assert get_codec("L16", 44100, 1).payload_type == 11
    for rate in (8000, 16000, 48000):
        assert get_codec("l16", rate).payload_type is None
        assert get_codec("l16", rate).sample_rate == rate


def test_opus_is_48000_2_in_sdp_with_fec_and_20ms() -> None:
    o = get_codec("OPUS", 48000, 2)
    assert get_codec("opus", 48000) is o
    assert (o.name, o.rtpmap, o.payload_type, o.sample_rate) == ("opus", "opus/48000/2", None,
                                                                 48000)
    assert o.fmtp_params["useinbandfec"] == "1"
    assert "useinbandfec=1" in o.fmtp_line.split(";")
    assert o.default_ptime == 20 and o.frame_samples() == 960 and o.timestamp_step() == 960
    assert OpusEncoder(o).fec


def test_frame_and_timestamp_sizes() -> None:
    g = get_codec("G722", 8000)
    assert g.frame_samples() == 320 and g.timestamp_step() == 160   # 16 kHz audio, 8 kHz clock
    u = get_codec("PCMU", 8000)
    assert u.frame_samples(30) == 240 and u.timestamp_step(30) == 240
    assert get_codec("L16", 44100, 2).rtpmap == "L16/44100/2"
    assert u.rtpmap == "PCMU/8000"


@pytest.mark.parametrize(("name", "rate", "channels"), [
    ("PCMU", 16000, 1), ("G729", 8000, 1), ("opus", 8000, 2), ("PCMA", 8000, 2), ("", 0, 1)])
def test_unknown_codecs_raise_a_pbx_key_error(name: str, rate: int, channels: int) -> None:
    with pytest.raises(UnknownCodecError) as err:
        get_codec(name, rate, channels)
    assert isinstance(err.value, PbxError) and isinstance(err.value, KeyError)
    assert f"{name}/{rate}/{channels}" in str(err.value)


def test_codec_listing_and_static_table() -> None:
    everything = codecs()
    assert {c.name for c in everything} == {"PCMU", "PCMA", "G722", "L16", "opus"}
    table = static_payload_types()
    assert sorted(table) == [0, 8, 9, 10, 11]
    assert all(table[pt].payload_type == pt and table[pt] in everything for pt in table)
    assert codec_for_payload_type(9) is get_codec("G722", 8000)
    with pytest.raises(UnknownCodecError):
        codec_for_payload_type(96)
    keys = [(c.name.lower(), c.clock_rate, c.channels) for c in everything]
    assert len(keys) == len(set(keys))


# -- G.711 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_c_and_python_agree_on_every_input(name: str) -> None:
    codec = get_codec(name, 8000)
    every = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    coded = {impl: codec.encoder(impl).encode(every) for impl in ("c", "py")}
    assert coded["c"] == coded["py"] and len(coded["c"]) == 65536
    codes = bytes(range(256)) * 10  # 2560 samples: whole 10 ms blocks for the concealment
    decoded = {impl: codec.decoder(impl).decode(codes) for impl in ("c", "py")}
    assert np.array_equal(decoded["c"], decoded["py"])


@pytest.mark.parametrize("impl", ["c", "py", None])
@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_round_trip_within_the_companding_step(name: str, impl: str | None) -> None:
    codec = get_codec(name, 8000)
    ramp = np.linspace(-32768, 32767, 8000).astype(np.int16)
    out = through(codec, ramp, impl)
    dec = codec.decoder(impl)
    assert dec.delay == 30 and len(out) == len(ramp)
    err = np.abs(out[30:].astype(np.int64) - ramp[:-30])
    assert np.all(err <= np.abs(ramp[:-30].astype(np.int64)) // 32 + 16)
    assert snr_db(ramp[:-30], out[30:]) > 30


def test_g711_known_codes() -> None:
    u, a = get_codec("PCMU", 8000), get_codec("PCMA", 8000)
    zeros = np.zeros(4, np.int16)
    assert u.encoder().encode(zeros) == b"\xff" * 4
    assert a.encoder().encode(zeros) == b"\xd5" * 4
    lo, hi = np.int16(-32768), np.int16(32767)
    assert u.encoder().encode(np.array([hi, lo], np.int16)) == b"\x80\x00"
    assert a.encoder().encode(np.array([hi, lo], np.int16)) == b"\xaa\x2a"


# -- L16 -----------------------------------------------------------------------------------------


def test_l16_is_big_endian() -> None:
    frame = np.array([1, -2, 0x1234, -32768], np.int16)
    assert get_codec("L16", 44100).encoder().encode(frame) == bytes.fromhex("0001fffe12348000")
    assert get_codec("L16", 44100, 2).encoder().encode(frame[:2]) == bytes.fromhex(
        "00010001fffefffe")
    dec = get_codec("L16", 44100).decoder()        # no concealment at 44.1 kHz: no delay
    assert dec.delay == 0
    assert dec.decode(bytes.fromhex("0001fffe1234800000")).tolist() == [1, -2, 0x1234, -32768]
    stereo = get_codec("L16", 44100, 2).decoder()
    assert stereo.decode(bytes.fromhex("00640190fffffffe")).tolist() == [250, -2]
    assert dec.conceal(441).tolist() == [0] * 441


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_l16_round_trip_is_exact_after_the_concealment_delay(rate: int) -> None:
    codec = get_codec("L16", rate)
    x = np.random.default_rng(rate).integers(-32768, 32768, rate // 10).astype(np.int16)
    out = through(codec, x)
    d = codec.decoder().delay
    assert d == rate * 30 // 8000
    assert np.array_equal(out[d:], x[:-d]) and not out[:d].any()


# -- G.722 ---------------------------------------------------------------------------------------


def test_g722_known_answers() -> None:
    # Cross-checked against libspandsp's G.722 encoder (ITU test-vector conformant) when written.
    x = np.array([(i * 7919 * 7919) % 20001 - 10000 for i in range(64)], np.int16)
    expected = bytes.fromhex(
        "2c84208420841319b7283812bb2c3f109e2f1c0e9b3737a593373cac943a3ead")
    for enc in (g722.PyG722Encoder(), g722.CG722Encoder(NATIVE)):
        assert enc.encode(x) == expected
        assert enc.encode(np.zeros(8, np.int16)) != b"\xfa" * 4   # state carried over
    assert g722.CG722Encoder(NATIVE).encode(np.zeros(32, np.int16)) == b"\xfa" * 16


def test_g722_sine_snr_and_delay() -> None:
    codec = get_codec("G722", 8000)
    dec_delay = codec.decoder().delay
    # The delay, found on a non-periodic signal: 22 samples of QMF plus the concealment's 60.
    probe = speech_like(16000, 0.5)
    lag, _ = best_lag(probe, through(codec, probe), range(0, 120))
    assert lag == 22 + dec_delay
    x = sine(1000, 16000, 0.5)
    y = through(codec, x)
    assert snr_db(x[400:-200], y[400 + lag:len(y) - 200 + lag]) > 30
    s = speech_like(16000, 1.0, seed=3)
    ys = through(codec, s)
    assert snr_db(s[400:-200], ys[400 + lag:len(ys) - 200 + lag]) > 20


def test_g722_python_twin_matches_c_through_the_codec() -> None:
    codec = get_codec("G722", 8000)
    x = speech_like(16000, 0.1, seed=11)
    payloads = {impl: [codec.encoder(impl).encode(x[i:i + 320]) for i in range(0, 1600, 320)]
                for impl in ("c", "py")}
    assert payloads["c"] == payloads["py"]
    decs = {impl: codec.decoder(impl) for impl in ("c", "py")}
    for i, p in enumerate(payloads["c"]):
        got = {impl: (d.conceal(320) if i == 2 else d.decode(p)) for impl, d in decs.items()}
        assert np.array_equal(got["c"], got["py"]) and len(got["c"]) == 320


def test_g722_rejects_odd_frames() -> None:
    for enc in (g722.PyG722Encoder(), g722.CG722Encoder(NATIVE)):
        with pytest.raises(ValueError):
            enc.encode(np.zeros(3, np.int16))


# -- concealment through the decoders -----------------------------------------------------------


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722"])
def test_conceal_continues_a_tone_then_fades(name: str) -> None:
    codec = get_codec(name, 8000)
    rate, n = codec.sample_rate, codec.frame_samples()
    x = sine(200, rate, 0.2, amp=8000)
    enc, dec = codec.encoder(), codec.decoder()
    out = [dec.decode(enc.encode(x[i:i + n])) for i in range(0, 5 * n, n)]
    lost = [dec.conceal(n) for _ in range(4)]                      # 80 ms
    level = np.sqrt(np.mean(out[-1].astype(np.float64) ** 2))
    first = np.sqrt(np.mean(lost[0].astype(np.float64) ** 2))
    assert 0.7 * level < first < 1.3 * level
    tail = np.concatenate(lost)[dec.delay + 6 * n // 2:]           # from 60 ms on
    assert not tail.any()
    with pytest.raises(ValueError):
        dec.conceal(n // 2 + 1)


# -- Opus ----------------------------------------------------------------------------------------


def opus_frames(codec: Codec, x: I16, enc: OpusEncoder) -> list[bytes]:
    n = codec.frame_samples()
    return [enc.encode(x[i:i + n]) for i in range(0, len(x) - n + 1, n)]


def test_opus_round_trip_of_a_tone() -> None:
    codec = get_codec("opus", 48000, 2)
    enc = OpusEncoder(codec)
    dec = codec.decoder()
    x = sine(1000, 48000, 1.0)
    y = np.concatenate([dec.decode(p) for p in opus_frames(codec, x, enc)])
    assert len(y) == len(x) and dec.delay == 0
    look = enc.lookahead              # the output lags by the encoder's look-ahead (one period)
    _, snr = best_lag(x, y, range(look - 24, look + 24))
    assert snr > 10


def voiced(rate: int, seconds: float) -> I16:
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum((3000 / k) * np.sin(k * phase) for k in range(1, 15))
    return (x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)


def test_opus_fec_recovers_a_lost_packet_better_than_plc() -> None:
    codec = get_codec("opus", 48000)
    n = codec.frame_samples()
    packets = opus_frames(codec, voiced(48000, 2.0), OpusEncoder(codec))
    lost = set(range(10, len(packets) - 1, 7))
    clean = np.concatenate([d for d in map(codec.decoder().decode, packets)]).astype(np.float64)

    def run(use_fec: bool) -> float:
        dec = codec.decoder()
        err = 0.0
        for i, p in enumerate(packets):
            if i in lost:
                y = dec.conceal(n, packets[i + 1] if use_fec else None)
                assert len(y) == n
                err += float(np.sum((y - clean[i * n:(i + 1) * n]) ** 2))
            else:
                dec.decode(p)
        return err

    fec, plain = run(True), run(False)
    assert fec < 0.7 * plain
    with pytest.raises(ValueError):
        codec.decoder().conceal(100)


def test_opus_decoder_handles_other_packet_durations() -> None:
    codec = get_codec("opus", 48000)
    enc = OpusEncoder(codec)
    x = sine(500, 48000, 0.04)
    assert len(codec.decoder().decode(enc.encode(x))) == 1920       # one 40 ms packet
    assert len(codec.decoder().decode(enc.encode(x[:480]))) == 480  # one 10 ms packet
    assert isinstance(codec.decoder(), OpusDecoder)
