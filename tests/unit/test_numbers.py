"""Blacklist / whitelist / VIP number lists."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.apps.numbers import NumberList, NumberListError


def test_exact_numbers_in_any_format() -> None:
    nl = NumberList(["+8613800138000", "021 1234 5678"])
    assert nl.match("13800138000") == "+8613800138000"
    assert nl.match("+86 138 0013 8000") == "+8613800138000"
    assert nl.match("02112345678") == "021 1234 5678"
    assert nl.match("13800138001") is None


def test_prefixes_national_and_international() -> None:
    nl = NumberList(["138*", "+1415*", "0755*"])
    assert nl.match("13812345678") == "138*"
    assert nl.match("+8613812345678") == "138*"
    assert nl.match("+14155552671") == "+1415*"
    assert nl.match("075512345678") == "0755*"
    assert nl.match("+8675512345678") == "0755*"        # same number written in E.164
    assert nl.match("13912345678") is None


def test_ranges() -> None:
    nl = NumberList(["13800138000-13800138099"])
    assert nl.match("13800138042") == "13800138000-13800138099"
    assert nl.match("13800138100") is None
    with pytest.raises(NumberListError):
        NumberList(["100-99"])


def test_area_code_covers_fixed_lines_and_mobiles_of_the_area() -> None:
    nl = NumberList(["area:010"])
    assert nl.match("01062345678") == "area:010"
    assert nl.match("13800138000") == "area:010"        # a Beijing mobile
    assert nl.match("02112345678") is None              # Shanghai
    assert nl.match("+8613912345678") is None           # Changzhou mobile


def test_regions_and_countries() -> None:
    nl = NumberList(["region:广东省", "region:Shanghai", "country:US"])
    assert nl.match("075512345678") == "region:广东省"
    assert nl.match("02112345678") == "region:Shanghai"
    assert nl.match("+14155552671") == "country:US"
    assert nl.match("+442071234567") is None


@pytest.mark.parametrize("bad", ["hello", "*", "12a*", "area:abc", "area:099", "region:",
                                 "123-45"])
def test_bad_entries_are_refused_with_the_entry(bad: str) -> None:
    with pytest.raises(NumberListError, match="'"):
        NumberList([bad])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_match_never_raises(text: str) -> None:
    nl = NumberList(["138*", "area:010", "country:US", "13800138000-13800138099"])
    assert nl.match(text) is None or nl.match(text) in nl.entries


def test_area_code_shared_by_two_cities() -> None:
    nl = NumberList(["area:0898"])                      # Haikou and Sanya
    assert nl.match("+8689862345678") == "area:0898"
