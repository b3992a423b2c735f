"""Dialogs (RFC 3261 §12): creation on both sides, forking, in-dialog requests with loose and
strict route sets, CSeq rules, target refresh, and the message helpers."""

from __future__ import annotations

import pytest

from pbx.sip.address import Address, parse_address
from pbx.sip.dialog import (
    Dialog,
    DialogId,
    DialogState,
    create_cancel,
    create_response,
    request_dialog_id,
    response_dialog_id,
    route_request,
)
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.uri import SipUri, parse_uri
from pbx.sip.via import Via

VIA = Via("UDP", "10.0.0.1", 5060, {"rport": None})
BRANCH = "z9hG4bKdlg1"


def invite(*, uri: str = "sip:bob@b.example", cseq: int = 314, from_tag: str | None = "atag",
           record_route: tuple[str, ...] = (), contact: str | None = "<sip:alice@10.0.0.1:5060>",
           method: str = "INVITE", to_tag: str | None = None, body: str = "") -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv;rport",
        "Max-Forwards: 70",
        'From: "Alice" <sip:alice@a.example>' + (f";tag={from_tag}" if from_tag else ""),
        "To: <sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: call-1@a.example",
        f"CSeq: {cseq} {method}",
        *(f"Record-Route: {rr}" for rr in record_route),
        *([f"Contact: {contact}"] if contact else []),
        f"Content-Length: {len(body)}",
        "",
        body,
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, *, tag: str | None = "btag",
          record_route: tuple[str, ...] = (), contact: str | None = "<sip:bob@10.0.0.2:5070>"
          ) -> Response:
    resp = create_response(req, status, to_tag=tag,
                           contact=parse_address(contact) if contact else None)
    resp.headers.remove("Record-Route")
    for rr in record_route:
        resp.headers.add("Record-Route", rr)
    parsed = parse_message(bytes(resp))
    assert isinstance(parsed, Response)
    return parsed


def reparse(req: Request) -> Request:
    msg = parse_message(bytes(req))
    assert isinstance(msg, Request)
    return msg


RR = ("<sip:p1.example;lr>", "<sip:p2.example;lr;transport=tcp>")


# Dialog ids ---------------------------------------------------------------------------------


def test_dialog_ids_of_incoming_messages() -> None:
    req = invite()
    assert request_dialog_id(req) is None            # no To tag: outside any dialog
    in_dialog = invite(to_tag="btag", method="BYE")
    assert request_dialog_id(in_dialog) == DialogId("call-1@a.example", "btag", "atag")
    assert response_dialog_id(reply(req, 100, tag=None)) is None
    assert response_dialog_id(reply(req, 180)) == DialogId("call-1@a.example", "atag", "btag")
    legacy = invite(from_tag=None, to_tag="btag", method="BYE")   # RFC 2543: no From tag
    assert request_dialog_id(legacy) == DialogId("call-1@a.example", "btag", "")


# UAC ------------------------------------------------------------------------------------------


def test_uac_early_dialog_from_provisional() -> None:
    req = invite(contact="<sip:alice@10.0.0.1:5060;transport=udp>")
    resp = reply(req, 180, record_route=RR)
    d = Dialog.from_uac(req, resp)
    assert d.state is DialogState.EARLY and d.early and not d.confirmed
    assert d.role == "uac"
    assert d.id == DialogId("call-1@a.example", "atag", "btag")
    assert d.id == response_dialog_id(resp)
    # Record-Route reversed for the UAC (§12.1.2), URI parameters kept.
    assert [str(r) for r in d.route_set] == ["<sip:p2.example;lr;transport=tcp>",
                                              "<sip:p1.example;lr>"]
    assert d.remote_target == parse_uri("sip:bob@10.0.0.2:5070")
    assert d.local_cseq == 314 and d.remote_cseq is None
    assert str(d.local_uri) == "sip:alice@a.example" and d.local_address.display == "Alice"
    assert str(d.remote_uri) == "sip:bob@b.example"
    assert "tag" not in d.local_address.params and "tag" not in d.remote_address.params
    assert str(d.local_target) == "<sip:alice@10.0.0.1:5060;transport=udp>"
    assert d.secure is False


