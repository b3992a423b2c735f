"""Lexical helpers shared by the SIP parsers: tokens, quoted strings, list splitting, parameters.

Every function here works on already-decoded header text and raises only ``ParseError``. The
scanners are compiled regular expressions: the character classes are checked in C, which is what
keeps a full parse of a typical request in the tens of microseconds.
"""

from __future__ import annotations

import re
import string

from pbx.errors import ParseError

TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
WS = " \t"

# Parameters as parsed from a header: lower-cased name -> raw value (quotes kept) or None.
Params = dict[str, str | None]

# Regular-expression fragments (RFC 3261 §25.1).
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# A quoted-string: qdtext is anything but '"', '\' and control characters (HTAB is LWS);
# quoted-pair is '\' and any character but CR and LF. Unrolled so matching is linear.
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]'
QUOTED = rf'"{_QDTEXT}*(?:\\[^\r\n]{_QDTEXT}*)*"'
# Parameter values: token (plus ':' for undelimited IPv6 received= values, RFC 5118 §4.5, and
# '/' as seen in the wild), quoted-string or IPv6 reference.
_PVALUE = rf"(?:[A-Za-z0-9\-.!%*_+`'~:/]+|{QUOTED}|\[[0-9A-Fa-f:.]+\])"
_PARAM = rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({_PVALUE}))?"
_PARAM_RE = re.compile(_PARAM)
_PARAMS_RE = re.compile(rf"(?:{_PARAM})*[ \t]*")
# The common case, no whitespace and no quoted or bracketed values: checked in one pass, split
# with str methods.
_SIMPLE_PARAMS_RE = re.compile(rf"(?:;{TOKEN}(?:=[A-Za-z0-9\-.!%*_+`'~:/]+)?)+")
TOKEN_RE = re.compile(TOKEN)
_QUOTED_RE = re.compile(QUOTED)
_UNQUOTE_RE = re.compile(r"\\(.)", re.S)
# Characters that must be written as a quoted-pair inside a quoted-string.
_QUOTE_RE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return TOKEN_RE.fullmatch(text) is not None


def quote(text: str) -> str:
    """Wrap ``text`` in a quoted-string.

    Quote, backslash and control characters are written as quoted-pairs. CR and LF cannot be
    (RFC 3261 §25.1) and become spaces, which is what a folded line means anyway, so the result
    can never break a header line.
    """
    if "\r" in text or "\n" in text:
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return '"' + _QUOTE_RE.sub(r"\\\g<0>", text) + '"'


def unquote(text: str) -> str:
    """Inverse of ``quote``; returns ``text`` unchanged if it is not a quoted-string."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    inner = text[1:-1]
    return _UNQUOTE_RE.sub(r"\1", inner) if "\\" in inner else inner


def scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string that starts at ``text[start] == '"'``."""
    m = _QUOTED_RE.match(text, start)
    if m is None:
        raise ParseError("unterminated or invalid quoted string", data=text)
    return m.end()


def split_commas(value: str) -> list[str]:
    """Split a list-header value at top-level commas (not inside quotes or <...>)."""
    if "," not in value:
        v = value.strip(WS)
        return [v] if v else []
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip(WS) for part in value.split(",")) if p]
    parts: list[str] = []
    depth = 0
    start = 0
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i = scan_quoted(value, i)
            continue
        if c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            part = value[start:i].strip(WS)
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip(WS)
    if part:
        parts.append(part)
    return parts


def parse_params(text: str, what: str) -> Params:
    """Parse ``;name[=value]`` pairs (``text`` starts at the first ';' or is empty).

    Values are tokens, quoted strings (kept quoted) or bracketed IPv6 references; whitespace is
    allowed around ';' and '='. Names are lower-cased; a repeated name is an error.
    """
    if not text:
        return {}
    params: Params = {}
    if _SIMPLE_PARAMS_RE.fullmatch(text) is not None:
        for item in text[1:].split(";"):
            name, _, value = item.partition("=")
            key = name.lower()
            if key in params:
                raise ParseError(f"duplicate parameter {name!r} in {what}", data=text)
            params[key] = value or None
        return params
    if _PARAMS_RE.fullmatch(text) is None:
        raise ParseError(f"bad parameter list in {what}", data=text)
    for name, value in _PARAM_RE.findall(text):
        key = name.lower()
        if key in params:
            raise ParseError(f"duplicate parameter {name!r} in {what}", data=text)
        params[key] = value or None
    return params


def format_params(params: Params) -> str:
    """Serialize parameters produced by ``parse_params``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
