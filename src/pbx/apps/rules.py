"""Routing rules as call middleware: business hours, black/white/VIP lists, caller region.

A middleware is ``async def mw(call, next_app)``: it looks at the call, records its decision with
``call.decide(rule, branch)`` (the call record's rule path and a ``RuleMatched`` event), then goes
on with ``await next_app(call)``, hands the call to another app, or refuses it. A refusal first
says why with ``call.end_reason(Reason.REJECTED_BY_RULE, status=..., cause=...)`` and then
``await call.reject(status)``, so the record reads e.g. ``rejected by rule, 403,
"blacklist: area:010"``.

::

    hotline = chain([business_hours(schedule, closed=480),
                     blacklist(NumberList(["138*", "area:010"])),
                     vip(NumberList(["+8613800138000"]), vip_desk)], menu)

Rules use only a small part of the call (``RuleCall``), so they run against any object that has
it: the real ``pbx.call.Call`` or a test double. ``build_rules`` turns the ``[[rules]]`` tables
of the configuration into middleware.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, overload
from zoneinfo import ZoneInfo

from pbx.apps.numbers import NumberList
from pbx.apps.schedule import Schedule
from pbx.events import Reason
from pbx.region import Region, region_of

if TYPE_CHECKING:
    from pbx.config import RuleConfig

__all__ = [
    "App", "Middleware", "Rule", "RuleCall", "blacklist", "build_rules", "business_hours",
    "by_region", "chain", "known_place", "resolve_app", "similar_place", "vip", "whitelist",
]


class RuleCall(Protocol):
    """What rules need of a call (a subset of ``pbx.call.Call``)."""

    @property
    def caller(self) -> str: ...
    @property
    def dialed(self) -> str: ...
    @property
    def region(self) -> Region: ...
    @property
    def data(self) -> dict[str, Any]: ...
    def decide(self, rule: str, branch: str) -> None: ...
    def end_reason(self, reason: str, *, status: int | None = None, cause: str = "") -> None: ...
    async def reject(self, status: int = 486, reason: str | None = None) -> None: ...
    def now(self) -> datetime: ...


C = TypeVar("C", bound=RuleCall)

App: TypeAlias = Callable[[C], Awaitable[None]]
"""An app: an async function of a call."""
Middleware: TypeAlias = Callable[[C, App[C]], Awaitable[None]]
"""``async def mw(call, next_app)``; goes on with ``await next_app(call)``."""


class Rule(Protocol):
    """A middleware that works with any call type (it hands on the call it was given), so it
    needs no type annotation where it is stored: ``mw = blacklist(...)``."""

    def __call__(self, call: C, next_app: App[C], /) -> Awaitable[None]: ...


def _check(name: str, status: int | None = None) -> None:
    if not name:
        raise ValueError("a rule needs a name (it is recorded on the call)")
    if status is not None and (isinstance(status, bool) or not 400 <= status <= 699):
        raise ValueError(f"rule {name!r}: reject status must be 400..699, got {status!r}")


async def _refuse(call: RuleCall, status: int, cause: str) -> None:
    call.end_reason(Reason.REJECTED_BY_RULE, status=status, cause=cause)
    await call.reject(status)


# Business hours -----------------------------------------------------------------------------------

@overload
def business_hours(schedule: Schedule, *, closed: int, name: str = "hours") -> Rule: ...
@overload
def business_hours(schedule: Schedule, *, closed: App[C], name: str = "hours") -> Middleware[C]:
    ...
def business_hours(schedule: Schedule, *, closed: App[C] | int,
                   name: str = "hours") -> Middleware[C] | Rule:
    """Open (``call.now()`` in ``schedule``): go on. Closed: run the ``closed`` app, or reject
    with ``closed`` as the status. Branches ``"open"`` / ``"closed"``."""
    _check(name, closed if isinstance(closed, int) else None)
    zone = ZoneInfo(schedule.timezone)

    async def mw(call: C, next_app: App[C]) -> None:
        when = call.now()
        if schedule.is_open(when):
            call.decide(name, "open")
            await next_app(call)
            return
        call.decide(name, "closed")
        if isinstance(closed, int):
            local = when.astimezone(zone)
            await _refuse(call, closed, f"{name}: closed at {local:%Y-%m-%d %H:%M %a} "
                                        f"({schedule.timezone})")
        else:
            await closed(call)

    return mw


# Number lists -------------------------------------------------------------------------------------

def blacklist(numbers: NumberList, *, status: int = 403, name: str = "blacklist") -> Rule:
    """Reject callers on ``numbers`` (branch ``"blocked"``, cause naming the entry that
    matched, e.g. ``"blacklist: area:010"``); let the others on (``"allowed"``)."""
    _check(name, status)

    async def mw(call: C, next_app: App[C]) -> None:
        entry = numbers.match(call.caller)
        if entry is None:
            call.decide(name, "allowed")
            await next_app(call)
            return
        call.decide(name, "blocked")
        await _refuse(call, status, f"{name}: {entry}")

    return mw


def whitelist(numbers: NumberList, *, status: int = 403, name: str = "whitelist") -> Rule:
    """Let only callers on ``numbers`` on (``"allowed"``); reject the rest (``"blocked"``)."""
    _check(name, status)

    async def mw(call: C, next_app: App[C]) -> None:
        if numbers.match(call.caller) is not None:
            call.decide(name, "allowed")
            await next_app(call)
            return
        call.decide(name, "blocked")
        await _refuse(call, status, f"{name}: {call.caller or 'anonymous'} is not listed")

    return mw


def vip(numbers: NumberList, app: App[C], *, name: str = "vip") -> Middleware[C]:
    """Callers on ``numbers`` go to ``app`` (branch ``"vip"``), the rest on (``"regular"``)."""
    _check(name)

    async def mw(call: C, next_app: App[C]) -> None:
        if numbers.match(call.caller) is not None:
            call.decide(name, "vip")
            await app(call)
            return
        call.decide(name, "regular")
        await next_app(call)

    return mw


# Caller region ------------------------------------------------------------------------------------

def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _split_city(city: str) -> list[str]:
    """``"海口市、三亚市"``, ``"Guiyang/Zunyi/Anshun"``: one area code, several cities."""
    return [city, *(part for part in re.split(r"[、/]", city) if part != city)]


def _places(region: Region) -> tuple[list[str], list[str]]:
    """(cities, provinces) of ``region`` in Chinese and English (case-folded)."""
    found = [region]
    if region.valid:
        found += [region_of(region.number, lang=lang) for lang in ("zh", "en")]
    cities: list[str] = []
    provinces: list[str] = []
    for r in found:
        if r.city:
            cities += _split_city(r.city)
        if r.province:
            provinces.append(r.province)
    return [_fold(c) for c in cities], [_fold(p) for p in provinces]


# How pbx.region splits "广东省深圳市" (a municipality such as "北京市" is its own province)
_ZH = re.compile(r"^(.+?(?:省|自治区|特别行政区)|内蒙古|广西|西藏|宁夏|新疆)?(.+)?$")


@functools.lru_cache(maxsize=1)
def _place_index() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every place name ``pbx.region`` can give, case-folded; the Chinese ones as written).

    Read from the numbering-plan descriptions phonenumbers ships (~0.3 s, once): for China the
    province and city of each description in both languages, elsewhere the description."""
    from phonenumbers.geodata import GEOCODE_DATA

    folded: set[str] = set()
    chinese: set[str] = set()
    for prefix, texts in GEOCODE_DATA.items():
        for lang in ("zh", "en"):
            text = texts.get(lang)
            if not text:
                continue
            names = [text]
            if prefix.startswith("86"):
                if lang == "zh":
                    m = _ZH.match(text)
                    province, city = (m.group(1), m.group(2)) if m else (None, None)
                else:
                    city, _, province = text.partition(", ")
                names += [province or "", *_split_city(city or "")]
                chinese.update(n for n in names if n)
            folded.update(_fold(n) for n in names if n)
    return frozenset(folded), tuple(sorted(chinese))


