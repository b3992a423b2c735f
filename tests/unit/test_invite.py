"""The INVITE usage (RFC 3261 §13-15, RFC 6026): two endpoints, each a TransactionLayer plus
InviteSessions, wired back to back; messages go over the "network" as bytes and are parsed again.
``transfer(a, b)`` moves what ``a`` has sent to ``b`` (aioquic style); ``run(...)`` fires every
timer exactly at its deadline and delivers everything at once, unless told to drop it. No event
loop: time is a ``now`` variable.

The harness (``Endpoint``, ``transfer``, ``run``) is also used by tests/property/test_invite_props.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import pytest

from pbx.sip.address import Address, parse_address
from pbx.sip.dialog import create_response
from pbx.sip.invite import (
    Answered,
    AnswerReceived,
    Confirmed,
    DialogRequest,
    DialogResponse,
    Failed,
    Glare,
    InviteSession,
    OfferReceived,
    OfferRequested,
    OfferState,
    Output,
    ReinviteFailed,
    Ringing,
    SendAck,
    SendRequest,
    SendResponse,
    SessionConfig,
    SessionState,
    Terminated,
    glare_delay,
)
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.peer import Peer
from pbx.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    TxKey,
)
from pbx.sip.uri import SipUri, parse_uri
from pbx.sip.via import Via

OFFER_A = b"v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\n"
ANSWER_B = b"v=0\r\no=bob 1 1 IN IP4 10.0.0.2\r\n"
OFFER_B = b"v=0\r\no=bob 1 2 IN IP4 10.0.0.2\r\n"
ANSWER_A = b"v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\n"
EARLY_B = b"v=0\r\no=bob 1 1 IN IP4 10.0.0.2\r\ns=early\r\n"
HOLD = b"v=0\r\na=sendonly\r\n"
HELD = b"v=0\r\na=recvonly\r\n"
TIMEOUT = 32.0  # 64*T1 with the default timers


# The harness ------------------------------------------------------------------------------------


def host_of(uri: object) -> str:
    assert isinstance(uri, SipUri)
    return uri.host


def next_hop(req: Request) -> str:
    """Where a proxy sends a request on: its first Route if loose, else its Request-URI."""
    routes = req.headers.values("Route")
    if routes:
        first = parse_address(routes[0]).uri
        if isinstance(first, SipUri) and "lr" in first.params:
            return first.host
    assert isinstance(req.uri, SipUri)
    return req.uri.host


def summary(data: bytes) -> str:
    msg = parse_message(data)
    if isinstance(msg, Request):
        return msg.method
    return f"{msg.status} {msg.cseq.method}"


Reaction = Callable[["Endpoint", InviteSession, Output, float], list[Output]]


class Endpoint:
    """A transaction layer and its sessions, with the matching an endpoint shell does: new
    INVITEs make UAS sessions, CANCELs go to the session of the INVITE they cancel, everything
    else by (Call-ID, our tag). ``react`` plays the TU: it sees each event and may return the
    outputs of its calls, which are applied after the outputs that caused the event."""

    def __init__(self, name: str, host: str, *, aliases: Iterable[str] = (),
                 randoms: Iterable[float] = (0.5,), timers: Timers | None = None,
                 react: Reaction | None = None, gc: bool = True) -> None:
        self.name = name
        self.host = host
        self.hosts = {host, *aliases}
        self.layer = TransactionLayer(timers or Timers())
        self._n = 0
        self._randoms = list(randoms)
        self._r = 0
        self.config = SessionConfig(via=Via("UDP", host, 5060, {"rport": None}),
                                    contact=Address(SipUri(host, name, 5060)),
                                    ids=self._id, random=self._random,
                                    timers=timers or Timers())
        self.sessions: list[InviteSession] = []
        self._by_tag: dict[tuple[str, str], InviteSession] = {}
        self._client: dict[TxKey, InviteSession] = {}
        self._server: dict[TxKey, InviteSession] = {}
        self.events: list[Output] = []
        self.log: list[tuple[InviteSession, Output]] = []
        self.outbox: list[tuple[str, bytes]] = []
        self.react = react
        self.gc = gc
        self.acks_sent: Counter[tuple[str, int, str]] = Counter()
        self.ok_received: Counter[tuple[str, int, str]] = Counter()
        self.endpoint_481 = 0
        # §14: our INVITEs still waiting for a final response, and 2xx we sent to the peer's
        # INVITEs meanwhile (a glare that was not refused).
        self.invites_pending: set[tuple[str, int]] = set()
        self.crossed_2xx = 0

    def _id(self) -> str:
        self._n += 1
        return f"{self.name}{self._n}"

    def _random(self) -> float:
        value = self._randoms[self._r % len(self._randoms)]
        self._r += 1
        return value

    @property
    def session(self) -> InviteSession:
        return self.sessions[-1]

    def take(self) -> list[Output]:
        out, self.events = self.events, []
        return out

    # TU ---------------------------------------------------------------------------------------
    def call(self, now: float, *, to: str = "sip:bob@b.example", body: bytes | None = OFFER_A,
             route: tuple[str, ...] = ()) -> InviteSession:
        target = parse_uri(to)
        s = InviteSession.uac(self.config, target=target,
                              from_=Address(SipUri("a.example", self.name)),
                              to=Address(target), body=body,
                              route=[parse_address(r) for r in route])
        self._add(s)
        self.apply(s, s.start(now), now)
        return s

    def apply(self, s: InviteSession, outputs: list[Output], now: float) -> None:
        later: list[list[Output]] = []
        for o in outputs:
            if isinstance(o, SendRequest):
                peer = Peer("udp", host_of(o.next_hop), 5060)
                if o.request.method == "INVITE":
                    self.invites_pending.add((o.request.call_id, o.request.cseq.seq))
                key, evs = self.layer.send_request(o.request, peer, now)
                self._client[key] = s
                self._run(evs, now)
            elif isinstance(o, SendResponse):
                r = o.response
                if (r.cseq.method == "INVITE" and 200 <= r.status < 300
                        and any(call_id == r.call_id for call_id, _ in self.invites_pending)):
                    self.crossed_2xx += 1
                self._run(self.layer.respond(o.key, o.response, now), now)
            elif isinstance(o, SendAck):
                ack = o.request
                self.acks_sent[(ack.call_id, ack.cseq.seq, ack.to.tag or "")] += 1
                self.outbox.append((host_of(o.next_hop), bytes(ack)))
            else:
                self.events.append(o)
                self.log.append((s, o))
                if self.react is not None:
                    later.append(self.react(self, s, o, now))
        for more in later:
            self.apply(s, more, now)
        self._collect()

    # Network and timers ------------------------------------------------------------------------
    def receive(self, data: bytes, source: str, now: float) -> None:
        msg = parse_message(data)
        peer = Peer("udp", source, 5060)
        if isinstance(msg, Request):
            self._run(self.layer.receive_request(msg, peer, now), now)
        else:
            if msg.cseq.method == "INVITE" and 200 <= msg.status < 300:
                self.ok_received[(msg.call_id, msg.cseq.seq, msg.to.tag or "")] += 1
            if msg.cseq.method == "INVITE" and msg.status >= 200:
                self.invites_pending.discard((msg.call_id, msg.cseq.seq))
            self._run(self.layer.receive_response(msg, peer, now), now)

    def next_deadline(self) -> float | None:
        times = [t for t in [self.layer.next_deadline(),
                             *(s.next_deadline() for s in self.sessions)] if t is not None]
        return min(times) if times else None

    def timer(self, now: float) -> None:
        self._run(self.layer.on_timer(now), now)
        for s in list(self.sessions):
            deadline = s.next_deadline()
            if deadline is not None and deadline <= now:
                self.apply(s, s.on_timer(now), now)

    # Matching ----------------------------------------------------------------------------------
    def _add(self, s: InviteSession) -> None:
        self.sessions.append(s)
        self._by_tag[(s.call_id, s.local_tag)] = s

    def _collect(self) -> None:
        if self.gc:
            for key, s in list(self._by_tag.items()):
                if s.finished:
                    del self._by_tag[key]

    def _deliver(self, s: InviteSession | None, ev: Event, now: float) -> None:
        if s is not None:
            self.apply(s, s.receive(ev, now), now)

    def _run(self, events: list[Event], now: float) -> None:
        for ev in events:
            if isinstance(ev, Send):
                self.outbox.append((ev.peer.host, bytes(ev.message)))
            elif isinstance(ev, RequestReceived):
                self._on_request(ev, now)
            elif isinstance(ev, ResponseReceived):
                self._deliver(self._client.get(ev.key), ev, now)
            elif isinstance(ev, StrayResponse):
                r = ev.response
                self._deliver(self._by_tag.get((r.call_id, r.from_.tag or "")), ev, now)
            elif isinstance(ev, AckReceived):
                r = ev.request
                self._deliver(self._by_tag.get((r.call_id, r.to.tag or "")), ev, now)
            elif isinstance(ev, TransactionTimeout | TransportFailed):
                s = self._client.get(ev.key) or self._server.get(ev.key)
                if ev.key.method == "INVITE" and ev.key.role == "client" and s is not None:
                    self.invites_pending = {p for p in self.invites_pending if p[0] != s.call_id}
                self._deliver(s, ev, now)
            elif isinstance(ev, TransactionTerminated):
                self._client.pop(ev.key, None)
                self._server.pop(ev.key, None)

    def _on_request(self, ev: RequestReceived, now: float) -> None:
        req = ev.request
        if req.method == "CANCEL":
            key = self.layer.find_invite_for_cancel(req)
            s = self._server.get(key) if key is not None else None
        elif req.method == "INVITE" and req.to.tag is None:
            s = InviteSession.uas(self.config, ev.key, req)
            self._add(s)
            self._server[ev.key] = s
            self.apply(s, s.start(now), now)
            return
        else:
            s = self._by_tag.get((req.call_id, req.to.tag or ""))
            if s is not None and req.method == "INVITE":
                self._server[ev.key] = s
        if s is None:
            self.endpoint_481 += 1
            self._run(self.layer.respond(ev.key, create_response(req, 481), now), now)
            return
        self.apply(s, s.receive(ev, now), now)


# Proxies the network plays: they route but add no Via, so responses go straight back.
LOOSE, STRICT = "p1.example", "p2.example"
PROXIES = {LOOSE, STRICT}


def proxy_forward(host: str, data: bytes) -> tuple[str, bytes]:
    """What a proxy at ``host`` does to a request (§16.4, §16.6 step 7): undo a strict router's
    rewriting, pop its own Route, and rewrite for a strict next hop."""
    req = parse_message(data)
    assert isinstance(req, Request)
    routes = req.headers.values("Route")
    if isinstance(req.uri, SipUri) and req.uri.host == host:
        req.uri = parse_address(routes[-1]).uri
        routes = routes[:-1]
    if routes and parse_address(routes[0]).uri.host == host:  # type: ignore[union-attr]
        routes = routes[1:]
    strict = bool(routes) and "lr" not in parse_address(routes[0]).uri.params  # type: ignore[union-attr]
    if strict:
        first = parse_address(routes[0]).uri
        routes = [*routes[1:], f"<{req.uri}>"]
        req.uri = first
    req.headers.remove("Route")
    for r in routes:
        req.headers.add("Route", r)
    return host_of(req.uri) if strict else next_hop(req), bytes(req)


def _route(dest: str, data: bytes, path: list[str]) -> tuple[str, bytes]:
    while dest in PROXIES:
        path.append(dest)
        dest, data = proxy_forward(dest, data)
    return dest, data


def transfer(a: Endpoint, *targets: Endpoint, now: float = 0.0,
             path: list[str] | None = None) -> list[str]:
    """Deliver what ``a`` sent to the targets it is addressed to (each target whose host or
    alias matches gets a copy; a forking proxy in effect); the rest stays queued. Returns the
    summaries delivered, in order."""
    delivered: list[str] = []
    keep: list[tuple[str, bytes]] = []
    pending, a.outbox = a.outbox, []
    for dest, data in pending:
        dest, data = _route(dest, data, path if path is not None else [])
        hit = [t for t in targets if dest in t.hosts]
        if not hit:
            keep.append((dest, data))
            continue
        delivered.append(summary(data))
        for t in hit:
            t.receive(data, a.host, now)
    a.outbox = keep + a.outbox
    return delivered


def drop(a: Endpoint) -> list[str]:
    """Lose everything ``a`` has sent so far."""
    lost = [summary(data) for _, data in a.outbox]
    a.outbox = []
    return lost


def run(eps: list[Endpoint], now: float, until: float, *,
        lose: Callable[[Endpoint, str], bool] = lambda ep, what: False
        ) -> list[tuple[float, str, str]]:
    """From ``now`` to ``until``: deliver everything sent (unless ``lose(sender, summary)``),
    fire each timer exactly at its deadline. Returns (time, sender, summary) of every message
    sent, lost ones marked with a trailing ``!``."""
    log: list[tuple[float, str, str]] = []
    kept: dict[str, list[tuple[str, bytes]]] = {ep.name: [] for ep in eps}
    t = now
    while True:
        moved = True
        while moved:
            moved = False
            for ep in eps:
                pending, ep.outbox = ep.outbox, []
                for dest, data in pending:
                    dest, data = _route(dest, data, [])
                    targets = [target for target in eps if dest in target.hosts]
                    if not targets:                  # for someone outside the run: keep it
                        kept[ep.name].append((dest, data))
                        continue
                    moved = True
                    what = summary(data)
                    if lose(ep, what):
                        log.append((t, ep.name, what + "!"))
                        continue
                    log.append((t, ep.name, what))
                    for target in targets:
                        target.receive(data, ep.host, t)
        for ep in eps:
            ep.outbox[:0] = kept[ep.name]
            kept[ep.name] = []
        deadlines = [d for d in (ep.next_deadline() for ep in eps) if d is not None]
        if not deadlines or min(deadlines) > until:
            return log
        t = max(t, min(deadlines))
        for ep in eps:
            kept[ep.name] = ep.outbox
            ep.outbox = []
            ep.timer(t)


def kinds(events: list[Output]) -> list[str]:
    return [type(e).__name__ for e in events]


def reason(events: list[Output]) -> str | None:
    ends = [e.reason for e in events if isinstance(e, Terminated)]
    assert len(ends) <= 1
    return ends[0] if ends else None


@pytest.fixture
def a() -> Endpoint:
    return Endpoint("alice", "10.0.0.1")


@pytest.fixture
def b() -> Endpoint:
    return Endpoint("bob", "10.0.0.2", aliases=("b.example",))


def setup_call(a: Endpoint, b: Endpoint, now: float = 0.0) -> tuple[InviteSession, InviteSession]:
    """A calls B, B answers at once, the ACK arrives: both confirmed."""
    sa = a.call(now)
    assert transfer(a, b, now=now) == ["INVITE"]
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, now), now)
    assert transfer(b, a, now=now) == ["200 INVITE"]
    assert transfer(a, b, now=now) == ["ACK"]
    a.take()
    b.take()
    assert sa.state is sb.state is SessionState.CONFIRMED
    return sa, sb


# Call setup ------------------------------------------------------------------------------------


def test_full_call_setup_and_bye_from_caller(a: Endpoint, b: Endpoint) -> None:
    now = 0.0
    sa = a.call(now)
    assert sa.state is SessionState.CALLING and sa.offer_state is OfferState.LOCAL_OFFER
    invite = parse_message(a.outbox[0][1])
    assert isinstance(invite, Request) and invite.body == OFFER_A
    assert invite.content_type == "application/sdp"
    assert invite.headers.get("Contact") == "<sip:alice@10.0.0.1:5060>"
    assert transfer(a, b) == ["INVITE"]
    sb = b.session
    [offer] = b.take()
    assert isinstance(offer, OfferReceived) and offer.sdp == OFFER_A and offer.initial
    assert sb.offer_state is OfferState.REMOTE_OFFER and sb.state is SessionState.CALLING

    b.apply(sb, sb.provisional(180, now), now)
    assert sb.state is SessionState.EARLY
    assert transfer(b, a) == ["180 INVITE"]
    [ringing] = a.take()
    assert isinstance(ringing, Ringing) and ringing.status == 180 and ringing.sdp is None
    assert ringing.dialog is not None and ringing.dialog.early
    assert sa.state is SessionState.EARLY and list(sa.early) == [sb.local_tag]

    now = 3.0
    b.apply(sb, sb.accept(ANSWER_B, now), now)
    assert sb.state is SessionState.CONFIRMED and sb.offer_state is OfferState.STABLE
    assert transfer(b, a, now=now) == ["200 INVITE"]
    events = a.take()
    assert kinds(events) == ["Answered"]
    answered = events[0]
    assert isinstance(answered, Answered) and answered.sdp == ANSWER_B
    assert answered.dialog is ringing.dialog and answered.dialog.confirmed
    assert sa.offer_state is OfferState.STABLE and sa.early == {}
    assert transfer(a, b, now=now) == ["ACK"]
    [confirmed] = b.take()
    assert isinstance(confirmed, Confirmed) and confirmed.dialog is sb.dialog
    da, db = sa.dialog, sb.dialog
    assert da is not None and db is not None
    assert (da.call_id, da.local_tag, da.remote_tag) == (db.call_id, db.remote_tag, db.local_tag)
    assert b.next_deadline() is None or b.next_deadline() > now  # nothing left to retransmit

    now = 10.0
    a.apply(sa, sa.bye(now), now)
    assert kinds(a.take()) == ["Terminated"] and sa.reason == "local-bye"
    assert sa.state is SessionState.TERMINATED and da.terminated
    assert transfer(a, b, now=now) == ["BYE"]
    events = b.take()
    assert kinds(events) == ["ByeReceived", "Terminated"] and reason(events) == "remote-bye"
    assert transfer(b, a, now=now) == ["200 BYE"]
    assert a.take() == []
    assert sb.finished
    # The caller lingers to answer 2xx retransmissions with its ACK, then it is done.
    assert not sa.finished
    run([a, b], now, 100.0)
    assert sa.finished


def test_bye_from_callee_and_481_afterwards(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    b.apply(sb, sb.bye(1.0), 1.0)
    assert kinds(b.take()) == ["Terminated"]
    assert transfer(b, a, now=1.0) == ["BYE"]
    assert kinds(a.take()) == ["ByeReceived", "Terminated"] and sa.reason == "remote-bye"
    assert transfer(a, b, now=1.0) == ["200 BYE"]
    # Anything more in that dialog is answered 481 by the (lingering) session itself.
    assert sa.request("INFO", 2.0) == [] and sb.reinvite(OFFER_B, 2.0) == []
    assert sb.dialog is not None
    info = sb.dialog.create_request("INFO", via=b.config.via, branch="z9hG4bKlate")
    b.outbox.append(("10.0.0.1", bytes(info)))
    assert transfer(b, a, now=2.0) == ["INFO"]
    assert a.endpoint_481 == 0 and not sa.finished
    assert transfer(a, b, now=2.0) == ["481 INFO"]


def test_early_media_183_then_answer(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(183, 0.0, body=EARLY_B), 0.0)
    assert transfer(b, a) == ["183 INVITE"]
    [ringing] = a.take()
    assert isinstance(ringing, Ringing) and ringing.status == 183 and ringing.sdp == EARLY_B
    assert sa.offer_state is OfferState.LOCAL_OFFER  # an unreliable 1xx answers nothing
    b.apply(sb, sb.accept(ANSWER_B, 1.0), 1.0)
    transfer(b, a, now=1.0)
    [answered] = a.take()
    assert isinstance(answered, Answered) and answered.sdp == ANSWER_B


def test_2xx_without_sdp_after_early_media_takes_the_early_answer(a: Endpoint,
                                                                   b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(183, 0.0, body=EARLY_B), 0.0)
    transfer(b, a)
    a.take()
    # A peer that sends its 2xx without repeating the SDP (bytes on the wire, by hand).
    ok = create_response(sb.invite, 200, to_tag=sb.local_tag, contact=b.config.contact)
    a.receive(bytes(ok), b.host, 1.0)
    [answered] = a.take()
    assert isinstance(answered, Answered) and answered.sdp == EARLY_B
    assert sa.offer_state is OfferState.STABLE


def test_delayed_offer_answer_in_ack(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0, body=None)
    assert sa.offer_state is OfferState.STABLE
    transfer(a, b)
    sb = b.session
    [requested] = b.take()
    assert isinstance(requested, OfferRequested) and requested.initial
    with pytest.raises(ValueError):
        sb.accept(b"", 0.0)
    b.apply(sb, sb.accept(OFFER_B, 0.0), 0.0)
    assert sb.offer_state is OfferState.LOCAL_OFFER
    transfer(b, a)
    events = a.take()
    assert kinds(events) == ["Answered", "OfferReceived"]
    assert isinstance(events[0], Answered) and events[0].sdp is None
    assert isinstance(events[1], OfferReceived) and events[1].sdp == OFFER_B
    assert events[1].initial and isinstance(events[1].message, Response)
    assert sa.offer_state is OfferState.REMOTE_OFFER
    assert a.outbox == []                     # the ACK waits for the answer
    # The 2xx is retransmitted meanwhile: still no ACK, no new event.
    run([b], 0.0, 0.5)
    assert transfer(b, a, now=0.5) == ["200 INVITE"]
    assert a.outbox == [] and a.take() == []
    a.apply(sa, sa.ack(ANSWER_A, 0.6), 0.6)
    assert sa.offer_state is OfferState.STABLE
    ack = parse_message(a.outbox[0][1])
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.body == ANSWER_A
    assert transfer(a, b, now=0.6) == ["ACK"]
    events = b.take()
    assert kinds(events) == ["AnswerReceived", "Confirmed"]
    assert isinstance(events[0], AnswerReceived) and events[0].sdp == ANSWER_A
    assert sb.offer_state is OfferState.STABLE
    # A late retransmission of the 2xx gets the very same ACK again.
    ok = create_response(sb.invite, 200, to_tag=sb.local_tag, contact=b.config.contact,
                         body=OFFER_B)
    a.receive(bytes(ok), b.host, 1.0)
    assert [data for _, data in a.outbox] == [bytes(ack)]
    assert a.acks_sent[(sa.call_id, 1, sb.local_tag)] == 2


def test_uas_reject(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.take()
    b.apply(sb, sb.reject(486, 0.0), 0.0)
    assert kinds(b.take()) == ["Terminated"] and sb.reason == "rejected"
    assert sb.finished
    assert transfer(b, a) == ["486 INVITE"]
    events = a.take()
    assert kinds(events) == ["Failed", "Terminated"]
    assert isinstance(events[0], Failed) and events[0].status == 486
    assert reason(events) == "rejected" and sa.finished
    assert transfer(a, b) == ["ACK"]          # the transaction layer's ACK, absorbed there
    assert b.take() == []
    assert sb.accept(ANSWER_B, 1.0) == [] and sb.provisional(180, 1.0) == []


def test_initial_invite_times_out(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    run([a], 0.0, 100.0, lose=lambda ep, what: True)
    events = a.take()
    assert kinds(events) == ["Failed", "Terminated"]
    assert isinstance(events[0], Failed) and events[0].status == 408 and events[0].response is None
    assert sa.reason == "timeout"


# Forking -------------------------------------------------------------------------------------


def test_forked_invite_two_2xx_second_is_acked_and_ended() -> None:
    a = Endpoint("alice", "10.0.0.1")
    b1 = Endpoint("bob", "10.0.0.2", aliases=("b.example",))
    b2 = Endpoint("robert", "10.0.0.3", aliases=("b.example",))
    sa = a.call(0.0)
    assert transfer(a, b1, b2) == ["INVITE"]          # one copy to each fork
    s1, s2 = b1.session, b2.session
    b1.apply(s1, s1.provisional(180, 0.0), 0.0)
    b2.apply(s2, s2.provisional(183, 0.0, body=EARLY_B), 0.0)
    transfer(b1, a)
    transfer(b2, a)
    r1, r2 = a.take()
    assert isinstance(r1, Ringing) and isinstance(r2, Ringing)
    assert r1.dialog is not None and r2.dialog is not None and r1.dialog is not r2.dialog
    assert set(sa.early) == {s1.local_tag, s2.local_tag}

    b1.apply(s1, s1.accept(ANSWER_B, 1.0), 1.0)
    transfer(b1, a, now=1.0)
    [answered] = a.take()
    assert isinstance(answered, Answered) and answered.dialog is r1.dialog
    assert sa.dialog is r1.dialog and r2.dialog.terminated
    assert transfer(a, b1, b2, now=1.0) == ["ACK"]
    assert kinds(b1.take()) == ["OfferReceived", "Confirmed"]
    assert kinds(b2.take()) == ["OfferReceived"]

    b2.apply(s2, s2.accept(ANSWER_B, 2.0), 2.0)
    transfer(b2, a, now=2.0)
    assert a.take() == []                              # nothing for the TU
    ack = parse_message(a.outbox[0][1])
    bye = parse_message(a.outbox[1][1])
    assert isinstance(ack, Request) and isinstance(bye, Request)
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert ack.cseq.seq == 1 and bye.cseq.seq == 2
    assert ack.to.tag == bye.to.tag == s2.local_tag
    assert str(bye.uri) == "sip:robert@10.0.0.3:5060"  # the second fork's Contact
    assert transfer(a, b1, b2, now=2.0) == ["ACK", "BYE"]
    assert kinds(b2.take()) == ["Confirmed", "ByeReceived", "Terminated"]
    assert transfer(b2, a, now=2.0) == ["200 BYE"]
    assert b1.take() == [] and a.take() == []
    assert sa.state is SessionState.CONFIRMED and s1.state is SessionState.CONFIRMED
    # A retransmission of the second fork's 2xx gets its ACK again, and nothing else.
    ok2 = create_response(s2.invite, 200, to_tag=s2.local_tag, contact=b2.config.contact,
                          body=ANSWER_B)
    a.receive(bytes(ok2), b2.host, 2.5)
    assert [summary(d) for _, d in a.outbox] == ["ACK"]
    assert a.acks_sent[(sa.call_id, 1, s2.local_tag)] == 2


# CANCEL -------------------------------------------------------------------------------------


def test_cancel_after_provisional(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(180, 0.0), 0.0)
    transfer(b, a)
    a.take()
    b.take()
    a.apply(sa, sa.cancel(1.0), 1.0)
    assert transfer(a, b, now=1.0) == ["CANCEL"]
    events = b.take()
    assert kinds(events) == ["Cancelled", "Terminated"] and sb.reason == "cancelled"
    assert transfer(b, a, now=1.0) == ["200 CANCEL", "487 INVITE"]
    events = a.take()
    assert kinds(events) == ["Failed", "Terminated"]
    assert isinstance(events[0], Failed) and events[0].status == 487
    assert sa.reason == "cancelled"
    assert transfer(a, b, now=1.0) == ["ACK"]
    assert b.take() == []
    assert sb.accept(ANSWER_B, 2.0) == []             # too late: nothing happens
    assert sa.cancel(2.0) == []


def test_cancel_before_provisional_waits_for_one(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    a.apply(sa, sa.cancel(0.0), 0.0)
    assert [summary(d) for _, d in a.outbox] == ["INVITE"]   # no CANCEL yet (§9.1)
    assert transfer(a, b) == ["INVITE"]
    b.take()
    # B's TU is silent: its transaction layer sends 100 Trying after 200 ms.
    log = run([b], 0.0, 0.2)
    assert log == [] and transfer(b, a, now=0.2) == ["100 INVITE"]
    assert a.take() == []
    assert transfer(a, b, now=0.2) == ["CANCEL"]
    assert transfer(b, a, now=0.2) == ["200 CANCEL", "487 INVITE"]
    assert kinds(a.take()) == ["Failed", "Terminated"] and sa.reason == "cancelled"


def test_cancel_before_provisional_then_final(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    a.apply(sa, sa.cancel(0.0), 0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.reject(486, 0.0), 0.0)
    transfer(b, a)
    events = a.take()
    assert kinds(events) == ["Failed", "Terminated"] and sa.reason == "cancelled"
    assert [summary(d) for _, d in a.outbox] == ["ACK"]        # never a CANCEL


def test_cancel_racing_the_200(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(180, 0.0), 0.0)
    transfer(b, a)
    a.take()
    b.take()
    b.apply(sb, sb.accept(ANSWER_B, 1.0), 1.0)   # the 200 is on its way ...
    a.apply(sa, sa.cancel(1.0), 1.0)              # ... while A gives up
    assert transfer(a, b, now=1.0) == ["CANCEL"]
    assert b.take() == []                          # answered already: no effect
    assert transfer(b, a, now=1.0) == ["200 INVITE", "200 CANCEL"]
    assert kinds(a.take()) == ["Terminated"] and sa.reason == "cancelled"
    assert transfer(a, b, now=1.0) == ["ACK", "BYE"]
    assert kinds(b.take()) == ["Confirmed", "ByeReceived", "Terminated"]
    assert transfer(b, a, now=1.0) == ["200 BYE"]
    assert sa.state is sb.state is SessionState.TERMINATED


def test_cancel_before_start_and_misuse(a: Endpoint) -> None:
    sa = InviteSession.uac(a.config, target=parse_uri("sip:bob@b.example"),
                           from_=Address(SipUri("a.example", "alice")),
                           to=Address(parse_uri("sip:bob@b.example")))
    assert kinds(sa.cancel(0.0)) == ["Terminated"] and sa.finished
    with pytest.raises(ValueError):
        sa.start(0.0)
    with pytest.raises(ValueError):
        InviteSession.uac(a.config, target=parse_uri("sip:b@b"), from_=Address(SipUri("a")),
                          to=parse_address("<sip:b@b>;tag=x"))


# Lost messages -------------------------------------------------------------------------------


def test_lost_ack_2xx_retransmitted_then_ack_timeout(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    log = run([a, b], 0.0, 40.0, lose=lambda ep, what: ep is a)   # A is never heard
    two_hundreds = [t for t, who, what in log if who == "bob" and what == "200 INVITE"]
    acks = [t for t, who, what in log if who == "alice" and what == "ACK!"]
    # T1 doubling up to T2 (§13.3.1.4), and one ACK for each 2xx that reached A.
    assert two_hundreds == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert acks == two_hundreds
    assert a.acks_sent[(sa.call_id, 1, sb.local_tag)] == 11
    assert len({d for d in a.ok_received}) == 1
    assert kinds(a.take()) == ["Answered"]            # one Answered for eleven 2xx
    events = b.take()
    assert kinds(events) == ["OfferReceived", "AckTimeout"]
    assert sb.state is SessionState.CONFIRMED
    # The TU ends it: the BYE gets through.
    b.apply(sb, sb.bye(TIMEOUT), TIMEOUT)
    assert transfer(b, a, now=TIMEOUT) == ["BYE"]
    assert kinds(a.take()) == ["ByeReceived", "Terminated"]


def test_lost_2xx_uac_acks_the_retransmission(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    assert drop(b) == ["200 INVITE"]
    run([b], 0.0, 0.5)
    assert transfer(b, a, now=0.5) == ["200 INVITE"]
    assert kinds(a.take()) == ["Answered"]
    assert transfer(a, b, now=0.5) == ["ACK"]
    assert kinds(b.take()) == ["OfferReceived", "Confirmed"]
    assert sb.next_deadline() is None
    assert run([a, b], 0.5, 60.0) == []               # no more retransmissions


def test_duplicated_2xx_gets_the_same_ack(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    (_dest, ok), = b.outbox
    transfer(b, a)
    a.receive(ok, b.host, 0.1)
    first, second = (data for _, data in a.outbox)
    assert first == second and summary(first) == "ACK"
    assert kinds(a.take()) == ["Answered"]


def test_callee_bye_waits_for_the_ack(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    b.take()
    b.apply(sb, sb.bye(0.1), 0.1)
    assert kinds(b.take()) == ["Terminated"] and sb.state is SessionState.TERMINATED
    assert transfer(b, a, now=0.1) == ["200 INVITE"]  # no BYE before the ACK (§15)
    assert transfer(a, b, now=0.1) == ["ACK"]
    assert b.take() == []                               # no Confirmed for a dead session
    assert transfer(b, a, now=0.1) == ["BYE"]
    assert kinds(a.take()) == ["Answered", "ByeReceived", "Terminated"]


def test_callee_bye_without_ack_goes_at_the_timeout(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    b.apply(sb, sb.bye(0.0), 0.0)
    b.take()
    log = run([a, b], 0.0, 40.0, lose=lambda ep, what: ep is a)
    byes = [t for t, who, what in log if who == "bob" and what == "BYE"]
    assert byes[0] == TIMEOUT                         # then retransmitted: A is never heard
    assert b.take() == []                               # no AckTimeout: the TU hung up already
    assert sb.finished


def test_caller_bye_while_callee_bye_waits(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    b.apply(sb, sb.bye(0.0), 0.0)
    transfer(b, a)
    drop(a)                                             # the ACK is lost
    a.apply(sa, sa.bye(0.1), 0.1)
    assert transfer(a, b, now=0.1) == ["BYE"]
    assert transfer(b, a, now=0.1) == ["200 BYE"]     # nothing left for B to do
    assert sb.finished
    assert [what for _, _, what in run([a, b], 0.1, 60.0)] == []


# re-INVITE -----------------------------------------------------------------------------------


def test_reinvite_hold_and_resume_from_caller(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    assert sa.offer_state is OfferState.LOCAL_OFFER
    reinvite = parse_message(a.outbox[0][1])
    assert isinstance(reinvite, Request) and reinvite.cseq.seq == 2 and reinvite.body == HOLD
    assert reinvite.to.tag == sb.local_tag and str(reinvite.uri) == "sip:bob@10.0.0.2:5060"
    assert transfer(a, b, now=1.0) == ["INVITE"]
    [offer] = b.take()
    assert isinstance(offer, OfferReceived) and not offer.initial and offer.sdp == HOLD
    b.apply(sb, sb.accept(HELD, 1.0), 1.0)
    assert transfer(b, a, now=1.0) == ["200 INVITE"]
    events = a.take()
    assert kinds(events) == ["AnswerReceived"]
    assert isinstance(events[0], AnswerReceived) and events[0].sdp == HELD
    assert transfer(a, b, now=1.0) == ["ACK"]
    assert kinds(b.take()) == ["Confirmed"]
    assert sb.dialog is not None and sb.dialog.remote_cseq == 2
    a.apply(sa, sa.reinvite(OFFER_A, 2.0), 2.0)
    transfer(a, b, now=2.0)
    b.apply(sb, sb.accept(ANSWER_B, 2.0), 2.0)
    transfer(b, a, now=2.0)
    transfer(a, b, now=2.0)
    assert kinds(a.take()) == ["AnswerReceived"] and kinds(b.take()) == ["OfferReceived",
                                                                         "Confirmed"]
    assert sa.offer_state is sb.offer_state is OfferState.STABLE


def test_offerless_reinvite_from_callee(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    b.apply(sb, sb.reinvite(None, 1.0), 1.0)
    assert transfer(b, a, now=1.0) == ["INVITE"]
    [requested] = a.take()
    assert isinstance(requested, OfferRequested) and not requested.initial
    a.apply(sa, sa.accept(OFFER_A, 1.0), 1.0)
    assert sa.offer_state is OfferState.LOCAL_OFFER
    transfer(a, b, now=1.0)
    [offer] = b.take()
    assert isinstance(offer, OfferReceived) and offer.sdp == OFFER_A and not offer.initial
    assert b.outbox == []
    b.apply(sb, sb.ack(ANSWER_B, 1.0), 1.0)
    assert transfer(b, a, now=1.0) == ["ACK"]
    events = a.take()
    assert kinds(events) == ["AnswerReceived", "Confirmed"]
    assert isinstance(events[0], AnswerReceived) and events[0].sdp == ANSWER_B
    assert sa.dialog is not None and sa.dialog.remote_cseq == 1   # B's first request


def test_reinvite_refreshes_the_remote_target(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    assert sb.dialog is not None
    sb.dialog.local_target = parse_address("<sip:bob@10.0.0.2:5099>")   # B moved
    b.apply(sb, sb.reinvite(OFFER_B, 1.0), 1.0)
    transfer(b, a, now=1.0)
    assert sa.dialog is not None and str(sa.dialog.remote_target) == "sip:bob@10.0.0.2:5060"
    a.apply(sa, sa.accept(ANSWER_A, 1.0), 1.0)
    assert str(sa.dialog.remote_target) == "sip:bob@10.0.0.2:5099"   # on success (RFC 6141)


def test_reinvite_rejected_keeps_the_session(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    transfer(a, b, now=1.0)
    b.take()
    b.apply(sb, sb.reject(488, 1.0), 1.0)
    transfer(b, a, now=1.0)
    events = a.take()
    assert kinds(events) == ["ReinviteFailed"]
    assert isinstance(events[0], ReinviteFailed) and events[0].status == 488
    assert sa.state is sb.state is SessionState.CONFIRMED
    assert sa.offer_state is sb.offer_state is OfferState.STABLE


def test_reinvite_481_ends_and_timeout_ends_with_bye(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    transfer(a, b, now=1.0)
    b.take()
    b.apply(sb, sb.reject(481, 1.0), 1.0)
    transfer(b, a, now=1.0)
    events = a.take()
    assert kinds(events) == ["ReinviteFailed", "Terminated"] and sa.reason == "gone"
    assert a.outbox == [] or [summary(d) for _, d in a.outbox] == ["ACK"]

    c = Endpoint("carol", "10.0.0.3")
    d = Endpoint("dave", "10.0.0.4", aliases=("b.example",))
    sc, _sd = setup_call(c, d)
    c.apply(sc, sc.reinvite(HOLD, 1.0), 1.0)
    log = run([c, d], 1.0, 40.0, lose=lambda ep, what: ep is c and what == "INVITE")
    events = c.take()
    assert kinds(events) == ["ReinviteFailed", "Terminated"] and sc.reason == "timeout"
    assert isinstance(events[0], ReinviteFailed) and events[0].status == 408
    assert [(t, what) for t, who, what in log if who == "carol" and what == "BYE"] == [(33.0, "BYE")]
    assert kinds(d.take())[-2:] == ["ByeReceived", "Terminated"]


def test_reinvite_waits_while_an_invite_is_in_progress(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    b.apply(sb, sb.reinvite(OFFER_B, 0.0), 0.0)      # our 2xx still awaits its ACK
    assert [summary(d) for _, d in b.outbox] == ["200 INVITE"]
    transfer(b, a)
    assert transfer(a, b) == ["ACK"]
    assert kinds(b.take()) == ["OfferReceived", "Confirmed"]
    assert [summary(d) for _, d in b.outbox] == ["INVITE"]   # sent as soon as the ACK came
    assert sb.offer_state is OfferState.LOCAL_OFFER


def auto_answer(ep: Endpoint, s: InviteSession, ev: Output, now: float) -> list[Output]:
    """A TU that accepts every re-INVITE offer at once."""
    if isinstance(ev, OfferReceived) and isinstance(ev.message, Request) and not ev.initial:
        return s.accept(ANSWER_A if ep.name == "alice" else ANSWER_B, now)
    return []


def test_glare_both_sides_491_then_retries_succeed() -> None:
    a = Endpoint("alice", "10.0.0.1", randoms=[0.5], react=auto_answer)
    b = Endpoint("bob", "10.0.0.2", aliases=("b.example",), randoms=[0.25], react=auto_answer)
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 5.0), 5.0)
    b.apply(sb, sb.reinvite(OFFER_B, 5.0), 5.0)
    assert transfer(a, b, now=5.0) == ["INVITE"]
    assert transfer(b, a, now=5.0) == ["INVITE", "491 INVITE"]
    assert transfer(a, b, now=5.0) == ["491 INVITE", "ACK"]
    ga, = a.take()
    gb, = b.take()
    assert isinstance(ga, Glare) and isinstance(gb, Glare)
    # §14.1: A owns the Call-ID (2.1-4 s), B does not (0-2 s).
    assert ga.retry_at == pytest.approx(5.0 + 2.1 + 0.5 * 1.9)
    assert gb.retry_at == pytest.approx(5.0 + 0.25 * 2.0)
    assert sa.next_deadline() == pytest.approx(ga.retry_at)
    log = run([a, b], 5.0, 20.0)
    sent = [(t, who, what) for t, who, what in log if what in ("INVITE", "491 INVITE")]
    assert sent == [(pytest.approx(5.5), "bob", "INVITE"),
                    (pytest.approx(8.05), "alice", "INVITE")]
    assert not any("491" in what for _, _, what in log)
    assert kinds(b.take()) == ["AnswerReceived", "OfferReceived", "Confirmed"]
    assert kinds(a.take()) == ["OfferReceived", "Confirmed", "AnswerReceived"]
    assert sa.offer_state is sb.offer_state is OfferState.STABLE
    assert sa.dialog is not None and sb.dialog is not None
    assert sa.dialog.local_cseq == sb.dialog.remote_cseq == 3
    assert sb.dialog.local_cseq == sa.dialog.remote_cseq == 2


def test_second_reinvite_before_first_is_answered_gets_500(a: Endpoint, b: Endpoint) -> None:
    sa, _sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    transfer(a, b, now=1.0)
    assert kinds(b.take()) == ["OfferReceived"]        # B's TU takes its time
    assert sa.dialog is not None
    second = sa.dialog.create_request("INVITE", via=a.config.via, branch="z9hG4bKsecond",
                                      body=OFFER_A)
    a.outbox.append(("10.0.0.2", bytes(second)))
    transfer(a, b, now=1.1)
    (_, data), = b.outbox
    resp = parse_message(data)
    assert isinstance(resp, Response) and resp.status == 500
    assert resp.headers.get("Retry-After") == "5"     # random 0.5 -> 0-10 s
    assert b.take() == []


def test_cancel_of_a_reinvite(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    assert sa.cancel(1.0) == []                         # held until a provisional response
    transfer(a, b, now=1.0)
    b.take()
    run([b], 1.0, 1.2)                                  # B's layer sends 100 Trying
    transfer(b, a, now=1.2)
    assert transfer(a, b, now=1.3) == ["CANCEL"]
    events = b.take()
    assert kinds(events) == ["Cancelled"] and sb.state is SessionState.CONFIRMED
    assert transfer(b, a, now=1.3) == ["200 CANCEL", "487 INVITE"]
    assert kinds(a.take()) == ["ReinviteFailed"] and sa.state is SessionState.CONFIRMED


# In-dialog requests and dialog rules ------------------------------------------------------------


def test_info_and_cseq_too_low(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.request("INFO", 1.0, body=b"Signal=5\r\n",
                           content_type="application/dtmf-relay"), 1.0)
    transfer(a, b, now=1.0)
    [req] = b.take()
    assert isinstance(req, DialogRequest) and req.request.body == b"Signal=5\r\n"
    assert req.request.cseq.seq == 2
    b.apply(sb, sb.respond(req.key, 200, 1.0), 1.0)
    transfer(b, a, now=1.0)
    [resp] = a.take()
    assert isinstance(resp, DialogResponse) and resp.response is not None
    assert resp.response.status == 200 and resp.request.method == "INFO"
    # A request with a CSeq below the last one seen is out of order (§12.2.2).
    assert sa.dialog is not None
    stale = sa.dialog.create_request("INFO", via=a.config.via, branch="z9hG4bKstale")
    stale.headers.set("CSeq", "1 INFO")
    a.outbox.append(("10.0.0.2", bytes(stale)))
    transfer(a, b, now=1.5)
    assert b.take() == []
    assert transfer(b, a, now=1.5) == ["500 INFO"]
    assert sb.state is SessionState.CONFIRMED
    with pytest.raises(ValueError):
        sb.respond(req.key, 200, 2.0)                  # answered already
    with pytest.raises(ValueError):
        sa.request("BYE", 2.0)


def test_request_timeout_reported(a: Endpoint, b: Endpoint) -> None:
    sa, _sb = setup_call(a, b)
    a.apply(sa, sa.request("OPTIONS", 1.0), 1.0)
    run([a, b], 1.0, 40.0, lose=lambda ep, what: ep is a)
    events = a.take()
    assert kinds(events) == ["DialogResponse"]
    assert isinstance(events[0], DialogResponse) and events[0].response is None


def test_bye_in_early_dialog_from_caller(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(180, 0.0), 0.0)
    transfer(b, a)
    with pytest.raises(ValueError):
        sa.bye(0.5)                                    # the caller should cancel() instead
    assert sa.dialog is not None
    bye = sa.dialog.create_request("BYE", via=a.config.via, branch="z9hG4bKearly")
    a.outbox.append(("10.0.0.2", bytes(bye)))
    transfer(a, b, now=0.5)
    events = b.take()
    assert kinds(events) == ["OfferReceived", "ByeReceived", "Terminated"]
    assert transfer(b, a, now=0.5) == ["200 BYE", "487 INVITE"]


def test_late_2xx_after_timeout_is_acked_and_ended() -> None:
    a = Endpoint("alice", "10.0.0.1", gc=False)
    b = Endpoint("bob", "10.0.0.2", aliases=("b.example",))
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    run([a, b], 0.0, 40.0, lose=lambda ep, what: ep is b)   # B's 100 never arrives
    assert kinds(a.take()) == ["Failed", "Terminated"] and sa.reason == "timeout"
    b.outbox.clear()
    b.apply(sb, sb.accept(ANSWER_B, 41.0), 41.0)
    assert transfer(b, a, now=41.0) == ["200 INVITE"]
    assert a.take() == []
    assert transfer(a, b, now=41.0) == ["ACK", "BYE"]
    assert kinds(b.take())[-3:] == ["Confirmed", "ByeReceived", "Terminated"]


def test_strict_and_loose_routers_in_the_route_set(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    # On its way A -> p2 (strict) -> p1 (loose) -> B, each proxy record-routes.
    (dest, data), = a.outbox
    inv = parse_message(data)
    assert isinstance(inv, Request)
    inv.headers.add("Record-Route", f"<sip:{LOOSE};lr>")
    inv.headers.add("Record-Route", f"<sip:{STRICT}>")
    a.outbox = [(dest, bytes(inv))]
    transfer(a, b)
    sb = b.session
    assert sb.dialog is not None and [str(r.uri) for r in sb.dialog.route_set] == [
        f"sip:{LOOSE};lr", f"sip:{STRICT}"]
    b.apply(sb, sb.accept(ANSWER_B, 0.0), 0.0)
    transfer(b, a)
    assert sa.dialog is not None and [str(r.uri) for r in sa.dialog.route_set] == [
        f"sip:{STRICT}", f"sip:{LOOSE};lr"]
    # A's ACK: the strict router is the Request-URI, B's Contact the last Route.
    ack = parse_message(a.outbox[0][1])
    assert isinstance(ack, Request)
    assert str(ack.uri) == f"sip:{STRICT}"
    assert ack.headers.values("Route") == [f"<sip:{LOOSE};lr>", "<sip:bob@10.0.0.2:5060>"]
    path: list[str] = []
    assert transfer(a, b, path=path) == ["ACK"] and path == [STRICT, LOOSE]
    assert kinds(b.take()) == ["OfferReceived", "Confirmed"]
    # B -> A: loose first, so B's Contact... A's Contact is the Request-URI.
    b.apply(sb, sb.reinvite(OFFER_B, 1.0), 1.0)
    rei = parse_message(b.outbox[0][1])
    assert isinstance(rei, Request) and str(rei.uri) == "sip:alice@10.0.0.1:5060"
    assert rei.headers.values("Route") == [f"<sip:{LOOSE};lr>", f"<sip:{STRICT}>"]
    path = []
    assert transfer(b, a, now=1.0, path=path) == ["INVITE"] and path == [LOOSE, STRICT]
    assert kinds(a.take()) == ["Answered", "OfferReceived"]
    # BYE from A arrives at B with B's Contact as Request-URI and no Route left.
    a.apply(sa, sa.accept(ANSWER_A, 1.0), 1.0)
    transfer(a, b, now=1.0)
    transfer(b, a, now=1.0)
    a.apply(sa, sa.bye(2.0), 2.0)
    seen: list[Request] = []
    original = b.receive

    def spy(data: bytes, source: str, now: float) -> None:
        msg = parse_message(data)
        if isinstance(msg, Request):
            seen.append(msg)
        original(data, source, now)

    b.receive = spy  # type: ignore[method-assign]
    transfer(a, b, now=2.0)
    [bye] = [m for m in seen if m.method == "BYE"]
    assert str(bye.uri) == "sip:bob@10.0.0.2:5060" and "Route" not in bye.headers
    assert kinds(b.take())[-2:] == ["ByeReceived", "Terminated"]


# Small things --------------------------------------------------------------------------------


def test_glare_delay_ranges() -> None:
    assert glare_delay(True, 0.0) == 2.1 and glare_delay(True, 0.999999) == 4.0
    assert glare_delay(False, 0.0) == 0.0 and glare_delay(False, 0.999999) == 2.0
    for r in (0.1234, 0.5, 0.77):
        for owner in (True, False):
            value = glare_delay(owner, r)
            assert round(value * 100) == pytest.approx(value * 100)   # 10 ms units


def test_api_misuse_raises(a: Endpoint, b: Endpoint) -> None:
    sa = a.call(0.0)
    transfer(a, b)
    sb = b.session
    with pytest.raises(ValueError):
        sb.provisional(200, 0.0)
    with pytest.raises(ValueError):
        sb.accept(ANSWER_B, 0.0, status=180)
    with pytest.raises(ValueError):
        sb.reject(200, 0.0)
    assert sb.cancel(0.0) == []                         # nothing of ours to cancel
    with pytest.raises(ValueError):
        sa.reinvite(OFFER_A, 0.0)
    with pytest.raises(ValueError):
        sb.bye(0.0)
    with pytest.raises(ValueError):
        sb.start(0.0)
    with pytest.raises(ValueError):
        InviteSession.uas(b.config, TxKey(99, "server", "INVITE", "z9hG4bKx"),
                          _in_dialog(sa.invite))


def _in_dialog(req: Request) -> Request:
    out = req.copy()
    out.headers.set("To", "<sip:bob@b.example>;tag=x")
    return out


def test_hangup_picks_the_right_action(a: Endpoint, b: Endpoint) -> None:
    a.call(0.0)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.provisional(180, 0.0), 0.0)
    transfer(b, a)
    assert [type(o).__name__ for o in sb.hangup(0.1)] == ["SendResponse", "Terminated"]
    c = Endpoint("carol", "10.0.0.3")
    d = Endpoint("dave", "10.0.0.4", aliases=("b.example",))
    sc = c.call(0.0)
    transfer(c, d)
    sd = d.session
    d.apply(sd, sd.provisional(180, 0.0), 0.0)
    transfer(d, c)
    [cancel] = sc.hangup(0.1)
    assert isinstance(cancel, SendRequest) and cancel.request.method == "CANCEL"
    e = Endpoint("erin", "10.0.0.5")
    f = Endpoint("frank", "10.0.0.6", aliases=("b.example",))
    se, _ = setup_call(e, f)
    out = se.hangup(1.0)
    assert isinstance(out[0], SendRequest) and out[0].request.method == "BYE"
    assert se.hangup(1.0) == []


def test_update_is_a_target_refresh_when_accepted(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    assert sb.dialog is not None and sa.dialog is not None
    sa.dialog.local_target = parse_address("<sip:alice@10.0.0.1:7000>")
    a.apply(sa, sa.request("UPDATE", 1.0), 1.0)
    update = parse_message(a.outbox[0][1])
    assert isinstance(update, Request) and update.contacts[0].uri == parse_uri(
        "sip:alice@10.0.0.1:7000")
    transfer(a, b, now=1.0)
    [req] = b.take()
    assert isinstance(req, DialogRequest)
    assert str(sb.dialog.remote_target) == "sip:alice@10.0.0.1:5060"   # not before the 2xx
    b.apply(sb, sb.respond(req.key, 200, 1.0), 1.0)
    assert str(sb.dialog.remote_target) == "sip:alice@10.0.0.1:7000"
    (_, data), = b.outbox
    ok = parse_message(data)
    assert isinstance(ok, Response) and ok.contacts == [b.config.contact]
    transfer(b, a, now=1.0)
    [resp] = a.take()
    assert isinstance(resp, DialogResponse) and resp.response is not None
    # The next request from B goes to A's new target.
    b.apply(sb, sb.bye(2.0), 2.0)
    bye = parse_message(b.outbox[0][1])
    assert isinstance(bye, Request) and str(bye.uri) == "sip:alice@10.0.0.1:7000"


def test_transport_failure_of_the_invite(a: Endpoint) -> None:
    sa = a.call(0.0)
    (key, _), = a._client.items()
    a._run(a.layer.transport_error(key, 0.1), 0.1)
    events = a.take()
    assert kinds(events) == ["Failed", "Terminated"] and sa.reason == "transport"
    assert isinstance(events[0], Failed) and events[0].status == 503


def test_waiting_reinvite_is_replaced_by_a_newer_one() -> None:
    a = Endpoint("alice", "10.0.0.1", randoms=[0.0], react=auto_answer)
    b = Endpoint("bob", "10.0.0.2", aliases=("b.example",), randoms=[0.5], react=auto_answer)
    sa, sb = setup_call(a, b)
    # Glare: B's re-INVITE crosses ours; A (the Call-ID owner) backs off 2.1 s, B 1 s.
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    b.apply(sb, sb.reinvite(OFFER_B, 1.0), 1.0)
    transfer(a, b, now=1.0)
    transfer(b, a, now=1.0)
    transfer(a, b, now=1.0)
    [glare] = a.take()
    assert isinstance(glare, Glare) and glare.retry_at == pytest.approx(3.1)
    a.apply(sa, sa.reinvite(OFFER_A, 1.5), 1.5)         # changed our mind meanwhile
    assert a.outbox == []
    log = run([a, b], 1.5, 10.0)
    invites = [(t, who) for t, who, what in log if what == "INVITE"]
    assert invites == [(pytest.approx(2.0), "bob"), (pytest.approx(3.1), "alice")]
    offers = [e for e in b.take() if isinstance(e, OfferReceived) and not e.initial]
    assert [o.sdp for o in offers] == [OFFER_A]          # the newer offer, once


def test_ack_timeout_for_a_reinvite_2xx(a: Endpoint, b: Endpoint) -> None:
    sa, sb = setup_call(a, b)
    a.apply(sa, sa.reinvite(HOLD, 1.0), 1.0)
    transfer(a, b, now=1.0)
    b.take()
    b.apply(sb, sb.accept(HELD, 1.0), 1.0)
    run([a, b], 1.0, 40.0, lose=lambda ep, what: ep is a and what == "ACK")
    assert kinds(b.take()) == ["AckTimeout"]
    assert sb.state is SessionState.CONFIRMED and sb.offer_state is OfferState.STABLE
    assert sb.next_deadline() is None
    assert kinds(a.take()) == ["AnswerReceived"]


def test_hanging_up_before_answering_an_offer_in_the_2xx_acks_first(a: Endpoint,
                                                                     b: Endpoint) -> None:
    sa = a.call(0.0, body=None)
    transfer(a, b)
    sb = b.session
    b.apply(sb, sb.accept(OFFER_B, 0.0), 0.0)
    transfer(b, a)
    assert kinds(a.take()) == ["Answered", "OfferReceived"]
    out = sa.bye(0.1)
    assert [type(o).__name__ for o in out] == ["SendAck", "SendRequest", "Terminated"]
    ack = out[0]
    assert isinstance(ack, SendAck) and ack.request.body == b""
    a.apply(sa, out, 0.1)
    assert transfer(a, b, now=0.1) == ["ACK", "BYE"]
    events = b.take()
    assert kinds(events)[-4:] == ["AnswerReceived", "Confirmed", "ByeReceived", "Terminated"]
    missing = events[-4]
    assert isinstance(missing, AnswerReceived) and missing.sdp is None   # no answer came
    assert sa.ack(ANSWER_A, 0.2) == []
