"""Error answers to requests that fail to parse."""

from __future__ import annotations

from pbx.errors import ParseError
from pbx.sip.badrequest import error_reply
from pbx.sip.message import Response, parse_message

BAD = (
    b"INVITE sip:1002@pbx.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc\r\n"
    b"v: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKdef\r\n"
    b"From: <sip:1001@pbx.local>;tag=a1\r\n"
    b"To: <sip:1002@pbx.local>\r\n"
    b"Call-ID: c1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\nMax-Forwards: 9999\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_salvageable_request_gets_400_with_its_headers() -> None:
    try:
        parse_message(BAD)
    except ParseError as exc:
        reply = error_reply(BAD, exc, "pbx")
    else:
        raise AssertionError("Max-Forwards out of range must not parse")
    assert reply is not None
    resp = parse_message(reply)
    assert isinstance(resp, Response) and resp.status == 400
    assert [v.host for v in resp.vias] == ["10.0.0.1", "10.0.0.9"]
    assert resp.call_id == "c1@10.0.0.1"
    assert resp.headers.get("Server") == "pbx"


def test_status_hint_is_used() -> None:
    reply = error_reply(BAD, ParseError("version", status_hint=505))
    assert reply is not None and reply.startswith(b"SIP/2.0 505 ")


def test_responses_acks_and_fragments_are_dropped() -> None:
    exc = ParseError("x")
    assert error_reply(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", exc) is None
    assert error_reply(BAD.replace(b"INVITE sip", b"ACK sip", 1), exc) is None
    assert error_reply(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", exc) is None
    assert error_reply(b"\x00\xff garbage", exc) is None
