"""Lexical helpers shared by the SIP parsers: tokens, quoted strings, list splitting, parameters.

Every function here works on already-decoded header text and raises only ``ParseError``.
"""

from __future__ import annotations

import string

from pbx.errors import ParseError

TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
WS = " \t"

# Parameters as parsed from a header: lower-cased name -> raw value (quotes kept) or None.
Params = dict[str, str | None]


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def quote(text: str) -> str:
    """Wrap ``text`` in a quoted-string, escaping quote and backslash."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """Inverse of ``quote``; returns ``text`` unchanged if it is not a quoted-string."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    out: list[str] = []
    i, end = 1, len(text) - 1
    while i < end:
        c = text[i]
        if c == "\\" and i + 1 < end:
            i += 1
            c = text[i]
        out.append(c)
        i += 1
    return "".join(out)


def scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string that starts at ``text[start] == '"'``."""
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise ParseError("unterminated quoted string", data=text)


def split_commas(value: str) -> list[str]:
    """Split a list-header value at top-level commas (not inside quotes or <...>)."""
    if "," not in value:
        v = value.strip(WS)
        return [v] if v else []
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

    Values are tokens, quoted strings (kept quoted) or bracketed IPv6 references.
    Names are lower-cased; a repeated name is an error.
    """
    params: Params = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in WS:
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise ParseError(f"bad parameter list in {what}", data=text)
        i += 1
        while i < n and text[i] in WS:
            i += 1
        j = i
        while j < n and text[j] in TOKEN_CHARS:
            j += 1
        name = text[i:j]
        if not name:
            raise ParseError(f"empty parameter name in {what}", data=text)
        i = j
        while i < n and text[i] in WS:
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in WS:
                i += 1
            if i < n and text[i] == '"':
                j = scan_quoted(text, i)
            elif i < n and text[i] == "[":
                j = text.find("]", i)
                if j < 0:
                    raise ParseError(f"bad IPv6 parameter in {what}", data=text)
                j += 1
            else:
                j = i
                while j < n and (text[j] in TOKEN_CHARS or text[j] in ":/"):
                    j += 1
            value = text[i:j]
            if not value:
                raise ParseError(f"empty parameter value in {what}", data=text)
            i = j
        key = name.lower()
        if key in params:
            raise ParseError(f"duplicate parameter {name!r} in {what}", data=text)
        params[key] = value
    return params


def format_params(params: Params) -> str:
    """Serialize parameters produced by ``parse_params``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
