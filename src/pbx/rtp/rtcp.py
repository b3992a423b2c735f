"""RTCP packets (RFC 3550 §6.4–6.6): SR, RR, SDES, BYE, other types kept opaque; NTP time helpers.

``parse_rtcp`` splits a compound packet and checks every length field: each packet's length word
must fit the data, padding must fit its packet, report blocks, SDES chunks and items and the BYE
reason must fit their packet, and the packets must cover the data exactly. Anything else raises
``ParseError``. ``bytes(packet)`` builds one packet (padded to 32 bits when its body needs it)
and ``build_rtcp`` a compound one; ``parse_rtcp(build_rtcp(ps)) == ps``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pbx.errors import ParseError

__all__ = [
    "NTP_UNIX_OFFSET",
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "SDES_EMAIL",
    "SDES_LOC",
    "SDES_NAME",
    "SDES_NOTE",
    "SDES_PHONE",
    "SDES_PRIV",
    "SDES_TOOL",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "build_rtcp",
    "compact_from_seconds",
    "ntp_compact",
    "ntp_from_time",
    "parse_rtcp",
    "seconds_from_compact",
    "time_from_ntp",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

SDES_CNAME = 1
SDES_NAME = 2
SDES_EMAIL = 3
SDES_PHONE = 4
SDES_LOC = 5
SDES_TOOL = 6
SDES_NOTE = 7
SDES_PRIV = 8

NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""

_U32 = 0xFFFFFFFF
_MAX_COUNT = 31
_MAX_BODY = 4 * 0xFFFF  # the length word counts 32-bit words after the first, so body <= this

_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")  # ssrc, ntp, rtp ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")   # ssrc, fraction<<24|lost, ext seq, jitter, lsr, dlsr
_U32S = struct.Struct("!I")


# -- NTP time ------------------------------------------------------------------------------------


def ntp_from_time(t: float) -> int:
    """Unix-epoch seconds (any consistent clock) to a 64-bit NTP timestamp (32.32 fixed point)."""
    whole = int(t // 1)
    frac = round((t - whole) * 4294967296.0)
    return (((whole + NTP_UNIX_OFFSET) << 32) + frac) & 0xFFFFFFFFFFFFFFFF


def time_from_ntp(ntp: int) -> float:
    """The inverse of ``ntp_from_time`` (within the NTP era starting in 1900)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & _U32) / 4294967296.0


