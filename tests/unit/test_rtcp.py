"""RTCP (RFC 3550 §6.4–6.6): hand-assembled SR, RR, SDES, BYE, APP and compound packets, every
rejected length, building, and the NTP helpers on the RFC's own §6.4.1 example."""

from __future__ import annotations

import pytest

from pbx.errors import ParseError
from pbx.rtp.rtcp import (
    NTP_UNIX_OFFSET,
    RTCP_APP,
    SDES_CNAME,
    SDES_TOOL,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    SdesChunk,
    SdesItem,
    SenderReport,
    SourceDescription,
    build_rtcp,
    compact_from_seconds,
    ntp_compact,
    ntp_from_time,
    parse_rtcp,
    seconds_from_compact,
    time_from_ntp,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# SR, RC=1, length 12 words | ssrc | NTP (the RFC 3550 §6.4.1 example) | rtp ts | packets | octets
# | block: ssrc, fraction 0x40, cumulative 0xffffff (-1), ext seq, jitter, lsr, dlsr
SR = h("81c8000c 11111111 b44db705 20000000 00001000 00000010 00000a00"
       "22222222 40ffffff 0001ffff 00000020 b7052000 00054000")
RR_EMPTY = h("80c90001 33333333")
# SDES, one chunk: CNAME "alice@pbx.local" (15 bytes), the null, 2 bytes to the 32-bit boundary
SDES = h("81ca0006 11111111 010f") + b"alice@pbx.local" + h("000000")
BYE = h("81cb0002 11111111 03") + b"bye"
BYE_BARE = h("81cb0001 11111111")
BYE_TWO = h("82cb0004 11111111 22222222 04") + b"done" + h("000000")
APP = h("85cc0002 11111111") + b"name"


def test_sender_report() -> None:
    [sr] = parse_rtcp(SR)
    assert isinstance(sr, SenderReport)
    assert sr.packet_type == 200
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp) == (0x11111111, 0xB44DB70520000000, 0x1000)
    assert (sr.packet_count, sr.octet_count, sr.extension) == (16, 0xA00, b"")
    assert sr.reports == (ReportBlock(0x22222222, fraction_lost=0x40, cumulative_lost=-1,
                                      ext_highest_seq=0x1FFFF, jitter=32, lsr=0xB7052000,
                                      dlsr=0x54000),)
    assert bytes(sr) == SR


def test_receiver_report_empty_and_with_blocks() -> None:
    [rr] = parse_rtcp(RR_EMPTY)
    assert rr == ReceiverReport(0x33333333)
    assert bytes(rr) == RR_EMPTY
    blocks = (ReportBlock(1, 255, 0x7FFFFF, 2, 3, 4, 5), ReportBlock(6, 0, -0x800000, 7))
    data = bytes(ReceiverReport(9, blocks))
    assert data[:4] == h("82c9000d")
    assert data[12:16] == h("ff7fffff")
    assert data[36:40] == h("00800000")
    assert parse_rtcp(data) == [ReceiverReport(9, blocks)]


def test_report_extensions_are_kept() -> None:
    data = h("80c90002 33333333 abcdef01")
    assert parse_rtcp(data) == [ReceiverReport(0x33333333, (), h("abcdef01"))]
    sr = SenderReport(1, 2, 3, 4, 5, (), b"xyz")
    [back] = parse_rtcp(bytes(sr))
    assert back == sr


def test_source_description() -> None:
    [sdes] = parse_rtcp(SDES)
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks == (SdesChunk(0x11111111, (SdesItem(SDES_CNAME, b"alice@pbx.local"),)),)
    assert sdes.chunks[0].cname == "alice@pbx.local"
    assert bytes(sdes) == SDES
    assert bytes(SourceDescription((SdesChunk.with_cname(0x11111111, "alice@pbx.local"),))) == SDES


def test_sdes_chunks_align_and_items_of_every_kind() -> None:
    chunks = (
        SdesChunk(1, ()),                                   # null + 3 bytes
        SdesChunk(2, (SdesItem(SDES_CNAME, b"ab"),)),       # 4 + 4 bytes of item, then a null word
        SdesChunk(3, (SdesItem(SDES_TOOL, "pbx \u260e".encode()), SdesItem(SDES_CNAME, b"c"))),
    )
    data = bytes(SourceDescription(chunks))
    assert data[4:12] == h("00000001 00000000")
    assert data[12:24] == h("00000002 0102 6162 00000000")
    [back] = parse_rtcp(data)
    assert back == SourceDescription(chunks)
    assert back.chunks[0].cname is None
    assert back.chunks[2].cname == "c"
    assert back.chunks[2].items[0].text == "pbx \u260e"


def test_bye() -> None:
    assert parse_rtcp(BYE) == [Bye((0x11111111,), "bye")]
    assert parse_rtcp(BYE_BARE) == [Bye((0x11111111,))]
    assert parse_rtcp(BYE_TWO) == [Bye((0x11111111, 0x22222222), "done")]
    assert bytes(Bye((0x11111111,), "bye")) == BYE
    assert bytes(Bye((0x11111111,))) == BYE_BARE
    assert bytes(Bye((0x11111111, 0x22222222), "done")) == BYE_TWO
    empty_reason = bytes(Bye((5,), ""))
    assert empty_reason == h("81cb0002 00000005 00000000")
    assert parse_rtcp(empty_reason) == [Bye((5,), "")]


