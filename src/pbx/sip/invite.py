"""The INVITE usage (RFC 3261 §13-15, RFC 6026, RFC 6337) as a pure state machine per session.

An ``InviteSession`` is one INVITE-initiated session, seen from one side: the caller (``uac``) or
the callee (``uas``). It sits above the transaction layer: the endpoint feeds it the transaction
events that belong to it (``receive(event, now)``), the TU's decisions come in as method calls
(``accept``, ``reject``, ``cancel``, ``reinvite``, ``bye`` ...), and every call returns a list of
outputs. Time comes in as ``now``; ``next_deadline()``/``on_timer(now)`` run its timers, exactly
as in ``pbx.sip.transaction``. Ids (tags, branches, Call-IDs) and the glare back-off come from
the injected ``SessionConfig.ids`` and ``SessionConfig.random``.

Outputs are actions for the endpoint and events for the TU, all plain dataclasses:

- ``SendRequest(request, next_hop)``: start a client transaction (INVITE, CANCEL, BYE,
  re-INVITE, INFO ...) towards ``next_hop`` and route its events back to this session;
  ``SendResponse(key, response)``: pass it to ``TransactionLayer.respond``;
  ``SendAck(request, next_hop)``: send this ACK for a 2xx straight to the transport (it is not
  part of the INVITE transaction, §13.2.2.4). ``next_hop`` is the URI to resolve (RFC 3263):
  the first route of the route set, loose or strict, else the target (§8.1.2); a CANCEL goes
  where its INVITE went.
- ``Ringing(dialog, response, sdp)``: a provisional response above 100 (180, 183 ...); ``dialog``
  is the early dialog it created or belongs to (None without a To tag) and ``sdp`` any session
  description in it (early media; RFC 3261 does not make it the answer).
- ``Answered(dialog, response, sdp)``: the first 2xx; ``sdp`` is the answer to our offer (the
  early one if the 2xx repeats none). For an INVITE without an offer it is None and
  ``OfferReceived`` follows: answer it with ``ack(answer, now)``.
- ``Failed(status, response)``: the INVITE got a non-2xx final response (``response`` None when
  the transaction timed out, 408, or the transport failed, 503).
- ``OfferReceived(dialog, sdp, message, initial)`` / ``OfferRequested(dialog, request, initial)``:
  the peer's INVITE or re-INVITE with / without an offer (answer with ``accept(answer)``, or give
  our offer in ``accept(offer)``, or ``reject(status)``); or an offer in a 2xx (``ack(answer)``).
- ``AnswerReceived(dialog, sdp, message)``: the answer to our offer, in the 2xx to our re-INVITE
  or in the ACK for our 2xx (``sdp`` None if the peer broke offer/answer and sent none).
- ``Confirmed(dialog, ack)``: the ACK for our 2xx arrived (the callee's call is up).
- ``AckTimeout(dialog)``: no ACK for our 2xx within 64*T1 (§13.3.1.4); the TU should ``bye()``.
- ``Cancelled(dialog, request)``: the peer cancelled the INVITE we had not answered yet (487 and
  200 were sent); for the initial INVITE ``Terminated("cancelled")`` follows.
- ``ReinviteFailed(dialog, status, response)``: our re-INVITE was refused; the session goes on
  unchanged (481 and 408 end it, RFC 5057). ``Glare(dialog, retry_at)``: it got 491 and goes out
  again at ``retry_at`` (§14.1: 2.1-4 s if we own the Call-ID, else 0-2 s, in 10 ms steps).
- ``ByeReceived(dialog, request)``; ``DialogRequest(dialog, key, request)``: another request in
  the dialog (INFO, OPTIONS, UPDATE, REFER ...), answer with ``respond(key, status, now)``;
  ``DialogResponse(dialog, request, response)``: the final response to a ``request()`` (None on
  timeout or transport failure).
- ``Terminated(reason)``: the session is over; always the TU's last event. ``reason`` is one of
  ``local-bye``, ``remote-bye``, ``rejected``, ``cancelled``, ``timeout``, ``gone`` (481),
  ``transport``. The session lingers (``finished`` False) while it still owes retransmissions or
  must answer 2xx retransmissions with their ACK.

A call, A calling B (the endpoints move the messages between their transaction layers)::

    a = InviteSession.uac(cfg_a, target=bob, from_=alice_addr, to=bob_addr, body=offer)
    a.start(now)                       -> [SendRequest(INVITE)]
    b = InviteSession.uas(cfg_b, key, invite)        # from B's RequestReceived
    b.start(now)                       -> [OfferReceived(dialog, offer, INVITE, initial=True)]
    b.provisional(180, now)            -> [SendResponse(key, 180)]
    a.receive(ResponseReceived(180))   -> [Ringing(early dialog, 180, None)]
    b.accept(answer, now)              -> [SendResponse(key, 200)]     # then on_timer resends it
    a.receive(ResponseReceived(200))   -> [SendAck(ACK), Answered(dialog, 200, answer)]
    b.receive(AckReceived(ACK))        -> [Confirmed(dialog, ACK)]
    a.reinvite(hold_offer, now)        -> [SendRequest(re-INVITE)]
    b.receive(RequestReceived(re-INVITE)) -> [OfferReceived(dialog, hold_offer, ..., initial=False)]
    b.accept(hold_answer, now)         -> [SendResponse(key2, 200)]
    a.receive(ResponseReceived(200))   -> [SendAck(ACK), AnswerReceived(dialog, hold_answer, 200)]
    b.receive(AckReceived(ACK))        -> [Confirmed(dialog, ACK)]
    a.bye(now)                         -> [SendRequest(BYE), Terminated("local-bye")]
    b.receive(RequestReceived(BYE))    -> [SendResponse(200), ByeReceived(dialog, BYE),
                                           Terminated("remote-bye")]

Rules the machine applies on its own:

- CANCEL only after a provisional response (§9.1): ``cancel()`` before one is held until it
  comes. A 2xx that wins the race with our CANCEL is acknowledged and the dialog ended with BYE;
  so is every 2xx from a second fork (§13.2.2.4) or for a session already over. Each 2xx
  received gets exactly one ACK (the same ACK for each retransmission of a 2xx); a 2xx carrying
  an offer gets its ACK when the TU answers with ``ack()``.
- The callee retransmits its 2xx from T1 doubling up to T2 until the ACK comes, for at most
  64*T1 (§13.3.1.4); its ``bye()`` before the ACK of the initial 2xx is held until the ACK or the
  timeout (§15).
- One INVITE transaction at a time in each dialog (§14): ``reinvite()`` while one is in progress
  in either direction waits its turn. An incoming re-INVITE while ours is pending gets 491 (glare);
  while an earlier one of the peer's still awaits our final response, 500 with Retry-After
  (§14.2); while our 2xx awaits its ACK, 491 (RFC 6337 §3.1: we may have an offer outstanding).
- Requests in a terminated dialog get 481; a CSeq below the remote sequence number gets 500
  (§12.2.2). A re-INVITE's Contact refreshes the remote target only when it succeeds (RFC 6141).

Session descriptions are opaque bytes here (``pbx.sip.offer_answer`` reads them); a body counts
as SDP when its Content-Type is ``application/sdp`` or absent. Offer/answer in UPDATE (RFC 3311)
and reliable provisional responses (RFC 3262) are not handled: UPDATE reaches the TU as a
``DialogRequest``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pbx.sip.address import Address
from pbx.sip.dialog import (
    TARGET_REFRESH,
    Dialog,
    create_cancel,
    create_response,
    request_dialog_id,
    route_request,
)
from pbx.sip.message import Headers, Request, Response
from pbx.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionTimeout,
    TransportFailed,
    TxKey,
)
from pbx.sip.uri import Uri
from pbx.sip.via import MAGIC_COOKIE, Via

__all__ = [
    "SDP",
    "AckTimeout",
    "AnswerReceived",
    "Answered",
    "ByeReceived",
    "Cancelled",
    "Confirmed",
    "DialogRequest",
    "DialogResponse",
    "Failed",
    "Glare",
    "InviteSession",
    "OfferReceived",
    "OfferRequested",
    "OfferState",
    "Output",
    "ReinviteFailed",
    "Ringing",
    "SendAck",
    "SendRequest",
    "SendResponse",
    "SessionConfig",
    "SessionState",
    "Terminated",
    "TerminationReason",
    "glare_delay",
]

SDP = "application/sdp"

TerminationReason = Literal["local-bye", "remote-bye", "rejected", "cancelled", "timeout", "gone",
                            "transport"]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a session needs from its user agent.

    ``via``: our Via (transport, sent-by, parameters such as ``rport``); each request gets its
    own branch. ``contact``: our Contact. ``ids()``: a fresh unique, unguessable token per call
    (tags, branches, Call-IDs). ``random()``: uniform in [0, 1) for the glare back-off and
    Retry-After. ``invite_headers``: added to our INVITEs and to our 1xx/2xx for INVITEs (Allow,
    Supported, User-Agent ...).
    """

    via: Via
    contact: Address
    ids: Callable[[], str]
    random: Callable[[], float]
    timers: Timers = field(default_factory=Timers)
    invite_headers: tuple[tuple[str, str], ...] = ()


