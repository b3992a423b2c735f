"""Via header values (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 §4.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx.errors import ParseError
from pbx.sip._lex import TOKEN, Params, format_params, parse_params
from pbx.sip.uri import _IPV4, parse_host, parse_port

__all__ = ["MAGIC_COOKIE", "Via", "parse_via"]

MAGIC_COOKIE = "z9hG4bK"
VERSION = "SIP/2.0"

# sent-protocol LWS sent-by *( SEMI via-params ); LWS is allowed around '/' and ':'.
_VIA = re.compile(
    rf"[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]+"
    r"(\[[^\]]*\]|[^ \t;:]+)(?:[ \t]*:[ \t]*([^ \t;]+))?[ \t]*(;.*)?", re.S)
_TRANSPORTS = {t: t.upper() for name in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "TLS-SCTP")
               for t in (name, name.lower())}


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

    @property
    def received(self) -> str | None:
        """The ``received`` address without IPv6 brackets (senders use both forms, RFC 5118)."""
        value = self.params.get("received")
        if value and value.startswith("["):
            return value[1:-1]
        return value

    @property
    def rport(self) -> int | None:
        """The ``rport`` port filled in by a server (RFC 3581), or None if absent or empty."""
        value = self.params.get("rport")
        return int(value) if value else None

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def _check_params(params: Params, value: str) -> None:
    """Range-check the parameters other code acts on (RFC 3261 §20.42, RFC 3581)."""
    if "received" in params:
        received = params["received"]
        if not received:
            raise ParseError("received without a value in Via", data=value)
        if received.startswith("["):
            parse_host(received)
        elif ":" in received:
            parse_host(f"[{received}]")
        elif _IPV4.fullmatch(received) is None:
            raise ParseError("received is not an IP address in Via", data=value)
    rport = params.get("rport")
    if rport is not None:
        parse_port(rport)
    if "ttl" in params:
        ttl = params["ttl"]
        if not ttl or not (ttl.isascii() and ttl.isdigit()) or len(ttl) > 3 or int(ttl) > 255:
            raise ParseError("bad ttl in Via", data=value)
    if "maddr" in params:
        maddr = params["maddr"]
        if not maddr:
            raise ParseError("maddr without a value in Via", data=value)
        parse_host(maddr)


def parse_via(value: str) -> Via:
    """Parse one via-parm (the value must already be split at commas)."""
    sp = value.find(" ", 8) if value[:8] == "SIP/2.0/" else -1
    transport = _TRANSPORTS.get(value[8:sp]) if sp > 8 else None
    semi = value.find(";", sp)
    hostport = value[sp + 1 :] if semi < 0 else value[sp + 1 : semi]
    if transport is not None and hostport and " " not in hostport and "\t" not in hostport:
        # Fast path for the usual spelling: "SIP/2.0/UDP host[:port][;params]".
        protocol = VERSION
        params_text = "" if semi < 0 else value[semi:]
        if hostport[0] == "[":
            close = hostport.find("]") + 1
            host_text, port_text = hostport[:close], hostport[close:]
            if port_text:
                if port_text[0] != ":":
                    raise ParseError("junk after IPv6 reference in Via", data=value)
                port_text = port_text[1:] or ":"
        else:
            host_text, colon, port_text = hostport.partition(":")
            if colon and not port_text:
                port_text = ":"
        port = parse_port(port_text) if port_text else None
    else:
        m = _VIA.fullmatch(value)
        if m is None:
            raise ParseError("malformed Via", data=value)
        name, version, transport, host_text, port_text, params_text = m.groups()
        protocol = f"{name.upper()}/{version}"
        if protocol != VERSION:
            raise ParseError("unsupported Via protocol", status_hint=505, data=value)
        transport = transport.upper()
        port = parse_port(port_text) if port_text is not None else None
    host = parse_host(host_text)
    if params_text:
        params = parse_params(params_text, "Via")
        if "branch" in params and params["branch"] is None:
            raise ParseError("branch without a value in Via", data=value)
        if "received" in params or "rport" in params or "ttl" in params or "maddr" in params:
            _check_params(params, value)
    else:
        params = {}
    return Via(transport, host, port, params, protocol)
