"""Transaction layer (RFC 3261 §17, RFC 6026): every state and timer of the four machines,
driven with a ``now`` variable and no event loop."""

from __future__ import annotations

import pytest

from pbx.sip.message import Request, Response, parse_message
from pbx.sip.peer import Peer
from pbx.sip.transaction import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    State,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    TxKey,
    response_destination,
)

UDP_NEXT = Peer("udp", "10.0.0.2", 5060)        # where client requests go
TCP_NEXT = Peer("tcp", "10.0.0.2", 5060)
UDP_FROM = Peer("udp", "192.0.2.7", 40000)      # where server requests come from (NAT'd)
TCP_FROM = Peer("tcp", "192.0.2.7", 40001)


def request(method: str = "INVITE", branch: str | None = "z9hG4bKb1", *,
            via: str = "10.0.0.1:5062", rport: bool = False, transport: str = "UDP",
            cseq: int = 1, cseq_method: str | None = None, from_tag: str = "f1",
            to_tag: str | None = None, uri: str = "sip:1002@pbx.local",
            extra: tuple[str, ...] = (), body: str = "") -> Request:
    params = (f";branch={branch}" if branch is not None else "") + (";rport" if rport else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via}{params}",
        "Max-Forwards: 70",
        f"From: <sip:1001@pbx.local>;tag={from_tag}",
        "To: <sip:1002@pbx.local>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: c1@10.0.0.1",
        f"CSeq: {cseq} {cseq_method or method}",
        *extra,
        f"Content-Length: {len(body)}",
        "",
        body,
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int, to_tag: str | None = "t1") -> Response:
    """A response as the far end builds it (§8.2.6): Vias, From, To (+tag), Call-ID, CSeq."""
    resp = Response(status)
    for value in req.headers.get_all("Via"):
        resp.headers.add("Via", value)
    resp.headers.add("From", req.headers.get("From") or "")
    to = req.headers.get("To") or ""
    if to_tag and req.to.tag is None:
        to += f";tag={to_tag}"
    resp.headers.add("To", to)
    resp.headers.add("Call-ID", req.call_id)
    resp.headers.add("CSeq", req.headers.get("CSeq") or "")
    return resp


def new_key(events: list[Event]) -> TxKey:
    """The key of the one new server transaction these events announce."""
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    return events[0].key


def sent(events: list[Event], index: int, peer: Peer) -> Request | Response:
    """The message of ``events[index]``, which must be a Send towards ``peer``."""
    event = events[index]
    assert isinstance(event, Send) and event.peer == peer
    return event.message


