"""Where a telephone number is from: country, and province and city for Chinese numbers.

Built on ``phonenumbers`` (the Python port of Google's libphonenumber, kept current with the
numbering plans): a Chinese fixed-line number is placed by its area code (``010`` Beijing,
``0755`` Shenzhen), a mobile number by its first seven digits; elsewhere the country (and the
city when the plan tells it). Used for call records, caller-region routing and reports.
Lookups are cached: the same callers recur.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import carrier, geocoder

__all__ = ["Region", "region_of"]

# "广东省深圳市", "新疆维吾尔自治区乌鲁木齐市", "北京市" (a municipality is its own province)
_ZH = re.compile(r"^(?P<province>.+?(?:省|自治区|特别行政区)|内蒙古|广西|西藏|宁夏|新疆)?"
                 r"(?P<city>.+)?$")


@dataclass(frozen=True, slots=True)
class Region:
    """The origin of a number. ``number`` is E.164 when the number parsed, else as given."""

    number: str
    valid: bool
    country: str | None = None        # ISO 3166-1 alpha-2, e.g. "CN"
    province: str | None = None       # Chinese numbers: "广东省" / "Guangdong"
    city: str | None = None           # "深圳市" / "Shenzhen"
    description: str = ""             # as the numbering plan says it, in the asked language
    carrier: str | None = None        # mobile numbers: the original operator

    def __str__(self) -> str:
        return self.description or self.country or "unknown"


def region_of(number: str, *, default_country: str = "CN", lang: str = "zh") -> Region:
    """The region of ``number`` (national numbers are read in ``default_country``).

    ``lang`` is ``"zh"`` or ``"en"`` for the province/city/description texts. Never raises on
    bad input: an unparseable number gives ``Region(number, valid=False)``.
    """
    return _region_of(number.strip(), default_country.upper(), lang)


@functools.lru_cache(maxsize=8192)
def _region_of(number: str, default_country: str, lang: str) -> Region:
    if not number or len(number) > 32:
        return Region(number, False)
    try:
        parsed = phonenumbers.parse(number, default_country)
    except phonenumbers.NumberParseException:
        return Region(number, False)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    valid = phonenumbers.is_valid_number(parsed)
    country = phonenumbers.region_code_for_number(parsed)
    if not valid:
        return Region(e164, False, country)
    text = geocoder.description_for_number(parsed, lang) or ""
    operator = carrier.name_for_number(parsed, lang) or None
    province = city = None
    if country == "CN" and text:
        province, city = _split_cn(parsed, text, lang)
    elif text and text != geocoder.country_name_for_number(parsed, lang):
        city = text
    return Region(e164, True, country, province, city, text, operator)


def _split_cn(parsed: phonenumbers.PhoneNumber, text: str, lang: str) -> tuple[str, str]:
    """(province, city) of a Chinese description; a municipality is both."""
    if lang == "zh":
        m = _ZH.match(text)
        province = m.group("province") if m else None
        city = m.group("city") if m else None
        if province is None:
            return text, text
        return province, city or province
    # English: "Shenzhen, Guangdong" or "Beijing"
    city, _, province = text.partition(", ")
    return (province or city), city
