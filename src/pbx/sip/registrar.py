"""The registrar decision (RFC 3261 §10.3), pure: a REGISTER and the current bindings in, the new
binding set and the answer out.

The shell authenticates, loads the AoR's bindings from the ``LocationStore``, calls
``handle_register`` and, on a 200 with ``changed``, saves ``result.bindings``. A request either
applies in full or not at all (§10.3 step 7): every rejection returns the bindings unchanged.

Decisions beyond the RFC's letter, in one place:

- Contacts must be sip: or sips: URIs (the proxy routes to them); any other scheme is a 400.
- A Call-ID seen before with a CSeq not higher than the stored one aborts the whole request
  (step 7, "the update MUST be aborted and the request fails"): 400 "Out-of-Order CSeq". This
  covers an equal CSeq too: a true retransmission is absorbed by the transaction layer first.
- More live bindings than ``max_contacts`` after the update is a 403 "Too Many Registrations"
  (a per-AoR policy limit, not overload, so not 503); removals and refreshes always pass.
- The same contact twice in one request (by §19.1.4 equivalence) is a 400: its meaning is
  ambiguous and no conforming UA sends it.
- A malformed ``expires`` (Contact parameter or Expires header) counts as 3600 (§20.10, §20.19);
  a malformed ``q`` is a 400 (§20.10 grammar; there is no fallback for a preference).
- 423 only when the requested interval is non-zero, below ``min_expires`` and below one hour
  (§10.3 step 7); longer requests are shortened to ``max_expires``, never lengthened.
- RFC 5626 ``+sip.instance`` and ``reg-id`` are stored (``reg-id`` only with an instance, as a
  registrar ignores it otherwise). Outbound itself is not offered, so bindings are still keyed by
  Contact URI and ``reg-id`` is not echoed.
- RFC 3327 ``Path`` values are stored with the bindings this request writes; the request's Path
  is echoed in the 200 when the UA sent ``Supported: path``.
- Bindings are kept in order of their last update, oldest first; ``lookup_targets`` breaks q ties
  with that order (most recent first).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from email.utils import formatdate
from enum import Enum

from pbx.errors import ParseError
from pbx.sip._lex import quote, unquote
from pbx.sip.address import Address
from pbx.sip.location import Binding
from pbx.sip.message import Request
from pbx.sip.peer import Peer
from pbx.sip.uri import SipUri, parse_host, parse_uri

__all__ = [
    "RegisterResult",
    "RegistrarPolicy",
    "Rejection",
    "aor_for",
    "handle_register",
    "lookup_targets",
]

MALFORMED_EXPIRES = 3600  # RFC 3261 §20.10 and §20.19: "treated as equivalent to 3600"
MAX_DELTA = 2**32 - 1  # delta-seconds range (§20.19)
BRIEF_CEILING = 3600  # §10.3 step 7: 423 only for intervals "smaller than one hour"
MAX_REG_ID = 2**31 - 1  # RFC 5626 §4.2.1

_DIGITS = re.compile(r"[0-9]+")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 3261 §25.1 qvalue


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """Limits the registrar enforces (seconds, and bindings per AoR)."""

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 <= min_expires <= default_expires <= max_expires")
        if self.max_expires < 1 or self.max_contacts < 1:
            raise ValueError("max_expires and max_contacts must be positive")


DEFAULT_POLICY = RegistrarPolicy()


class Rejection(Enum):
    """Why a REGISTER is refused: the one table of status codes and reason phrases."""

    STAR_NOT_ALONE = (400, "Wildcard Contact Must Be Alone")
    STAR_NEEDS_EXPIRES_ZERO = (400, "Wildcard Contact Needs Expires: 0")
    BAD_CONTACT = (400, "Bad Contact")
    BAD_SCHEME = (400, "Contact Must Be a SIP or SIPS URI")
    BAD_Q = (400, "Bad q-value")
    BAD_REG_ID = (400, "Bad reg-id")
    DUPLICATE_CONTACT = (400, "Duplicate Contact")
    OUT_OF_ORDER = (400, "Out-of-Order CSeq")
    INTERVAL_TOO_BRIEF = (423, "Interval Too Brief")
    TOO_MANY = (403, "Too Many Registrations")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def reason(self) -> str:
        return self.value[1]


@dataclass(slots=True)
class RegisterResult:
    """The answer to a REGISTER.

    ``bindings`` is the AoR's full new set (``current`` as given when rejected);
    ``response_headers`` go on the response as they are: on a 200 one Contact per binding with
    its remaining ``expires`` and a Date, on a 423 the Min-Expires.
    """

    status: int
    bindings: list[Binding]
    changed: bool
    response_headers: list[tuple[str, str]]
    reason: str


class _Rejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


@dataclass(slots=True)
class _Update:
    """One Contact of the request, validated."""

    uri: SipUri
    expires: int  # requested interval, before the policy
    q: float
    instance: str | None
    reg_id: int | None


def handle_register(req: Request, aor: str, current: list[Binding], source: Peer, now: float,
                    policy: RegistrarPolicy = DEFAULT_POLICY) -> RegisterResult:
    """Decide a REGISTER for ``aor`` (already authenticated and authorized, §10.3 steps 1-5).

    ``current`` is the stored set (expired entries allowed: they are dropped); ``now`` is wall
    clock seconds, the same clock as ``Binding.expires_at``. ``req`` must be a parsed message
    (Call-ID and CSeq present).
    """
    live = [b for b in current if b.expires_at > now]
    try:
        new = _apply(req, aor, live, source, now, policy)
    except _Rejected as exc:
        r = exc.rejection
        headers = [("Min-Expires", str(policy.min_expires))] if r is Rejection.INTERVAL_TOO_BRIEF else []
        return RegisterResult(r.status, list(current), False, headers, r.reason)
    headers = [("Contact", _contact_line(b, now)) for b in new]
    if any(o.lower() == "path" for o in req.headers.values("Supported")):
        headers.extend(("Path", p) for p in req.headers.values("Path"))  # RFC 3327 §5.3
    headers.append(("Date", _http_date(int(now))))
    return RegisterResult(200, new, new != current, headers, "OK")


def _apply(req: Request, aor: str, live: list[Binding], source: Peer, now: float,
           policy: RegistrarPolicy) -> list[Binding]:
    """The new binding set, or raise ``_Rejected``."""
    raw = req.headers.values("Contact")
    if not raw:
        return live  # a query (§10.3 step 6): bindings unchanged
    call_id, cseq = req.call_id, req.cseq.seq
    stars = sum(1 for v in raw if v.strip() == "*")
    if stars:
        # §10.3 step 6: "*" alone, with Expires: 0, removes every binding (subject to step 7's
        # Call-ID / CSeq check, which the RFC applies here too).
        if stars != len(raw) or stars > 1:
            raise _Rejected(Rejection.STAR_NOT_ALONE)
        if _delta(req.headers.get("Expires")) != 0:
            raise _Rejected(Rejection.STAR_NEEDS_EXPIRES_ZERO)
        for b in live:
            if b.call_id == call_id and cseq <= b.cseq:
                raise _Rejected(Rejection.OUT_OF_ORDER)
        return []

    updates = _updates(req, policy)
    for i, u in enumerate(updates):
        if any(u.uri.matches(other.uri) for other in updates[:i]):
            raise _Rejected(Rejection.DUPLICATE_CONTACT)
    for u in updates:
        if 0 < u.expires < policy.min_expires and u.expires < BRIEF_CEILING:
            raise _Rejected(Rejection.INTERVAL_TOO_BRIEF)

    stored = [(b, _stored_uri(b.contact)) for b in live]
    removed: set[int] = set()
    added: list[Binding] = []
    path = tuple(req.headers.values("Path"))
    for u in updates:
        for i, (b, uri) in enumerate(stored):
            if uri is None or i in removed or not u.uri.matches(uri):
                continue
            # §10.3 step 7: a different Call-ID replaces; the same one must have a higher CSeq.
            if b.call_id == call_id and cseq <= b.cseq:
                raise _Rejected(Rejection.OUT_OF_ORDER)
            removed.add(i)
        if u.expires == 0:
            continue
        expires = min(u.expires, policy.max_expires)
        added.append(Binding(aor=aor, contact=str(u.uri), expires_at=now + expires, q=u.q,
                             call_id=call_id, cseq=cseq, source=str(source),
                             instance=u.instance, reg_id=u.reg_id, path=path))
    new = [b for i, (b, _) in enumerate(stored) if i not in removed] + added
    if len(new) > policy.max_contacts and len(new) > len(live):
        raise _Rejected(Rejection.TOO_MANY)
    return new


def _updates(req: Request, policy: RegistrarPolicy) -> list[_Update]:
    """The request's Contacts with their requested intervals (§10.3 step 7)."""
    header_expires = req.headers.get("Expires")
    fallback = policy.default_expires if header_expires is None else _delta(header_expires)
    out: list[_Update] = []
    try:
        addrs = req.contacts          # parsed once per message, shared with the parser's check
    except ParseError:
        raise _Rejected(Rejection.BAD_CONTACT) from None
    for addr in addrs:
        if not isinstance(addr.uri, SipUri):
            raise _Rejected(Rejection.BAD_SCHEME)
        params = addr.params
        expires = _delta(params["expires"]) if "expires" in params else fallback
        q = _qvalue(params)
        instance, reg_id = _outbound(addr)
        out.append(_Update(addr.uri, expires, q, instance, reg_id))
    return out


