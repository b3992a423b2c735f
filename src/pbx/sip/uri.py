"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, serialize, compare.

``parse_uri`` returns a ``SipUri`` for sip:/sips:, a ``TelUri`` for tel: and an ``AbsoluteUri``
for any other scheme (so a request for ``mailto:`` parses and can be answered 416). Escapes are
decoded on parse and re-applied on serialize, so ``parse_uri(str(u)) == u``. Hosts are
normalized: names lower-cased, IPv6 references compressed (RFC 5952) and kept in brackets.
"""

from __future__ import annotations

import functools
import ipaddress
import re
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
_HEX = frozenset(string.hexdigits)
_TEL_CHARS = frozenset(string.digits + "+-.()*#ABCDEFabcdefPpWw")  # RFC 3966, plus pauses

# Character classes of the grammar above, for the regular expressions (escapes are '%XX').
_UNRESERVED_RE = r"A-Za-z0-9\-_.!~*'()"
_USER_RE = rf"[{_UNRESERVED_RE}&=+$,;?/%]+"
_PASSWORD_RE = rf"[{_UNRESERVED_RE}&=+$,%]*"
_PCHAR_RE = rf"[{_UNRESERVED_RE}\[\]/:&+$%]+"
_HOSTPORT_RE = r"(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9.\-]+)(?::([0-9]+))?"
_PARAMS_RE = rf"((?:;{_PCHAR_RE}(?:={_PCHAR_RE})?)*)"
_HEADERS_RE = rf"(?:\?([{_UNRESERVED_RE}\[\]/?:+$%=&]*))?"
# Two forms, chosen by the presence of '@' (which appears nowhere else in a SIP URI), so the
# optional userinfo never makes the expression backtrack.
_SIP_USER = re.compile(rf"({_USER_RE})(?::({_PASSWORD_RE}))?@{_HOSTPORT_RE}{_PARAMS_RE}{_HEADERS_RE}")
_SIP_NOUSER = re.compile(rf"{_HOSTPORT_RE}{_PARAMS_RE}{_HEADERS_RE}")
_TEL_PARAMS = re.compile(rf"{_PCHAR_RE}(?:={_PCHAR_RE})?(?:;{_PCHAR_RE}(?:={_PCHAR_RE})?)*")
_SCHEMES = {"sip": "sip", "sips": "sips", "tel": "tel", "SIP": "sip", "SIPS": "sips", "TEL": "tel"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_URI_BAD = re.compile(r'[^\x21-\x7e]|[<>"]')
# hostname = *( domainlabel "." ) toplabel [ "." ] (RFC 3261 §25.1); labels cannot start or end
# with '-', and the top label starts with a letter. Labels cannot contain '.', so the
# repetition cannot backtrack across them: matching stays linear.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?\.?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 3261's IPv6 ABNF admits ":::" before an embedded IPv4 address; RFC 5118 §4.10 says tolerate it.
_THREE_COLONS = re.compile(r":::(?=[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z)")


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


@functools.lru_cache(maxsize=4096)
def parse_host(text: str) -> str:
    """Validate and normalize a host: lower-case name, IPv4, or bracketed IPv6 reference.

    Names follow RFC 3261's hostname rule (labels of letters, digits and inner hyphens, a top
    label that starts with a letter, an optional final dot); a dotted all-numeric host must be an
    IPv4 address with octets 0-255 written without leading zeros.
    """
    if not text or not text.isascii():
        raise ParseError("empty or non-ASCII host", data=text)
    if text[0] == "[":
        inner = text[1:-1]
        if text[-1] != "]" or _IPV6_CHARS.fullmatch(inner) is None:
            raise ParseError("bad IPv6 reference", data=text)
        if ":::" in inner:
            inner = _THREE_COLONS.sub("::", inner)
        try:
            addr = ipaddress.IPv6Address(inner)
        except ValueError:
            raise ParseError("bad IPv6 address", data=text) from None
        return f"[{addr.compressed}]"
    host = text.lower()
    if _HOSTNAME.fullmatch(host) is None and _IPV4.fullmatch(host) is None:
        raise ParseError("invalid host", data=text)
    return host


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address for use in a URI, Via or Contact; leave others alone."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def parse_port(text: str) -> int:
    """A port number, 1-65535, written with at most five ASCII digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ParseError("invalid port", data=text)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ParseError("port out of range", data=text)
    return port


