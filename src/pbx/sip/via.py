"""Via header values (RFC 3261 §20.42, RFC 3581 rport)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.errors import ParseError
from pbx.sip._lex import WS, Params, format_params, is_token, parse_params
from pbx.sip.uri import parse_host, parse_port

__all__ = ["MAGIC_COOKIE", "Via", "parse_via"]

MAGIC_COOKIE = "z9hG4bK"


@dataclass(slots=True, eq=True)
class Via:
    """One Via hop. ``transport`` is upper-case; IPv6 hosts keep their brackets."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def host_bare(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one via-parm (the value must already be split at commas)."""
    text = value.strip(WS)
    parts: list[str] = []
    i, n = 0, len(text)
    for _ in range(3):
        while i < n and text[i] in WS:
            i += 1
        j = i
        while j < n and text[j] not in WS and text[j] != "/":
            j += 1
        parts.append(text[i:j])
        i = j
        while i < n and text[i] in WS:
            i += 1
        if len(parts) < 3:
            if i >= n or text[i] != "/":
                raise ParseError("bad Via sent-protocol", data=value)
            i += 1
    name, version, transport = parts
    if not (is_token(name) and is_token(version) and is_token(transport)):
        raise ParseError("bad Via sent-protocol", data=value)
    protocol = f"{name.upper()}/{version}"
    if protocol != "SIP/2.0":
        raise ParseError("unsupported Via protocol", status_hint=505, data=value)
    rest = text[i:]
    semi = rest.find(";")
    hostport = (rest if semi < 0 else rest[:semi]).strip(WS)
    params_text = "" if semi < 0 else rest[semi:]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ParseError("bad IPv6 reference in Via", data=value)
        host_text, tail = hostport[: close + 1], hostport[close + 1 :].strip(WS)
    else:
        host_text, _, port_part = hostport.partition(":")
        tail = ":" + port_part if _ else ""
        host_text = host_text.strip(WS)
    if tail and not tail.startswith(":"):
        raise ParseError("junk after Via host", data=value)
    host = parse_host(host_text)
    port = parse_port(tail[1:].strip(WS)) if tail else None
    params = parse_params(params_text, "Via")
    return Via(transport.upper(), host, port, params, protocol)
