"""Transaction layer invariants over random input sequences (RFC 3261 §17, RFC 6026).

A driver plays network, TU and clock against one ``TransactionLayer``: new client and server
transactions over UDP and TCP (with and without the magic cookie), responses of every class,
retransmissions, ACKs, CANCELs, transport errors, and timer calls made either exactly at the
deadline or late. After every input it checks that

- no event names a transaction after its ``TransactionTerminated``, and nothing is sent for it;
- every transaction is terminated exactly once;
- ``next_deadline()`` is None or later than ``now`` (every due timer fired, none scheduled in the
  past), and a second ``on_timer(now)`` does nothing;

and at the end, once the TU has answered every server transaction, that every transaction ends
within a bounded time of the last input that concerned it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip.message import Request, Response, parse_message
from pbx.sip.peer import Peer
from pbx.sip.transaction import (
    Event,
    RequestReceived,
    Send,
    State,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TxKey,
)

STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 500, 603]
TIMERS = [Timers(), Timers(t1=0.1, t2=1.0, t4=1.0, trying=0.05, c=190.0),
          Timers(t1=1.0, t2=4.0, t4=0.0, trying=0.0, c=181.0)]


def _request(method: str, branch: str, transport: str, cseq_method: str | None = None,
             to_tag: str | None = None) -> Request:
    lines = [
        f"{method} sip:1002@pbx.local SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} 10.0.0.1:5062;branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:1001@pbx.local>;tag=f1",
        "To: <sip:1002@pbx.local>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {branch}@10.0.0.1",
        f"CSeq: 1 {cseq_method or method}",
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def _response(req: Request, status: int) -> Response:
    resp = Response(status)
    for value in req.headers.get_all("Via"):
        resp.headers.add("Via", value)
    resp.headers.add("From", req.headers.get("From") or "")
    resp.headers.add("To", (req.headers.get("To") or "") + (";tag=t1" if status > 100 else ""))
    resp.headers.add("Call-ID", req.call_id)
    resp.headers.add("CSeq", req.headers.get("CSeq") or "")
    return resp


@dataclass
class _Tx:
    key: TxKey
    request: Request
    peer: Peer


@dataclass
class Driver:
    timers: Timers
    sweep_always: bool = False
    layer: TransactionLayer = field(init=False)
    now: float = 0.0
    clients: list[_Tx] = field(default_factory=list)
    servers: list[_Tx] = field(default_factory=list)
    owner: dict[tuple[str, str, str], TxKey] = field(default_factory=dict)  # Send -> its tx
    terminated: dict[TxKey, float] = field(default_factory=dict)
    last_input: dict[TxKey, float] = field(default_factory=dict)
    serial: int = 0
    ticks: list[float] = field(default_factory=list)               # on_timer calls

    def __post_init__(self) -> None:
        self.layer = TransactionLayer(self.timers)
        if self.sweep_always:
            self.layer._sweep_min = 0  # sweep the timer heap at every chance

    # Checking ---------------------------------------------------------------------------------
    def check(self, events: list[Event]) -> None:
        for ev in events:  # a new transaction may send (its 100) before it is announced
            if isinstance(ev, RequestReceived):
                self.owner[("server", ev.request.branch, ev.key.method)] = ev.key
        for ev in events:
            if isinstance(ev, Send):
                msg = ev.message
                method = msg.method if isinstance(msg, Request) else msg.cseq.method
                role = "client" if isinstance(msg, Request) else "server"
                owner = self.owner[(role, msg.branch, "INVITE" if method == "ACK" else method)]
                assert owner not in self.terminated, f"Send after Terminated: {ev}"
                continue
            if isinstance(ev, RequestReceived):
                assert ev.key not in self.terminated and ev.key not in self.last_input
                self.servers.append(_Tx(ev.key, ev.request, ev.source))
                self.last_input[ev.key] = self.now
                continue
            key = getattr(ev, "key", None)
            if key is None:
                continue
            assert key not in self.terminated, f"event after Terminated: {ev}"
            if isinstance(ev, TransactionTerminated):
                self.terminated[key] = self.now
                assert self.layer.state(key) is State.TERMINATED
        deadline = self.layer.next_deadline()
        assert deadline is None or deadline > self.now, (deadline, self.now)

    def pick(self, pool: list[_Tx], index: int) -> _Tx | None:
        """Mostly a live transaction (odd index), sometimes any, ended ones included."""
        live = [tx for tx in pool if tx.key not in self.terminated]
        choices = live if live and index % 2 else pool
        return choices[index // 2 % len(choices)] if choices else None

    def check_matching(self, req: Request, events: list[Event]) -> None:
        """A request starts a transaction iff none with its branch and method is alive."""
        previous = self.owner.get(("server", req.branch, req.method))
        is_new = any(isinstance(ev, RequestReceived) for ev in events)
        assert is_new == (previous is None or previous in self.terminated)

    def touch(self, key: TxKey) -> None:
        if key not in self.terminated:
            self.last_input[key] = self.now

    # Inputs -----------------------------------------------------------------------------------
    def tick(self, late: float | None) -> None:
        deadline = self.layer.next_deadline()
        if late is None:
            if deadline is None:
                return
            self.now = deadline          # the shell wakes up exactly on time
        else:
            self.now += late             # or late, or early
        self.ticks.append(self.now)
        self.check(self.layer.on_timer(self.now))
        assert self.layer.on_timer(self.now) == []

    def new_client(self, method: str, transport: str) -> None:
        self.serial += 1
        branch = f"z9hG4bKc{self.serial}"
        req = _request(method, branch, transport)
        peer = Peer(transport, "10.0.0.2", 5060)
        key, events = self.layer.send_request(req, peer, self.now)
        self.owner[("client", branch, method)] = key
        self.clients.append(_Tx(key, req, peer))
        self.last_input[key] = self.now
        self.check(events)

    def new_server(self, method: str, transport: str, cookie: bool) -> None:
        self.serial += 1
        branch = f"z9hG4bKs{self.serial}" if cookie else f"old{self.serial}"
        invites = {tx.request.branch: tx.key for tx in self.servers
                   if tx.request.method == "INVITE" and tx.peer.transport == transport}
        if method == "CANCEL" and invites:  # mostly for an INVITE we have seen
            branch = sorted(invites)[self.serial % len(invites)]
        req = _request(method, branch, transport)
        events = self.layer.receive_request(req, Peer(transport, "192.0.2.7", 40000), self.now)
        if method == "CANCEL":  # §9.2: the INVITE it cancels, if still there; never itself
            invite = invites.get(branch)
            expected = invite if invite is not None and invite not in self.terminated else None
            assert self.layer.find_invite_for_cancel(req) == expected
        self.check_matching(req, events)
        self.check(events)

    def response(self, index: int, status: int) -> None:
        tx = self.pick(self.clients, index)
        if tx is None:
            return
        self.touch(tx.key)
        self.check(self.layer.receive_response(_response(tx.request, status), tx.peer, self.now))

    def cancel(self, index: int) -> None:
        tx = self.pick([tx for tx in self.clients if tx.request.method == "INVITE"], index)
        if tx is None or ("client", tx.request.branch, "CANCEL") in self.owner:
            return
        cancel = _request("CANCEL", tx.request.branch, tx.peer.transport)
        key, events = self.layer.send_request(cancel, tx.peer, self.now)
        self.owner[("client", cancel.branch, "CANCEL")] = key
        self.clients.append(_Tx(key, cancel, tx.peer))
        self.last_input[key] = self.now
        self.touch(tx.key)
        self.check(events)

    def retransmit(self, index: int) -> None:
        tx = self.pick(self.servers, index)
        if tx is None:
            return
        self.touch(tx.key)
        events = self.layer.receive_request(tx.request, tx.peer, self.now)
        self.check_matching(tx.request, events)
        self.check(events)

    def ack(self, index: int, same_branch: bool) -> None:
        tx = self.pick([tx for tx in self.servers if tx.request.method == "INVITE"], index)
        if tx is None:
            return
        branch = tx.request.branch if same_branch else f"z9hG4bKack{self.serial}"
        ack = _request("ACK", branch, tx.peer.transport, to_tag="t1")
        self.touch(tx.key)
        self.check(self.layer.receive_request(ack, tx.peer, self.now))

    def respond(self, index: int, status: int) -> None:
        tx = self.pick(self.servers, index)
        if tx is None:
            return
        self.touch(tx.key)
        self.check(self.layer.respond(tx.key, _response(tx.request, status), self.now))

    def error(self, index: int, client: bool) -> None:
        tx = self.pick(self.clients if client else self.servers, index)
        if tx is None:
            return
        self.touch(tx.key)
        self.check(self.layer.transport_error(tx.key, self.now))

    # Ending -----------------------------------------------------------------------------------
    def finish(self) -> None:
        """The TU answers whatever it left open; then the clock runs until nothing is left."""
        for tx in self.servers:
            if tx.key not in self.terminated:
                self.touch(tx.key)
                self.check(self.layer.respond(tx.key, _response(tx.request, 500), self.now))
        for _ in range(100_000):
            if self.layer.next_deadline() is None:
                break
            self.tick(None)
        assert self.layer.next_deadline() is None
        assert len(self.layer) == 0
        t = self.timers
        bound = max(t.c, t.d, t.timeout, t.t4)
        issued = {tx.key for tx in self.clients} | {tx.key for tx in self.servers}
        assert set(self.terminated) == issued
        for key, when in self.terminated.items():
            # Ended within ``bound`` of its last input, or at the first timer call after that.
            due = self.last_input[key] + bound
            later = self.ticks[bisect.bisect_left(self.ticks, due - 1e-9):]
            assert when <= max([due, *later[:1]]), (key, when, self.last_input[key])


_INDEX = st.integers(min_value=0, max_value=31)
_TRANSPORT = st.sampled_from(["udp", "tcp"])
_NEW_CLIENT = st.tuples(st.just("new_client"), st.sampled_from(["INVITE", "INVITE", "OPTIONS", "BYE"]),
                        _TRANSPORT)
_NEW_SERVER = st.tuples(st.just("new_server"), st.sampled_from(["INVITE", "OPTIONS", "CANCEL"]),
                        _TRANSPORT, st.booleans())
_RESPONSE = st.tuples(st.just("response"), _INDEX, st.sampled_from(STATUSES))
_RESPOND = st.tuples(st.just("respond"), _INDEX, st.sampled_from(STATUSES))
_SHORT_TICK = st.tuples(st.just("tick"), st.one_of(
    st.none(), st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0, 4.0, 5.0]),
    st.floats(min_value=0.0, max_value=10.0)))
_LONG_TICK = st.tuples(st.just("tick"), st.sampled_from([31.9, 32.0, 64.0, 200.0, 250.0]))
# one_of has no weights: the common inputs are listed more than once.
_OPS = st.one_of(
    _NEW_CLIENT, _NEW_CLIENT, _NEW_SERVER, _NEW_SERVER,
    _RESPONSE, _RESPONSE, _RESPONSE, _RESPOND, _RESPOND, _RESPOND,
    _SHORT_TICK, _SHORT_TICK, _SHORT_TICK, _LONG_TICK,
    st.tuples(st.just("cancel"), _INDEX),
    st.tuples(st.just("retransmit"), _INDEX),
    st.tuples(st.just("ack"), _INDEX, st.booleans()),
    st.tuples(st.just("error"), _INDEX, st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(timers=st.sampled_from(TIMERS), sweep=st.booleans(),
       ops=st.lists(_OPS, min_size=30, max_size=150))
def test_every_transaction_ends_and_is_silent_afterwards(timers: Timers, sweep: bool,
                                                         ops: list[tuple[object, ...]]) -> None:
    d = Driver(timers, sweep)
    for op in ops:
        name, *args = op
        getattr(d, str(name))(*args)
    d.finish()
