"""Engine per-packet kernels: invariants of the Python twin, and C == Python on random input.

The C twin tests exist only when the native engine is built (not under PBX_NO_EXTENSIONS=1).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.media import _engine_native
from pbx.media._engine_core import (
    ACCEPT,
    DROP_PT,
    DROP_SOURCE,
    LATCHED,
    MALFORMED,
    RTCP,
    RTP,
    RxState,
    TxState,
    rtp_check,
)

ADDRS = [("127.0.0.1", 4000), ("127.0.0.1", 4002), ("10.0.0.7", 4000), ("::1", 4000)]


@st.composite
def valid_rtp(draw: st.DrawFn) -> tuple[bytes, int]:
    """A well-formed RTP packet (never RTCP-looking) and its header length incl. padding."""
    cc = draw(st.integers(0, 15))
    ext = draw(st.none() | st.integers(0, 5))
    pad = draw(st.none() | st.integers(1, 20))
    payload = draw(st.binary(max_size=40))
    b0 = 0x80 | cc | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    b1 = draw(st.integers(0, 255).filter(lambda b: not 192 <= b <= 223))
    head = bytes([b0, b1]) + draw(st.binary(min_size=10, max_size=10)) + bytes(4 * cc)
    if ext is not None:
        head += b"\xbe\xde" + struct.pack("!H", ext) + bytes(4 * ext)
    tail = (bytes(pad - 1) + bytes([pad])) if pad else b""
    return head + payload + tail, len(head) + len(tail)


# -- rtp_check -------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(valid_rtp())
def test_valid_packets_pass_and_their_truncations_fail(case: tuple[bytes, int]) -> None:
    pkt, needed = case
    assert rtp_check(pkt) == RTP
    if pkt[0] & 0x20:                         # padding: a cut moves the count byte
        return
    for cut in range(needed):
        assert rtp_check(pkt[:cut]) == MALFORMED


@given(st.binary(min_size=2, max_size=64))
def test_wrong_version_is_malformed_and_rtcp_is_recognised(data: bytes) -> None:
    for v in (0, 1, 3):
        assert rtp_check(bytes([(data[0] & 0x3F) | v << 6]) + data[1:]) == MALFORMED
    rtcp = bytes([0x80 | (data[0] & 0x1F), 192 + data[1] % 32]) + data[2:]
    assert rtp_check(rtcp) == (RTCP if len(rtcp) >= 8 and len(rtcp) % 4 == 0 else MALFORMED)


# -- RxState ---------------------------------------------------------------------------------------

RX_OPS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(-1, 2),
                            st.sampled_from([0, 0, 0, 8, 101])), max_size=40)
RX_SETUP = st.tuples(st.none() | st.integers(0, 3), st.integers(0, 4),
                     st.none() | st.sampled_from([frozenset({0}), frozenset({0, 101})]))


def run_rx(setup: tuple[int | None, int, frozenset[int] | None],
           ops: list[tuple[int, int, int, int]]) -> list[tuple[int, int | None]]:
    remote, latch_n, pts = setup
    rx = RxState()
    rx.remote = None if remote is None else ADDRS[remote]
    rx.latch_n = latch_n
    rx.pt_allowed = pts
    out = []
    seq = 100
    for a, ssrc, dseq, pt in ops:
        seq = (seq + dseq) & 0xFFFF
        v = rx.verdict(ADDRS[a], ssrc, seq, pt)
        out.append((v, None if rx.remote is None else ADDRS.index(rx.remote)))  # type: ignore[arg-type]
    return out


@given(RX_SETUP, RX_OPS)
def test_rx_only_the_peer_or_a_proven_new_source_gets_in(
        setup: tuple[int | None, int, frozenset[int] | None],
        ops: list[tuple[int, int, int, int]]) -> None:
    remote, latch_n, pts = setup
    results = run_rx(setup, ops)
    seq = 100
    seqs = []
    for _, _, dseq, _ in ops:
        seq = (seq + dseq) & 0xFFFF
        seqs.append(seq)
    current = remote
    for i, ((a, ssrc, _, pt), (v, now_remote)) in enumerate(zip(ops, results, strict=True)):
        if pts is not None and pt not in pts:
            assert v == DROP_PT and now_remote == current
            continue
        if current is not None and a == current:
            assert v == ACCEPT
        elif v == LATCHED:
            assert latch_n > 0 and now_remote == a
            # the peer's own packets and filtered ones do not touch the latching candidate
            window = [j for j in range(i + 1) if results[j][0] in (DROP_SOURCE, LATCHED)]
            last = window[-latch_n:]
            assert len(last) == latch_n
            assert all(ops[j][0] == a and ops[j][1] == ssrc for j in last)
            assert all(seqs[k] == (seqs[j] + 1) & 0xFFFF for j, k in itertools.pairwise(last))
        else:
            assert v == DROP_SOURCE and now_remote == current
        current = now_remote
    if latch_n == 0:
        assert all(r == remote for _, r in results)


# -- TxState ---------------------------------------------------------------------------------------

SEGMENTS = st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
                              st.integers(1, 12), st.sampled_from([160, 320, 80])),
                    min_size=1, max_size=5)


@given(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
       st.integers(0, 2**32 - 1), SEGMENTS)
def test_tx_output_is_one_continuous_stream_across_sources(
        ssrc: int, seq0: int, ts0: int, src0: int,
        segments: list[tuple[int, int, int, int]]) -> None:
    """Each segment is a new source (SSRC, sequence and timestamp origin), 20 ms per packet."""
    tx = TxState(ssrc, seq0, ts0)
    now = 10.0
    out = []
    for k, (in_seq, in_ts, count, step) in enumerate(segments):
        in_ssrc = (src0 + k) & 0xFFFFFFFF
        for i in range(count):
            pkt = bytearray(struct.pack("!BBHII", 0x80, 0, (in_seq + i) & 0xFFFF,
                                        (in_ts + i * step) & 0xFFFFFFFF, in_ssrc) + b"p")
            tx.rewrite(pkt, now)
            out.append((struct.unpack_from("!BBHII", pkt), step, i == 0))
            now += 0.02
    assert out[0][0][2:4] == (seq0, ts0)
    for n, ((_, b1, seq, ts, s), step, start) in enumerate(out):
        assert s == ssrc
        assert seq == (seq0 + n) & 0xFFFF
        assert bool(b1 & 0x80) == start
        if n:
            d = (ts - out[n - 1][0][3]) & 0xFFFFFFFF
            if start:           # the 20 ms that passed, or the previous source's packet step
                assert 160 <= d <= 320
            else:
                assert d == step


# -- C == Python -------------------------------------------------------------------------------------

if _engine_native.AVAILABLE:
    from pbx.media._native import ffi, lib

    def c_addr(i: int) -> Any:
        return _engine_native.addr_to_c(*ADDRS[i])

    C_ADDRS = [c_addr(i) for i in range(len(ADDRS))]

    def c_index(a: Any) -> int:
        return ADDRS.index(_engine_native.addr_from_c(a))

    @settings(max_examples=500)
    @given(st.one_of(st.binary(max_size=80), valid_rtp().map(lambda c: c[0]),
                     valid_rtp().map(lambda c: c[0][: len(c[0]) // 2])))
    def test_c_rtp_check_equals_python(pkt: bytes) -> None:
        assert lib.pbx_engine_rtp_check(pkt, len(pkt)) == rtp_check(pkt)

    @settings(max_examples=300)
    @given(RX_SETUP, RX_OPS)
    def test_c_rx_verdict_equals_python(setup: tuple[int | None, int, frozenset[int] | None],
                                        ops: list[tuple[int, int, int, int]]) -> None:
        remote, latch_n, pts = setup
        rx = ffi.new("pbx_engine_rx *")
        if remote is not None:
            rx.remote = C_ADDRS[remote][0]
            rx.has_remote = 1
        rx.latch_n = latch_n
        if pts is not None:
            rx.pt_filter = 1
            mask = _engine_native.pt_mask(pts)
            ffi.memmove(rx.pt_mask, mask, 16)
        got = []
        seq = 100
        for a, ssrc, dseq, pt in ops:
            seq = (seq + dseq) & 0xFFFF
            v = lib.pbx_engine_rx_verdict(rx, C_ADDRS[a], ssrc, seq, pt)
            got.append((v, c_index(rx.remote) if rx.has_remote else None))
        assert got == run_rx(setup, ops)

    TX_OPS = st.lists(st.tuples(
        st.integers(0, 2),                                            # source SSRC
        st.one_of(st.integers(-3, 3), st.integers(-200, 5000), st.integers(0, 0xFFFF),
                  st.sampled_from([-101, -100, -99, 2999, 3000, 3001])),    # the limits
        st.one_of(st.sampled_from([0, 160, 320]), st.integers(0, 2**32 - 1)),
        st.one_of(st.just(0.02), st.floats(0, 5, allow_nan=False)),   # time step
        st.booleans(),                                                # marker in
        st.integers(0, 30),                                           # 0: ask for a resync
    ), max_size=60)

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
           st.sampled_from([8000, 16000, 48000]), TX_OPS)
    def test_c_tx_rewrite_equals_python(ssrc: int, seq0: int, ts0: int, rate: int,
                                        ops: list[tuple[int, int, int, float, bool, int]]) -> None:
        ctx = ffi.new("pbx_engine_tx *")
        lib.pbx_engine_tx_init(ctx, ssrc, seq0, ts0, rate)
        py = TxState(ssrc, seq0, ts0, rate)
        seq, ts, now = 500, 1000, 100.0
        for src, dseq, dts, dt, marker, resync in ops:
            seq, ts, now = (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF, now + dt
            if resync == 0:
                ctx.resync = 1
                py.resync = True
            pkt = struct.pack("!BBHII", 0x80, 0x80 if marker else 0, seq, ts, 0xA0 + src) + b"x"
            cbuf = ffi.new("uint8_t[]", pkt)
            lib.pbx_engine_tx_rewrite(ctx, cbuf, now)
            pbuf = bytearray(pkt)
            py.rewrite(pbuf, now)
            assert bytes(ffi.buffer(cbuf, len(pkt))) == bytes(pbuf)
        for name in ("seq", "ts", "has_sent", "synced", "in_ssrc", "in_seq", "in_ts", "ts_step",
                     "seq_off", "ts_off", "clock_rate"):
            assert int(getattr(ctx, name)) == int(getattr(py, name)), name
        assert float(ctx.sent_at) == py.sent_at

    def test_c_constants_match_the_twin() -> None:
        from pbx.media.engine_aio import EV_LATCHED, EV_TIMEOUT
        assert (lib.PBX_ENGINE_RTP, lib.PBX_ENGINE_MALFORMED, lib.PBX_ENGINE_RTCP) == \
            (RTP, MALFORMED, RTCP)
        assert (lib.PBX_ENGINE_ACCEPT, lib.PBX_ENGINE_LATCHED, lib.PBX_ENGINE_DROP_SOURCE,
                lib.PBX_ENGINE_DROP_PT) == (ACCEPT, LATCHED, DROP_SOURCE, DROP_PT)
        assert (lib.PBX_ENGINE_EV_TIMEOUT, lib.PBX_ENGINE_EV_LATCHED) == (EV_TIMEOUT, EV_LATCHED)

    @given(st.sampled_from(ADDRS).map(lambda a: a[0]) | st.ip_addresses().map(str),
           st.integers(1, 65535))
    def test_addresses_round_trip_through_c(host: str, port: int) -> None:
        canonical = str(ipaddress.ip_address(host))
        assert _engine_native.addr_from_c(_engine_native.addr_to_c(host, port)) == (canonical, port)