def sends(events: list[Event]) -> list[Send]:
    return [e for e in events if isinstance(e, Send)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def run_until(layer: TransactionLayer, until: float) -> list[tuple[float, Event]]:
    """Fire timers exactly at their deadlines up to ``until``, as the shell would."""
    out: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        out.extend((deadline, e) for e in layer.on_timer(deadline))
    return out


def send_times(fired: list[tuple[float, Event]]) -> list[float]:
    return [t for t, e in fired if isinstance(e, Send)]


# Timers --------------------------------------------------------------------------------------


def test_timer_defaults_and_derived_values() -> None:
    t = Timers()
    assert (t.t1, t.t2, t.t4, t.trying) == (0.5, 4.0, 5.0, 0.2)
    assert t.c > 180  # Timer C is greater than 3 minutes (§16.6 step 11)
    assert t.timeout == 32.0
    assert t.d == 32.0
    assert Timers(t1=1.0).d == 64.0      # never shorter than the server's Timer H
    assert Timers(t1=0.1).d == 32.0      # but at least 32 s


@pytest.mark.parametrize("kwargs", [{"t1": 0}, {"t1": 5.0, "t2": 4.0}, {"t4": -1},
                                    {"trying": -0.1}, {"c": 0}])
def test_invalid_timers_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Timers(**kwargs)


# INVITE client ---------------------------------------------------------------------------------


def test_invite_client_timer_a_doubles_without_cap_then_timer_b() -> None:
    layer = TransactionLayer(Timers())
    req = request()
    key, events = layer.send_request(req, UDP_NEXT, 0.0)
    assert events == [Send(req, UDP_NEXT)]
    assert layer.state(key) is State.CALLING
    fired = run_until(layer, 100.0)
    # A: T1, 2T1, 4T1, ... with no T2 cap for INVITE; B = 64*T1 ends it.
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(e.message is req and e.peer == UDP_NEXT for _, e in fired if isinstance(e, Send))
    assert [(t, type(e)) for t, e in fired if not isinstance(e, Send)] == [
        (32.0, TransactionTimeout), (32.0, TransactionTerminated)]
    assert layer.state(key) is State.TERMINATED
    assert layer.next_deadline() is None and len(layer) == 0


def test_invite_client_timer_a_follows_t1() -> None:
    layer = TransactionLayer(Timers(t1=0.1, t2=4.0))
    layer.send_request(request(), UDP_NEXT, 10.0)
    fired = run_until(layer, 100.0)
    assert send_times(fired) == pytest.approx([10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    assert [t for t, e in fired if isinstance(e, TransactionTimeout)] == pytest.approx([16.4])


def test_invite_client_reliable_has_no_timer_a_but_timer_b() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request(transport="TCP"), TCP_NEXT, 0.0)
    assert layer.next_deadline() == 32.0
    fired = run_until(layer, 100.0)
    assert fired == [(32.0, TransactionTimeout(key)), (32.0, TransactionTerminated(key))]


def test_invite_client_provisional_stops_a_and_b_and_starts_c() -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    assert send_times(run_until(layer, 0.6)) == [0.5]
    ringing = response(req, 180)
    assert layer.receive_response(ringing, UDP_NEXT, 0.7) == [ResponseReceived(key, ringing)]
    assert layer.state(key) is State.PROCEEDING
    assert layer.next_deadline() == pytest.approx(200.7)          # Timer C, not A or B
    later = response(req, 183)
    assert layer.receive_response(later, UDP_NEXT, 50.0) == [ResponseReceived(key, later)]
    assert layer.next_deadline() == pytest.approx(250.0)          # restarted by a provisional
    fired = run_until(layer, 1000.0)
    assert fired == [(250.0, TransactionTimeout(key)), (250.0, TransactionTerminated(key))]


def test_invite_client_non2xx_final_builds_the_ack() -> None:
    layer = TransactionLayer()
    req = request(extra=(
        "Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKupstream;received=10.9.9.8",
        "Route: <sip:p1.example;lr>, <sip:p2.example;lr>",
        "Route: <sip:p3.example;lr>",
        "Contact: <sip:1001@10.0.0.1:5062>",
        "Content-Type: application/sdp",
    ), body="v=0\r\n")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    busy = response(req, 486, to_tag="callee")
    events = layer.receive_response(busy, UDP_NEXT, 0.2)
    assert kinds(events) == ["ResponseReceived", "Send"]
    assert events[0] == ResponseReceived(key, busy)
    ack = sent(events, 1, UDP_NEXT)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == req.uri
    assert ack.headers.get_all("Via") == ["SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKb1"]
    assert ack.headers.get_all("Route") == ["<sip:p1.example;lr>, <sip:p2.example;lr>",
                                            "<sip:p3.example;lr>"]
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.headers.get("To") == "<sip:1002@pbx.local>;tag=callee"
    assert ack.call_id == req.call_id
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get("Max-Forwards") == "70"
    assert "Contact" not in ack.headers and ack.body == b""
    assert parse_message(bytes(ack)) == ack
    assert layer.state(key) is State.COMPLETED
    # Completed: every retransmission of the final re-sends the same ACK, the TU hears nothing.
    assert layer.receive_response(busy, UDP_NEXT, 1.0) == [Send(ack, UDP_NEXT)]
    assert layer.receive_response(response(req, 500), UDP_NEXT, 1.5) == [Send(ack, UDP_NEXT)]
    assert layer.receive_response(response(req, 180), UDP_NEXT, 1.6) == []
    assert layer.receive_response(response(req, 200), UDP_NEXT, 1.7) == []
    # Timer D: 32 s on UDP; no retransmission of the INVITE any more.
    assert layer.next_deadline() == pytest.approx(32.2)
    assert run_until(layer, 100.0) == [(32.2, TransactionTerminated(key))]
    assert layer.receive_response(busy, UDP_NEXT, 40.0) == [StrayResponse(busy, UDP_NEXT)]


def test_invite_client_timer_d_is_64_t1_when_longer_than_32_s() -> None:
    layer = TransactionLayer(Timers(t1=1.0, t2=4.0))
    req = request()
    layer.send_request(req, UDP_NEXT, 0.0)
    layer.receive_response(response(req, 404), UDP_NEXT, 1.0)
    assert layer.next_deadline() == 65.0


def test_invite_client_non2xx_over_tcp_ends_at_once() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    key, _ = layer.send_request(req, TCP_NEXT, 0.0)
    events = layer.receive_response(response(req, 603), TCP_NEXT, 1.0)
    assert kinds(events) == ["ResponseReceived", "Send", "TransactionTerminated"]
    assert events[-1] == TransactionTerminated(key)
    assert layer.next_deadline() is None and len(layer) == 0


@pytest.mark.parametrize("provisional", [False, True])
def test_invite_client_2xx_enters_accepted_and_passes_every_2xx_up(provisional: bool) -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    if provisional:
        layer.receive_response(response(req, 180), UDP_NEXT, 0.1)
    ok = response(req, 200, to_tag="a")
    assert layer.receive_response(ok, UDP_NEXT, 1.0) == [ResponseReceived(key, ok)]  # no ACK
    assert layer.state(key) is State.ACCEPTED
    assert layer.next_deadline() == 33.0                      # Timer M, no retransmission
    assert layer.receive_response(ok, UDP_NEXT, 2.0) == [ResponseReceived(key, ok)]
    fork = response(req, 200, to_tag="b")
    assert layer.receive_response(fork, UDP_NEXT, 3.0) == [ResponseReceived(key, fork)]
    assert layer.receive_response(response(req, 180), UDP_NEXT, 4.0) == []
    assert layer.receive_response(response(req, 486), UDP_NEXT, 5.0) == []
    assert run_until(layer, 100.0) == [(33.0, TransactionTerminated(key))]   # no timeout
    assert layer.receive_response(ok, UDP_NEXT, 34.0) == [StrayResponse(ok, UDP_NEXT)]


@pytest.mark.parametrize("status", [None, 180, 486, 200])
def test_invite_client_transport_error_in_every_state(status: int | None) -> None:
    layer = TransactionLayer()
    req = request()
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    if status is not None:
        layer.receive_response(response(req, status), UDP_NEXT, 0.1)
    expected = {None: State.CALLING, 180: State.PROCEEDING, 486: State.COMPLETED,
                200: State.ACCEPTED}[status]
    assert layer.state(key) is expected
    assert layer.transport_error(key, 0.2) == [TransportFailed(key), TransactionTerminated(key)]
    assert layer.next_deadline() is None and len(layer) == 0
    assert layer.transport_error(key, 0.3) == []
    assert layer.on_timer(1000.0) == []


def test_cancel_responses_match_the_cancel_transaction_not_the_invite() -> None:
    layer = TransactionLayer()
    invite = request()
    ikey, _ = layer.send_request(invite, UDP_NEXT, 0.0)
    layer.receive_response(response(invite, 180), UDP_NEXT, 0.1)
    cancel = request("CANCEL")                       # same branch, CSeq 1 CANCEL (§9.1)
    ckey, events = layer.send_request(cancel, UDP_NEXT, 1.0)
    assert events == [Send(cancel, UDP_NEXT)] and ckey != ikey
    cancel_ok = response(cancel, 200)
    assert layer.receive_response(cancel_ok, UDP_NEXT, 1.1) == [
        ResponseReceived(ckey, cancel_ok)]
    assert layer.state(ikey) is State.PROCEEDING
    terminated = response(invite, 487)
    events = layer.receive_response(terminated, UDP_NEXT, 1.2)
    assert events[0] == ResponseReceived(ikey, terminated)
    ack = sent(events, 1, UDP_NEXT)
    assert isinstance(ack, Request) and ack.method == "ACK"


def test_cancelled_invite_gives_up_64_t1_after_the_cancel() -> None:
    layer = TransactionLayer()
    invite = request()
    ikey, _ = layer.send_request(invite, UDP_NEXT, 0.0)
    layer.receive_response(response(invite, 180), UDP_NEXT, 0.1)
    ckey, _ = layer.send_request(request("CANCEL"), UDP_NEXT, 10.0)
    layer.receive_response(response(request("CANCEL"), 200), UDP_NEXT, 10.1)
    assert layer.state(ckey) is State.COMPLETED and layer.state(ikey) is State.PROCEEDING
    layer.receive_response(response(invite, 183), UDP_NEXT, 20.0)  # does not push it back
    fired = [(t, e) for t, e in run_until(layer, 1000.0) if getattr(e, "key", None) == ikey]
    assert fired == [(42.0, TransactionTimeout(ikey)), (42.0, TransactionTerminated(ikey))]


def test_invite_cancelled_while_calling_is_bounded_after_its_provisional() -> None:
    layer = TransactionLayer()
    invite = request()
    ikey, _ = layer.send_request(invite, UDP_NEXT, 0.0)
    layer.send_request(request("CANCEL"), UDP_NEXT, 5.0)
    layer.receive_response(response(invite, 180), UDP_NEXT, 6.0)
    fired = [(t, e) for t, e in run_until(layer, 1000.0) if getattr(e, "key", None) == ikey]
    assert fired == [(37.0, TransactionTimeout(ikey)), (37.0, TransactionTerminated(ikey))]


def test_send_request_rejects_ack_missing_branch_and_branch_reuse() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(request("ACK"), UDP_NEXT, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request(branch=None), UDP_NEXT, 0.0)
    layer.send_request(request(), UDP_NEXT, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request(), UDP_NEXT, 0.0)
    assert len(layer) == 1


def test_responses_match_by_branch_and_cseq_method_only() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    other_branch = response(request("OPTIONS", branch="z9hG4bKother"), 200)
    other_method = response(request("INFO"), 200)
    assert layer.receive_response(other_branch, UDP_NEXT, 0.1) == [
        StrayResponse(other_branch, UDP_NEXT)]
    assert layer.receive_response(other_method, UDP_NEXT, 0.1) == [
        StrayResponse(other_method, UDP_NEXT)]
    # The source address does not matter (§17.1.3): only branch and method.
    ok = response(req, 200)
    elsewhere = Peer("udp", "203.0.113.1", 9999)
    assert layer.receive_response(ok, elsewhere, 0.2)[0] == ResponseReceived(key, ok)


# Non-INVITE client -----------------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    assert layer.state(key) is State.TRYING
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, e) for t, e in fired if not isinstance(e, Send)] == [
        (32.0, TransactionTimeout(key)), (32.0, TransactionTerminated(key))]


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    assert send_times(run_until(layer, 0.7)) == [0.5]
    trying = response(req, 100)
    assert layer.receive_response(trying, UDP_NEXT, 0.7) == [ResponseReceived(key, trying)]
    assert layer.state(key) is State.PROCEEDING
    fired = run_until(layer, 100.0)
    # E was due at 1.5 already; from then on it is reset to T2 each time.
    assert send_times(fired) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert [t for t, e in fired if isinstance(e, TransactionTimeout)] == [32.0]