def test_uac_confirmed_dialog_from_2xx_and_secure_flag() -> None:
    req = invite(uri="sips:bob@b.example")
    d = Dialog.from_uac(req, reply(req, 200))
    assert d.state is DialogState.CONFIRMED and d.secure is True
    assert d.route_set == []
    assert Dialog.from_uac(req, reply(req, 200), secure=False).secure is False


@pytest.mark.parametrize("status", [100, 300, 486, 603])
def test_uac_only_101_to_299_create_dialogs(status: int) -> None:
    req = invite()
    with pytest.raises(ValueError):
        Dialog.from_uac(req, reply(req, status))


def test_uac_dialog_needs_a_to_tag_and_a_matching_response() -> None:
    req = invite()
    with pytest.raises(ValueError):
        Dialog.from_uac(req, reply(req, 180, tag=None))
    other = invite(from_tag="zzz")
    with pytest.raises(ValueError):
        Dialog.from_uac(req, reply(other, 180))


def test_uac_dialog_without_contact_targets_the_request_uri() -> None:
    req = invite()
    d = Dialog.from_uac(req, reply(req, 200, contact=None))
    assert d.remote_target == req.uri


def test_forked_invite_makes_one_early_dialog_per_remote_tag() -> None:
    req = invite()
    r1 = reply(req, 180, tag="b1", record_route=("<sip:p1.example;lr>",),
               contact="<sip:bob@10.0.0.2>")
    r2 = reply(req, 183, tag="b2", record_route=("<sip:p9.example;lr>",),
               contact="<sip:bob@10.0.0.3>")
    d1, d2 = Dialog.from_uac(req, r1), Dialog.from_uac(req, r2)
    assert d1.id != d2.id and d1.id.local_tag == d2.id.local_tag == "atag"
    assert [str(r.uri) for r in d1.route_set] == ["sip:p1.example;lr"]
    assert [str(r.uri) for r in d2.route_set] == ["sip:p9.example;lr"]
    assert str(d1.remote_target) != str(d2.remote_target)
    # The 2xx confirms its own dialog and recomputes route set and target from itself.
    ok = reply(req, 200, tag="b2", record_route=("<sip:p7.example;lr>", "<sip:p8.example;lr>"),
               contact="<sip:bob@10.0.0.4>")
    with pytest.raises(ValueError):
        d1.confirm(ok)
    d2.confirm(ok)
    assert d2.confirmed and d1.early
    assert [str(r.uri) for r in d2.route_set] == ["sip:p8.example;lr", "sip:p7.example;lr"]
    assert d2.remote_target == parse_uri("sip:bob@10.0.0.4")


def test_confirm_rules() -> None:
    req = invite()
    d = Dialog.from_uac(req, reply(req, 180))
    with pytest.raises(ValueError):
        d.confirm(reply(req, 180))           # only a 2xx confirms
    d.terminate()
    with pytest.raises(ValueError):
        d.confirm(reply(req, 200))
    uas = Dialog.from_uas(req, "btag", Address(SipUri("10.0.0.2", "bob")))
    with pytest.raises(ValueError):
        uas.confirm(reply(req, 200))         # the UAS confirms when it sends its 2xx
    uas.confirm()
    assert uas.confirmed


# UAS ------------------------------------------------------------------------------------------


def test_uas_dialog_from_request() -> None:
    req = invite(record_route=RR)
    contact = Address(SipUri("10.0.0.2", "bob", 5070))
    d = Dialog.from_uas(req, "btag", contact)
    assert d.state is DialogState.EARLY and d.role == "uas"
    assert d.id == DialogId("call-1@a.example", "btag", "atag")
    # Record-Route in request order for the UAS (§12.1.1).
    assert [str(r) for r in d.route_set] == list(RR)
    assert d.remote_target == parse_uri("sip:alice@10.0.0.1:5060")
    assert d.remote_cseq == 314 and d.local_cseq is None
    assert str(d.local_uri) == "sip:bob@b.example" and str(d.remote_uri) == "sip:alice@a.example"
    assert d.local_target == contact
    assert Dialog.from_uas(req, "btag", contact.uri).local_target == contact


