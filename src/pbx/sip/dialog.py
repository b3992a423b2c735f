"""SIP dialogs (RFC 3261 §12) as plain state: identity, sequence numbers, route set, targets.

A ``Dialog`` is the peer-to-peer relationship an INVITE (or another dialog-creating request)
sets up. It knows nothing of transactions or time; the INVITE usage (``pbx.sip.invite``) and the
endpoint drive it:

- ``Dialog.from_uac(request, response)``: the caller's side, from a 1xx with a To tag (early) or
  a 2xx (confirmed). A forked INVITE yields one early dialog per remote tag; ``confirm(response)``
  recomputes the route set and remote target from the 2xx (§13.2.2.4).
- ``Dialog.from_uas(request, local_tag, local_contact)``: the callee's side; ``confirm()`` when
  the 2xx goes out.
- ``create_request(method, via=..., branch=...)`` builds a request within the dialog (§12.2.1.1):
  Request-URI and Route from the remote target and route set (loose or strict routing), From and
  To with both tags, Call-ID, CSeq (incremented, except for ACK which repeats the INVITE's),
  Max-Forwards, Contact on target refresh requests, and a Via with the branch the caller drew from
  its id source. CANCEL is not an in-dialog request: ``create_cancel(invite)`` builds it (§9.1).
  ``next_hop`` is the URI to resolve for sending: the message alone cannot tell, since with a
  strict first route the top Route header is not the next hop.
- ``receive_request(request)`` applies §12.2.2: a CSeq lower than the remote sequence number is
  answered 500, otherwise it becomes the remote sequence number (ACK and CANCEL are exempt).
  ``refresh_target(message)`` replaces the remote target from a Contact; the INVITE usage calls it
  when a target refresh request succeeds (its 2xx is sent or received, RFC 6141), and
  ``receive_response`` does it for a 2xx to our own target refresh request (§12.2.1.2).
- ``request_dialog_id`` / ``response_dialog_id`` give the id of the dialog an incoming message
  belongs to, seen from the receiving side, for the endpoint's lookup table.

Route sets are kept as parsed addresses with their URI parameters, so a strict router (a first
route without ``lr``) is recognised and handled as §12.2.1.1 describes: its URI becomes the
Request-URI (without the parameters a Request-URI may not carry) and the remote target goes last
in the Route header.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pbx.sip.address import Address, parse_address
from pbx.sip.message import Headers, Request, Response
from pbx.sip.uri import SipUri, Uri
from pbx.sip.via import MAGIC_COOKIE, Via

__all__ = [
    "DIALOG_CREATING",
    "TARGET_REFRESH",
    "Dialog",
    "DialogId",
    "DialogState",
    "create_cancel",
    "create_response",
    "request_dialog_id",
    "response_dialog_id",
    "route_request",
]

# Methods whose requests, and whose 2xx, carry a Contact that replaces the remote target
# (RFC 3261 §12.2; RFC 3311 UPDATE; RFC 6665 SUBSCRIBE/NOTIFY; RFC 3515 REFER).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Methods that create a dialog outside of one (RFC 3261 §12.1; RFC 6665; RFC 3515).
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
MAX_INITIAL_CSEQ = 2**31 - 1  # §8.1.1.5: the first CSeq of a dialog is below 2**31


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogId(NamedTuple):
    """Call-ID and the two tags, seen from one side: ours (local) and the peer's (remote)."""

    call_id: str
    local_tag: str
    remote_tag: str


def request_dialog_id(request: Request) -> DialogId | None:
    """The id of the dialog an incoming request belongs to (we are its UAS: our tag is in To),
    or None for a request outside any dialog (no To tag). A missing From tag (RFC 2543 peers)
    reads as the empty string."""
    to_tag = request.to.tag
    if not to_tag:
        return None
    return DialogId(request.call_id, to_tag, request.from_.tag or "")


def response_dialog_id(response: Response) -> DialogId | None:
    """The id of the dialog an incoming response belongs to (we sent the request: our tag is
    in From), or None when the response has no To tag (a 100, or a broken peer)."""
    to_tag = response.to.tag
    if not to_tag:
        return None
    return DialogId(response.call_id, response.from_.tag or "", to_tag)


