"""Session timers (RFC 4028): negotiate Session-Expires and Min-SE, then say when to refresh
the session and when to give up on it.

Pure functions over messages and small frozen values; the caller passes ``now`` (monotonic
seconds) and sends what it is told. The refresh itself (a re-INVITE or UPDATE carrying
``offer_headers(policy, timer)``) and the BYE are the endpoint's.

Sending the INVITE (we are the UAC of it):

- ``offer_headers(policy)`` for an initial INVITE, ``offer_headers(policy, timer)`` for a
  re-INVITE/UPDATE in a dialog that has a timer (§7.4: current interval, current refresher, the
  largest Min-SE seen);
- a 422 answer: ``policy = on_422(response, policy)`` and retry with ``offer_headers(policy)``
  (§7.3). If the returned policy equals the old one the 422 asked for nothing new: do not retry;
- the 2xx: ``from_2xx(response, policy, now)``.

Receiving it (we are the UAS):

- ``check_request(request, policy)``: a Min-SE value means answer 422 with ``Min-SE: <value>``;
- ``from_request(request, policy, now)`` and ``answer_headers(timer)`` for the 2xx (§9).

The peer may not do session timers at all. §7.2 lets the UAC keep a timer alone ("as if the
Session-Expires were in the 2xx with the request's value and refresher=uac") and §9's table gives
the refresh to the UAS when the UAC does not support the extension. A PBX wants dead calls to
end, so by default (``SessionTimerPolicy.refresh_alone``) both sides keep a timer in which we are
the refresher: the refresh re-INVITE/UPDATE fails (408, 481 or a timeout) on a dead call and the
endpoint sends BYE (§10). With ``refresh_alone=False``, ``from_2xx``/``from_request`` return None
when the peer does not take part.

``SessionTimer`` then gives the deadlines: the refresher refreshes at half the interval (§7.2,
§9); the session is over, and a BYE due, ``min(32, interval / 3)`` seconds before it expires
(§10), whichever side refreshes. Any 2xx to a session refresh request, sent or received, starts
the interval again: ``from_2xx``/``from_request`` on it, or ``timer.refreshed(now)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from pbx.errors import ParseError
from pbx.sip._lex import parse_params
from pbx.sip.message import Headers, Request, Response

__all__ = [
    "MIN_SE",
    "SessionExpires",
    "SessionTimer",
    "SessionTimerPolicy",
    "answer_headers",
    "check_request",
    "from_2xx",
    "from_request",
    "offer_headers",
    "on_422",
    "parse_min_se",
    "parse_session_expires",
]

MIN_SE = 90  # the smallest session interval anyone may ask for (§4, §5)
DEFAULT_EXPIRES = 1800  # the RECOMMENDED Session-Expires (§4)
MAX_DELTA = 2**32 - 1  # delta-seconds beyond this are refused (RFC 3261 §25.1 bounds)
_BYE_MARGIN = 32.0  # seconds before expiry the BYE goes at most (§10)

Role = Literal["uac", "uas"]

# delta-seconds: leading zeros, then at most ten digits (so int() stays cheap on garbage).
_LEADING_DELTA = re.compile(r"0*([0-9]{1,10})(?![0-9])")


@dataclass(frozen=True, slots=True)
class SessionTimerPolicy:
    """What we ask for and accept.

    ``expires`` is the session interval we want (§4 recommends 1800 s); ``min_se`` the smallest
    we accept (never below 90 s, §5). ``refresher`` is the wire value of the ``refresher``
    parameter: asked for in our requests (None leaves it to the UAS, as §7.1 recommends) and
    chosen in our answers when the request leaves it open (None chooses ``uas``, ourselves).
    ``refresh_alone``: keep a timer, refreshed by us, when the peer does not do session timers
    (see the module docstring).
    """

    expires: int = DEFAULT_EXPIRES
    min_se: int = MIN_SE
    refresher: Role | None = None
    refresh_alone: bool = True

    def __post_init__(self) -> None:
        if not MIN_SE <= self.min_se <= MAX_DELTA:
            raise ValueError(f"min_se must be {MIN_SE}..{MAX_DELTA} s, not {self.min_se}")
        if not self.min_se <= self.expires <= MAX_DELTA:
            raise ValueError(f"expires must be at least min_se ({self.min_se} s), "
                             f"not {self.expires}")
        if self.refresher not in (None, "uac", "uas"):
            raise ValueError(f"refresher must be 'uac', 'uas' or None, not {self.refresher!r}")


class SessionExpires(NamedTuple):
    """A Session-Expires value: the interval in seconds and the refresher, if named."""

    interval: int
    refresher: Role | None = None

    def __str__(self) -> str:
        return (f"{self.interval};refresher={self.refresher}" if self.refresher
                else str(self.interval))


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A running session timer, as one side sees it.

    ``refresher`` says who refreshes: ``local`` (we send the refresh) or ``remote``. ``started``
    is when the interval began (the 2xx that set it up or last refreshed it). ``min_se`` is the
    largest Min-SE seen in the dialog, which later refreshes must carry (§7.4).
    ``peer_supports`` is whether the peer understands ``timer`` (our 2xx then carries
    ``Require: timer``, §9).
    """

    interval: int
    refresher: Literal["local", "remote"]
    started: float
    min_se: int = MIN_SE
    peer_supports: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.interval <= MAX_DELTA:
            raise ValueError(f"interval must be 1..{MAX_DELTA} s, not {self.interval}")
        if self.refresher not in ("local", "remote"):
            raise ValueError(f"refresher must be 'local' or 'remote', not {self.refresher!r}")

    @property
    def refresh_at(self) -> float | None:
        """When we send the refresh (half the interval, §7.2/§9); None if the peer refreshes."""
        if self.refresher != "local":
            return None
        return self.started + self.interval / 2

    @property
    def expires_at(self) -> float:
        """When the session counts as dead and we send BYE: ``min(32, interval / 3)`` seconds
        before it expires (§10). For the refresher this is the deadline for a 2xx to its
        refresh; for the other side, the deadline for a refresh to arrive."""
        return self.started + self.interval - min(_BYE_MARGIN, self.interval / 3)

    @property
    def next_deadline(self) -> float:
        """The first thing to do: refresh (if we refresh) or, otherwise, hang up."""
        refresh = self.refresh_at
        return refresh if refresh is not None else self.expires_at

    def due(self, now: float) -> Literal["refresh", "bye"] | None:
        """What is due at ``now``: ``bye`` once expired, else ``refresh`` once the refresher's
        half-time has passed (the caller ignores it while a refresh is in flight), else None."""
        if now >= self.expires_at:
            return "bye"
        refresh = self.refresh_at
        if refresh is not None and now >= refresh:
            return "refresh"
        return None

    def refreshed(self, now: float) -> SessionTimer:
        """The same timer restarted at ``now`` (a 2xx to a session refresh request). Never
        moves the start back, so deadlines only move later."""
        return replace(self, started=max(self.started, now))


