"""SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), server and client side, sans-I/O.

Public API::

    compute_ha1(username, realm, password, algorithm="MD5") -> str
    parse_credentials(value) -> Credentials        # Authorization / Proxy-Authorization
    parse_challenge(value) -> Challenge            # WWW-Authenticate / Proxy-Authenticate
    NonceManager(secret, ttl, realm="")            # .make(now, salt) -> str, .check(nonce, now)
    DigestServer(realm, secret, nonce_ttl=300.0, algorithms=("SHA-256", "MD5"),
                 max_nonces=10_000, opaque=None)   # .challenge(now, salt, stale=False) -> [str]
                                                   # .verify(method, creds, ha1, now) -> AuthResult
    DigestClient(algorithms=ALGORITHMS)            # .choose(challenges) -> Challenge | None
                                                   # .authorize(challenge, method, uri, username,
                                                   #            password, cnonce, nc) -> str
    AuthResult.OK / STALE / FAILED / REPLAY;  ALGORITHMS

Nothing here reads a clock or draws random numbers: ``now`` and the nonce ``salt`` / ``cnonce``
come from the caller. Decisions, and why:

- Passwords are stored as HA1 = H(username:realm:password), one per (user, algorithm); the server
  side only ever sees HA1. ``Credentials.ha1_algorithm`` names the HA1 to look up. A ``-sess``
  algorithm uses the HA1 of its base hash (``compute_ha1`` returns that for ``-sess`` names): the
  session key H(HA1:nonce:cnonce) is derived per request from that request's nonce and cnonce,
  which is what a stateless server can do and what clients do in practice.
- Algorithms: MD5, SHA-256 and SHA-512-256 (the last only where hashlib has it), each also as
  ``-sess``. A server accepts only the algorithms it offers; by default SHA-256 then MD5, one
  challenge each, in preference order (RFC 8760 §2.3), and a client picks the topmost challenge
  it supports (§2.4).
- Only ``qop=auth``. The server refuses credentials without qop (RFC 2069 style): without nc and
  cnonce nothing stops a captured request from being replayed while its nonce lives, and every
  RFC 3261 client sends qop=auth when offered (RFC 3261 §22.4 makes servers offer it). The client
  still answers a qop-less challenge, since refusing would only break registration to old
  carriers. ``auth-int`` is refused on both sides.
- Nonces are stateless: hex of (creation time in ms, salt, HMAC-SHA256(secret; time, salt,
  realm)[:16]). Pass wall-clock time as ``now`` if nonces must survive a restart or be shared by
  nodes with the same secret; nodes may disagree by up to a few seconds.
- ``verify`` checks the digest before the nonce. A correct digest proves knowledge of HA1, so a
  nonce that is expired *or not ours* (forged, from before a secret change) yields STALE: the
  caller re-challenges with ``stale=true`` and the phone retries without bothering its user.
  An attacker without HA1 only ever sees FAILED.
- Replay: the only state is the highest nonce-count accepted per (username, nonce), recorded
  after the digest verified (so unauthenticated floods add nothing), in an LRU of at most
  ``max_nonces`` entries whose expired entries are dropped. When a live entry must be evicted,
  every nonce created no later than it and no longer tracked becomes STALE, so eviction can cost
  an honest client one round trip but never lets a replay through. Counts must strictly increase;
  on REPLAY the caller should re-challenge (stale=true), which also absorbs the rare request that
  overtook another one using the same nonce. With several nodes, replay tracking is per node.
- The ``opaque`` value is echoed but not checked (it is not covered by the digest), and comparing
  ``creds.uri`` with the Request-URI is left to the caller (proxies may rewrite the latter).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pbx.errors import ParseError
from pbx.sip._lex import QUOTED, TOKEN, is_token, quote, unquote

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestServer",
    "NonceManager",
    "compute_ha1",
    "parse_challenge",
    "parse_credentials",
]


def _hash_factory(name: str) -> Callable[[bytes], str] | None:
    try:
        hashlib.new(name)
    except ValueError:  # not every OpenSSL build has SHA-512/256
        return None
    return lambda data: hashlib.new(name, data).hexdigest()


_HASHES: dict[str, Callable[[bytes], str]] = {
    base: fn
    for base, fn in (
        ("MD5", lambda data: hashlib.md5(data).hexdigest()),
        ("SHA-256", lambda data: hashlib.sha256(data).hexdigest()),
        ("SHA-512-256", _hash_factory("sha512_256")),
    )
    if fn is not None
}
#: Every algorithm name this module implements, in its canonical spelling.
ALGORITHMS: tuple[str, ...] = tuple(n for base in _HASHES for n in (base, base + "-sess"))
_CANONICAL = {name.upper(): name for name in ALGORITHMS}

_MAX_VALUE = 4096  # characters of header value we are willing to parse
_SKEW = 5.0  # seconds a nonce may appear to come from the future (clock steps, cluster nodes)
_SALT_MIN, _SALT_MAX, _MAC_LEN = 8, 32, 16
_NONCE_RE = re.compile(r"[0-9a-f]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")

# auth-param = token LWS "=" LWS (token / quoted-string), comma-separated after the scheme.
# LWS may contain folded line breaks if the caller did not unfold them.
_LWS = r"(?:[ \t]|\r?\n[ \t])*"
_SCHEME_RE = re.compile(rf"{_LWS}({TOKEN})(?:[ \t]|\r?\n[ \t])+")
_END_RE = re.compile(_LWS)
# One parameter and the comma after it (group 3 set) in a single match: the common case.
_ITEM_RE = re.compile(rf"({TOKEN}){_LWS}={_LWS}({TOKEN}|{QUOTED}){_LWS}(,{_LWS})?")

_CRED_FIELDS = ("username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque",
                "qop", "nc")
_CHAL_FIELDS = ("realm", "domain", "nonce", "opaque", "stale", "algorithm", "qop")

Extra = tuple[tuple[str, str], ...]


def _canonical(algorithm: str | None) -> str | None:
    """Canonical spelling of an algorithm name (absent means MD5), or None if unknown."""
    return _CANONICAL.get(algorithm.upper()) if algorithm is not None else "MD5"


def _base(algorithm: str) -> str:
    return algorithm.removesuffix("-sess")


def _h(base: str, text: str) -> str:
    return _HASHES[base](text.encode("utf-8"))


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 = H(username:realm:password) in lower-case hex: what a user store keeps.

    For a ``-sess`` algorithm this is the HA1 of its base hash (the session key is derived per
    request). Raises ``ValueError`` for an algorithm this module does not implement.
    """
    name = _canonical(algorithm)
    if name is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return _h(_base(name), f"{username}:{realm}:{password}")


