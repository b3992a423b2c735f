"""Rules on random inputs: chain order, black/white lists as complements, region branches."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.apps.numbers import NumberList
from pbx.apps.rules import App, Middleware, blacklist, by_region, chain, whitelist
from pbx.events import Reason
from pbx.region import Region, region_of


@dataclass
class FakeCall:
    caller: str
    dialed: str = "4001234567"
    data: dict[str, Any] = field(default_factory=dict)
    log: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def region(self) -> Region:
        return region_of(self.caller)

    def decide(self, rule: str, branch: str) -> None:
        self.log.append(("decide", rule, branch))

    def end_reason(self, reason: str, *, status: int | None = None, cause: str = "") -> None:
        self.log.append(("end", reason, status, cause))

    async def reject(self, status: int = 486, reason: str | None = None) -> None:
        self.log.append(("reject", status))

    def now(self) -> datetime:
        return datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def run(step: Awaitable[None]) -> None:
    try:
        next(step.__await__())
    except StopIteration:
        return
    raise AssertionError("the coroutine suspended")


def app(label: str) -> App[FakeCall]:
    async def _app(call: FakeCall) -> None:
        call.log.append(("app", label))
    return _app


# chain --------------------------------------------------------------------------------------------

def step(i: int, go_on: bool) -> Middleware[FakeCall]:
    async def mw(call: FakeCall, next_app: App[FakeCall]) -> None:
        call.log.append(("mw", i))
        if go_on:
            await next_app(call)
    return mw


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=30))
def test_chain_runs_each_middleware_once_in_order(go_on: list[bool]) -> None:
    handler = chain([step(i, g) for i, g in enumerate(go_on)], app("end"))
    stop = go_on.index(False) if False in go_on else len(go_on)
    expected: list[tuple[Any, ...]] = [("mw", i) for i in range(min(stop + 1, len(go_on)))]
    if stop == len(go_on):
        expected.append(("app", "end"))
    for _ in range(2):                      # the composed app is reusable: fresh run per call
        call = FakeCall("13800138000")
        run(handler(call))
        assert call.log == expected


# black and white lists ----------------------------------------------------------------------------

PLACES = ["area:010", "area:020", "area:0755", "area:021", "region:广东省", "region:Shanghai",
          "country:US", "country:CN"]
mobile = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
fixed = st.sampled_from(["010", "020", "0755", "021", "0898"]).flatmap(
    lambda code: st.from_regex(r"[2-8][0-9]{7}", fullmatch=True).map(lambda n: code + n))
us = st.from_regex(r"\+1415555[0-9]{4}", fullmatch=True)
callers = st.one_of(mobile, fixed, us, st.sampled_from(["", "anonymous", "1001", "+"]),
                    st.text(max_size=12))
prefixes = st.from_regex(r"1[3-9][0-9]?\*|0[1-9][0-9]{0,2}\*", fullmatch=True)
entries = st.lists(st.one_of(prefixes, st.sampled_from(PLACES), mobile), min_size=1,
                   max_size=6)


def outcome(mw: Middleware[FakeCall], caller: str) -> FakeCall:
    call = FakeCall(caller)
    run(mw(call, app("next")))
    return call


@settings(max_examples=300, deadline=None)
@given(entries, callers)
def test_blacklist_and_whitelist_are_complements(listed: list[str], caller: str) -> None:
    numbers = NumberList(listed)
    black = outcome(blacklist(numbers, status=603, name="b"), caller)
    white = outcome(whitelist(numbers, status=404, name="w"), caller)
    entry = numbers.match(caller)
    black_passed = ("app", "next") in black.log
    white_passed = ("app", "next") in white.log
    assert black_passed != white_passed
    assert black_passed == (entry is None)
    assert [e for e in black.log if e[0] == "decide"] == [
        ("decide", "b", "allowed" if black_passed else "blocked")]
    assert [e for e in white.log if e[0] == "decide"] == [
        ("decide", "w", "allowed" if white_passed else "blocked")]
    refused, status = (black, 603) if not black_passed else (white, 404)
    ends = [e for e in refused.log if e[0] in ("end", "reject")]
    assert ends[0][:3] == ("end", Reason.REJECTED_BY_RULE, status)
    assert ends[1:] == [("reject", status)]
    if refused is black:
        assert ends[0][3] == f"b: {entry}" and entry in listed


# region -------------------------------------------------------------------------------------------

KEYS = ["北京市", "上海市", "广东省", "广州市", "Shenzhen", "country:US", "country:CN"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KEYS), unique=True), st.one_of(mobile, fixed, us))
def test_region_branch_is_a_key_that_fits_the_caller(keys: list[str], caller: str) -> None:
    call = outcome(by_region({k: app(k) for k in keys}), caller)
    ((_, rule, branch),) = [e for e in call.log if e[0] == "decide"]
    assert rule == "region"
    ran = [e[1] for e in call.log if e[0] == "app"]
    if branch == "default":
        assert ran == ["next"]
    else:
        assert ran == [branch] and branch in keys
    zh, en = region_of(caller), region_of(caller, lang="en")
    cities = {zh.city, en.city}
    provinces = {zh.province, en.province}
    fits = {k for k in keys if k in cities} or {k for k in keys if k in provinces} or {
        k for k in keys if k == f"country:{zh.country}"}
    assert (branch in fits) if fits else branch == "default"
