"""The B2BUA's pure decisions: identities, fork status, reasons, INFO digits, redirects."""

from __future__ import annotations

import pytest

from pbx.events import Reason
from pbx.sip.b2bua import (
    a_status_for,
    best_status,
    from_address,
    info_digit,
    reason_for,
    redirect_targets,
)
from pbx.sip.message import Headers, Request, Response
from pbx.sip.uri import parse_uri


def _info(ctype: str, body: bytes) -> Request:
    h = Headers()
    h.add("Content-Type", ctype)
    return Request("INFO", parse_uri("sip:pbx@127.0.0.1"), h, body)


def test_from_address_presents_only_the_number() -> None:
    addr = from_address("+86 138-0013 8000", "pbx.test", display='Ann "the" Caller', tag="t1")
    assert str(addr) == '"Ann the Caller" <sip:+86138-00138000@pbx.test>;tag=t1'
    assert str(from_address("", "pbx.test")) == "<sip:anonymous@pbx.test>"
    assert str(from_address("1001;evil=1@x", "pbx.test")) == "<sip:1001evil1x@pbx.test>"


@pytest.mark.parametrize(("statuses", "best"), [
    ([], None), ([480, 486], 486), ([404, 503], 404), ([480, 404], 404), ([408, 480], 408),
    ([486, 603], 603), ([500, 480], 480), ([503], 503), ([487, 404], 404),
])
def test_best_status(statuses: list[int], best: int | None) -> None:
    assert best_status(statuses) == best


def test_reasons_and_caller_status() -> None:
    assert [reason_for(s) for s in (486, 600, 603, 480, 408, None, 404, 500)] == [
        Reason.BUSY, Reason.BUSY, Reason.BUSY, Reason.NO_ANSWER, Reason.NO_ANSWER,
        Reason.NO_ANSWER, Reason.FAILED, Reason.FAILED]
    assert a_status_for(486, Reason.BUSY) == 486
    assert a_status_for(408, Reason.NO_ANSWER) == 480
    assert a_status_for(404, Reason.FAILED) == 404
    assert a_status_for(500, Reason.FAILED) == 503
    assert a_status_for(None, Reason.FAILED) == 503


@pytest.mark.parametrize(("ctype", "body", "digit"), [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
    ("application/dtmf-relay", b"signal = #\r\n", "#"),
    ("application/dtmf-relay", b"Signal=11\r\n", "#"),        # event code 11
    ("application/dtmf-relay", b"Signal=a\r\n", "A"),
    ("application/dtmf", b"7", "7"),
    ("application/dtmf", b"10\r\n", "*"),
    ("application/dtmf-relay", b"Duration=160\r\n", None),
    ("application/dtmf-relay", b"Signal=16\r\n", None),
    ("application/dtmf", b"x", None),
    ("text/plain", b"Signal=5", None),
])
def test_info_digit(ctype: str, body: bytes, digit: str | None) -> None:
    assert info_digit(_info(ctype, body)) == digit


def test_redirect_targets_by_q_then_order() -> None:
    resp = Response(302)
    for value in ("<sip:a@h1>;q=0.5", "<sip:b@h2>", "<tel:+1234>", "garbage<<",
                  "<sip:c@h3>;q=0.9", "<sip:d@h4>;q=x"):
        resp.headers.add("Contact", value)
    assert [str(u) for u in redirect_targets(resp)] == ["sip:b@h2", "sip:c@h3", "sip:a@h1",
                                                        "sip:d@h4"]
    assert len(redirect_targets(resp, limit=2)) == 2