def test_non_invite_client_reliable_has_no_timer_e() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request("OPTIONS", transport="TCP"), TCP_NEXT, 0.0)
    assert run_until(layer, 100.0) == [(32.0, TransactionTimeout(key)),
                                       (32.0, TransactionTerminated(key))]


@pytest.mark.parametrize("status", [200, 302, 404, 503, 603])
def test_non_invite_client_final_then_timer_k(status: int) -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    layer.receive_response(response(req, 180), UDP_NEXT, 0.2)
    final = response(req, status)
    assert layer.receive_response(final, UDP_NEXT, 1.0) == [ResponseReceived(key, final)]
    assert layer.state(key) is State.COMPLETED
    assert layer.receive_response(final, UDP_NEXT, 2.0) == []     # absorbed
    assert layer.receive_response(response(req, 100), UDP_NEXT, 2.0) == []
    assert run_until(layer, 100.0) == [(6.0, TransactionTerminated(key))]   # K = T4


def test_non_invite_client_final_over_tcp_ends_at_once() -> None:
    layer = TransactionLayer()
    req = request("REGISTER", transport="TCP")
    key, _ = layer.send_request(req, TCP_NEXT, 0.0)
    final = response(req, 200)
    assert layer.receive_response(final, TCP_NEXT, 1.0) == [
        ResponseReceived(key, final), TransactionTerminated(key)]
    assert layer.next_deadline() is None


