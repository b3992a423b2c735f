"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, serialize, compare.

``parse_uri`` returns a ``SipUri`` for sip:/sips:, a ``TelUri`` for tel: and an ``AbsoluteUri``
for any other scheme (so a request for ``mailto:`` parses and can be answered 416). Escapes are
decoded on parse and re-applied on serialize, so ``parse_uri(str(u)) == u``.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass, field

from pbx.errors import ParseError

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "format_host", "parse_host", "parse_port", "parse_uri"]

MAX_URI_LENGTH = 4096

_ALNUM = string.ascii_letters + string.digits
_UNRESERVED = _ALNUM + "-_.!~*'()"
_USER_SAFE = frozenset(_UNRESERVED + "&=+$,;?/")
_PASSWORD_SAFE = frozenset(_UNRESERVED + "&=+$,")
_PARAM_SAFE = frozenset(_UNRESERVED + "[]/:&+$")
_HEADER_SAFE = frozenset(_UNRESERVED + "[]/?:+$")
_HOST_CHARS = frozenset(_ALNUM + "-.")
_SCHEME_CHARS = frozenset(_ALNUM + "+-.")
_HEX = frozenset(string.hexdigits)
_TEL_CHARS = frozenset(string.digits + "+-.()*#ABCDabcdPpWw")


def _unescape(text: str, what: str) -> str:
    if "%" not in text:
        return text
    raw = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            h = text[i + 1 : i + 3]
            if len(h) != 2 or not all(x in _HEX for x in h):
                raise ParseError(f"bad escape in {what}", data=text)
            raw.append(int(h, 16))
            i += 3
        else:
            raw += c.encode("utf-8")
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"escaped bytes in {what} are not UTF-8", data=text) from None


def _escape(text: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8"))
    return "".join(out)


def _check_chars(text: str, safe: frozenset[str], what: str) -> None:
    for c in text:
        if c not in safe and c != "%":
            raise ParseError(f"invalid character {c!r} in {what}", data=text)


def parse_host(text: str) -> str:
    """Validate and normalize a host: lower-case name, IPv4, or bracketed IPv6."""
    if not text:
        raise ParseError("empty host", data=text)
    if text[0] == "[":
        if text[-1] != "]":
            raise ParseError("bad IPv6 reference", data=text)
        try:
            addr = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise ParseError("bad IPv6 address", data=text) from None
        return f"[{addr.compressed}]"
    if any(c not in _HOST_CHARS for c in text):
        raise ParseError("invalid host", data=text)
    if text[0] in "-." or text[-1] == "-" or ".." in text:
        raise ParseError("invalid host", data=text)
    return text.lower()


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address for use in a URI, Via or Contact; leave others alone."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def parse_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5:
        raise ParseError("invalid port", data=text)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ParseError("port out of range", data=text)
    return port


def _parse_uri_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";"):
        if not item:
            raise ParseError(f"empty {what}", data=text)
        name, eq, value = item.partition("=")
        _check_chars(name, _PARAM_SAFE, what)
        key = _unescape(name, what).lower()
        if not key:
            raise ParseError(f"empty {what} name", data=text)
        if key in params:
            raise ParseError(f"duplicate {what} {key!r}", data=text)
        if eq:
            _check_chars(value, _PARAM_SAFE, what)
            params[key] = _unescape(value, what)
        else:
            params[key] = None
    return params


