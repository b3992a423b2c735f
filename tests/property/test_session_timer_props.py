"""Properties of session timers (RFC 4028).

* Session-Expires and Min-SE values survive format -> parse; random and mutated text makes the
  parsers raise ``ParseError`` and nothing else.
* Any two policies negotiate, through real messages and at most one 422, to one interval both
  sides agree on, no smaller than either side's minimum, with exactly one refresher.
* Deadlines are ordered (refresh before BYE before expiry), ``due`` only moves forward in time,
  and refreshing never brings a deadline closer.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.sip.dialog import create_response
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.session_timer import (
    MAX_DELTA,
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

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

refreshers = st.sampled_from([None, "uac", "uas"])
policies = st.builds(
    lambda min_se, extra, refresher, alone: SessionTimerPolicy(min_se + extra, min_se, refresher,
                                                               alone),
    st.integers(90, 7200), st.integers(0, 7200), refreshers, st.booleans())
timers = st.builds(SessionTimer, st.integers(1, 10**7), st.sampled_from(["local", "remote"]),
                   st.floats(0, 1e9, allow_nan=False), st.integers(90, 10**4), st.booleans())


def invite(headers: list[tuple[str, str]]) -> Request:
    lines = ["INVITE sip:bob@b.example SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp",
             "From: <sip:a@a.example>;tag=1", "To: <sip:bob@b.example>", "Call-ID: p@a",
             "CSeq: 1 INVITE", *(f"{name}: {value}" for name, value in headers)]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def answer(request: Request, status: int, headers: list[tuple[str, str]]) -> Response:
    msg = parse_message(bytes(create_response(request, status, to_tag="2", headers=headers)))
    assert isinstance(msg, Response)
    return msg


# -- parsing -----------------------------------------------------------------------------------


@FAST
@given(st.integers(0, MAX_DELTA), refreshers)
def test_session_expires_round_trips(interval: int, refresher: str | None) -> None:
    se = SessionExpires(interval, refresher)  # type: ignore[arg-type]
    assert parse_session_expires(str(se)) == se


@FAST
@given(st.integers(0, MAX_DELTA))
def test_min_se_round_trips(value: int) -> None:
    assert parse_min_se(str(value)) == value


def mutate(text: str, data: st.DataObject) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        c = data.draw(st.one_of(st.sampled_from(';=" ,\t0123456789uacsrefresh'),
                                st.characters(blacklist_categories=("Cs",))))
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + c + text[i + 1 :]
    return text


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.text(st.sampled_from("0123456789;= \t,refshuacx\"-"), max_size=40)))
def test_parsers_raise_only_parse_error_on_random_text(text: str) -> None:
    for parse in (parse_session_expires, parse_min_se):
        try:
            parse(text)
        except ParseError:
            pass


@FUZZ
@given(st.sampled_from(["1800", "90;refresher=uac", "3600;refresher=uas;x=y", "120"]), st.data())
def test_parsers_raise_only_parse_error_on_mutated_values(value: str, data: st.DataObject) -> None:
    text = mutate(value, data)
    try:
        se = parse_session_expires(text)
    except ParseError:
        return
    assert parse_session_expires(str(se)) == se
    assert 0 <= se.interval <= MAX_DELTA


# -- negotiation -------------------------------------------------------------------------------


@FAST
@given(policies, policies, st.floats(0, 1e6, allow_nan=False))
def test_any_two_policies_agree_on_one_interval_and_one_refresher(
        uac: SessionTimerPolicy, uas: SessionTimerPolicy, now: float) -> None:
    request = invite(offer_headers(uac))
    min_se = check_request(request, uas)
    if min_se is not None:
        retry = on_422(answer(request, 422, [("Min-SE", str(min_se))]), uac)
        assert retry != uac  # a 422 from a conforming UAS always asks for something new
        uac = retry
        request = invite(offer_headers(uac))
        assert check_request(request, uas) is None  # one round is enough
    theirs = from_request(request, uas, now)
    assert theirs is not None
    ours = from_2xx(answer(request, 200, answer_headers(theirs)), uac, now)
    assert ours is not None
    assert ours.interval == theirs.interval
    assert ours.interval >= max(uac.min_se, uas.min_se)
    assert ours.interval <= uac.expires  # the UAS may lower the interval, never raise it
    assert {ours.refresher, theirs.refresher} == {"local", "remote"}
    if uac.refresher is not None:  # the UAS must honour a refresher the UAC named
        assert ours.refresher == ("local" if uac.refresher == "uac" else "remote")
    # The next refresh, from whichever side, keeps the negotiated values (§7.4).
    refresher_policy = uac if ours.refresher == "local" else uas
    refresher_timer = ours if ours.refresher == "local" else theirs
    again = from_request(invite(offer_headers(refresher_policy, refresher_timer)),
                         uas if ours.refresher == "local" else uac, now)
    assert again is not None and again.refresher == "remote"
    assert again.interval <= ours.interval


@FAST
@given(policies, st.floats(0, 1e6, allow_nan=False))
def test_a_peer_without_timers_leaves_the_refresh_to_us(policy: SessionTimerPolicy,
                                                        now: float) -> None:
    plain = invite([])
    as_uas = from_request(plain, policy, now)
    as_uac = from_2xx(answer(invite(offer_headers(policy)), 200, []), policy, now)
    for timer in (as_uas, as_uac):
        if policy.refresh_alone:
            assert timer is not None
            assert timer.refresher == "local" and not timer.peer_supports
            assert timer.interval == policy.expires
        else:
            assert timer is None


# -- deadlines ---------------------------------------------------------------------------------


@FAST
@given(timers)
def test_deadlines_are_ordered(timer: SessionTimer) -> None:
    end = timer.started + timer.interval
    assert timer.started < timer.expires_at < end
    assert timer.expires_at >= end - 32
    if timer.refresher == "local":
        assert timer.refresh_at is not None
        assert timer.started < timer.refresh_at < timer.expires_at
        assert timer.next_deadline == timer.refresh_at
    else:
        assert timer.refresh_at is None
        assert timer.next_deadline == timer.expires_at


RANK = {None: 0, "refresh": 1, "bye": 2}


@FAST
@given(timers, st.lists(st.floats(0, 2e9, allow_nan=False), min_size=1, max_size=20))
def test_due_only_moves_forward(timer: SessionTimer, times: list[float]) -> None:
    ranks = [RANK[timer.due(t)] for t in sorted(times)]
    assert ranks == sorted(ranks)
    for t in times:
        due = timer.due(t)
        assert (due is None) == (t < timer.next_deadline)
        if timer.refresher == "remote":
            assert due != "refresh"


@FAST
@given(timers, st.lists(st.floats(-1e9, 2e9, allow_nan=False), min_size=1, max_size=10))
def test_refreshing_never_brings_a_deadline_closer(timer: SessionTimer,
                                                   times: list[float]) -> None:
    for t in times:
        later = timer.refreshed(t)
        assert later.next_deadline >= timer.next_deadline
        assert later.expires_at >= timer.expires_at
        assert (later.interval, later.refresher, later.min_se) == (
            timer.interval, timer.refresher, timer.min_se)
        timer = later
