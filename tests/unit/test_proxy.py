"""Proxy decisions: request checks, forwarding rewrite, best-response selection (RFC 3261 §16)."""

from __future__ import annotations

from pbx.sip.message import Request, Response, parse_message
from pbx.sip.proxy import Branch, ResponseContext, check_request, forward_request, loop_hash
from pbx.sip.uri import SipUri, parse_uri

INVITE = (
    b"INVITE sip:1002@pbx.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@pbx.local>;tag=a1\r\n"
    b"To: <sip:1002@pbx.local>\r\n"
    b"Call-ID: c1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@10.0.0.1:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _invite() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def _forward(req: Request, branch_id: str = "1") -> Request:
    target = parse_uri("sip:1002@10.0.0.2:5064")
    return forward_request(req, target, via_host="127.0.0.1", via_port=5060, transport="udp",
                           branch_id=branch_id, record_route="<sip:127.0.0.1:5060;lr>")


def _response(fwd: Request, status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    resp = Response(status)
    for v in fwd.headers.get_all("Via"):
        resp.headers.add("Via", v)
    for name in ("From", "To", "Call-ID", "CSeq"):
        resp.headers.add(name, fwd.headers.get(name) or "")
    for name, value in headers or []:
        resp.headers.add(name, value)
    return resp


def test_forward_rewrites_uri_hops_via_and_record_route() -> None:
    req = _invite()
    fwd = _forward(req)
    assert isinstance(fwd.uri, SipUri) and fwd.uri.host == "10.0.0.2" and fwd.uri.port == 5064
    assert fwd.headers.get("Max-Forwards") == "69"
    assert fwd.headers.get("Record-Route") == "<sip:127.0.0.1:5060;lr>"
    top = fwd.vias[0]
    assert top.host == "127.0.0.1" and top.port == 5060
    assert top.branch is not None and top.branch.startswith("z9hG4bK" + loop_hash(req))
    assert fwd.vias[1] == req.vias[0]
    # the original is untouched
    assert req.headers.get("Max-Forwards") == "70" and len(req.vias) == 1
    assert parse_message(bytes(fwd)) == fwd


def test_max_forwards_zero_is_483() -> None:
    req = _invite()
    req.headers.set("Max-Forwards", "0")
    assert check_request(req, set()) == (483, "Too Many Hops")


def test_proxy_require_is_420() -> None:
    req = _invite()
    req.headers.add("Proxy-Require", "foo")
    assert check_request(req, set())[0] == 420  # type: ignore[index]


def test_loop_detected_but_spiral_allowed() -> None:
    req = _invite()
    fwd = _forward(req)
    # The same request comes back to us unchanged: a loop.
    looped = fwd.copy()
    looped.uri = req.uri
    assert check_request(looped, {("127.0.0.1", 5060)}) == (482, "Loop Detected")
    # It comes back with a different Request-URI (a spiral): allowed.
    spiral = fwd.copy()
    spiral.uri = parse_uri("sip:1003@pbx.local")
    assert check_request(spiral, {("127.0.0.1", 5060)}) is None
    # Not our Via: no loop.
    assert check_request(looped, {("127.0.0.9", 5060)}) is None


def _context(n: int) -> tuple[ResponseContext, list[Branch]]:
    req = _invite()
    ctx = ResponseContext("INVITE")
    branches = [Branch(i, _forward(req, str(i))) for i in range(n)]
    for b in branches:
        ctx.add_branch(b)
    return ctx, branches


def test_provisional_forwarded_100_not() -> None:
    ctx, (b,) = _context(1)
    sent, cancel = ctx.on_response(b, _response(b.request, 100))
    assert sent == [] and cancel == []
    sent, _ = ctx.on_response(b, _response(b.request, 180))
    assert [r.status for r in sent] == [180]
    assert len(sent[0].vias) == 1 and sent[0].vias[0].host == "10.0.0.1"  # our Via removed


def test_2xx_forwarded_and_other_branches_cancelled() -> None:
    ctx, (a, b, c) = _context(3)
    ctx.on_response(a, _response(a.request, 180))
    ctx.on_response(b, _response(b.request, 183))
    sent, cancel = ctx.on_response(b, _response(b.request, 200))
    assert [r.status for r in sent] == [200]
    assert cancel == [a]          # c has sent nothing yet: cancelled once it answers
    assert c.cancel_pending
    sent, cancel = ctx.on_response(c, _response(c.request, 180))
    assert sent == [] and cancel == [c]
    # a second 2xx (another branch answered too) is forwarded as well
    sent, _ = ctx.on_response(a, _response(a.request, 200))
    assert [r.status for r in sent] == [200]


def test_best_final_waits_for_all_branches() -> None:
    ctx, (a, b) = _context(2)
    sent, _ = ctx.on_response(a, _response(a.request, 486))
    assert sent == []
    sent, _ = ctx.on_response(b, _response(b.request, 503))
    assert [r.status for r in sent] == [486]


def test_503_becomes_500_and_6xx_wins() -> None:
    ctx, (a,) = _context(1)
    sent, _ = ctx.on_response(a, _response(a.request, 503))
    assert [(r.status, r.reason) for r in sent] == [(500, "Server Internal Error")]
    ctx, (a, b) = _context(2)
    ctx.on_response(b, _response(b.request, 180))
    sent, cancel = ctx.on_response(a, _response(a.request, 603))
    assert cancel == [b]
    sent, _ = ctx.on_response(b, _response(b.request, 487))
    assert [r.status for r in sent] == [603]


def test_auth_challenges_are_merged() -> None:
    ctx, (a, b) = _context(2)
    ctx.on_response(a, _response(a.request, 401, [("WWW-Authenticate", 'Digest realm="a"')]))
    sent, _ = ctx.on_response(b, _response(b.request, 407, [("Proxy-Authenticate", 'Digest realm="b"')]))
    (final,) = sent
    assert final.status in (401, 407)
    assert final.headers.get_all("WWW-Authenticate") == ['Digest realm="a"']
    assert final.headers.get_all("Proxy-Authenticate") == ['Digest realm="b"']


def test_timeout_counts_as_408_and_is_least_preferred() -> None:
    ctx, (a, b) = _context(2)
    assert ctx.branch_failed(a, 408) == []
    sent, _ = ctx.on_response(b, _response(b.request, 480))
    assert [r.status for r in sent] == [480]
    ctx, (a,) = _context(1)
    (resp,) = ctx.branch_failed(a, 408)
    assert resp.status == 408 and len(resp.vias) == 1


def test_cancel_all_cancels_ringing_and_defers_silent() -> None:
    ctx, (a, b) = _context(2)
    ctx.on_response(a, _response(a.request, 180))
    assert ctx.cancel_all() == [a]
    assert b.cancel_pending
    _, cancel = ctx.on_response(b, _response(b.request, 100))
    assert cancel == [b]
