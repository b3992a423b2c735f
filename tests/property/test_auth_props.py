"""Digest authentication properties: header round trips, hostile input, client/server agreement."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.sip.auth import (
    ALGORITHMS,
    AuthResult,
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    compute_ha1,
    parse_challenge,
    parse_credentials,
)

SECRET = b"property-test-secret-0123456789"
T0 = 1_700_000_000.0

# Anything a quoted-string can carry: quotes, backslashes, commas, '=', tabs, controls, non-ASCII.
AWKWARD = st.text(
    st.one_of(st.sampled_from('"\\,=; \t\x00\x7f\u00e9\u4e2d\U0001f600'),
              st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))),
    max_size=20)
TOKEN = st.text("abcXYZ019-.!%*_+`'~", min_size=1, max_size=10)
VALUE = st.one_of(TOKEN, AWKWARD)
NC = st.integers(1, 0xFFFFFFFF).flatmap(
    lambda n: st.sampled_from([f"{n:08x}", f"{n:08X}"]))
KNOWN = {"username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop",
         "nc", "domain", "stale"}
EXTRA = st.lists(st.tuples(TOKEN.map(str.lower).filter(lambda n: n not in KNOWN), VALUE),
                 max_size=3, unique_by=lambda p: p[0]).map(tuple)


@st.composite
def credentials(draw: st.DrawFn) -> Credentials:
    with_qop = draw(st.booleans())
    return Credentials(
        username=draw(AWKWARD), realm=draw(AWKWARD), nonce=draw(AWKWARD), uri=draw(AWKWARD),
        response=draw(AWKWARD), algorithm=draw(st.none() | VALUE),
        cnonce=draw(AWKWARD) if with_qop else draw(st.none() | AWKWARD),
        opaque=draw(st.none() | AWKWARD), qop=draw(VALUE) if with_qop else None,
        nc=draw(NC) if with_qop else draw(st.none() | NC), extra=draw(EXTRA))


@st.composite
def challenges(draw: st.DrawFn) -> Challenge:
    return Challenge(
        realm=draw(AWKWARD), nonce=draw(AWKWARD), algorithm=draw(st.none() | VALUE),
        qop=tuple(draw(st.lists(TOKEN, max_size=3))), opaque=draw(st.none() | AWKWARD),
        stale=draw(st.booleans()), domain=draw(st.none() | AWKWARD), extra=draw(EXTRA))


@given(credentials())
def test_credentials_round_trip(creds: Credentials) -> None:
    assert parse_credentials(str(creds)) == creds


@given(challenges())
def test_challenge_round_trip(challenge: Challenge) -> None:
    assert parse_challenge(str(challenge)) == challenge


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for kind, pos, char in edits:
        i = pos % (len(text) + 1)
        if kind == 0:
            text = text[:i] + char + text[i:]
        elif kind == 1:
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + char + text[i + 1:]
    return text


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000),
                           st.sampled_from('"\\,= \t\r\nDdx\x00\u00e9\ud800')), max_size=6)


def _parses_or_parse_error(value: str) -> None:
    for parse in (parse_credentials, parse_challenge):
        try:
            parsed = parse(value)
        except ParseError:
            continue
        # Whatever parses is a fixed point of serialization.
        assert parse(str(parsed)) == parsed


@given(st.one_of(credentials().map(str), challenges().map(str)), EDITS)
def test_mutated_values_only_raise_parse_error(value: str, edits: list[tuple[int, int, str]]
                                               ) -> None:
    _parses_or_parse_error(_mutate(value, edits))


@given(st.text(max_size=200) | st.text("Digest =,\"\\ \tabcnonce", max_size=200))
def test_random_values_only_raise_parse_error(value: str) -> None:
    _parses_or_parse_error(value)


USERS = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                min_size=1, max_size=12)
PASSWORDS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)


@given(realm=USERS, username=USERS, password=PASSWORDS, other=PASSWORDS,
       algorithm=st.sampled_from(ALGORITHMS), method=st.sampled_from(["REGISTER", "INVITE"]),
       uri=USERS, cnonce=USERS, nc=st.integers(1, 0xFFFFFFFF), salt=st.binary(min_size=8,
                                                                           max_size=32))
def test_client_credentials_verify_only_with_the_right_password(
        realm: str, username: str, password: str, other: str, algorithm: str, method: str,
        uri: str, cnonce: str, nc: int, salt: bytes) -> None:
    assume(other != password)
    server = DigestServer(realm, SECRET, algorithms=(algorithm,))
    client = DigestClient()
    challenge = client.choose(parse_challenge(v) for v in server.challenge(T0, salt))
    assert challenge is not None
    value = client.authorize(challenge, method, uri, username, password, cnonce, nc)
    creds = parse_credentials(value)
    assert (creds.username, creds.uri, creds.algorithm) == (username, uri, algorithm)
    assert creds.ha1_algorithm is not None
    wrong = compute_ha1(username, realm, other, creds.ha1_algorithm)
    assert server.verify(method, creds, wrong, T0 + 1) is AuthResult.FAILED
    right = compute_ha1(username, realm, password, creds.ha1_algorithm)
    assert server.verify(method, creds, right, T0 + 1) is AuthResult.OK


@given(st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_nonce_counts_must_increase(counts: list[int]) -> None:
    server = DigestServer("r", SECRET, algorithms=("MD5",))
    challenge = parse_challenge(server.challenge(T0, b"saltsalt")[0])
    highest = 0
    for nc in counts:
        creds = parse_credentials(DigestClient().authorize(challenge, "REGISTER", "sip:r", "u",
                                                           "p", "cn", nc))
        result = server.verify("REGISTER", creds, compute_ha1("u", "r", "p"), T0)
        assert result is (AuthResult.OK if nc > highest else AuthResult.REPLAY)
        highest = max(highest, nc)
