"""Properties of RTP/RTCP parsing and statistics, and the C twins in cext/rtp.c.

* Generated RTP packets survive build -> parse (with and without padding); so do compound RTCP
  packets. Random and mutated bytes make the parsers raise ``ParseError`` and nothing else.
* ``pbx_rtp_parse`` (C) accepts exactly what ``parse_rtp`` accepts, rejects with the matching
  reason, and reports every field the same; ``pbx_rtp_is_rtcp`` agrees with ``is_rtcp``.
* The C sequence tracker (A.1/A.3) and jitter estimator (A.8) agree with the Python ones step by
  step on random streams with wraps, jumps, duplicates and reordering.

The C side is compared in both test runs: with ``PBX_NO_EXTENSIONS=1`` the module is loaded
directly, since the point is to check the twins against each other.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.media import _native
from pbx.rtp.packet import (
    ERR_CSRC,
    ERR_EXTENSION,
    ERR_PADDING,
    ERR_TOO_SHORT,
    ERR_VERSION,
    RtpExtension,
    RtpPacket,
    is_rtcp,
    parse_rtp,
    peek_header,
)
from pbx.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    build_rtcp,
    ntp_from_time,
    parse_rtcp,
    time_from_ntp,
)
from pbx.rtp.seq import SequenceTracker
from pbx.rtp.stats import JitterEstimator


def _c_kernels() -> tuple[Any, Any]:
    if _native.lib is not None:
        return _native.ffi, _native.lib
    from pbx import _dsp  # type: ignore[attr-defined]
    return _dsp.ffi, _dsp.lib


ffi, lib = _c_kernels()

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=24).map(lambda b: b[: len(b) // 4 * 4])

extensions = st.none() | st.builds(RtpExtension, u16, words)
rtp_packets = st.builds(
    RtpPacket, payload_type=st.integers(0, 127), sequence=u16, timestamp=u32, ssrc=u32,
    payload=st.binary(max_size=48), marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple), extension=extensions)


# -- RTP -----------------------------------------------------------------------------------------


@FAST
@given(rtp_packets, st.integers(0, 255))
def test_rtp_round_trip(packet: RtpPacket, padding: int) -> None:
    assert parse_rtp(bytes(packet)) == packet
    data = packet.to_bytes(padding=padding)
    assert len(data) == packet.header_size + len(packet.payload) + padding
    assert parse_rtp(data) == packet
    assert peek_header(data) == (packet.sequence, packet.timestamp, packet.ssrc,
                                 packet.payload_type, packet.marker)
    check_c_parse(data)


_C_CODE = {ERR_TOO_SHORT: "PBX_RTP_ETOOSHORT", ERR_VERSION: "PBX_RTP_EVERSION",
           ERR_CSRC: "PBX_RTP_ECSRC", ERR_EXTENSION: "PBX_RTP_EEXT",
           ERR_PADDING: "PBX_RTP_EPADDING"}


def check_c_parse(data: bytes) -> None:
    """Python and C parse ``data`` the same way (and Python raises nothing but ParseError)."""
    hdr = ffi.new("pbx_rtp_hdr *")
    code = lib.pbx_rtp_parse(data, len(data), hdr)
    assert bool(lib.pbx_rtp_is_rtcp(data, len(data))) is is_rtcp(data)
    try:
        packet = parse_rtp(data)
    except ParseError as exc:
        assert code == getattr(lib, _C_CODE[exc.reason]), (exc.reason, code)
        return
    assert code == lib.PBX_RTP_OK
    assert (hdr.version, hdr.padding, hdr.marker) == (2, data[0] >> 5 & 1, packet.marker)
    assert (hdr.pt, hdr.seq, hdr.ts, hdr.ssrc) == (
        packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)
    cc = hdr.csrc_count
    assert struct.unpack_from(f"!{cc}I", data, 12) == packet.csrc
    ext = packet.extension
    assert hdr.has_ext == (ext is not None)
    if ext is not None:
        assert hdr.ext_profile == ext.profile
        start = 16 + 4 * cc
        assert data[start : start + hdr.ext_len] == ext.data
    else:
        assert (hdr.ext_profile, hdr.ext_len) == (0, 0)
    off, size = hdr.payload_offset, hdr.payload_len
    assert off == packet.header_size
    assert data[off : off + size] == packet.payload
    assert hdr.pad_len == len(data) - off - size
    assert hdr.pad_len == (data[-1] if hdr.padding else 0)


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_parse_alike_in_c_and_python(data: bytes) -> None:
    check_c_parse(data)


# A version-2 first byte with any P/X/CC bits, to reach the deeper checks more often.
@FUZZ
@given(st.integers(0x80, 0xBF), st.binary(max_size=90))
def test_random_version_2_headers_parse_alike(first: int, rest: bytes) -> None:
    check_c_parse(bytes([first]) + rest)


@st.composite
def mutated_rtp(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(rtp_packets).to_bytes(padding=draw(st.sampled_from([0, 0, 1, 4, 30]))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "bits0", "truncate", "extend", "last"]))
        if kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "bits0" and data:
            data[0] = 0x80 | (data[0] & 0x3F) ^ draw(st.sampled_from([0x20, 0x10, 0x01, 0x0F]))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif kind == "last" and data:
            data[-1] = draw(st.sampled_from([0, 1, 3, 4, 200, 255]))
    return bytes(data)


@FUZZ
@given(mutated_rtp())
def test_mutated_packets_parse_alike_in_c_and_python(data: bytes) -> None:
    check_c_parse(data)


# -- sequence tracking ---------------------------------------------------------------------------


steps = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 4)),
    st.tuples(st.just("gap"), st.integers(5, 3100)),
    st.tuples(st.just("dup"), st.integers(0, 3)),
    st.tuples(st.just("back"), st.integers(1, 130)),
    st.tuples(st.just("jump"), u16),
    st.tuples(st.just("report"), st.just(0)),
)


def c_report(state: Any) -> tuple[int, int, int]:
    fraction = ffi.new("uint8_t *")
    cumulative = ffi.new("int32_t *")
    ext = ffi.new("uint32_t *")
    lib.pbx_rtp_seq_report(state, fraction, cumulative, ext)
    return fraction[0], cumulative[0], ext[0]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0, 65500, 65535]) | u16, st.integers(1, 3),
       st.lists(steps, min_size=1, max_size=120))
def test_c_sequence_tracker_agrees(start: int, min_sequential: int,
                                   ops: list[tuple[str, int]]) -> None:
    py = SequenceTracker(min_sequential)
    state = ffi.new("pbx_rtp_seq_t *")
    lib.pbx_rtp_seq_init(state, min_sequential)
    ext_out = ffi.new("int64_t *")
    history = [start]
    for kind, n in [("next", 0), *ops]:
        if kind == "report":
            assert c_report(state) == py.report()
            continue
        if kind in ("next", "gap"):
            seq = (history[-1] + n) & 0xFFFF
        elif kind == "dup":
            seq = history[-1 - min(n, len(history) - 1)]
        elif kind == "back":
            seq = (history[-1] - n) & 0xFFFF
        else:
            seq = n
        history.append(seq)
        expected = py.update(seq)
        valid = lib.pbx_rtp_seq_update(state, seq, ext_out)
        assert (ext_out[0] if valid else None) == expected, (kind, seq)
        assert (state.received, state.duplicates, state.cycles) == (
            py.received, py.duplicates, py.cycles)
        assert (state.base_seq, state.max_seq) == (py.base_seq, py.max_seq)
        assert lib.pbx_rtp_seq_expected(state) == py.expected
        assert lib.pbx_rtp_seq_extended_max(state) == py.extended_max
        assert (bool(state.started) and state.probation == 0) == py.valid
    assert c_report(state) == py.report()


def test_c_report_clamps_cumulative_loss_like_python() -> None:
    py = SequenceTracker()
    state = ffi.new("pbx_rtp_seq_t *")
    lib.pbx_rtp_seq_init(state, 2)
    ext = ffi.new("int64_t *")
    seq = 0
    for i in range(3002):
        seq = (seq + (1 if i < 2 else 2999)) & 0xFFFF
        assert (ext[0] if lib.pbx_rtp_seq_update(state, seq, ext) else None) == py.update(seq)
    assert py.lost > 0x7FFFFF
    assert c_report(state) == py.report()
    assert py.report()[1] == 0x7FFFFF
    # duplicates outnumbering losses by more than 2^23 clamp at -2^23 (forced in the C state)
    state.received = lib.pbx_rtp_seq_expected(state) + 0x900000
    assert c_report(state)[1] == -0x800000


@FAST
@given(u16, st.lists(st.integers(1, 2999), min_size=1, max_size=200))
def test_extended_sequence_follows_the_unwrapped_count(start: int, gaps: list[int]) -> None:
    t = SequenceTracker(min_sequential=1)
    unwrapped = start
    assert t.update(start) == start
    for gap in gaps:
        unwrapped += gap
        assert t.update(unwrapped & 0xFFFF) == unwrapped
    assert t.cycles == unwrapped >> 16
    assert t.expected == unwrapped - start + 1
    assert t.lost == t.expected - len(gaps) - 1


@FAST
@given(st.permutations(list(range(60))), st.integers(0, 65535))
def test_reordering_within_misorder_loses_nothing(order: list[int], start: int) -> None:
    t = SequenceTracker(min_sequential=1)
    t.update(start)                    # anchors the count; the rest arrive shuffled
    exts = {t.update((start + 1 + i) & 0xFFFF) for i in order}
    assert exts == {start + 1 + i for i in range(60)}
    assert (t.received, t.expected, t.lost, t.duplicates) == (61, 61, 0, 0)


# -- jitter --------------------------------------------------------------------------------------


@FAST
@given(st.lists(st.tuples(u32, u32), min_size=1, max_size=60)
       | st.lists(st.tuples(st.integers(0, 2000), st.integers(150, 170)), min_size=1,
                  max_size=60).map(lambda ds: [(sum(a for a, _ in ds[: i + 1]) & 0xFFFFFFFF,
                                                sum(t for _, t in ds[: i + 1]) & 0xFFFFFFFF)
                                               for i in range(len(ds))]))
def test_c_jitter_agrees(pairs: list[tuple[int, int]]) -> None:
    py = JitterEstimator()
    state = ffi.new("pbx_rtp_jitter_t *")
    lib.pbx_rtp_jitter_init(state)
    for arrival, ts in pairs:
        assert lib.pbx_rtp_jitter_update(state, arrival, ts) == py.update(arrival, ts)
        assert state.jitter_q4 == py.jitter_q4


@FAST
@given(st.lists(st.integers(-100_000, 100_000), min_size=2, max_size=200))
def test_integer_jitter_stays_within_half_a_unit_of_the_rfc_formula(transits: list[int]) -> None:
    est = JitterEstimator()
    jitter = 0.0
    for i, transit in enumerate(transits):
        est.update((1_000_000 + transit) & 0xFFFFFFFF, 0)
        if i:
            jitter += (abs(transit - transits[i - 1]) - jitter) / 16
        assert abs(est.jitter_q4 / 16 - jitter) <= 0.5 + 1e-6


# -- RTCP ----------------------------------------------------------------------------------------

blocks = st.builds(ReportBlock, u32, st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF),
                   u32, u32, u32, u32)
report_lists = st.lists(blocks, max_size=4).map(tuple)
sdes_items = st.builds(SdesItem, st.integers(1, 255), st.binary(max_size=20))
chunks = st.builds(SdesChunk, u32, st.lists(sdes_items, max_size=4).map(tuple))
reasons = st.none() | st.text(st.characters(codec="utf-8"), max_size=20)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32, report_lists,
              st.binary(max_size=9)),
    st.builds(ReceiverReport, u32, report_lists, st.binary(max_size=9)),
    st.builds(SourceDescription, st.lists(chunks, max_size=4).map(tuple)),
    st.builds(Bye, st.lists(u32, max_size=5).map(tuple), reasons),
    st.builds(RtcpUnknown, st.integers(0, 255).filter(lambda t: not 200 <= t <= 203),
              st.integers(0, 31), st.binary(max_size=30)),
)


@FAST
@given(st.lists(rtcp_packets, min_size=1, max_size=5))
def test_rtcp_round_trip(packets: list[RtcpPacket]) -> None:
    data = build_rtcp(packets)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == packets
    assert all(is_rtcp(bytes(p)) is (192 <= p.packet_type <= 223) for p in packets)


def check_rtcp(data: bytes) -> None:
    """Only ParseError escapes, and whatever parses re-serializes to the same packets."""
    try:
        packets = parse_rtcp(data)
    except ParseError:
        return
    assert packets
    assert parse_rtcp(build_rtcp(packets)) == packets


@FUZZ
@given(st.binary(max_size=80))
def test_rtcp_random_bytes(data: bytes) -> None:
    check_rtcp(data)


@st.composite
def rtcp_shaped(draw: st.DrawFn) -> bytes:
    """Header words that look right (version 2, a known type) over random bodies and lengths."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.binary(max_size=40))
        length = draw(st.sampled_from([len(body) // 4, len(body) // 4 + 1, max(0, len(body) // 4 - 1)]))
        first = draw(st.integers(0x80, 0xBF))
        out += bytes([first, draw(st.sampled_from([200, 201, 202, 203, 204, 205]))])
        out += length.to_bytes(2, "big") + body[: 4 * length]
    return out


@FUZZ
@given(rtcp_shaped())
def test_rtcp_shaped_noise(data: bytes) -> None:
    check_rtcp(data)


@FUZZ
@given(st.lists(rtcp_packets, min_size=1, max_size=3), st.data())
def test_rtcp_mutated(packets: list[RtcpPacket], data: st.DataObject) -> None:
    raw = bytearray(build_rtcp(packets))
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["byte", "truncate", "extend"]))
        if kind == "byte":
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            del raw[data.draw(st.integers(0, len(raw))) :]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=8))
        if not raw:
            break
    check_rtcp(bytes(raw))


@FAST
@given(st.floats(0, 2.0e9, allow_nan=False))
def test_ntp_round_trip(t: float) -> None:
    assert abs(time_from_ntp(ntp_from_time(t)) - t) < 1e-6