def test_uas_dialog_checks() -> None:
    req = invite()
    contact = SipUri("10.0.0.2", "bob")
    with pytest.raises(ValueError):
        Dialog.from_uas(req, "", contact)
    with pytest.raises(ValueError):
        Dialog.from_uas(invite(to_tag="x", method="BYE"), "btag", contact)
    with pytest.raises(ValueError):
        Dialog.from_uas(req, "btag", contact, initial_cseq=2**31)
    d = Dialog.from_uas(req, "btag", contact, initial_cseq=7000)
    assert d.next_cseq() == 7000 and d.next_cseq() == 7001
    assert Dialog.from_uas(req, "btag", contact).next_cseq() == 1


# Requests within the dialog ----------------------------------------------------------------


def uac_dialog(route: tuple[str, ...] = RR) -> tuple[Request, Dialog]:
    req = invite()
    return req, Dialog.from_uac(req, reply(req, 200, record_route=route))


def test_request_with_loose_route_set() -> None:
    _, d = uac_dialog()
    bye = reparse(d.create_request("BYE", via=VIA, branch=BRANCH,
                                   headers=[("Reason", "Q.850;cause=16")]))
    assert str(bye.uri) == "sip:bob@10.0.0.2:5070"            # the remote target
    assert bye.headers.values("Route") == ["<sip:p2.example;lr;transport=tcp>",
                                           "<sip:p1.example;lr>"]
    assert bye.headers.get("From") == '"Alice" <sip:alice@a.example>;tag=atag'
    assert bye.headers.get("To") == "<sip:bob@b.example>;tag=btag"
    assert bye.call_id == "call-1@a.example"
    assert bye.cseq == (315, "BYE") and d.local_cseq == 315
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.top_via == Via("UDP", "10.0.0.1", 5060, {"branch": BRANCH, "rport": None})
    assert "Contact" not in bye.headers                        # BYE is no target refresh
    assert bye.headers.get("Reason") == "Q.850;cause=16"
    assert bye.body == b"" and "Content-Type" not in bye.headers
    assert request_dialog_id(bye) is not None


def test_target_refresh_requests_carry_contact_and_body() -> None:
    _, d = uac_dialog()
    reinvite = reparse(d.create_request("INVITE", via=VIA, branch="z9hG4bKre", body=b"v=0\r\n"))
    assert reinvite.headers.get("Contact") == "<sip:alice@10.0.0.1:5060>"
    assert reinvite.content_type == "application/sdp" and reinvite.body == b"v=0\r\n"
    assert reinvite.cseq.seq == 315
    update = reparse(d.create_request("UPDATE", via=VIA, branch="z9hG4bKup"))
    assert update.cseq == (316, "UPDATE") and "Contact" in update.headers
    info = reparse(d.create_request("INFO", via=VIA, branch="z9hG4bKin", body=b"Signal=5",
                                    content_type="application/dtmf-relay"))
    assert info.content_type == "application/dtmf-relay" and "Contact" not in info.headers


def test_request_with_strict_first_route() -> None:
    _, d = uac_dialog(route=("<sip:loose.example;lr>", "<sip:strict.example;method=INVITE;maddr=10.9.9.9?x=y>"))
    # UAC route set is reversed: the strict router comes first.
    bye = reparse(d.create_request("BYE", via=VIA, branch=BRANCH))
    assert bye.uri == parse_uri("sip:strict.example;maddr=10.9.9.9")   # method and headers gone
    assert bye.headers.values("Route") == ["<sip:loose.example;lr>",
                                           "<sip:bob@10.0.0.2:5070>"]   # remote target last
    # The dialog's own state is untouched by building the request.
    assert isinstance(d.route_set[0].uri, SipUri) and "method" in d.route_set[0].uri.params


