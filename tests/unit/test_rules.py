"""Routing rules as middleware: business hours, black/white/VIP lists, caller region, chain.

Driven with a fake call (the ``RuleCall`` protocol, recording every decision and refusal) and a
fake clock; real numbers: 010 Beijing fixed line, 020 Guangzhou, 138/139 mobiles.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pbx.apps.numbers import NumberList
from pbx.apps.rules import (
    App,
    Middleware,
    RuleCall,
    blacklist,
    build_rules,
    business_hours,
    by_region,
    chain,
    known_place,
    resolve_app,
    similar_place,
    vip,
    whitelist,
)
from pbx.apps.schedule import Schedule
from pbx.config import parse_config
from pbx.events import Reason
from pbx.region import Region, region_of

SH = ZoneInfo("Asia/Shanghai")
BEIJING_FIXED = "01062345678"
GUANGZHOU_FIXED = "02083456789"
BEIJING_MOBILE = "13800138000"       # 138 0013: a Beijing mobile block
BEIJING_MOBILE_139 = "13911112222"
SHANGHAI_MOBILE = "13900139000"
SHENZHEN_FIXED = "075583456789"
US = "+14155552671"


@dataclass
class FakeCall:
    """A call as rules see it; every decision, end reason, refusal and app run is logged."""

    caller: str
    dialed: str = "4001234567"
    clock: datetime = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)     # Monday 10:00 in Shanghai
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
        return self.clock

    @property
    def decisions(self) -> list[tuple[str, str]]:
        return [(e[1], e[2]) for e in self.log if e[0] == "decide"]

    @property
    def ran(self) -> list[str]:
        return [e[1] for e in self.log if e[0] == "app"]


def run(step: Awaitable[None]) -> None:
    """Run an awaitable that never suspends (the fake call never waits): no event loop."""
    try:
        next(step.__await__())
    except StopIteration:
        return
    raise AssertionError("the coroutine suspended")


def app(label: str) -> App[FakeCall]:
    async def _app(call: FakeCall) -> None:
        call.log.append(("app", label))
    return _app


def through(mw: Middleware[FakeCall], call: FakeCall) -> FakeCall:
    run(mw(call, app("next")))
    return call


def refused(call: FakeCall, status: int, cause: str) -> None:
    """The call was refused the documented way: end reason first, then the reject."""
    ends = [e for e in call.log if e[0] in ("end", "reject")]
    assert ends == [("end", Reason.REJECTED_BY_RULE, status, cause), ("reject", status)]
    assert call.ran == []


def _typed(call: FakeCall) -> RuleCall:
    return call       # mypy checks that the fake satisfies the protocol


# Business hours -----------------------------------------------------------------------------------

WEEKDAYS = {d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
HOURS = Schedule("Asia/Shanghai", WEEKDAYS, holidays=["2026-10-01"],
                 special={"2026-10-10": ["09:00-18:00"]})


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    """A Shanghai wall-clock time as the aware UTC datetime ``call.now()`` returns."""
    return datetime(y, mo, d, h, mi, tzinfo=SH).astimezone(UTC)


def test_hours_open_goes_on() -> None:
    call = through(business_hours(HOURS, closed=480), FakeCall(BEIJING_FIXED,
                                                               clock=at(2026, 11, 30, 10)))
    assert call.decisions == [("hours", "open")]
    assert call.ran == ["next"]
    assert not [e for e in call.log if e[0] in ("end", "reject")]


def test_hours_closed_rejects_with_the_status_and_says_when() -> None:
    call = through(business_hours(HOURS, closed=480), FakeCall(BEIJING_FIXED,
                                                               clock=at(2026, 11, 30, 19, 5)))
    assert call.decisions == [("hours", "closed")]
    refused(call, 480, "hours: closed at 2026-11-30 19:05 Mon (Asia/Shanghai)")


def test_hours_lunch_break_and_weekend_are_closed() -> None:
    mw = business_hours(HOURS, closed=603, name="office")
    for when in (at(2026, 11, 30, 12, 30), at(2026, 12, 5, 10)):      # lunch; Saturday
        call = through(mw, FakeCall(BEIJING_FIXED, clock=when))
        assert call.decisions == [("office", "closed")]
        assert ("reject", 603) in call.log


def test_hours_holiday_closed_and_make_up_day_open() -> None:
    mw = business_hours(HOURS, closed=480)
    holiday = through(mw, FakeCall(BEIJING_FIXED, clock=at(2026, 10, 1, 10)))   # a Thursday
    assert holiday.decisions == [("hours", "closed")]
    assert "2026-10-01 10:00 Thu" in holiday.log[1][3]
    saturday = through(mw, FakeCall(BEIJING_FIXED, clock=at(2026, 10, 10, 12, 30)))
    assert saturday.decisions == [("hours", "open")] and saturday.ran == ["next"]


def test_hours_overnight_range_runs_into_the_next_morning() -> None:
    night = Schedule("Asia/Shanghai", {"fri": ["22:00-06:00"]})
    mw = business_hours(night, closed=480)
    for when, branch in ((at(2026, 12, 4, 21, 59), "closed"), (at(2026, 12, 4, 23), "open"),
                         (at(2026, 12, 5, 5, 59), "open"), (at(2026, 12, 5, 6), "closed")):
        assert through(mw, FakeCall(BEIJING_FIXED, clock=when)).decisions == [("hours", branch)]


def test_hours_use_the_schedules_time_zone() -> None:
    instant = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)        # Shanghai 10:00, London 02:00
    london = Schedule("Europe/London", WEEKDAYS)
    assert through(business_hours(HOURS, closed=480),
                   FakeCall(BEIJING_FIXED, clock=instant)).decisions == [("hours", "open")]
    call = through(business_hours(london, closed=480), FakeCall(BEIJING_FIXED, clock=instant))
    assert call.decisions == [("hours", "closed")]
    assert call.log[1][3] == "hours: closed at 2026-11-30 02:00 Mon (Europe/London)"


def test_hours_closed_can_run_an_app_instead() -> None:
    call = through(business_hours(HOURS, closed=app("voicemail")),
                   FakeCall(BEIJING_FIXED, clock=at(2026, 11, 30, 20)))
    assert call.decisions == [("hours", "closed")]
    assert call.ran == ["voicemail"]
    assert not [e for e in call.log if e[0] in ("end", "reject")]


@pytest.mark.parametrize("status", [200, 399, 700, True])
def test_reject_status_must_be_a_failure(status: int) -> None:
    with pytest.raises(ValueError, match=r"400\.\.699"):
        business_hours(HOURS, closed=status)
    with pytest.raises(ValueError, match=r"400\.\.699"):
        blacklist(NumberList(["138*"]), status=status)


# Black, white and VIP lists -----------------------------------------------------------------------

BLOCKED = NumberList(["138*", "area:010"])


@pytest.mark.parametrize(("caller", "entry"), [
    (BEIJING_MOBILE, "138*"),                   # prefix
    ("+8613800138000", "138*"),                 # the same number in E.164
    (BEIJING_FIXED, "area:010"),                # fixed line with the area code
    (BEIJING_MOBILE_139, "area:010"),           # a mobile whose home area is Beijing
])
def test_blacklist_rejects_with_status_and_cause(caller: str, entry: str) -> None:
    call = through(blacklist(BLOCKED, status=603), FakeCall(caller))
    assert call.decisions == [("blacklist", "blocked")]
    refused(call, 603, f"blacklist: {entry}")


@pytest.mark.parametrize("caller", [GUANGZHOU_FIXED, SHANGHAI_MOBILE, US, "", "anonymous"])
def test_blacklist_lets_others_on(caller: str) -> None:
    call = through(blacklist(BLOCKED, name="spam"), FakeCall(caller))
    assert call.decisions == [("spam", "allowed")]
    assert call.ran == ["next"]


def test_blacklist_default_status_is_403() -> None:
    refused(through(blacklist(BLOCKED), FakeCall(BEIJING_FIXED)), 403, "blacklist: area:010")


def test_whitelist_lets_only_listed_callers_on() -> None:
    mw = whitelist(NumberList(["area:020", "+14155552671"]), status=404, name="staff")
    for caller in (GUANGZHOU_FIXED, US):
        call = through(mw, FakeCall(caller))
        assert (call.decisions, call.ran) == ([("staff", "allowed")], ["next"])
    call = through(mw, FakeCall(BEIJING_FIXED))
    assert call.decisions == [("staff", "blocked")]
    refused(call, 404, f"staff: {BEIJING_FIXED} is not listed")
    refused(through(mw, FakeCall("")), 404, "staff: anonymous is not listed")


def test_vip_callers_go_to_their_app() -> None:
    mw = vip(NumberList(["13800138000-13800138099", "region:上海市"]), app("vip-desk"))
    for caller in ("13800138042", SHANGHAI_MOBILE):
        call = through(mw, FakeCall(caller))
        assert (call.decisions, call.ran) == ([("vip", "vip")], ["vip-desk"])
    call = through(mw, FakeCall("13800138100"))
    assert (call.decisions, call.ran) == ([("vip", "regular")], ["next"])


# Caller region ------------------------------------------------------------------------------------

def test_region_numbers_used_here_are_where_the_tests_say() -> None:
    assert (region_of(BEIJING_FIXED).city, region_of(BEIJING_MOBILE).city) == ("北京市", "北京市")
    g = region_of(GUANGZHOU_FIXED)
    assert (g.province, g.city) == ("广东省", "广州市")
    assert region_of(SHANGHAI_MOBILE).city == "上海市"
    assert region_of(US).country == "US"


ROUTES = {"北京市": app("beijing"), "广东省": app("guangdong"), "country:US": app("us")}


@pytest.mark.parametrize(("caller", "branch", "ran"), [
    (BEIJING_FIXED, "北京市", "beijing"),
    (BEIJING_MOBILE, "北京市", "beijing"),       # mobiles are placed by their number block
    (GUANGZHOU_FIXED, "广东省", "guangdong"),
    (SHENZHEN_FIXED, "广东省", "guangdong"),
    (US, "country:US", "us"),
    (SHANGHAI_MOBILE, "default", "next"),
    ("anonymous", "default", "next"),
])
def test_region_routes(caller: str, branch: str, ran: str) -> None:
    call = through(by_region(ROUTES), FakeCall(caller))
    assert (call.decisions, call.ran) == ([("region", branch)], [ran])


def test_region_most_specific_wins() -> None:
    mw = by_region({"country:CN": app("china"), "广东省": app("guangdong"),
                    "广州市": app("guangzhou")}, name="geo")
    for caller, branch in ((GUANGZHOU_FIXED, "广州市"), (SHENZHEN_FIXED, "广东省"),
                           (BEIJING_FIXED, "country:CN"), (SHANGHAI_MOBILE, "country:CN")):
        assert through(mw, FakeCall(caller)).decisions == [("geo", branch)]


def test_region_english_names_and_a_default_app() -> None:
    mw = by_region({"Guangzhou": app("gz"), "beijing": app("bj"), "country:us": app("us")},
                   default=app("elsewhere"))
    assert through(mw, FakeCall(GUANGZHOU_FIXED)).ran == ["gz"]
    call = through(mw, FakeCall(BEIJING_MOBILE_139))
    assert (call.decisions, call.ran) == ([("region", "beijing")], ["bj"])
    assert through(mw, FakeCall(US)).decisions == [("region", "country:us")]
    call = through(mw, FakeCall(SHANGHAI_MOBILE))
    assert (call.decisions, call.ran) == ([("region", "default")], ["elsewhere"])


def test_region_area_codes_shared_by_several_cities() -> None:
    # 0851 is Guiyang, Zunyi and Anshun; 0898 Haikou and Sanya: any of them routes the call
    mw = by_region({"遵义市": app("zunyi"), "Sanya": app("sanya"), "贵州省": app("guizhou")})
    assert through(mw, FakeCall("085182345678")).decisions == [("region", "遵义市")]
    assert through(mw, FakeCall("089862345678")).decisions == [("region", "Sanya")]
    whole = by_region({"海口市、三亚市": app("hainan")})
    assert through(whole, FakeCall("089862345678")).ran == ["hainan"]


def test_region_bad_keys() -> None:
    with pytest.raises(ValueError, match="bad country"):
        by_region({"country:USA": app("x")})
    with pytest.raises(ValueError, match="empty region"):
        by_region({" ": app("x")})


def test_known_places_agree_with_region_of() -> None:
    for number in (BEIJING_FIXED, GUANGZHOU_FIXED, SHENZHEN_FIXED, SHANGHAI_MOBILE,
                   "08512345678", "08986234567", US):
        for lang in ("zh", "en"):
            r = region_of(number, lang=lang)
            for name in (r.city, r.province):
                if name:
                    assert known_place(name), (number, lang, name)
    assert known_place("Guiyang") and known_place(" guangdong ")
    assert not known_place("北京") and not known_place("Atlantis")
    assert similar_place("北京") == "北京市"


# Composition --------------------------------------------------------------------------------------

def tag(label: str, go_on: bool = True) -> Middleware[FakeCall]:
    async def mw(call: FakeCall, next_app: App[FakeCall]) -> None:
        call.log.append(("app", label))
        if go_on:
            await next_app(call)
    return mw


def test_chain_runs_outermost_first_and_can_stop() -> None:
    call = FakeCall(BEIJING_FIXED)
    run(chain([tag("a"), tag("b"), tag("c")], app("app"))(call))
    assert call.ran == ["a", "b", "c", "app"]
    call = FakeCall(BEIJING_FIXED)
    run(chain([tag("a"), tag("b", go_on=False), tag("c")], app("app"))(call))
    assert call.ran == ["a", "b"]
    call = FakeCall(BEIJING_FIXED)
    run(chain([], app("app"))(call))
    assert call.ran == ["app"]


def test_chain_is_fixed_when_built() -> None:
    mws = [tag("a")]
    handler = chain(mws, app("app"))
    mws.append(tag("late"))
    call = FakeCall(BEIJING_FIXED)
    run(handler(call))
    assert call.ran == ["a", "app"]


def test_rules_in_a_chain_record_their_path() -> None:
    hotline = chain([business_hours(HOURS, closed=480), blacklist(BLOCKED),
                     vip(NumberList(["area:020"]), app("vip-desk"))], app("menu"))
    call = FakeCall(GUANGZHOU_FIXED, clock=at(2026, 11, 30, 10))
    run(hotline(call))
    assert call.decisions == [("hours", "open"), ("blacklist", "allowed"), ("vip", "vip")]
    assert call.ran == ["vip-desk"]
    call = FakeCall(BEIJING_FIXED, clock=at(2026, 11, 30, 10))
    run(hotline(call))
    assert call.decisions == [("hours", "open"), ("blacklist", "blocked")]
    refused(call, 403, "blacklist: area:010")
    call = FakeCall(BEIJING_FIXED, clock=at(2026, 11, 30, 22))
    run(hotline(call))
    assert call.decisions == [("hours", "closed")]      # rejected before the blacklist ran


# From the configuration ---------------------------------------------------------------------------

CONFIG = """\
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "pbx.local"