class SessionState(enum.Enum):
    IDLE = "idle"              # created, start() not called yet
    CALLING = "calling"        # INVITE sent (UAC) or received (UAS), no early dialog yet
    EARLY = "early"            # a provisional response with a To tag went out or came in
    CONFIRMED = "confirmed"    # a 2xx went out or came in
    TERMINATED = "terminated"


class OfferState(enum.Enum):
    """Offer/answer (RFC 3264, RFC 6337): who owes an answer right now."""

    STABLE = "stable"              # no offer outstanding
    LOCAL_OFFER = "local-offer"    # we made an offer and wait for the answer
    REMOTE_OFFER = "remote-offer"  # the peer made an offer and we owe the answer


# Outputs: actions for the endpoint ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Start a client transaction for ``request`` towards ``next_hop`` (the URI to resolve,
    RFC 3263); its events come back to this session."""

    request: Request
    next_hop: Uri


@dataclass(frozen=True, slots=True)
class SendResponse:
    """``TransactionLayer.respond(key, response, now)``."""

    key: TxKey
    response: Response


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send this ACK for a 2xx to ``next_hop`` directly (no transaction)."""

    request: Request
    next_hop: Uri


# Outputs: events for the TU --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ringing:
    dialog: Dialog | None
    response: Response
    sdp: bytes | None

    @property
    def status(self) -> int:
        return self.response.status


@dataclass(frozen=True, slots=True)
class Answered:
    dialog: Dialog
    response: Response
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Failed:
    status: int
    response: Response | None


@dataclass(frozen=True, slots=True)
class OfferReceived:
    dialog: Dialog
    sdp: bytes
    message: Request | Response
    initial: bool


@dataclass(frozen=True, slots=True)
class OfferRequested:
    dialog: Dialog
    request: Request
    initial: bool


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    dialog: Dialog
    sdp: bytes | None
    message: Request | Response


@dataclass(frozen=True, slots=True)
class Confirmed:
    dialog: Dialog
    ack: Request


@dataclass(frozen=True, slots=True)
class AckTimeout:
    dialog: Dialog


@dataclass(frozen=True, slots=True)
class Cancelled:
    dialog: Dialog
    request: Request


@dataclass(frozen=True, slots=True)
class ReinviteFailed:
    dialog: Dialog
    status: int
    response: Response | None


