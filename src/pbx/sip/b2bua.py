"""Pure decisions of the back-to-back user agent.

The B2BUA (``pbx.call`` over ``pbx.sip.endpoint``) terminates the caller's dialog and starts new
ones for the parties it dials: each B leg has its own Call-ID, tags, Via, Contact and SDP (media
is anchored in the PBX's engine). Nothing of the A leg crosses unless chosen here: the caller's
number and display name are presented to the callee by default (a PBX user expects to see who
calls; number masking passes ``caller_id``), never its Call-ID, tags, Via, Contact, Record-Route
or other headers.

- ``from_address``: the From of a B leg.
- ``best_status``: which final status of several failed forks to report (RFC 3261 §16.7 step 6
  refined for a PBX: busy beats unavailable beats the rest).
- ``reason_for``: a failed dial's ``pbx.events.Reason``.
- ``a_status_for``: what the caller is told when the B side failed.
- ``info_digit``: a DTMF digit from a SIP INFO (``application/dtmf-relay`` or ``application/dtmf``).
- ``redirect_targets``: the Contacts of a 3xx, best q first.
"""

from __future__ import annotations

import re

from pbx.errors import ParseError
from pbx.events import Reason
from pbx.sip.address import Address, parse_address
from pbx.sip.message import Request, Response
from pbx.sip.uri import SipUri, Uri

__all__ = ["a_status_for", "best_status", "from_address", "info_digit", "reason_for",
           "redirect_targets"]

_DIGITS = frozenset("0123456789*#ABCD")
_SIGNAL = re.compile(rb"(?im)^\s*signal\s*=\s*([0-9*#A-Da-d]|1[0-5])\s*$")
_BUSY = (486, 600, 603)
_UNAVAILABLE = (480, 408, 487)
_EVENT_DIGITS = "0123456789*#ABCD"


def _display(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch >= " " and ch not in '"\\')[:64]
    return f'"{cleaned}" ' if cleaned else ""


def from_address(number: str, domain: str, *, display: str = "", tag: str | None = None) -> Address:
    """``"display" <sip:number@domain>``: the identity a B leg presents. The user part keeps
    only what a telephone number or extension may hold."""
    user = "".join(ch for ch in number if ch.isalnum() or ch in "+-.*#_")[:64] or "anonymous"
    addr = parse_address(f"{_display(display)}<sip:{user}@{domain}>")
    return addr.with_tag(tag) if tag else addr


def best_status(statuses: list[int]) -> int | None:
    """The status to report for failed forks: a 6xx, then busy (486), then the lowest class
    (4xx before 5xx), 480/408 last among 4xx since "busy somewhere" says more."""
    if not statuses:
        return None
    six = [s for s in statuses if 600 <= s < 700]
    if six:
        return min(six)
    if 486 in statuses:
        return 486
    def rank(s: int) -> tuple[int, int, int]:
        return (s // 100, 1 if s in _UNAVAILABLE else 0, s)
    return min(statuses, key=rank)


def reason_for(status: int | None) -> str:
    """The ``pbx.events.Reason`` for a dial that ended with ``status``."""
    if status in _BUSY:
        return Reason.BUSY
    if status is None or status in _UNAVAILABLE:
        return Reason.NO_ANSWER
    return Reason.FAILED


def a_status_for(status: int | None, reason: str) -> int:
    """What the caller is told when the B side failed: busy stays busy, no answer becomes 480,
    anything else 503 unless it is a plain 4xx/6xx worth passing on (404, 403, 484, 603)."""
    if reason == Reason.NO_ANSWER:
        return 480
    if status in _BUSY or status in (403, 404, 484, 488):
        return status
    return 503 if status is None or status >= 500 else 480


def info_digit(req: Request) -> str | None:
    """The digit a SIP INFO carries: ``application/dtmf-relay`` (``Signal=5``) or
    ``application/dtmf`` (the digit alone, or its RFC 4733 event code)."""
    ctype = (req.content_type or "").lower()
    body = req.body[:1024]
    if ctype == "application/dtmf-relay":
        m = _SIGNAL.search(body)
        if m is None:
            return None
        value = m.group(1).decode().upper()
    elif ctype == "application/dtmf":
        value = body.strip().decode("ascii", "replace").upper()
    else:
        return None
    if value.isdigit() and len(value) == 2:
        code = int(value)
        return _EVENT_DIGITS[code] if code < 16 else None
    return value if len(value) == 1 and value in _DIGITS else None


def redirect_targets(resp: Response, limit: int = 5) -> list[Uri]:
    """The SIP URIs in a 3xx's Contacts, highest q first (RFC 3261 §8.1.3.4)."""
    found: list[tuple[float, int, Uri]] = []
    for i, value in enumerate(resp.headers.values("Contact")):
        try:
            addr = parse_address(value)
        except ParseError:
            continue
        if not isinstance(addr.uri, SipUri):
            continue
        q_text = addr.params.get("q") or "1"
        try:
            q = float(q_text)
        except ValueError:
            q = 0.0
        found.append((-q, i, addr.uri))
    found.sort(key=lambda t: (t[0], t[1]))
    return [uri for _, _, uri in found[:limit]]