def _delta(value: str | None) -> int:
    """A delta-seconds value; malformed (or missing, for ``*``) counts as 3600."""
    if value is None:
        return MALFORMED_EXPIRES
    text = value.strip()
    if _DIGITS.fullmatch(text) is None:
        return MALFORMED_EXPIRES
    return min(int(text), MAX_DELTA)


def _qvalue(params: dict[str, str | None]) -> float:
    if "q" not in params:
        return 1.0
    value = params["q"]
    if value is None or _QVALUE.fullmatch(value) is None:
        raise _Rejected(Rejection.BAD_Q)
    return float(value)


def _outbound(addr: Address) -> tuple[str | None, int | None]:
    """RFC 5626 ``+sip.instance`` (without quotes and angle brackets) and ``reg-id``."""
    raw = addr.params.get("+sip.instance")
    if raw is None:
        return None, None  # reg-id without an instance is ignored (RFC 5626 §6)
    instance = unquote(raw)
    if instance.startswith("<") and instance.endswith(">"):
        instance = instance[1:-1]
    if "reg-id" not in addr.params:
        return instance, None
    text = addr.params["reg-id"]
    if text is None or _DIGITS.fullmatch(text) is None or not 1 <= int(text) <= MAX_REG_ID:
        raise _Rejected(Rejection.BAD_REG_ID)
    return instance, int(text)


