"""SIP messages (RFC 3261 §7, §20, §25): parse and serialize, bounded and strict.

``parse_message(data)`` returns a ``Request`` or ``Response`` or raises ``ParseError`` carrying the
status a server should answer with; nothing else escapes it. ``bytes(msg)`` serializes, always
writing ``Content-Length`` from the body, so ``parse_message(bytes(m)) == m``. Header values are
kept as text in an ordered, case-insensitive multimap; the structured views (``vias``, ``from_``,
``to``, ``cseq``, ``contacts``) are parsed, checked and cached by ``parse_message``, and parsed
again on demand after the headers change.

The parser is written for speed as much as for strictness: the common shapes of each element
take a short path of ``str`` methods and one regular expression, and anything unusual falls back
to a careful path; both accept exactly the same language.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from pbx.errors import ParseError
from pbx.sip._lex import TOKEN, TOKEN_RE, split_commas
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
MAX_CSEQ = 2**32 - 1  # a 32-bit unsigned integer (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4)
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
    m = _CSEQ.fullmatch(value)
    if m is None:
        raise ParseError("bad CSeq", data=value)
    seq = int(m.group(1))
    if seq > MAX_CSEQ:
        raise ParseError("CSeq out of range", data=value)
    return CSeq(seq, m.group(2))


T = TypeVar("T")


class Headers:
    """Ordered, case-insensitive multimap of header name to raw text value.

    Compact names are expanded on insertion. ``get`` returns the first value, ``values`` every
    value with list headers split at top-level commas. ``add``, ``set`` and ``insert_before``
    raise ``ValueError`` for a name that is not a token or a value containing CR or LF, so a
    header can never be smuggled into a message through a value.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        if items:
            for name, value in items:
                self.add(name, value)

    @staticmethod
    def _entry(name: str, value: str) -> tuple[str, str, str]:
        entry = _NAMES.get(name)
        if entry is None:
            if TOKEN_RE.fullmatch(name) is None:
                raise ValueError(f"invalid header name {name!r}")
            entry = _name_entry(name)
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR or LF in the value of header {name!r}")
        return entry[0], entry[1], value

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append (or prepend, with ``first``) one header line."""
        entry = self._entry(name, value)
        if first:
            self._items.insert(0, entry)
        else:
            self._items.append(entry)
        self._cache.clear()

    def insert_before(self, name: str, value: str) -> None:
        """Insert a header before the first header of the same name (top Via, top Route)."""
        entry = self._entry(name, value)
        key = entry[0]
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items.insert(i, entry)
                break
        else:
            self._items.append(entry)
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every header of this name with one value (kept at the first one's place)."""
        entry = self._entry(name, value)
        key = entry[0]
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append(entry)
        self._items = out
        self._cache.clear()

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [item for item in self._items if item[0] != key]
        self._cache.clear()

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first element of a list header (pop the top Via or Route); return it."""
        key = _key(name)
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
        key = _key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every header line of this name, unsplit."""
        key = _key(name)
        return [value for k, _, value in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of this header, list headers split at top-level commas."""
        key = _key(name)
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
        key = _key(name)
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


def _key(name: str) -> str:
    """The lower-case lookup key of a header name (compact forms expanded)."""
    entry = _NAMES.get(name)
    if entry is not None:
        return entry[0]
    return _CANONICAL.get(name.lower(), name).lower()


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

# Headers that may appear once only (RFC 3261 §7.3.1; RFC 4475 §3.3.8 multi01, §3.3.9 mcl01).
_SINGLE = frozenset({"from", "to", "call-id", "cseq", "max-forwards", "content-length",
                     "content-type", "expires"})

_HEAD_END = re.compile(rb"\r?\n\r?\n")
# Control characters other than HTAB, CR and LF may appear in a head only as quoted-pairs
# (RFC 4475 §3.1.1.2); CR and LF only as CRLF line ends (or bare LF, tolerated).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_CRLF = bytes(range(0, 9)) + bytes(range(10, 32)) + b"\x7f"  # ... and CR, LF
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_STATUS = re.compile(r"[1-6][0-9][0-9]")
_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                      "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"})
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I | re.A)
_CSEQ = re.compile(rf"0*([0-9]{{1,10}})[ \t]+({TOKEN})")
_SMALL_INT = re.compile(r"0*([0-9]{1,3})")
_COUNT = re.compile(r"[0-9]{1,10}")

# Raw header name -> (lower-case key, canonical name); unknown names are added up to a bound.
_NAMES: dict[str, tuple[str, str]] = {}
_MAX_NAMES = 4096


def _name_entry(name: str) -> tuple[str, str]:
    canon = _CANONICAL.get(name.lower(), name)
    entry = (canon.lower(), canon)
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[name] = entry
    return entry


for _name in list(_CANONICAL.values()) + list(COMPACT) + [c.upper() for c in COMPACT]:
    for _variant in (_name, _name.lower()):
        _name_entry(_variant)


def _check_controls(text: str) -> None:
    """Raise unless every control character in ``text`` is escaped as a quoted-pair."""
    for m in _CONTROL.finditer(text):
        i = m.start()
        j = i
        while j > 0 and text[j - 1] == "\\":
            j -= 1
        if (i - j) % 2 == 0:
            raise ParseError("control character in message head",
                             data=text[max(0, i - 40) : i + 40])


def content_length(value: str) -> int:
    """A Content-Length value: ASCII digits (at most ten after leading zeros)."""
    if value.isdigit() and value.isascii() and len(value) <= 10:
        return int(value)
    digits = value.lstrip("0") or value[:1]
    if _COUNT.fullmatch(digits) is None:
        raise ParseError("bad Content-Length", data=value)
    return int(digits)


def _irregular_head(data: bytes) -> tuple[bytes, bytes, str, str]:
    """Head, body, line separator and decoded head of a message that is not plain CRLF text.

    Bare-LF line ends are tolerated (the head then ends at the first empty line of any kind); a
    bare CR is an error, and so is a control character that is not part of a quoted-pair.
    """
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data
    if head.count(b"\n") == head.count(b"\r\n"):
        sep = "\r\n"
        if end >= 0:
            body = data[end + 4 :]
        else:
            head, body = data.rstrip(b"\r\n"), b""
    else:
        sep = "\n"
        blank = _HEAD_END.search(data)
        if blank is not None:
            head, body = data[: blank.start()], data[blank.end() :]
        else:
            head, body = data.rstrip(b"\r\n"), b""
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf:
        raise ParseError("bare CR in message head", data=head)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("message head is not UTF-8", data=head) from None
    _check_controls(text)
    if sep == "\n" and crlf:
        text = text.replace("\r\n", "\n")
    return head, body, sep, text


def _unfold(block: str, sep: str) -> list[str]:
    """The header lines of ``block`` with continuation lines joined to their header."""
    if block[:1] in (" ", "\t"):
        raise ParseError("continuation line before any header", data=block[:80])
    return _FOLD.sub(" ", block).split(sep)


class _Folded(Exception):
    """A continuation line was met: unfold the header block and start again."""


def _header_items(lines: list[str]
                  ) -> tuple[list[tuple[str, str, str]], dict[str, str], int | None]:
    """(key, name, value) items, the values of single headers, and the Content-Length."""
    items: list[tuple[str, str, str]] = []
    single: dict[str, str] = {}
    length: int | None = None
    names = _NAMES
    append = items.append
    for line in lines:
        name, colon, value = line.partition(":")
        entry = names.get(name)
        if entry is None:
            if line[:1] in (" ", "\t"):
                raise _Folded
            if not colon:
                raise ParseError("header line without a colon", data=line)
            name = name.rstrip(" \t")
            entry = names.get(name)
            if entry is None:
                if TOKEN_RE.fullmatch(name) is None:
                    raise ParseError("invalid header name", data=line)
                entry = _name_entry(name)
        elif not colon:
            raise ParseError("header line without a colon", data=line)
        value = value.strip(" \t")
        key = entry[0]
        if key in _SINGLE:
            if key in single and not (key == "content-length" and single[key] == value):
                raise ParseError(f"more than one {entry[1]} header", data=value)
            single[key] = value
            if key == "content-length":
                length = content_length(value)
                continue
        append((key, entry[1], value))
    return items, single, length


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE,
                  max_headers: int = MAX_HEADERS) -> Request | Response:
    """Parse one complete message (a datagram, or a frame cut by ``StreamParser``).

    Leading CRLFs are skipped (RFC 3261 §7.5). A body longer than Content-Length is truncated
    (the trailing octets of a datagram, RFC 4475 §3.1.1.8); a shorter one is an error; without
    Content-Length the body is the rest of the data. Lines may end in bare LF (tolerated); a bare
    CR, or any other control character outside a quoted-pair, is an error.
    """
    if len(data) > max_size:
        raise ParseError("message too large", status_hint=513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
    else:
        # No blank line: a message without body whose final CRLF was lost (datagrams).
        head, body = data.rstrip(b"\r\n"), b""
    # One pass finds every control octet; if the only ones are the CRLF line ends, the head is
    # plain text with CRLF lines (the usual case). Anything else takes the careful path.
    if len(head) - len(head.translate(None, _CONTROL_CRLF)) == 2 * head.count(b"\r\n"):
        sep = "\r\n"
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("message head is not UTF-8", data=head) from None
    else:
        head, body, sep, text = _irregular_head(data)

    nl = text.find(sep)
    if nl < 0:
        start, block = text, ""
    else:
        start, block = text[:nl], text[nl + len(sep) :]
    lines = block.split(sep) if block else []
    if len(lines) > max_headers:
        lines = _unfold(block, sep)  # continuation lines do not count
        if len(lines) > max_headers:
            raise ParseError("too many headers", status_hint=513)
    try:
        items, single, length = _header_items(lines)
    except (_Folded, ParseError):
        # Folded lines are rare; only when there are some is the block unfolded and read again.
        if not (block[:1] in (" ", "\t") or "\n " in block or "\n\t" in block):
            raise
        items, single, length = _header_items(_unfold(block, sep))
    if length is not None:
        if length > max_size:
            raise ParseError("Content-Length too large", status_hint=513)
        if len(body) < length:
            raise ParseError("body shorter than Content-Length", data=str(length))
        if len(body) > length:
            body = body[:length]

    headers = Headers()
    headers._items = items
    msg: Request | Response
    parts = start.split(" ", 2)
    if len(parts) == 3 and parts[0][:4].upper() == "SIP/":
        version, code, reason = parts
        _check_version(version, start)
        if len(code) != 3 or _STATUS.fullmatch(code) is None:
            raise ParseError("bad status code", data=start)
        msg = Response(int(code), reason, headers, body)
    elif len(parts) == 2 and parts[0][:4].upper() == "SIP/":
        # "SIP/2.0 180" without the SP before an empty reason phrase: tolerated.
        version, code = parts
        _check_version(version, start)
        if len(code) != 3 or _STATUS.fullmatch(code) is None:
            raise ParseError("bad status code", data=start)
        msg = Response(int(code), "", headers, body)
    else:
        if len(parts) != 3 or " " in parts[2]:
            raise ParseError("bad request line", data=start)
        method, uri_text, version = parts
        if method not in _METHODS and TOKEN_RE.fullmatch(method) is None:
            raise ParseError("bad method in request line", data=start)
        _check_version(version, start)
        if not uri_text:
            raise ParseError("bad request line", data=start)
        uri = parse_uri(uri_text)
        if isinstance(uri, SipUri) and uri.headers:
            # RFC 3261 §19.1.1 table; RFC 4475 §3.1.2.11 escruri.
            raise ParseError("headers in the Request-URI", data=start)
        msg = Request(method, uri, headers, body)
    _validate(msg, single)
    return msg


def _check_version(version: str, start: str) -> None:
    if version != VERSION and not (version.isascii() and version.upper() == VERSION):
        if _VERSION.fullmatch(version):
            raise ParseError("unsupported SIP version", status_hint=505, data=start)
        raise ParseError("bad SIP version", data=start)


def _validate(msg: Request | Response, single: dict[str, str]) -> None:
    """Check the headers every message needs, so later code can rely on them."""
    try:
        call_id = single["call-id"]
        cseq_text = single["cseq"]
        from_text = single["from"]
        to_text = single["to"]
    except KeyError as exc:
        raise ParseError(f"missing {canonical_name(exc.args[0])} header") from None
    if not call_id or " " in call_id or "\t" in call_id:
        raise ParseError("bad Call-ID", data=call_id)
    cache = msg.headers._cache
    seq, _, method = cseq_text.partition(" ")
    if (seq.isdigit() and seq.isascii() and len(seq) <= 9
            and (method == msg.method if isinstance(msg, Request) else method in _METHODS)):
        cseq = CSeq(int(seq), method)  # the usual case: "314159 INVITE"
    else:
        cseq = _parse_cseq(cseq_text)
        if isinstance(msg, Request) and cseq.method != msg.method:
            raise ParseError("CSeq method does not match the request method", data=cseq_text)
    cache["cseq"] = cseq
    vias: list[str] = []
    contacts: list[str] = []
    for key, _, value in msg.headers._items:
        if key == "via":
            if "," in value:
                vias.extend(split_commas(value))
            else:
                vias.append(value)
        elif key == "contact":
            if "," in value:
                contacts.extend(split_commas(value))
            else:
                contacts.append(value)
    if not vias:
        raise ParseError("missing Via header")
    cache["vias"] = [parse_via(v) for v in vias]
    from_ = cache["from"] = parse_address(from_text)
    to = cache["to"] = parse_address(to_text)
    if ("tag" in from_.params and not from_.tag) or ("tag" in to.params and not to.tag):
        raise ParseError("tag without a value")
    cache["contacts"] = [parse_address(v) for v in contacts if v != "*"] if contacts else []
    mf = single.get("max-forwards")
    if mf is not None and not (mf.isdigit() and mf.isascii() and len(mf) <= 3 and int(mf) <= 255):
        m = _SMALL_INT.fullmatch(mf)
        if m is None or int(m.group(1)) > 255:
            raise ParseError("bad Max-Forwards", data=mf)
    expires = single.get("expires")
    if expires is not None and _COUNT.fullmatch(expires.lstrip("0") or expires[:1]) is None:
        raise ParseError("bad Expires", data=expires)


# Stream framing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF ping on a stream (RFC 5626 §3.5.1); answer it with a single CRLF."""


_PING = KeepAlive()
# The Content-Length header of a stream message (compact form too, folded value too).
# Spelled with explicit case classes and a leading LF so the scan can jump from line to line.
_CL_RE = re.compile(rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Ll])[ \t]*:"
                    rb"((?:[^\r\n]|\r\n[ \t])*)")
