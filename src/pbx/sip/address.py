"""name-addr / addr-spec header values: From, To, Contact, Route, Record-Route, Refer-To.

``Address`` keeps the display name unescaped, the URI parsed and the header parameters (``tag``,
``expires``, ``q``...) as raw strings, so ``parse_address(str(a)) == a``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.errors import ParseError
from pbx.sip._lex import WS, Params, format_params, is_token, parse_params, quote, scan_quoted, unquote
from pbx.sip.uri import Uri, parse_uri

__all__ = ["Address", "parse_address"]


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
        end = scan_quoted(text, 0)
        display = unquote(text[:end])
        rest = text[end:].lstrip(WS)
        if not rest.startswith("<"):
            raise ParseError("display name without <URI>", data=value)
    else:
        lt = text.find("<")
        semi = text.find(";")
        if lt >= 0 and (semi < 0 or lt < semi):
            words = text[:lt].strip(WS)
            if words:
                if not all(is_token(w) for w in words.split()):
                    raise ParseError("invalid display name", data=value)
                display = " ".join(words.split())
            rest = text[lt:]
        else:
            rest = ""
    if rest:
        gt = rest.find(">")
        if gt < 0:
            raise ParseError("unterminated <URI>", data=value)
        uri = parse_uri(rest[1:gt].strip(WS))
        params = parse_params(rest[gt + 1 :], "address")
    else:
        uri_text, _, tail = text.partition(";")
        uri = parse_uri(uri_text.strip(WS))
        params = parse_params(";" + tail if tail or text.endswith(";") else "", "address")
    return Address(uri, display, params)
