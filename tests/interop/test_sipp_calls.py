"""Proxy acceptance with SIPp: UAC -> pbx -> UAS over UDP and TCP, CANCEL, retransmissions,
loose routing through the Record-Route."""

from __future__ import annotations

import re

import pytest

from .sipp import SCENARIOS, SipMessage, by_call

pytestmark = pytest.mark.interop

UAS_ROUTE = "^uas$"


def _uri_in(value: str | None) -> str:
    m = re.search(r"<([^>]+)>", value or "")
    return m.group(1) if m else (value or "").strip()


def _one_call_each(messages: list[SipMessage], calls: int) -> list[list[SipMessage]]:
    groups = [msgs for _, msgs in by_call(messages)]
    assert len(groups) == calls, f"{len(groups)} Call-IDs in the trace, expected {calls}"
    return groups


# The TCP run names its route target by host name: the proxy resolves it (A/AAAA) on the side.
@pytest.mark.parametrize(("transport", "uac_mode", "uas_mode", "uas_host"),
                         [("udp", "u1", "u1", "127.0.0.1"), ("tcp", "tn", "t1", "localhost")])
def test_sipp_uac_to_uas_200_calls(pbx, run_sipp, ports, transport, uac_mode, uas_mode,
                                   uas_host):
    calls = 200
    uas_port = ports.port()
    suffix = ";transport=tcp" if transport == "tcp" else ""
    server = pbx(routes=[(UAS_ROUTE, f"sip:uas@{uas_host}:{uas_port}{suffix}")])
    with run_sipp("uas", scenario="uas", local_port=uas_port, transport=uas_mode,
                  calls=calls, timeout=40) as uas:
        uac = run_sipp("uac", scenario="uac", remote=f"127.0.0.1:{server.port}",
                       transport=uac_mode, service="uas", calls=calls, rate=100, limit=40,
                       timeout=40).wait()
        uas_result = uas.wait(timeout=15)
    uac.check(calls)
    uas_result.check(calls)
    # every request reached the UAS through the proxy, which Record-Routed the INVITEs
    invites = [m for m in uas_result.messages()
               if m.direction == "received" and not m.is_response and m.method == "INVITE"]
    assert len({m.call_id for m in invites}) == calls
    for invite in invites[:5]:
        assert len(invite.headers("Via")) + sum(v.count(",") for v in invite.headers("Via")) >= 2
        assert invite.headers("Record-Route"), invite.text


def test_cancel_before_answer(pbx, run_sipp, ports):
    calls = 5
    uas_port = ports.port()
    server = pbx(routes=[(UAS_ROUTE, f"sip:uas@127.0.0.1:{uas_port}")], t1=0.1)
    with run_sipp("uas-cancel", scenario=SCENARIOS / "uas_cancel.xml", local_port=uas_port,
                  calls=calls, timeout=30) as uas:
        uac = run_sipp("uac-cancel", scenario=SCENARIOS / "uac_cancel.xml",
                       remote=f"127.0.0.1:{server.port}", service="uas", calls=calls,
                       timeout=30).wait()
        uas_result = uas.wait(timeout=15)
    uac.check(calls)
    uas_result.check(calls)
    for msgs in _one_call_each(uac.messages(), calls):
        finals = [(m.status, m.method) for m in msgs
                  if m.direction == "received" and m.is_response and (m.status or 0) >= 200]
        assert (200, "CANCEL") in finals and (487, "INVITE") in finals, finals
        assert (200, "INVITE") not in finals
    for msgs in _one_call_each(uas_result.messages(), calls):
        got = [m.method for m in msgs if m.direction == "received" and not m.is_response]
        assert got[:3] == ["INVITE", "CANCEL", "ACK"], got