@dataclass(frozen=True, slots=True)
class Glare:
    dialog: Dialog
    retry_at: float


@dataclass(frozen=True, slots=True)
class ByeReceived:
    dialog: Dialog
    request: Request


@dataclass(frozen=True, slots=True)
class DialogRequest:
    dialog: Dialog
    key: TxKey
    request: Request


@dataclass(frozen=True, slots=True)
class DialogResponse:
    dialog: Dialog
    request: Request
    response: Response | None


@dataclass(frozen=True, slots=True)
class Terminated:
    reason: TerminationReason


Output = (SendRequest | SendResponse | SendAck | Ringing | Answered | Failed | OfferReceived
          | OfferRequested | AnswerReceived | Confirmed | AckTimeout | Cancelled | ReinviteFailed
          | Glare | ByeReceived | DialogRequest | DialogResponse | Terminated)


def glare_delay(owner: bool, r: float) -> float:
    """The §14.1 wait before retrying a re-INVITE refused with 491, from ``r`` in [0, 1):
    2.1-4 s for the owner of the Call-ID (it generated it), 0-2 s otherwise, in 10 ms units."""
    r = min(max(r, 0.0), 1.0)
    if owner:
        return (210 + round(r * 190)) / 100
    return round(r * 200) / 100


def _sdp(message: Request | Response) -> bytes | None:
    if not message.body:
        return None
    ctype = message.content_type
    if ctype is not None and ctype != SDP:
        return None
    return message.body


# Internal state -------------------------------------------------------------------------------


@dataclass(slots=True)
class _OutInvite:
    """Our INVITE (initial or re-INVITE) until its final response."""

    request: Request
    initial: bool
    offer: bytes | None
    next_hop: Uri
    headers: tuple[tuple[str, str], ...] = ()
    provisional: bool = False
    cancel: Literal["pending", "sent"] | None = None


@dataclass(slots=True)
class _InInvite:
    """The peer's INVITE until we answer it, and then until its ACK if the answer was a 2xx."""

    key: TxKey
    request: Request
    initial: bool
    response: Response | None = None   # our 2xx, retransmitted until the ACK
    interval: float = 0.0
    next_send: float = 0.0
    give_up: float = 0.0


@dataclass(slots=True)
class _Ack:
    """The ACK for one 2xx (CSeq, To tag), sent again for each retransmission of that 2xx;
    None while it waits for the TU's answer to an offer in the 2xx."""

    request: Request | None
    expires: float
    dialog: Dialog


@dataclass(slots=True)
class _Queued:
    """A re-INVITE waiting for the INVITE transaction in progress, or for its glare back-off."""

    body: bytes | None
    headers: tuple[tuple[str, str], ...]
    not_before: float