def known_place(name: str) -> bool:
    """True if ``pbx.region`` can give ``name`` as a province or city (Chinese or English),
    so a ``by_region`` route keyed by it can match at all."""
    return _fold(name) in _place_index()[0]


def similar_place(name: str) -> str | None:
    """The known Chinese place name closest to ``name`` (for "did you mean")."""
    close = difflib.get_close_matches(name, _place_index()[1], n=1)
    return close[0] if close else None


def by_region(routes: Mapping[str, App[C]], *, default: App[C] | None = None,
              name: str = "region") -> Middleware[C]:
    """Route by the caller's region. Keys are city or province names as ``pbx.region`` gives
    them (``"北京市"``, ``"广东省"``, ``"Guangzhou"``) or ``"country:US"``; the most specific
    match wins (city, then province, then country) and is the branch. No match: ``default``,
    else on to the next app (branch ``"default"``)."""
    _check(name)
    places: dict[str, tuple[str, App[C]]] = {}
    countries: dict[str, tuple[str, App[C]]] = {}
    for key, app in routes.items():
        kind, colon, rest = key.partition(":")
        if colon and kind.strip().lower() == "country":
            code = rest.strip().upper()
            if len(code) != 2 or not code.isalpha() or not code.isascii():
                raise ValueError(f"rule {name!r}: bad country {key!r} (e.g. country:US)")
            countries[code] = (key, app)
        elif not _fold(key):
            raise ValueError(f"rule {name!r}: empty region name")
        else:
            places[_fold(key)] = (key, app)

    def pick(region: Region) -> tuple[str, App[C]] | None:
        cities, provinces = _places(region)
        for place in (*cities, *provinces):
            if place in places:
                return places[place]
        return countries.get(region.country or "")

    async def mw(call: C, next_app: App[C]) -> None:
        hit = pick(call.region)
        if hit is None:
            call.decide(name, "default")
            await (default or next_app)(call)
            return
        call.decide(name, hit[0])
        await hit[1](call)

    return mw


