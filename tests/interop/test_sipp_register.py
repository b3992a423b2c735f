"""Registrar acceptance with SIPp: digest success, wrong password, stale nonce recovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .pbxproc import DOMAIN, options_ping
from .sipp import SCENARIOS, SipMessage

pytestmark = pytest.mark.interop


def users_csv(path: Path, users: dict[str, str]) -> Path:
    """A SIPp injection file: user;domain;[authentication ...] (the whole keyword is a field,
    since SIPp does not expand [fieldN] inside [authentication])."""
    lines = ["SEQUENTIAL"]
    lines += [f"{u};{DOMAIN};[authentication username={u} password={p}]" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def responses(messages: list[SipMessage], method: str) -> list[SipMessage]:
    return [m for m in messages if m.direction == "received" and m.is_response
            and m.method == method]


def test_register_digest_success(pbx, run_sipp, tmp_path):
    users = {str(2001 + i): f"pw-{i}-secret" for i in range(10)}
    server = pbx(users=users)
    inf = users_csv(tmp_path / "users.csv", users)
    result = run_sipp("register", scenario=SCENARIOS / "register.xml",
                      remote=f"127.0.0.1:{server.port}", inf=inf, calls=len(users),
                      rate=20, timeout=20).wait()
    result.check(len(users))

    msgs = result.messages()
    challenges = [m for m in responses(msgs, "REGISTER") if m.status == 401]
    oks = [m for m in responses(msgs, "REGISTER") if m.status == 200]
    assert len(challenges) == len(users) and len(oks) == len(users), result.describe()
    for challenge in challenges:
        offers = challenge.headers("WWW-Authenticate")
        assert any(re.search(r"algorithm=\"?MD5\b", o, re.I) for o in offers), offers
        assert all(re.search(r"qop=\"?[^\"]*\bauth\b", o) for o in offers), offers
    # each 200 lists the binding just made: our Contact, with an expires no longer than asked
    sent = {m.call_id: m for m in msgs if m.direction == "sent" and m.header("Authorization")}
    assert len(sent) == len(users)
    for ok in oks:
        m = re.search(r"<([^>]+)>", sent[ok.call_id].header("Contact") or "")
        assert m is not None
        ours = m.group(1)
        listed = ", ".join(ok.headers("Contact"))
        assert ours in listed, f"200 does not list {ours}: {listed}"
        expires = [int(x) for x in re.findall(r"expires=(\d+)", listed)]
        assert expires and all(0 < e <= 600 for e in expires), listed


def test_register_wrong_password_forbidden(pbx, run_sipp, tmp_path):
    server = pbx(users={"1001": "right-password"})
    inf = users_csv(tmp_path / "users.csv", {"1001": "wrong-password"})
    result = run_sipp("register-403", scenario=SCENARIOS / "register_forbidden.xml",
                      remote=f"127.0.0.1:{server.port}", inf=inf, calls=1, timeout=15).wait()
    result.check(1)
    # and nothing was bound: a call to 1001 finds no contact
    assert options_ping(server.port, user="1001", timeout=2.0) == 480


def test_register_stale_nonce_recovered(pbx, run_sipp, tmp_path):
    server = pbx(users={"1001": "secret"}, nonce_ttl=1)
    inf = users_csv(tmp_path / "users.csv", {"1001": "secret"})
    result = run_sipp("register-stale", scenario=SCENARIOS / "register_stale.xml",
                      remote=f"127.0.0.1:{server.port}", inf=inf, calls=1, timeout=20).wait()
    result.check(1)   # the scenario itself checks the second 401 carried stale=true

    statuses = [m.status for m in responses(result.messages(), "REGISTER")
                if m.status is not None and m.status >= 200]
    assert statuses == [401, 200, 401, 200], result.describe()
    first, stale = [m for m in responses(result.messages(), "REGISTER") if m.status == 401]
    assert not any("stale=true" in v.replace('"', "").lower()
                   for v in first.headers("WWW-Authenticate"))
    assert any("stale=true" in v.replace('"', "").lower()
               for v in stale.headers("WWW-Authenticate"))


def test_unknown_user_404_unregistered_user_480(pbx):
    server = pbx(users={"1001": "secret"})
    assert options_ping(server.port, user="nobody-here", timeout=2.0) == 404
    assert options_ping(server.port, user="1001", timeout=2.0) == 480
    assert options_ping(server.port, timeout=2.0) == 200


def test_sigterm_stops_cleanly(pbx):
    server = pbx()
    assert server.alive()
    assert server.stop(grace=5.0) == 0, server.stderr()