_FOLD_BYTES = re.compile(rb"\r\n[ \t]+")

StreamItem = Request | Response | ParseError | KeepAlive


class StreamParser:
    """Cuts a TCP/TLS byte stream into messages by Content-Length.

    ``feed`` returns complete messages, ``ParseError`` objects for well-framed but malformed
    messages (answer 400 and go on) and ``KeepAlive`` pings; it raises ``ParseError`` when the
    framing itself is lost (oversized head, bad Content-Length): close the connection then.
    """

    __slots__ = ("_buf", "_max", "_need", "_scan")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._scan = 0  # where to resume looking for the end of the head
        self._need = 0  # length of the message whose head is in, while its body is not

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a message (a half-sent message)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[StreamItem]:
        buf = self._buf
        buf += data
        out: list[StreamItem] = []
        while buf:
            if self._need:
                # The head was read already: only wait for the body, never re-scan the head.
                total = self._need
                if len(buf) < total:
                    break
                self._need = 0
                out.append(self._cut(total))
                continue
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
                value = match.group(1)
                if b"\r" in value:
                    value = _FOLD_BYTES.sub(b" ", value)
                try:
                    length = content_length(value.strip(b" \t").decode("latin-1"))
                except ParseError:
                    raise ParseError("bad Content-Length on stream", data=value) from None
            total = head_len + length
            if total > self._max:
                raise ParseError("message too large", status_hint=513)
            self._scan = 0
            if len(buf) < total:
                self._need = total
                break
            out.append(self._cut(total))
        return out

    def _cut(self, total: int) -> Request | Response | ParseError:
        frame = bytes(self._buf[:total])
        del self._buf[:total]
        try:
            return parse_message(frame, max_size=self._max)
        except ParseError as exc:
            return exc
