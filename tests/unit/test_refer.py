"""REFER (RFC 3515), Replaces (RFC 3891), Referred-By (RFC 3892) and message/sipfrag (RFC 3420):
parsing with the RFCs' own examples, formatting, dialog matching and the NOTIFYs."""

from __future__ import annotations

from typing import Literal

import pytest

from pbx.errors import ParseError
from pbx.sip.dialog import (
    DialogId,
    DialogState,
    create_response,
    request_dialog_id,
    response_dialog_id,
)
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.refer import (
    Refer,
    ReferNotify,
    ReferTarget,
    Replaces,
    find_replaced,
    notify_headers,
    parse_refer,
    parse_refer_notify,
    parse_refer_to,
    parse_referred_by,
    parse_replaces,
    parse_sipfrag,
    refer_to_value,
    replace_action,
    replaces_of,
    sipfrag,
)
from pbx.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def request(method: str, *headers: str, body: str = "", to_tag: str | None = "btag") -> Request:
    lines = [
        f"{method} sip:bob@b.example SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKrf1",
        "Max-Forwards: 70",
        "From: <sip:alice@a.example>;tag=atag",
        "To: <sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: rf-1@a.example",
        f"CSeq: 7 {method}",
        "Contact: <sip:alice@10.0.0.1>",
        *headers,
        f"Content-Length: {len(body.encode())}",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
    assert isinstance(msg, Request)
    return msg


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# -- Replaces (RFC 3891 §6.1) ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("425928@bobster.example.org;to-tag=7743;from-tag=6472",
     Replaces("425928@bobster.example.org", "7743", "6472")),
    # §6.1's folded example, as the message layer hands it over (folding becomes spaces).
    ("98732@sip.example.com ;from-tag=r33th4x0r ;to-tag=ff87ff",
     Replaces("98732@sip.example.com", "ff87ff", "r33th4x0r")),
    ("12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only",
     Replaces("12adf2f34456gs5", "12345", "54321", early_only=True)),
    ("87134@171.161.34.23;to-tag=24796;from-tag=0", Replaces("87134@171.161.34.23", "24796", "0")),
    ("87134@171.161.34.23;to-tag=24796;from-tag=0;foo=bar",
     Replaces("87134@171.161.34.23", "24796", "0")),
    ("12adf2f34456gs5;baz;To-Tag=12345;EARLY-ONLY;from-tag=54321",
     Replaces("12adf2f34456gs5", "12345", "54321", early_only=True)),
    # Call-IDs are matched as peers wrote them, even beyond callid = word ["@" word].
    ("a@b@c:5060;to-tag=1;from-tag=2", Replaces("a@b@c:5060", "1", "2")),
])
def test_parse_replaces(text: str, expected: Replaces) -> None:
    assert parse_replaces(text) == expected


@pytest.mark.parametrize("text", [
    "", ";to-tag=1;from-tag=2", "abc", "abc;to-tag=1", "abc;from-tag=2",
    "abc;to-tag=1;from-tag=2;to-tag=3", 'abc;to-tag="1";from-tag=2', "abc;to-tag=;from-tag=2",
    "abc;to-tag=1;from-tag=2;early-only=yes", "a b;to-tag=1;from-tag=2",
    "abc;to-tag=1;from-tag=[::1]", "abc;to-tag=1;from-tag=a:b", "abc;to-tag=1;from-tag=2;",
    "abc\x00;to-tag=1;from-tag=2"])
def test_parse_replaces_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        parse_replaces(text)


def test_replaces_formats_and_round_trips() -> None:
    r = Replaces("12adf2f34456gs5", "12345", "54321", early_only=True)
    assert str(r) == "12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"
    assert parse_replaces(str(r)) == r
    assert str(Replaces("c@h", "t", "f")) == "c@h;to-tag=t;from-tag=f"


@pytest.mark.parametrize("args", [("", "t", "f"), ("a;b", "t", "f"), ("a b", "t", "f"),
                                  ("c", "", "f"), ("c", "t", "f;x"), ("c", "t", '"f"')])
