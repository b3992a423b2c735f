"""The media core of terminated streams: C (cext/engine.c) == Python twin on random input.

Runs the compiled kernels from ``pbx._dsp`` directly, so the C code is checked even when
``PBX_NO_EXTENSIONS=1`` makes the rest of the library use the twins. The Python side uses its
pure-Python kernels (``impl="py"``) throughout.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media._engine_core import TxState
from pbx.media._engine_media import (
    KIND_EVENT,
    KIND_G722,
    KIND_L16,
    KIND_L16_STEREO,
    KIND_PCMA,
    KIND_PCMU,
    MediaConfig,
    MediaCore,
)
from pbx.media._engine_native import media_config_to_c
from pbx.media.dsp import py_ulaw_encode
from pbx.media.tones import dtmf_tones

ffi, lib = _dsp.ffi, _dsp.lib
HDR = struct.Struct("!BBHII")


class CCore:
    """``pbx_engine_media_*`` behind MediaCore's interface."""

    def __init__(self, cfg: MediaConfig) -> None:
        m = lib.pbx_engine_media_new(media_config_to_c(cfg, ffi))
        assert m != ffi.NULL
        self._m = ffi.gc(m, lib.pbx_engine_media_free)
        self.frame = int(lib.pbx_engine_media_frame(m))
        self._pcm = ffi.new("int16_t[]", self.frame)
        self._digit = ffi.new("pbx_engine_digit *")
        self._out = ffi.new("uint8_t[]", 4 * 960)
        self._jb = ffi.new("int64_t[16]")

    def set_inband(self, on: bool) -> None:
        assert lib.pbx_engine_media_set_inband(self._m, 1 if on else 0) == 0

    def put(self, pkt: bytes, now: float) -> int:
        return int(lib.pbx_engine_media_put(self._m, pkt, len(pkt), round(now * 1e6)))

    def rx(self, now: float) -> tuple[int, np.ndarray, tuple[str, int] | None]:
        code = lib.pbx_engine_media_rx(self._m, round(now * 1e6), self._pcm, self._digit)
        pcm = np.frombuffer(ffi.buffer(self._pcm, 2 * self.frame), np.int16).copy()
        d = self._digit
        digit = (d.digit.decode(), int(d.duration_ms)) if d.digit != b"\0" else None
        return int(code), pcm, digit

    def encode(self, pcm: np.ndarray) -> bytes:
        x = np.ascontiguousarray(pcm, np.int16)
        n = lib.pbx_engine_media_encode(self._m, ffi.from_buffer("int16_t[]", x), self._out)
        return bytes(ffi.buffer(self._out, n))

    def jitter(self) -> tuple[int, ...]:
        lib.pbx_engine_media_jitter(self._m, self._jb)
        return tuple(int(v) for v in self._jb)


# (send kind, sample rate, clock rate, send pt, other kinds received at the same rate)
CODECS = [
    (KIND_PCMU, 8000, 8000, 0, {8: KIND_PCMA}),
    (KIND_PCMA, 8000, 8000, 8, {0: KIND_PCMU}),
    (KIND_G722, 16000, 8000, 9, {}),
    (KIND_L16, 16000, 16000, 96, {97: KIND_L16_STEREO}),
    (KIND_L16_STEREO, 8000, 8000, 98, {}),
]
FRAME_BYTES = {KIND_PCMU: 1, KIND_PCMA: 1, KIND_G722: 0.5, KIND_L16: 2, KIND_L16_STEREO: 4}


def config(codec: tuple[int, int, int, int, dict[int, int]], te: bool,
           start_ms: int = 40) -> MediaConfig:
    kind, rate, clock, pt, others = codec
    pt_kind = {pt: kind, **others}
    if te:
        pt_kind[101] = KIND_EVENT
    return MediaConfig(kind, pt, rate, clock, pt_kind, te_pt=101 if te else -1,
                       jb_start=start_ms, jb_max=200)


PACKETS = st.lists(st.tuples(
    st.sampled_from(["audio"] * 8 + ["other", "event", "short", "unknown"]),
    st.sampled_from([1] * 10 + [0, 2, 3, -1, -2, 40]),       # sequence step
    st.floats(0, 0.08, allow_nan=False),                      # network delay (s)
    st.booleans(),                                            # marker
), min_size=1, max_size=30)