@dataclass(slots=True, eq=True)
class SipUri:
    """A sip: or sips: URI. ``host`` is lower-case; an IPv6 host is kept in brackets."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        """Transport named by the URI (``udp`` by default, ``tls`` for sips)."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def host_bare(self) -> str:
        """Host without IPv6 brackets, ready for socket calls."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def copy(self) -> SipUri:
        return SipUri(self.host, self.user, self.port, self.scheme, self.password,
                      dict(self.params), dict(self.headers))

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + _escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        for k, v in self.params.items():
            parts.append(";" + _escape(k, _PARAM_SAFE))
            if v is not None:
                parts.append("=" + _escape(v, _PARAM_SAFE))
        if self.headers:
            parts.append("?" + "&".join(
                f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                for k, v in self.headers.items()))
        return "".join(parts)

    def matches(self, other: SipUri) -> bool:
        """URI equivalence per RFC 3261 §19.1.4 (the rules that matter for routing)."""
        if self.scheme != other.scheme or self.user != other.user:
            return False
        if self.password != other.password or self.host != other.host:
            return False
        if self.port != other.port:
            return False
        for key in ("transport", "user", "ttl", "method", "maddr"):
            a, b = self.params.get(key), other.params.get(key)
            if (a is None) != (b is None):
                return False
            if a is not None and b is not None and a.lower() != b.lower():
                return False
        for key, a in self.params.items():
            b = other.params.get(key)
            if a is not None and b is not None and a.lower() != b.lower():
                return False
        return self.headers == other.headers


@dataclass(slots=True, eq=True)
class TelUri:
    """A tel: URI (RFC 3966): the number as written and its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.number

    def __str__(self) -> str:
        return "tel:" + self.number + "".join(
            ";" + _escape(k, _PARAM_SAFE) + ("" if v is None else "=" + _escape(v, _PARAM_SAFE))
            for k, v in self.params.items())


@dataclass(slots=True, eq=True)
class AbsoluteUri:
    """Any other absolute URI, kept opaque (e.g. ``mailto:``, ``urn:``)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        name, colon, pw = userinfo.partition(":")
        _check_chars(name, _USER_SAFE, "URI user")
        user = _unescape(name, "URI user")
        if not user:
            raise ParseError("empty user in URI", data=text)
        if colon:
            _check_chars(pw, _PASSWORD_SAFE, "URI password")
            password = _unescape(pw, "URI password")
    hostport, qmark, hdrs = rest.partition("?")
    hostport, semi, params_text = hostport.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ParseError("bad IPv6 reference", data=text)
        host_text, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail and not tail.startswith(":"):
            raise ParseError("junk after IPv6 reference", data=text)
        port_text = tail[1:] if tail else None
    else:
        host_text, colon, p = hostport.partition(":")
        port_text = p if colon else None
    host = parse_host(host_text)
    port = parse_port(port_text) if port_text is not None else None
    params = _parse_uri_params(params_text, "URI parameter") if semi else {}
    if semi and not params:
        raise ParseError("empty URI parameter", data=text)
    headers: dict[str, str] = {}
    if qmark:
        for item in hdrs.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise ParseError("bad URI header", data=text)
            _check_chars(name, _HEADER_SAFE, "URI header")
            _check_chars(value, _HEADER_SAFE, "URI header")
            key = _unescape(name, "URI header")
            if key in headers:
                raise ParseError("duplicate URI header", data=text)
            headers[key] = _unescape(value, "URI header")
    return SipUri(host, user, port, scheme, password, params, headers)


def _parse_tel(rest: str, text: str) -> TelUri:
    number, semi, params_text = rest.partition(";")
    if not number or any(c not in _TEL_CHARS for c in number):
        raise ParseError("invalid tel number", data=text)
    params = _parse_uri_params(params_text, "tel parameter") if semi else {}
    return TelUri(number, params)


def parse_uri(text: str) -> Uri:
    """Parse a URI; raises ``ParseError`` (status hint 400) on anything malformed."""
    if len(text) > MAX_URI_LENGTH:
        raise ParseError("URI too long", status_hint=414, data=text)
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or any(
            c not in _SCHEME_CHARS for c in scheme):
        raise ParseError("URI has no valid scheme", data=text)
    if any(c <= " " or c == "\x7f" or c in '<>"' for c in text):
        raise ParseError("invalid character in URI", data=text)
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest, text)
    if scheme == "tel":
        return _parse_tel(rest, text)
    if not rest:
        raise ParseError("empty URI", data=text)
    return AbsoluteUri(scheme, rest)
