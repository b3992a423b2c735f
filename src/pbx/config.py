"""The reference PBX configuration: a TOML file, validated in full before anything starts.

``load_config(path)`` / ``parse_config(text, path)`` return a frozen ``Config`` or raise
``ConfigError`` naming the file, the line and the key at fault. tomllib reports no positions for
keys, so ``_Locator`` re-scans the raw text (only when it is needed: on an error, or to give routes
their line). Unknown keys are errors, so a typo never passes silently. Clear passwords are hashed
into digest HA1 values (MD5 and SHA-256, RFC 8760) and never kept.

Routing tables (``[[numbers]]``, ``[[rules]]``) are validated here down to each time range and
list entry; ``pbx.apps.rules.build_rules`` turns the result into middleware once the apps they
name are registered.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pbx.errors import ConfigError, ParseError
from pbx.sip.uri import format_host, parse_host, parse_uri

if TYPE_CHECKING:       # imported when a config has rules: phonenumbers takes ~0.25 s to load
    from pbx.apps.numbers import NumberList
    from pbx.apps.schedule import Schedule

__all__ = ["RULE_TYPES", "AdminConfig", "Config", "Listen", "NumberConfig", "Route",
           "RuleConfig", "SipConfig", "User", "WebhookConfig", "load_config", "parse_config"]

TRANSPORTS = ("udp", "tcp", "tls")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Listen:
    """One listener: transport (udp|tcp|tls), IP literal without brackets, port."""

    transport: str
    host: str
    port: int

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"{self.transport}:{format_host(self.host)}:{self.port}"


@dataclass(frozen=True, slots=True)
class SipConfig:
    """The ``[sip]`` table. Timers are in seconds, expiries and ``nonce_ttl`` in whole seconds."""

    listen: tuple[Listen, ...]
    domain: str
    realm: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    nonce_ttl: int = 300
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    server_header: str = "pbx"
    max_message_size: int = 65535
    trusted: tuple[str, ...] = ()
    # Offered in this order, one challenge each (RFC 8760 §2.4). MD5 alone by default: SIPp 3.6
    # and baresip 1.0 answer the topmost challenge whatever its algorithm, and know only MD5.
    auth_algorithms: tuple[str, ...] = ("MD5",)
    max_contacts: int = 10
    # Messages per second accepted from one untrusted IP address (bursts up to twice that);
    # 0 turns the limiter off. Sources in ``trusted`` are never limited.
    rate_limit: float = 100.0


@dataclass(frozen=True, slots=True)
class User:
    """A local user and its digest HA1 values (lower-case hex); at least one is set."""

    user: str
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Route:
    """A ``[[routes]]`` entry: a regex searched in the Request-URI user part, and a target."""

    pattern: re.Pattern[str]
    to: str
    line: int
    # Credentials the target (a carrier's trunk) may challenge the PBX's INVITEs for (401/407).
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def apply(self, user_part: str) -> str | None:
        """The target URI with ``\\1``/``\\g<name>`` groups expanded, or None if no match."""
        m = self.pattern.search(user_part)
        return None if m is None else m.expand(self.to)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """The ``[media]`` table: the RTP port range (each call leg takes two even/odd pairs'
    worth: RTP and RTCP), the address RTP binds (default: the first SIP listener's), seconds
    without RTP before a call leg is hung up (0: never), and the RFC 4028 session interval
    offered and accepted (0: no session timers; else at least 90)."""

    port_min: int = 20000
    port_max: int = 30000
    bind: str | None = None
    rtp_timeout: float = 30.0
    session_expires: int = 1800


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The ``[admin]`` table: where the admin HTTP API listens and who may use it.

    ``tokens`` maps a bearer token to the tenant it may see (``None``: every tenant)."""

    host: str = "127.0.0.1"
    port: int = 8088
    tokens: Mapping[str, str | None] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One ``[[webhooks]]`` entry, as ``pbx.webhooks.WebhookEndpoint`` takes it: event kinds
    (names or ``"call.*"``; None: all) POSTed to ``url``, signed with ``secret``."""

    url: str
    secret: str = field(default="", repr=False)
    events: tuple[str, ...] | None = None
    name: str = ""
    timeout: float = 10.0
    line: int = 0


@dataclass(frozen=True, slots=True)
class NumberConfig:
    """A ``[[numbers]]`` entry: calls to a dialed number pass ``rules`` (names of ``[[rules]]``
    entries, outermost first) and go to ``app``, with ``data`` preset on the call.

    ``number`` is as written: exact (``"4001234567"``), or a prefix with a trailing ``*``
    (``"400*"``; ``"*"`` alone takes every number), or ``""`` when ``match`` gave a regular
    expression. ``pattern`` covers all three and must match the whole dialed number
    (``fullmatch``, as ``Pbx.route`` does with a compiled pattern); ``matches`` applies it.
    ``app`` is the name of an app registered in Python, or ``"dial:<extension or sip: URI>"``
    (dial it and bridge); names are resolved at start (``pbx.apps.rules.resolve_app``).
    """

    number: str
    pattern: re.Pattern[str]
    app: str
    rules: tuple[str, ...] = ()
    tenant: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    line: int = 0

    def matches(self, dialed: str) -> bool:
        """True if a call to ``dialed`` (the Request-URI user part) is for this entry."""
        return self.pattern.fullmatch(dialed) is not None


RULE_TYPES = ("hours", "blacklist", "whitelist", "vip", "region")


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """A ``[[rules]]`` entry, validated and already parsed (a ``Schedule``, a ``NumberList``),
    so building its middleware cannot fail on the values, only on an unknown app name.

    Fields by ``type``: ``hours``: ``schedule``, ``closed`` (reject status, or an app name);
    ``blacklist`` / ``whitelist``: ``numbers``, ``status``; ``vip``: ``numbers``, ``app``;
    ``region``: ``routes`` (place or ``country:XX`` -> app name), ``default`` (app name, or
    ``""``: on to the number's app). The others keep their defaults.
    """

    name: str
    type: str
    line: int = 0
    schedule: Schedule | None = field(default=None, hash=False)
    closed: int | str = 480
    numbers: NumberList | None = field(default=None, hash=False)
    status: int = 403
    app: str = ""
    routes: Mapping[str, str] = field(default_factory=dict, hash=False)
    default: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration. ``path`` is as given; derived paths are absolute."""

    path: Path
    sip: SipConfig
    store_path: Path
    users: tuple[User, ...]
    routes: tuple[Route, ...]
    log_level: str = "warning"
    log_format: str = "text"
    # Call records (``[cdr] path``); parse_config defaults it to cdr.sqlite3 beside store_path.
    cdr_path: Path = Path("cdr.sqlite3")
    admin: AdminConfig | None = None                 # None: no admin API
    webhooks: tuple[WebhookConfig, ...] = ()
    numbers: tuple[NumberConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    media: MediaConfig = field(default_factory=MediaConfig)


def load_config(path: str | Path) -> Config:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", path=str(path), line=line) from None
    return parse_config(text, path)


def parse_config(text: str, path: str | Path) -> Config:
    """Validate TOML ``text``; ``path`` names it in errors and anchors relative paths."""
    path = Path(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, path) from None
    return _Builder(text, path).build(doc)


# Syntax errors ------------------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, path: Path) -> ConfigError:
    msg = str(exc)
    m = _TOML_POS.search(msg)
    line: int | None = None
    detail = msg
    if m is not None:
        detail = msg[: m.start()]
        if m.group(1):
            line = int(m.group(1))
            detail += f" (column {m.group(2)})"
        else:
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
            detail += " (at end of file)"
    key = _Locator(text).key_at(line) if line is not None else None
    return ConfigError(f"TOML syntax error: {detail}", path=str(path), line=line, key=key)


# Key paths and their lines ----------------------------------------------------------------------

KeyPath = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _fmt_key(path: KeyPath) -> str:
    """``("users", 2, "password")`` -> ``users[2].password`` (indexes count from 0)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{name}" if out else name
    return out


_TOKEN = re.compile(
    r"""
    (?P<nl>\n)
    | (?P<skip>[ \t\r]+|\#[^\n]*)
    | (?P<str>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"\"{0,2}
            | '''(?:[^']|'(?!''))*''''{0,2}
            | "(?:[^"\\\n]|\\.)*"
            | '[^'\n]*')
    | (?P<punct>[\[\]{}=,.])
    | (?P<word>[^\s\[\]{}=,.\#"']+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class _Locator:
    """Finds the line of any key path by re-scanning the raw TOML text.

    A forgiving mini-parser: it follows table headers (``[a]``, ``[[a]]`` with per-parent
    counters), dotted keys, arrays (each element gets its own path) and inline tables, and records
    the first line each path appears on. It never raises, even on text tomllib rejected.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self._on_line: dict[int, KeyPath] = {}
        self._toks = list(self._tokens(text))
        self._i = 0
        self._parse()

    def line_of(self, path: KeyPath) -> int:
        """Line of ``path``, else of its nearest recorded parent (e.g. the table header), else 1."""
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return 1

    def key_at(self, line: int) -> str | None:
        """The first key path seen on ``line`` (even a repeated one), formatted, if any."""
        path = self._on_line.get(line)
        return _fmt_key(path) if path else None

    @staticmethod
    def _tokens(text: str) -> Iterator[tuple[str, str, int, bool]]:
        """(kind, text, line, glued-to-previous) for every significant token."""
        line = 1
        glued = False
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup or "other"
            value = m.group()
            if kind == "skip":
                glued = False
                continue
            yield kind, value, line, glued
            glued = True
            if kind == "nl":
                line += 1
                glued = False
            elif kind == "str":
                line += value.count("\n")

    def _peek(self) -> tuple[str, str, int, bool] | None:
        return self._toks[self._i] if self._i < len(self._toks) else None

    def _next(self) -> tuple[str, str, int, bool] | None:
        tok = self._peek()
        self._i += 1
        return tok

    def _record(self, path: KeyPath, line: int) -> None:
        self._on_line.setdefault(line, path)
        for n in range(1, len(path) + 1):
            self.lines.setdefault(path[:n], line)

    def _key(self, stop: str) -> list[str]:
        """A dotted key up to (not including) the ``stop`` punctuation or a newline."""
        parts: list[str] = []
        while (tok := self._peek()) is not None:
            kind, value, _, _ = tok
            if kind == "nl" or (kind == "punct" and value in (stop, "]", "}")):
                break
            self._i += 1
            if kind == "str":
                parts.append(_unquote(value))
            elif kind == "word":
                parts.append(value)
        return parts

    def _parse(self) -> None:
        table: KeyPath = ()
        counts: dict[KeyPath, int] = {}
        while (tok := self._next()) is not None:
            kind, value, line, _ = tok
            if kind == "nl":
                continue
            if kind == "punct" and value == "[":
                nxt = self._peek()
                aot = nxt is not None and nxt[1] == "[" and nxt[3]
                if aot:
                    self._i += 1
                parts = self._key("]")
                resolved: KeyPath = ()
                for n, part in enumerate(parts):
                    resolved += (part,)
                    if aot and n == len(parts) - 1:
                        counts[resolved] = counts.get(resolved, 0) + 1
                        resolved += (counts[resolved] - 1,)
                    elif resolved in counts:
                        resolved += (counts[resolved] - 1,)
                table = resolved
                self._record(table, line)
                self._skip_line()
                continue
            self._i -= 1
            parts = self._key("=")
            tok = self._next()
            if not parts or tok is None or tok[1] != "=":
                if tok is not None and tok[0] != "nl":
                    self._skip_line()
                continue
            path = table + tuple(parts)
            self._record(path, line)
            self._value(path)
            self._skip_line()

    def _skip_line(self) -> None:
        while (tok := self._next()) is not None and tok[0] != "nl":
            pass

    def _value(self, path: KeyPath) -> None:
        tok = self._peek()
        if tok is None:
            return
        kind, value, _, _ = tok
        if kind == "punct" and value == "[":
            self._i += 1
            index = 0
            while (tok := self._peek()) is not None:
                kind, value, line, _ = tok
                if kind == "nl" or value == ",":
                    self._i += 1
                elif value in ("]", "}", "="):
                    if value == "]":
                        self._i += 1
                    return
                else:
                    self._record((*path, index), line)
                    start = self._i
                    self._value((*path, index))
                    index += 1
                    if self._i == start:
                        self._i += 1
        elif kind == "punct" and value == "{":
            self._i += 1
            while (tok := self._peek()) is not None:
                kind, value, line, _ = tok
                if value == ",":
                    self._i += 1
                    continue
                if value == "}" or kind == "nl":
                    if value == "}":
                        self._i += 1
                    return
                parts = self._key("=")
                eq = self._peek()
                if not parts or eq is None or eq[1] != "=":
                    return
                self._i += 1
                self._record((*path, *parts), line)
                self._value((*path, *parts))
        else:
            # A scalar: strings are one token; numbers and dates may be split at '.'.
            while (tok := self._peek()) is not None:
                if tok[0] == "nl" or tok[1] in (",", "]", "}"):
                    return
                self._i += 1


def _unquote(token: str) -> str:
    if token.startswith("'"):
        return token[1:-1]
    try:
        value = tomllib.loads(f"k = {token}")["k"]
    except tomllib.TOMLDecodeError:
        return token.strip('"')
    return value if isinstance(value, str) else token


# Validation ---------------------------------------------------------------------------------------

_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")
_HEX = frozenset("0123456789abcdefABCDEF")
_ROUTES_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*routes[ \t]*\]\]", re.MULTILINE)
_GROUP_REF = re.compile(r"\\(?:g<([^>]*)>|([1-9][0-9]?))")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "a table"}

_TOP_KEYS = ("sip", "store", "users", "routes", "log", "cdr", "admin", "webhooks", "numbers",
             "rules", "media")
_MEDIA_KEYS = ("port_min", "port_max", "bind", "rtp_timeout", "session_expires")
_SIP_KEYS = ("listen", "domain", "realm", "tls_cert", "tls_key", "t1", "t2", "t4", "nonce_ttl",
             "min_expires", "max_expires", "default_expires", "server_header",
             "max_message_size", "trusted", "auth_algorithms", "max_contacts", "rate_limit")
_STORE_KEYS = ("path",)
_CDR_KEYS = ("path",)
_USER_KEYS = ("user", "password", "ha1", "ha1_sha256")
_ROUTE_KEYS = ("match", "to", "username", "password")
_LOG_KEYS = ("level", "format")
_ADMIN_KEYS = ("listen", "token", "tenants")
_TENANT_KEYS = ("name", "token")
_WEBHOOK_KEYS = ("url", "secret", "events", "name", "timeout")
_NUMBER_KEYS = ("number", "match", "app", "rules", "tenant", "data")
_RULE_KEYS: dict[str, tuple[str, ...]] = {
    "hours": ("timezone", "weekly", "holidays", "special", "closed"),
    "blacklist": ("numbers", "status", "country"),
    "whitelist": ("numbers", "status", "country"),
    "vip": ("numbers", "app", "country"),
    "region": ("routes", "default"),
}
_ANY_RULE_KEY = tuple(dict.fromkeys(k for keys in _RULE_KEYS.values() for k in keys))
_MIN_TOKEN = 16
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")            # printable ASCII, no spaces (a header value)
_NAME = re.compile(r"\w[\w.-]*")                       # rule, app and tenant names


def _type_name(value: object) -> str:
    for t, name in _TYPE_NAMES.items():
        if type(value) is t:
            return name
    return type(value).__name__


class _Builder:
    """Turns the tomllib document into a ``Config``, failing on the first problem."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.base = path.absolute().parent
        self._locator: _Locator | None = None

    def _line(self, key: KeyPath) -> int:
        if self._locator is None:
            self._locator = _Locator(self.text)
        return self._locator.line_of(key)

    def fail(self, message: str, key: KeyPath) -> ConfigError:
        return ConfigError(message, path=str(self.path), line=self._line(key), key=_fmt_key(key))

    # Typed getters ----------------------------------------------------------------------------
    def _check_keys(self, table: dict[str, Any], allowed: tuple[str, ...], at: KeyPath) -> None:
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"unknown key {name!r}{hint}", (*at, name))

    def _get(self, table: dict[str, Any], name: str, kind: type, at: KeyPath,
             default: Any = None, required: bool = False) -> Any:
        if name not in table:
            if required:
                raise self.fail(f"missing required key {name!r}", (*at, name))
            return default
        value = table[name]
        ok = type(value) is kind or (kind is float and type(value) is int)
        if not ok:
            raise self.fail(f"expected {_TYPE_NAMES[kind]}, got {_type_name(value)}",
                            (*at, name))
        return float(value) if kind is float else value

    def _table(self, doc: dict[str, Any], name: str, required: bool = False) -> dict[str, Any]:
        value: dict[str, Any] = self._get(doc, name, dict, (), {}, required)
        return value

    def _array_of_tables(self, doc: dict[str, Any], name: str, at: KeyPath = ()) -> list[Any]:
        if type(doc.get(name)) is dict:
            full = _fmt_key((*at, name))
            raise self.fail(f"expected [[{full}]] tables, got a single [{full}] table",
                            (*at, name))
        value: list[Any] = self._get(doc, name, list, at, [])
        return value

    def _entry(self, entry: Any, allowed: tuple[str, ...], at: KeyPath) -> dict[str, Any]:
        """An element of an array of tables, with its keys checked."""
        if type(entry) is not dict:
            raise self.fail(f"expected a table, got {_type_name(entry)}", at)
        self._check_keys(entry, allowed, at)
        return entry

    def _int(self, table: dict[str, Any], name: str, at: KeyPath, default: int,
             lo: int, hi: int) -> int:
        value: int = self._get(table, name, int, at, default)
        if not lo <= value <= hi:
            raise self.fail(f"must be between {lo} and {hi}, got {value}", (*at, name))
        return value

    def _seconds(self, table: dict[str, Any], name: str, at: KeyPath, default: float) -> float:
        value: float = self._get(table, name, float, at, default)
        if not 0 < value <= 3600:
            raise self.fail(f"must be > 0 and <= 3600 seconds, got {value}", (*at, name))
        return value

    def _file(self, table: dict[str, Any], name: str, at: KeyPath) -> Path | None:
        value: str | None = self._get(table, name, str, at)
        if value is None:
            return None
        file = self.base / value
        if not file.is_file():
            raise self.fail(f"no such file: {file}", (*at, name))
        return file

    # Sections -------------------------------------------------------------------------------------
    def build(self, doc: dict[str, Any]) -> Config:
        self._check_keys(doc, _TOP_KEYS, ())
        sip = self._sip(self._table(doc, "sip", required=True))
        store = self._table(doc, "store")
        self._check_keys(store, _STORE_KEYS, ("store",))
        store_path: str = self._get(store, "path", str, ("store",), "pbx.sqlite3")
        if not store_path:
            raise self.fail("must not be empty", ("store", "path"))
        cdr_path = self._cdr(self._table(doc, "cdr"), self.base / store_path)
        users = self._users(self._array_of_tables(doc, "users"), sip.realm, sip.auth_algorithms)
        routes = self._routes(self._array_of_tables(doc, "routes"))
        log = self._table(doc, "log")
        self._check_keys(log, _LOG_KEYS, ("log",))
        level: str = self._get(log, "level", str, ("log",), "warning")
        if level.lower() not in LOG_LEVELS:
            raise self.fail(f"must be one of {', '.join(LOG_LEVELS)}", ("log", "level"))
        fmt: str = self._get(log, "format", str, ("log",), "text")
        if fmt.lower() not in LOG_FORMATS:
            raise self.fail(f"must be one of {', '.join(LOG_FORMATS)}", ("log", "format"))
        admin = self._admin(doc)
        webhooks = self._webhooks(self._array_of_tables(doc, "webhooks"))
        rules = self._rules(self._array_of_tables(doc, "rules"))
        numbers = self._numbers(self._array_of_tables(doc, "numbers"), rules)
        return Config(path=self.path, sip=sip, store_path=self.base / store_path, users=users,
                      routes=routes, log_level=level.lower(), log_format=fmt.lower(),
                      cdr_path=cdr_path, admin=admin, webhooks=webhooks, numbers=numbers,
                      rules=rules, media=self._media(self._table(doc, "media"), sip))

    def _media(self, media: dict[str, Any], sip: SipConfig) -> MediaConfig:
        at: KeyPath = ("media",)
        self._check_keys(media, _MEDIA_KEYS, at)
        lo = self._int(media, "port_min", at, 20000, 1024, 65534)
        hi = self._int(media, "port_max", at, 30000, 1025, 65535)
        if hi - lo < 3:
            raise self.fail(f"must be at least port_min + 3 ({lo + 3}), got {hi}",
                            (*at, "port_max"))
        bind: str | None = self._get(media, "bind", str, at)
        if bind is not None:
            try:
                addr = ipaddress.ip_address(bind)
            except ValueError:
                raise self.fail(f"not an IP address: {bind!r}", (*at, "bind")) from None
            if addr.is_unspecified or addr.is_multicast:
                raise self.fail("must be a unicast address the phones can reach",
                                (*at, "bind"))
        timeout: float = self._get(media, "rtp_timeout", float, at, 30.0)
        if not 0 <= timeout <= 3600:
            raise self.fail(f"must be 0 (off) to 3600 seconds, got {timeout}",
                            (*at, "rtp_timeout"))
        expires = self._int(media, "session_expires", at, 1800, 0, 86400)
        if 0 < expires < 90:
            raise self.fail("must be 0 (off) or at least 90 seconds (RFC 4028 Min-SE)",
                            (*at, "session_expires"))
        del sip
        return MediaConfig(port_min=lo, port_max=hi, bind=bind, rtp_timeout=float(timeout),
                           session_expires=expires)

    def _cdr(self, cdr: dict[str, Any], store_path: Path) -> Path:
        """``[cdr] path``: relative to the config; by default cdr.sqlite3 beside the store.
        Not the store's own file: each keeps its schema version in ``PRAGMA user_version``."""
        at: KeyPath = ("cdr",)
        self._check_keys(cdr, _CDR_KEYS, at)
        value: str | None = self._get(cdr, "path", str, at)
        if value is None:
            path = store_path.parent / "cdr.sqlite3"
            if path.resolve() == store_path.resolve():
                raise self.fail("this file name is the default [cdr] path: set [cdr] path "
                                "to another file", ("store", "path"))
            return path
        if not value:
            raise self.fail("must not be empty", (*at, "path"))
        path = self.base / value
        if path.resolve() == store_path.resolve():
            raise self.fail("must differ from [store] path (each file has its own schema)",
                            (*at, "path"))
        return path

    def _sip(self, sip: dict[str, Any]) -> SipConfig:
        at: KeyPath = ("sip",)
        self._check_keys(sip, _SIP_KEYS, at)
        specs: list[Any] = self._get(sip, "listen", list, at, required=True)
        if not specs:
            raise self.fail("at least one listener is required", (*at, "listen"))
        listen: list[Listen] = []
        for i, spec in enumerate(specs):
            where: KeyPath = (*at, "listen", i)
            if not isinstance(spec, str):
                raise self.fail(f"expected a string, got {_type_name(spec)}", where)
            item = self._listen(spec, where)
            if item in listen:
                raise self.fail(f"duplicate listener {spec!r}", where)
            listen.append(item)
        domain = self._domain(self._get(sip, "domain", str, at, required=True))
        realm: str = self._get(sip, "realm", str, at, domain)
        if not realm or any(c in '"\\' or not c.isprintable() for c in realm):
            raise self.fail("must be non-empty printable text without '\"' or '\\'",
                            (*at, "realm"))
        tls_cert = self._file(sip, "tls_cert", at)
        tls_key = self._file(sip, "tls_key", at)
        if any(x.transport == "tls" for x in listen) and (tls_cert is None or tls_key is None):
            missing = "tls_cert" if tls_cert is None else "tls_key"
            raise self.fail(f"a tls listener needs {missing}", (*at, missing))
        if (tls_cert is None) != (tls_key is None):
            missing = "tls_cert" if tls_cert is None else "tls_key"
            raise self.fail("tls_cert and tls_key go together", (*at, missing))
        t1 = self._seconds(sip, "t1", at, 0.5)
        t2 = self._seconds(sip, "t2", at, 4.0)
        if t2 < t1:
            raise self.fail(f"must be >= t1 ({t1})", (*at, "t2"))
        t4 = self._seconds(sip, "t4", at, 5.0)
        nonce_ttl = self._int(sip, "nonce_ttl", at, 300, 1, 86400)
        min_expires = self._int(sip, "min_expires", at, 60, 1, 2**31 - 1)
        max_expires = self._int(sip, "max_expires", at, 7200, 1, 2**31 - 1)
        if min_expires > max_expires:
            raise self.fail(f"min_expires ({min_expires}) > max_expires ({max_expires})",
                            (*at, "min_expires" if "min_expires" in sip else "max_expires"))
        default_expires = self._int(sip, "default_expires", at, 3600, min_expires, max_expires)
        server: str = self._get(sip, "server_header", str, at, "pbx")
        if not all(c.isprintable() for c in server):
            raise self.fail("must be printable text on one line", (*at, "server_header"))
        size = self._int(sip, "max_message_size", at, 65535, 1500, 16 * 1024 * 1024)
        trusted_raw = self._get(sip, "trusted", list, at, [])
        trusted: list[str] = []
        for net in trusted_raw:
            try:
                trusted.append(str(ipaddress.ip_network(str(net), strict=False)))
            except ValueError:
                raise self.fail(f"not an IP network: {net!r}", (*at, "trusted")) from None
        algorithms_raw = self._get(sip, "auth_algorithms", list, at, ["MD5"])
        algorithms: list[str] = []
        for name in algorithms_raw:
            canonical = {"MD5": "MD5", "SHA-256": "SHA-256"}.get(str(name).upper())
            if canonical is None or canonical in algorithms:
                raise self.fail(f"expected distinct \"MD5\" / \"SHA-256\", got {name!r}",
                                (*at, "auth_algorithms"))
            algorithms.append(canonical)
        if not algorithms:
            raise self.fail("must name at least one algorithm", (*at, "auth_algorithms"))
        max_contacts = self._int(sip, "max_contacts", at, 10, 1, 1000)
        rate_limit: float = self._get(sip, "rate_limit", float, at, 100.0)
        if not 0 <= rate_limit <= 1e6:
            raise self.fail(f"must be >= 0 (0: off) and <= 1e6 messages/s, got {rate_limit}",
                            (*at, "rate_limit"))
        return SipConfig(trusted=tuple(trusted), listen=tuple(listen), domain=domain,
                         realm=realm, tls_cert=tls_cert, tls_key=tls_key, t1=t1, t2=t2, t4=t4,
                         nonce_ttl=nonce_ttl, min_expires=min_expires, max_expires=max_expires,
                         default_expires=default_expires, server_header=server.strip(),
                         max_message_size=size, auth_algorithms=tuple(algorithms),
                         max_contacts=max_contacts, rate_limit=rate_limit)

    def _listen(self, spec: str, where: KeyPath) -> Listen:
        transport, colon, rest = spec.partition(":")
        transport = transport.lower()
        if not colon or transport not in TRANSPORTS:
            raise self.fail(f"bad listener {spec!r}: transport must be one of "
                            f"{', '.join(TRANSPORTS)} (as in 'udp:127.0.0.1:5060')", where)
        host, port = self._host_port(rest, spec, where)
        return Listen(transport, host, port)

    def _host_port(self, rest: str, spec: str, where: KeyPath, noun: str = "listener",
                   example: str = "udp:[::1]:5060", form: str = "transport:host:port",
                   ) -> tuple[str, int]:
        """``host:port`` (IPv6 in brackets, ``localhost`` = 127.0.0.1) of ``spec``."""
        if rest.startswith("["):
            host, close, tail = rest[1:].partition("]")
            port_text = tail[1:] if close and tail.startswith(":") else None
        else:
            host, colon, port_text = rest.rpartition(":")
            if ":" in host:
                raise self.fail(f"bad {noun} {spec!r}: put an IPv6 address in brackets, "
                                f"as in {example!r}", where)
            if not colon:
                port_text = None
        if port_text is None:
            raise self.fail(f"bad {noun} {spec!r}: expected {form}", where)
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise self.fail(f"bad {noun} {spec!r}: port must be 1..65535", where)
        if host.lower() == "localhost":
            host = "127.0.0.1"
        try:
            host = ipaddress.ip_address(host).compressed
        except ValueError:
            raise self.fail(f"bad {noun} {spec!r}: host must be an IP address or "
                            "'localhost'", where) from None
        return host, int(port_text)

    def _domain(self, domain: str) -> str:
        text = domain
        if ":" in text and not text.startswith("["):
            text = f"[{text}]"
        try:
            return parse_host(text)
        except ParseError:
            raise self.fail(f"not a valid host name or IP address: {domain!r}",
                            ("sip", "domain")) from None

    def _users(self, entries: list[Any], realm: str,
               algorithms: tuple[str, ...] = ("MD5",)) -> tuple[User, ...]:
        users: list[User] = []
        seen: set[str] = set()
        realm_b = realm.encode()
        for i, entry in enumerate(entries):
            at: KeyPath = ("users", i)
            if type(entry) is not dict:
                raise self.fail(f"expected a table, got {_type_name(entry)}", at)
            if entry.keys() - _USER_KEYS:
                self._check_keys(entry, _USER_KEYS, at)
            name: str = self._get(entry, "user", str, at, required=True)
            if not name or len(name) > 128 or not _USER_CHARS.issuperset(name):
                raise self.fail(f"not a valid SIP user part: {name!r}", (*at, "user"))
            if name in seen:
                raise self.fail(f"duplicate user {name!r}", (*at, "user"))
            seen.add(name)
            password: str | None = self._get(entry, "password", str, at)
            md5: str | None = self._get(entry, "ha1", str, at)
            sha: str | None = self._get(entry, "ha1_sha256", str, at)
            if password is not None:
                if md5 is not None or sha is not None:
                    which = "ha1" if md5 is not None else "ha1_sha256"
                    raise self.fail("give either password or ha1/ha1_sha256, not both",
                                    (*at, which))
                if not password:
                    raise self.fail("must not be empty", (*at, "password"))
                secret = b"%s:%s:%s" % (name.encode(), realm_b, password.encode())
                md5 = hashlib.md5(secret).hexdigest()
                sha = hashlib.sha256(secret).hexdigest()
            elif md5 is None and sha is None:
                raise self.fail("missing 'password' (or 'ha1')", (*at, "password"))
            else:
                md5 = self._hex(md5, 32, (*at, "ha1"), "MD5")
                sha = self._hex(sha, 64, (*at, "ha1_sha256"), "SHA-256")
                usable = ("MD5" in algorithms and md5 is not None) or (
                    "SHA-256" in algorithms and sha is not None)
                if not usable:
                    which = "ha1" if md5 is not None else "ha1_sha256"
                    raise self.fail("no HA1 for any algorithm in [sip] auth_algorithms "
                                    f"({', '.join(algorithms)}): this user could never log in",
                                    (*at, which))
            users.append(User(name, md5, sha))
        return tuple(users)

    def _hex(self, value: str | None, size: int, key: KeyPath, what: str) -> str | None:
        if value is None:
            return None
        if len(value) != size or not _HEX.issuperset(value):
            raise self.fail(f"must be {size} hex digits (the {what} of user:realm:password)",
                            key)
        return value.lower()

    def _route_lines(self, count: int) -> list[int]:
        """Line of each route. Fast path: without multi-line strings, a line starting with
        ``[[routes]]`` can only be a header, so if one regex finds ``count`` of them they are the
        routes; else the full locator (slower: ~90 ms for 15,000 lines)."""
        text = self.text
        starts = [] if '"""' in text or "'''" in text else [
            m.start() for m in _ROUTES_HEADER.finditer(text)]
        if len(starts) == count:
            lines, line, pos = [], 1, 0
            for start in starts:
                line += text.count("\n", pos, start)
                pos = start
                lines.append(line)
            return lines
        return [self._line(("routes", i)) for i in range(count)]

    def _routes(self, entries: list[Any]) -> tuple[Route, ...]:
        routes: list[Route] = []
        lines = self._route_lines(len(entries)) if entries else []
        for i, entry in enumerate(entries):
            at: KeyPath = ("routes", i)
            if type(entry) is not dict:
                raise self.fail(f"expected a table, got {_type_name(entry)}", at)
            self._check_keys(entry, _ROUTE_KEYS, at)
            match: str = self._get(entry, "match", str, at, required=True)
            try:
                pattern = re.compile(match)
            except re.error as exc:
                raise self.fail(f"bad regular expression: {exc}", (*at, "match")) from None
            to: str = self._get(entry, "to", str, at, required=True)
            self._check_target(to, pattern, (*at, "to"))
            username: str | None = self._get(entry, "username", str, at)
            password: str | None = self._get(entry, "password", str, at)
            if (username is None) != (password is None):
                missing = "password" if password is None else "username"
                raise self.fail(f"{missing} is required with "
                                f"{'username' if missing == 'password' else 'password'}",
                                (*at, missing))
            if username is not None and (not username or any(c in username for c in '"\\\r\n')):
                raise self.fail("must be a non-empty name without quotes or line breaks",
                                (*at, "username"))
            routes.append(Route(pattern, to, lines[i], username, password))
        return tuple(routes)

    def _check_target(self, to: str, pattern: re.Pattern[str], key: KeyPath) -> None:
        """``to`` must be a sip:/sips: URI once its group references are filled in."""
        if not to.lower().startswith(("sip:", "sips:")):
            raise self.fail(f"must be a sip: or sips: URI, got {to!r}", key)
        for m in _GROUP_REF.finditer(to):
            ref = m.group(1) if m.group(1) is not None else m.group(2)
            known = (int(ref) <= pattern.groups if ref.isdigit()
                     else ref in pattern.groupindex)
            if not known:
                raise self.fail(f"group \\{ref} is not defined by 'match'", key)
        try:
            parse_uri(_GROUP_REF.sub("1", to))
        except ParseError as exc:
            raise self.fail(f"not a valid URI: {exc.reason}", key) from None

    # [admin] and [[webhooks]] ---------------------------------------------------------------------
    def _admin(self, doc: dict[str, Any]) -> AdminConfig | None:
        """``[admin]``: listen address and bearer tokens (``token``: every tenant;
        ``[[admin.tenants]]``: one tenant each). Absent table: no admin API."""
        if "admin" not in doc:
            return None
        at: KeyPath = ("admin",)
        admin = self._table(doc, "admin")
        self._check_keys(admin, _ADMIN_KEYS, at)
        listen: str = self._get(admin, "listen", str, at, "127.0.0.1:8088")
        host, port = self._host_port(listen, listen, (*at, "listen"), noun="address",
                                     example="[::1]:8088", form="host:port")
        tokens: dict[str, str | None] = {}
        token: str | None = self._get(admin, "token", str, at)
        if token is not None:
            tokens[self._token(token, tokens, (*at, "token"))] = None
        for i, entry in enumerate(self._array_of_tables(admin, "tenants", at)):
            where: KeyPath = (*at, "tenants", i)
            entry = self._entry(entry, _TENANT_KEYS, where)
            name: str = self._get(entry, "name", str, where, required=True)
            if not _NAME.fullmatch(name):
                raise self.fail(f"not a tenant name: {name!r} (letters, digits, '_', '-', '.')",
                                (*where, "name"))
            token = self._get(entry, "token", str, where, required=True)
            tokens[self._token(token, tokens, (*where, "token"))] = name
        if not tokens:
            raise self.fail("the admin API needs a token (every tenant) or [[admin.tenants]] "
                            "entries (one tenant each)", (*at, "token"))
        return AdminConfig(host=host, port=port, tokens=tokens)

    def _token(self, token: Any, seen: Mapping[str, Any], key: KeyPath) -> str:
        """A bearer token; error messages never repeat it."""
        if len(token) < _MIN_TOKEN:
            raise self.fail(f"too short: a token needs at least {_MIN_TOKEN} characters "
                            "(random, e.g. `openssl rand -hex 16`)", key)
        if not _TOKEN_CHARS.fullmatch(token):
            raise self.fail("a token is printable ASCII without spaces", key)
        if token in seen:
            raise self.fail("this token is given twice", key)
        return str(token)

    def _webhooks(self, entries: list[Any]) -> tuple[WebhookConfig, ...]:
        if not entries:
            return ()
        from pbx.events import EVENT_KINDS  # loads phonenumbers (via pbx.region): only when needed
        out: list[WebhookConfig] = []
        ids: set[str] = set()
        for i, entry in enumerate(entries):
            at: KeyPath = ("webhooks", i)
            entry = self._entry(entry, _WEBHOOK_KEYS, at)
            url: str = self._get(entry, "url", str, at, required=True)
            self._http_url(url, (*at, "url"))
            secret: str = self._get(entry, "secret", str, at, required=True)
            if not secret:
                raise self.fail("must not be empty (receivers verify the HMAC-SHA256 "
                                "signature with it)", (*at, "secret"))
            events: tuple[str, ...] | None = None
            if "events" in entry:
                events = self._event_kinds(self._get(entry, "events", list, at),
                                           EVENT_KINDS, (*at, "events"))
            name: str = self._get(entry, "name", str, at, "")
            if name and not _NAME.fullmatch(name):
                raise self.fail(f"not a webhook name: {name!r} (letters, digits, '_', '-', '.')",
                                (*at, "name"))
            timeout = self._seconds(entry, "timeout", at, 10.0)
            ident = name or url
            if ident in ids:
                which = "name" if name else "url"
                raise self.fail(f"two webhooks are both {ident!r}: give each a distinct name "
                                "(it keys the delivery outbox)", (*at, which))
            ids.add(ident)
            out.append(WebhookConfig(url=url, secret=secret, events=events, name=name,
                                     timeout=timeout, line=self._line(at)))
        return tuple(out)

    def _http_url(self, url: str, key: KeyPath) -> None:
        if any(c.isspace() or not c.isprintable() for c in url):
            raise self.fail("a URL has no spaces or control characters", key)
        try:
            parts = urlsplit(url)
            parts.port       # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:
            raise self.fail(f"not a valid URL: {exc}", key) from None
        if parts.scheme.lower() not in ("http", "https"):
            raise self.fail(f"must be an http:// or https:// URL, got {url!r}", key)
        if not parts.hostname:
            raise self.fail(f"no host in {url!r}", key)

    def _event_kinds(self, names: list[Any], known: Mapping[str, object],
                     key: KeyPath) -> tuple[str, ...]:
        """Event kinds (``"call.ended"``), ``"call.*"`` prefixes, or ``"*"``."""
        if not names:
            raise self.fail("must name at least one event kind (leave it out for every event)",
                            key)
        for j, kind in enumerate(names):
            if type(kind) is not str:
                raise self.fail(f"expected a string, got {_type_name(kind)}", (*key, j))
            if kind == "*" or kind in known:
                continue
            if kind.endswith(".*") and any(k.startswith(kind[:-1]) for k in known):
                continue
            close = difflib.get_close_matches(kind, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.fail(f"unknown event kind {kind!r} ({hint}known: "
                            f"{', '.join(sorted(known))}; or a prefix like 'call.*')", (*key, j))
        return tuple(names)

    # [[numbers]] and [[rules]] --------------------------------------------------------------------
    def _app_name(self, value: Any, key: KeyPath) -> str:
        """An app registered in Python by name, or ``dial:<extension or sip: URI>``."""
        if type(value) is not str:
            raise self.fail(f"expected an app name (a string), got {_type_name(value)}", key)
        kind, colon, target = value.partition(":")
        if colon and kind == "dial":
            if target.lower().startswith(("sip:", "sips:")):
                try:
                    parse_uri(target)
                except ParseError as exc:
                    raise self.fail(f"not a valid URI in {value!r}: {exc.reason}", key) from None
            elif not target or not _USER_CHARS.issuperset(target):
                raise self.fail(f"'dial:' needs an extension or a sip: URI, got {value!r}", key)
            return value
        if not _NAME.fullmatch(value):
            raise self.fail(f"not an app name: {value!r} (letters, digits, '_', '-', '.'; "
                            "or 'dial:<extension>')", key)
        return value

    def _status(self, table: dict[str, Any], name: str, at: KeyPath, default: int) -> int:
        """A SIP status to reject with (400..699)."""
        return self._int(table, name, at, default, 400, 699)

    def _numbers(self, entries: list[Any],
                 rules: tuple[RuleConfig, ...]) -> tuple[NumberConfig, ...]:
        names = [r.name for r in rules]
        out: list[NumberConfig] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            at: KeyPath = ("numbers", i)
            entry = self._entry(entry, _NUMBER_KEYS, at)
            number: str | None = self._get(entry, "number", str, at)
            match: str | None = self._get(entry, "match", str, at)
            if number is not None and match is not None:
                raise self.fail("give either number or match, not both", (*at, "match"))
            if number is not None:
                if not number or len(number) > 128 or not _USER_CHARS.issuperset(number):
                    raise self.fail(f"not a number or prefix: {number!r} (digits, '+', ... "
                                    "with an optional trailing '*')", (*at, "number"))
                if number in seen:
                    raise self.fail(f"duplicate number {number!r}", (*at, "number"))
                seen.add(number)
                pattern = re.compile(re.escape(number[:-1]) + "(?s:.*)" if number.endswith("*")
                                     else re.escape(number))
            elif match is not None:
                try:
                    pattern = re.compile(match)
                except re.error as exc:
                    raise self.fail(f"bad regular expression: {exc}", (*at, "match")) from None
            else:
                raise self.fail("missing 'number' (or a regex in 'match')", (*at, "number"))
            app = self._app_name(self._get(entry, "app", str, at, required=True), (*at, "app"))
            chosen: list[str] = []
            for j, rule in enumerate(self._get(entry, "rules", list, at, [])):
                where: KeyPath = (*at, "rules", j)
                if type(rule) is not str:
                    raise self.fail(f"expected a rule name, got {_type_name(rule)}", where)
                if rule not in names:
                    close = difflib.get_close_matches(rule, names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise self.fail(f"no [[rules]] entry is named {rule!r}{hint}", where)
                if rule in chosen:
                    raise self.fail(f"rule {rule!r} is listed twice", where)
                chosen.append(rule)
            tenant: str = self._get(entry, "tenant", str, at, "")
            if tenant and not _NAME.fullmatch(tenant):
                raise self.fail(f"not a tenant name: {tenant!r}", (*at, "tenant"))
            data: dict[str, Any] = self._get(entry, "data", dict, at, {})
            self._plain_data(data, (*at, "data"))
            out.append(NumberConfig(number=number or "", pattern=pattern, app=app,
                                    rules=tuple(chosen), tenant=tenant, data=data,
                                    line=self._line(at)))
        return tuple(out)

    def _plain_data(self, value: Any, key: KeyPath) -> None:
        """Call data travels as JSON (records, webhooks): no TOML dates or times."""
        if isinstance(value, dict):
            for k, v in value.items():
                self._plain_data(v, (*key, k))
        elif isinstance(value, list):
            for j, v in enumerate(value):
                self._plain_data(v, (*key, j))
        elif not isinstance(value, str | int | float | bool):
            raise self.fail(f"call data must be JSON-like: write this {_type_name(value)} "
                            "as a string", key)

    def _rules(self, entries: list[Any]) -> tuple[RuleConfig, ...]:
        out: list[RuleConfig] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            at: KeyPath = ("rules", i)
            if type(entry) is not dict:
                raise self.fail(f"expected a table, got {_type_name(entry)}", at)
            name: str = self._get(entry, "name", str, at, required=True)
            if not _NAME.fullmatch(name):
                raise self.fail(f"not a rule name: {name!r} (letters, digits, '_', '-', '.')",
                                (*at, "name"))
            if name in seen:
                raise self.fail(f"duplicate rule name {name!r}", (*at, "name"))
            seen.add(name)
            if "type" not in entry:         # a misspelt "type" gets its "did you mean"
                self._check_keys(entry, ("name", "type", *_ANY_RULE_KEY), at)
            kind: str = self._get(entry, "type", str, at, required=True)
            if kind not in _RULE_KEYS:
                close = difflib.get_close_matches(kind, RULE_TYPES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(f"unknown rule type {kind!r} ({hint}one of "
                                f"{', '.join(RULE_TYPES)})", (*at, "type"))
            self._check_keys(entry, ("name", "type", *_RULE_KEYS[kind]), at)
            line = self._line(at)
            if kind == "hours":
                rule = self._hours_rule(entry, name, line, at)
            elif kind == "region":
                rule = self._region_rule(entry, name, line, at)
            else:
                numbers = self._number_list(entry, at)
                if kind == "vip":
                    app = self._app_name(self._get(entry, "app", str, at, required=True),
                                         (*at, "app"))
                    rule = RuleConfig(name, kind, line, numbers=numbers, app=app)
                else:
                    status = self._status(entry, "status", at, 403)
                    rule = RuleConfig(name, kind, line, numbers=numbers, status=status)
            out.append(rule)
        return tuple(out)

    def _ranges(self, value: Any, key: KeyPath) -> list[str]:
        from pbx.apps.schedule import ScheduleError, parse_ranges
        if type(value) is not list:
            raise self.fail(f"expected an array of \"HH:MM-HH:MM\" ranges, got "
                            f"{_type_name(value)}", key)
        for j, text in enumerate(value):
            if type(text) is not str:
                raise self.fail(f"expected a string \"HH:MM-HH:MM\", got {_type_name(text)}",
                                (*key, j))
            try:
                parse_ranges([text])
            except ScheduleError as exc:
                raise self.fail(str(exc), (*key, j)) from None
        return value

    def _day(self, value: Any, key: KeyPath) -> date:
        if type(value) is date:
            return value
        if type(value) is str:
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        shown = repr(value) if type(value) is str else _type_name(value)
        raise self.fail(f"not a date YYYY-MM-DD: {shown}", key)

    def _hours_rule(self, entry: dict[str, Any], name: str, line: int,
                    at: KeyPath) -> RuleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from pbx.apps.schedule import DAYS, Schedule, ScheduleError
        zone: str = self._get(entry, "timezone", str, at, required=True)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"unknown time zone {zone!r} (e.g. \"Asia/Shanghai\")",
                            (*at, "timezone")) from None
        weekly: dict[str, Any] = self._get(entry, "weekly", dict, at, required=True)
        for day, ranges in weekly.items():
            if day not in DAYS:
                raise self.fail(f"unknown day {day!r} (use {', '.join(DAYS)})",
                                (*at, "weekly", day))
            self._ranges(ranges, (*at, "weekly", day))
        holidays = [self._day(d, (*at, "holidays", j))
                    for j, d in enumerate(self._get(entry, "holidays", list, at, []))]
        special: dict[date | str, Sequence[str]] = {}
        for text, ranges in self._get(entry, "special", dict, at, {}).items():
            when = self._day(text, (*at, "special", text))
            special[when] = self._ranges(ranges, (*at, "special", text))
        closed = entry.get("closed", 480)
        if type(closed) is int:
            closed = self._status(entry, "closed", at, 480)
        elif type(closed) is str:
            closed = self._app_name(closed, (*at, "closed"))
        else:
            raise self.fail("expected a status to reject with (400..699) or an app name, got "
                            f"{_type_name(closed)}", (*at, "closed"))
        try:
            schedule = Schedule(zone, weekly, holidays, special)
        except ScheduleError as exc:       # not expected after the checks above
            raise self.fail(str(exc), at) from None
        return RuleConfig(name, "hours", line, schedule=schedule, closed=closed)

    def _number_list(self, entry: dict[str, Any], at: KeyPath) -> NumberList:
        import phonenumbers

        from pbx.apps.numbers import NumberList, NumberListError
        country: str = self._get(entry, "country", str, at, "CN")
        if country.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise self.fail(f"not a country code: {country!r} (ISO 3166 alpha-2, e.g. \"CN\")",
                            (*at, "country"))
        entries: list[Any] = self._get(entry, "numbers", list, at, required=True)
        if not entries:
            raise self.fail("must list at least one number", (*at, "numbers"))
        for j, item in enumerate(entries):
            if type(item) is not str:
                raise self.fail(f"expected a string, got {_type_name(item)}",
                                (*at, "numbers", j))
            try:
                NumberList([item], default_country=country)
            except NumberListError as exc:
                raise self.fail(str(exc), (*at, "numbers", j)) from None
        return NumberList(entries, default_country=country)

    def _region_rule(self, entry: dict[str, Any], name: str, line: int,
                     at: KeyPath) -> RuleConfig:
        from pbx.apps.rules import known_place, similar_place
        routes: dict[str, Any] = self._get(entry, "routes", dict, at, required=True)
        if not routes:
            raise self.fail("must route at least one region", (*at, "routes"))
        out: dict[str, str] = {}
        for place, target in routes.items():
            key: KeyPath = (*at, "routes", place)
            kind, colon, code = place.partition(":")
            if colon and kind == "country":
                if not (len(code) == 2 and code.isascii() and code.isalpha()):
                    raise self.fail(f"bad country {place!r} (e.g. \"country:US\")", key)
            elif not known_place(place):
                close = similar_place(place)
                hint = f" (did you mean {close!r}?)" if close else ""
                raise self.fail(f"no phone numbering plan names a place {place!r}{hint}: use a "
                                "province or city as pbx.region gives it, or country:XX", key)
            out[place] = self._app_name(target, key)
        default: str = self._get(entry, "default", str, at, "")
        if default:
            self._app_name(default, (*at, "default"))
        return RuleConfig(name, "region", line, routes=out, default=default)