def ntp_compact(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (16.16 seconds), as LSR carries it."""
    return (ntp >> 16) & _U32


def compact_from_seconds(seconds: float) -> int:
    """A duration in 1/65536 s units, 32-bit (DLSR)."""
    return round(seconds * 65536.0) & _U32


def seconds_from_compact(units: int) -> float:
    """1/65536 s units to seconds."""
    return units / 65536.0


# -- packets -------------------------------------------------------------------------------------


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} {value} is not 32-bit")


def _check_count(name: str, items: tuple[object, ...]) -> None:
    if len(items) > _MAX_COUNT:
        raise ValueError(f"at most {_MAX_COUNT} {name} fit one RTCP packet")


def _check_body(body: bytes) -> None:
    if len(body) > _MAX_BODY:
        raise ValueError("RTCP packet too large for its 16-bit length field")


def _frame(packet_type: int, count: int, body: bytes) -> bytes:
    """Header + body, padded to a multiple of 4 bytes (P bit set) when the body needs it."""
    pad = -len(body) % 4
    if pad:
        body = body + bytes(pad - 1) + bytes((pad,))
    if len(body) > _MAX_BODY:
        raise ValueError("RTCP packet too large for its 16-bit length field")
    return _HEADER.pack(0x80 | (0x20 if pad else 0) | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    """Signed 24-bit: negative when duplicates outnumber losses."""
    ext_highest_seq: int = 0
    jitter: int = 0
    """Interarrival jitter in RTP timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR from this source (0: none)."""
    dlsr: int = 0
    """Delay since that SR, in 1/65536 s."""

    def __post_init__(self) -> None:
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost {self.fraction_lost} is not 8-bit")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise ValueError(f"cumulative lost {self.cumulative_lost} is not signed 24-bit")
        for name in ("ssrc", "ext_highest_seq", "jitter", "lsr", "dlsr"):
            _check_u32(name, getattr(self, name))

    def to_bytes(self) -> bytes:
        return _BLOCK.pack(self.ssrc, self.fraction_lost << 24 | self.cumulative_lost & 0xFFFFFF,
                           self.ext_highest_seq, self.jitter, self.lsr, self.dlsr)

    __bytes__ = to_bytes

    @classmethod
    def _unpack(cls, data: bytes, off: int) -> ReportBlock:
        ssrc, lost_word, ext, jitter, lsr, dlsr = _BLOCK.unpack_from(data, off)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost_word >> 24, cumulative, ext, jitter, lsr, dlsr)


def _blocks(data: bytes, off: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock._unpack(data, off + 24 * i) for i in range(count))


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1); ``extension`` is the profile-specific tail, kept as bytes."""

    ssrc: int
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RTCP_SR

    def __post_init__(self) -> None:
        object.__setattr__(self, "reports", tuple(self.reports))
        for name in ("ssrc", "rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(self, name))
        if not 0 <= self.ntp_timestamp <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("NTP timestamp is not 64-bit")
        _check_count("report blocks", self.reports)

    def __bytes__(self) -> bytes:
        body = _SR_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                             self.packet_count, self.octet_count)
        body += b"".join(b.to_bytes() for b in self.reports) + self.extension
        return _frame(RTCP_SR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2); ``ssrc`` is the reporter's."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RTCP_RR

    def __post_init__(self) -> None:
        object.__setattr__(self, "reports", tuple(self.reports))
        _check_u32("ssrc", self.ssrc)
        _check_count("report blocks", self.reports)

    def __bytes__(self) -> bytes:
        body = _U32S.pack(self.ssrc) + b"".join(b.to_bytes() for b in self.reports)
        return _frame(RTCP_RR, len(self.reports), body + self.extension)


@dataclass(frozen=True, slots=True)
class SdesItem:
    """One SDES item: type 1..255 (``SDES_CNAME`` ...) and up to 255 bytes of value (UTF-8 text)."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.type <= 255:
            raise ValueError(f"SDES item type {self.type} is not in 1..255")
        if len(self.value) > 255:
            raise ValueError("an SDES item value is at most 255 bytes")

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """The items describing one SSRC/CSRC."""

    ssrc: int
    items: tuple[SdesItem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        _check_u32("ssrc", self.ssrc)

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SdesChunk:
        return cls(ssrc, (SdesItem(SDES_CNAME, cname.encode("utf-8")),))

    @property
    def cname(self) -> str | None:
        """The first CNAME item's text, if any."""
        for item in self.items:
            if item.type == SDES_CNAME:
                return item.text
        return None

    def to_bytes(self) -> bytes:
        out = bytearray(_U32S.pack(self.ssrc))
        for item in self.items:
            out += bytes((item.type, len(item.value))) + item.value
        out += bytes(4 - len(out) % 4)  # the terminating null octet, then up to 32 bits
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (RFC 3550 §6.5): up to 31 chunks."""

    chunks: tuple[SdesChunk, ...] = ()

    packet_type = RTCP_SDES

    def __post_init__(self) -> None:
        object.__setattr__(self, "chunks", tuple(self.chunks))
        _check_count("SDES chunks", self.chunks)

    def __bytes__(self) -> bytes:
        return _frame(RTCP_SDES, len(self.chunks), b"".join(c.to_bytes() for c in self.chunks))


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (RFC 3550 §6.6): the sources leaving, with an optional reason (at most 255 UTF-8 bytes)."""

    sources: tuple[int, ...] = ()
    reason: str | None = None

    packet_type = RTCP_BYE

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        _check_count("BYE sources", self.sources)
        for s in self.sources:
            _check_u32("ssrc", s)
        if self.reason is not None and len(self.reason.encode("utf-8")) > 255:
            raise ValueError("a BYE reason is at most 255 bytes")

    def __bytes__(self) -> bytes:
        body = b"".join(_U32S.pack(s) for s in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            body += bytes((len(text),)) + text
            body += bytes(-len(body) % 4)  # the reason is null-padded to 32 bits
        return _frame(RTCP_BYE, len(self.sources), body)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other packet type (APP, feedback, XR ...), kept as its count field and body."""

    packet_type: int
    count: int = 0
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.packet_type <= 255 or RTCP_SR <= self.packet_type <= RTCP_BYE:
            raise ValueError(f"packet type {self.packet_type} is not an opaque RTCP type")
        if not 0 <= self.count <= _MAX_COUNT:
            raise ValueError(f"count {self.count} is not 5-bit")
        _check_body(self.body)

    def __bytes__(self) -> bytes:
        return _frame(self.packet_type, self.count, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def build_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """A compound packet: the packets' bytes, concatenated."""
    return b"".join(bytes(p) for p in packets)


# -- parsing -------------------------------------------------------------------------------------


def _fail(reason: str, data: bytes) -> ParseError:
    return ParseError(reason, data=bytes(data))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    pos, n = 0, len(body)
    for _ in range(count):
        if n - pos < 4:
            raise _fail("SDES chunk runs past the end", body)
        (ssrc,) = _U32S.unpack_from(body, pos)
        pos += 4
        items = []
        while True:
            if pos >= n:
                raise _fail("SDES chunk not terminated", body)
            item_type = body[pos]
            if item_type == 0:
                break
            if pos + 2 > n or pos + 2 + body[pos + 1] > n:
                raise _fail("SDES item runs past the end", body)
            end = pos + 2 + body[pos + 1]
            items.append(SdesItem(item_type, body[pos + 2 : end]))
            pos = end
        pos = (pos + 4) & ~3  # the null octet, then to the next 32-bit boundary
        if pos > n:
            raise _fail("SDES chunk padding runs past the end", body)
        chunks.append(SdesChunk(ssrc, tuple(items)))
    if pos != n:
        raise _fail("data after the last SDES chunk", body)
    return SourceDescription(tuple(chunks))


def _parse_bye(body: bytes, count: int) -> Bye:
    n = len(body)
    if n < 4 * count:
        raise _fail("BYE source list runs past the end", body)
    sources = struct.unpack_from(f"!{count}I", body)
    pos = 4 * count
    reason = None
    if pos < n:
        end = pos + 1 + body[pos]
        if end > n:
            raise _fail("BYE reason runs past the end", body)
        if n - end > 3:
            raise _fail("data after the BYE reason", body)
        reason = body[pos + 1 : end].decode("utf-8", "replace")
    return Bye(sources, reason)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    n = len(body)
    if packet_type == RTCP_SR:
        if n < 24 + 24 * count:
            raise _fail("SR runs past the end", body)
        ssrc, ntp, ts, packets, octets = _SR_INFO.unpack_from(body)
        return SenderReport(ssrc, ntp, ts, packets, octets, _blocks(body, 24, count),
                            body[24 + 24 * count :])
    if packet_type == RTCP_RR:
        if n < 4 + 24 * count:
            raise _fail("RR runs past the end", body)
        (ssrc,) = _U32S.unpack_from(body)
        return ReceiverReport(ssrc, _blocks(body, 4, count), body[4 + 24 * count :])
    if packet_type == RTCP_SDES:
        return _parse_sdes(body, count)
    if packet_type == RTCP_BYE:
        return _parse_bye(body, count)
    return RtcpUnknown(packet_type, count, body)


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Every packet of a compound RTCP packet, in order; ``ParseError`` for anything malformed."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise _fail("empty RTCP packet", data)
    packets: list[RtcpPacket] = []
    off = 0
    while off < n:
        if n - off < 4:
            raise _fail("RTCP header runs past the end", data)
        b0, packet_type, length = _HEADER.unpack_from(data, off)
        if b0 >> 6 != 2:
            raise _fail("RTCP version is not 2", data)
        end = off + 4 * (length + 1)
        if end > n:
            raise _fail("RTCP length runs past the end", data)
        body_end = end
        if b0 & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > end - off - 4:
                raise _fail("RTCP padding count is 0 or larger than the packet", data)
            body_end -= pad
        packets.append(_parse_one(packet_type, b0 & 0x1F, data[off + 4 : body_end]))
        off = end
    return packets
