"""Properties of the codecs: C kernels == Python twins, round trips, registry lookups.

* G.722: the C encoder and decoder give the same bytes and samples as the Python twin on random
  input, across several calls (the state carries over identically).
* Decoders with concealment (G.711, G.722) agree between C and Python under any loss pattern.
* G.711 and L16 round trips stay within the companding step / are exact.
* Every registered codec is found again under any spelling of its name.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import g722
from pbx.media.codecs import codecs, get_codec

NATIVE = (_dsp.ffi, _dsp.lib)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

samples = st.integers(-32768, 32767)
loud_or_quiet = st.one_of(st.lists(samples, min_size=0, max_size=200),
                          st.lists(st.integers(-300, 300), min_size=0, max_size=200))


@FAST
@given(chunks=st.lists(loud_or_quiet, min_size=1, max_size=4))
def test_g722_encoder_twins_agree(chunks: list[list[int]]) -> None:
    py, c = g722.PyG722Encoder(), g722.CG722Encoder(NATIVE)
    for chunk in chunks:
        x = np.array(chunk[:len(chunk) // 2 * 2], np.int16)
        assert c.encode(x) == py.encode(x)


@FAST
@given(chunks=st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=4))
def test_g722_decoder_twins_agree(chunks: list[bytes]) -> None:
    py, c = g722.PyG722Decoder(), g722.CG722Decoder(NATIVE)
    for data in chunks:
        a, b = py.decode(data), c.decode(data)
        assert len(a) == 2 * len(data) and np.array_equal(a, b)


@SLOW
@given(name=st.sampled_from(["PCMU", "PCMA", "G722"]), lost=st.lists(st.booleans(), min_size=1,
                                                                    max_size=8),
       seed=st.integers(0, 2**32 - 1))
def test_concealing_decoders_twins_agree(name: str, lost: list[bool], seed: int) -> None:
    codec = get_codec(name, 8000)
    n = codec.frame_samples()
    x = np.random.default_rng(seed).normal(size=n * len(lost)) * 4000
    payloads = [codec.encoder("c").encode(x[i * n:(i + 1) * n].astype(np.int16))
                for i in range(len(lost))]
    dc, dp = codec.decoder("c"), codec.decoder("py")
    for payload, gone in zip(payloads, lost, strict=True):
        a = dc.conceal(n) if gone else dc.decode(payload)
        b = dp.conceal(n) if gone else dp.decode(payload)
        assert len(a) == n and np.array_equal(a, b)


@FAST
@given(name=st.sampled_from(["PCMU", "PCMA"]), frame=st.lists(samples, min_size=160,
                                                               max_size=160))
def test_g711_round_trip_within_the_step(name: str, frame: list[int]) -> None:
    codec = get_codec(name, 8000)
    x = np.array(frame, np.int16)
    payload = codec.encoder().encode(x)
    assert len(payload) == len(x)
    dec = codec.decoder()
    y = np.concatenate([dec.decode(payload), dec.decode(bytes(len(payload)))])[dec.delay:]
    err = np.abs(y[:len(x)].astype(np.int64) - x)
    assert np.all(err <= np.abs(x.astype(np.int64)) // 32 + 16)


@FAST
@given(rate=st.sampled_from([8000, 16000, 32000, 44100, 48000]), channels=st.sampled_from([1, 2]),
       frame=st.lists(samples, min_size=1, max_size=300))
def test_l16_round_trip_is_exact(rate: int, channels: int, frame: list[int]) -> None:
    codec = get_codec("L16", rate, channels)
    x = np.array(frame, np.int16)
    payload = codec.encoder().encode(x)
    assert len(payload) == 2 * channels * len(x)
    assert np.array_equal(np.frombuffer(payload, ">i2")[::channels], x)
    dec = codec.decoder()
    y = np.concatenate([dec.decode(payload), dec.decode(bytes(2 * channels * dec.delay))])
    assert np.array_equal(y[dec.delay:], x)


@FAST
@given(index=st.integers(0, len(codecs()) - 1), flips=st.lists(st.booleans(), min_size=8,
                                                                max_size=8))
def test_any_spelling_finds_the_codec(index: int, flips: list[bool]) -> None:
    codec = codecs()[index]
    name = "".join(ch.upper() if f else ch.lower() for ch, f in zip(codec.name, flips,
                                                                   strict=False))
    assert get_codec(name, codec.clock_rate, codec.channels) is codec