def test_route_request_cases() -> None:
    target = parse_uri("sip:bob@10.0.0.2")
    assert route_request(target, []) == (target, [])
    loose = [parse_address("<sip:p1;lr>")]
    assert route_request(target, loose) == (target, loose)
    uri, routes = route_request(target, [parse_address("<sip:p2>")])
    assert uri == parse_uri("sip:p2") and routes == [Address(target)]


def test_ack_repeats_the_invite_cseq() -> None:
    req, d = uac_dialog()
    ack = d.create_request("ACK", via=VIA, branch="z9hG4bKack")
    assert ack.cseq == (314, "ACK") and d.local_cseq == 314
    reinvite = d.create_request("INVITE", via=VIA, branch="z9hG4bKre")
    d.create_request("INFO", via=VIA, branch="z9hG4bKinfo")
    ack2 = d.create_request("ACK", via=VIA, branch="z9hG4bKack2", cseq=reinvite.cseq.seq)
    assert ack2.cseq == (315, "ACK") and d.local_cseq == 316
    with pytest.raises(ValueError):
        d.create_request("BYE", via=VIA, branch="z9hG4bKx", cseq=9)
    uas = Dialog.from_uas(req, "btag", SipUri("10.0.0.2", "bob"))
    with pytest.raises(ValueError):
        uas.create_request("ACK", via=VIA, branch="z9hG4bKack")


def test_request_building_rejects_cancel_and_cookieless_branches() -> None:
    _, d = uac_dialog()
    with pytest.raises(ValueError):
        d.create_request("CANCEL", via=VIA, branch=BRANCH)
    with pytest.raises(ValueError):
        d.create_request("BYE", via=VIA, branch="nocookie")


def test_uas_requests_start_at_one_and_mirror_the_uac() -> None:
    req = invite(record_route=RR)
    resp = reply(req, 200, record_route=RR)
    uac = Dialog.from_uac(req, resp)
    uas = Dialog.from_uas(req, "btag", parse_address("<sip:bob@10.0.0.2:5070>"))
    uas.confirm()
    assert (uac.local_tag, uac.remote_tag) == (uas.remote_tag, uas.local_tag)
    bye = reparse(uas.create_request("BYE", via=Via("UDP", "10.0.0.2", 5070), branch=BRANCH))
    assert bye.cseq.seq == 1
    assert bye.headers.get("From") == "<sip:bob@b.example>;tag=btag"
    assert bye.headers.get("To") == '"Alice" <sip:alice@a.example>;tag=atag'
    assert [str(r) for r in uas.route_set] == list(RR)
    assert bye.headers.values("Route") == list(RR)
    assert str(bye.uri) == "sip:alice@10.0.0.1:5060"
    # The UAC's dialog accepts it: a first request from the far end sets the remote CSeq.
    assert request_dialog_id(bye) == uac.id
    assert uac.receive_request(bye) is None and uac.remote_cseq == 1
    # ... and the UAS accepts what the UAC sends.
    info = reparse(uac.create_request("INFO", via=VIA, branch="z9hG4bKi"))
    assert request_dialog_id(info) == uas.id
    assert uas.receive_request(info) is None and uas.remote_cseq == 315


# Receiving requests ---------------------------------------------------------------------------


def in_dialog(method: str, cseq: int, *, contact: str | None = None) -> Request:
    return invite(method=method, cseq=cseq, to_tag="btag", contact=contact)


def test_cseq_lower_than_remote_is_rejected_with_500() -> None:
    d = Dialog.from_uas(invite(cseq=10), "btag", SipUri("10.0.0.2", "bob"))
    assert d.receive_request(in_dialog("INFO", 12)) is None and d.remote_cseq == 12
    assert d.receive_request(in_dialog("INFO", 11)) == 500 and d.remote_cseq == 12
    assert d.receive_request(in_dialog("INFO", 12)) is None     # not lower: accepted
    assert d.receive_request(in_dialog("BYE", 40)) is None and d.remote_cseq == 40
    # ACK and CANCEL carry the CSeq of the request they belong to.
    assert d.receive_request(in_dialog("ACK", 10)) is None and d.remote_cseq == 40
    assert d.receive_request(in_dialog("CANCEL", 10)) is None and d.remote_cseq == 40