# Composition --------------------------------------------------------------------------------------

def _bind(mw: Middleware[C], next_app: App[C]) -> App[C]:
    async def app(call: C) -> None:
        await mw(call, next_app)

    return app


def chain(middlewares: Sequence[Middleware[C]], app: App[C]) -> App[C]:
    """One app running ``middlewares`` outermost first, then ``app``.

    Each middleware runs once per call and decides whether the rest runs.
    """
    handler = app
    for mw in reversed(tuple(middlewares)):
        handler = _bind(mw, handler)
    return handler


# From the configuration ---------------------------------------------------------------------------

def resolve_app(name: str, apps: Mapping[str, App[C]], *,
                dial: Callable[[str], App[C]] | None = None) -> App[C]:
    """The app a configuration names: ``apps[name]``, or for ``"dial:<target>"`` the app
    ``dial(target)`` builds (dial that extension or URI and bridge). ``LookupError`` if none."""
    kind, colon, target = name.partition(":")
    if colon and kind == "dial":
        if dial is None:
            raise LookupError(f"app {name!r}: no dial app factory was given")
        return dial(target)
    try:
        return apps[name]
    except KeyError:
        known = ", ".join(sorted(apps)) or "none"
        raise LookupError(f"unknown app {name!r} (registered: {known})") from None


def build_rules(config_rules: Iterable[RuleConfig], apps: Mapping[str, App[C]], *,
                dial: Callable[[str], App[C]] | None = None) -> dict[str, Middleware[C]]:
    """Middleware for each ``[[rules]]`` entry, by rule name. App names resolve through
    ``resolve_app``; an unknown one raises ``LookupError`` naming the rule and the app."""
    out: dict[str, Middleware[C]] = {}
    for rule in config_rules:
        try:
            out[rule.name] = _build(rule, apps, dial)
        except LookupError as exc:
            raise LookupError(f"rule {rule.name!r} (line {rule.line}): {exc}") from None
    return out


def _build(rule: RuleConfig, apps: Mapping[str, App[C]],
           dial: Callable[[str], App[C]] | None) -> Middleware[C]:
    def app(name: str) -> App[C]:
        return resolve_app(name, apps, dial=dial)

    if rule.type == "hours":
        assert rule.schedule is not None
        closed = rule.closed if isinstance(rule.closed, int) else app(rule.closed)
        return business_hours(rule.schedule, closed=closed, name=rule.name)
    if rule.type in ("blacklist", "whitelist", "vip"):
        assert rule.numbers is not None
        if rule.type == "blacklist":
            return blacklist(rule.numbers, status=rule.status, name=rule.name)
        if rule.type == "whitelist":
            return whitelist(rule.numbers, status=rule.status, name=rule.name)
        return vip(rule.numbers, app(rule.app), name=rule.name)
    if rule.type == "region":
        routes = {key: app(target) for key, target in rule.routes.items()}
        default = app(rule.default) if rule.default else None
        return by_region(routes, default=default, name=rule.name)
    raise ValueError(f"rule {rule.name!r}: unknown type {rule.type!r}")