def timeline(codec: tuple[int, int, int, int, dict[int, int]], packets: list[Any],
             data: st.DataObject) -> list[tuple[float, int, bytes]]:
    """(time, order, packet) of every packet, plus ticks ((time, 1, b"")), by time."""
    kind, rate, clock, pt, others = codec
    frame = rate // 50
    step = clock // 50
    seq, ts = 65530, 2**32 - 500
    out: list[tuple[float, int, bytes]] = []
    for i, (what, dseq, delay, marker) in enumerate(packets):
        seq = (seq + dseq) & 0xFFFF
        ts = (ts + step * max(dseq, 0)) & 0xFFFFFFFF
        p_pt, size = pt, int(frame * FRAME_BYTES[kind])
        if what == "other" and others:
            p_pt, k = next(iter(others.items()))
            size = int(frame * FRAME_BYTES[k])
        elif what == "event":
            p_pt, size = 101, 4
        elif what == "short":
            size = max(size // 2, 1)
        elif what == "unknown":
            p_pt = 55
        payload = data.draw(st.binary(min_size=size, max_size=size))
        pkt = HDR.pack(0x80, (0x80 if marker else 0) | p_pt, seq, ts, 0xABC) + payload
        out.append((1.0 + 0.02 * i + delay, 0, pkt))
    for k in range(len(packets) + 12):
        out.append((1.0 + 0.02 * k + 0.013, 1, b""))
    return sorted(out, key=lambda e: (e[0], e[1]))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(CODECS), st.booleans(), PACKETS, st.data())
def test_c_media_core_equals_python(codec: Any, te: bool, packets: list[Any],
                                    data: st.DataObject) -> None:
    """Same packets at the same times: same jitter-buffer verdicts, same frame every tick
    (decoded, concealed or silent, bit for bit), same counters."""
    cfg = config(codec, te)
    c, py = CCore(cfg), MediaCore(cfg, impl="py")
    assert c.frame == py.frame
    for now, order, pkt in timeline(codec, packets, data):
        if order == 0:
            assert c.put(pkt, now) == py.put(pkt, now)
            continue
        cc, cpcm, cdigit = c.rx(now)
        pc, ppcm, pdigit = py.rx(now)
        assert (cc, cdigit) == (pc, pdigit)
        assert np.array_equal(cpcm, ppcm)
    assert c.jitter() == py.jitter()


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(CODECS), st.lists(st.integers(-32768, 32767), min_size=1, max_size=4000),
       st.integers(1, 6))
def test_c_encode_equals_python(codec: Any, samples: list[int], frames: int) -> None:
    cfg = config(codec, False)
    c, py = CCore(cfg), MediaCore(cfg, impl="py")
    x = np.resize(np.array(samples, np.int16), frames * c.frame)
    for i in range(frames):
        f = x[i * c.frame:(i + 1) * c.frame]
        assert c.encode(f) == py.encode(f)


@settings(max_examples=15, deadline=None)
@given(st.text("0123456789*#ABCD", min_size=1, max_size=3), st.sets(st.integers(0, 40)),
       st.sampled_from([60, 100, 140]))
def test_c_inband_digits_equal_python(digits: str, lost: set[int], ms: int) -> None:
    """DTMF tones through G.711 with some packets lost: the same digits (and durations) come
    out of both twins' detectors, in the same ticks."""
    pcm = np.concatenate([np.zeros(400, np.int16), dtmf_tones(digits, 8000, ms / 1000, 0.08),
                          np.zeros(800, np.int16)])
    codes = py_ulaw_encode(pcm.astype("<i2").tobytes())
    cfg = config(CODECS[0], False, start_ms=20)
    c, py = CCore(cfg), MediaCore(cfg, impl="py")
    c.set_inband(True)
    py.set_inband(True)
    n = len(codes) // 160
    got = []
    for i in range(n + 8):
        now = 2.0 + 0.02 * i
        if i < n and i not in lost:
            pkt = HDR.pack(0x80, 0, i, 160 * i, 7) + codes[160 * i:160 * (i + 1)]
            assert c.put(pkt, now) == py.put(pkt, now)
        cr, pr = c.rx(now + 0.01), py.rx(now + 0.01)
        assert cr[2] == pr[2] and np.array_equal(cr[1], pr[1])
        if cr[2]:
            got.append(cr[2])
    if not lost:
        assert "".join(d for d, _ in got) == digits
        assert all(ms - 40 <= dur <= ms + 40 for _, dur in got)


TX_OPS = st.lists(st.tuples(
    st.sampled_from(["next"] * 4 + ["relay", "resync"]),
    st.one_of(st.just(0.02), st.floats(0, 1, allow_nan=False)),     # time step
    st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),              # relayed packet's seq/ts
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
       st.sampled_from([8000, 16000, 48000]), TX_OPS)
