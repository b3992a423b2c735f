"""RTP packets: hand-assembled wire bytes parsed field by field, every rejection, building with and
without padding, rtcp-mux demultiplexing (RFC 5761 §4) and the hot-path header peek."""

from __future__ import annotations

import pytest

from pbx.errors import ParseError
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

# V=2 P=0 X=0 CC=0 | M=0 PT=0 | seq 0x1234 | ts 0x000000a0 | ssrc 0xdeadbeef | 4 bytes of PCMU
PCMU = bytes.fromhex("80 00 1234 000000a0 deadbeef") + b"\xff\xfe\x7f\x00"

# V=2 P=1 X=1 CC=2 | M=1 PT=101 | seq 65535 | ts 0xffffffff | ssrc 1 | csrc 2, 3
# | ext profile 0xbede, 1 word: 0x10 0xaa 0x00 0x00 | payload "ab" | 3 bytes padding
FULL = (bytes.fromhex("b2 e5 ffff ffffffff 00000001 00000002 00000003 bede0001 10aa0000")
        + b"ab" + b"\x00\x00\x03")


def test_parses_a_plain_pcmu_packet() -> None:
    p = parse_rtp(PCMU)
    assert (p.version, p.marker, p.payload_type) == (2, False, 0)
    assert (p.sequence, p.timestamp, p.ssrc) == (0x1234, 0xA0, 0xDEADBEEF)
    assert p.csrc == ()
    assert p.extension is None
    assert p.payload == b"\xff\xfe\x7f\x00"
    assert p.header_size == 12
    assert bytes(p) == PCMU


def test_parses_csrc_extension_marker_and_strips_padding() -> None:
    p = parse_rtp(FULL)
    assert (p.marker, p.payload_type) == (True, 101)
    assert (p.sequence, p.timestamp, p.ssrc) == (65535, 0xFFFFFFFF, 1)
    assert p.csrc == (2, 3)
    assert p.extension == RtpExtension(0xBEDE, bytes.fromhex("10aa0000"))
    assert p.payload == b"ab"
    assert p.header_size == 12 + 8 + 8
    # padding is only written when asked for
    assert bytes(p) == bytes([FULL[0] & ~0x20]) + FULL[1:-3]
    assert p.to_bytes(padding=3) == FULL
    assert parse_rtp(bytes(p)) == p


def test_accepts_bytearray_and_memoryview() -> None:
    assert parse_rtp(bytearray(FULL)) == parse_rtp(FULL)
    assert parse_rtp(memoryview(FULL)) == parse_rtp(FULL)
    assert isinstance(parse_rtp(memoryview(FULL)).payload, bytes)


def test_empty_payload_and_padding_that_fills_the_payload() -> None:
    header = bytes.fromhex("80 08 0001 00000002 00000003")
    assert parse_rtp(header).payload == b""
    padded = bytes([0xA0]) + header[1:] + b"\x00\x00\x00\x04"
    p = parse_rtp(padded)
    assert p.payload == b""
    assert p.payload_type == 8


