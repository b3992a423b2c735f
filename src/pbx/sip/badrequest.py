"""Best-effort error answers to requests that failed to parse.

A malformed request still deserves a 400 (RFC 3261 §21.4.1) when enough of it survives to build
one: the Via, From, To, Call-ID and CSeq lines are copied verbatim. Responses and hopeless input
get ``None`` (drop). Pure, bounded: only the head is scanned.
"""

from __future__ import annotations

from pbx.errors import ParseError
from pbx.sip.message import reason_phrase

__all__ = ["error_reply"]

_WANT = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
         "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}


def error_reply(data: bytes, exc: ParseError, server_header: str | None = None) -> bytes | None:
    """Bytes of an error response to the request in ``data``, or None if it cannot be answered."""
    head = data[:8192].split(b"\r\n\r\n", 1)[0]
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    if not start or start.upper().startswith("SIP/") or start.count(" ") < 2:
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = _WANT.get(name.strip().lower()) if colon else None
        if key is not None and value.strip() and "\r" not in value:
            found.setdefault(key, []).append(value.strip())
    if any(k not in found for k in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    if start.split(" ", 1)[0] == "ACK":
        return None  # never answer an ACK
    status = exc.status_hint if 400 <= exc.status_hint < 700 else 400
    reason = reason_phrase(status)
    detail = "".join(c for c in exc.reason if c.isalnum() or c in " -_.,()")[:80]
    out = [f"SIP/2.0 {status} {reason} ({detail})" if detail else f"SIP/2.0 {status} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        values = found[name] if name == "Via" else found[name][:1]
        out.extend(f"{name}: {v}" for v in values)
    if server_header:
        out.append(f"Server: {server_header}")
    out.append("Content-Length: 0")
    out.extend(["", ""])
    return "\r\n".join(out).encode("latin-1")