def test_unknown_types_are_opaque() -> None:
    [app] = parse_rtcp(APP)
    assert app == RtcpUnknown(RTCP_APP, 5, h("11111111") + b"name")
    assert bytes(app) == APP
    # a body that is not whole words is padded on the way out and comes back unpadded
    odd = RtcpUnknown(207, 0, b"12345")
    data = bytes(odd)
    assert data[:4] == h("a0cf0002")
    assert data[-3:] == h("000003")
    assert parse_rtcp(data) == [odd]


def test_compound_packet_in_order() -> None:
    data = SR + SDES + BYE
    packets = parse_rtcp(data)
    assert [type(p) for p in packets] == [SenderReport, SourceDescription, Bye]
    assert build_rtcp(packets) == data


def test_padding_is_stripped() -> None:
    assert parse_rtcp(h("a0c90002 33333333 00000004")) == [ReceiverReport(0x33333333)]
    # padding on a packet that is not the last one is tolerated too
    assert parse_rtcp(h("a0c90002 33333333 00000004") + BYE) == [
        ReceiverReport(0x33333333), Bye((0x11111111,), "bye")]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (h("80c900"), "header runs past"),
    (RR_EMPTY + h("80"), "header runs past"),
    (RR_EMPTY + h("80c9"), "header runs past"),
    (h("40c90001 33333333"), "version"),
    (RR_EMPTY + h("00000000"), "version"),
    (h("80c90002 33333333"), "length runs past"),
    (RR_EMPTY + h("80c90001 333333"), "length runs past"),
    (h("a0c90001 33333300"), "padding"),
    (h("a0c90001 33333305"), "padding"),
    (h("a0c90000"), "padding"),
    (h("81c80006") + bytes(24), "SR runs past"),
    (SR[:-4], "length runs past"),
    (h("81c90001 33333333"), "RR runs past"),
    (h("82c90007 33333333") + bytes(24), "RR runs past"),
    (h("81ca0000"), "SDES chunk runs past"),
    (h("81ca0002 11111111 01026162"), "not terminated"),
    (h("81ca0002 11111111 01056162"), "item runs past"),
    (h("81ca0002 11111111 010261"), "length runs past"),
    (h("81ca0004 11111111 00000000 22222222 00000000"), "data after"),
    (h("80ca0001 11111111"), "data after"),
    (h("82ca0002 11111111 00000000"), "SDES chunk runs past"),
    (h("a1ca0002 11111111 01000001"), "padding runs past"),
    (h("82cb0001 11111111"), "BYE source list"),
    (h("81cb0002 11111111 05616263"), "BYE reason runs past"),
    (h("81cb0003 11111111 01610000 00000000"), "data after the BYE reason"),
    (h("81cb0003 11111111 03616263 00000000"), "data after the BYE reason"),
])
def test_rejects_malformed_compound_packets(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rtcp(data)
    assert reason in info.value.reason


@pytest.mark.parametrize("make", [
    lambda: ReportBlock(1, fraction_lost=256),
    lambda: ReportBlock(1, cumulative_lost=0x800000),
    lambda: ReportBlock(1, cumulative_lost=-0x800001),
    lambda: ReportBlock(1 << 32),
    lambda: ReportBlock(1, dlsr=-1),
    lambda: ReceiverReport(1, tuple(ReportBlock(i) for i in range(32))),
    lambda: SenderReport(1, ntp_timestamp=1 << 64),
    lambda: SdesItem(0, b""),
    lambda: SdesItem(SDES_CNAME, bytes(256)),
    lambda: Bye(tuple(range(32))),
    lambda: Bye((1,), "x" * 256),
    lambda: RtcpUnknown(200),
    lambda: RtcpUnknown(203),
    lambda: RtcpUnknown(204, count=32),
    lambda: RtcpUnknown(204, 0, bytes(4 * 0x10000)),
    lambda: bytes(SenderReport(1, extension=bytes(4 * 0xFFFF))),
])
def test_rejects_unbuildable_packets(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_largest_packet_fits_the_length_field() -> None:
    big = RtcpUnknown(204, 0, bytes(4 * 0xFFFF))
    data = bytes(big)
    assert data[2:4] == h("ffff")
    assert parse_rtcp(data) == [big]


# -- NTP ----------------------------------------------------------------------------------------

# RFC 3550 §6.4.1: the SR was sent at NTP 0xb44db705:20000000 (3024992005.125 s since 1900).
RFC_SR_TIME = 3024992005.125 - NTP_UNIX_OFFSET


def test_ntp_conversions_on_the_rfc_example() -> None:
    ntp = ntp_from_time(RFC_SR_TIME)
    assert ntp == 0xB44DB70520000000
    assert ntp_compact(ntp) == 0xB7052000
    assert time_from_ntp(ntp) == RFC_SR_TIME
    assert compact_from_seconds(5.25) == 0x00054000
    assert seconds_from_compact(0x00062000) == 6.125


def test_ntp_epoch_and_fractions() -> None:
    assert ntp_from_time(0.0) == NTP_UNIX_OFFSET << 32
    assert ntp_from_time(0.5) == (NTP_UNIX_OFFSET << 32) | 0x80000000
    assert ntp_from_time(-0.25) == ((NTP_UNIX_OFFSET - 1) << 32) | 0xC0000000
    for t in (1.0e9 + 0.123456, 1_700_000_000.987654, 12.000001):
        assert abs(time_from_ntp(ntp_from_time(t)) - t) < 1e-6
    assert compact_from_seconds(-1 / 65536) == 0xFFFFFFFF