def test_request_of_another_dialog_is_refused() -> None:
    d = Dialog.from_uas(invite(), "btag", SipUri("10.0.0.2", "bob"))
    with pytest.raises(ValueError):
        d.receive_request(invite(method="BYE", to_tag="other"))


def test_target_refresh_on_request_and_2xx() -> None:
    _req, d = uac_dialog()
    assert d.refresh_target(in_dialog("UPDATE", 5, contact="<sip:bob@192.0.2.9:6000>"))
    assert d.remote_target == parse_uri("sip:bob@192.0.2.9:6000")
    assert not d.refresh_target(in_dialog("UPDATE", 6))        # no Contact: unchanged
    assert d.remote_target == parse_uri("sip:bob@192.0.2.9:6000")
    reinvite = d.create_request("INVITE", via=VIA, branch="z9hG4bKre")
    d.receive_response(reply(reinvite, 488, contact="<sip:bob@198.51.100.1>"))
    assert d.remote_target == parse_uri("sip:bob@192.0.2.9:6000")   # failure: no refresh
    d.receive_response(reply(reinvite, 200, contact="<sip:bob@198.51.100.1>"))
    assert d.remote_target == parse_uri("sip:bob@198.51.100.1")
    bye = d.create_request("BYE", via=VIA, branch="z9hG4bKbye")
    d.receive_response(reply(bye, 200, contact="<sip:bob@203.0.113.5>"))
    assert d.remote_target == parse_uri("sip:bob@198.51.100.1")     # BYE refreshes nothing


# Message helpers -------------------------------------------------------------------------------


def test_create_response_copies_what_it_must() -> None:
    req = invite(record_route=RR, body="v=0\r\n")
    contact = parse_address("<sip:bob@10.0.0.2>")
    trying = create_response(req, 100, to_tag="btag", contact=contact)
    assert trying.to.tag is None and "Record-Route" not in trying.headers
    assert "Contact" not in trying.headers
    ringing = create_response(req, 180, to_tag="btag", contact=contact)
    assert ringing.to.tag == "btag" and ringing.headers.values("Record-Route") == list(RR)
    assert ringing.contacts == [contact]
    assert ringing.headers.values("Via") == req.headers.values("Via")
    assert ringing.cseq == req.cseq and ringing.call_id == req.call_id
    busy = create_response(req, 486, to_tag="btag", contact=contact,
                           headers=[("Retry-After", "5")])
    assert "Record-Route" not in busy.headers and "Contact" not in busy.headers
    assert busy.headers.get("Retry-After") == "5"
    ok = create_response(req, 200, to_tag="btag", body=b"v=0\r\n")
    assert ok.content_type == "application/sdp" and ok.body == b"v=0\r\n"
    # A request already in a dialog keeps its To tag.
    bye = in_dialog("BYE", 400)
    assert create_response(bye, 200, to_tag="zzz").to.tag == "btag"


def test_create_cancel_follows_the_request() -> None:
    req = invite(uri="sip:bob@b.example")
    req.headers.add("Route", "<sip:p1.example;lr>")
    cancel = reparse(create_cancel(req))
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.headers.values("Via") == [req.headers.values("Via")[0]]
    assert cancel.branch == req.branch
    assert cancel.headers.values("Route") == ["<sip:p1.example;lr>"]
    assert cancel.cseq == (314, "CANCEL")
    assert cancel.headers.get("From") == req.headers.get("From")
    assert cancel.headers.get("To") == req.headers.get("To")
    for method in ("ACK", "CANCEL"):
        with pytest.raises(ValueError):
            create_cancel(invite(method=method))
