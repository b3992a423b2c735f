"""The SIP transaction layer (RFC 3261 §17, updated by RFC 6026) as a pure state machine.

One ``TransactionLayer`` owns every client and server transaction. Inputs (a request or response
from the network, a response or request from the TU, a timer tick, a transport failure) come in
with ``now``; outputs are events: ``Send`` for the transport, the rest for the TU. Deadlines sit in
one heap, so ``on_timer`` and ``next_deadline`` cost O(log n) per timer whatever the number of
transactions; cancelled timers stay in the heap as stale entries, skipped when reached and swept
out when they outnumber the live ones.

On reliable transports (``Peer.reliable``) nothing is retransmitted (no Timers A, E, G) and
Timers D, I, J, K are zero: the transaction ends on the spot, in the same call.

Choices where the RFCs leave room:

- The automatic 100 (Trying) of an INVITE server transaction goes out ``Timers.trying`` (200 ms)
  after the INVITE unless the TU has responded by then (§17.2.1), so a TU that answers at once
  causes no extra message; ``trying=0`` sends it immediately. A retransmitted INVITE that finds
  no provisional response yet gets the 100 at once.
- Timer D is ``max(32 s, 64*T1)`` on unreliable transports: at least 32 s as §17.1.1.2 requires,
  and never shorter than the server's Timer H when T1 is raised.
- An INVITE client transaction in Proceeding has no RFC timer: the far end could keep it forever.
  Timer C (``Timers.c``, > 3 min as §16.6 step 11 wants, restarted by every provisional response)
  bounds it; and once the TU sends a CANCEL for it (same branch), the transaction gives up
  64*T1 later if no final response came (§9.1). Both end in ``TransactionTimeout``.
- RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed, 2xx responses from the TU are
  sent, and an ACK matching the transaction is passed to the TU (``AckReceived`` with its key).
  An ACK for a 2xx normally carries its own branch, matches nothing and reaches the TU the same
  way (without a key).
- A transport error ends the transaction in any state, with ``TransportFailed`` for the TU.
- Every transaction ends with exactly one ``TransactionTerminated``; nothing carries its key, and
  nothing is sent for it, afterwards. The TU must answer every ``RequestReceived`` (CANCEL too).
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pbx.sip.message import Headers, Request, Response
from pbx.sip.peer import Peer
from pbx.sip.uri import SipUri
from pbx.sip.via import MAGIC_COOKIE, Via

__all__ = [
    "AckReceived",
    "Event",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "State",
    "StrayResponse",
    "Timers",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailed",
    "TxKey",
    "response_destination",
]


@dataclass(frozen=True, slots=True)
class Timers:
    """T1 (RTT estimate), T2 (longest retransmit interval), T4 (network lifetime), in seconds.

    ``trying`` is how long an INVITE server transaction waits for the TU before sending 100
    itself; ``c`` bounds an INVITE client transaction in Proceeding (Timer C).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying: float = 0.2
    c: float = 200.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0 and self.trying >= 0
                and self.c > 0):
            raise ValueError(f"invalid transaction timers {self!r}")

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L, M and the CANCEL guard."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Timer D on an unreliable transport."""
        return max(32.0, 64 * self.t1)


class State(enum.Enum):
    """Transaction states (§17 Figures 5-8, RFC 6026 Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TxKey(NamedTuple):
    """Handle of one transaction; ``serial`` makes it unique for the layer's lifetime."""

    serial: int
    role: Literal["client", "server"]
    method: str
    branch: str


# Events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Pass ``message`` to the transport, towards ``peer``."""

    message: Request | Response
    peer: Peer


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (CANCEL included); answer it with ``respond(key, ...)``."""

    key: TxKey
    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that is the TU's: for a 2xx, or matching no transaction (``key`` is None then)."""

    request: Request
    source: Peer
    key: TxKey | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction (every 2xx, retransmissions included, RFC 6026)."""

    key: TxKey
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction (§17.1.3); the TU decides (§16.7, RFC 6026)."""

    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """No final response (Timers B, F, C, CANCEL guard) or no ACK (Timer H)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver for this transaction; it is terminated."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone; its key will not appear again."""

    key: TxKey


Event = (Send | RequestReceived | AckReceived | ResponseReceived | StrayResponse
         | TransactionTimeout | TransportFailed | TransactionTerminated)


