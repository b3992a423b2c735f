"""The user agent side of the server: owns INVITE sessions and routes SIP traffic to them.

The SIP server (``pbx.server``) is a registrar and proxy; calls the PBX itself takes part in (the
B2BUA: IVR, queues, bridging with anchored media) are ``InviteSession`` cores, one per dialog
leg. This shell matches what the transaction layer reports to the session it belongs to, runs
the session's outputs (client transactions, responses, ACKs), keeps one timer per session and
hands the session's TU events to whoever owns the leg (``SessionHandle.on_event``).

Matching (RFC 3261 §12.2, §9.2, §17.1.3):

- a request with a To tag: by (Call-ID, To tag), the To tag being our local tag;
- CANCEL: by the INVITE server transaction it cancels;
- ACK for a 2xx: by dialog, like any in-dialog request;
- a response: by the client transaction we started for the session; a stray 2xx (a
  retransmission after the transaction ended, or a second fork) by (Call-ID, From tag).

Anything that matches no session goes back to the server (which proxies or answers 481).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from pbx.sip.address import Address
from pbx.sip.invite import (
    InviteSession,
    SendAck,
    SendRequest,
    SendResponse,
    SessionConfig,
    Terminated,
)
from pbx.sip.message import Request
from pbx.sip.peer import Peer
from pbx.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    TxKey,
)
from pbx.sip.uri import SipUri, Uri, format_host
from pbx.sip.via import Via

__all__ = ["Endpoint", "Host", "SessionHandle"]

log = logging.getLogger("pbx.endpoint")

_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"


class Host(Protocol):
    """What the endpoint needs from the server it rides on."""

    layer: TransactionLayer

    def send_bytes(self, data: bytes, peer: Peer) -> None: ...
    def run_events(self, events: Sequence[object]) -> None: ...
    def peer_for(self, uri: Uri) -> Peer | None: ...
    def local_address(self, transport: str, towards: str) -> tuple[str, int]: ...
    def now(self) -> float: ...
    def next_id(self) -> str: ...
    def random(self) -> float: ...


class SessionHandle:
    """One session and where its dialog's messages go. ``on_event`` receives the TU events
    (``Ringing``, ``Answered``, ``OfferReceived``, ``Terminated`` ...) of ``pbx.sip.invite``."""

    __slots__ = ("_timer", "endpoint", "keys", "on_event", "owner", "peer", "session",
                 "transport")

    def __init__(self, endpoint: Endpoint, session: InviteSession, peer: Peer | None,
                 transport: str) -> None:
        self.endpoint = endpoint
        self.session = session
        self.peer = peer                      # symmetric peer (UAS: the INVITE's source)
        self.transport = transport
        self.on_event: Callable[[object], None] = _ignore
        self.owner: Any = None
        self.keys: list[TxKey] = []            # transactions matched to it (for cleanup)
        self._timer: asyncio.TimerHandle | None = None

    def act(self, action: Callable[[InviteSession, float], list[Any]]) -> None:
        """Run a TU action on the session (``lambda s, now: s.accept(sdp, now)``) and carry out
        what it returns."""
        self.endpoint._apply(self, action(self.session, self.endpoint.host.now()))

    def __repr__(self) -> str:
        return f"<SessionHandle {self.session!r}>"


def _ignore(event: object) -> None:
    return None


class Endpoint:
    """The session table and the shell that runs sessions on top of a ``Host``."""

    def __init__(self, host: Host, *, timers: Timers | None = None,
                 user_agent: str = "pbx") -> None:
        self.host = host
        self.timers = timers or Timers()
        self.user_agent = user_agent
        self._by_dialog: dict[tuple[str, str], SessionHandle] = {}
        self._by_client: dict[TxKey, SessionHandle] = {}
        self._by_server: dict[TxKey, SessionHandle] = {}
        self._headers: tuple[tuple[str, str], ...] = (("Allow", _ALLOW),)
        if user_agent:
            self._headers += (("User-Agent", user_agent),)

    def __len__(self) -> int:
        return len(self._by_dialog)

    @property
    def handles(self) -> list[SessionHandle]:
        return list(self._by_dialog.values())

    # Creating sessions ---------------------------------------------------------------------
    def _config(self, transport: str, towards: str) -> SessionConfig:
        host, port = self.host.local_address(transport, towards)
        tp = transport.upper()
        via = Via(tp, format_host(host), port, {"rport": None})
        params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
        contact = Address(SipUri(format_host(host), "pbx", port=port, params=params))
        return SessionConfig(via=via, contact=contact, ids=self.host.next_id,
                             random=self.host.random, timers=self.timers,
                             invite_headers=self._headers)

    def incoming(self, key: TxKey, invite: Request, source: Peer) -> SessionHandle:
        """A session for a new INVITE the PBX takes (not proxies). ``start`` is not called:
        the owner sets ``on_event`` first, then calls ``handle.act(lambda s, now:
        s.start(now))`` to get the ``OfferReceived``."""
        config = self._config(source.transport, source.host)
        session = InviteSession.uas(config, key, invite)
        handle = SessionHandle(self, session, source, source.transport)
        self._by_dialog[(session.call_id, session.local_tag)] = handle
        self._by_server[key] = handle
        handle.keys.append(key)
        return handle

    def outgoing(self, *, target: Uri, from_: Address, to: Address, body: bytes | None,
                 peer: Peer | None, headers: Iterable[tuple[str, str]] = (),
                 route: Sequence[Address] = (), call_id: str | None = None,
                 cseq: int = 1) -> SessionHandle:
        """A new call from the PBX to ``target``, sent to ``peer`` (None: resolved from the
        target). Not sent until ``handle.act(lambda s, now: s.start(now))``. ``call_id``,
        ``cseq`` and a tagged ``from_`` repeat an INVITE with credentials (RFC 3261 §22.2)."""
        transport = peer.transport if peer is not None else (
            target.transport if isinstance(target, SipUri) else "udp")
        towards = peer.host if peer is not None else (
            target.host_bare if isinstance(target, SipUri) else "127.0.0.1")
        config = self._config(transport, towards)
        session = InviteSession.uac(config, target=target, from_=from_, to=to, body=body,
                                    headers=headers, route=route, call_id=call_id, cseq=cseq)
        handle = SessionHandle(self, session, peer, transport)
        self._by_dialog[(session.call_id, session.local_tag)] = handle
        return handle

    def find(self, call_id: str, local_tag: str) -> SessionHandle | None:
        """The session of the dialog we know as (``call_id``, our ``local_tag``)."""
        return self._by_dialog.get((call_id, local_tag))

    # Matching ------------------------------------------------------------------------------
    def owns_request(self, key: TxKey, req: Request) -> SessionHandle | None:
        """The session an incoming request (not ACK) belongs to, if any."""
        if req.method == "CANCEL":
            invite_key = self.host.layer.find_invite_for_cancel(req)
            return self._by_server.get(invite_key) if invite_key is not None else None
        tag = req.to.tag
        if tag is None:
            return None
        return self._by_dialog.get((req.call_id, tag))

    def on_request(self, handle: SessionHandle, key: TxKey, req: Request, source: Peer) -> None:
        if req.method == "INVITE":
            self._by_server[key] = handle
            handle.keys.append(key)
        self._feed(handle, RequestReceived(key, req, source))

    def on_ack(self, event: AckReceived) -> bool:
        tag = event.request.to.tag
        handle = self._by_dialog.get((event.request.call_id, tag)) if tag else None
        if handle is None:
            return False
        self._feed(handle, event)
        return True

    def on_event(self, event: object) -> bool:
        """A transaction-layer event; True if it was one of ours."""
        if isinstance(event, ResponseReceived):
            handle = self._by_client.get(event.key)
            if handle is None:
                return False
            self._feed(handle, event)
            return True
        if isinstance(event, StrayResponse):
            resp = event.response
            tag = resp.from_.tag
            handle = self._by_dialog.get((resp.call_id, tag)) if tag else None
            if handle is None:
                return False
            self._feed(handle, event)
            return True
        if isinstance(event, TransactionTimeout | TransportFailed):
            handle = self._by_client.get(event.key) or self._by_server.get(event.key)
            if handle is None:
                return False
            self._feed(handle, event)
            return True
        if isinstance(event, TransactionTerminated):
            found = self._by_client.pop(event.key, None) or self._by_server.pop(event.key, None)
            if found is not None:
                self._maybe_forget(found)
            return found is not None
        return False

    def on_unreachable(self, peer: Peer) -> None:
        """The transport could not reach ``peer``: fail our client transactions towards it."""
        now = self.host.now()
        events: list[object] = []
        for key, handle in list(self._by_client.items()):
            if handle.peer == peer:
                events.extend(self.host.layer.transport_error(key, now))
        self.host.run_events(events)

    # Running sessions ----------------------------------------------------------------------
    def _feed(self, handle: SessionHandle, event: object) -> None:
        self._apply(handle, handle.session.receive(event, self.host.now()))  # type: ignore[arg-type]

    def _apply(self, handle: SessionHandle, outputs: list[Any]) -> None:
        host = self.host
        for out in outputs:
            if isinstance(out, SendRequest):
                peer = self._next_hop(handle, out.next_hop)
                if peer is None:
                    # Nowhere to send it: the session sees the transport fail (503).
                    log.info("no route to %s for %s", out.next_hop, out.request.method)
                    failed = TxKey(-1, "client", out.request.method, out.request.branch)
                    self._apply(handle, handle.session.receive(TransportFailed(failed),
                                                               host.now()))
                    continue
                key, evs = host.layer.send_request(out.request, peer, host.now())
                self._by_client[key] = handle
                handle.keys.append(key)
                host.run_events(evs)
            elif isinstance(out, SendResponse):
                host.run_events(host.layer.respond(out.key, out.response, host.now()))
            elif isinstance(out, SendAck):
                peer = self._next_hop(handle, out.next_hop)
                if peer is not None:
                    host.send_bytes(bytes(out.request), peer)
            else:
                try:
                    handle.on_event(out)
                except Exception:
                    log.exception("session event handler failed on %s", type(out).__name__)
                if isinstance(out, Terminated):
                    self._maybe_forget(handle)
        self._arm(handle)

    def _next_hop(self, handle: SessionHandle, uri: Uri) -> Peer | None:
        # Symmetric: requests to a peer that called us (or that we reached through a known
        # source address, a registration's) go back where it is, as responses do (RFC 3581).
        if handle.peer is not None:
            return handle.peer
        peer = self.host.peer_for(uri)
        if peer is not None:
            handle.peer = peer
        return peer

    def _arm(self, handle: SessionHandle) -> None:
        session = handle.session
        if handle._timer is not None:
            handle._timer.cancel()
            handle._timer = None
        if session.finished:
            self._maybe_forget(handle)
            return
        deadline = session.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            handle._timer = loop.call_at(deadline, self._fire, handle)

    def _fire(self, handle: SessionHandle) -> None:
        handle._timer = None
        try:
            self._apply(handle, handle.session.on_timer(self.host.now()))
        except Exception:
            log.exception("session timer failed")

    def _maybe_forget(self, handle: SessionHandle) -> None:
        session = handle.session
        if not session.finished:
            return
        if handle._timer is not None:
            handle._timer.cancel()
            handle._timer = None
        self._by_dialog.pop((session.call_id, session.local_tag), None)
        for key in handle.keys:
            if self._by_client.get(key) is handle:
                del self._by_client[key]
            if self._by_server.get(key) is handle:
                del self._by_server[key]
        handle.keys.clear()
