"""Number lists for blacklists, whitelists and VIP lists.

An entry is one of:

- an exact number: ``"+8613800138000"`` or national ``"13800138000"`` (compared in E.164);
- a prefix: ``"138*"`` (national digits) or ``"+1415*"`` (E.164 digits);
- a range of equal-length numbers: ``"13800138000-13800138099"``;
- an area code: ``"area:010"`` (every number from Beijing: fixed lines with that code, and mobile
  numbers whose home area is there);
- a region: ``"region:广东省"``, ``"region:深圳市"`` (province or city, as ``pbx.region`` names
  them in Chinese or English) or ``"country:US"``.

``match(number)`` returns the entry that matched (for the call record), or None. Exact numbers
and prefixes cost a few dict lookups; regions one cached ``region_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

from pbx.region import region_of

__all__ = ["NumberList", "NumberListError"]


class NumberListError(ValueError):
    """An entry that is not a number, prefix, range, area, region or country."""


@dataclass(frozen=True, slots=True)
class _Range:
    low: int
    high: int
    length: int
    entry: str


class NumberList:
    """A set of number patterns; see the module docstring for the forms."""

    def __init__(self, entries: Iterable[str], *, default_country: str = "CN") -> None:
        self.default_country = default_country.upper()
        self._exact: dict[str, str] = {}
        self._prefix: dict[str, str] = {}
        self._ranges: list[_Range] = []
        self._places: dict[str, str] = {}      # province / city name -> entry
        self._countries: dict[str, str] = {}
        self.entries: tuple[str, ...] = tuple(entries)
        for entry in self.entries:
            self._add(entry.strip(), entry)

    def _add(self, text: str, entry: str) -> None:
        kind, colon, rest = text.partition(":")
        if colon and kind in ("area", "region", "country"):
            rest = rest.strip()
            if not rest:
                raise NumberListError(f"empty {kind} in {entry!r}")
            if kind == "country":
                self._countries[rest.upper()] = entry
            elif kind == "region":
                self._places[rest] = entry
            else:
                self._add_area(rest, entry)
            return
        if text.endswith("*"):
            digits = text[:-1]
            if not digits or not digits.isascii() or not digits.lstrip("+").isdigit():
                raise NumberListError(f"bad prefix {entry!r}")
            self._prefix[digits] = entry
            return
        low, dash, high = text.partition("-")
        if dash and low.isascii() and low.isdigit() and high.isascii() and high.isdigit():
            if len(low) != len(high) or int(low) > int(high):
                raise NumberListError(f"bad range {entry!r} (equal lengths, low <= high)")
            self._ranges.append(_Range(int(low), int(high), len(low), entry))
            return
        e164 = self._e164(text)
        if e164 is None:
            raise NumberListError(f"not a number, prefix, range, area or region: {entry!r}")
        self._exact[e164] = entry

    def _add_area(self, code: str, entry: str) -> None:
        if not code.isdigit() or not code.startswith("0") or not 3 <= len(code) <= 4:
            raise NumberListError(f"bad area code {entry!r} (e.g. area:010, area:0755)")
        # the place the numbering plan gives for a fixed line in that area
        for local in ("62345678", "82345678", "2345678", "6234567"):
            sample = region_of(code + local, default_country="CN")
            if not (sample.valid and sample.city):
                continue
            parsed = phonenumbers.parse(sample.number)
            ndc = phonenumbers.length_of_national_destination_code(parsed)
            if "0" + str(parsed.national_number)[:ndc] != code:
                continue                     # parsed under a longer code (0996 for "099")
            for city in sample.city.split("、"):     # "海口市、三亚市": one code, two cities
                self._places[city] = entry
            return
        raise NumberListError(f"unknown area code {entry!r}")

    def _e164(self, number: str) -> str | None:
        try:
            parsed = phonenumbers.parse(number, self.default_country)
        except phonenumbers.NumberParseException:
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def match(self, number: str) -> str | None:
        """The entry ``number`` falls under, or None."""
        number = number.strip()
        if not number or len(number) > 32:
            return None
        e164 = self._e164(number)
        if e164 is not None and e164 in self._exact:
            return self._exact[e164]
        if self._prefix:
            national = self._national(number, e164)
            for candidate in (national, e164):
                if not candidate:
                    continue
                for i in range(len(candidate), 0, -1):
                    hit = self._prefix.get(candidate[:i])
                    if hit is not None:
                        return hit
        if self._ranges:
            national = self._national(number, e164)
            if national.isascii() and national.isdigit():
                value = int(national)
                for r in self._ranges:
                    if len(national) == r.length and r.low <= value <= r.high:
                        return r.entry
        if self._places or self._countries:
            region = region_of(number, default_country=self.default_country)
            if region.valid:
                en = region_of(number, default_country=self.default_country, lang="en")
                for place in (region, en):
                    names = [*(place.city or "").split("、"), place.city, place.province]
                    for name in names:
                        if name and name in self._places:
                            return self._places[name]
                if region.country and region.country in self._countries:
                    return self._countries[region.country]
        return None

    def _national(self, number: str, e164: str | None) -> str:
        """National significant digits with the trunk prefix (``0755...``, ``138...``)."""
        if e164 is None:
            return "".join(c for c in number if c in "0123456789")
        parsed = phonenumbers.parse(e164)
        national = str(parsed.national_number)
        if phonenumbers.region_code_for_number(parsed) == "CN" and not national.startswith("1"):
            national = "0" + national        # fixed lines are written with their 0 area code
        return national

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and self.match(number) is not None

    def __len__(self) -> int:
        return len(self.entries)