def response_destination(req: Request, source: Peer) -> Peer:
    """Where responses to ``req`` go (§18.2.2, RFC 3581): the connection it came on if reliable;
    otherwise the address it really came from, at its source port if the top Via asks for
    ``rport``, else at the Via's sent-by port (5060 by default). Never a host named in the Via."""
    if source.reliable:
        return source
    via = req.top_via
    if "rport" in via.params:
        return source
    return Peer(source.transport, source.host, via.port if via.port is not None else 5060)


# Transactions --------------------------------------------------------------------------------

_Entry = tuple[float, int, "_Tx", str]
_LegacyKey = tuple[str, str | None, str, int, str]
_SKELETON = ("From", "To", "Call-ID", "CSeq", "Timestamp")


class _Tx:
    """State of one transaction. Client: ``peer`` is the destination; server: where responses go."""

    __slots__ = ("ack", "cancelled_at", "client", "interval", "invite", "key", "last", "legacy",
                 "match", "peer", "reliable", "request", "skeleton", "state", "timers", "to_tag",
                 "to_tags")

    def __init__(self, key: TxKey, request: Request | None, peer: Peer, state: State) -> None:
        self.key = key
        self.client = key.role == "client"
        self.invite = key.method == "INVITE"
        self.request = request                   # client only: what (re)transmissions send
        self.peer = peer
        self.reliable = peer.reliable
        self.state = state
        self.timers: dict[str, int] = {}          # timer name -> sequence of its live heap entry
        self.interval = 0.0                       # current A / E / G interval
        self.last: Response | None = None         # server: last response sent
        self.ack: Request | None = None           # INVITE client: ACK for the non-2xx final
        self.cancelled_at: float | None = None    # INVITE client: when the TU sent a CANCEL
        self.match: tuple[str, str, int | None, str] | None = None  # cookie server: index key
        self.legacy: _LegacyKey | None = None     # RFC 2543 server: index key
        self.to_tag: str | None = None            # RFC 2543 server: To tag of the request
        self.to_tags: set[str | None] = set()     # RFC 2543 INVITE server: To tags of finals
        self.skeleton: list[tuple[str, str]] = []  # INVITE server: headers for the 100