[[rules]]
name = "hours"
type = "hours"
timezone = "Asia/Shanghai"
weekly = { mon = ["09:00-18:00"] }
closed = "after-hours"

[[rules]]
name = "blocked"
type = "blacklist"
numbers = ["138*", "area:010"]
status = 603

[[rules]]
name = "staff"
type = "whitelist"
numbers = ["area:020"]

[[rules]]
name = "vips"
type = "vip"
numbers = ["+14155552671"]
app = "dial:1001"

[[rules]]
name = "geo"
type = "region"
routes = { "广东省" = "guangdong", "country:US" = "dial:sip:us@10.0.0.1" }
default = "menu"
"""

APPS = {"after-hours": app("after-hours"), "guangdong": app("guangdong"), "menu": app("menu")}


def dial(target: str) -> App[FakeCall]:
    return app(f"dial {target}")


def test_build_rules_from_config() -> None:
    config = parse_config(CONFIG, "t.toml")
    rules = build_rules(config.rules, APPS, dial=dial)
    assert list(rules) == ["hours", "blocked", "staff", "vips", "geo"]
    call = through(rules["hours"], FakeCall(GUANGZHOU_FIXED, clock=at(2026, 11, 30, 20)))
    assert (call.decisions, call.ran) == ([("hours", "closed")], ["after-hours"])
    refused(through(rules["blocked"], FakeCall(BEIJING_FIXED)), 603, "blocked: area:010")
    refused(through(rules["staff"], FakeCall(BEIJING_FIXED)), 403,
            f"staff: {BEIJING_FIXED} is not listed")
    assert through(rules["vips"], FakeCall(US)).ran == ["dial 1001"]
    assert through(rules["geo"], FakeCall(SHENZHEN_FIXED)).ran == ["guangdong"]
    assert through(rules["geo"], FakeCall(US)).ran == ["dial sip:us@10.0.0.1"]
    assert through(rules["geo"], FakeCall(BEIJING_FIXED)).ran == ["menu"]


def test_build_rules_names_an_unknown_app() -> None:
    config = parse_config(CONFIG, "t.toml")
    apps = {k: v for k, v in APPS.items() if k != "guangdong"}
    with pytest.raises(LookupError, match=r"rule 'geo' \(line 29\): unknown app 'guangdong'"):
        build_rules(config.rules, apps, dial=dial)
    with pytest.raises(LookupError, match="'dial:1001': no dial app factory"):
        build_rules(config.rules, APPS)


def test_resolve_app() -> None:
    menu = APPS["menu"]
    assert resolve_app("menu", APPS) is menu
    call = FakeCall(US)
    run(resolve_app("dial:1002", APPS, dial=dial)(call))
    assert call.ran == ["dial 1002"]
    with pytest.raises(LookupError, match=r"unknown app 'nope' \(registered: after-hours, "):
        resolve_app("nope", APPS)
    with pytest.raises(LookupError, match=r"registered: none"):
        resolve_app("nope", {})


def test_fake_call_satisfies_the_protocol() -> None:
    call = FakeCall(BEIJING_FIXED)
    assert _typed(call) is call
    assert call.now().tzinfo is not None and call.region.city == "北京市"