@pytest.mark.parametrize("status", [None, 100, 200])
def test_non_invite_client_transport_error(status: int | None) -> None:
    layer = TransactionLayer()
    req = request("MESSAGE")
    key, _ = layer.send_request(req, UDP_NEXT, 0.0)
    if status is not None:
        layer.receive_response(response(req, status), UDP_NEXT, 0.1)
    assert layer.transport_error(key, 0.2) == [TransportFailed(key), TransactionTerminated(key)]
    assert layer.on_timer(1000.0) == [] and len(layer) == 0


# INVITE server --------------------------------------------------------------------------------


def test_invite_server_sends_100_after_200_ms_if_the_tu_is_silent() -> None:
    layer = TransactionLayer()
    req = request(extra=("Timestamp: 54", "Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKup"))
    events = layer.receive_request(req, UDP_FROM, 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    key = events[0].key
    assert events[0].request is req and events[0].source == UDP_FROM
    assert layer.state(key) is State.PROCEEDING
    assert layer.next_deadline() == 0.2
    assert layer.on_timer(0.19) == []
    fired = layer.on_timer(0.2)
    assert len(fired) == 1 and isinstance(fired[0], Send)
    trying = fired[0].message
    assert isinstance(trying, Response) and trying.status == 100
    assert fired[0].peer == Peer("udp", "192.0.2.7", 5062)     # Via port, received address
    assert trying.headers.get_all("Via") == req.headers.get_all("Via")
    for name in ("From", "To", "Call-ID", "CSeq", "Timestamp"):
        assert trying.headers.get(name) == req.headers.get(name)
    assert trying.to.tag is None                               # SHOULD NOT add a tag (§17.2.1)
    assert layer.next_deadline() is None                       # Proceeding waits for the TU


def test_invite_server_no_100_when_the_tu_answers_in_time() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    ringing = response(req, 180)
    assert layer.respond(key, ringing, 0.1) == [Send(ringing, Peer("udp", "192.0.2.7", 5062))]
    assert layer.on_timer(0.2) == [] and layer.next_deadline() is None


def test_invite_server_immediate_100_when_configured() -> None:
    layer = TransactionLayer(Timers(trying=0))
    req = request()
    events = layer.receive_request(req, UDP_FROM, 0.0)
    assert kinds(events) == ["Send", "RequestReceived"]
    trying = sent(events, 0, Peer("udp", "192.0.2.7", 5062))
    assert isinstance(trying, Response) and trying.status == 100
    assert layer.next_deadline() is None


def test_invite_server_retransmission_in_proceeding_resends_the_last_provisional() -> None:
    layer = TransactionLayer(Timers(trying=1.0))
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    # Retransmission before the TU said anything: the 100 goes out at once, and only once.
    events = layer.receive_request(request(), UDP_FROM, 0.5)
    assert len(events) == 1 and isinstance(events[0], Send)
    trying = sent(events, 0, Peer("udp", "192.0.2.7", 5062))
    assert isinstance(trying, Response) and trying.status == 100
    assert layer.on_timer(1.0) == []
    ringing = response(req, 180)
    layer.respond(key, ringing, 1.2)
    assert layer.receive_request(request(), UDP_FROM, 1.5) == [
        Send(ringing, Peer("udp", "192.0.2.7", 5062))]
    progress = response(req, 183)
    layer.respond(key, progress, 1.6)
    assert layer.receive_request(request(), UDP_FROM, 3.5) == [
        Send(progress, Peer("udp", "192.0.2.7", 5062))]
    assert layer.state(key) is State.PROCEEDING and len(layer) == 1


def test_invite_server_non2xx_final_timer_g_capped_at_t2_and_timer_h() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    busy = response(req, 486)
    dest = Peer("udp", "192.0.2.7", 5062)
    assert layer.respond(key, busy, 1.0) == [Send(busy, dest)]
    assert layer.state(key) is State.COMPLETED
    fired = run_until(layer, 100.0)
    assert send_times(fired) == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert all(e == Send(busy, dest) for _, e in fired if isinstance(e, Send))
    assert [(t, e) for t, e in fired if not isinstance(e, Send)] == [
        (33.0, TransactionTimeout(key)), (33.0, TransactionTerminated(key))]


def test_invite_server_completed_resends_final_on_retransmission() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    busy = response(req, 486)
    layer.respond(key, busy, 0.1)
    dest = Peer("udp", "192.0.2.7", 5062)
    assert layer.receive_request(request(), UDP_FROM, 0.3) == [Send(busy, dest)]
    # Later finals and provisionals from the TU are dropped.
    assert layer.respond(key, response(req, 200), 0.4) == []
    assert layer.respond(key, response(req, 180), 0.4) == []


def test_invite_server_reliable_has_no_timer_g_but_timer_h() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    key = new_key(layer.receive_request(req, TCP_FROM, 0.0))
    busy = response(req, 480)
    assert layer.respond(key, busy, 1.0) == [Send(busy, TCP_FROM)]   # same connection
    assert run_until(layer, 100.0) == [(33.0, TransactionTimeout(key)),
                                       (33.0, TransactionTerminated(key))]


def test_invite_server_ack_confirms_then_timer_i() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    layer.respond(key, response(req, 404), 0.1)
    ack = request("ACK", to_tag="t1", cseq_method="ACK")       # same branch: matches (§17.2.3)
    assert layer.receive_request(ack, UDP_FROM, 0.7) == []
    assert layer.state(key) is State.CONFIRMED
    assert layer.next_deadline() == pytest.approx(5.7)          # I = T4; G and H stopped
    assert layer.receive_request(ack, UDP_FROM, 1.0) == []      # ACK retransmission absorbed
    assert layer.receive_request(request(), UDP_FROM, 1.0) == []  # so is the INVITE
    assert run_until(layer, 100.0) == [(5.7, TransactionTerminated(key))]


def test_invite_server_ack_over_tcp_ends_at_once() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    key = new_key(layer.receive_request(req, TCP_FROM, 0.0))
    layer.respond(key, response(req, 404), 0.1)
    ack = request("ACK", transport="TCP", to_tag="t1", cseq_method="ACK")
    assert layer.receive_request(ack, TCP_FROM, 0.2) == [TransactionTerminated(key)]
    assert layer.next_deadline() is None


def test_invite_server_2xx_accepted_state_rfc6026() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    ok = response(req, 200)
    dest = Peer("udp", "192.0.2.7", 5062)
    assert layer.respond(key, ok, 1.0) == [Send(ok, dest)]
    assert layer.state(key) is State.ACCEPTED
    assert layer.next_deadline() == 33.0                          # Timer L; no 2xx retransmits
    assert layer.receive_request(request(), UDP_FROM, 1.5) == []  # INVITE retransmission absorbed
    assert layer.respond(key, ok, 1.5) == [Send(ok, dest)]       # the TU retransmits the 2xx
    assert layer.respond(key, response(req, 500), 1.6) == []     # non-2xx dropped
    # An ACK matching the transaction goes to the TU (RFC 6026 §7.1), with the key.
    same_branch = request("ACK", to_tag="t1", cseq_method="ACK")
    assert layer.receive_request(same_branch, UDP_FROM, 2.0) == [
        AckReceived(same_branch, UDP_FROM, key)]
    # The usual 2xx ACK has its own branch: it matches nothing and goes to the TU too.
    own_branch = request("ACK", branch="z9hG4bKack", to_tag="t1", cseq_method="ACK")
    assert layer.receive_request(own_branch, UDP_FROM, 2.0) == [AckReceived(own_branch, UDP_FROM)]
    assert layer.state(key) is State.ACCEPTED
    assert run_until(layer, 100.0) == [(33.0, TransactionTerminated(key))]   # no timeout
    # Afterwards, a retransmitted INVITE is a new request (the RFC 6026 window is over).
    assert kinds(layer.receive_request(request(), UDP_FROM, 40.0)) == ["RequestReceived"]


@pytest.mark.parametrize("status", [None, 180, 486, "ack", 200])
def test_invite_server_transport_error_in_every_state(status: int | str | None) -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    if status == "ack":
        layer.respond(key, response(req, 486), 0.1)
        layer.receive_request(request("ACK", to_tag="t1", cseq_method="ACK"), UDP_FROM, 0.2)
        assert layer.state(key) is State.CONFIRMED
    elif isinstance(status, int):
        layer.respond(key, response(req, status), 0.1)
    assert layer.transport_error(key, 0.3) == [TransportFailed(key), TransactionTerminated(key)]
    assert layer.on_timer(1000.0) == [] and len(layer) == 0
    assert layer.respond(key, response(req, 500), 0.4) == []     # late TU answer dropped


def test_respond_misuse_is_an_error() -> None:
    layer = TransactionLayer()
    req = request()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    with pytest.raises(ValueError):
        layer.respond(key, response(request("OPTIONS"), 200), 0.1)
    ckey, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKc"), UDP_NEXT, 0.0)
    with pytest.raises(ValueError):
        layer.respond(ckey, response(req, 200), 0.1)
    assert layer.respond(TxKey(999, "server", "INVITE", "x"), response(req, 200), 0.1) == []
    assert layer.state(TxKey(999, "server", "INVITE", "x")) is None


# Non-INVITE server ----------------------------------------------------------------------------


def test_non_invite_server_states_and_timer_j() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    assert layer.state(key) is State.TRYING
    assert layer.next_deadline() is None                       # no automatic 100 for non-INVITE
    assert layer.receive_request(request("OPTIONS"), UDP_FROM, 0.5) == []   # Trying: absorbed
    dest = Peer("udp", "192.0.2.7", 5062)
    trying = response(req, 100)
    assert layer.respond(key, trying, 0.6) == [Send(trying, dest)]
    assert layer.state(key) is State.PROCEEDING
    assert layer.receive_request(request("OPTIONS"), UDP_FROM, 1.5) == [Send(trying, dest)]
    ok = response(req, 200)
    assert layer.respond(key, ok, 2.0) == [Send(ok, dest)]
    assert layer.state(key) is State.COMPLETED
    assert layer.receive_request(request("OPTIONS"), UDP_FROM, 3.5) == [Send(ok, dest)]
    assert layer.respond(key, response(req, 500), 4.0) == []    # other finals discarded
    assert run_until(layer, 100.0) == [(34.0, TransactionTerminated(key))]   # J = 64*T1


def test_non_invite_server_final_from_trying_over_tcp_ends_at_once() -> None:
    layer = TransactionLayer()
    req = request("REGISTER", transport="TCP")
    key = new_key(layer.receive_request(req, TCP_FROM, 0.0))
    ok = response(req, 200)
    assert layer.respond(key, ok, 0.1) == [Send(ok, TCP_FROM), TransactionTerminated(key)]
    assert layer.next_deadline() is None and len(layer) == 0


@pytest.mark.parametrize("status", [None, 100, 200])
def test_non_invite_server_transport_error(status: int | None) -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    if status is not None:
        layer.respond(key, response(req, status), 0.1)
    assert layer.transport_error(key, 0.2) == [TransportFailed(key), TransactionTerminated(key)]
    assert layer.on_timer(1000.0) == [] and len(layer) == 0


# Server matching --------------------------------------------------------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    layer = TransactionLayer()
    layer.receive_request(request("OPTIONS"), UDP_FROM, 0.0)
    # The same request from another source address is still a retransmission.
    assert layer.receive_request(request("OPTIONS"), Peer("udp", "198.51.100.1", 1), 0.1) == []
    # sent-by hosts compare case-insensitively.
    up = request("OPTIONS", branch="z9hG4bKcase", via="HOST.example:5062")
    assert kinds(layer.receive_request(up, UDP_FROM, 0.1)) == ["RequestReceived"]
    low = request("OPTIONS", branch="z9hG4bKcase", via="host.example:5062")
    assert layer.receive_request(low, UDP_FROM, 0.1) == []
    for different in (request("OPTIONS", via="10.0.0.9:5062"),       # other sent-by host
                      request("OPTIONS", via="10.0.0.1:5063"),       # other sent-by port
                      request("OPTIONS", via="10.0.0.1"),            # port absent
                      request("OPTIONS", branch="z9hG4bKb2"),        # other branch
                      request("INFO")):                              # other method
        assert kinds(layer.receive_request(different, UDP_FROM, 0.2)) == ["RequestReceived"]
    assert len(layer) == 7


def test_cancel_gets_its_own_transaction_and_finds_the_invite() -> None:
    layer = TransactionLayer()
    invite = request()
    ikey = new_key(layer.receive_request(invite, UDP_FROM, 0.0))
    cancel = request("CANCEL")
    ckey = new_key(layer.receive_request(cancel, UDP_FROM, 1.0))
    assert ckey != ikey and ckey.method == "CANCEL"
    assert layer.find_invite_for_cancel(cancel) == ikey
    assert layer.state(ikey) is State.PROCEEDING                 # the CANCEL did not touch it
    assert layer.find_invite_for_cancel(request("CANCEL", branch="z9hG4bKzz")) is None
    assert layer.find_invite_for_cancel(request("CANCEL", via="10.0.0.5:5062")) is None
    ok = response(cancel, 200)
    assert layer.respond(ckey, ok, 1.1)[0] == Send(ok, Peer("udp", "192.0.2.7", 5062))
    layer.respond(ikey, response(invite, 487), 1.1)
    layer.transport_error(ikey, 1.2)
    assert layer.find_invite_for_cancel(cancel) is None


def legacy(method: str = "INVITE", *, branch: str | None = "old1", cseq: int = 1,
           cseq_method: str | None = None, from_tag: str = "f1", to_tag: str | None = None,
           via: str = "10.0.0.1:5062", uri: str = "sip:1002@pbx.local") -> Request:
    """An RFC 2543 request: a branch without the magic cookie (or none at all)."""
    return request(method, branch, cseq=cseq, cseq_method=cseq_method, from_tag=from_tag,
                   to_tag=to_tag, via=via, uri=uri)


@pytest.mark.parametrize("branch", ["old1", None])
def test_rfc2543_requests_match_on_their_fields(branch: str | None) -> None:
    layer = TransactionLayer()
    req = legacy(branch=branch)
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    ringing = response(req, 180)
    layer.respond(key, ringing, 0.1)
    dest = Peer("udp", "192.0.2.7", 5062)
    assert layer.receive_request(legacy(branch=branch), UDP_FROM, 0.5) == [Send(ringing, dest)]
    for different in (legacy(branch=branch, cseq=2), legacy(branch=branch, from_tag="f2"),
                      legacy(branch=branch, to_tag="x"), legacy(branch=branch, via="10.0.0.1"),
                      legacy(branch=branch, uri="sip:1003@pbx.local")):
        assert kinds(layer.receive_request(different, UDP_FROM, 0.6)) == ["RequestReceived"]
    assert len(layer) == 6
    assert layer.find_invite_for_cancel(legacy("CANCEL", branch=branch)) == key
    assert layer.find_invite_for_cancel(legacy("CANCEL", branch=branch, cseq=3)) is None
    assert layer.find_invite_for_cancel(legacy("CANCEL", branch=branch, from_tag="f9")) is None
    layer.respond(key, response(req, 486, to_tag="srv"), 1.0)
    # ACK: To tag of the response we sent, CSeq number but not method.
    wrong_tag = legacy("ACK", branch=branch, cseq_method="ACK", to_tag="other")
    assert layer.receive_request(wrong_tag, UDP_FROM, 1.1) == [AckReceived(wrong_tag, UDP_FROM)]
    ack = legacy("ACK", branch=branch, cseq_method="ACK", to_tag="srv")
    assert layer.receive_request(ack, UDP_FROM, 1.2) == []
    assert layer.state(key) is State.CONFIRMED


def test_rfc2543_ack_in_accepted_goes_to_the_tu_with_the_key() -> None:
    layer = TransactionLayer()
    req = legacy()
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    layer.respond(key, response(req, 200, to_tag="a"), 0.1)
    layer.respond(key, response(req, 200, to_tag="b"), 0.2)   # a second 2xx (forked upstream)
    for tag in ("a", "b"):
        ack = legacy("ACK", cseq_method="ACK", to_tag=tag)
        assert layer.receive_request(ack, UDP_FROM, 0.5) == [AckReceived(ack, UDP_FROM, key)]
    assert layer.state(key) is State.ACCEPTED


def test_unmatched_ack_goes_to_the_tu_and_creates_nothing() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnew", to_tag="t1")
    assert layer.receive_request(ack, UDP_FROM, 0.0) == [AckReceived(ack, UDP_FROM, None)]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_invite_ack_before_a_final_response_is_ignored() -> None:
    layer = TransactionLayer()
    key = new_key(layer.receive_request(request(), UDP_FROM, 0.0))
    assert layer.receive_request(request("ACK", cseq_method="ACK"), UDP_FROM, 0.1) == []
    assert layer.state(key) is State.PROCEEDING


def test_server_and_client_transactions_with_one_branch_stay_apart() -> None:
    # A request that loops back carries our own branch on top: still a new server transaction.
    layer = TransactionLayer()
    req = request("OPTIONS")
    ckey, _ = layer.send_request(req, UDP_NEXT, 0.0)
    assert new_key(layer.receive_request(request("OPTIONS"), UDP_FROM, 0.1)) != ckey
    assert len(layer) == 2


# Response routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("via", "rport", "source", "expected"), [
    ("10.0.0.1:5062", False, UDP_FROM, Peer("udp", "192.0.2.7", 5062)),
    ("10.0.0.1", False, UDP_FROM, Peer("udp", "192.0.2.7", 5060)),
    ("10.0.0.1:5062", True, UDP_FROM, UDP_FROM),
    ("phone.example:5070", False, UDP_FROM, Peer("udp", "192.0.2.7", 5070)),
    ("10.0.0.1:5062", False, TCP_FROM, TCP_FROM),
    ("10.0.0.1:5062", True, TCP_FROM, TCP_FROM),
])
def test_response_destination(via: str, rport: bool, source: Peer, expected: Peer) -> None:
    req = request(via=via, rport=rport)
    assert response_destination(req, source) == expected