class TransactionLayer:
    """All transactions of one endpoint; see the module docstring."""

    _sweep_min = 64  # stale heap entries tolerated before a sweep is considered

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._txs: dict[TxKey, _Tx] = {}
        self._clients: dict[tuple[str, str], _Tx] = {}                    # (branch, method)
        self._servers: dict[tuple[str, str, int | None, str], _Tx] = {}  # branch, sent-by, method
        self._legacy: dict[_LegacyKey, list[_Tx]] = {}
        self._heap: list[_Entry] = []
        self._stale = 0
        self._seq = 0
        self._serial = 0

    def __len__(self) -> int:
        """Live transactions."""
        return len(self._txs)

    def state(self, key: TxKey) -> State | None:
        """The state of a transaction; Terminated once it is gone, None for a foreign key."""
        tx = self._txs.get(key)
        if tx is not None:
            return tx.state
        return State.TERMINATED if 0 < key.serial <= self._serial else None

    # Client side ------------------------------------------------------------------------------
    def send_request(self, req: Request, dest: Peer, now: float) -> tuple[TxKey, list[Event]]:
        """Start a client transaction for ``req``, whose top Via already carries its branch."""
        method = req.method
        branch = req.branch
        if method == "ACK":
            raise ValueError("an ACK is not sent through a client transaction")
        if not branch:
            raise ValueError("the request's top Via has no branch")
        match = (branch, method)
        if match in self._clients:
            raise ValueError(f"a client transaction already uses branch {branch!r} for {method}")
        key = self._key("client", method, branch)
        t = self.timers
        tx = _Tx(key, req, dest, State.CALLING if method == "INVITE" else State.TRYING)
        self._txs[key] = tx
        self._clients[match] = tx
        if not tx.reliable:
            tx.interval = t.t1
            self._arm(tx, "A" if tx.invite else "E", now + t.t1)
        self._arm(tx, "B" if tx.invite else "F", now + t.timeout)
        if method == "CANCEL":
            invite = self._clients.get((branch, "INVITE"))
            if invite is not None and invite.state in (State.CALLING, State.PROCEEDING) \
                    and invite.cancelled_at is None:
                invite.cancelled_at = now
                if invite.state is State.PROCEEDING:
                    self._arm_c(invite, now)
        return key, [Send(req, dest)]

    def receive_response(self, resp: Response, source: Peer, now: float) -> list[Event]:
        """A response from the network: to its client transaction (§17.1.3), or stray."""
        tx = self._clients.get((resp.branch, resp.cseq.method))
        if tx is None:
            return [StrayResponse(resp, source)]
        out: list[Event] = []
        if tx.invite:
            self._invite_client_response(tx, resp, now, out)
        else:
            self._client_response(tx, resp, now, out)
        return out

    def _invite_client_response(self, tx: _Tx, resp: Response, now: float,
                                out: list[Event]) -> None:
        status = resp.status
        state = tx.state
        if state is State.CALLING or state is State.PROCEEDING:
            out.append(ResponseReceived(tx.key, resp))
            if status < 200:
                if state is State.CALLING:
                    self._disarm(tx, "A")
                    self._disarm(tx, "B")
                    tx.state = State.PROCEEDING
                self._arm_c(tx, now)
            elif status < 300:
                self._clear(tx)
                tx.state = State.ACCEPTED
                self._arm(tx, "M", now + self.timers.timeout)
            else:
                self._clear(tx)
                assert tx.request is not None
                tx.ack = _ack_for(tx.request, resp)
                tx.state = State.COMPLETED
                out.append(Send(tx.ack, tx.peer))
                if tx.reliable:
                    self._terminate(tx, out)
                else:
                    self._arm(tx, "D", now + self.timers.d)
        elif state is State.COMPLETED:
            if status >= 300 and tx.ack is not None:
                out.append(Send(tx.ack, tx.peer))
        elif state is State.ACCEPTED and 200 <= status < 300:
            out.append(ResponseReceived(tx.key, resp))

    def _client_response(self, tx: _Tx, resp: Response, now: float, out: list[Event]) -> None:
        if tx.state is not State.TRYING and tx.state is not State.PROCEEDING:
            return  # Completed: retransmissions of the final are absorbed
        out.append(ResponseReceived(tx.key, resp))
        if resp.status < 200:
            tx.state = State.PROCEEDING
            return
        self._clear(tx)
        tx.state = State.COMPLETED
        if tx.reliable or self.timers.t4 <= 0:
            self._terminate(tx, out)
        else:
            self._arm(tx, "K", now + self.timers.t4)

    def _arm_c(self, tx: _Tx, now: float) -> None:
        at = now + self.timers.c
        if tx.cancelled_at is not None:
            at = min(at, tx.cancelled_at + self.timers.timeout)
        self._arm(tx, "C", at)

    # Server side ------------------------------------------------------------------------------
    def receive_request(self, req: Request, source: Peer, now: float) -> list[Event]:
        """A request from the network: a retransmission is absorbed (the last response is sent
        again), an ACK goes to its INVITE transaction or to the TU, anything else starts a
        server transaction and reaches the TU."""
        method = req.method
        tx = self._match_server(req, "INVITE" if method == "ACK" else method)
        out: list[Event] = []
        if method == "ACK":
            if tx is None:
                out.append(AckReceived(req, source))
            else:
                self._server_ack(tx, req, source, now, out)
        elif tx is not None:
            self._server_retransmission(tx, out)
        else:
            self._new_server(req, source, now, out)
        return out

    def find_invite_for_cancel(self, cancel: Request) -> TxKey | None:
        """The live INVITE server transaction a CANCEL is for (§9.2), or None."""
        tx = self._match_server(cancel, "INVITE")
        return tx.key if tx is not None else None

    def respond(self, key: TxKey, resp: Response, now: float) -> list[Event]:
        """Send the TU's response on a server transaction; late or surplus responses (the
        transaction ended, or already has its final) are dropped."""
        tx = self._txs.get(key)
        if tx is None:
            return []
        if tx.client:
            raise ValueError("respond() on a client transaction")
        if resp.cseq.method != key.method:
            raise ValueError(f"a {resp.cseq.method} response on a {key.method} transaction")
        status = resp.status
        out: list[Event] = []
        state = tx.state
        if tx.invite:
            if state is State.PROCEEDING:
                self._disarm(tx, "100")
                tx.last = resp
                out.append(Send(resp, tx.peer))
                if status >= 200:
                    if tx.legacy is not None:
                        tx.to_tags.add(resp.to.tag)
                    t = self.timers
                    if status < 300:
                        tx.state = State.ACCEPTED
                        self._arm(tx, "L", now + t.timeout)
                    else:
                        tx.state = State.COMPLETED
                        if not tx.reliable:
                            tx.interval = t.t1
                            self._arm(tx, "G", now + t.t1)
                        self._arm(tx, "H", now + t.timeout)
            elif state is State.ACCEPTED and 200 <= status < 300:
                if tx.legacy is not None:
                    tx.to_tags.add(resp.to.tag)
                out.append(Send(resp, tx.peer))
        elif state is State.TRYING or state is State.PROCEEDING:
            tx.last = resp
            out.append(Send(resp, tx.peer))
            if status < 200:
                tx.state = State.PROCEEDING
            else:
                tx.state = State.COMPLETED
                if tx.reliable:
                    self._terminate(tx, out)
                else:
                    self._arm(tx, "J", now + self.timers.timeout)
        return out

    def _match_server(self, req: Request, method: str) -> _Tx | None:
        """§17.2.3: branch + sent-by + method, or the RFC 2543 comparison without the cookie."""
        via = req.top_via
        branch = via.branch
        if branch and branch.startswith(MAGIC_COOKIE):
            return self._servers.get((branch, via.host.lower(), via.port, method))
        candidates = self._legacy.get(_legacy_key(req, via))
        if not candidates:
            return None
        tag = req.to.tag
        for tx in candidates:
            if tx.key.method != method:
                continue
            if req.method == "ACK":
                if tag in tx.to_tags:
                    return tx
            elif tag == tx.to_tag:
                return tx
        return None

    def _new_server(self, req: Request, source: Peer, now: float, out: list[Event]) -> None:
        via = req.top_via
        branch = via.branch or ""
        method = req.method
        key = self._key("server", method, branch)
        invite = method == "INVITE"
        # The request is not kept: a server transaction needs only its keys and last response,
        # and holding every parsed request for Timer J's 32 s is most of the live heap.
        tx = _Tx(key, None, response_destination(req, source),
                 State.PROCEEDING if invite else State.TRYING)
        self._txs[key] = tx
        if branch.startswith(MAGIC_COOKIE):
            match = (branch, via.host.lower(), via.port, method)
            tx.match = match
            self._servers[match] = tx
        else:
            tx.legacy = _legacy_key(req, via)
            tx.to_tag = req.to.tag
            self._legacy.setdefault(tx.legacy, []).append(tx)
        if invite:
            h = req.headers
            tx.skeleton = [("Via", v) for v in h.get_all("Via")]
            tx.skeleton += [(n, v) for n in _SKELETON for v in h.get_all(n)]
            if self.timers.trying <= 0:
                self._send_trying(tx, out)
            else:
                self._arm(tx, "100", now + self.timers.trying)
        out.append(RequestReceived(key, req, source))

    def _server_retransmission(self, tx: _Tx, out: list[Event]) -> None:
        state = tx.state
        if tx.invite:
            if state is State.PROCEEDING:
                if tx.last is None:
                    self._disarm(tx, "100")
                    self._send_trying(tx, out)
                else:
                    out.append(Send(tx.last, tx.peer))
            elif state is State.COMPLETED and tx.last is not None:
                out.append(Send(tx.last, tx.peer))
            # Confirmed and Accepted absorb retransmissions (RFC 6026 §7.1)
        elif (state is State.PROCEEDING or state is State.COMPLETED) and tx.last is not None:
            out.append(Send(tx.last, tx.peer))

    def _server_ack(self, tx: _Tx, req: Request, source: Peer, now: float,
                    out: list[Event]) -> None:
        if tx.state is State.COMPLETED:
            self._clear(tx)
            tx.state = State.CONFIRMED
            if tx.reliable or self.timers.t4 <= 0:
                self._terminate(tx, out)
            else:
                self._arm(tx, "I", now + self.timers.t4)
        elif tx.state is State.ACCEPTED:
            out.append(AckReceived(req, source, tx.key))
        # Confirmed absorbs ACK retransmissions; an ACK before any final means nothing.

    def _send_trying(self, tx: _Tx, out: list[Event]) -> None:
        trying = Response(100, headers=Headers(tx.skeleton))
        tx.last = trying
        out.append(Send(trying, tx.peer))

    # Failures and timers ----------------------------------------------------------------------
    def transport_error(self, key: TxKey, now: float) -> list[Event]:
        """The transport failed to send for this transaction: it ends, and the TU is told."""
        tx = self._txs.get(key)
        if tx is None:
            return []
        out: list[Event] = [TransportFailed(key)]
        self._terminate(tx, out)
        return out

    def next_deadline(self) -> float | None:
        """When ``on_timer`` should next be called, or None if no timer is running."""
        heap = self._heap
        while heap:
            _, seq, tx, name = heap[0]
            if tx.timers.get(name) == seq:
                return heap[0][0]
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def on_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx, name = heapq.heappop(heap)
            if tx.timers.get(name) != seq:
                self._stale -= 1
                continue
            del tx.timers[name]
            self._fire(tx, name, now, out)
        return out

    def _fire(self, tx: _Tx, name: str, now: float, out: list[Event]) -> None:
        t = self.timers
        if name == "A":                      # INVITE retransmit, doubling without a cap
            assert tx.request is not None
            out.append(Send(tx.request, tx.peer))
            tx.interval *= 2
            self._arm(tx, "A", now + tx.interval)
        elif name == "E":                    # non-INVITE retransmit, doubling up to T2
            assert tx.request is not None
            out.append(Send(tx.request, tx.peer))
            tx.interval = t.t2 if tx.state is State.PROCEEDING else min(2 * tx.interval, t.t2)
            self._arm(tx, "E", now + tx.interval)
        elif name == "G":                    # non-2xx final retransmit, doubling up to T2
            if tx.last is not None:
                out.append(Send(tx.last, tx.peer))
            tx.interval = min(2 * tx.interval, t.t2)
            self._arm(tx, "G", now + tx.interval)
        elif name == "100":
            self._send_trying(tx, out)
        elif name in ("B", "C", "F", "H"):   # no final response / no ACK
            out.append(TransactionTimeout(tx.key))
            self._terminate(tx, out)
        else:                                # D, I, J, K, L, M: the lingering is over
            self._terminate(tx, out)

    # Bookkeeping -------------------------------------------------------------------------------
    def _key(self, role: Literal["client", "server"], method: str, branch: str) -> TxKey:
        self._serial += 1
        return TxKey(self._serial, role, method, branch)

    def _arm(self, tx: _Tx, name: str, at: float) -> None:
        if name in tx.timers:
            self._stale += 1
        self._seq += 1
        tx.timers[name] = self._seq
        heapq.heappush(self._heap, (at, self._seq, tx, name))

    def _disarm(self, tx: _Tx, name: str) -> None:
        if tx.timers.pop(name, None) is not None:
            self._stale += 1
            self._sweep()

    def _clear(self, tx: _Tx) -> None:
        if tx.timers:
            self._stale += len(tx.timers)
            tx.timers.clear()
            self._sweep()

    def _sweep(self) -> None:
        """Drop stale heap entries once they are the majority (amortized O(1) per cancel)."""
        if self._stale > self._sweep_min and 2 * self._stale > len(self._heap):
            heap = self._heap  # in place: on_timer holds a reference to it
            heap[:] = [e for e in heap if e[2].timers.get(e[3]) == e[1]]
            heapq.heapify(heap)
            self._stale = 0

    def _terminate(self, tx: _Tx, out: list[Event]) -> None:
        self._clear(tx)
        tx.state = State.TERMINATED
        del self._txs[tx.key]
        if tx.client:
            del self._clients[(tx.key.branch, tx.key.method)]
        elif tx.match is not None:
            del self._servers[tx.match]
        elif tx.legacy is not None:
            candidates = self._legacy.get(tx.legacy)
            if candidates is not None:
                candidates.remove(tx)
                if not candidates:
                    del self._legacy[tx.legacy]
        out.append(TransactionTerminated(tx.key))


def _legacy_key(req: Request, via: Via) -> _LegacyKey:
    """The RFC 2543 matching fields but the To tag and method (§17.2.3)."""
    return (str(req.uri), req.from_.tag, req.call_id, req.cseq.seq, str(via))


def _ack_for(req: Request, resp: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): the request's Request-URI, Call-ID,
    From, CSeq number, top Via and Route headers; the response's To."""
    uri = req.uri.copy() if isinstance(req.uri, SipUri) else req.uri
    h = Headers()
    h.add("Via", req.headers.values("Via")[0])
    for route in req.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", req.headers.get("Max-Forwards") or "70")
    h.add("From", req.headers.get("From") or "")
    h.add("To", resp.headers.get("To") or "")
    h.add("Call-ID", req.call_id)
    h.add("CSeq", f"{req.cseq.seq} ACK")
    return Request("ACK", uri, h)