def _untagged(address: Address) -> Address:
    """``address`` without its tag (the dialog keeps tags apart), with a private URI copy."""
    params = {k: v for k, v in address.params.items() if k != "tag"}
    uri = address.uri.copy() if isinstance(address.uri, SipUri) else address.uri
    return Address(uri, address.display, params)


def _tagged(address: Address, tag: str) -> str:
    return str(address.with_tag(tag)) if tag else str(address)


def _copy_uri(uri: Uri) -> Uri:
    return uri.copy() if isinstance(uri, SipUri) else uri


def _is_loose(route: Address) -> bool:
    uri = route.uri
    return isinstance(uri, SipUri) and "lr" in uri.params


def route_request(target: Uri, route_set: Sequence[Address]) -> tuple[Uri, list[Address]]:
    """Request-URI and Route values for a request to ``target`` through ``route_set``
    (§12.2.1.1, and §8.1.2 for a preloaded route).

    Empty route set: the target, no Route. First route loose (``lr``): the target, the whole
    route set. First route strict: that route's URI is the Request-URI (with the ``method``
    parameter and any headers removed, which a Request-URI may not carry, §19.1.1), the rest of
    the route set follows, and the target goes last.
    """
    if not route_set:
        return _copy_uri(target), []
    first = route_set[0]
    if _is_loose(first):
        return _copy_uri(target), [_copy_address(r) for r in route_set]
    uri = _copy_uri(first.uri)
    if isinstance(uri, SipUri):
        uri.params.pop("method", None)
        uri.headers.clear()
    routes = [_copy_address(r) for r in route_set[1:]]
    routes.append(Address(_copy_uri(target)))
    return uri, routes


def _copy_address(address: Address) -> Address:
    return Address(_copy_uri(address.uri), address.display, dict(address.params))


def _first_contact(message: Request | Response) -> Address | None:
    contacts = message.contacts
    return contacts[0] if contacts else None


