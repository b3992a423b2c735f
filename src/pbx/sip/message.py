"""SIP messages (RFC 3261 §7, §20, §25): parse and serialize, bounded and strict.

``parse_message(data)`` returns a ``Request`` or ``Response`` or raises ``ParseError`` carrying the
status a server should answer with; nothing else escapes it. ``bytes(msg)`` serializes, always
writing ``Content-Length`` from the body, so ``parse_message(bytes(m)) == m``. Header values are
kept as text in an ordered, case-insensitive multimap; structured views (``vias``, ``from_``,
``cseq`` ...) are parsed on demand and cached until the headers change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from pbx.errors import ParseError
from pbx.sip._lex import TOKEN_CHARS, split_commas
from pbx.sip.address import Address, parse_address
from pbx.sip.uri import SipUri, Uri, parse_uri
from pbx.sip.via import Via, parse_via

__all__ = [
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "CSeq",
    "Headers",
    "KeepAlive",
    "Message",
    "Request",
    "Response",
    "StreamParser",
    "parse_message",
    "reason_phrase",
]

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 128
MAX_CSEQ = 2**31 - 1
VERSION = "SIP/2.0"

COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}
_CANONICAL = {name.lower(): name for name in (
    *COMPACT.values(), "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "CSeq", "Date",
    "Error-Info", "Expires", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Min-SE", "Organization", "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "RAck", "Record-Route", "Reply-To", "Require", "Retry-After", "Route",
    "RSeq", "Server", "Timestamp", "Unsupported", "User-Agent", "Warning",
    "WWW-Authenticate", "Replaces", "P-Asserted-Identity", "Privacy",
)}
for _short, _long in COMPACT.items():
    _CANONICAL[_short] = _long

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

# Headers whose values may be comma-joined lists (RFC 3261 §7.3.1); the auth headers are not.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "content-encoding",
    "allow-events", "path", "in-reply-to", "call-info", "alert-info", "error-info", "warning",
    "p-asserted-identity", "reply-to",
})


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` (or a generic one for its class)."""
    return REASONS.get(status) or REASONS.get(status // 100 * 100, "Unknown")


def canonical_name(name: str) -> str:
    """Long, conventionally capitalized form of a known header name; others unchanged."""
    return _CANONICAL.get(name.lower(), name)


class CSeq(NamedTuple):
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise ParseError("bad CSeq", data=value)
    seq = int(parts[0])
    if seq > MAX_CSEQ:
        raise ParseError("CSeq out of range", data=value)
    if not all(c in TOKEN_CHARS for c in parts[1]):
        raise ParseError("bad CSeq method", data=value)
    return CSeq(seq, parts[1])


T = TypeVar("T")


class Headers:
    """Ordered, case-insensitive multimap of header name to raw text value.

    Compact names are expanded on insertion. ``get`` returns the first value, ``values`` every
    value with list headers split at top-level commas.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        if items:
            for name, value in items:
                self.add(name, value)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append (or prepend, with ``first``) one header line."""
        canon = canonical_name(name)
        entry = (canon.lower(), canon, value)
        if first:
            self._items.insert(0, entry)
        else:
            self._items.append(entry)
        self._cache.clear()

    def insert_before(self, name: str, value: str) -> None:
        """Insert a header before the first header of the same name (top Via, top Route)."""
        canon = canonical_name(name)
        key = canon.lower()
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items.insert(i, (key, canon, value))
                break
        else:
            self._items.append((key, canon, value))
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every header of this name with one value (kept at the first one's place)."""
        canon = canonical_name(name)
        key = canon.lower()
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, canon, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((key, canon, value))
        self._items = out
        self._cache.clear()

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [item for item in self._items if item[0] != key]
        self._cache.clear()

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first element of a list header (pop the top Via or Route); return it."""
        key = canonical_name(name).lower()
        for i, (k, canon, value) in enumerate(self._items):
            if k == key:
                parts = split_commas(value)
                if len(parts) <= 1:
                    del self._items[i]
                else:
                    self._items[i] = (k, canon, ", ".join(parts[1:]))
                self._cache.clear()
                return parts[0] if parts else None
        return None

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name).lower()
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every header line of this name, unsplit."""
        key = canonical_name(name).lower()
        return [value for k, _, value in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of this header, list headers split at top-level commas."""
        key = canonical_name(name).lower()
        lines = [value for k, _, value in self._items if k == key]
        if key not in LIST_HEADERS:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(split_commas(line))
        return out

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """Memoize a structured view of the headers until they next change."""
        try:
            return self._cache[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._cache[key] = build()
            return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((canon, value) for _, canon, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def __repr__(self) -> str:
        return f"Headers({[(c, v) for _, c, v in self._items]!r})"


class Message:
    """Common part of requests and responses: headers, body and the structured views."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # Structured views -------------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        return self.headers.cached("vias", lambda: [parse_via(v) for v in self.headers.values("Via")])

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise ParseError("missing Via")
        return vias[0]

    @property
    def branch(self) -> str:
        return self.top_via.branch or ""

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise ParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        def build() -> CSeq:
            value = self.headers.get("CSeq")
            if value is None:
                raise ParseError("missing CSeq")
            return _parse_cseq(value)

        return self.headers.cached("cseq", build)

    @property
    def from_(self) -> Address:
        return self.headers.cached("from", lambda: _single_address(self.headers, "From"))

    @property
    def to(self) -> Address:
        return self.headers.cached("to", lambda: _single_address(self.headers, "To"))

    @property
    def contacts(self) -> list[Address]:
        """Contact values; ``*`` is not an address (see ``is_contact_star``)."""
        return self.headers.cached(
            "contacts",
            lambda: [parse_address(v) for v in self.headers.values("Contact") if v.strip() != "*"])

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def header_lines(self) -> list[str]:
        return [f"{name}: {value}" for name, value in self.headers]

    def _serialize(self, start: str) -> bytes:
        lines = [start]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8") + self.body


def _single_address(headers: Headers, name: str) -> Address:
    value = headers.get(name)
    if value is None:
        raise ParseError(f"missing {name}")
    return parse_address(value)


class Request(Message):
    """A SIP request. ``method`` is case-sensitive (RFC 3261 §7.1)."""

    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: Uri, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {VERSION}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method == other.method and self.uri == other.uri
                and self.headers == other.headers and self.body == other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def copy(self) -> Request:
        uri = self.uri.copy() if isinstance(self.uri, SipUri) else self.uri
        return Request(self.method, uri, self.headers.copy(), self.body)


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason

    def __bytes__(self) -> bytes:
        return self._serialize(f"{VERSION} {self.status} {self.reason}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.status == other.status and self.reason == other.reason
                and self.headers == other.headers and self.body == other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"

    def copy(self) -> Response:
        return Response(self.status, self.reason, self.headers.copy(), self.body)


# Parsing ----------------------------------------------------------------------------------

_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    # No blank line: a message without body whose final CRLF was lost (tolerated on datagrams).
    return data.rstrip(b"\r\n"), b""


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE,
                  max_headers: int = MAX_HEADERS) -> Request | Response:
    """Parse one complete message (a datagram, or a frame cut by ``StreamParser``)."""
    if len(data) > max_size:
        raise ParseError("message too large", status_hint=513)
    head, body = _split_head(data.lstrip(b"\r\n"))
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("message head is not UTF-8", data=head) from None
    if "\x00" in text:
        raise ParseError("NUL byte in message head", data=head)
    lines = text.split("\n")
    start = lines[0].rstrip("\r")
    headers = Headers()
    items = headers._items
    content_length: int | None = None
    count = 0
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith("\r") else raw
        if "\r" in line:
            raise ParseError("bare CR in header", data=line)
        if not line:
            raise ParseError("empty line inside message head", data=head)
        if line[0] in " \t":
            if not items:
                raise ParseError("continuation line before any header", data=line)
            key, canon, value = items[-1]
            items[-1] = (key, canon, (value + " " + line.strip(" \t")).strip(" \t"))
            continue
        count += 1
        if count > max_headers:
            raise ParseError("too many headers", status_hint=513)
        colon = line.find(":")
        if colon <= 0:
            raise ParseError("header line without name", data=line)
        name = line[:colon].rstrip(" \t")
        if not name or not all(c in TOKEN_CHARS for c in name):
            raise ParseError("invalid header name", data=line)
        canon = _CANONICAL.get(name.lower(), name)
        items.append((canon.lower(), canon, line[colon + 1 :].strip(" \t")))
    out: list[tuple[str, str, str]] = []
    for key, canon, value in items:
        if key == "content-length":
            if not value.isdigit() or len(value) > 10:
                raise ParseError("bad Content-Length", data=value)
            n = int(value)
            if content_length is not None and n != content_length:
                raise ParseError("conflicting Content-Length headers", data=value)
            content_length = n
        else:
            out.append((key, canon, value))
    headers._items = out
    if content_length is not None:
        if content_length > max_size:
            raise ParseError("Content-Length too large", status_hint=513)
        if len(body) < content_length:
            raise ParseError("body shorter than Content-Length", data=str(content_length))
        body = body[:content_length]

    msg: Request | Response
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != VERSION:
            raise ParseError("unsupported SIP version", status_hint=505, data=start)
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise ParseError("bad status code", data=start)
        if any(c < " " and c != "\t" for c in reason):
            raise ParseError("control character in reason phrase", data=start)
        msg = Response(int(code), reason, headers, body)
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise ParseError("bad request line", data=start)
        method, uri_text, version = parts
        if not method or not all(c in TOKEN_CHARS for c in method):
            raise ParseError("bad method", data=start)
        if version.upper() != VERSION:
            raise ParseError("unsupported SIP version", status_hint=505, data=start)
        msg = Request(method, parse_uri(uri_text), headers, body)
    _validate(msg)
    return msg


def _validate(msg: Request | Response) -> None:
    """Check the headers every message needs, so later code can rely on them."""
    headers = msg.headers
    for name in _REQUIRED:
        if name not in headers:
            raise ParseError(f"missing {name} header")
    if len(headers.get_all("Call-ID")) != 1 or not headers.get("Call-ID"):
        raise ParseError("bad Call-ID")
    cseq = msg.cseq
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise ParseError("CSeq method does not match the request method")
    if not msg.vias:
        raise ParseError("empty Via")
    msg.from_  # noqa: B018 - parse and cache, raising ParseError if malformed
    msg.to  # noqa: B018
    mf = headers.get("Max-Forwards")
    if mf is not None and (not mf.isdigit() or len(mf) > 3 or int(mf) > 255):
        raise ParseError("bad Max-Forwards", data=mf)
    expires = headers.get("Expires")
    if expires is not None and (not expires.isdigit() or len(expires) > 10):
        raise ParseError("bad Expires", data=expires)


# Stream framing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF ping on a stream (RFC 5626 §3.5.1); answer it with a single CRLF."""


_PING = KeepAlive()
_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")

StreamItem = Request | Response | ParseError | KeepAlive


class StreamParser:
    """Cuts a TCP/TLS byte stream into messages by Content-Length.

    ``feed`` returns complete messages, ``ParseError`` objects for well-framed but malformed
    messages (answer 400 and go on) and ``KeepAlive`` pings; it raises ``ParseError`` when the
    framing itself is lost (oversized head, bad Content-Length): close the connection then.
    """

    __slots__ = ("_buf", "_max", "_scan")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._scan = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a message (a half-sent message)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[StreamItem]:
        buf = self._buf
        buf += data
        out: list[StreamItem] = []
        while buf:
            if buf[0] in (13, 10):
                if buf.startswith(b"\r\n\r\n"):
                    del buf[:4]
                    out.append(_PING)
                    continue
                if buf.startswith(b"\r\n"):
                    if len(buf) == 2 or (len(buf) == 3 and buf[2] == 13):
                        break  # may become a ping
                    del buf[:2]
                    continue
                if buf[0] == 13 and len(buf) == 1:
                    break
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(buf) > self._max:
                    raise ParseError("message head too large", status_hint=513)
                self._scan = max(0, len(buf) - 3)
                break
            head_len = end + 4
            match = _CL_RE.search(buf, 0, end + 2)
            length = 0
            if match:
                value = match.group(1).strip()
                if not value.isdigit() or len(value) > 10:
                    raise ParseError("bad Content-Length on stream", data=bytes(value))
                length = int(value)
            total = head_len + length
            if total > self._max:
                raise ParseError("message too large", status_hint=513)
            if len(buf) < total:
                self._scan = end
                break
            frame = bytes(buf[:total])
            del buf[:total]
            self._scan = 0
            try:
                out.append(parse_message(frame, max_size=self._max))
            except ParseError as exc:
                out.append(exc)
        return out