def test_replaces_refuses_what_it_cannot_write(args: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        Replaces(*args)


def test_replaces_targeting_names_the_dialog_as_the_peer_sees_it() -> None:
    # Build both ends of one dialog from real messages: the caller keys it by the 200's tags,
    # the callee by the tags of the requests it receives.
    invite = request("INVITE", to_tag=None)
    ok = parse_message(bytes(create_response(invite, 200, to_tag="btag")))
    assert isinstance(ok, Response)
    caller_view = response_dialog_id(ok)
    callee_view = request_dialog_id(request("BYE"))
    assert caller_view == DialogId("rf-1@a.example", "atag", "btag")
    assert callee_view == DialogId("rf-1@a.example", "btag", "atag")
    replaces = Replaces.targeting(caller_view)
    assert str(replaces) == "rf-1@a.example;to-tag=btag;from-tag=atag"
    assert replaces.dialog_id == callee_view
    assert find_replaced(replaces, {callee_view: "call"}) == (callee_view, "call")
    # The classic bug, tags the wrong way round, matches nothing.
    assert find_replaced(Replaces.targeting(callee_view), {callee_view: "call"}) is None
    assert Replaces.targeting(caller_view, early_only=True).early_only


def test_find_replaced() -> None:
    a = DialogId("c1", "ours", "theirs")
    b = DialogId("c2", "ours2", "theirs2")
    dialogs: dict[DialogId, int | None] = {a: 1, b: None}
    assert find_replaced(Replaces("c1", "ours", "theirs"), dialogs) == (a, 1)
    assert find_replaced(Replaces("c2", "ours2", "theirs2"), dialogs) == (b, None)
    assert find_replaced(Replaces("c1", "ours", "theirs2"), dialogs) is None
    assert find_replaced(Replaces("C1", "ours", "theirs"), dialogs) is None  # Call-ID is exact
    assert find_replaced(Replaces("c3", "x", "y"), {}) is None


def test_from_tag_zero_matches_an_rfc_2543_peer_without_tag() -> None:
    tagless = DialogId("old@h", "ours", "")
    assert Replaces.targeting(tagless) == Replaces("old@h", "0", "ours")
    # Seen from our side of the same dialog (our local tag is their to-tag).
    found = find_replaced(Replaces("old@h", "ours", "0"), {tagless: "x"})
    assert found == (tagless, "x")
    # A real tag "0" wins over the placeholder.
    real = DialogId("old@h", "ours", "0")
    assert find_replaced(Replaces("old@h", "ours", "0"), {tagless: "x", real: "y"}) == (real, "y")
    # The same for the to-tag, should the missing tag be ours.
    untagged_here = DialogId("old@h", "", "theirs")
    assert find_replaced(Replaces("old@h", "0", "theirs"), {untagged_here: 1}) == (untagged_here, 1)
    assert find_replaced(Replaces("old@h", "1", "theirs"), {untagged_here: 1}) is None


@pytest.mark.parametrize(("state", "early_only", "initiated_here", "expected"), [
    (DialogState.CONFIRMED, False, False, "BYE"),
    (DialogState.CONFIRMED, False, True, "BYE"),
    (DialogState.CONFIRMED, True, True, 486),
    (DialogState.EARLY, False, True, "CANCEL"),  # call pickup at the caller
    (DialogState.EARLY, True, True, "CANCEL"),
    (DialogState.EARLY, False, False, 481),  # a ringing callee is not replaced
    (DialogState.TERMINATED, False, True, 603),
    (DialogState.TERMINATED, True, False, 603),
])
def test_replace_action_follows_rfc_3891_section_3(state: DialogState, early_only: bool,
                                                   initiated_here: bool,
                                                   expected: int | str) -> None:
    replaces = Replaces("c", "t", "f", early_only=early_only)
    assert replace_action(replaces, state, initiated_here=initiated_here) == expected


def test_replaces_of() -> None:
    assert replaces_of(request("INVITE", to_tag=None)) is None
    one = request("INVITE", "Replaces: c@h;to-tag=1;from-tag=2", to_tag=None)
    assert replaces_of(one) == Replaces("c@h", "1", "2")
    two = request("INVITE", "Replaces: c@h;to-tag=1;from-tag=2",
                  "Replaces: d@h;to-tag=1;from-tag=2", to_tag=None)
    with pytest.raises(ParseError):
        replaces_of(two)
    with pytest.raises(ParseError):
        replaces_of(request("BYE", "Replaces: c@h;to-tag=1;from-tag=2"))
    with pytest.raises(ParseError):
        replaces_of(request("INVITE", "Replaces: c@h;to-tag=1", to_tag=None))


# -- Refer-To (RFC 3515 §2.1, RFC 3891 §6.1) ---------------------------------------------------


def test_rfc_3515_refer_to_examples() -> None:
    assert parse_refer_to("sip:alice@atlanta.example.com") == ReferTarget(
        sip("sip:alice@atlanta.example.com"))
    # Its second example leaves the '=' of Call-ID escaped; Call-ID may not be copied anyway.
    target = parse_refer_to("<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk."
                            "biloxi.example.net&Call-ID%3D55432%40alicepc.atlanta.example.com>")
    assert target == ReferTarget(sip("sip:bob@biloxi.example.net"), headers=(
        ("Accept-Contact", "sip:bobsdesk.biloxi.example.net"),))
    target = parse_refer_to("<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3B"
                            "to-tag%3D12345%3Bfrom-tag%3D5FFE-3994>")
    assert target == ReferTarget(sip("sip:dave@denver.example.org"),
                                 Replaces("12345@192.168.118.3", "12345", "5FFE-3994"))
    target = parse_refer_to("<sip:carol@cleveland.example.org;method=SUBSCRIBE>")
    assert target.uri == sip("sip:carol@cleveland.example.org;method=SUBSCRIBE")
    assert target.method == "SUBSCRIBE"
    assert parse_refer_to("http://www.ietf.org").uri == AbsoluteUri("http", "//www.ietf.org")


def test_refer_to_with_display_name_params_and_tel() -> None:
    target = parse_refer_to('"Bob <desk>" <sip:bob@b.example;transport=tcp>;x=y')
    assert target == ReferTarget(sip("sip:bob@b.example;transport=tcp"), None, "Bob <desk>")
    assert target.method == "INVITE"
    assert parse_refer_to("Bob <tel:+8613800138000>").uri == TelUri("+8613800138000")
    assert parse_refer_to("<sip:bob@b.example;method=bye>").method == "BYE"


def test_refer_to_headers_come_off_the_uri_and_unsafe_ones_are_dropped() -> None:
    target = parse_refer_to(
        "<sip:bob@b.example?Subject=hello%20there&From=%3Csip:evil@x%3E&Call-ID=x&Route=%3Csip:"
        "x%3E&Contact=%3Csip:x%3E&body=v%3D0&To=sip:x@y&Priority=urgent&accept=x%2Fy"
        "&Max-Forwards=0&Content-Type=text%2Fplain&CSeq=1%20INVITE&Via=SIP%2F2.0%2FUDP%20x"
        "&Record-Route=%3Csip:x%3E&Supported=x&User-Agent=x&Allow=x&Organization=x"
        "&Accept-Encoding=x&Accept-Language=x&Content-Length=0&Content-Encoding=gzip>")
    assert target.uri == sip("sip:bob@b.example")
    assert target.uri.headers == {}
    assert target.headers == (("Subject", "hello there"), ("Priority", "urgent"))


def test_lenient_replaces_with_raw_delimiters() -> None:
    # Seen from phones: '@' and ';' left raw inside the Replaces value.
    target = parse_refer_to("<sip:bob@b.example?Replaces=abc@h.example;to-tag=1;from-tag=2>")
    assert target.replaces == Replaces("abc@h.example", "1", "2")
    target = parse_refer_to("<sip:b.example?replaces=abc@h%3Bto-tag%3D1%3Bfrom-tag%3D2"
                            "%3Bearly-only&Priority=urgent>")
    assert target.uri == sip("sip:b.example")
    assert target.replaces == Replaces("abc@h", "1", "2", early_only=True)
    assert target.headers == (("Priority", "urgent"),)


def test_user_part_with_question_mark_is_not_the_header_part() -> None:
    target = parse_refer_to("<sip:a?b@b.example?Subject=x>")
    assert target.uri == SipUri("b.example", "a?b")
    assert target.headers == (("Subject", "x"),)


@pytest.mark.parametrize("text", [
    "", "<sip:bob@b.example", "sip:bob@b.example?Replaces=x", "<sip:bob@b.example?Subject=a%0D%0AVia:x>",
    "<sip:bob@b.example?Subject=%zz>", "<sip:bob@b.example?Sub%20ject=x>",
    "<sip:bob@b.example?Replaces=c%3Bto-tag%3D1>", "<sip:bob@b.example?Replaces=c;to-tag=1;from-tag=2"
    "&Replaces=d;to-tag=1;from-tag=2>", "<sip:bob@b.example?Subject>", "<sip:bob@?Replaces=x>",
    "<sip:bob@b.example?Subject=%FF>", '"unterminated <sip:bob@b.example>', "<mailto:x?y>x",
    "<sip:bob@b.example?Subject=a b>"])
def test_parse_refer_to_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        parse_refer_to(text)


def test_refer_to_value_escapes_replaces_like_rfc_3515() -> None:
    value = refer_to_value(sip("sip:dave@denver.example.org"),
                           Replaces("12345@192.168.118.3", "12345", "5FFE-3994"))
    assert value == ("<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D"
                     "12345%3Bfrom-tag%3D5FFE-3994>")
    assert parse_refer_to(value).replaces == Replaces("12345@192.168.118.3", "12345", "5FFE-3994")


def test_refer_to_value_forms() -> None:
    uri = sip("sip:bob@b.example;transport=tcp?Replaces=old%3Bto-tag%3D1%3Bfrom-tag%3D2&Subject=x")
    replaces = Replaces("new@h", "3", "4", early_only=True)
    value = refer_to_value(uri, replaces, display='Bob "B"')
    assert value == ('"Bob \\"B\\"" <sip:bob@b.example;transport=tcp?Subject=x&Replaces=new%40h'
                     '%3Bto-tag%3D3%3Bfrom-tag%3D4%3Bearly-only>')
    assert uri.headers["Replaces"] == "old;to-tag=1;from-tag=2"  # the caller's URI untouched
    assert parse_refer_to(value) == ReferTarget(sip("sip:bob@b.example;transport=tcp"), replaces,
                                                'Bob "B"', (("Subject", "x"),))
    assert refer_to_value(parse_uri("tel:+861012345678")) == "<tel:+861012345678>"
    assert refer_to_value(sip("sip:bob@b.example")) == "<sip:bob@b.example>"
    with pytest.raises(ValueError):
        refer_to_value(parse_uri("tel:+861012345678"), replaces)


# -- REFER requests and Referred-By --------------------------------------------------------------


def test_parse_refer() -> None:
    refer = parse_refer(request(
        "REFER", "Refer-To: <sip:carol@c.example?Replaces=x%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        'Referred-By: "Alice" <sip:alice@a.example>;cid="20398823.2UWQFN309shb3@a.example"'))
    assert refer == Refer(
        ReferTarget(sip("sip:carol@c.example"), Replaces("x@h", "1", "2")),
        parse_referred_by('"Alice" <sip:alice@a.example>;cid="20398823.2UWQFN309shb3@a.example"'),
        7, True)
    assert refer.referred_by is not None and refer.referred_by.display == "Alice"


def test_parse_refer_compact_forms_and_refer_sub() -> None:
    refer = parse_refer(request("REFER", "r: sip:carol@c.example", "b: sip:alice@a.example",
                                "Refer-Sub: false", "Require: norefersub"))
    assert refer.target.uri == sip("sip:carol@c.example")
    assert refer.referred_by is not None and refer.referred_by.uri == sip("sip:alice@a.example")
    assert refer.subscription is False
    assert parse_refer(request("REFER", "r: <sip:c@c.example>", "Refer-Sub: TRUE")).subscription
    assert parse_refer(request("REFER", "r: <sip:c@c.example>")).referred_by is None


@pytest.mark.parametrize("headers", [
    (), ("Refer-To: <sip:a@x>", "Refer-To: <sip:b@x>"), ("Refer-To: <sip:a@x>, <sip:b@x>",),
    ("Refer-To: <sip:a@x>", "Referred-By: <sip:x@y>", "Referred-By: <sip:z@y>"),
    ("Refer-To: <sip:a@x>", "Referred-By: <sip:x@y>;cid=nope"),
    ("Refer-To: <sip:a@x>", "Refer-Sub: maybe"), ("Refer-To: not a uri",)])
def test_parse_refer_rejects_bad_requests(headers: tuple[str, ...]) -> None:
    with pytest.raises(ParseError):
        parse_refer(request("REFER", *headers))


def test_parse_refer_needs_a_refer() -> None:
    with pytest.raises(ValueError):
        parse_refer(request("INVITE", "Refer-To: <sip:a@x>"))


def test_parse_referred_by() -> None:
    by = parse_referred_by("<sips:referrer@referrer.example>;cid=\"20398823.2UWQFN309shb3@"
                           "referrer.example\"")
    assert by.uri == parse_uri("sips:referrer@referrer.example")
    for bad in ("", "<sip:a@b>;cid", '<sip:a@b>;cid="no-at-sign"', "<sip:a@b>;cid=x@y"):
        with pytest.raises(ParseError):
            parse_referred_by(bad)


# -- sipfrag and NOTIFY (RFC 3420, RFC 3515 §2.4) ---------------------------------------------


def test_sipfrag() -> None:
    assert sipfrag(100) == b"SIP/2.0 100 Trying\r\n"
    assert len(sipfrag(100)) == 20  # RFC 3515's example NOTIFY: Content-Length 20
    assert sipfrag(200) == b"SIP/2.0 200 OK\r\n"
    assert sipfrag(503, "Service Unavailable, try later") == (
        b"SIP/2.0 503 Service Unavailable, try later\r\n")
    assert sipfrag(180, "") == b"SIP/2.0 180 \r\n"
    for status, reason in ((99, None), (700, None), (200, "a\r\nVia: x"), (200, "a\x00")):
        with pytest.raises(ValueError):
            sipfrag(status, reason)


@pytest.mark.parametrize(("body", "status"), [
    (b"SIP/2.0 200 OK\r\n", 200), (b"SIP/2.0 100 Trying", 100), (b"SIP/2.0 180\r\n", 180),
    (b"SIP/2.0 603 Declined\nContent-Type: text/plain\n\n", 603), (b"sip/2.0 486 Busy Here", 486),
    (b"\r\nSIP/2.0 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n", 503),
    ("SIP/2.0 404 Não encontrado\r\n".encode(), 404), (b"SIP/2.0 200 \tOK\r\n", 200)])
def test_parse_sipfrag(body: bytes, status: int) -> None:
    assert parse_sipfrag(body) == status


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"garbage", b"SIP/2.0 20 OK", b"SIP/2.0 700 Nope", b"SIP/2.0 2000 OK",
    b"SIP/3.0 200 OK", b"INVITE sip:bob@b.example SIP/2.0\r\n", b"SIP/2.0 200 O\x00K",
    b"SIP/2.0 200 \xff\xfe", b"SIP/2.0 200 " + b"x" * 5000, b" SIP/2.0 200 OK",
    b"SIP/2.0  200 OK"])
def test_parse_sipfrag_rejects_garbage(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sipfrag(body)


def test_notify_headers() -> None:
    assert notify_headers(7, "active") == [
        ("Event", "refer;id=7"), ("Subscription-State", "active;expires=60"),
        ("Content-Type", "message/sipfrag;version=2.0")]
    assert notify_headers(93809824, "terminated") == [
        ("Event", "refer;id=93809824"), ("Subscription-State", "terminated;reason=noresource"),
        ("Content-Type", "message/sipfrag;version=2.0")]
    assert notify_headers(3, "active", expires=30, with_id=False)[:2] == [
        ("Event", "refer"), ("Subscription-State", "active;expires=30")]
    assert notify_headers(3, "terminated", reason="timeout")[1] == (
        "Subscription-State", "terminated;reason=timeout")
    for args, kwargs in (((-1, "active"), {}), ((1, "pending"), {}),
                         ((1, "active"), {"expires": -1}), ((1, "terminated"), {"reason": "a b"})):
        with pytest.raises(ValueError):
            notify_headers(*args, **kwargs)  # type: ignore[arg-type]


def test_notify_round_trips_through_the_message_layer() -> None:
    refer = parse_refer(request("REFER", "Refer-To: <sip:carol@c.example>"))
    cases: list[tuple[Literal["active", "terminated"], int]] = [
        ("active", 100), ("active", 180), ("terminated", 200), ("terminated", 486)]
    for state, status in cases:
        headers = [f"{name}: {value}" for name, value in notify_headers(refer.cseq, state)]
        notify = request("NOTIFY", *headers, body=sipfrag(status).decode())
        assert parse_refer_notify(notify) == ReferNotify(7, status, state == "terminated")


def test_parse_refer_notify_checks_event_and_body() -> None:
    ok = request("NOTIFY", "o: refer", "Subscription-State: terminated;reason=noresource",
                 "c: message/sipfrag", body="SIP/2.0 503 Service Unavailable\r\n")
    assert parse_refer_notify(ok) == ReferNotify(None, 503, True)
    cases = [
        (("Event: presence", "Subscription-State: active", "Content-Type: message/sipfrag"), 489),
        (("Subscription-State: active", "Content-Type: message/sipfrag"), 489),
        (("Event: refer", "Subscription-State: active", "Content-Type: text/plain"), 415),
        (("Event: refer", "Content-Type: message/sipfrag"), 400),
        (("Event: refer;id=x", "Subscription-State: active", "Content-Type: message/sipfrag"), 400),
        (("Event: refer", "Subscription-State: ;x", "Content-Type: message/sipfrag"), 400),
    ]
    for headers, hint in cases:
        with pytest.raises(ParseError) as err:
            parse_refer_notify(request("NOTIFY", *headers, body="SIP/2.0 200 OK\r\n"))
        assert err.value.status_hint == hint, headers
    with pytest.raises(ParseError):
        parse_refer_notify(request("NOTIFY", "Event: refer", "Subscription-State: active",
                                   "Content-Type: message/sipfrag", body="hello"))
    with pytest.raises(ValueError):
        parse_refer_notify(request("INVITE"))
