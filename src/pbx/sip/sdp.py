"""SDP session descriptions (RFC 8866, which obsoletes RFC 4566): parse and build.

``parse_sdp`` is strict on structure (lines in the RFC 8866 §5 order, ``<type>=<value>``, the
required ``v= o= s= t=`` lines, well-formed ``m=`` lines and connection addresses, and the
attributes offer/answer acts on: ``rtpmap``, ``fmtp``, ``ptime``, ``maxptime``, ``rtcp``) and
tolerant of what real peers send: LF-only line ends, trailing whitespace, blank lines, an empty
``s=``, extra spaces between fields, unknown attributes (kept, in order). Input is bounded in size,
line count and media sections, and nothing but ``ParseError`` escapes the parser.

``str(sdp)`` / ``bytes(sdp)`` serialize with CRLF line ends; ``parse_sdp(str(x)) == x``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

from pbx.errors import ParseError

__all__ = [
    "DIRECTIONS",
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_SDP_SIZE",
    "STATIC_PAYLOAD_TYPES",
    "Bandwidth",
    "Connection",
    "MediaDescription",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SessionDescription",
    "Timing",
    "is_rtp_proto",
    "parse_connection",
    "parse_rtcp",
    "parse_rtpmap",
    "parse_sdp",
]

MAX_SDP_SIZE: Final = 65536
MAX_LINES: Final = 2048
MAX_MEDIA: Final = 64

DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 tables 4 and 5: payload types that need no rtpmap, as (encoding, clock rate, channels).
STATIC_PAYLOAD_TYPES: Final[dict[int, tuple[str, int, int | None]]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, None), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, None),
    26: ("JPEG", 90000, None), 28: ("nv", 90000, None), 31: ("H261", 90000, None),
    32: ("MPV", 90000, None), 33: ("MP2T", 90000, None), 34: ("H263", 90000, None),
}

_TOKEN = r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+"  # RFC 8866 §9 token
_TOKEN_RE = re.compile(_TOKEN)
_PROTO_RE = re.compile(rf"{_TOKEN}(?:/{_TOKEN})*")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_PORT_RE = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")
_PT_RE = re.compile(r"[0-9]{1,3}")
_PORT_NUMBER_RE = re.compile(r"[0-9]{1,5}")
_RTPMAP_RE = re.compile(r"([0-9]{1,3})[ \t]+([^ \t/]+)/([0-9]{1,10})(?:/([0-9]{1,3}))?")
_FMTP_RE = re.compile(rf"({_TOKEN})(?:[ \t]+(.*))?")
_PTIME_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}"
    r"[A-Za-z0-9])?)*\.?")
_NUMERIC_HOST_RE = re.compile(r"[0-9.]+")
_SPACES_RE = re.compile(r"[ \t]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# RFC 8866 §5: session-level lines in this order ('t'/'r' pairs repeat), then media sections.
_SESSION_ORDER: Final = "vosiuepcbtrzka"
_MEDIA_ORDER: Final = "micbka"
_REPEATABLE: Final = frozenset("epbtra")


def _fields(value: str) -> list[str]:
    """Split at spaces and tabs only (other whitespace is field content)."""
    return _SPACES_RE.split(value.strip(" \t")) if value.strip(" \t") else []


def _error(reason: str, data: str | None = None, status: int = 400) -> ParseError:
    return ParseError(reason, status_hint=status, data=data)


# -- value types -------------------------------------------------------------------------------


@dataclass(slots=True)
class Origin:
    """The ``o=`` line: who made the description and which version of it this is."""

    username: str = "-"
    sess_id: str = "0"
    sess_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (f"{self.username} {self.sess_id} {self.sess_version} {self.nettype} "
                f"{self.addrtype} {self.address}")


@dataclass(slots=True)
class Connection:
    """A ``c=`` line. ``address`` is as written (a multicast one may carry ``/ttl[/count]``)."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.partition("/")[0]

    @property
    def is_ip(self) -> bool:
        """True for ``IN IP4`` and ``IN IP6`` (the only kinds RTP here can use)."""
        return self.nettype.upper() == "IN" and self.addrtype.upper() in ("IP4", "IP6")

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` or ``::``: the RFC 2543 way of putting a call on hold (RFC 3264 §8.4)."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @property
    def is_multicast(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_multicast
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4`` or ``IN IP6`` for an IP literal (IPv6 when it contains a colon)."""
        return cls("IN", "IP6" if ":" in address else "IP4", address)


@dataclass(slots=True)
class Bandwidth:
    """A ``b=<type>:<kbit/s or bit/s>`` line (AS, CT, TIAS, RS, RR ...)."""

    type: str
    value: int

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(slots=True)
class Timing:
    """A ``t=`` line with the ``r=`` lines that follow it (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605)."""

    port: int
    connection: Connection | None = None

    def __str__(self) -> str:
        return f"{self.port} {self.connection}" if self.connection else str(self.port)


# -- attribute value parsers (shared by the parser's checks and the accessors) ---------------------


def parse_rtpmap(value: str) -> RtpMap:
    """Parse an ``rtpmap`` attribute value."""
    m = _RTPMAP_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise _error("malformed rtpmap attribute", value)
    pt, encoding, rate, channels = m.groups()
    if int(pt) > 127:
        raise _error("rtpmap payload type above 127", value)
    if int(rate) == 0:
        raise _error("rtpmap clock rate is zero", value)
    return RtpMap(int(pt), encoding, int(rate), int(channels) if channels else None)


def _parse_fmtp(value: str) -> tuple[str, str]:
    m = _FMTP_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise _error("malformed fmtp attribute", value)
    return m.group(1), (m.group(2) or "").strip(" \t")


def _parse_ptime(value: str) -> int | None:
    """Milliseconds, rounded; peers write ``20``, ``20.0`` and the odd ``22.5``. 0 means unset."""
    text = value.strip(" \t")
    if _PTIME_RE.fullmatch(text) is None:
        raise _error("malformed ptime attribute", value)
    ms = round(float(text))
    return ms or None


def _check_host(host: str, addrtype: str, value: str) -> None:
    """An IP literal of the stated family, or a domain name (RFC 8866 §5.7)."""
    kind = addrtype.upper()
    if kind == "IP4":
        if _NUMERIC_HOST_RE.fullmatch(host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise _error("bad IPv4 address", value) from None
            return
    elif kind == "IP6":
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise _error("bad IPv6 address", value) from None
            return
    else:
        return  # another address type: opaque to us, checked only for spaces by the caller
    if _HOSTNAME_RE.fullmatch(host) is None or len(host) > 255:
        raise _error("bad connection address", value)


def parse_connection(value: str) -> Connection:
    """Parse a ``c=`` value ``<nettype> <addrtype> <connection-address>``."""
    parts = _fields(value)
    if len(parts) != 3:
        raise _error("connection needs nettype, addrtype and address", value)
    nettype, addrtype, address = parts
    if not (_TOKEN_RE.fullmatch(nettype) and _TOKEN_RE.fullmatch(addrtype)):
        raise _error("bad nettype or addrtype", value)
    if nettype.upper() == "IN":
        host, slash, suffix = address.partition("/")
        _check_host(host, addrtype, value)
        if slash:
            numbers = suffix.split("/")
            if len(numbers) > 2 or not all(_DIGITS_RE.fullmatch(n) for n in numbers):
                raise _error("bad multicast suffix in connection address", value)
    return Connection(nettype, addrtype, address)


def parse_rtcp(value: str) -> Rtcp:
    """Parse an ``rtcp`` attribute value (RFC 3605 §2.1)."""
    parts = _fields(value)
    if not parts or _PORT_NUMBER_RE.fullmatch(parts[0]) is None or int(parts[0]) > 65535:
        raise _error("bad port in rtcp attribute", value)
    if len(parts) == 1:
        return Rtcp(int(parts[0]))
    return Rtcp(int(parts[0]), parse_connection(" ".join(parts[1:])))


def is_rtp_proto(proto: str) -> bool:
    """True for RTP profiles (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF ...): formats are PTs."""
    return "RTP/" in proto.upper()


# -- descriptions --------------------------------------------------------------------------------

Attribute = tuple[str, str | None]


class _Attributes:
    """Ordered ``a=`` lines: (name, value) with value None for a flag like ``a=sendrecv``."""

    __slots__ = ()
    attributes: list[Attribute]

    def has_attribute(self, name: str) -> bool:
        key = name.lower()
        return any(n.lower() == key for n, _ in self.attributes)

    def attribute(self, name: str) -> str | None:
        """The first value of ``name`` ("" for a flag), or None when absent."""
        key = name.lower()
        for n, v in self.attributes:
            if n.lower() == key:
                return v if v is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        key = name.lower()
        return [v if v is not None else "" for n, v in self.attributes if n.lower() == key]

    def add_attribute(self, name: str, value: str | None = None) -> None:
        self.attributes.append((name, value))

    def remove_attribute(self, name: str) -> None:
        key = name.lower()
        self.attributes[:] = [(n, v) for n, v in self.attributes if n.lower() != key]

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 8866 §6.4), or None."""
        value = self.attribute("ptime")
        return _parse_ptime(value) if value is not None else None

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds (RFC 8866 §6.5), or None."""
        value = self.attribute("maxptime")
        return _parse_ptime(value) if value is not None else None

    @property
    def direction(self) -> str | None:
        """The first direction attribute at this level (RFC 8866 §6.7), or None."""
        for n, _ in self.attributes:
            low = n.lower()
            if low in DIRECTIONS:
                return low
        return None

    def set_direction(self, direction: str | None) -> None:
        """Replace any direction attribute with ``direction`` (None removes it)."""
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"not a direction: {direction!r}")
        self.attributes[:] = [(n, v) for n, v in self.attributes if n.lower() not in DIRECTIONS]
        if direction is not None:
            self.attributes.append((direction, None))


@dataclass(slots=True)
class MediaDescription(_Attributes):
    """One ``m=`` section. ``formats`` are strings (RTP payload types for RTP profiles)."""

    media: str = "audio"
    port: int = 0
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    # --- RTP helpers ---
    @property
    def is_rtp(self) -> bool:
        return is_rtp_proto(self.proto)

    def rtpmaps(self) -> dict[str, RtpMap]:
        """Explicit ``rtpmap`` attributes by format (the first one wins)."""
        out: dict[str, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = parse_rtpmap(value)
            out.setdefault(str(rtpmap.payload_type), rtpmap)
        return out

    def codec(self, fmt: str) -> RtpMap | None:
        """What payload type ``fmt`` carries: its rtpmap, else the RFC 3551 static assignment."""
        return _resolve(fmt, self.rtpmaps())

    def codecs(self) -> dict[str, RtpMap]:
        """``codec`` for every format of the m= line that resolves (rtpmaps parsed once)."""
        explicit = self.rtpmaps()
        out: dict[str, RtpMap] = {}
        for fmt in self.formats:
            if fmt not in out:
                rtpmap = _resolve(fmt, explicit)
                if rtpmap is not None:
                    out[fmt] = rtpmap
        return out

    def fmtps(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for value in self.attribute_values("fmtp"):
            fmt, params = _parse_fmtp(value)
            out.setdefault(_canonical_pt(fmt), params)
        return out

    def fmtp(self, fmt: str) -> str | None:
        return self.fmtps().get(_canonical_pt(fmt))

    @property
    def rtcp(self) -> Rtcp | None:
        value = self.attribute("rtcp")
        return parse_rtcp(value) if value is not None else None

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    def add_format(self, rtpmap: RtpMap, fmtp: str | None = None) -> None:
        """Append a payload type with its ``rtpmap`` (and ``fmtp`` when given)."""
        self.formats.append(str(rtpmap.payload_type))
        self.attributes.append(("rtpmap", str(rtpmap)))
        if fmtp:
            self.attributes.append(("fmtp", f"{rtpmap.payload_type} {fmtp}"))

    def _lines(self, out: list[str]) -> None:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out.append(_line("m", " ".join([self.media, port, self.proto, *self.formats])))
        if self.information is not None:
            out.append(_line("i", self.information))
        if self.connection is not None:
            out.append(_line("c", str(self.connection)))
        out.extend(_line("b", str(b)) for b in self.bandwidths)
        if self.key is not None:
            out.append(_line("k", self.key))
        out.extend(_attribute_line(n, v) for n, v in self.attributes)


def _resolve(fmt: str, explicit: dict[str, RtpMap]) -> RtpMap | None:
    rtpmap = explicit.get(_canonical_pt(fmt))
    if rtpmap is not None:
        return rtpmap
    if _PT_RE.fullmatch(fmt) and int(fmt) in STATIC_PAYLOAD_TYPES:
        name, rate, channels = STATIC_PAYLOAD_TYPES[int(fmt)]
        return RtpMap(int(fmt), name, rate, channels)
    return None


def _canonical_pt(fmt: str) -> str:
    """``"08"`` and ``"8"`` name the same payload type."""
    return str(int(fmt)) if _PT_RE.fullmatch(fmt) else fmt


@dataclass(slots=True)
class SessionDescription(_Attributes):
    """A whole session description: session-level fields, then ``media`` in m-line order."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: Connection | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    zone: str | None = None
    key: str | None = None
    version: int = 0

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection that applies to ``media``: its own, else the session's."""
        return media.connection if media.connection is not None else self.connection

    def direction_of(self, media: MediaDescription) -> str:
        """The direction of ``media``: its own attribute, the session's, else sendrecv."""
        return media.direction or self.direction or "sendrecv"

    def copy(self) -> SessionDescription:
        return copy.deepcopy(self)

    def __str__(self) -> str:
        out = [_line("v", str(self.version)), _line("o", str(self.origin)),
               _line("s", self.session_name or "-")]
        if self.information is not None:
            out.append(_line("i", self.information))
        if self.uri is not None:
            out.append(_line("u", self.uri))
        out.extend(_line("e", e) for e in self.emails)
        out.extend(_line("p", p) for p in self.phones)
        if self.connection is not None:
            out.append(_line("c", str(self.connection)))
        out.extend(_line("b", str(b)) for b in self.bandwidths)
        for t in self.timing or [Timing()]:
            out.append(_line("t", f"{t.start} {t.stop}"))
            out.extend(_line("r", r) for r in t.repeats)
        if self.zone is not None:
            out.append(_line("z", self.zone))
        if self.key is not None:
            out.append(_line("k", self.key))
        out.extend(_attribute_line(n, v) for n, v in self.attributes)
        for m in self.media:
            m._lines(out)
        out.append("")
        return "\r\n".join(out)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def _line(kind: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"line break or NUL in SDP {kind}= value: {value!r}")
    return f"{kind}={value}"


def _attribute_line(name: str, value: str | None) -> str:
    return _line("a", name if value is None else f"{name}:{value}")


# -- parser --------------------------------------------------------------------------------------


def _number(text: str, what: str, line: str) -> int:
    if _DIGITS_RE.fullmatch(text) is None:
        raise _error(f"bad {what}", line)
    return int(text)


def _parse_origin(value: str) -> Origin:
    parts = _fields(value)
    if len(parts) != 6:
        raise _error("origin needs six fields", value)
    username, sess_id, version, nettype, addrtype, address = parts
    if len(sess_id) > 64:
        raise _error("session id too long", value)
    # RFC 3264 §5: the version must fit a 64-bit signed integer.
    sess_version = _number(version, "session version", value)
    if sess_version >= 2**63:
        raise _error("session version too large", value)
    if not (_TOKEN_RE.fullmatch(nettype) and _TOKEN_RE.fullmatch(addrtype)):
        raise _error("bad nettype or addrtype in origin", value)
    return Origin(username, sess_id, sess_version, nettype, addrtype, address)


def _parse_bandwidth(value: str) -> Bandwidth:
    kind, colon, amount = value.partition(":")
    if not colon or _TOKEN_RE.fullmatch(kind) is None:
        raise _error("malformed bandwidth", value)
    return Bandwidth(kind, _number(amount.strip(" \t"), "bandwidth value", value))


def _parse_timing(value: str) -> Timing:
    parts = _fields(value)
    if len(parts) != 2:
        raise _error("timing needs start and stop", value)
    return Timing(_number(parts[0], "start time", value), _number(parts[1], "stop time", value))


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if _TOKEN_RE.fullmatch(name) is None:
        raise _error("malformed attribute name", value)
    return (name, rest if colon else None)


def _parse_media(value: str) -> MediaDescription:
    parts = _fields(value)
    if len(parts) < 3:
        raise _error("media line needs media, port and proto", value)
    media, port_text, proto, *formats = parts
    if _TOKEN_RE.fullmatch(media) is None:
        raise _error("bad media type", value)
    pm = _PORT_RE.fullmatch(port_text)
    if pm is None or int(pm.group(1)) > 65535:
        raise _error("bad media port", value)
    count = int(pm.group(2)) if pm.group(2) is not None else None
    if count == 0:
        raise _error("media port count is zero", value)
    if _PROTO_RE.fullmatch(proto) is None:
        raise _error("bad media proto", value)
    port = int(pm.group(1))
    if not formats and port != 0:
        raise _error("media line without formats", value)
    if is_rtp_proto(proto):
        for fmt in formats:
            if _PT_RE.fullmatch(fmt) is None or int(fmt) > 127:
                raise _error("RTP format is not a payload type 0-127", value)
    elif not all(_TOKEN_RE.fullmatch(f) for f in formats):
        raise _error("bad media format", value)
    return MediaDescription(media, port, proto, formats, count)


def _check_attributes(attributes: list[Attribute], media: bool) -> None:
    """Validate the attributes offer/answer reads, so the accessors cannot fail later."""
    for name, value in attributes:
        low = name.lower()
        if low == "rtpmap" and media:
            parse_rtpmap(value or "")
        elif low == "fmtp" and media:
            _parse_fmtp(value or "")
        elif low in ("ptime", "maxptime"):
            _parse_ptime(value or "")
        elif low == "rtcp" and media:
            parse_rtcp(value or "")


def _decode(data: bytes | bytearray | memoryview | str) -> str:
    if isinstance(data, str):
        if len(data) > MAX_SDP_SIZE:
            raise _error("session description too large", status=413)
        return data
    raw = bytes(data)
    if len(raw) > MAX_SDP_SIZE:
        raise _error("session description too large", status=413)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Free-text fields may use another charset (RFC 8866 §6.10); structure is ASCII anyway.
        return raw.decode("latin-1")


def parse_sdp(data: bytes | bytearray | memoryview | str) -> SessionDescription:
    """Parse a session description; raises ``ParseError`` (400, or 413 when over the limits)."""
    text = _decode(data)
    raw_lines = text.split("\n")
    if len(raw_lines) > MAX_LINES + 1:
        raise _error("too many lines in session description", status=413)
    sdp = SessionDescription(timing=[])
    seen: set[str] = set()
    media: MediaDescription | None = None
    order = _SESSION_ORDER
    last = -1
    previous = ""
    for raw in raw_lines:
        line = raw.rstrip(" \t\r")
        if not line:
            continue
        if _CONTROL_RE.search(line):
            raise _error("control character in session description", line)
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise _error("line is not <type>=<value>", line)
        kind, value = line[0], line[2:]
        if kind == "m":
            if "t" not in seen:
                raise _error("missing t= line before media", line)
            if len(sdp.media) >= MAX_MEDIA:
                raise _error("too many media descriptions", line, status=413)
            media = _parse_media(value)
            sdp.media.append(media)
            order, last, previous = _MEDIA_ORDER, 0, "m"
            continue
        rank = order.find(kind)
        if rank < 0:
            where = "media" if media is not None else "session"
            known = kind in _SESSION_ORDER or kind == "m"
            # RFC 8866 §5: a description with a type letter we do not know is to be ignored.
            raise _error(f"{kind}= line not allowed at {where} level" if known
                         else f"unknown line type {kind}=", line)
        if kind == previous and kind not in _REPEATABLE:
            raise _error(f"more than one {kind}= line", line)
        if rank < last and not (kind == "t" and previous == "r"):
            raise _error(f"{kind}= line out of order", line)
        if kind == "r" and previous not in ("t", "r"):
            raise _error("r= line not after a t= line", line)
        if media is None and len(seen) < 3 and kind != "vos"[len(seen)]:
            raise _error("session description must start with v=, o=, s=", line)
        last, previous = rank, kind
        if media is None:
            seen.add(kind)
            _session_line(sdp, kind, value, line)
        else:
            _media_line(media, kind, value)
    for required in "vost":
        if required not in seen:
            raise _error(f"missing {required}= line")
    for m in sdp.media:
        if m.port != 0 and sdp.connection_for(m) is None:
            raise _error("no connection address for media", f"m={m.media} {m.port}")
        _check_attributes(m.attributes, media=True)
    _check_attributes(sdp.attributes, media=False)
    return sdp


def _session_line(sdp: SessionDescription, kind: str, value: str, line: str) -> None:
    if kind == "v":
        if value.strip(" \t") != "0":
            raise _error("unsupported SDP version", line)
        sdp.version = 0
    elif kind == "o":
        sdp.origin = _parse_origin(value)
    elif kind == "s":
        sdp.session_name = value or "-"  # RFC 8866 §5.3: "-" when there is no name
    elif kind == "i":
        sdp.information = value
    elif kind == "u":
        sdp.uri = value
    elif kind == "e":
        sdp.emails.append(value)
    elif kind == "p":
        sdp.phones.append(value)
    elif kind == "c":
        sdp.connection = parse_connection(value)
    elif kind == "b":
        sdp.bandwidths.append(_parse_bandwidth(value))
    elif kind == "t":
        sdp.timing.append(_parse_timing(value))
    elif kind == "r":
        sdp.timing[-1].repeats.append(value)
    elif kind == "z":
        sdp.zone = value
    elif kind == "k":
        sdp.key = value
    else:  # "a"
        sdp.attributes.append(_parse_attribute(value))


def _media_line(media: MediaDescription, kind: str, value: str) -> None:
    if kind == "i":
        media.information = value
    elif kind == "c":
        media.connection = parse_connection(value)
    elif kind == "b":
        media.bandwidths.append(_parse_bandwidth(value))
    elif kind == "k":
        media.key = value
    else:  # "a"
        media.attributes.append(_parse_attribute(value))
