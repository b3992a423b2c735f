"""name-addr / addr-spec header values: From, To, Contact, Route, Record-Route, Refer-To.

``Address`` keeps the display name unescaped, the URI parsed and the header parameters (``tag``,
``expires``, ``q``...) as raw strings, so ``parse_address(str(a)) == a``.

The grammar is RFC 3261's, strictly: no whitespace inside ``<...>`` (RFC 4475 §3.1.2.14), an
unquoted display name is tokens only (§3.1.2.15), and a URI written without ``<...>`` may not
contain ``,``, ``;`` or ``?`` because those would be read as the header's own syntax
(RFC 3261 §20.10, RFC 4475 §3.1.2.13).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx.errors import ParseError
from pbx.sip._lex import QUOTED, TOKEN, WS, Params, format_params, parse_params, quote, unquote
from pbx.sip.uri import Uri, parse_uri

__all__ = ["Address", "parse_address"]

# An unquoted display name: tokens separated by LWS.
_WORDS_RE = re.compile(rf"{TOKEN}(?:[ \t]+{TOKEN})*")
_WS_RE = re.compile(r"[ \t]+")
_QUOTED_RE = re.compile(QUOTED)


@dataclass(slots=True, eq=True)
class Address:
    """A display name, a URI and header parameters."""

    uri: Uri
    display: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> Address:
        params = dict(self.params)
        params["tag"] = tag
        return Address(self.uri, self.display, params)

    def __str__(self) -> str:
        head = f"{quote(self.display)} " if self.display is not None else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"


def parse_address(value: str) -> Address:
    """Parse a name-addr or addr-spec with header parameters."""
    text = value.strip(WS)
    if not text:
        raise ParseError("empty address", data=value)
    display: str | None = None
    if text[0] == '"':
        m = _QUOTED_RE.match(text)
        if m is None:
            raise ParseError("unterminated or invalid quoted display name", data=value)
        display = unquote(m.group())
        rest = text[m.end() :].lstrip(WS)
        if rest[:1] != "<":
            raise ParseError("display name without <URI>", data=value)
    else:
        lt = text.find("<")
        if lt < 0:
            # addr-spec: the URI runs to the first ';', which starts the header parameters.
            uri_text, semi, tail = text.partition(";")
            uri_text = uri_text.rstrip(WS)
            if "?" in uri_text or "," in uri_text:
                raise ParseError("URI with '?' or ',' must be enclosed in <>", data=value)
            return Address(parse_uri(uri_text), None,
                           parse_params(semi + tail, "address") if semi else {})
        if lt:
            words = text[:lt].rstrip(WS)
            if _WORDS_RE.fullmatch(words) is None:
                raise ParseError("invalid display name", data=value)
            display = _WS_RE.sub(" ", words) if (" " in words or "\t" in words) else words
        rest = text[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise ParseError("unterminated <URI>", data=value)
    tail = rest[gt + 1 :]
    return Address(parse_uri(rest[1:gt]), display, parse_params(tail, "address") if tail else {})