def _parse_uri_params(text: str, what: str) -> dict[str, str | None]:
    """Parameters after the first ';' (``text`` excludes it); characters already checked."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name or (eq and not value):
            raise ParseError(f"empty {what}", data=text)
        key = (_unescape(name, what) if "%" in name else name).lower()
        if key in params:
            raise ParseError(f"duplicate {what} {key!r}", data=text)
        params[key] = (_unescape(value, what) if "%" in value else value) if eq else None
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
    if "@" in rest:
        m = _SIP_USER.fullmatch(rest)
        if m is None:
            raise ParseError("malformed SIP URI", data=text)
        name, pw, host_text, port_text, params_text, hdrs = m.groups()
        user = _unescape(name, "URI user") if "%" in name else name
        if pw is not None:
            password = _unescape(pw, "URI password") if "%" in pw else pw
    else:
        m = _SIP_NOUSER.fullmatch(rest)
        if m is None:
            raise ParseError("malformed SIP URI", data=text)
        host_text, port_text, params_text, hdrs = m.groups()
    host = parse_host(host_text)
    port = parse_port(port_text) if port_text is not None else None
    params = _parse_uri_params(params_text[1:], "URI parameter") if params_text else {}
    headers: dict[str, str] = {}
    if hdrs is not None:
        for item in hdrs.split("&"):
            hname, eq, hvalue = item.partition("=")
            if not hname or not eq:
                raise ParseError("bad URI header", data=text)
            key = _unescape(hname, "URI header")
            if key in headers:
                raise ParseError("duplicate URI header", data=text)
            headers[key] = _unescape(hvalue, "URI header")
    return SipUri(host, user, port, scheme, password, params, headers)


def _parse_tel(rest: str, text: str) -> TelUri:
    number, semi, params_text = rest.partition(";")
    if (not number or any(c not in _TEL_CHARS for c in number)
            or not any(c.isdigit() or c in "*#ABCDEFabcdef" for c in number)
            or "+" in number[1:]):
        raise ParseError("invalid tel number", data=text)
    params: dict[str, str | None] = {}
    if semi:
        if _TEL_PARAMS.fullmatch(params_text) is None:
            raise ParseError("bad tel parameter", data=text)
        params = _parse_uri_params(params_text, "tel parameter")
    return TelUri(number, params)


def _copy(uri: Uri) -> Uri:
    if isinstance(uri, SipUri):
        return SipUri(uri.host, uri.user, uri.port, uri.scheme, uri.password,
                      dict(uri.params) if uri.params else {},
                      dict(uri.headers) if uri.headers else {})
    if isinstance(uri, TelUri):
        return TelUri(uri.number, dict(uri.params))
    return AbsoluteUri(uri.scheme, uri.rest)


def _parse(text: str) -> Uri:
    colon = text.find(":")
    scheme = _SCHEMES.get(text[:colon]) if colon > 0 else None
    if scheme is None:
        if colon <= 0 or _SCHEME.fullmatch(text[:colon]) is None:
            raise ParseError("URI has no valid scheme", data=text)
        scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme == "sip" or scheme == "sips":
        # The SIP grammar admits only printable ASCII other than '<', '>' and '"'.
        return _parse_sip(scheme, rest, text)
    if _URI_BAD.search(text) is not None:
        raise ParseError("invalid character in URI", data=text)
    if scheme == "tel":
        return _parse_tel(rest, text)
    if not rest:
        raise ParseError("empty URI", data=text)
    return AbsoluteUri(scheme, rest)


# Recently parsed URIs: the same few (own domain, registered contacts, peers) recur in every
# message. Entries are never handed out, only copies, so callers may mutate what they get.
_parse_cached = functools.lru_cache(maxsize=2048)(_parse)
_CACHE_MAX_LENGTH = 256


def parse_uri(text: str) -> Uri:
    """Parse a URI; raises ``ParseError`` (status hint 400, 414 if too long) if malformed."""
    if len(text) > _CACHE_MAX_LENGTH:
        if len(text) > MAX_URI_LENGTH:
            raise ParseError("URI too long", status_hint=414, data=text)
        return _parse(text)
    return _copy(_parse_cached(text))
