"""The per-source token bucket, with a ``now`` variable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip.ratelimit import RateLimiter


def test_burst_then_rate() -> None:
    rl = RateLimiter(rate=8, burst=5)
    now = 100.0
    assert [rl.allow("a", now) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.dropped == 2
    now += 0.125                                 # one token back (exact in binary)
    assert [rl.allow("a", now) for _ in range(2)] == [True, False]
    assert rl.allow("b", now)                    # sources are independent
    now += 10.0                                  # refilled, but only up to the burst
    assert sum(rl.allow("a", now) for _ in range(10)) == 5


def test_table_is_bounded_and_forgets_least_recent() -> None:
    rl = RateLimiter(rate=1, burst=1, max_sources=3)
    for s in "abc":
        assert rl.allow(s, 0.0)
    assert not rl.allow("a", 0.0)                # a is now the most recent
    assert rl.allow("d", 0.0)                    # evicts b
    assert len(rl) == 3
    assert rl.allow("b", 0.0)                    # b was forgotten: full bucket again
    assert not rl.allow("a", 0.0) or len(rl) == 3


def test_bad_parameters() -> None:
    for kw in ({"rate": 0}, {"rate": 1, "burst": 0.5}, {"rate": 1, "max_sources": 0}):
        with pytest.raises(ValueError):
            RateLimiter(**kw)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(1, 1000), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, burst: int,
                                                       gaps: list[float]) -> None:
    rl = RateLimiter(rate=rate, burst=burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += rl.allow("x", now)
    assert allowed <= burst + rate * now + 1e-6
    assert allowed + rl.dropped == len(gaps)