# Parsing -------------------------------------------------------------------------------------


def _split_delta(value: str, what: str) -> tuple[int, str]:
    """The leading delta-seconds of a header value and the text after it (its parameters)."""
    text = value.strip(" \t")
    m = _LEADING_DELTA.match(text)
    if m is None:
        raise ParseError(f"bad {what} (delta-seconds expected)", data=value)
    number = int(m.group(1))
    if number > MAX_DELTA:
        raise ParseError(f"{what} out of range", data=value)
    return number, text[m.end() :]


def parse_session_expires(value: str) -> SessionExpires:
    """Parse a Session-Expires value: ``delta-seconds *(;refresher=uac|uas / ;generic-param)``
    (§4). Unknown parameters are ignored; a bad refresher value is an error."""
    interval, rest = _split_delta(value, "Session-Expires")
    params = parse_params(rest, "Session-Expires") if rest else {}
    refresher: Role | None = None
    if "refresher" in params:
        raw = (params["refresher"] or "").lower()
        if raw == "uac":
            refresher = "uac"
        elif raw == "uas":
            refresher = "uas"
        else:
            raise ParseError("refresher must be uac or uas", data=value)
    return SessionExpires(interval, refresher)


def parse_min_se(value: str) -> int:
    """Parse a Min-SE value: ``delta-seconds *(;generic-param)`` (§5)."""
    number, rest = _split_delta(value, "Min-SE")
    if rest:
        parse_params(rest, "Min-SE")  # checked, then ignored
    return number


def _single(headers: Headers, name: str) -> str | None:
    lines = headers.get_all(name)
    if not lines:
        return None
    if len(lines) > 1:
        raise ParseError(f"more than one {name} header")
    return lines[0]


def _session_expires(headers: Headers) -> SessionExpires | None:
    value = _single(headers, "Session-Expires")
    return parse_session_expires(value) if value is not None else None


def _min_se(headers: Headers) -> int | None:
    value = _single(headers, "Min-SE")
    return parse_min_se(value) if value is not None else None


def _has_timer(headers: Headers) -> bool:
    """Whether ``timer`` is among the Supported or Require option tags."""
    return any(tag.strip(" \t").lower() == "timer"
               for name in ("Supported", "Require") for tag in headers.values(name))


# UAC side ------------------------------------------------------------------------------------


