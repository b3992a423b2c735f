"""Registrar edges against a real ``pbx serve``, using our own UDP client.

RFC 8760 digest with SHA-256:
SIPp 3.6 and baresip 1.0 only speak MD5, so the SHA-256 path is driven by ``DigestClient``:
the server offers one challenge per algorithm in its configured order, the client answers the
topmost it supports, and the registration succeeds; a user whose only HA1 is SHA-256 is offered
SHA-256 alone.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import time

import pytest

from pbx.sip import auth
from pbx.sip.message import Response, parse_message

from .pbxproc import DOMAIN, options_ping

pytestmark = pytest.mark.interop


def _register(sock: socket.socket, port: int, user: str, cseq: int, call_id: str,
              authorization: str | None = None, domain: str = DOMAIN) -> Response:
    lport = sock.getsockname()[1]
    lines = [f"REGISTER sip:{DOMAIN} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{lport};rport;branch=z9hG4bK{secrets.token_hex(6)}",
             "Max-Forwards: 70",
             f"From: <sip:{user}@{DOMAIN}>;tag=f{call_id[:6]}",
             f"To: <sip:{user}@{domain}>",
             f"Call-ID: {call_id}",
             f"CSeq: {cseq} REGISTER",
             f"Contact: <sip:{user}@127.0.0.1:{lport}>;expires=120"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    sock.sendto(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(),
                ("127.0.0.1", port))
    while True:
        msg = parse_message(sock.recv(65535))
        assert isinstance(msg, Response)
        if msg.status >= 200:
            return msg


def _login(port: int, user: str, password: str) -> tuple[list[str], str | None, int]:
    """(offered algorithms, the algorithm answered, final status)."""
    client = auth.DigestClient()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        call_id = secrets.token_hex(8)
        first = _register(sock, port, user, 1, call_id)
        assert first.status == 401, first.status
        challenges = [auth.parse_challenge(v) for v in first.headers.values("WWW-Authenticate")]
        offered = [c.algorithm or "MD5" for c in challenges]
        chosen = client.choose(challenges)
        assert chosen is not None
        value = client.authorize(chosen, "REGISTER", f"sip:{DOMAIN}", user, password,
                                 secrets.token_hex(8), 1)
        final = _register(sock, port, user, 2, call_id, value)
        return offered, chosen.algorithm, final.status


def test_sha256_offered_first_is_answered_and_accepted(pbx):
    server = pbx(users={"3001": "s3cret-3001"},
                 sip_extra={"auth_algorithms": ["SHA-256", "MD5"]})
    offered, used, status = _login(server.port, "3001", "s3cret-3001")
    assert offered == ["SHA-256", "MD5"]
    assert (used, status) == ("SHA-256", 200)
    # the wrong password under SHA-256 is refused, not accepted by an MD5 fallback
    _, used, status = _login(server.port, "3001", "wrong")
    assert (used, status) == ("SHA-256", 403)


def test_user_with_only_a_sha256_ha1_is_offered_sha256_alone(pbx, tmp_path):
    ha1 = hashlib.sha256(f"3002:{DOMAIN}:pw-3002".encode()).hexdigest()
    server = pbx(users={"3001": "s3cret-3001"}, extra_users={"3002": {"ha1_sha256": ha1}},
                 sip_extra={"auth_algorithms": ["MD5", "SHA-256"]})
    offered, used, status = _login(server.port, "3002", "pw-3002")
    assert (offered, used, status) == (["SHA-256"], "SHA-256", 200)
    offered, used, status = _login(server.port, "3001", "s3cret-3001")
    assert (offered, used, status) == (["MD5", "SHA-256"], "MD5", 200)


def test_register_for_a_foreign_domain_is_not_found(pbx):
    """§10.3 step 5: an AoR not valid for the domain of the Request-URI gets a 404."""
    server = pbx(users={"3001": "s3cret-3001"})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        resp = _register(sock, server.port, "3001", 1, secrets.token_hex(8),
                         domain="elsewhere.example")
        assert resp.status == 404
        resp = _register(sock, server.port, "nobody", 1, secrets.token_hex(8))
        assert resp.status == 404


def test_per_source_rate_limit_drops_a_flood_and_recovers(pbx):
    """An untrusted source sending far over ``rate_limit`` gets at most burst + rate x time
    answers; the server stays responsive and answers it again once it slows down."""
    server = pbx(sip_extra={"trusted": [], "rate_limit": 20})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        lport = sock.getsockname()[1]
        start = time.monotonic()
        for i in range(300):
            sock.sendto((f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                         f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKflood{i}\r\n"
                         f"From: <sip:f@127.0.0.1>;tag=f\r\nTo: <sip:{DOMAIN}>\r\n"
                         f"Call-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                         "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", server.port))
        sent_for = time.monotonic() - start
        sock.settimeout(0.5)
        answered = 0
        try:
            while True:
                sock.recv(65535)
                answered += 1
        except TimeoutError:
            pass
    # burst 40 (less the start-up probes, same address), plus what refills meanwhile
    assert 30 <= answered <= 40 + 20 * (sent_for + 0.5) + 1, (answered, sent_for)
    time.sleep(0.2)
    assert options_ping(server.port) == 200     # another port, same address: tokens are back