def _response(algorithm: str, ha1: str, method: str, uri: str, nonce: str,
              qop: str | None, nc: str | None, cnonce: str | None) -> str:
    """The request-digest of RFC 7616 §3.4.1 (RFC 2069 form when ``qop`` is None)."""
    base = _base(algorithm)
    if algorithm.endswith("-sess"):
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(base, f"{method}:{uri}")
    if qop is None:
        return _h(base, f"{ha1}:{nonce}:{ha2}")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- header values ---------------------------------------------------------------------------

def _tok(value: str) -> str:
    """A parameter value written as a token when it is one, else as a quoted-string."""
    return value if is_token(value) else quote(value)


def _check_text(owner: str, values: Iterable[str | None]) -> None:
    for value in values:
        if value is None:
            continue
        if "\r" in value or "\n" in value:
            raise ValueError(f"{owner} value contains CR or LF: {value!r}")
        if not value.isascii():
            value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on lone surrogates


def _check_extra(owner: str, extra: Extra, known: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for name, value in extra:
        if not is_token(name) or name != name.lower() or name in known or name in seen:
            raise ValueError(f"{owner}: bad or duplicate extra parameter {name!r}")
        seen.add(name)
        _check_text(owner, (value,))


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials (Authorization / Proxy-Authorization). ``str()`` gives the header value.

    Values are unquoted. ``algorithm`` None means absent (MD5). ``nc`` is kept as sent, eight hex
    digits, because the digest covers its exact text. ``extra`` holds any other parameters as
    (lower-case name, value) pairs in order. Construction validates, so every instance
    serializes to a value that parses back equal.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    extra: Extra = ()

    def __post_init__(self) -> None:
        _check_text("credentials", (self.username, self.realm, self.nonce, self.uri,
                                    self.response, self.algorithm, self.cnonce, self.opaque,
                                    self.qop, self.nc))
        if self.nc is not None and _NC_RE.fullmatch(self.nc) is None:
            raise ValueError(f"nonce-count must be 8 hex digits, not {self.nc!r}")
        if self.qop is not None and (self.cnonce is None or self.nc is None):
            raise ValueError("qop requires cnonce and nc")
        _check_extra("credentials", self.extra, _CRED_FIELDS)

    @property
    def ha1_algorithm(self) -> str | None:
        """The algorithm whose HA1 ``verify`` needs: canonical, no ``-sess``; None if unknown."""
        name = _canonical(self.algorithm)
        return _base(name) if name is not None else None

    def __str__(self) -> str:
        parts = [f"username={quote(self.username)}", f"realm={quote(self.realm)}",
                 f"nonce={quote(self.nonce)}", f"uri={quote(self.uri)}",
                 f"response={quote(self.response)}"]
        if self.algorithm is not None:
            parts.append(f"algorithm={_tok(self.algorithm)}")
        if self.cnonce is not None:
            parts.append(f"cnonce={quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_tok(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        parts.extend(f"{name}={_tok(value)}" for name, value in self.extra)
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A digest challenge (WWW-Authenticate / Proxy-Authenticate). ``str()`` gives the value.

    ``qop`` lists the offered qop options (empty: none offered, an RFC 2069 server); ``stale``
    is True only for a case-insensitive ``true``. Other fields as in ``Credentials``.
    """

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    extra: Extra = ()

    def __post_init__(self) -> None:
        _check_text("challenge", (self.realm, self.nonce, self.algorithm, self.opaque,
                                  self.domain))
        if not all(is_token(q) for q in self.qop):
            raise ValueError(f"qop options must be tokens: {self.qop!r}")
        _check_extra("challenge", self.extra, _CHAL_FIELDS)

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={quote(self.domain)}")
        parts.append(f"nonce={quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        if self.algorithm is not None:
            parts.append(f"algorithm={_tok(self.algorithm)}")
        if self.qop:
            parts.append(f'qop="{",".join(self.qop)}"')
        parts.extend(f"{name}={_tok(value)}" for name, value in self.extra)
        return "Digest " + ", ".join(parts)


def _parse_params(value: str, what: str) -> dict[str, str]:
    """``Digest`` followed by comma-separated auth-params: lower-cased name -> unquoted value."""
    if len(value) > _MAX_VALUE:
        raise ParseError(f"{what} longer than {_MAX_VALUE} characters", data=value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ParseError(f"{what} is not valid text",
                             data=value.encode("utf-8", "replace")) from None
    m = _SCHEME_RE.match(value)
    if m is None or m.group(1).lower() != "digest":
        raise ParseError(f"{what} is not a Digest header value", data=value)
    params: dict[str, str] = {}
    pos = m.end()
    match = _ITEM_RE.match
    while True:
        m = match(value, pos)
        if m is None:
            raise ParseError(f"bad parameter in {what} at offset {pos}", data=value)
        name, raw, comma = m.groups()
        name = name.lower()
        if name in params:
            raise ParseError(f"duplicate parameter {name!r} in {what}", data=value)
        params[name] = unquote(raw) if raw[0] == '"' else raw
        pos = m.end()
        if comma is None:
            break
    if _END_RE.fullmatch(value, pos) is None:
        raise ParseError(f"junk after parameters in {what} at offset {pos}", data=value)
    return params


def _required(params: dict[str, str], name: str, what: str, value: str) -> str:
    try:
        return params.pop(name)
    except KeyError:
        raise ParseError(f"{what} lacks {name}", data=value) from None


def parse_credentials(value: str) -> Credentials:
    """Parse an Authorization / Proxy-Authorization value; ``ParseError`` (400) if malformed."""
    what = "credentials"
    p = _parse_params(value, what)
    fields = {name: _required(p, name, what, value)
              for name in ("username", "realm", "nonce", "uri", "response")}
    try:
        return Credentials(**fields, algorithm=p.pop("algorithm", None),
                           cnonce=p.pop("cnonce", None), opaque=p.pop("opaque", None),
                           qop=p.pop("qop", None), nc=p.pop("nc", None), extra=tuple(p.items()))
    except ValueError as exc:
        raise ParseError(f"invalid {what}: {exc}", data=value) from None


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value; ``ParseError`` if malformed."""
    what = "challenge"
    p = _parse_params(value, what)
    realm = _required(p, "realm", what, value)
    nonce = _required(p, "nonce", what, value)
    qop = tuple(q for q in (o.strip(" \t") for o in p.pop("qop", "").split(",")) if q)
    try:
        return Challenge(realm, nonce, algorithm=p.pop("algorithm", None), qop=qop,
                         opaque=p.pop("opaque", None),
                         stale=p.pop("stale", "").lower() == "true",
                         domain=p.pop("domain", None), extra=tuple(p.items()))
    except ValueError as exc:
        raise ParseError(f"invalid {what}: {exc}", data=value) from None


# --- server ----------------------------------------------------------------------------------

class NonceManager:
    """Stateless, time-stamped server nonces bound to one realm.

    A nonce is the hex of (creation time in whole ms, salt, truncated HMAC-SHA256 over both and
    the realm), so checking it needs only ``secret``. The caller supplies a fresh ``salt`` (8 to
    32 random bytes) per challenge so that nonces are unique.
    """

    __slots__ = ("_key", "_realm", "ttl")

    def __init__(self, secret: bytes, ttl: float, realm: str = "") -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if not ttl > 0:
            raise ValueError("nonce ttl must be positive")
        self._key = bytes(secret)
        self._realm = realm.encode("utf-8")
        self.ttl = float(ttl)

    def _mac(self, stamp: bytes, salt: bytes) -> bytes:
        msg = b"pbx-digest-nonce\x00" + stamp + bytes([len(salt)]) + salt + self._realm
        return hmac.digest(self._key, msg, "sha256")[:_MAC_LEN]

    def make(self, now: float, salt: bytes) -> str:
        """A new nonce created at ``now``."""
        if not _SALT_MIN <= len(salt) <= _SALT_MAX:
            raise ValueError(f"salt must be {_SALT_MIN} to {_SALT_MAX} bytes")
        stamp = math.floor(now * 1000).to_bytes(8, "big", signed=True)
        return (stamp + salt + self._mac(stamp, salt)).hex()

    def _created(self, nonce: str) -> float | None:
        """Creation time of an authentic nonce of ours, else None."""
        n = len(nonce)
        if (n % 2 or not 2 * (8 + _SALT_MIN + _MAC_LEN) <= n <= 2 * (8 + _SALT_MAX + _MAC_LEN)
                or _NONCE_RE.fullmatch(nonce) is None):
            return None
        raw = bytes.fromhex(nonce)
        stamp, salt, mac = raw[:8], raw[8:-_MAC_LEN], raw[-_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(stamp, salt)):
            return None
        return int.from_bytes(stamp, "big", signed=True) / 1000

    def _fresh(self, created: float, now: float) -> bool:
        return created - _SKEW <= now <= created + self.ttl

    def check(self, nonce: str, now: float) -> Literal["ok", "stale", "invalid"]:
        """``ok`` if ours and unexpired, ``stale`` if ours but expired, else ``invalid``."""
        created = self._created(nonce)
        if created is None:
            return "invalid"
        return "ok" if self._fresh(created, now) else "stale"


class AuthResult(enum.Enum):
    """Outcome of ``DigestServer.verify``.

    OK: authenticated. STALE: the digest is right but the nonce is expired or not ours, or its
    replay record was evicted; re-challenge with ``stale=True``. REPLAY: the nonce-count did not
    increase; re-challenge (stale=True) and log. FAILED: anything else (wrong password, unknown
    user, realm mismatch, algorithm not offered, no or unsupported qop); plain re-challenge or 403.
    """

    OK = "ok"
    STALE = "stale"
    FAILED = "failed"
    REPLAY = "replay"


class DigestServer:
    """Challenges and verifies digest credentials for one realm.

    ``algorithms`` is the offer, most preferred first. The only state is the bounded
    nonce-count table described in the module docstring.
    """

    def __init__(self, realm: str, secret: bytes, nonce_ttl: float = 300.0,
                 algorithms: Sequence[str] = ("SHA-256", "MD5"), max_nonces: int = 10_000,
                 opaque: str | None = None) -> None:
        names = []
        for algorithm in algorithms:
            name = _canonical(algorithm)
            if name is None:
                raise ValueError(f"unsupported digest algorithm {algorithm!r}")
            names.append(name)
        if not names or len(set(names)) != len(names):
            raise ValueError("algorithms must be non-empty and distinct")
        if max_nonces < 1:
            raise ValueError("max_nonces must be positive")
        _check_text("realm", (realm, opaque))
        self.realm = realm
        self.algorithms: tuple[str, ...] = tuple(names)
        self.opaque = opaque
        self.max_nonces = max_nonces
        self._nonces = NonceManager(secret, nonce_ttl, realm)
        # (username, nonce) -> (highest nc accepted, nonce creation time), least recent first.
        self._seen: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._evicted_upto = -math.inf
        self._templates: dict[tuple[bool, tuple[str, ...]], list[tuple[str, str]]] = {}

    def challenge(self, now: float, salt: bytes, stale: bool = False,
                  algorithms: Sequence[str] | None = None) -> list[str]:
        """One WWW-Authenticate (or Proxy-Authenticate) value per offered algorithm.

        ``algorithms`` narrows the offer (e.g. to those the user has an HA1 for); each must be
        one of ``self.algorithms``; their order is always ours.
        """
        nonce = self._nonces.make(now, salt)
        names = self.algorithms if algorithms is None else tuple(
            a for a in self.algorithms if a in algorithms)
        if not names:
            raise ValueError(f"none of {algorithms!r} is offered")
        templates = self._templates.get((stale, names))
        if templates is None:
            templates = self._templates[(stale, names)] = self._make_templates(stale, names)
        if not templates:  # the realm or opaque happened to contain the placeholder
            return [str(Challenge(self.realm, nonce, algorithm=name, qop=("auth",),
                                  opaque=self.opaque, stale=stale))
                    for name in names]
        return [head + nonce + tail for head, tail in templates]

    def _make_templates(self, stale: bool, names: tuple[str, ...]) -> list[tuple[str, str]]:
        """Each offered challenge split around its nonce, so a challenge costs one concat."""
        mark = "N" * 24  # not hex: never a nonce of ours
        out = []
        for name in names:
            text = str(Challenge(self.realm, mark, algorithm=name, qop=("auth",),
                                 opaque=self.opaque, stale=stale))
            if text.count(mark) != 1:
                return []
            head, _, tail = text.partition(mark)
            out.append((head, tail))
        return out

    def verify(self, method: str, creds: Credentials, ha1: str | None,
               now: float) -> AuthResult:
        """Check ``creds`` for a request with ``method``.

        ``ha1`` is the stored HA1 of ``(creds.username, creds.ha1_algorithm)`` in this realm, or
        None if there is none (unknown user). Records the nonce-count only on success.
        """
        self._prune(now)
        name = _canonical(creds.algorithm)
        if (name is None or name not in self.algorithms or creds.realm != self.realm
                or ha1 is None or creds.qop is None or creds.qop.lower() != "auth"
                or creds.nc is None or creds.cnonce is None):
            return AuthResult.FAILED
        nc = int(creds.nc, 16)
        if nc == 0:
            return AuthResult.FAILED
        expected = _response(name, ha1.lower(), method, creds.uri, creds.nonce, creds.qop,
                             creds.nc, creds.cnonce)
        if not hmac.compare_digest(expected.encode(), creds.response.lower().encode("utf-8")):
            return AuthResult.FAILED
        key = (creds.username, creds.nonce)
        created = self._nonces._created(creds.nonce)
        if created is None or not self._nonces._fresh(created, now):
            self._seen.pop(key, None)
            return AuthResult.STALE
        entry = self._seen.get(key)
        if entry is None:
            if created <= self._evicted_upto:
                return AuthResult.STALE
        elif nc <= entry[0]:
            return AuthResult.REPLAY
        self._seen[key] = (nc, created)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_nonces:
            _, (_, old) = self._seen.popitem(last=False)
            if now <= old + self._nonces.ttl:  # not expired: its record must not be lost
                self._evicted_upto = max(self._evicted_upto, old)
        return AuthResult.OK

    def _prune(self, now: float) -> None:
        """Drop least-recently-used entries whose nonce has expired."""
        ttl = self._nonces.ttl
        while self._seen:
            key, (_, created) = next(iter(self._seen.items()))
            if now <= created + ttl:
                break
            del self._seen[key]


# --- client ----------------------------------------------------------------------------------

class DigestClient:
    """Answers digest challenges (registering to carriers, tests).

    ``algorithms`` is the set this client is willing to use; which one is used follows the
    server's order (RFC 8760 §2.4: the topmost supported challenge).
    """

    def __init__(self, algorithms: Iterable[str] = ALGORITHMS) -> None:
        names = {_canonical(a) for a in algorithms}
        if None in names:
            raise ValueError(f"unsupported digest algorithm in {algorithms!r}")
        self.algorithms = frozenset(n for n in names if n is not None)

    def _usable(self, challenge: Challenge) -> bool:
        name = _canonical(challenge.algorithm)
        if name is None or name not in self.algorithms:
            return False
        offered = {q.lower() for q in challenge.qop}
        # -sess needs a cnonce, which only a qop exchange carries.
        return "auth" in offered if offered or name.endswith("-sess") else True

    def choose(self, challenges: Iterable[Challenge]) -> Challenge | None:
        """The first challenge this client can answer, or None."""
        return next((c for c in challenges if self._usable(c)), None)

    def authorize(self, challenge: Challenge, method: str, uri: str, username: str,
                  password: str, cnonce: str, nc: int) -> str:
        """The Authorization / Proxy-Authorization value answering ``challenge``.

        ``cnonce`` must be fresh and unpredictable (the caller draws it); ``nc`` counts requests
        sent with this nonce, from 1. Raises ``ValueError`` if ``choose`` would not pick
        ``challenge``.
        """
        name = _canonical(challenge.algorithm)
        if name is None or not self._usable(challenge):
            raise ValueError(f"cannot answer challenge {challenge}")
        if not 0 < nc <= 0xFFFFFFFF:
            raise ValueError("nonce-count out of range")
        ha1 = compute_ha1(username, challenge.realm, password, name)
        if challenge.qop:
            qop: str | None = "auth"
            nc_text: str | None = f"{nc:08x}"
            cn: str | None = cnonce
        else:
            qop = nc_text = cn = None
        response = _response(name, ha1, method, uri, challenge.nonce, qop, nc_text, cn)
        return str(Credentials(username, challenge.realm, challenge.nonce, uri, response,
                               algorithm=challenge.algorithm, cnonce=cn, opaque=challenge.opaque,
                               qop=qop, nc=nc_text))