def offer_headers(policy: SessionTimerPolicy,
                  timer: SessionTimer | None = None) -> list[tuple[str, str]]:
    """Headers for a session refresh request we send (an INVITE, re-INVITE or UPDATE).

    Without ``timer`` (initial INVITE, or a dialog without one): ``Session-Expires`` is the
    policy's interval and refresher (§7.1). With it (§7.4): the current interval, raised to the
    largest Min-SE if a 422 asked for more (§10), and the current refresher as seen by the
    recipient (``uac`` when we refresh). ``Supported: timer`` is included; merge it into your own
    Supported header if you build one.
    """
    if timer is None:
        se = SessionExpires(policy.expires, policy.refresher)
        min_se = policy.min_se
    else:
        min_se = max(policy.min_se, timer.min_se)
        se = SessionExpires(max(timer.interval, min_se),
                            "uac" if timer.refresher == "local" else "uas")
    return [("Supported", "timer"), ("Session-Expires", str(se)), ("Min-SE", str(min_se))]


def on_422(response: Response, policy: SessionTimerPolicy) -> SessionTimerPolicy:
    """The policy to retry with after ``422 Session Interval Too Small`` (§7.3): Min-SE raised to
    the response's, the interval at least that. ``ParseError`` if the 422 has no usable Min-SE.
    Returns ``policy`` itself when the 422 asks for nothing new: retrying would loop."""
    if response.status != 422:
        raise ValueError(f"not a 422 response: {response.status}")
    wanted = _min_se(response.headers)
    if wanted is None:
        raise ParseError("422 response without Min-SE")
    if wanted <= policy.min_se:
        return policy
    return replace(policy, min_se=wanted, expires=max(policy.expires, wanted))


def from_2xx(response: Response, policy: SessionTimerPolicy, now: float) -> SessionTimer | None:
    """The timer a 2xx to our session refresh request sets up (§7.2), started at ``now``.

    With ``Session-Expires``: its interval (never below our Min-SE) and refresher (``uac`` or
    no refresher: we refresh). Without: the peer does not do timers; with
    ``policy.refresh_alone`` we refresh at the policy's interval, else None. ``ParseError`` for
    a malformed Session-Expires.
    """
    if not 200 <= response.status < 300:
        raise ValueError(f"not a 2xx response: {response.status}")
    se = _session_expires(response.headers)
    if se is None:
        if not policy.refresh_alone:
            return None
        return SessionTimer(policy.expires, "local", now, policy.min_se, peer_supports=False)
    return SessionTimer(max(se.interval, policy.min_se),
                        "remote" if se.refresher == "uas" else "local", now, policy.min_se,
                        peer_supports=_has_timer(response.headers))


# UAS side ------------------------------------------------------------------------------------


def check_request(request: Request, policy: SessionTimerPolicy) -> int | None:
    """The Min-SE to send in a 422 when the request asks for a session interval below ours, or
    None to go on (§9). Only a UAC that supports ``timer`` can act on a 422; for any other the
    interval is raised in ``from_request`` instead (RFC 4028 erratum 1687). ``ParseError`` for a
    malformed Session-Expires or Min-SE."""
    se = _session_expires(request.headers)
    _min_se(request.headers)  # validated here so a bad one is a 400 before anything else
    if se is None or se.interval >= policy.min_se or not _has_timer(request.headers):
        return None
    return policy.min_se


def from_request(request: Request, policy: SessionTimerPolicy,
                 now: float) -> SessionTimer | None:
    """The timer we put in our 2xx to a session refresh request (§9), started at ``now``.

    Interval: the request's Session-Expires lowered to our ``expires`` if larger (never raised
    above the request's, except up to the Min-SE values), and never below the request's Min-SE
    or ours. Without a Session-Expires: our ``expires``. Refresher (§9 table): ``uas`` (us) when
    the UAC does not support ``timer``; else the request's, or the policy's choice, ``uas`` by
    default. None only when neither side asked for a timer and ``policy.refresh_alone`` is off.
    Call ``check_request`` first; ``ParseError`` for malformed headers.
    """
    headers = request.headers
    se = _session_expires(headers)
    asked_min = _min_se(headers) or MIN_SE
    supports = _has_timer(headers)
    floor = max(asked_min, policy.min_se)
    if se is None:
        if not supports and not policy.refresh_alone:
            return None
        interval = max(policy.expires, asked_min)
        wire: Role | None = None
    else:
        interval = max(min(se.interval, policy.expires), floor)
        wire = se.refresher
    if not supports:
        wire = "uas"
    elif wire is None:
        wire = policy.refresher or "uas"
    return SessionTimer(interval, "local" if wire == "uas" else "remote", now, floor,
                        peer_supports=supports)


def answer_headers(timer: SessionTimer) -> list[tuple[str, str]]:
    """Headers for our 2xx (§9): Session-Expires with the refresher as the UAC will read it, and
    ``Require: timer`` when the UAC supports it (a UAC that refreshes must, one that does not
    should, know of the timer). Add ``timer`` to your Supported header too."""
    se = SessionExpires(timer.interval, "uas" if timer.refresher == "local" else "uac")
    headers = [("Session-Expires", str(se))]
    if timer.peer_supports:
        headers.append(("Require", "timer"))
    return headers