@functools.lru_cache(maxsize=4096)
def _http_date(second: int) -> str:
    """RFC 1123 date of a whole second (cached: every 200 in that second shares it)."""
    return formatdate(second, usegmt=True)


@functools.lru_cache(maxsize=16384)
def _stored_uri(contact: str) -> SipUri | None:
    """The parsed URI of a stored contact (cached; callers only read it)."""
    try:
        uri = parse_uri(contact)
    except ParseError:
        return None
    return uri if isinstance(uri, SipUri) else None


def _contact_line(b: Binding, now: float) -> str:
    """A Contact value for the 200: the URI, its remaining interval, q and instance."""
    # Rounded to the millisecond first so float noise never turns 3600 into 3601; at least 1,
    # since a live binding must not be reported as removed.
    remaining = max(1, math.ceil(round(b.expires_at - now, 3)))
    line = f"<{b.contact}>;expires={remaining}"
    if b.q != 1.0:
        line += f";q={_format_q(b.q)}"
    if b.instance is not None:
        line += f";+sip.instance={quote(f'<{b.instance}>')}"
    return line


def _format_q(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".")


def aor_for(req: Request, domain: str) -> str | None:
    """The canonical AoR (``sip:user@domain``) named by the To header, or None.

    None when To is not a sip:/sips: URI with a user part in ``domain``; the caller answers 404
    (§10.3 step 5: an AoR "not valid for the domain"). Canonical form (step 5): URI parameters
    dropped, the user unescaped and re-escaped consistently, the host lower-case, the scheme
    always ``sip`` so sip: and sips: registrations of a user share one binding set.
    """
    try:
        uri = req.to.uri
    except ParseError:
        return None
    if not isinstance(uri, SipUri) or not uri.user:
        return None
    try:
        host = parse_host(domain)
    except ParseError:
        return None
    if uri.host != host:
        return None
    return str(SipUri(host, uri.user))


def lookup_targets(bindings: list[Binding], now: float) -> list[Binding]:
    """Live bindings, highest q first; equal q, most recently updated first.

    Recency is list order (``handle_register`` appends what it writes), latest last.
    """
    live = [(i, b) for i, b in enumerate(bindings) if b.expires_at > now]
    live.sort(key=lambda ib: (-ib[1].q, -ib[0]))
    return [b for _, b in live]
