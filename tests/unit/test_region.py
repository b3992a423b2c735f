"""Caller region: Chinese area codes and mobile prefixes to province/city; other countries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.region import Region, region_of


@pytest.mark.parametrize(("number", "province", "city"), [
    ("010 6234 5678", "北京市", "北京市"),             # municipality: its own province
    ("02112345678", "上海市", "上海市"),
    ("0755-1234 5678", "广东省", "深圳市"),
    ("0571-8888 8888", "浙江省", "杭州市"),
    ("+86 991 234 5678", "新疆维吾尔自治区", "乌鲁木齐市"),
    ("+8613912345678", "江苏省", "常州市"),            # mobile: by its first seven digits
])
def test_chinese_numbers_give_province_and_city(number: str, province: str, city: str) -> None:
    r = region_of(number)
    assert (r.valid, r.country, r.province, r.city) == (True, "CN", province, city)
    assert r.number.startswith("+86")


def test_english_and_carrier() -> None:
    r = region_of("075512345678", lang="en")
    assert (r.province, r.city, r.description) == ("Guangdong", "Shenzhen", "Shenzhen, Guangdong")
    assert region_of("+8613800138000", lang="en").carrier == "China Mobile"
    assert region_of("01062345678", lang="en").province == "Beijing"


def test_other_countries() -> None:
    us = region_of("+1 415 555 2671", lang="en")
    assert (us.country, us.province, us.city) == ("US", None, "San Francisco, CA")
    uk = region_of("+442071234567", lang="en")
    assert (uk.country, uk.city) == ("GB", "London")
    assert region_of("2071234567", default_country="GB").number == "+442071234567"


@pytest.mark.parametrize("bad", ["", "abc", "110", "+999", "1" * 40, "+86 471 12345678"])
def test_bad_numbers_are_invalid_not_errors(bad: str) -> None:
    r = region_of(bad)
    assert isinstance(r, Region) and not r.valid and r.province is None
    assert str(r)  # never empty


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_never_raises(text: str) -> None:
    assert isinstance(region_of(text), Region)


def test_autonomous_regions_written_without_suffix() -> None:
    r = region_of("+864716234567")                       # Hohhot, "内蒙古呼和浩特市"
    assert (r.province, r.city) == ("内蒙古", "呼和浩特市")
