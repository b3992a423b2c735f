"""INFO digit parsing never raises and only ever yields a DTMF digit; the best fork status is
one of the statuses and does not depend on their order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip.b2bua import best_status, info_digit
from pbx.sip.message import Headers, Request
from pbx.sip.uri import parse_uri

_DIGITS = set("0123456789*#ABCD")


@settings(max_examples=300)
@given(st.sampled_from(["application/dtmf-relay", "application/dtmf", "text/plain"]),
       st.binary(max_size=300))
def test_info_digit_is_total(ctype: str, body: bytes) -> None:
    h = Headers()
    h.add("Content-Type", ctype)
    digit = info_digit(Request("INFO", parse_uri("sip:x@127.0.0.1"), h, body))
    assert digit is None or digit in _DIGITS


@settings(max_examples=300)
@given(st.lists(st.integers(300, 699), max_size=8), st.randoms())
def test_best_status_is_a_member_and_order_free(statuses: list[int], rnd: object) -> None:
    best = best_status(statuses)
    assert (best is None) == (not statuses)
    shuffled = list(statuses)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert best_status(shuffled) == best
    if best is not None:
        assert best in statuses