@dataclass(slots=True, eq=False)
class Dialog:
    """The state of one dialog (§12): see the module docstring.

    ``local_address``/``remote_address`` are the From/To values without tags (their URIs are the
    dialog's local and remote URIs); ``local_target`` is our Contact, sent in target refresh
    requests; ``local_cseq``/``remote_cseq`` are None while empty.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_address: Address
    remote_address: Address
    remote_target: Uri
    role: Literal["uac", "uas"]
    route_set: list[Address] = field(default_factory=list)
    local_cseq: int | None = None
    remote_cseq: int | None = None
    local_target: Address | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY

    # Creation ---------------------------------------------------------------------------------
    @classmethod
    def from_uac(cls, request: Request, response: Response, *,
                 secure: bool | None = None) -> Dialog:
        """The caller's dialog from the request it sent and a 101-299 response with a To tag
        (§12.1.2). ``secure`` defaults to "the Request-URI is sips" (the shell knows if TLS was
        used all the way; it may pass the real value)."""
        status = response.status
        if not 100 < status < 300:
            raise ValueError(f"a {status} response does not create a dialog")
        remote_tag = response.to.tag
        if not remote_tag:
            raise ValueError("a dialog-creating response needs a To tag")
        if response.call_id != request.call_id or response.from_.tag != request.from_.tag:
            raise ValueError("the response is not for this request")
        contact = _first_contact(response)
        dialog = cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=remote_tag,
            local_address=_untagged(request.from_),
            remote_address=_untagged(response.to),
            remote_target=_copy_uri(contact.uri) if contact is not None else _copy_uri(request.uri),
            role="uac",
            route_set=_record_route(response, reverse=True),
            local_cseq=request.cseq.seq,
            local_target=_first_contact(request),
            secure=_is_sips(request.uri) if secure is None else secure,
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
        )
        return dialog

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, local_contact: Address | Uri, *,
                 secure: bool | None = None, initial_cseq: int | None = None) -> Dialog:
        """The callee's dialog from the request it received and the To tag it chose (§12.1.1);
        early until ``confirm()``. ``initial_cseq`` is the CSeq of the first request we will
        send (1 by default: our sequence number starts empty)."""
        if not local_tag:
            raise ValueError("a dialog needs a local tag")
        if request.to.tag and request.to.tag != local_tag:
            raise ValueError("the request already names another local tag")
        if initial_cseq is not None and not 1 <= initial_cseq <= MAX_INITIAL_CSEQ:
            raise ValueError("the initial CSeq must be below 2**31")
        contact = _first_contact(request)
        local = local_contact if isinstance(local_contact, Address) else Address(local_contact)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_address=_untagged(request.to),
            remote_address=_untagged(request.from_),
            remote_target=_copy_uri(contact.uri) if contact is not None else _copy_uri(request.uri),
            role="uas",
            route_set=_record_route(request, reverse=False),
            local_cseq=None if initial_cseq is None else initial_cseq - 1,
            remote_cseq=request.cseq.seq,
            local_target=_copy_address(local),
            secure=_is_sips(request.uri) if secure is None else secure,
        )

    # Identity -------------------------------------------------------------------------------
    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def local_uri(self) -> Uri:
        return self.local_address.uri

    @property
    def remote_uri(self) -> Uri:
        return self.remote_address.uri

    @property
    def next_hop(self) -> Uri:
        """The URI the next hop of our requests is resolved from (§8.1.2, RFC 3263): the first
        route, loose or strict (a strict one is also the Request-URI), else the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    @property
    def early(self) -> bool:
        return self.state is DialogState.EARLY

    @property
    def confirmed(self) -> bool:
        return self.state is DialogState.CONFIRMED

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # State changes ----------------------------------------------------------------------------
    def confirm(self, response: Response | None = None) -> None:
        """Early -> confirmed. The UAC passes the 2xx: the route set and remote target are then
        recomputed from it (§13.2.2.4), as a 1xx may have carried different ones."""
        if self.state is DialogState.TERMINATED:
            raise ValueError("a terminated dialog cannot be confirmed")
        if response is not None:
            if self.role != "uac":
                raise ValueError("only the UAC confirms a dialog with a response")
            if not 200 <= response.status < 300:
                raise ValueError("only a 2xx confirms a dialog")
            if response_dialog_id(response) != self.id:
                raise ValueError("the 2xx belongs to another dialog")
            if self.state is DialogState.EARLY:
                self.route_set = _record_route(response, reverse=True)
            contact = _first_contact(response)
            if contact is not None:
                self.remote_target = _copy_uri(contact.uri)
        self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    def next_cseq(self) -> int:
        """Increment the local sequence number (starting at 1 when empty) and return it."""
        self.local_cseq = 1 if self.local_cseq is None else self.local_cseq + 1
        return self.local_cseq

    # Requests we send -------------------------------------------------------------------------
    def create_request(self, method: str, *, via: Via, branch: str, body: bytes = b"",
                       content_type: str | None = None,
                       headers: Iterable[tuple[str, str]] = (), cseq: int | None = None,
                       max_forwards: int = 70) -> Request:
        """A request within this dialog (§12.2.1.1); see the module docstring.

        ``via`` is our Via without (or with any) branch; ``branch`` replaces it and must carry
        the RFC 3261 magic cookie. ``cseq`` is for ACK only (the INVITE's number; by default the
        current local sequence number); other methods increment the local sequence number.
        ``headers`` are added after the dialog's own (Allow, Supported, Reason, Event ...).
        """
        if method == "CANCEL":
            raise ValueError("a CANCEL is built from the request it cancels: create_cancel()")
        if not branch.startswith(MAGIC_COOKIE):
            raise ValueError(f"branch {branch!r} lacks the magic cookie {MAGIC_COOKIE}")
        if method == "ACK":
            seq = cseq if cseq is not None else self.local_cseq
            if seq is None:
                raise ValueError("no INVITE to acknowledge: the local sequence number is empty")
        else:
            if cseq is not None:
                raise ValueError("only an ACK takes an explicit CSeq")
            seq = self.next_cseq()
        uri, routes = route_request(self.remote_target, self.route_set)
        params: dict[str, str | None] = {"branch": branch}
        params.update((k, v) for k, v in via.params.items() if k != "branch")
        h = Headers()
        h.add("Via", str(Via(via.transport, via.host, via.port, params, via.protocol)))
        for route in routes:
            h.add("Route", str(route))
        h.add("Max-Forwards", str(max_forwards))
        h.add("From", _tagged(self.local_address, self.local_tag))
        h.add("To", _tagged(self.remote_address, self.remote_tag))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if method in TARGET_REFRESH and self.local_target is not None:
            h.add("Contact", str(self.local_target))
        for name, value in headers:
            h.add(name, value)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return Request(method, uri, h, body)

    # Messages we receive ------------------------------------------------------------------------
    def receive_request(self, request: Request) -> int | None:
        """Dialog checks of an incoming in-dialog request (§12.2.2): the status to reject it
        with (500 for a CSeq lower than the remote sequence number), or None when it may go on,
        the remote sequence number then updated. ACK and CANCEL carry the CSeq of the request
        they belong to and are not checked."""
        if request_dialog_id(request) != self.id:
            raise ValueError("the request belongs to another dialog")
        if request.method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.seq
        if self.remote_cseq is not None and seq < self.remote_cseq:
            return 500
        self.remote_cseq = seq
        return None

    def refresh_target(self, message: Request | Response) -> bool:
        """Replace the remote target with the message's Contact, if it has one (the target
        refresh of §12.2); True if it had one."""
        contact = _first_contact(message)
        if contact is None:
            return False
        self.remote_target = _copy_uri(contact.uri)
        return True

    def receive_response(self, response: Response) -> None:
        """A final response to a request we sent in this dialog: a 2xx to a target refresh
        request replaces the remote target (§12.2.1.2)."""
        if 200 <= response.status < 300 and response.cseq.method in TARGET_REFRESH:
            self.refresh_target(response)


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def _record_route(message: Request | Response, *, reverse: bool) -> list[Address]:
    """The Record-Route values as a route set, in the order the receiver uses them."""
    routes = [parse_address(v) for v in message.headers.values("Record-Route")]
    if reverse:
        routes.reverse()
    return routes