class InviteSession:
    """One INVITE session; see the module docstring. Create it with ``uac()`` or ``uas()``."""

    def __init__(self, config: SessionConfig, role: Literal["uac", "uas"], call_id: str,
                 local_tag: str, invite: Request) -> None:
        self.config = config
        self.role: Literal["uac", "uas"] = role
        self.call_id = call_id
        self.local_tag = local_tag
        self.invite = invite                      # the initial INVITE, sent or received
        self.state = SessionState.IDLE
        self.offer_state = OfferState.STABLE
        self.reason: TerminationReason | None = None
        self.dialog: Dialog | None = None         # the session's dialog (UAC: latest early one)
        self.early: dict[str, Dialog] = {}        # UAC: early dialogs by remote tag
        self._out: _OutInvite | None = None
        self._in: _InInvite | None = None
        self._acks: dict[tuple[int, str], _Ack] = {}
        self._ack_wait: tuple[int, str] | None = None   # the _acks entry awaiting ack()
        self._early_sdp: dict[str, bytes] = {}
        self._forks: dict[str, Dialog] = {}       # UAC: dialogs of 2xx we ACKed and ended
        self._queued: _Queued | None = None
        self._bye_pending = False
        self._invite_branches: set[str] = set()   # UAS: branches of the peer's INVITEs
        self._requests: dict[tuple[str, str], tuple[Request, Dialog]] = {}
        self._incoming: dict[TxKey, tuple[Request, Dialog]] = {}

    # Creation ---------------------------------------------------------------------------------
    @classmethod
    def uac(cls, config: SessionConfig, *, target: Uri, from_: Address, to: Address,
            body: bytes | None = None, content_type: str = SDP,
            headers: Iterable[tuple[str, str]] = (), route: Sequence[Address] = (),
            call_id: str | None = None, cseq: int = 1) -> InviteSession:
        """A call to ``target`` (the Request-URI); ``route`` is a preloaded route set (an
        outbound proxy). ``body`` is our offer; without one the 2xx brings the peer's offer.
        Nothing is sent before ``start()``."""
        if to.tag:
            raise ValueError("the To of an initial INVITE has no tag")
        if not 1 <= cseq < 2**31:
            raise ValueError("the initial CSeq must be below 2**31")
        local_tag = from_.tag or config.ids()
        call_id = call_id or config.ids()
        uri, routes = route_request(target, route)
        h = Headers()
        h.add("Via", str(_via(config.via, MAGIC_COOKIE + config.ids())))
        for r in routes:
            h.add("Route", str(r))
        h.add("Max-Forwards", "70")
        h.add("From", str(from_.with_tag(local_tag)))
        h.add("To", str(to))
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} INVITE")
        h.add("Contact", str(config.contact))
        extra = tuple(headers)
        for name, value in (*config.invite_headers, *extra):
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type)
        invite = Request("INVITE", uri, h, body or b"")
        session = cls(config, "uac", call_id, local_tag, invite)
        next_hop = route[0].uri if route else target
        session._out = _OutInvite(invite, initial=True, offer=body or None, next_hop=next_hop,
                                  headers=extra)
        return session

    @classmethod
    def uas(cls, config: SessionConfig, key: TxKey, invite: Request) -> InviteSession:
        """The callee's session for a new INVITE (``RequestReceived(key, invite)`` without a To
        tag). ``start()`` reports the offer; then answer with ``provisional``/``accept``/``reject``."""
        if invite.method != "INVITE" or invite.to.tag:
            raise ValueError("not an initial INVITE")
        local_tag = config.ids()
        session = cls(config, "uas", invite.call_id, local_tag, invite)
        session.dialog = Dialog.from_uas(invite, local_tag, config.contact)
        session._in = _InInvite(key, invite, initial=True)
        session._invite_branches.add(invite.branch)
        return session

    def start(self, now: float) -> list[Output]:
        """UAC: send the INVITE. UAS: report the peer's offer (or its absence)."""
        if self.state is not SessionState.IDLE:
            raise ValueError("start() was called already")
        self.state = SessionState.CALLING
        if self.role == "uac":
            assert self._out is not None
            self.offer_state = (OfferState.LOCAL_OFFER if self._out.offer is not None
                                else OfferState.STABLE)
            return [SendRequest(self.invite, self._out.next_hop)]
        assert self.dialog is not None and self._in is not None
        return [self._offer_event(self.dialog, self._in.request, initial=True)]

    # Introspection ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Terminated and owing nothing more: the endpoint may forget the session."""
        return (self.state is SessionState.TERMINATED and self._in is None and self._out is None
                and not self._acks and not self._bye_pending)

    @property
    def owns_call_id(self) -> bool:
        return self.role == "uac"

    def next_deadline(self) -> float | None:
        """When ``on_timer`` should next be called, or None."""
        times: list[float] = []
        inv = self._in
        if inv is not None and inv.response is not None:
            times.append(min(inv.next_send, inv.give_up))
        for key, ack in self._acks.items():
            if key != self._ack_wait:
                times.append(ack.expires)
        q = self._queued
        if q is not None and self.state is SessionState.CONFIRMED and not self._busy():
            times.append(q.not_before)
        return min(times) if times else None

    def on_timer(self, now: float) -> list[Output]:
        """2xx retransmission and the ACK timeout, the glare back-off, ACK cache expiry."""
        out: list[Output] = []
        inv = self._in
        t = self.config.timers
        if inv is not None and inv.response is not None:
            if now >= inv.give_up:
                self._in = None
                if self.offer_state is OfferState.LOCAL_OFFER:
                    self.offer_state = OfferState.STABLE
                if self._bye_pending:
                    self._bye_pending = False
                    out += self._send_bye(self._dialog(), now)
                elif self.state is not SessionState.TERMINATED:
                    out.append(AckTimeout(self._dialog()))
            elif now >= inv.next_send:
                out.append(SendResponse(inv.key, inv.response))
                inv.interval = min(2 * inv.interval, t.t2)
                inv.next_send = now + inv.interval
        for key, ack in list(self._acks.items()):
            if ack.expires <= now and key != self._ack_wait:
                del self._acks[key]
        out += self._pump(now)
        return out

    # Transaction events ---------------------------------------------------------------------
    def receive(self, event: Event, now: float) -> list[Output]:
        """A transaction event the endpoint matched to this session: a request in one of its
        dialogs (or a CANCEL of its INVITE), an ACK, a response (stray 2xx included), a
        timeout or transport failure of one of its transactions."""
        if isinstance(event, RequestReceived):
            return self._on_request(event.key, event.request, now)
        if isinstance(event, AckReceived):
            return self._on_ack(event.request, now)
        if isinstance(event, ResponseReceived | StrayResponse):
            return self._on_response(event.response, now)
        if isinstance(event, TransactionTimeout):
            return self._on_failure(event.key, now, timeout=True)
        if isinstance(event, TransportFailed):
            return self._on_failure(event.key, now, timeout=False)
        return []

    # TU: callee side ----------------------------------------------------------------------------
    def provisional(self, status: int, now: float, *, body: bytes | None = None,
                    headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """A 101-199 response to the peer's pending INVITE (180 ringing, 183 with early media
        SDP ...). Does nothing when no INVITE awaits an answer (it was cancelled)."""
        if not 100 < status < 200:
            raise ValueError(f"{status} is not a provisional status above 100")
        inv = self._in
        if inv is None or inv.response is not None:
            return []
        resp = self._invite_response(inv, status, body=body, headers=headers)
        if inv.initial and self.state is SessionState.CALLING:
            self.state = SessionState.EARLY
        return [SendResponse(inv.key, resp)]

    def accept(self, body: bytes, now: float, *, status: int = 200,
               headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """Answer the peer's pending INVITE or re-INVITE with a 2xx carrying ``body``: the
        answer to its offer, or our offer if it made none (the answer then comes in the ACK).
        Does nothing when no INVITE awaits an answer (it was cancelled, the session ended)."""
        if not 200 <= status < 300:
            raise ValueError(f"{status} is not a 2xx")
        if not body:
            raise ValueError("a 2xx to an INVITE carries the answer, or an offer")
        inv = self._in
        if inv is None or inv.response is not None:
            return []
        dialog = self._dialog()
        resp = self._invite_response(inv, status, body=body, headers=headers)
        t = self.config.timers
        inv.response = resp
        inv.interval = t.t1
        inv.next_send = now + t.t1
        inv.give_up = now + t.timeout
        self.offer_state = (OfferState.STABLE if self.offer_state is OfferState.REMOTE_OFFER
                            else OfferState.LOCAL_OFFER)
        if inv.initial:
            dialog.confirm()
            self.state = SessionState.CONFIRMED
        else:
            dialog.refresh_target(inv.request)
        return [SendResponse(inv.key, resp)]

    def reject(self, status: int, now: float, *, reason: str | None = None,
               headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """Refuse the peer's pending INVITE (3xx-6xx). For the initial INVITE the session ends;
        for a re-INVITE it goes on unchanged. Does nothing when no INVITE awaits an answer."""
        if not 300 <= status < 700:
            raise ValueError(f"{status} is not a final non-2xx status")
        inv = self._in
        if inv is None or inv.response is not None:
            return []
        resp = create_response(inv.request, status, reason, to_tag=self.local_tag,
                               headers=headers)
        self._in = None
        self.offer_state = OfferState.STABLE
        out: list[Output] = [SendResponse(inv.key, resp)]
        if inv.initial:
            out += self._terminate("rejected", now)
        else:
            out += self._pump(now)
        return out

    # TU: caller side ----------------------------------------------------------------------------
    def cancel(self, now: float) -> list[Output]:
        """Give up our pending INVITE or re-INVITE (§9): CANCEL now if a provisional response
        came, else as soon as one does. The initial INVITE then ends with ``Failed(487)``, a
        re-INVITE with ``ReinviteFailed(487)`` (or succeeds, if its 2xx won the race). Does
        nothing once the final response came: ``bye()`` an answered call."""
        inv = self._out
        if self.state is SessionState.TERMINATED or inv is None:
            return []
        if inv.cancel is not None:
            return []
        if self.state is SessionState.IDLE:
            self._out = None
            return self._terminate("cancelled", now)
        if inv.provisional:
            inv.cancel = "sent"
            return [SendRequest(create_cancel(inv.request), inv.next_hop)]
        inv.cancel = "pending"
        return []

    def ack(self, body: bytes, now: float) -> list[Output]:
        """Answer the offer a 2xx brought (``OfferReceived`` with a response): the ACK carries
        the answer. Does nothing when no such ACK is due."""
        key = self._ack_wait
        if key is None:
            return []
        entry = self._acks[key]
        self._ack_wait = None
        ack = self._make_ack(entry.dialog, key[0], body)
        entry.request = ack
        entry.expires = now + self.config.timers.timeout
        self.offer_state = OfferState.STABLE
        return [SendAck(ack, entry.dialog.next_hop), *self._pump(now)]

    # TU: either side ---------------------------------------------------------------------------
    def reinvite(self, body: bytes | None, now: float, *,
                 headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """Send a re-INVITE (hold, resume, codec change) with ``body`` as our offer, or none to
        ask for the peer's. Waits while an INVITE transaction is in progress in either
        direction (a waiting one is replaced). Does nothing once the session ended."""
        if self.state is SessionState.TERMINATED:
            return []
        if self.state is not SessionState.CONFIRMED:
            raise ValueError("a re-INVITE needs a confirmed dialog")
        q = self._queued
        if q is not None:
            q.body = body
            q.headers = tuple(headers)
        else:
            self._queued = _Queued(body, tuple(headers), now)
        return self._pump(now)

    def bye(self, now: float, *, headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """End a confirmed session: BYE, and the session is over at once (§15.1.1). The callee's
        BYE waits for the ACK of its 2xx (§15). Does nothing once the session ended."""
        if self.state is SessionState.TERMINATED:
            return []
        dialog = self.dialog
        inv = self._in
        if inv is not None and inv.initial:
            if inv.response is None:
                raise ValueError("the call is not answered: reject() it")
            self._bye_pending = True
            return self._terminate("local-bye", now)
        if dialog is None or not dialog.confirmed:
            raise ValueError("no confirmed dialog: cancel() the INVITE")
        out = self._flush_ack(now)            # a 2xx still owed its ACK gets it first
        if inv is not None:
            if inv.response is None:
                out.append(SendResponse(inv.key, create_response(
                    inv.request, 487, to_tag=self.local_tag)))
            self._in = None
        out += self._send_bye(dialog, now, headers)
        out += self._terminate("local-bye", now)
        return out

    def hangup(self, now: float) -> list[Output]:
        """Whatever ends the session from here: CANCEL, 480 to an unanswered call, or BYE."""
        if self.state is SessionState.TERMINATED:
            return []
        if self.role == "uac" and self._out is not None and self._out.initial:
            return self.cancel(now)
        inv = self._in
        if inv is not None and inv.initial and inv.response is None:
            return self.reject(480, now)
        return self.bye(now)

    def request(self, method: str, now: float, *, body: bytes | None = None,
                content_type: str | None = None,
                headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """Another request in the dialog (INFO, OPTIONS, UPDATE, REFER, MESSAGE ...); its final
        response comes back as ``DialogResponse``."""
        if method in ("INVITE", "ACK", "CANCEL", "BYE"):
            raise ValueError(f"use the session's own call for {method}")
        dialog = self.dialog
        if self.state is SessionState.TERMINATED or dialog is None or dialog.terminated:
            return []
        req = dialog.create_request(method, via=self.config.via, branch=self._branch(),
                                    body=body or b"", content_type=content_type,
                                    headers=headers)
        self._requests[(req.branch, method)] = (req, dialog)
        return [SendRequest(req, dialog.next_hop)]

    def respond(self, key: TxKey, status: int, now: float, *, reason: str | None = None,
                body: bytes = b"", content_type: str | None = None,
                headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        """Answer a ``DialogRequest``. A 2xx to a target refresh request (UPDATE ...) takes its
        Contact as the new remote target and carries ours."""
        entry = self._incoming.get(key)
        if entry is None:
            raise ValueError("no such request awaits an answer")
        req, dialog = entry
        if status >= 200:
            del self._incoming[key]
        refresh = req.method in TARGET_REFRESH and 100 < status < 300
        if refresh and status >= 200:
            dialog.refresh_target(req)
        resp = create_response(req, status, reason,
                               contact=self._contact() if refresh else None,
                               body=body, content_type=content_type, headers=headers)
        return [SendResponse(key, resp)]

    # Incoming requests --------------------------------------------------------------------------
    def _on_request(self, key: TxKey, req: Request, now: float) -> list[Output]:
        method = req.method
        if method == "CANCEL":
            return self._on_cancel(key, req, now)
        dialog = self._dialog_for(req)
        if dialog is None:
            return [self._reply(key, req, 481)]
        if self.state is SessionState.TERMINATED or dialog.terminated:
            if method == "BYE" and self._bye_pending and dialog is self.dialog:
                # The caller hangs up while our own BYE waits for its ACK: nothing left to do.
                self._bye_pending = False
                self._in = None
                return [self._reply(key, req, 200)]
            return [self._reply(key, req, 481)]
        status = dialog.receive_request(req)
        if status is not None:
            return [self._reply(key, req, status)]
        if method == "BYE":
            return self._on_bye(dialog, key, req, now)
        if method == "INVITE":
            return self._on_reinvite(dialog, key, req, now)
        self._incoming[key] = (req, dialog)
        return [DialogRequest(dialog, key, req)]

    def _on_cancel(self, key: TxKey, req: Request, now: float) -> list[Output]:
        inv = self._in
        if inv is not None and inv.response is None and req.branch == inv.request.branch:
            out: list[Output] = [self._reply(key, req, 200)]
            out.append(SendResponse(inv.key, create_response(inv.request, 487,
                                                             to_tag=self.local_tag)))
            self._in = None
            self.offer_state = OfferState.STABLE
            dialog = self._dialog()
            out.append(Cancelled(dialog, inv.request))
            if inv.initial:
                out += self._terminate("cancelled", now)
            else:
                out += self._pump(now)
            return out
        # Our final response went out already: the CANCEL has no effect (§9.2).
        return [self._reply(key, req, 200 if req.branch in self._invite_branches else 481)]

    def _on_bye(self, dialog: Dialog, key: TxKey, req: Request, now: float) -> list[Output]:
        out: list[Output] = [self._reply(key, req, 200)]
        if self.role == "uac" and dialog.early and self._out is not None:
            # A callee must not BYE an early dialog; if one does, only that dialog ends.
            dialog.terminate()
            self.early.pop(dialog.remote_tag, None)
            if self.dialog is dialog:
                self.dialog = next(iter(self.early.values()), dialog)
            return out
        inv = self._in
        if inv is not None:
            if inv.response is None:  # §15.1.2: pending requests are answered 487
                out.append(SendResponse(inv.key, create_response(inv.request, 487,
                                                                 to_tag=self.local_tag)))
            self._in = None
        self.dialog = dialog
        out.append(ByeReceived(dialog, req))
        out += self._terminate("remote-bye", now)
        return out

    def _on_reinvite(self, dialog: Dialog, key: TxKey, req: Request, now: float) -> list[Output]:
        self._invite_branches.add(req.branch)
        if self._out is not None or self._ack_wait is not None:
            return [self._reply(key, req, 491)]          # glare: our INVITE is in progress
        inv = self._in
        if inv is not None:
            if inv.response is None:                     # §14.2: theirs still unanswered
                retry = min(10, int(self.config.random() * 11))
                return [self._reply(key, req, 500, headers=[("Retry-After", str(retry))])]
            return [self._reply(key, req, 491)]          # our 2xx awaits its ACK
        if not dialog.confirmed:
            return [self._reply(key, req, 491)]
        self._in = _InInvite(key, req, initial=False)
        return [self._offer_event(dialog, req, initial=False)]

    def _on_ack(self, ack: Request, now: float) -> list[Output]:
        inv = self._in
        if (inv is None or inv.response is None or ack.cseq.seq != inv.request.cseq.seq
                or request_dialog_id(ack) != self._dialog().id):
            return []  # a retransmitted or late ACK
        self._in = None
        dialog = self._dialog()
        out: list[Output] = []
        if self.offer_state is OfferState.LOCAL_OFFER:
            self.offer_state = OfferState.STABLE
            out.append(AnswerReceived(dialog, _sdp(ack), ack))
        if self._bye_pending:
            self._bye_pending = False
            out += self._send_bye(dialog, now)
        elif self.state is not SessionState.TERMINATED:
            out.append(Confirmed(dialog, ack))
        out += self._pump(now)
        return out

    # Incoming responses -------------------------------------------------------------------------
    def _on_response(self, resp: Response, now: float) -> list[Output]:
        method = resp.cseq.method
        if method == "INVITE":
            if 200 <= resp.status < 300:
                return self._on_invite_2xx(resp, now)
            inv = self._out
            if inv is None or resp.branch != inv.request.branch:
                return []
            if resp.status < 200:
                return self._on_invite_provisional(inv, resp, now)
            return self._on_invite_failure(inv, resp.status, resp, now, "rejected")
        entry = self._requests.get((resp.branch, method))
        if entry is None or resp.status < 200:
            return []  # BYE and CANCEL responses, provisional responses
        del self._requests[(resp.branch, method)]
        req, dialog = entry
        dialog.receive_response(resp)
        return [DialogResponse(dialog, req, resp)]

    def _on_invite_provisional(self, inv: _OutInvite, resp: Response,
                               now: float) -> list[Output]:
        out: list[Output] = []
        if not inv.provisional:
            inv.provisional = True
            if inv.cancel == "pending":
                inv.cancel = "sent"
                out.append(SendRequest(create_cancel(inv.request), inv.next_hop))
        if not inv.initial or resp.status == 100:
            return out
        tag = resp.to.tag
        dialog: Dialog | None = None
        if tag:
            dialog = self.early.get(tag)
            if dialog is None:
                dialog = Dialog.from_uac(inv.request, resp)
                self.early[tag] = dialog
            self.dialog = dialog
            if self.state is SessionState.CALLING:
                self.state = SessionState.EARLY
        sdp = _sdp(resp)
        if sdp is not None and tag:
            self._early_sdp[tag] = sdp
        if inv.cancel is None:
            out.append(Ringing(dialog, resp, sdp))
        return out

    def _on_invite_failure(self, inv: _OutInvite, status: int, resp: Response | None,
                           now: float, reason: TerminationReason) -> list[Output]:
        self._out = None
        self.offer_state = OfferState.STABLE
        if inv.initial:
            for d in self.early.values():
                d.terminate()
            self.early.clear()
            if inv.cancel is not None:
                reason = "cancelled"
            return [Failed(status, resp), *self._terminate(reason, now)]
        if self.state is SessionState.TERMINATED:
            return []
        dialog = self._dialog()
        if status == 491:
            retry_at = now + glare_delay(self.owns_call_id, self.config.random())
            q = self._queued
            if q is None:
                self._queued = _Queued(inv.offer, inv.headers, retry_at)
            else:
                q.not_before = max(q.not_before, retry_at)
            return [Glare(dialog, retry_at), *self._pump(now)]
        out: list[Output] = [ReinviteFailed(dialog, status, resp)]
        # 481 and 408 (or no response at all) end the dialog (§12.2.1.2, RFC 5057).
        if status == 481:
            return out + self._terminate("gone", now)
        if reason == "transport":
            return out + self._terminate("transport", now)
        if status == 408 or resp is None:
            return out + self._send_bye(dialog, now) + self._terminate("timeout", now)
        return out + self._pump(now)

    def _on_invite_2xx(self, resp: Response, now: float) -> list[Output]:
        seq = resp.cseq.seq
        tag = resp.to.tag or ""
        entry = self._acks.get((seq, tag))
        if entry is not None:  # a retransmission: the same ACK again
            entry.expires = now + self.config.timers.timeout
            if entry.request is None:
                return []
            return [SendAck(entry.request, entry.dialog.next_hop)]
        if not tag:
            return []  # a 2xx without a To tag cannot make a dialog
        inv = self._out
        if inv is not None and seq == inv.request.cseq.seq:
            if inv.initial:
                return self._on_initial_2xx(inv, resp, tag, now)
            if self.dialog is not None and tag == self.dialog.remote_tag:
                return self._on_reinvite_2xx(inv, resp, tag, now)
            return []
        if self.role == "uac" and seq == self.invite.cseq.seq \
                and resp.from_.tag == self.local_tag:
            return self._discard(resp, tag, now)
        return []

    def _on_initial_2xx(self, inv: _OutInvite, resp: Response, tag: str,
                        now: float) -> list[Output]:
        self._out = None
        seq = resp.cseq.seq
        dialog = self.early.pop(tag, None)
        if dialog is None:
            dialog = Dialog.from_uac(inv.request, resp)
        else:
            dialog.confirm(resp)
        for other in self.early.values():
            other.terminate()
        self.early.clear()
        self.dialog = dialog
        self.state = SessionState.CONFIRMED
        sdp = _sdp(resp)
        timeout = now + self.config.timers.timeout
        out: list[Output] = []
        if inv.cancel is not None:
            # The 2xx won the race with our CANCEL: acknowledge it and hang up at once.
            ack = self._make_ack(dialog, seq, None)
            self._acks[(seq, tag)] = _Ack(ack, timeout, dialog)
            out.append(SendAck(ack, dialog.next_hop))
            out += self._send_bye(dialog, now)
            return out + self._terminate("cancelled", now)
        if inv.offer is not None:
            answer = sdp if sdp is not None else self._early_sdp.get(tag)
            self.offer_state = OfferState.STABLE
            ack = self._make_ack(dialog, seq, None)
            self._acks[(seq, tag)] = _Ack(ack, timeout, dialog)
            return [SendAck(ack, dialog.next_hop), Answered(dialog, resp, answer),
                    *self._pump(now)]
        if sdp is None:  # no offer either way: nothing to negotiate
            ack = self._make_ack(dialog, seq, None)
            self._acks[(seq, tag)] = _Ack(ack, timeout, dialog)
            return [SendAck(ack, dialog.next_hop), Answered(dialog, resp, None),
                    *self._pump(now)]
        self.offer_state = OfferState.REMOTE_OFFER
        self._acks[(seq, tag)] = _Ack(None, timeout, dialog)
        self._ack_wait = (seq, tag)
        return [Answered(dialog, resp, None), OfferReceived(dialog, sdp, resp, initial=True)]

    def _on_reinvite_2xx(self, inv: _OutInvite, resp: Response, tag: str,
                         now: float) -> list[Output]:
        self._out = None
        seq = resp.cseq.seq
        dialog = self._dialog()
        dialog.receive_response(resp)
        sdp = _sdp(resp)
        timeout = now + self.config.timers.timeout
        if self.state is SessionState.TERMINATED or inv.offer is not None or sdp is None:
            ack = self._make_ack(dialog, seq, None)
            self._acks[(seq, tag)] = _Ack(ack, timeout, dialog)
            out: list[Output] = [SendAck(ack, dialog.next_hop)]
            if self.state is SessionState.TERMINATED:
                return out
            self.offer_state = OfferState.STABLE
            return [*out, AnswerReceived(dialog, sdp, resp), *self._pump(now)]
        self.offer_state = OfferState.REMOTE_OFFER
        self._acks[(seq, tag)] = _Ack(None, timeout, dialog)
        self._ack_wait = (seq, tag)
        return [OfferReceived(dialog, sdp, resp, initial=False)]

    def _discard(self, resp: Response, tag: str, now: float) -> list[Output]:
        """A 2xx to our initial INVITE that is not the session's: another fork's, or one that
        came after the session ended. Acknowledge it and end its dialog (§13.2.2.4)."""
        dialog = Dialog.from_uac(self.invite, resp)
        ack = self._make_ack(dialog, resp.cseq.seq, None)
        self._acks[(resp.cseq.seq, tag)] = _Ack(ack, now + self.config.timers.timeout, dialog)
        bye = self._send_bye(dialog, now)
        self._forks[tag] = dialog
        return [SendAck(ack, dialog.next_hop), *bye]

    def _on_failure(self, key: TxKey, now: float, *, timeout: bool) -> list[Output]:
        if key.role == "server":
            return []  # no ACK for a non-2xx final, or a response we could not deliver
        if key.method == "INVITE":
            inv = self._out
            if inv is None or key.branch != inv.request.branch:
                return []
            return self._on_invite_failure(inv, 408 if timeout else 503, None, now,
                                           "timeout" if timeout else "transport")
        entry = self._requests.pop((key.branch, key.method), None)
        if entry is None:
            return []
        return [DialogResponse(entry[1], entry[0], None)]

    # Helpers ------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        """An INVITE transaction is in progress in either direction (§14.1)."""
        return self._out is not None or self._in is not None or self._ack_wait is not None

    def _pump(self, now: float) -> list[Output]:
        q = self._queued
        if (q is None or self.state is not SessionState.CONFIRMED or self._busy()
                or now < q.not_before):
            return []
        self._queued = None
        dialog = self._dialog()
        req = dialog.create_request("INVITE", via=self.config.via, branch=self._branch(),
                                    body=q.body or b"", content_type=SDP,
                                    headers=(*self.config.invite_headers, *q.headers))
        self._out = _OutInvite(req, initial=False, offer=q.body or None,
                               next_hop=dialog.next_hop, headers=q.headers)
        self.offer_state = OfferState.LOCAL_OFFER if q.body else OfferState.STABLE
        return [SendRequest(req, dialog.next_hop)]

    def _flush_ack(self, now: float) -> list[Output]:
        """A 2xx whose offer the TU has not answered still gets its ACK (without an answer)
        when the session ends: every 2xx is acknowledged."""
        key = self._ack_wait
        if key is None:
            return []
        entry = self._acks[key]
        entry.request = self._make_ack(entry.dialog, key[0], None)
        entry.expires = now + self.config.timers.timeout
        self._ack_wait = None
        return [SendAck(entry.request, entry.dialog.next_hop)]

    def _terminate(self, reason: TerminationReason, now: float) -> list[Output]:
        out = self._flush_ack(now)
        self.state = SessionState.TERMINATED
        self.offer_state = OfferState.STABLE
        self.reason = reason
        self._queued = None
        if self.dialog is not None:
            self.dialog.terminate()
        for d in self.early.values():
            d.terminate()
        out.append(Terminated(reason))
        return out

    def _send_bye(self, dialog: Dialog, now: float,
                  headers: Iterable[tuple[str, str]] = ()) -> list[Output]:
        bye = dialog.create_request("BYE", via=self.config.via, branch=self._branch(),
                                    headers=headers)
        dialog.terminate()
        return [SendRequest(bye, dialog.next_hop)]

    def _make_ack(self, dialog: Dialog, seq: int, body: bytes | None) -> Request:
        return dialog.create_request("ACK", via=self.config.via, branch=self._branch(),
                                     cseq=seq, body=body or b"", content_type=SDP)

    def _invite_response(self, inv: _InInvite, status: int, *, body: bytes | None,
                         headers: Iterable[tuple[str, str]]) -> Response:
        return create_response(inv.request, status, to_tag=self.local_tag,
                               contact=self._contact(), body=body or b"",
                               content_type=SDP,
                               headers=(*self.config.invite_headers, *headers))

    def _reply(self, key: TxKey, req: Request, status: int,
               headers: Iterable[tuple[str, str]] = ()) -> SendResponse:
        return SendResponse(key, create_response(req, status, to_tag=self.local_tag,
                                                 headers=headers))

    def _offer_event(self, dialog: Dialog, req: Request, *,
                     initial: bool) -> OfferReceived | OfferRequested:
        sdp = _sdp(req)
        if sdp is None:
            self.offer_state = OfferState.STABLE
            return OfferRequested(dialog, req, initial)
        self.offer_state = OfferState.REMOTE_OFFER
        return OfferReceived(dialog, sdp, req, initial)

    def _dialog_for(self, req: Request) -> Dialog | None:
        did = request_dialog_id(req)
        if did is None or did.call_id != self.call_id or did.local_tag != self.local_tag:
            return None
        if self.dialog is not None and self.dialog.remote_tag == did.remote_tag:
            return self.dialog
        return self.early.get(did.remote_tag) or self._forks.get(did.remote_tag)

    def _contact(self) -> Address:
        """Our Contact: the dialog's local target (the TU may move it), else the config's."""
        dialog = self.dialog
        if dialog is not None and dialog.local_target is not None:
            return dialog.local_target
        return self.config.contact

    def _dialog(self) -> Dialog:
        dialog = self.dialog
        assert dialog is not None
        return dialog

    def _branch(self) -> str:
        return MAGIC_COOKIE + self.config.ids()

    def __repr__(self) -> str:
        return (f"<InviteSession {self.role} {self.call_id} {self.state.value} "
                f"offer={self.offer_state.value}>")


def _via(template: Via, branch: str) -> Via:
    params: dict[str, str | None] = {"branch": branch}
    params.update((k, v) for k, v in template.params.items() if k != "branch")
    return Via(template.transport, template.host, template.port, params, template.protocol)

