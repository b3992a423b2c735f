"""Digest authentication: RFC vectors, header parsing, nonces, and the server's verdicts."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pbx.errors import ParseError
from pbx.sip.auth import (
    ALGORITHMS,
    AuthResult,
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    NonceManager,
    compute_ha1,
    parse_challenge,
    parse_credentials,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "pbx.local"
URI = "sip:pbx.local"
T0 = 1_700_000_000.0

# RFC 2617 §3.5.
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
    " qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n"
    ' response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int",'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def _server(**kw: Any) -> DigestServer:
    return DigestServer(REALM, SECRET, **kw)


def _salt(i: int) -> bytes:
    return i.to_bytes(16, "big")


def _login(server: DigestServer, now: float, password: str = "secret", *, algorithm: str = "",
           username: str = "1001", nc: int = 1, salt: int = 1,
           challenge: Challenge | None = None, method: str = "REGISTER") -> Credentials:
    """Credentials an honest client builds against a fresh challenge of ``server``."""
    if challenge is None:
        challenges = [parse_challenge(v) for v in server.challenge(now, _salt(salt))]
        challenge = next(c for c in challenges if not algorithm or c.algorithm == algorithm)
    value = DigestClient().authorize(challenge, method, URI, username, password,
                                     cnonce="c0ffee", nc=nc)
    return parse_credentials(value)


def _ha1(creds: Credentials, password: str = "secret") -> str:
    assert creds.ha1_algorithm is not None
    return compute_ha1(creds.username, REALM, password, creds.ha1_algorithm)


# --- RFC vectors -------------------------------------------------------------------------------

def test_rfc2617_md5_vector() -> None:
    assert compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9")
    challenge = parse_challenge(RFC2617_CHALLENGE)
    value = DigestClient().authorize(challenge, "GET", "/dir/index.html", "Mufasa",
                                     "Circle Of Life", cnonce="0a4f113b", nc=1)
    assert parse_credentials(value) == parse_credentials(RFC2617_AUTHORIZATION)


@pytest.mark.parametrize(("algorithm", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_vectors(algorithm: str, response: str) -> None:
    challenge = Challenge("http-auth@example.org", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                          algorithm=algorithm, qop=("auth", "auth-int"),
                          opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    creds = parse_credentials(DigestClient().authorize(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", nc=1))
    assert creds.response == response
    assert (creds.algorithm, creds.qop, creds.nc) == (algorithm, "auth", "00000001")
    assert creds.opaque == challenge.opaque


def test_rfc_vector_on_server_is_authentic_but_not_our_nonce() -> None:
    # The digest is right, the nonce is not one of ours: re-challenge with stale=true.
    server = DigestServer("testrealm@host.com", SECRET, algorithms=("MD5",))
    creds = parse_credentials(RFC2617_AUTHORIZATION)
    good = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    bad = compute_ha1("Mufasa", "testrealm@host.com", "Circle of Life")
    assert server.verify("GET", creds, good, T0) is AuthResult.STALE
    assert server.verify("GET", creds, bad, T0) is AuthResult.FAILED
    assert server.verify("POST", creds, good, T0) is AuthResult.FAILED


def test_sess_algorithm_formula() -> None:
    # RFC 7616 §3.4.2: with -sess, HA1 becomes H(H(user:realm:pass):nonce:cnonce).
    challenge = Challenge(REALM, "n0nce", algorithm="SHA-256-sess", qop=("auth",))
    creds = parse_credentials(DigestClient().authorize(
        challenge, "INVITE", URI, "1001", "pw", cnonce="cn", nc=3))

    def h(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    ha1 = h(f"{h('1001:pbx.local:pw')}:n0nce:cn")
    assert creds.response == h(f"{ha1}:n0nce:00000003:cn:auth:{h('INVITE:' + URI)}")
    assert compute_ha1("1001", REALM, "pw", "SHA-256-sess") == h("1001:pbx.local:pw")
    assert creds.ha1_algorithm == "SHA-256"


# --- parsing -----------------------------------------------------------------------------------

def test_parse_credentials_fields() -> None:
    creds = parse_credentials(RFC2617_AUTHORIZATION)
    assert creds == Credentials(
        username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41", qop="auth", nc="00000001")
    assert creds.algorithm is None and creds.ha1_algorithm == "MD5"
    assert parse_credentials(str(creds)) == creds


def test_parse_is_lenient_where_clients_differ() -> None:
    value = ('dIgEsT   USERNAME = "a\\"b\\\\c" ,Realm="r",nonce="n" , URI="sip:x",'
             'response="abc", algorithm="sha-256", qop="auth", nc=0000000A,cnonce="c",'
             ' x-foo=bar\t')
    creds = parse_credentials(value)
    assert creds.username == 'a"b\\c'
    assert (creds.algorithm, creds.qop, creds.nc) == ("sha-256", "auth", "0000000A")
    assert creds.ha1_algorithm == "SHA-256"
    assert creds.extra == (("x-foo", "bar"),)
    assert parse_credentials(str(creds)) == creds


def test_parse_challenge_fields() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop="auth, auth-int", stale=TRUE, '
                         'algorithm=SHA-256, domain="sip:a sip:b", charset=UTF-8')
    assert ch == Challenge("r", "n", algorithm="SHA-256", qop=("auth", "auth-int"), stale=True,
                           domain="sip:a sip:b", extra=(("charset", "UTF-8"),))
    assert parse_challenge(str(ch)) == ch
    assert parse_challenge('Digest realm="r", nonce="n", stale=false').stale is False
    assert parse_challenge('Digest realm="r", nonce="n", qop=auth').qop == ("auth",)


@pytest.mark.parametrize("value", [
    "",
    "Digest",
    "Digest ",
    'Basic realm="r"',
    'Digest username="u", realm="r", nonce="n", uri="x"',  # no response
    'Digest username="u", username="u", realm="r", nonce="n", uri="x", response="y"',
    'Digest username="u", realm="r", nonce="n", uri="x", response="y",',
    'Digest username="u" realm="r", nonce="n", uri="x", response="y"',
    'Digest username="u, realm="r", nonce="n", uri="x", response="y"',
    'Digest username=u v, realm="r", nonce="n", uri="x", response="y"',
    'Digest username, realm="r", nonce="n", uri="x", response="y"',
    'Digest username="u", realm="r", nonce="n", uri="x", response="y", nc=1',
    'Digest username="u", realm="r", nonce="n", uri="x", response="y", qop=auth',
    'Digest username="u", realm="r", nonce="n", uri="x", response="y" junk',
    'Digest username="u\r\n", realm="r", nonce="n", uri="x", response="y"',
    'Digest username="u", realm="r", nonce="n", uri="x", response="y", x="' + "a" * 4096 + '"',
    'Digest username="\ud800", realm="r", nonce="n", uri="x", response="y"',
])
def test_parse_credentials_rejects(value: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_credentials(value)
    assert info.value.status_hint == 400


@pytest.mark.parametrize("value", [
    'Digest nonce="n"',
    'Digest realm="r"',
    'Digest realm="r", nonce="n", qop="auth, a b"',
    'Digest realm="r", nonce="n", realm="s"',
])
def test_parse_challenge_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_challenge(value)


def test_dataclasses_refuse_what_cannot_round_trip() -> None:
    with pytest.raises(ValueError):
        Credentials("u\n", "r", "n", "x", "y")
    with pytest.raises(ValueError):
        Credentials("u", "r", "n", "x", "y", qop="auth")  # no cnonce/nc
    with pytest.raises(ValueError):
        Credentials("u", "r", "n", "x", "y", extra=(("realm", "s"),))
    with pytest.raises(ValueError):
        Challenge("r", "n", extra=(('a="b", c', "d"),))


# --- nonces ------------------------------------------------------------------------------------

def test_nonce_lifecycle() -> None:
    nm = NonceManager(SECRET, ttl=30, realm=REALM)
    nonce = nm.make(T0, _salt(1))
    assert nonce != nm.make(T0, _salt(2))
    assert nm.check(nonce, T0) == "ok"
    assert nm.check(nonce, T0 + 30) == "ok"
    assert nm.check(nonce, T0 + 30.01) == "stale"
    assert nm.check(nonce, T0 - 60) == "stale"  # far in the future: our clock stepped back


def test_nonce_tampering_is_invalid() -> None:
    nm = NonceManager(SECRET, ttl=30, realm=REALM)
    nonce = nm.make(T0, _salt(1))
    for i in range(len(nonce)):
        flipped = nonce[:i] + ("0" if nonce[i] != "0" else "1") + nonce[i + 1:]
        assert nm.check(flipped, T0) == "invalid", i
    assert nm.check(nonce.upper(), T0) == "invalid"
    assert nm.check(nonce + "00", T0) == "invalid"
    assert nm.check("", T0) == "invalid"
    assert NonceManager(SECRET[::-1], ttl=30, realm=REALM).check(nonce, T0) == "invalid"
    assert NonceManager(SECRET, ttl=30, realm="other").check(nonce, T0) == "invalid"


def test_nonce_manager_arguments() -> None:
    with pytest.raises(ValueError):
        NonceManager(b"short", ttl=30)
    with pytest.raises(ValueError):
        NonceManager(SECRET, ttl=0)
    with pytest.raises(ValueError):
        NonceManager(SECRET, ttl=30).make(T0, b"1234567")


# --- server ------------------------------------------------------------------------------------

def test_challenge_offers_sha256_first() -> None:
    server = _server(opaque="op")
    values = server.challenge(T0, _salt(1))
    challenges = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.qop == ("auth",) and c.realm == REALM and c.opaque == "op" and not c.stale
               for c in challenges)
    assert len({c.nonce for c in challenges}) == 1
    assert all(c.stale for c in map(parse_challenge, server.challenge(T0, _salt(1), stale=True)))


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_and_replay(algorithm: str) -> None:
    server = _server()
    challenge = next(c for c in map(parse_challenge, server.challenge(T0, _salt(1)))
                     if c.algorithm == algorithm)
    first = _login(server, T0, challenge=challenge)
    assert first.algorithm == algorithm
    assert server.verify("REGISTER", first, _ha1(first), T0 + 1) is AuthResult.OK
    assert server.verify("REGISTER", first, _ha1(first), T0 + 2) is AuthResult.REPLAY
    second = _login(server, T0, challenge=challenge, nc=2, method="INVITE")
    assert server.verify("INVITE", second, _ha1(second), T0 + 3) is AuthResult.OK
    assert server.verify("INVITE", second, _ha1(second), T0 + 3) is AuthResult.REPLAY
    assert server.verify("REGISTER", first, _ha1(first), T0 + 4) is AuthResult.REPLAY
    fifth = _login(server, T0, challenge=challenge, nc=5)
    assert server.verify("REGISTER", fifth, _ha1(fifth), T0 + 5) is AuthResult.OK


def test_nonce_counts_are_per_user() -> None:
    server = _server()
    challenge = parse_challenge(server.challenge(T0, _salt(1))[0])
    a = _login(server, T0, challenge=challenge, username="1001", nc=7)
    b = _login(server, T0, challenge=challenge, username="1002", nc=1)
    assert server.verify("REGISTER", a, _ha1(a), T0) is AuthResult.OK
    assert server.verify("REGISTER", b, _ha1(b), T0) is AuthResult.OK


def test_stale_nonce() -> None:
    server = _server(nonce_ttl=60)
    creds = _login(server, T0)
    assert server.verify("REGISTER", creds, _ha1(creds), T0 + 61) is AuthResult.STALE
    # A wrong password is still a failure, whatever the nonce.
    assert server.verify("REGISTER", creds, _ha1(creds, "nope"), T0 + 61) is AuthResult.FAILED
    fresh = _login(server, T0 + 61, salt=2)
    assert server.verify("REGISTER", fresh, _ha1(fresh), T0 + 62) is AuthResult.OK


def test_tampered_nonce_fails() -> None:
    server = _server()
    creds = _login(server, T0)
    nonce = creds.nonce
    tampered = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    forged = parse_credentials(str(creds).replace(nonce, tampered))
    assert forged.nonce == tampered
    assert server.verify("REGISTER", forged, _ha1(forged), T0) is AuthResult.FAILED


def test_nonce_from_another_server_secret_is_stale_for_the_right_password() -> None:
    other = DigestServer(REALM, SECRET[::-1])
    creds = _login(other, T0)
    assert _server().verify("REGISTER", creds, _ha1(creds), T0) is AuthResult.STALE


def test_failures() -> None:
    server = _server()
    creds = _login(server, T0)
    ha1 = _ha1(creds)
    verify = server.verify
    assert verify("REGISTER", creds, _ha1(creds, "wrong"), T0) is AuthResult.FAILED
    assert verify("REGISTER", creds, None, T0) is AuthResult.FAILED  # unknown user
    assert verify("INVITE", creds, ha1, T0) is AuthResult.FAILED  # digest covers the method
    for change in ({"uri": "sip:elsewhere"}, {"cnonce": "other"}, {"nc": "00000002"},
                   {"username": "1002"}, {"response": "0" * len(creds.response)},
                   {"response": "\u00e9"}):
        altered = parse_credentials(str(_replace(creds, **change)))
        assert verify("REGISTER", altered, _ha1(altered), T0) is AuthResult.FAILED, change
    # Upper-case hex from a client and from a user store are fine.
    assert verify("REGISTER", _replace(creds, response=creds.response.upper()), ha1.upper(),
                  T0) is AuthResult.OK


def test_realm_mismatch() -> None:
    elsewhere = DigestServer("other.realm", SECRET)
    creds = _login(elsewhere, T0)
    ha1 = compute_ha1(creds.username, "other.realm", "secret", "SHA-256")
    assert elsewhere.verify("REGISTER", creds, ha1, T0) is AuthResult.OK
    assert _server().verify("REGISTER", _login(elsewhere, T0, salt=2), ha1,
                            T0) is AuthResult.FAILED


def test_unknown_or_unoffered_algorithm() -> None:
    md5_only = _server(algorithms=("MD5",))
    creds = _login(_server(), T0, algorithm="SHA-256")
    assert md5_only.verify("REGISTER", creds, _ha1(creds), T0) is AuthResult.FAILED
    weird = _replace(creds, algorithm="SHA-1")
    assert weird.ha1_algorithm is None
    assert _server().verify("REGISTER", weird, _ha1(creds), T0) is AuthResult.FAILED
    with pytest.raises(ValueError):
        _server(algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        compute_ha1("u", "r", "p", "SHA-1")


def test_no_qop_and_auth_int_are_refused() -> None:
    server = _server(algorithms=("MD5",))
    challenge = parse_challenge(server.challenge(T0, _salt(1))[0])
    # An RFC 2069 client: correct digest, no qop.
    legacy = Challenge(challenge.realm, challenge.nonce)
    creds = parse_credentials(DigestClient().authorize(legacy, "REGISTER", URI, "1001", "secret",
                                                       cnonce="x", nc=1))
    assert creds.qop is None and creds.cnonce is None and creds.nc is None
    assert server.verify("REGISTER", creds, _ha1(creds), T0) is AuthResult.FAILED
    auth_int = _replace(_login(server, T0), qop="auth-int")
    assert server.verify("REGISTER", auth_int, _ha1(auth_int), T0) is AuthResult.FAILED


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a not in ("MD5", "SHA-256")])
def test_other_algorithms_round_trip(algorithm: str) -> None:
    server = _server(algorithms=(algorithm,))
    creds = _login(server, T0)
    assert creds.algorithm == algorithm
    assert server.verify("REGISTER", creds, _ha1(creds), T0) is AuthResult.OK
    assert server.verify("REGISTER", creds, _ha1(creds, "x"), T0) is AuthResult.FAILED


def test_replay_table_is_bounded_and_eviction_is_safe() -> None:
    server = _server(max_nonces=3)
    logins = [_login(server, T0 + i, salt=i) for i in range(10)]
    for i, creds in enumerate(logins):
        assert server.verify("REGISTER", creds, _ha1(creds), T0 + i) is AuthResult.OK
    assert len(server._seen) == 3
    # An evicted nonce cannot be replayed, even with a later count: the client is sent for a
    # fresh nonce instead.
    for creds in logins[:7]:
        assert server.verify("REGISTER", creds, _ha1(creds), T0 + 10) is AuthResult.STALE
        later = parse_credentials(DigestClient().authorize(
            parse_challenge(f'Digest realm="{REALM}", nonce="{creds.nonce}", qop="auth", '
                            "algorithm=SHA-256"), "REGISTER", URI, "1001", "secret",
            cnonce="c0ffee", nc=2))
        assert server.verify("REGISTER", later, _ha1(later), T0 + 10) is AuthResult.STALE
    # Tracked nonces keep their replay protection.
    assert server.verify("REGISTER", logins[9], _ha1(logins[9]), T0 + 10) is AuthResult.REPLAY
    # A nonce created after the evictions is accepted.
    new = _login(server, T0 + 11, salt=99)
    assert server.verify("REGISTER", new, _ha1(new), T0 + 11) is AuthResult.OK


def test_expired_entries_are_dropped() -> None:
    server = _server(nonce_ttl=60)
    for i in range(5):
        creds = _login(server, T0, salt=i)
        assert server.verify("REGISTER", creds, _ha1(creds), T0) is AuthResult.OK
    assert len(server._seen) == 5
    late = _login(server, T0 + 100, salt=50)
    assert server.verify("REGISTER", late, _ha1(late), T0 + 100) is AuthResult.OK
    assert len(server._seen) == 1


# --- client ------------------------------------------------------------------------------------

def test_client_chooses_topmost_supported() -> None:
    offers = [Challenge("r", "n", algorithm="SHA-1", qop=("auth",)),
              Challenge("r", "n", algorithm="SHA-256", qop=("auth-int",)),
              Challenge("r", "n", algorithm="MD5", qop=("auth",)),
              Challenge("r", "n", algorithm="SHA-256", qop=("auth",))]
    assert DigestClient().choose(offers) is offers[2]
    assert DigestClient(["sha-256"]).choose(offers) is offers[3]
    assert DigestClient(["SHA-256"]).choose(offers[:3]) is None
    assert DigestClient().choose([Challenge("r", "n", algorithm="MD5-sess")]) is None
    with pytest.raises(ValueError):
        DigestClient().authorize(offers[1], "REGISTER", URI, "u", "p", cnonce="c", nc=1)
    with pytest.raises(ValueError):
        DigestClient().authorize(offers[2], "REGISTER", URI, "u", "p", cnonce="c", nc=0)
    with pytest.raises(ValueError):
        DigestClient(["SHA-1"])


def _replace(creds: Credentials, **change: str) -> Credentials:
    fields = {name: getattr(creds, name) for name in Credentials.__dataclass_fields__}
    fields.update(change)
    return Credentials(**fields)


@pytest.mark.parametrize("realm", ["pbx.local", "NNNNNNNNNNNNNNNNNNNNNNNNNN realm"])
@pytest.mark.parametrize("stale", [False, True])
def test_challenge_fast_path_equals_the_challenge_object(realm: str, stale: bool) -> None:
    server = DigestServer(realm, b"k" * 32, algorithms=("SHA-256", "MD5"), opaque="op")
    values = server.challenge(1000.0, b"12345678", stale=stale)
    nonce = parse_challenge(values[0]).nonce
    assert values == [str(Challenge(realm, nonce, algorithm=name, qop=("auth",),
                                         opaque="op", stale=stale))
                      for name in ("SHA-256", "MD5")]
    assert [parse_challenge(v).stale for v in values] == [stale, stale]