def test_server_responses_follow_rport() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", rport=True)
    key = new_key(layer.receive_request(req, UDP_FROM, 0.0))
    ok = response(req, 200)
    assert layer.respond(key, ok, 0.1) == [Send(ok, UDP_FROM)]


def test_stray_response() -> None:
    layer = TransactionLayer()
    resp = response(request(), 200)
    assert layer.receive_response(resp, UDP_NEXT, 0.0) == [StrayResponse(resp, UDP_NEXT)]


# Timer bookkeeping ------------------------------------------------------------------------------


def test_next_deadline_skips_cancelled_timers_and_on_timer_is_idempotent() -> None:
    layer = TransactionLayer()
    req = request()
    layer.send_request(req, UDP_NEXT, 0.0)
    assert layer.next_deadline() == 0.5
    layer.receive_response(response(req, 180), UDP_NEXT, 0.1)
    assert layer.next_deadline() == pytest.approx(200.1)  # A (0.5) and B (32) are stale
    assert layer.on_timer(100.0) == []
    assert layer.on_timer(100.0) == []


def test_late_timer_call_retransmits_once_from_now() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), UDP_NEXT, 0.0)
    events = layer.on_timer(3.0)                          # the loop was stalled past 0.5
    assert kinds(events) == ["Send"]
    assert layer.next_deadline() == 4.0                   # next interval counted from now


def test_stale_heap_entries_are_swept() -> None:
    layer = TransactionLayer()
    for i in range(2000):
        req = request("OPTIONS", branch=f"z9hG4bK{i}", transport="TCP")
        layer.send_request(req, TCP_NEXT, 0.0)
        layer.receive_response(response(req, 200), TCP_NEXT, 0.1)   # ends at once: F is stale
    assert len(layer) == 0
    assert len(layer._heap) <= 128                        # swept, not 2000 dead entries
    assert layer.next_deadline() is None


def test_many_transactions_fire_in_deadline_order() -> None:
    layer = TransactionLayer()
    keys = []
    for i in range(100):
        key, _ = layer.send_request(request("OPTIONS", branch=f"z9hG4bK{i}", transport="TCP"),
                                    TCP_NEXT, float(99 - i))
        keys.append(key)
    fired = run_until(layer, 1000.0)
    timeouts = [(t, e.key) for t, e in fired if isinstance(e, TransactionTimeout)]
    assert timeouts == sorted((float(99 - i) + 32.0, k) for i, k in enumerate(keys))
