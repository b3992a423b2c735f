"""Session timers (RFC 4028): header parsing, the UAC rules (§7), the UAS rules (§9), and the
refresh and expiry deadlines (§10)."""

from __future__ import annotations

import pytest

from pbx.errors import ParseError
from pbx.sip.dialog import create_response
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.session_timer import (
    MIN_SE,
    SessionExpires,
    SessionTimer,
    SessionTimerPolicy,
    answer_headers,
    check_request,
    from_2xx,
    from_request,
    offer_headers,
    on_422,
    parse_min_se,
    parse_session_expires,
)


def invite(*headers: str, method: str = "INVITE") -> Request:
    lines = [
        f"{method} sip:bob@b.example SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKst1",
        "Max-Forwards: 70",
        "From: <sip:alice@a.example>;tag=atag",
        "To: <sip:bob@b.example>",
        "Call-ID: st-1@a.example",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@10.0.0.1>",
        *headers,
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def response(status: int, *headers: str) -> Response:
    resp = create_response(invite(), status, to_tag="btag")
    for line in headers:
        name, _, value = line.partition(":")
        resp.headers.add(name.strip(), value.strip())
    again = parse_message(bytes(resp))  # through the wire format, compact names and all
    assert isinstance(again, Response)
    return again


def with_headers(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{name}: {value}" for name, value in pairs]


# -- policy ------------------------------------------------------------------------------------


def test_policy_defaults_are_the_rfc_recommendations() -> None:
    policy = SessionTimerPolicy()
    assert (policy.expires, policy.min_se, policy.refresher) == (1800, 90, None)
    assert MIN_SE == 90


@pytest.mark.parametrize("kwargs", [
    {"min_se": 89}, {"min_se": 0}, {"expires": 60}, {"expires": 100, "min_se": 120},
    {"refresher": "both"}, {"expires": 2**32, "min_se": 90}])
def test_policy_rejects_what_rfc_4028_forbids(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SessionTimerPolicy(**kwargs)  # type: ignore[arg-type]


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1800", SessionExpires(1800, None)),
    ("4000;refresher=uac", SessionExpires(4000, "uac")),
    ("90;refresher=uas", SessionExpires(90, "uas")),
    ("1800 ; refresher = UAS", SessionExpires(1800, "uas")),
    ("0001800;foo=bar;refresher=uac;baz", SessionExpires(1800, "uac")),
    ("4294967295", SessionExpires(2**32 - 1, None)),
])
def test_parse_session_expires(text: str, expected: SessionExpires) -> None:
    assert parse_session_expires(text) == expected


@pytest.mark.parametrize("text", [
    "", "abc", "-5", "1800.5", "1800;refresher=both", "1800;refresher", '1800;refresher="uac"',
    "1800 1", "1800, 90", "4294967296", "99999999999", "1800;refresher=uac;refresher=uas",
    "1800;", ";refresher=uac", "1800 refresher=uac"])
def test_parse_session_expires_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        parse_session_expires(text)


def test_session_expires_round_trips() -> None:
    for se in (SessionExpires(1800), SessionExpires(90, "uac"), SessionExpires(3600, "uas")):
        assert parse_session_expires(str(se)) == se
    assert str(SessionExpires(1800, "uac")) == "1800;refresher=uac"


@pytest.mark.parametrize(("text", "expected"), [("90", 90), ("3600;x=y", 3600), (" 120 ", 120)])
def test_parse_min_se(text: str, expected: int) -> None:
    assert parse_min_se(text) == expected


@pytest.mark.parametrize("text", ["", "x", "90;", "90 s", "4294967296", "90;a=b;a=c"])
def test_parse_min_se_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        parse_min_se(text)


# -- UAC: the request (§7.1, §7.4) --------------------------------------------------------------


def test_initial_offer_carries_supported_session_expires_and_min_se() -> None:
    assert offer_headers(SessionTimerPolicy()) == [
        ("Supported", "timer"), ("Session-Expires", "1800"), ("Min-SE", "90")]
    assert offer_headers(SessionTimerPolicy(600, 120, "uac")) == [
        ("Supported", "timer"), ("Session-Expires", "600;refresher=uac"), ("Min-SE", "120")]


def test_refresh_offer_keeps_interval_and_refresher_from_the_recipients_view() -> None:
    policy = SessionTimerPolicy()
    ours = SessionTimer(900, "local", 0.0, min_se=300)
    theirs = SessionTimer(900, "remote", 0.0)
    assert offer_headers(policy, ours) == [
        ("Supported", "timer"), ("Session-Expires", "900;refresher=uac"), ("Min-SE", "300")]
    assert offer_headers(policy, theirs)[1] == ("Session-Expires", "900;refresher=uas")


def test_refresh_after_a_422_asks_for_at_least_the_new_minimum() -> None:
    # §10: a 422 to a refresh raises Min-SE; the retried refresh asks for at least that, even
    # though the current session interval is smaller.
    timer = SessionTimer(120, "local", 0.0)
    policy = on_422(response(422, "Min-SE: 1000"), SessionTimerPolicy())
    assert offer_headers(policy, timer)[1:] == [
        ("Session-Expires", "1000;refresher=uac"), ("Min-SE", "1000")]


# -- UAC: 422 (§7.3) -----------------------------------------------------------------------------


def test_422_raises_the_interval_to_min_se() -> None:
    policy = SessionTimerPolicy(1800, 90)
    raised = on_422(response(422, "Min-SE: 3600"), policy)
    assert (raised.expires, raised.min_se) == (3600, 3600)
    assert dict(offer_headers(raised))["Session-Expires"] == "3600"
    assert dict(offer_headers(raised))["Min-SE"] == "3600"
    # A smaller Min-SE keeps our larger interval but remembers the minimum.
    lower = on_422(response(422, "Min-SE: 120"), policy)
    assert (lower.expires, lower.min_se) == (1800, 120)


def test_422_asking_nothing_new_returns_the_same_policy() -> None:
    policy = SessionTimerPolicy(1800, 600)
    assert on_422(response(422, "Min-SE: 600"), policy) is policy
    assert on_422(response(422, "Min-SE: 90"), policy) is policy


def test_422_keeps_the_largest_min_se_seen() -> None:
    policy = on_422(response(422, "Min-SE: 2000"), SessionTimerPolicy())
    policy = on_422(response(422, "Min-SE: 1000"), policy)
    assert policy.min_se == 2000


@pytest.mark.parametrize("header", [None, "Min-SE: soon", "Min-SE: 90;"])
def test_422_without_a_usable_min_se_is_a_parse_error(header: str | None) -> None:
    with pytest.raises(ParseError):
        on_422(response(422, *([header] if header else [])), SessionTimerPolicy())


def test_422_only() -> None:
    with pytest.raises(ValueError):
        on_422(response(486), SessionTimerPolicy())


# -- UAC: the 2xx (§7.2) -------------------------------------------------------------------------


def test_2xx_naming_the_uac_makes_us_the_refresher() -> None:
    timer = from_2xx(response(200, "Require: timer", "Session-Expires: 1800;refresher=uac"),
                     SessionTimerPolicy(), 50.0)
    assert timer == SessionTimer(1800, "local", 50.0, 90, peer_supports=True)
    assert timer.refresh_at == 950.0


def test_2xx_naming_the_uas_makes_us_wait_for_refreshes() -> None:
    timer = from_2xx(response(200, "Require: timer", "x: 600;refresher=uas"),
                     SessionTimerPolicy(), 0.0)
    assert timer is not None
    assert (timer.interval, timer.refresher, timer.refresh_at) == (600, "remote", None)
    assert timer.expires_at == 600 - 32


def test_2xx_without_refresher_leaves_the_refresh_to_us() -> None:
    timer = from_2xx(response(200, "Session-Expires: 1200"), SessionTimerPolicy(), 0.0)
    assert timer is not None and timer.refresher == "local"
    assert timer.peer_supports is False  # no Require/Supported timer in the answer


def test_2xx_without_session_expires_peer_does_no_timers() -> None:
    # §7.2: the UAC may keep a timer alone, refreshing with the value it asked for.
    policy = SessionTimerPolicy(1200, 90)
    timer = from_2xx(response(200), policy, 10.0)
    assert timer == SessionTimer(1200, "local", 10.0, 90, peer_supports=False)
    assert from_2xx(response(200), SessionTimerPolicy(refresh_alone=False), 10.0) is None


def test_2xx_interval_below_our_min_se_is_raised() -> None:
    timer = from_2xx(response(200, "Session-Expires: 60;refresher=uas"),
                     SessionTimerPolicy(1800, 120), 0.0)
    assert timer is not None and timer.interval == 120


@pytest.mark.parametrize("headers", [
    ("Session-Expires: never",), ("Session-Expires: 1800;refresher=proxy",),
    ("Session-Expires: 1800", "Session-Expires: 900")])
def test_2xx_with_bad_session_expires_is_a_parse_error(headers: tuple[str, ...]) -> None:
    with pytest.raises(ParseError):
        from_2xx(response(200, *headers), SessionTimerPolicy(), 0.0)


def test_from_2xx_needs_a_2xx() -> None:
    with pytest.raises(ValueError):
        from_2xx(response(180), SessionTimerPolicy(), 0.0)


# -- UAS: 422 and the 2xx (§9) ------------------------------------------------------------------


def test_check_request_asks_for_422_when_interval_is_too_small() -> None:
    policy = SessionTimerPolicy(1800, 300)
    assert check_request(invite("Supported: timer", "Session-Expires: 120"), policy) == 300
    assert check_request(invite("Require: timer", "x: 299"), policy) == 300
    assert check_request(invite("Supported: 100rel, TIMER", "x: 299"), policy) == 300
    assert check_request(invite("Supported: timer", "Session-Expires: 300"), policy) is None
    assert check_request(invite("Supported: timer"), policy) is None
    # A UAC that does not support timers could not act on a 422: the interval is raised instead.
    assert check_request(invite("Session-Expires: 120"), policy) is None


@pytest.mark.parametrize("headers", [
    ("Supported: timer", "Session-Expires: x"), ("Supported: timer", "Min-SE: x"),
    ("Min-SE: 90", "Min-SE: 120")])
def test_check_request_rejects_malformed_headers(headers: tuple[str, ...]) -> None:
    with pytest.raises(ParseError):
        check_request(invite(*headers), SessionTimerPolicy())


# The §9 table: who refreshes, by UAC support and the refresher in the request.
@pytest.mark.parametrize(("headers", "policy_refresher", "local", "wire"), [
    (("Session-Expires: 1800",), None, "local", "uas"),  # N, none -> uas
    (("Session-Expires: 1800;refresher=uac",), None, "local", "uas"),  # N: uac not possible
    (("Supported: timer", "Session-Expires: 1800"), None, "local", "uas"),  # Y, none: our pick
    (("Supported: timer", "Session-Expires: 1800"), "uac", "remote", "uac"),
    (("Supported: timer", "Session-Expires: 1800;refresher=uac"), "uas", "remote", "uac"),
    (("Supported: timer", "Session-Expires: 1800;refresher=uas"), "uac", "local", "uas"),
])
def test_uas_refresher_table(headers: tuple[str, ...], policy_refresher: str | None,
                             local: str, wire: str) -> None:
    policy = SessionTimerPolicy(refresher=policy_refresher)  # type: ignore[arg-type]
    timer = from_request(invite(*headers), policy, 0.0)
    assert timer is not None and timer.refresher == local
    assert answer_headers(timer)[0] == ("Session-Expires", f"1800;refresher={wire}")


def test_uas_lowers_but_never_raises_the_interval() -> None:
    policy = SessionTimerPolicy(1800, 90)
    lowered = from_request(invite("Supported: timer", "Session-Expires: 3600"), policy, 0.0)
    kept = from_request(invite("Supported: timer", "Session-Expires: 1000"), policy, 0.0)
    assert lowered is not None and lowered.interval == 1800
    assert kept is not None and kept.interval == 1000


def test_uas_never_goes_below_the_requests_min_se() -> None:
    policy = SessionTimerPolicy(900, 90)
    timer = from_request(invite("Supported: timer", "Session-Expires: 1800", "Min-SE: 1200"),
                         policy, 0.0)
    assert timer is not None and timer.interval == 1200 and timer.min_se == 1200


def test_uas_raises_a_too_small_interval_from_a_uac_without_timer_support() -> None:
    # RFC 4028 erratum 1687: no 422 possible, so the interval goes up to our minimum.
    timer = from_request(invite("Session-Expires: 60"), SessionTimerPolicy(1800, 120), 0.0)
    assert timer is not None and timer.interval == 120 and timer.refresher == "local"


def test_uas_may_ask_for_a_timer_the_uac_only_supports() -> None:
    timer = from_request(invite("Supported: timer", "Min-SE: 600"), SessionTimerPolicy(300 * 2),
                         5.0)
    assert timer == SessionTimer(600, "local", 5.0, 600, peer_supports=True)
    assert answer_headers(timer) == [("Session-Expires", "600;refresher=uas"),
                                     ("Require", "timer")]


def test_uas_refreshes_alone_for_a_uac_without_timers() -> None:
    timer = from_request(invite(), SessionTimerPolicy(1200), 0.0)
    assert timer == SessionTimer(1200, "local", 0.0, 90, peer_supports=False)
    assert answer_headers(timer) == [("Session-Expires", "1200;refresher=uas")]  # no Require
    assert from_request(invite(), SessionTimerPolicy(refresh_alone=False), 0.0) is None
    # A Session-Expires that a proxy put in is a request for a timer all the same.
    proxied = from_request(invite("Session-Expires: 900"), SessionTimerPolicy(refresh_alone=False),
                           0.0)
    assert proxied is not None and proxied.interval == 900


def test_answer_requires_timer_when_the_uac_refreshes() -> None:
    timer = from_request(invite("Supported: timer", "Session-Expires: 1800;refresher=uac"),
                         SessionTimerPolicy(), 0.0)
    assert timer is not None
    assert answer_headers(timer) == [("Session-Expires", "1800;refresher=uac"),
                                     ("Require", "timer")]


# -- both ends through real messages ---------------------------------------------------------


@pytest.mark.parametrize(("uac", "uas"), [
    (SessionTimerPolicy(), SessionTimerPolicy()),
    (SessionTimerPolicy(1800, 90, "uac"), SessionTimerPolicy(900, 90)),
    (SessionTimerPolicy(1800, 90), SessionTimerPolicy(7200, 3600)),  # one 422 round
    (SessionTimerPolicy(600, 600, "uas"), SessionTimerPolicy(1800, 90, "uac")),
])
def test_negotiation_end_to_end(uac: SessionTimerPolicy, uas: SessionTimerPolicy) -> None:
    rounds = 0
    while True:
        request = invite(*with_headers(offer_headers(uac)))
        min_se = check_request(request, uas)
        if min_se is None:
            break
        rounds += 1
        uac = on_422(response(422, f"Min-SE: {min_se}"), uac)
        assert rounds == 1
    theirs = from_request(request, uas, 0.0)
    assert theirs is not None
    ours = from_2xx(response(200, *with_headers(answer_headers(theirs))), uac, 0.0)
    assert ours is not None
    assert ours.interval == theirs.interval >= max(uac.min_se, uas.min_se)
    assert {ours.refresher, theirs.refresher} == {"local", "remote"}
    assert ours.peer_supports and theirs.peer_supports


def test_rfc_4028_overview_flow() -> None:
    # §3 in short: the UAC asks for 1800 s; a proxy wants at least 3600 s and answers 422; the
    # retry asks 3600 s; the UAS (happy with 1800 s) may not go under the Min-SE of 3600 s.
    uac = SessionTimerPolicy()
    uac = on_422(response(422, "Min-SE: 3600"), uac)
    request = invite(*with_headers(offer_headers(uac)))
    assert request.headers.get("Session-Expires") == "3600"
    assert request.headers.get("Min-SE") == "3600"
    timer = from_request(request, SessionTimerPolicy(), 0.0)
    assert timer is not None and timer.interval == 3600


# -- deadlines (§7.2, §10) -----------------------------------------------------------------------


def test_local_refresher_refreshes_at_half_the_interval() -> None:
    timer = SessionTimer(1800, "local", 100.0)
    assert timer.refresh_at == 1000.0
    assert timer.next_deadline == 1000.0
    assert timer.expires_at == 100.0 + 1800 - 32


def test_bye_margin_is_the_smaller_of_32_s_and_a_third() -> None:
    assert SessionTimer(90, "remote", 0.0).expires_at == 60.0  # 90/3 = 30 < 32
    assert SessionTimer(96, "remote", 0.0).expires_at == 64.0  # exactly 32 either way
    assert SessionTimer(1800, "remote", 0.0).expires_at == 1768.0
    assert SessionTimer(1800, "remote", 0.0).next_deadline == 1768.0


def test_due_walks_from_nothing_to_refresh_to_bye() -> None:
    timer = SessionTimer(120, "local", 0.0)  # refresh at 60 s, BYE at 120 - 32 = 88 s
    assert [timer.due(t) for t in (0.0, 59.9, 60.0, 87.9, 88.0, 500.0)] == [
        None, None, "refresh", "refresh", "bye", "bye"]
    remote = SessionTimer(120, "remote", 0.0)
    assert [remote.due(t) for t in (60.0, 87.9, 88.0)] == [None, None, "bye"]


def test_refreshed_restarts_the_interval_and_never_goes_back() -> None:
    timer = SessionTimer(600, "local", 10.0, min_se=120)
    again = timer.refreshed(310.0)
    assert again == SessionTimer(600, "local", 310.0, min_se=120)
    assert again.refresh_at == 610.0
    assert again.refreshed(5.0) == again


@pytest.mark.parametrize(("interval", "refresher"), [(0, "local"), (2**32, "local"),
                                                     (90, "both")])
def test_timer_validates(interval: int, refresher: str) -> None:
    with pytest.raises(ValueError):
        SessionTimer(interval, refresher, 0.0)  # type: ignore[arg-type]