def create_cancel(request: Request) -> Request:
    """The CANCEL for a request we sent (§9.1): its Request-URI, Call-ID, From, To, CSeq number
    and top Via (so it follows the request's transaction branch), and its Route headers."""
    if request.method in ("ACK", "CANCEL"):
        raise ValueError(f"a {request.method} cannot be cancelled")
    h = Headers()
    h.add("Via", request.headers.values("Via")[0])
    for route in request.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", request.headers.get("From") or "")
    h.add("To", request.headers.get("To") or "")
    h.add("Call-ID", request.call_id)
    h.add("CSeq", f"{request.cseq.seq} CANCEL")
    return Request("CANCEL", _copy_uri(request.uri), h)


def create_response(request: Request, status: int, reason: str | None = None, *,
                    to_tag: str | None = None, contact: Address | None = None,
                    body: bytes = b"", content_type: str | None = None,
                    headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A response to ``request`` (§8.2.6): its Vias, From, To (with ``to_tag`` added when the
    request's To has none and the status is above 100), Call-ID and CSeq; for a 101-299 response
    the Record-Route values are copied (§12.1.1) and ``contact`` is added."""
    resp = Response(status, reason)
    h = resp.headers
    for value in request.headers.get_all("Via"):
        h.add("Via", value)
    h.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag and status > 100 and request.to.tag is None:
        to = f"{to};tag={to_tag}"
    h.add("To", to)
    h.add("Call-ID", request.call_id)
    h.add("CSeq", request.headers.get("CSeq") or "")
    if 100 < status < 300:
        for value in request.headers.get_all("Record-Route"):
            h.add("Record-Route", value)
        if contact is not None:
            h.add("Contact", str(contact))
    for name, value in headers:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
        resp.body = body
    return resp