def test_c_tx_next_equals_python(ssrc: int, seq0: int, ts0: int, rate: int,
                                 ops: list[tuple[str, float, int, int]]) -> None:
    """Own packets (next) interleaved with relayed ones (rewrite): same numbering."""
    ctx = ffi.new("pbx_engine_tx *")
    lib.pbx_engine_tx_init(ctx, ssrc, seq0, ts0, rate)
    py = TxState(ssrc, seq0, ts0, rate)
    seq_p, ts_p = ffi.new("uint16_t *"), ffi.new("uint32_t *")
    now = 50.0
    for op, dt, seq, ts in ops:
        now += dt
        if op == "next":
            marker = lib.pbx_engine_tx_next(ctx, rate // 50, now, seq_p, ts_p)
            assert (int(seq_p[0]), int(ts_p[0]), bool(marker)) == py.next(rate // 50, now)
        elif op == "relay":
            pkt = HDR.pack(0x80, 0, seq, ts, 0x99) + b"x"
            cbuf = ffi.new("uint8_t[]", pkt)
            lib.pbx_engine_tx_rewrite(ctx, cbuf, now)
            pbuf = bytearray(pkt)
            py.rewrite(pbuf, now)
            assert bytes(ffi.buffer(cbuf, len(pkt))) == bytes(pbuf)
        else:
            ctx.resync = 1
            py.resync = True
    for name in ("seq", "ts", "has_sent", "synced", "resync", "local", "in_ssrc", "in_seq",
                 "in_ts", "ts_step", "seq_off", "ts_off", "clock_rate"):
        assert int(getattr(ctx, name)) == int(getattr(py, name)), name


@given(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_own_packets_are_one_continuous_stream(seq0: int, ts0: int, n: int) -> None:
    tx = TxState(1, seq0, ts0, 8000)
    out = [tx.next(160, 10.0 + 0.02 * i) for i in range(n)]
    assert out[0] == (seq0, ts0, True)
    for i, (seq, ts, marker) in enumerate(out[1:], 1):
        assert (seq, ts, marker) == ((seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, False)
    seq, ts, marker = tx.next(160, 10.0 + 0.02 * n + 1.0)      # after a pause of a second
    assert marker and (ts - out[-1][1]) & 0xFFFFFFFF == 8000 + 160


def test_constants_match_the_twins() -> None:
    from pbx.media import _engine_media as m
    from pbx.media import engine_aio as a
    assert (lib.PBX_ENGINE_KIND_PCMU, lib.PBX_ENGINE_KIND_PCMA, lib.PBX_ENGINE_KIND_G722,
            lib.PBX_ENGINE_KIND_L16, lib.PBX_ENGINE_KIND_L16_STEREO, lib.PBX_ENGINE_KIND_EXTERNAL,
            lib.PBX_ENGINE_KIND_EVENT) == (m.KIND_PCMU, m.KIND_PCMA, m.KIND_G722, m.KIND_L16,
                                           m.KIND_L16_STEREO, m.KIND_EXTERNAL, m.KIND_EVENT)
    assert (lib.PBX_ENGINE_RX_FRAME, lib.PBX_ENGINE_RX_CONCEALED, lib.PBX_ENGINE_RX_SILENCE) == \
        (m.RX_FRAME, m.RX_CONCEALED, m.RX_SILENCE)
    assert (lib.PBX_ENGINE_EV_TIMEOUT, lib.PBX_ENGINE_EV_LATCHED, lib.PBX_ENGINE_EV_DIGIT,
            lib.PBX_ENGINE_EV_TELEVENT) == (a.EV_TIMEOUT, a.EV_LATCHED, a.EV_DIGIT, a.EV_TELEVENT)
    assert (lib.PBX_ENGINE_RING, lib.PBX_ENGINE_RING_LOW, lib.PBX_ENGINE_TAP_FRAMES,
            lib.PBX_ENGINE_EV_PAYLOAD, lib.PBX_ENGINE_MAX_FRAME) == (
        a.RING, a.RING_LOW, a.TAP_FRAMES, a.EV_PAYLOAD, m.MAX_FRAME)
    assert (lib.PBX_ENGINE_CONF_MUTED, lib.PBX_ENGINE_CONF_DEAF) == (a.CONF_MUTED, a.CONF_DEAF)


@settings(max_examples=300)
@given(st.sampled_from([KIND_PCMU, KIND_PCMA, KIND_L16, KIND_L16_STEREO, KIND_G722]),
       st.one_of(st.binary(max_size=40), st.lists(st.sampled_from(
           [0xFF, 0x7F, 0xD5, 0x55, 0xF0, 0xEF, 0x00, 0x01, 0x80]), max_size=40).map(bytes)))
def test_c_silence_classifier_equals_python(kind: int, payload: bytes) -> None:
    from pbx.media._engine_media import silent_payload
    assert lib.pbx_engine_silent_payload(kind, payload, len(payload)) == \
        silent_payload(kind, payload)