def test_empty_extension() -> None:
    data = bytes.fromhex("90 00 0001 00000002 00000003 1000 0000") + b"x"
    p = parse_rtp(data)
    assert p.extension == RtpExtension(0x1000, b"")
    assert p.payload == b"x"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", ERR_TOO_SHORT),
    (PCMU[:11], ERR_TOO_SHORT),
    (bytes([0x00]) + PCMU[1:], ERR_VERSION),
    (bytes([0x40]) + PCMU[1:], ERR_VERSION),
    (bytes([0xC0]) + PCMU[1:], ERR_VERSION),
    # version is checked before the length of the rest
    (bytes([0x4F]) + PCMU[1:12], ERR_VERSION),
    # CC=1 but only the fixed header
    (bytes([0x81]) + PCMU[1:12], ERR_CSRC),
    # CC=15 needs 72 bytes
    (bytes([0x8F]) + PCMU[1:12] + bytes(59), ERR_CSRC),
    # X=1 with no room for the extension header, or 3 bytes of it
    (bytes([0x90]) + PCMU[1:12], ERR_EXTENSION),
    (bytes([0x90]) + PCMU[1:12] + b"\xbe\xde\x00", ERR_EXTENSION),
    # extension says 2 words, 7 bytes follow
    (bytes([0x90]) + PCMU[1:12] + bytes.fromhex("bede0002") + bytes(7), ERR_EXTENSION),
    # CSRC fits but the extension after it does not
    (bytes([0x91]) + PCMU[1:12] + bytes(4) + bytes.fromhex("bede0001"), ERR_EXTENSION),
    # P=1 with a zero count
    (bytes([0xA0]) + PCMU[1:12] + b"abc\x00", ERR_PADDING),
    # P=1, count 5 > the 4 bytes after the header
    (bytes([0xA0]) + PCMU[1:12] + b"abc\x05", ERR_PADDING),
    # P=1 and nothing after the header: the count byte is part of the header
    (bytes([0xA0]) + PCMU[1:11] + b"\x01", ERR_PADDING),
    # padding may not eat into the extension
    (bytes([0xB0]) + PCMU[1:12] + bytes.fromhex("bede0001") + b"\x00\x00\x00\x02", ERR_PADDING),
])
def test_rejects_malformed_packets(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rtp(data)
    assert info.value.reason == reason
    assert info.value.data == data[:200]


def test_padding_is_added_only_on_request() -> None:
    p = RtpPacket(payload_type=0, sequence=7, timestamp=8, ssrc=9, payload=b"xyz")
    assert bytes(p)[0] == 0x80
    padded = p.to_bytes(padding=5)
    assert padded[0] == 0xA0
    assert padded[-5:] == b"\x00\x00\x00\x00\x05"
    assert len(padded) == len(bytes(p)) + 5
    assert parse_rtp(padded) == p
    assert p.to_bytes(padding=1)[-1] == 1
    with pytest.raises(ValueError):
        p.to_bytes(padding=256)


def test_builder_sets_counts_and_bits() -> None:
    p = RtpPacket(payload_type=96, sequence=1, timestamp=2, ssrc=3, marker=True,
                  csrc=[10, 11, 12],  # type: ignore[arg-type]  # a list is taken as a tuple
                  extension=RtpExtension(1, bytes(8)), payload=b"p")
    assert p.csrc == (10, 11, 12)
    data = bytes(p)
    assert data[0] == 0x80 | 0x10 | 3
    assert data[1] == 0x80 | 96
    assert data[24:28] == bytes.fromhex("00010002")
    assert len(data) == 12 + 12 + 4 + 8 + 1
    assert parse_rtp(data) == p


@pytest.mark.parametrize("kwargs", [
    {"payload_type": 128},
    {"payload_type": -1},
    {"sequence": 65536},
    {"sequence": -1},
    {"timestamp": 1 << 32},
    {"ssrc": -1},
    {"csrc": tuple(range(16))},
    {"csrc": (1 << 32,)},
    {"version": 1},
])
def test_rejects_out_of_range_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        RtpPacket(**fields)  # type: ignore[arg-type]


def test_extension_data_must_be_whole_words() -> None:
    with pytest.raises(ValueError):
        RtpExtension(0xBEDE, b"abc")
    with pytest.raises(ValueError):
        RtpExtension(0x10000, b"")
    with pytest.raises(ValueError):
        RtpExtension(1, bytes(4 * 0x10000))


@pytest.mark.parametrize(("second", "rtcp"), [
    (0, False), (0x80, False), (96, False), (0x80 | 95, True), (191, False), (192, True),
    (200, True), (201, True), (204, True), (223, True), (224, False), (255, False),
])
def test_rtcp_mux_demultiplexing(second: int, rtcp: bool) -> None:
    assert is_rtcp(bytes([0x80, second, 0, 1])) is rtcp


def test_rtcp_mux_on_real_packets() -> None:
    rr = bytes.fromhex("80c90001 deadbeef")
    assert is_rtcp(rr)
    assert not is_rtcp(PCMU)
    assert not is_rtcp(FULL)
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"")


def test_peek_header() -> None:
    assert peek_header(PCMU) == (0x1234, 0xA0, 0xDEADBEEF, 0, False)
    assert peek_header(FULL) == (65535, 0xFFFFFFFF, 1, 101, True)
    assert peek_header(PCMU[:11]) is None
    assert peek_header(bytes([0x40]) + PCMU[1:]) is None
