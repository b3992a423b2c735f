"""Packets of any packet time into the media core: C (cext/engine.c) == Python twin, and cutting
audio into packets of N x 10 ms changes nothing of what plays."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_media_props import CODECS, FRAME_BYTES, HDR, CCore, config

from pbx.media._engine_media import MediaCore

UNIT_PACKETS = st.lists(st.tuples(
    st.sampled_from(["audio"] * 10 + ["event", "odd", "ssrc"]),
    st.sampled_from([1, 2, 2, 2, 3, 4, 6, 12, 13]),             # 10 ms units carried
    st.sampled_from([1] * 12 + [0, 2, -1, -3, 200]),            # sequence step
    st.floats(0, 0.06, allow_nan=False),                        # network delay (s)
    st.booleans(),                                              # marker
), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CODECS), st.booleans(), UNIT_PACKETS, st.data())
def test_c_split_and_join_equal_python(codec: Any, te: bool, packets: list[Any],
                                       data: st.DataObject) -> None:
    """Packets of 10 to 130 ms (reordered, lost, duplicated, a new SSRC, odd sizes, events):
    same verdicts, same frame every tick, same counters."""
    kind, rate, clock, pt, _ = codec
    cfg = config(codec, te)
    c, py = CCore(cfg), MediaCore(cfg, impl="py")
    half = int(rate // 100 * FRAME_BYTES[kind])
    ustep = clock // 100
    seq, ts, ssrc, t = 65500, 2**32 - 3000, 0xABC, 1.0
    out: list[tuple[float, int, bytes]] = []
    for what, units, dseq, delay, marker in packets:
        seq = (seq + dseq) & 0xFFFF
        p_pt, size = pt, units * half
        if what == "event":
            p_pt, size = 101, 4
        elif what == "odd":
            size += 1
        elif what == "ssrc":
            ssrc += 1
        payload = data.draw(st.binary(min_size=size, max_size=size))
        pkt = HDR.pack(0x80, (0x80 if marker else 0) | p_pt, seq, ts, ssrc) + payload
        out.append((t + delay, 0, pkt))
        ts = (ts + ustep * units * max(dseq, 0)) & 0xFFFFFFFF
        t += 0.01 * units
    for k in range(int((t - 1.0) / 0.02) + 12):
        out.append((1.0 + 0.02 * k + 0.013, 1, b""))
    for now, order, pkt in sorted(out, key=lambda e: (e[0], e[1])):
        if order == 0:
            assert c.put(pkt, now) == py.put(pkt, now)
            continue
        cc, cpcm, _ = c.rx(now)
        pc, ppcm, _ = py.rx(now)
        assert cc == pc
        assert np.array_equal(cpcm, ppcm)
    assert c.jitter() == py.jitter()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CODECS), st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=1,
                                         max_size=20), st.data())
def test_any_packetization_plays_the_same_frames(codec: Any, sizes: list[int],
                                                 data: st.DataObject) -> None:
    """The same audio in 20 ms packets or cut into packets of random N x 10 ms, in order and
    without loss: the twins decode the same PCM, frame for frame (the packet time is invisible
    after the jitter buffer)."""
    kind, rate, clock, pt, _ = codec
    half = int(rate // 100 * FRAME_BYTES[kind])
    total = sum(sizes) + sum(sizes) % 2                          # whole frames
    audio = data.draw(st.binary(min_size=total * half, max_size=total * half))

    def play(cut: list[int], core: Any) -> list[np.ndarray]:
        events: list[tuple[float, bytes]] = []
        off = 0
        for i, units in enumerate(cut):
            pkt = HDR.pack(0x80, pt, 10 + i, 1000 + off * (clock // 100), 5) + \
                audio[off * half:(off + units) * half]
            off += units
            events.append((1.0 + off * 0.01, pkt))               # when its audio is complete
        events += [(1.005 + 0.02 * k, b"") for k in range(total // 2 + 10)]
        pcm = []
        for now, pkt in sorted(events, key=lambda e: e[0]):
            if pkt:
                core.put(pkt, now)
                continue
            code, frame, _ = core.rx(now)
            if code == 0:
                pcm.append(frame)
        return pcm

    cut = list(sizes) + ([1] if sum(sizes) % 2 else [])
    twenty = [2] * (total // 2)
    cfg = dataclasses.replace(config(codec, False), jb_fixed=80)
    ref = play(twenty, MediaCore(cfg, impl="py"))
    assert len(ref) == total // 2
    for core in (MediaCore(cfg, impl="py"), CCore(cfg)):
        got = play(cut, core)
        assert len(got) == len(ref)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_rtcp_constants_match_the_twins() -> None:
    from test_engine_media_props import lib

    from pbx.media import _engine_native as n
    from pbx.media import engine_aio as a
    assert lib.PBX_ENGINE_EV_RTCP == a.EV_RTCP == n.EV_RTCP
    assert lib.PBX_ENGINE_RTCP_MAX == a.RTCP_MAX