def test_proxy_retransmits_invite_timer_a(pbx, run_sipp, ports):
    """The UAS ignores the first INVITE; only the proxy's Timer A retransmission gets answered."""
    calls = 3
    uas_port = ports.port()
    server = pbx(routes=[(UAS_ROUTE, f"sip:uas@127.0.0.1:{uas_port}")], t1=0.1)
    with run_sipp("uas-ignore-invite", scenario=SCENARIOS / "uas_ignore_invite.xml",
                  local_port=uas_port, calls=calls, timeout=30, extra=["-nr"]) as uas:
        uac = run_sipp("uac", scenario=SCENARIOS / "uac_rr.xml",
                       remote=f"127.0.0.1:{server.port}", service="uas", calls=calls,
                       timeout=30).wait()
        uas_result = uas.wait(timeout=15)
    uac.check(calls)
    uas_result.check(calls)
    for msgs in _one_call_each(uas_result.messages(), calls):
        invites = [m for m in msgs if m.direction == "received" and m.method == "INVITE"
                   and not m.is_response]
        assert len(invites) >= 2
        # a retransmission, not a new transaction: same branch, same CSeq
        assert len({m.top_branch for m in invites}) == 1, [m.top_branch for m in invites]
        assert len({m.header("CSeq") for m in invites}) == 1
    # the UAC sent its INVITE once per call: the copies came from the proxy
    sent = [m for m in uac.messages() if m.direction == "sent" and m.method == "INVITE"]
    assert len(sent) == calls, "UAC retransmitted its INVITE: the proxy was too slow to answer 100"


def test_2xx_retransmission_forwarded(pbx, run_sipp, ports):
    """The UAC ignores the first 200; the UAS retransmits it and the proxy must forward that."""
    calls = 3
    uas_port = ports.port()
    server = pbx(routes=[(UAS_ROUTE, f"sip:uas@127.0.0.1:{uas_port}")], t1=0.1)
    with run_sipp("uas", scenario=SCENARIOS / "uas.xml", local_port=uas_port, calls=calls,
                  timeout=30) as uas:
        uac = run_sipp("uac-ignore-200", scenario=SCENARIOS / "uac_ignore_200.xml",
                       remote=f"127.0.0.1:{server.port}", service="uas", calls=calls,
                       timeout=30, extra=["-nr"]).wait()
        uas_result = uas.wait(timeout=15)
    uac.check(calls)
    uas_result.check(calls)
    for msgs in _one_call_each(uac.messages(), calls):
        oks = [m for m in msgs if m.direction == "received" and m.status == 200
               and m.method == "INVITE"]
        assert len(oks) >= 2
        # the same response twice: one dialog (same To tag), not two forks
        assert len({m.header("To") for m in oks}) == 1, [m.header("To") for m in oks]


def test_loose_routing_through_record_route(pbx, run_sipp, ports):
    """ACK and BYE follow the route set (rrs) to the callee's Contact: RFC 3261 12.2.1.1."""
    calls = 10
    uas_port = ports.port()
    server = pbx(routes=[(UAS_ROUTE, f"sip:uas@127.0.0.1:{uas_port}")])
    with run_sipp("uas", scenario=SCENARIOS / "uas.xml", local_port=uas_port, calls=calls,
                  timeout=30) as uas:
        uac = run_sipp("uac-rr", scenario=SCENARIOS / "uac_rr.xml",
                       remote=f"127.0.0.1:{server.port}", service="uas", calls=calls,
                       rate=20, timeout=30).wait()
        uas_result = uas.wait(timeout=15)
    uac.check(calls)
    uas_result.check(calls)
    for msgs in _one_call_each(uac.messages(), calls):
        ok = next(m for m in msgs if m.direction == "received" and m.status == 200
                  and m.method == "INVITE")
        record_route = ok.headers("Record-Route")
        assert record_route and all(";lr" in r for r in record_route), record_route
        contact = _uri_in(ok.header("Contact"))
        assert f"127.0.0.1:{uas_port}" in contact, contact
        for method in ("ACK", "BYE"):
            req = next(m for m in msgs if m.direction == "sent" and m.method == method
                       and not m.is_response)
            assert req.request_uri == contact, req.start_line
            assert req.headers("Route") == record_route, (req.headers("Route"), record_route)
    for msgs in _one_call_each(uas_result.messages(), calls):
        for method in ("ACK", "BYE"):
            req = next(m for m in msgs if m.direction == "received" and m.method == method
                       and not m.is_response)
            # the proxy consumed its own Route entry and forwarded to the Request-URI
            assert f"127.0.0.1:{uas_port}" in (req.request_uri or ""), req.start_line
            assert not req.headers("Route"), req.text
            assert len(req.headers("Via")) >= 2 or "," in (req.header("Via") or ""), req.text
