"""Configuration loading: values, defaults, and errors that name the file, line and key."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pbx.config import Config, Listen, load_config, parse_config
from pbx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.toml"

HEAD = """\
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "pbx.local"
"""


def _parse(text: str, path: str | Path = "t.toml") -> Config:
    return parse_config(text, path)


def _error(text: str, path: str | Path = "t.toml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    return info.value


# Valid configurations -----------------------------------------------------------------------------

def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = _parse(HEAD, tmp_path / "pbx.toml")
    sip = config.sip
    assert sip.listen == (Listen("udp", "127.0.0.1", 5060),)
    assert sip.domain == sip.realm == "pbx.local"
    assert (sip.t1, sip.t2, sip.t4) == (0.5, 4.0, 5.0)
    assert (sip.nonce_ttl, sip.min_expires, sip.max_expires, sip.default_expires) == (
        300, 60, 7200, 3600)
    assert sip.server_header == "pbx"
    assert sip.max_message_size == 65535
    assert sip.tls_cert is None and sip.tls_key is None
    assert config.store_path == tmp_path / "pbx.sqlite3"
    assert config.users == () and config.routes == ()
    assert (config.log_level, config.log_format) == ("warning", "text")


def test_demo_config_loads() -> None:
    config = load_config(DEMO)
    assert [str(x) for x in config.sip.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.sip.domain == "pbx.local"
    assert [u.user for u in config.users] == ["1001", "1002", "1003", "1004", "1005"]
    for u in config.users:
        secret = f"{u.user}:pbx.local:{u.user}pass".encode()
        assert u.ha1_md5 == hashlib.md5(secret).hexdigest()
        assert u.ha1_sha256 == hashlib.sha256(secret).hexdigest()
    assert config.store_path == DEMO.parent / "var" / "demo.sqlite3"
    assert config.store_path.is_absolute()
    (route,) = config.routes
    assert route.apply("uas") == "sip:uas@127.0.0.1:5090"
    assert route.apply("1001") is None
    assert DEMO.read_text().splitlines()[route.line - 1] == "[[routes]]"


def test_all_sip_keys() -> None:
    config = _parse("""\
[sip]
listen = ["udp:[::1]:5062", "TCP:localhost:5062", "tcp:0.0.0.0:5063"]
domain = "PBX.Example"
realm = "calls"
t1 = 1
t2 = 8.5
t4 = 6
nonce_ttl = 60
min_expires = 30
max_expires = 600
default_expires = 120
server_header = ""
max_message_size = 4096
[log]
level = "DEBUG"
format = "json"
[store]
path = "/var/lib/pbx/x.sqlite3"
""")
    sip = config.sip
    assert sip.listen == (Listen("udp", "::1", 5062), Listen("tcp", "127.0.0.1", 5062),
                          Listen("tcp", "0.0.0.0", 5063))
    assert [x.ipv6 for x in sip.listen] == [True, False, False]
    assert str(sip.listen[0]) == "udp:[::1]:5062"
    assert (sip.domain, sip.realm) == ("pbx.example", "calls")
    assert (sip.t1, sip.t2, sip.t4) == (1.0, 8.5, 6.0)
    assert isinstance(sip.t1, float)
    assert (sip.nonce_ttl, sip.min_expires, sip.max_expires, sip.default_expires) == (
        60, 30, 600, 120)
    assert sip.server_header == ""
    assert sip.max_message_size == 4096
    assert (config.log_level, config.log_format) == ("debug", "json")
    assert config.store_path == Path("/var/lib/pbx/x.sqlite3")


def test_ipv6_domain_is_bracketed() -> None:
    assert _parse(HEAD.replace('"pbx.local"', '"::1"')).sip.domain == "[::1]"


def test_password_is_hashed_with_realm_and_never_kept() -> None:
    config = _parse(HEAD + 'realm = "r"\n[[users]]\nuser = "alice"\npassword = "s3cret!"\n')
    (user,) = config.users
    assert user.ha1_md5 == hashlib.md5(b"alice:r:s3cret!").hexdigest()
    assert user.ha1_sha256 == hashlib.sha256(b"alice:r:s3cret!").hexdigest()
    assert "s3cret!" not in repr(config)
    assert "s3cret!" not in (user.user, user.ha1_md5, user.ha1_sha256)
    assert user.ha1_md5 not in repr(user)  # HA1 is password-equivalent: keep it out of logs


def test_ha1_values_are_kept_lower_case() -> None:
    md5 = "0123456789ABCDEF0123456789abcdef"
    sha = "ab" * 32
    head = HEAD.replace("[sip]\n", '[sip]\nauth_algorithms = ["SHA-256", "MD5"]\n')
    config = _parse(head + f'[[users]]\nuser = "a"\nha1 = "{md5}"\n'
                    f'[[users]]\nuser = "b"\nha1_sha256 = "{sha}"\n'
                    f'[[users]]\nuser = "c"\nha1 = "{md5}"\nha1_sha256 = "{sha}"\n')
    a, b, c = config.users
    assert (a.ha1_md5, a.ha1_sha256) == (md5.lower(), None)
    assert (b.ha1_md5, b.ha1_sha256) == (None, sha)
    assert (c.ha1_md5, c.ha1_sha256) == (md5.lower(), sha)


def test_auth_algorithms_and_max_contacts() -> None:
    sip = _parse(HEAD).sip
    assert (sip.auth_algorithms, sip.max_contacts) == (("MD5",), 10)
    head = HEAD + 'auth_algorithms = ["sha-256", "md5"]\nmax_contacts = 3\n'
    sip = _parse(head).sip
    assert (sip.auth_algorithms, sip.max_contacts) == (("SHA-256", "MD5"), 3)
    for bad in ('["SHA-512"]', '["MD5", "md5"]', "[]"):
        err = _error(HEAD + f"auth_algorithms = {bad}\n")
        assert (err.key, err.line) == ("sip.auth_algorithms", 4), err
    err = _error(HEAD + "max_contacts = 0\n")
    assert err.key == "sip.max_contacts"


def test_a_user_without_a_usable_ha1_is_refused() -> None:
    err = _error(HEAD + f'[[users]]\nuser = "b"\nha1_sha256 = "{"ab" * 32}"\n')
    assert (err.key, err.line) == ("users[0].ha1_sha256", 6), err
    assert "auth_algorithms" in str(err)


def test_users_as_inline_tables() -> None:
    config = _parse(HEAD.replace("[sip]", 'users = [{user = "a", password = "x"}]\n[sip]'))
    assert [u.user for u in config.users] == ["a"]


def test_routes_expand_groups_and_know_their_line() -> None:
    text = HEAD + r"""
[[routes]]
match = "^9(\\d+)$"
to = "sip:\\1@10.0.0.1:5070"

[[routes]]
match = '^(?P<ext>2\d\d)$'
to = 'sips:\g<ext>@trunk.example'
"""
    first, second = _parse(text).routes
    assert first.apply("90123") == "sip:0123@10.0.0.1:5070"
    assert first.apply("123") is None
    assert second.apply("201") == "sips:201@trunk.example"
    assert (first.line, second.line) == (5, 9)


@pytest.mark.filterwarnings("ignore:Possible nested set")
def test_route_lines_with_multiline_strings_use_the_locator() -> None:
    # The header-like line inside the multi-line regex must not be taken for a [[routes]] table.
    text = HEAD + '[[routes]]\nmatch = """^a\n[[routes]]\n"""\nto = "sip:a@h"\n' \
        '[[routes]]\nmatch = "b"\nto = "sip:b@h"\n'
    first, second = _parse(text).routes
    assert (first.line, second.line) == (4, 9)


@pytest.mark.filterwarnings("ignore:Possible nested set")
def test_inline_route_with_a_header_like_line_in_a_string() -> None:
    text = 'routes = [{match = """^a\n[[routes]]\n""", to = "sip:a@h"}]\n' + HEAD
    (route,) = _parse(text).routes
    assert route.line == 1


def test_crlf_line_endings() -> None:
    text = (HEAD + "[[users]]\nuser = \"a\"\n").replace("\n", "\r\n")
    err = _error(text)
    assert (err.line, err.key) == (4, "users[0].password")


def test_tls_files_are_resolved_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    config = _parse(HEAD.replace('"]', '", "tls:127.0.0.1:5061"]')
                    + 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n', tmp_path / "pbx.toml")
    assert config.sip.tls_cert == tmp_path / "cert.pem"
    assert config.sip.tls_key == tmp_path / "key.pem"
    assert config.sip.listen[1] == Listen("tls", "127.0.0.1", 5061)


def test_five_thousand_users_load_fast() -> None:
    users = "".join(f'[[users]]\nuser = "{10000 + i}"\npassword = "pw{i}"\n'
                    for i in range(5000))
    text = HEAD + users + '[[routes]]\nmatch = "^uas$"\nto = "sip:uas@127.0.0.1:5090"\n'
    start = time.perf_counter()
    config = _parse(text)
    elapsed = time.perf_counter() - start
    assert len(config.users) == 5000
    assert config.users[-1].user == "14999"
    assert config.routes[0].line == 4 + 3 * 5000
    assert elapsed < 1.0, f"5,000 users took {elapsed:.3f} s"


# Errors: file, line and key -----------------------------------------------------------------------

ERRORS = [
    # (text, line, key, words in the message)
    (HEAD + "[sipp]\nx = 1\n", 4, "sipp", "unknown key 'sipp' (did you mean 'sip'?)"),
    (HEAD + 'domian = "x"\n', 4, "sip.domian", "did you mean 'domain'?"),
    (HEAD + 't1 = "fast"\n', 4, "sip.t1", "expected a number, got a string"),
    (HEAD + "nonce_ttl = true\n", 4, "sip.nonce_ttl", "expected an integer, got a boolean"),
    (HEAD + "min_expires = 1.5\n", 4, "sip.min_expires", "expected an integer, got a number"),
    (HEAD + "t1 = 0\n", 4, "sip.t1", "must be > 0"),
    (HEAD + "t1 = -0.5\n", 4, "sip.t1", "must be > 0"),
    (HEAD + "t1 = 2.0\nt2 = 1.0\n", 5, "sip.t2", "must be >= t1"),
    (HEAD + "t4 = 0\n", 4, "sip.t4", "must be > 0"),
    (HEAD + "nonce_ttl = 0\n", 4, "sip.nonce_ttl", "between 1 and 86400"),
    (HEAD + "min_expires = 8000\n", 4, "sip.min_expires", "min_expires (8000) > max_expires"),
    (HEAD + "max_expires = 30\n", 4, "sip.max_expires", "min_expires (60) > max_expires (30)"),
    (HEAD + "default_expires = 10\n", 4, "sip.default_expires", "between 60 and 7200"),
    (HEAD + "max_message_size = 100\n", 4, "sip.max_message_size", "between 1500 and"),
    (HEAD + 'realm = "a\\"b"\n', 4, "sip.realm", "printable"),
    (HEAD + 'server_header = "pbx\\r\\nX: y"\n', 4, "sip.server_header", "printable"),
    ('[sip]\nlisten = ["udp:127.0.0.1:5060"]\n', 1, "sip.domain", "missing required key"),
    ('[sip]\ndomain = "d"\n', 1, "sip.listen", "missing required key 'listen'"),
    ('[sip]\nlisten = []\ndomain = "d"\n', 2, "sip.listen", "at least one listener"),
    ('[sip]\nlisten = "udp:127.0.0.1:5060"\ndomain = "d"\n', 2, "sip.listen",
     "expected an array, got a string"),
    ('[log]\nlevel = "info"\n', 1, "sip", "missing required key 'sip'"),
    (HEAD.replace("pbx.local", "bad host!"), 3, "sip.domain", "not a valid host name"),
    (HEAD.replace("udp:", "sctp:"), 2, "sip.listen[0]", "transport must be one of udp, tcp, tls"),
    (HEAD.replace(":5060", ":0"), 2, "sip.listen[0]", "port must be 1..65535"),
    (HEAD.replace(":5060", ":65536"), 2, "sip.listen[0]", "port must be 1..65535"),
    (HEAD.replace(":5060", ":50a"), 2, "sip.listen[0]", "port must be 1..65535"),
    (HEAD.replace(":5060", ""), 2, "sip.listen[0]", "expected transport:host:port"),
    (HEAD.replace("127.0.0.1:5060", "::1:5060"), 2, "sip.listen[0]", "IPv6 address in brackets"),
    (HEAD.replace("127.0.0.1:5060", "[::1:5060"), 2, "sip.listen[0]", "transport:host:port"),
    (HEAD.replace("127.0.0.1", "pbx.example.com"), 2, "sip.listen[0]",
     "host must be an IP address or 'localhost'"),
    (HEAD.replace("127.0.0.1", "300.1.1.1"), 2, "sip.listen[0]", "host must be an IP address"),
    (HEAD.replace('"udp:127.0.0.1:5060"', "5060"), 2, "sip.listen[0]",
     "expected a string, got an integer"),
    ('[sip]\nlisten = [\n  "udp:127.0.0.1:5060",  # first\n  "udp:127.0.0.1:5060",\n]\n'
     'domain = "d"\n', 4, "sip.listen[1]", "duplicate listener"),
    (HEAD.replace('"]', '", "tls:127.0.0.1:5061"]'), 1, "sip.tls_cert",
     "a tls listener needs tls_cert"),
    (HEAD + 'tls_cert = "/nonexistent/cert.pem"\n', 4, "sip.tls_cert", "no such file"),
    (HEAD + '[store]\npath = ""\n', 5, "store.path", "must not be empty"),
    (HEAD + "[store]\npath = 3\n", 5, "store.path", "expected a string"),
    (HEAD + '[store]\ndir = "x"\n', 5, "store.dir", "unknown key 'dir'"),
    (HEAD + '[log]\nlevel = "loud"\n', 5, "log.level", "debug, info, warning, error"),
    (HEAD + '[log]\nformat = "xml"\n', 5, "log.format", "text, json"),
    (HEAD + 'users = "1001"\n', 4, "sip.users", "unknown key 'users'"),
    ('users = "1001"\n' + HEAD, 1, "users", "expected an array, got a string"),
    (HEAD + '[users]\nuser = "1001"\n', 4, "users", "expected [[users]] tables"),
    ('users = [1]\n' + HEAD, 1, "users[0]", "expected a table, got an integer"),
    (HEAD + '[[users]]\nuser = "1"\npassword = "a"\n[[users]]\nuser = "2"\npassword = "b"\n'
     '[[users]]\nuser = "3"\n', 10, "users[2].password", "missing 'password'"),
    (HEAD + '[[users]]\nuser = "1"\npassword = "a"\n[[users]]\nuser = "2"\npassword = "b"\n'
     '[[users]]\nuser = "3"\npassword = ""\n', 12, "users[2].password", "must not be empty"),
    (HEAD + '[[users]]\npassword = "a"\n', 4, "users[0].user", "missing required key 'user'"),
    (HEAD + '[[users]]\nuser = 1001\npassword = "a"\n', 5, "users[0].user",
     "expected a string, got an integer"),
    (HEAD + '[[users]]\nuser = "1001"\npassword = "a"\n\n[[users]]\n# again\nuser = "1001"\n'
     'password = "b"\n', 10, "users[1].user", "duplicate user '1001'"),
    (HEAD + '[[users]]\nuser = "al ice"\npassword = "a"\n', 5, "users[0].user",
     "not a valid SIP user part"),
    (HEAD + '[[users]]\nuser = "alice@pbx"\npassword = "a"\n', 5, "users[0].user",
     "not a valid SIP user part"),
    (HEAD + '[[users]]\nuser = ""\npassword = "a"\n', 5, "users[0].user",
     "not a valid SIP user part"),
    (HEAD + '[[users]]\nuser = "a"\npasword = "a"\n', 6, "users[0].pasword",
     "did you mean 'password'?"),
    (HEAD + '[[users]]\nuser = "a"\nha1 = "abc"\n', 6, "users[0].ha1", "must be 32 hex digits"),
    (HEAD + '[[users]]\nuser = "a"\nha1 = "' + "g" * 32 + '"\n', 6, "users[0].ha1",
     "must be 32 hex digits"),
    (HEAD + '[[users]]\nuser = "a"\nha1_sha256 = "' + "0" * 32 + '"\n', 6,
     "users[0].ha1_sha256", "must be 64 hex digits"),
    (HEAD + '[[users]]\nuser = "a"\npassword = "x"\nha1 = "' + "0" * 32 + '"\n', 7,
     "users[0].ha1", "either password or ha1"),
    ('users = [\n  {user = "a", password = "x"},\n  {user = "b", pasword = "x"},\n]\n' + HEAD,
     3, "users[1].pasword", "unknown key 'pasword'"),
    ('users = [\n  {user = "a", password = "x"},\n  {user = "b"},\n]\n' + HEAD,
     3, "users[1].password", "missing 'password'"),
    (HEAD + '[[routes]]\nmatch = "^(uas$"\nto = "sip:uas@127.0.0.1"\n', 5, "routes[0].match",
     "bad regular expression: missing ), unterminated subpattern"),
    (HEAD + '[[routes]]\nmatch = "x"\nto = "tel:+123"\n', 6, "routes[0].to",
     "must be a sip: or sips: URI"),
    (HEAD + '[[routes]]\nmatch = "^(a)$"\nto = "sip:\\\\2@h"\n', 6, "routes[0].to",
     "group \\2 is not defined"),
    (HEAD + '[[routes]]\nmatch = "^(a)$"\nto = "sip:\\\\g<ext>@h"\n', 6, "routes[0].to",
     "group \\ext is not defined"),
    (HEAD + '[[routes]]\nmatch = "a"\nto = "sip:a@bad host"\n', 6, "routes[0].to",
     "not a valid URI"),
    (HEAD + '[[routes]]\nmatch = "a"\n', 4, "routes[0].to", "missing required key 'to'"),
    (HEAD + '[[routes]]\nmatch = "a"\nto = "sip:a@h"\nlabel = "x"\n', 7, "routes[0].label",
     "unknown key 'label'"),
    # A multi-line string holding a header-like line must not confuse the locator (the regex
    # itself is odd but valid; re warns about a possible nested set).
    pytest.param(
        HEAD + '[[routes]]\nmatch = """^a\n[[users]]\n"""\nto = "sip:a@h"\n'
        '[[users]]\nuser = "1"\npassword = "p"\n[[users]]\n\nuser = "1"\n', 14, "users[1].user",
        "duplicate user", marks=pytest.mark.filterwarnings("ignore:Possible nested set")),
    # Dotted keys and quoted keys.
    ('sip.listen = ["udp:127.0.0.1:5060"]\nsip.domain = "d"\nsip."t1" = 0\n', 3, "sip.t1",
     "must be > 0"),
    # TOML syntax errors carry tomllib's line, and the key on that line when there is one.
    (HEAD + 'realm = "unterminated\n', 4, "sip.realm", "TOML syntax error"),
    (HEAD + 'domain = "again"\n', 4, "sip.domain", "TOML syntax error"),
    ('[sip]\nlisten = ["udp:127.0.0.1:5060"\n', 2, "sip.listen", "TOML syntax error"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), ERRORS)
def test_errors_name_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    err = _error(text, "conf/pbx.toml")
    assert (err.path, err.line, err.key) == ("conf/pbx.toml", line, key), str(err)
    assert words in err.message
    assert str(err) == f"conf/pbx.toml:{line}: [{key}] {err.message}"


def test_syntax_error_without_a_key_still_has_a_line() -> None:
    err = _error(HEAD + "= 3\n")
    assert (err.line, err.key) == (4, None)
    assert "TOML syntax error" in err.message and "column 1" in err.message


def test_error_for_the_third_users_table_after_inline_arrays() -> None:
    text = HEAD.replace('["udp:127.0.0.1:5060"]', '[\n  "udp:127.0.0.1:5060",\n]') + (
        '[[users]]\nuser = "a"\npassword = "x"  # [[users]] in a comment\n'
        "[[users]]\nuser = 'b'\npassword = '''\nx'''\n"
        '[[users]]\nuser = "c"\nha1 = "nothex"\n')
    err = _error(text)
    assert (err.line, err.key) == (15, "users[2].ha1")


def test_load_config_reports_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.path == str(missing)
    assert "cannot read" in str(info.value)


def test_load_config_reports_invalid_utf8_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(HEAD.encode() + b'realm = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert (info.value.path, info.value.line) == (str(bad), 4)
    assert "UTF-8" in info.value.message


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    file = tmp_path / "pbx.toml"
    file.write_text(HEAD + '[store]\npath = "db/pbx.sqlite3"\n')
    config = load_config(file)
    assert config.path == file
    assert config.store_path == tmp_path / "db" / "pbx.sqlite3"


def test_rate_limit_key() -> None:
    assert _parse(HEAD).sip.rate_limit == 100.0
    assert _parse(HEAD + "rate_limit = 0\n").sip.rate_limit == 0.0
    err = _error(HEAD + "rate_limit = -1\n")
    assert (err.key, err.line) == ("sip.rate_limit", 4)


# [cdr] --------------------------------------------------------------------------------------------

def test_cdr_path_defaults_beside_the_store_and_is_relative_to_the_config(tmp_path: Path) -> None:
    assert _parse(HEAD, tmp_path / "pbx.toml").cdr_path == tmp_path / "cdr.sqlite3"
    config = _parse(HEAD + '[store]\npath = "db/pbx.sqlite3"\n', tmp_path / "pbx.toml")
    assert config.cdr_path == tmp_path / "db" / "cdr.sqlite3"
    config = _parse(HEAD + '[cdr]\npath = "records/calls.sqlite3"\n', tmp_path / "pbx.toml")
    assert config.cdr_path == tmp_path / "records" / "calls.sqlite3"
    assert config.store_path == tmp_path / "pbx.sqlite3"


CDR_ERRORS = [
    (HEAD + '[cdr]\npath = ""\n', 5, "cdr.path", "must not be empty"),
    (HEAD + "[cdr]\npath = 1\n", 5, "cdr.path", "expected a string, got an integer"),
    (HEAD + '[cdr]\npaht = "x"\n', 5, "cdr.paht", "did you mean 'path'?"),
    (HEAD + '[store]\npath = "a.sqlite3"\n[cdr]\npath = "./a.sqlite3"\n', 7, "cdr.path",
     "must differ from [store] path"),
    (HEAD + '[store]\npath = "cdr.sqlite3"\n', 5, "store.path", "set [cdr] path"),
    (HEAD + 'cdr = "x"\n', 4, "sip.cdr", "unknown key 'cdr'"),
    ('cdr = "x"\n' + HEAD, 1, "cdr", "expected a table, got a string"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), CDR_ERRORS)
def test_cdr_errors_name_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    err = _error(text, "conf/pbx.toml")
    assert (err.path, err.line, err.key) == ("conf/pbx.toml", line, key), str(err)
    assert words in err.message


# [admin] ------------------------------------------------------------------------------------------

TOKEN = "0123456789abcdef-all"
ACME = "acme-token-0123456789"


def test_admin_absent_is_none_and_defaults() -> None:
    assert _parse(HEAD).admin is None
    admin = _parse(HEAD + f'[admin]\ntoken = "{TOKEN}"\n').admin
    assert admin is not None
    assert (admin.host, admin.port, dict(admin.tokens)) == ("127.0.0.1", 8088, {TOKEN: None})


def test_admin_tenants_and_listen() -> None:
    config = _parse(HEAD + f'[admin]\nlisten = "[::1]:9000"\ntoken = "{TOKEN}"\n'
                    f'[[admin.tenants]]\nname = "acme"\ntoken = "{ACME}"\n'
                    '[[admin.tenants]]\nname = "acme"\ntoken = "acme-second-token-rotated"\n')
    admin = config.admin
    assert admin is not None
    assert (admin.host, admin.port) == ("::1", 9000)
    assert dict(admin.tokens) == {TOKEN: None, ACME: "acme",
                                  "acme-second-token-rotated": "acme"}
    assert TOKEN not in repr(config) and ACME not in repr(config)
    only = _parse(HEAD + '[admin]\nlisten = "localhost:8100"\n'
                  f'tenants = [{{name = "b", token = "{ACME}"}}]\n').admin
    assert only is not None
    assert (only.host, only.port, dict(only.tokens)) == ("127.0.0.1", 8100, {ACME: "b"})


ADMIN_ERRORS = [
    (HEAD + '[admin]\ntoken = "short"\n', 5, "admin.token", "at least 16 characters"),
    (HEAD + '[admin]\n', 4, "admin.token", "needs a token"),
    (HEAD + '[admin]\nlisten = "127.0.0.1:80"\n', 4, "admin.token", "needs a token"),
    (HEAD + '[admin]\ntoken = "0123456789 abcdef"\n', 5, "admin.token", "without spaces"),
    (HEAD + f'[admin]\ntoken = "{TOKEN}"\n[[admin.tenants]]\nname = "a"\ntoken = "{TOKEN}"\n',
     8, "admin.tenants[0].token", "given twice"),
    (HEAD + f'[admin]\n[[admin.tenants]]\nname = "a"\ntoken = "{ACME}"\n'
     '[[admin.tenants]]\nname = "b"\ntoken = "tiny"\n', 10, "admin.tenants[1].token",
     "at least 16"),
    (HEAD + f'[admin]\n[[admin.tenants]]\ntoken = "{ACME}"\n', 5, "admin.tenants[0].name",
     "missing required key 'name'"),
    (HEAD + f'[admin]\n[[admin.tenants]]\nname = "a b"\ntoken = "{ACME}"\n', 6,
     "admin.tenants[0].name", "not a tenant name"),
    (HEAD + f'[admin]\n[[admin.tenants]]\nname = "a"\ntoken = "{ACME}"\nrole = "x"\n', 8,
     "admin.tenants[0].role", "unknown key 'role'"),
    (HEAD + f'[admin.tenants]\nname = "a"\ntoken = "{ACME}"\n', 4, "admin.tenants",
     "expected [[admin.tenants]] tables"),
    (HEAD + f'[admin]\ntokn = "{TOKEN}"\n', 5, "admin.tokn", "did you mean 'token'?"),
    (HEAD + f'[admin]\ntoken = "{TOKEN}"\nlisten = "::1:8088"\n', 6, "admin.listen",
     "put an IPv6 address in brackets, as in '[::1]:8088'"),
    (HEAD + f'[admin]\ntoken = "{TOKEN}"\nlisten = "127.0.0.1"\n', 6, "admin.listen",
     "expected host:port"),
    (HEAD + f'[admin]\ntoken = "{TOKEN}"\nlisten = "127.0.0.1:0"\n', 6, "admin.listen",
     "port must be 1..65535"),
    (HEAD + f'[admin]\ntoken = "{TOKEN}"\nlisten = "admin.example:80"\n', 6, "admin.listen",
     "host must be an IP address"),
    (HEAD + 'admin = "on"\n', 4, "sip.admin", "unknown key 'admin'"),
    ('admin = "on"\n' + HEAD, 1, "admin", "expected a table, got a string"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), ADMIN_ERRORS)
def test_admin_errors(text: str, line: int, key: str, words: str) -> None:
    err = _error(text)
    assert (err.line, err.key) == (line, key), str(err)
    assert words in err.message
    assert TOKEN not in str(err) and ACME not in str(err)      # secrets stay out of errors/logs


# [[webhooks]] -------------------------------------------------------------------------------------

def test_webhooks() -> None:
    config = _parse(HEAD + '\n[[webhooks]]\nurl = "https://crm.example/hook?x=1"\n'
                    'secret = "s3cret"\nevents = ["call.*", "rule.matched"]\nname = "crm"\n'
                    'timeout = 2.5\n'
                    '[[webhooks]]\nurl = "http://[::1]:8080/events"\nsecret = "x"\n'
                    '[[webhooks]]\nurl = "http://127.0.0.1/all"\nsecret = "y"\nevents = ["*"]\n')
    crm, local, every = config.webhooks
    assert (crm.url, crm.secret, crm.events, crm.name, crm.timeout, crm.line) == (
        "https://crm.example/hook?x=1", "s3cret", ("call.*", "rule.matched"), "crm", 2.5, 5)
    assert (local.events, local.name, local.timeout, local.line) == (None, "", 10.0, 11)
    assert every.events == ("*",)
    assert "s3cret" not in repr(config)
    assert _parse(HEAD).webhooks == ()


WH = HEAD + '[[webhooks]]\nurl = "http://127.0.0.1/h"\nsecret = "s"\n'
WEBHOOK_ERRORS = [
    (HEAD + '[[webhooks]]\nurl = "ftp://x/h"\nsecret = "s"\n', 5, "webhooks[0].url",
     "http:// or https://"),
    (HEAD + '[[webhooks]]\nurl = "http:///h"\nsecret = "s"\n', 5, "webhooks[0].url", "no host"),
    (HEAD + '[[webhooks]]\nurl = "http://h:99999/"\nsecret = "s"\n', 5, "webhooks[0].url",
     "not a valid URL"),
    (HEAD + '[[webhooks]]\nurl = "http://h/a b"\nsecret = "s"\n', 5, "webhooks[0].url",
     "no spaces"),
    (HEAD + '[[webhooks]]\nsecret = "s"\n', 4, "webhooks[0].url", "missing required key 'url'"),
    (HEAD + '[[webhooks]]\nurl = "http://h/"\n', 4, "webhooks[0].secret",
     "missing required key 'secret'"),
    (HEAD + '[[webhooks]]\nurl = "http://h/"\nsecret = ""\n', 6, "webhooks[0].secret",
     "must not be empty"),
    (WH + 'events = ["call.endd"]\n', 7, "webhooks[0].events[0]",
     "unknown event kind 'call.endd' (did you mean 'call.ended'?"),
    (WH + 'events = ["call.ended",\n  "foo.*"]\n', 8, "webhooks[0].events[1]",
     "unknown event kind 'foo.*'"),
    (WH + "events = [1]\n", 7, "webhooks[0].events[0]", "expected a string"),
    (WH + "events = []\n", 7, "webhooks[0].events", "at least one event kind"),
    (WH + 'events = "call.*"\n', 7, "webhooks[0].events", "expected an array"),
    (WH + "timeout = 0\n", 7, "webhooks[0].timeout", "must be > 0"),
    (WH + 'name = "my hook"\n', 7, "webhooks[0].name", "not a webhook name"),
    (WH + 'secrt = "x"\n', 7, "webhooks[0].secrt", "did you mean 'secret'?"),
    (WH + '[[webhooks]]\nurl = "http://127.0.0.1/h"\nsecret = "t"\n', 8, "webhooks[1].url",
     "give each a distinct name"),
    (WH + 'name = "a"\n[[webhooks]]\nurl = "http://h/2"\nsecret = "t"\nname = "a"\n', 11,
     "webhooks[1].name", "both 'a'"),
    (HEAD + '[webhooks]\nurl = "http://h/"\n', 4, "webhooks", "expected [[webhooks]] tables"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), WEBHOOK_ERRORS)
def test_webhook_errors(text: str, line: int, key: str, words: str) -> None:
    err = _error(text)
    assert (err.line, err.key) == (line, key), str(err)
    assert words in err.message


# [[numbers]] and [[rules]] ------------------------------------------------------------------------

RULES = """
[[rules]]
name = "hours"
type = "hours"
timezone = "Asia/Shanghai"
holidays = [2026-10-01, "2026-10-02"]
special = { 2026-10-10 = ["09:00-18:00"] }
[rules.weekly]
mon = ["09:00-12:00", "13:00-18:00"]
fri = ["22:00-06:00"]

[[rules]]
name = "blocked"
type = "blacklist"
numbers = ["138*", "area:010", "+8613912345678", "13900139000-13900139099", "country:US"]
status = 603

[[rules]]
name = "staff"
type = "whitelist"
numbers = ["(415) 555-2671"]
country = "us"

[[rules]]
name = "vips"
type = "vip"
numbers = ["region:广东省"]
app = "dial:sip:vip@10.0.0.9:5060"

[[rules]]
name = "geo"
type = "region"
routes = { "北京市" = "north", "Guangzhou" = "south", "country:US" = "dial:1004" }
default = "menu"
"""


def sh(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_rules_are_parsed_into_schedules_and_number_lists() -> None:
    config = _parse(HEAD + RULES)
    hours, blocked, staff, vips, geo = config.rules
    assert [r.name for r in config.rules] == ["hours", "blocked", "staff", "vips", "geo"]
    assert [r.type for r in config.rules] == ["hours", "blacklist", "whitelist", "vip", "region"]
    assert [r.line for r in config.rules] == [5, 15, 21, 27, 33]
    assert hours.schedule is not None and hours.closed == 480
    assert hours.schedule.is_open(sh(2026, 11, 30, 9))            # Monday
    assert not hours.schedule.is_open(sh(2026, 11, 30, 12, 30))   # lunch
    assert hours.schedule.is_open(sh(2026, 12, 5, 5))             # Friday night into Saturday
    assert not hours.schedule.is_open(sh(2026, 10, 2, 5))         # after a holiday Thursday
    assert hours.schedule.is_open(sh(2026, 10, 10, 17))           # the special Saturday
    assert blocked.numbers is not None and blocked.status == 603
    assert [blocked.numbers.match(n) for n in ("13812345678", "01062345678", "13912345678",
                                               "13900139042", "+14155552671", "02083456789")] \
        == ["138*", "area:010", "+8613912345678", "13900139000-13900139099", "country:US", None]
    assert staff.numbers is not None and staff.status == 403
    assert staff.numbers.match("4155552671") == "(415) 555-2671"      # read as a US number
    assert vips.numbers is not None and vips.app == "dial:sip:vip@10.0.0.9:5060"
    assert vips.numbers.match("02083456789") == "region:广东省"
    assert dict(geo.routes) == {"北京市": "north", "Guangzhou": "south", "country:US": "dial:1004"}
    assert geo.default == "menu"


def test_hours_closed_may_name_an_app() -> None:
    text = HEAD + '[[rules]]\nname = "h"\ntype = "hours"\ntimezone = "UTC"\n' \
        'weekly = {}\nclosed = "dial:1005"\n'
    (rule,) = _parse(text).rules
    assert rule.closed == "dial:1005"
    assert rule.schedule is not None and not rule.schedule.is_open(sh(2026, 11, 30, 10))


NUMBERS = HEAD + RULES + """
[[numbers]]
number = "4001234567"
app = "hotline"
rules = ["hours", "blocked"]
tenant = "acme"
data = { line = "hotline", priority = 2, tags = ["a", "b"], extra = { vip = true } }

[[numbers]]
number = "800*"
app = "dial:1002"

[[numbers]]
match = "9(\\\\d+)"
app = "trunk"
rules = ["geo"]

[[numbers]]
number = "*"
app = "menu"
"""


def test_numbers() -> None:
    config = _parse(NUMBERS)
    hotline, free, trunk, rest = config.numbers
    assert (hotline.number, hotline.app, hotline.rules, hotline.tenant) == (
        "4001234567", "hotline", ("hours", "blocked"), "acme")
    assert hotline.data == {"line": "hotline", "priority": 2, "tags": ["a", "b"],
                            "extra": {"vip": True}}
    assert hotline.matches("4001234567")
    assert not hotline.matches("40012345678") and not hotline.matches("14001234567")
    assert (free.number, free.app, free.rules, free.tenant, free.data) == (
        "800*", "dial:1002", (), "", {})
    assert free.matches("8001234") and free.matches("800") and not free.matches("1800")
    assert (trunk.number, trunk.rules) == ("", ("geo",))
    assert trunk.matches("90123") and not trunk.matches("0123")
    assert not trunk.matches("190123") and not trunk.matches("9012x")   # the whole number
    assert not free.pattern.fullmatch("1800")           # usable as Pbx.route's compiled one
    assert hotline.pattern.fullmatch("4001234567") and free.pattern.fullmatch("8001")
    assert rest.matches("anything") and rest.matches("")
    lines = NUMBERS.splitlines()
    assert [lines[n.line - 1] for n in config.numbers] == ["[[numbers]]"] * 4
    assert config.numbers[0].line == 39


def test_demo_numbers_and_rules() -> None:
    config = load_config(DEMO)
    by_number = {n.number: n for n in config.numbers}
    hotline = by_number["4001234567"]
    assert (hotline.app, hotline.rules) == ("dial:1001", ("hours", "blocked"))
    rules = {r.name: r for r in config.rules}
    assert rules["hours"].type == "hours" and rules["blocked"].type == "blacklist"
    for number in hotline.rules + by_number["4001234568"].rules:
        assert number in rules
    text = DEMO.read_text().splitlines()
    assert all(text[r.line - 1] == "[[rules]]" for r in config.rules)


RULE = HEAD + '[[rules]]\nname = "r"\n'          # the rule's keys start at line 6
HOURS = RULE + 'type = "hours"\ntimezone = "Asia/Shanghai"\n'        # next key: line 8
LIST = RULE + 'type = "blacklist"\n'                                   # next key: line 7
NUM = HEAD + '[[rules]]\nname = "r1"\ntype = "blacklist"\nnumbers = ["138*"]\n' \
    '[[numbers]]\nnumber = "400"\napp = "a"\n'                          # next key: line 11

ROUTING_ERRORS = [
    # [[rules]]
    (HEAD + '[[rules]]\ntype = "hours"\n', 4, "rules[0].name", "missing required key 'name'"),
    (HEAD + '[[rules]]\nname = "a b"\ntype = "vip"\n', 5, "rules[0].name", "not a rule name"),
    (HEAD + '[[rules]]\nname = "r"\ntype = "blacklist"\nnumbers = ["1*"]\n'
     '[[rules]]\nname = "r"\ntype = "vip"\n', 9, "rules[1].name", "duplicate rule name 'r'"),
    (RULE, 4, "rules[0].type", "missing required key 'type'"),
    (RULE + 'typ = "vip"\n', 6, "rules[0].typ", "did you mean 'type'?"),
    (RULE + 'type = "hour"\n', 6, "rules[0].type",
     "unknown rule type 'hour' (did you mean 'hours'? one of hours, blacklist, whitelist, vip"),
    (RULE + 'type = "hours"\ntimezone = "UTC"\nweekly = {}\nnumbers = ["1"]\n', 9,
     "rules[0].numbers", "unknown key 'numbers'"),
    (HEAD + '[rules]\nname = "r"\n', 4, "rules", "expected [[rules]] tables"),
    ('rules = [1]\n' + HEAD, 1, "rules[0]", "expected a table, got an integer"),
    # hours
    (RULE + 'type = "hours"\nweekly = {}\n', 4, "rules[0].timezone", "missing required key"),
    (RULE + 'type = "hours"\ntimezone = "Mars/Olympus"\nweekly = {}\n', 7, "rules[0].timezone",
     "unknown time zone 'Mars/Olympus'"),
    (HOURS, 4, "rules[0].weekly", "missing required key 'weekly'"),
    (HOURS + 'weekly = { mon = ["09:00-18:00"], mo = ["09:00-12:00"] }\n', 8,
     "rules[0].weekly.mo", "unknown day 'mo'"),
    (HOURS + 'weekly = { mon = ["09:00-12:00",\n  "9-18"] }\n', 9, "rules[0].weekly.mon[1]",
     "not a time range HH:MM-HH:MM: '9-18'"),
    (HOURS + '[rules.weekly]\nmon = ["09:00-12:00"]\ntue = ["09:00-25:00"]\n', 10,
     "rules[0].weekly.tue[0]", "no such time"),
    (HOURS + '[rules.weekly]\nwed = ["09:00-09:00"]\n', 9, "rules[0].weekly.wed[0]",
     "empty range"),
    (HOURS + '[rules.weekly]\nwed = "09:00-18:00"\n', 9, "rules[0].weekly.wed",
     "expected an array"),
    (HOURS + '[rules.weekly]\nwed = [900]\n', 9, "rules[0].weekly.wed[0]",
     "expected a string"),
    (HOURS + 'weekly = {}\nholidays = ["2026-10-01", "2026-13-01"]\n', 9,
     "rules[0].holidays[1]", "not a date YYYY-MM-DD: '2026-13-01'"),
    (HOURS + 'weekly = {}\nholidays = [2026-10-01T10:00:00]\n', 9, "rules[0].holidays[0]",
     "not a date YYYY-MM-DD: datetime"),
    (HOURS + 'weekly = {}\nspecial = { "10/11" = ["09:00-18:00"] }\n', 9,
     'rules[0].special."10/11"', "not a date YYYY-MM-DD: '10/11'"),
    (HOURS + 'weekly = {}\n[rules.special]\n2026-10-11 = ["09:00-18:00", "x"]\n', 10,
     "rules[0].special.2026-10-11[1]", "not a time range"),
    (HOURS + 'weekly = {}\nclosed = 200\n', 9, "rules[0].closed", "between 400 and 699"),
    (HOURS + 'weekly = {}\nclosed = 4.8\n', 9, "rules[0].closed",
     "expected a status to reject with (400..699) or an app name, got a number"),
    (HOURS + 'weekly = {}\nclosed = "after hours"\n', 9, "rules[0].closed",
     "not an app name: 'after hours'"),
    # blacklist / whitelist / vip
    (LIST, 4, "rules[0].numbers", "missing required key 'numbers'"),
    (LIST + "numbers = []\n", 7, "rules[0].numbers", "at least one number"),
    (LIST + 'numbers = [\n  "138*",\n  "13a*",\n]\n', 9, "rules[0].numbers[1]",
     "bad prefix '13a*'"),
    (LIST + 'numbers = ["area:099"]\n', 7, "rules[0].numbers[0]", "unknown area code"),
    (LIST + 'numbers = ["area:10"]\n', 7, "rules[0].numbers[0]", "bad area code"),
    (LIST + 'numbers = ["100-99"]\n', 7, "rules[0].numbers[0]", "bad range"),
    (LIST + 'numbers = ["hello"]\n', 7, "rules[0].numbers[0]", "not a number, prefix, range"),
    (LIST + 'numbers = [138]\n', 7, "rules[0].numbers[0]", "expected a string"),
    (LIST + 'numbers = ["138*"]\nstatus = 200\n', 8, "rules[0].status", "between 400 and 699"),
    (LIST + 'numbers = ["138*"]\ncountry = "XX"\n', 8, "rules[0].country",
     "not a country code: 'XX'"),
    (LIST + 'numbers = ["138*"]\napp = "x"\n', 8, "rules[0].app", "unknown key 'app'"),
    (RULE + 'type = "whitelist"\nnumbers = ["138*"]\nstatus = "403"\n', 8, "rules[0].status",
     "expected an integer"),
    (RULE + 'type = "vip"\nnumbers = ["138*"]\n', 4, "rules[0].app",
     "missing required key 'app'"),
    (RULE + 'type = "vip"\nnumbers = ["138*"]\napp = "dial:"\n', 8, "rules[0].app",
     "'dial:' needs an extension or a sip: URI"),
    (RULE + 'type = "vip"\nnumbers = ["138*"]\napp = "dial:sip:a@bad host"\n', 8,
     "rules[0].app", "not a valid URI"),
    (RULE + 'type = "vip"\nnumbers = ["138*"]\nstatus = 486\n', 8, "rules[0].status",
     "unknown key 'status'"),
    # region
    (RULE + 'type = "region"\n', 4, "rules[0].routes", "missing required key 'routes'"),
    (RULE + 'type = "region"\nroutes = {}\n', 7, "rules[0].routes", "at least one region"),
    (RULE + 'type = "region"\nroutes = { "广东省" = "a", "北京" = "b" }\n', 7,
     'rules[0].routes."北京"', "no phone numbering plan names a place '北京' "
     "(did you mean '北京市'?)"),
    (RULE + 'type = "region"\n[rules.routes]\nAtlantis = "a"\n', 8, "rules[0].routes.Atlantis",
     "no phone numbering plan names a place 'Atlantis'"),
    (RULE + 'type = "region"\nroutes = { "country:USA" = "a" }\n', 7,
     'rules[0].routes."country:USA"', "bad country 'country:USA'"),
    (RULE + 'type = "region"\nroutes = { "北京市" = 1 }\n', 7, 'rules[0].routes."北京市"',
     "expected an app name (a string), got an integer"),
    (RULE + 'type = "region"\nroutes = { "北京市" = "a" }\ndefault = "b c"\n', 8,
     "rules[0].default", "not an app name"),
    # [[numbers]]
    (NUM + 'match = "^4"\n', 11, "numbers[0].match", "either number or match, not both"),
    (HEAD + '[[numbers]]\napp = "a"\n', 4, "numbers[0].number", "missing 'number'"),
    (HEAD + '[[numbers]]\nnumber = "400 123"\napp = "a"\n', 5, "numbers[0].number",
     "not a number or prefix: '400 123'"),
    (HEAD + '[[numbers]]\nnumber = ""\napp = "a"\n', 5, "numbers[0].number",
     "not a number or prefix"),
    (HEAD + '[[numbers]]\nnumber = 400\napp = "a"\n', 5, "numbers[0].number",
     "expected a string, got an integer"),
    (NUM + '[[numbers]]\nnumber = "400"\napp = "b"\n', 12, "numbers[1].number",
     "duplicate number '400'"),
    (HEAD + '[[numbers]]\nmatch = "^(4"\napp = "a"\n', 5, "numbers[0].match",
     "bad regular expression"),
    (HEAD + '[[numbers]]\nnumber = "400"\n', 4, "numbers[0].app", "missing required key 'app'"),
    (HEAD + '[[numbers]]\nnumber = "400"\napp = "hot line"\n', 6, "numbers[0].app",
     "not an app name: 'hot line'"),
    (HEAD + '[[numbers]]\nnumber = "400"\napp = "dial:10 01"\n', 6, "numbers[0].app",
     "'dial:' needs an extension"),
    (NUM + 'rules = ["r1", "r11"]\n', 11, "numbers[0].rules[1]",
     "no [[rules]] entry is named 'r11' (did you mean 'r1'?)"),
    (NUM + 'rules = [\n  "r1",\n  "r1",\n]\n', 13, "numbers[0].rules[1]", "listed twice"),
    (NUM + 'rules = [1]\n', 11, "numbers[0].rules[0]", "expected a rule name"),
    (NUM + 'rules = "r1"\n', 11, "numbers[0].rules", "expected an array"),
    (NUM + 'tenant = "a b"\n', 11, "numbers[0].tenant", "not a tenant name"),
    (NUM + 'data = { when = 2026-10-01 }\n', 11, "numbers[0].data.when",
     "call data must be JSON-like: write this date as a string"),
    (NUM + 'data = { a = [1, 07:30:00] }\n', 11, "numbers[0].data.a[1]", "JSON-like"),
    (NUM + 'data = "x"\n', 11, "numbers[0].data", "expected a table"),
    (NUM + 'rule = ["r1"]\n', 11, "numbers[0].rule", "did you mean 'rules'?"),
    (HEAD + '[numbers]\nnumber = "1"\n', 4, "numbers", "expected [[numbers]] tables"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), ROUTING_ERRORS)
def test_routing_errors(text: str, line: int, key: str, words: str) -> None:
    err = _error(text, "conf/pbx.toml")
    assert (err.path, err.line, err.key) == ("conf/pbx.toml", line, key), str(err)
    assert words in err.message


def test_routing_error_bases_are_valid() -> None:
    assert _parse(NUM).numbers[0].line == 8
    assert _parse(LIST + 'numbers = ["138*"]\n').rules[0].line == 4
    assert _parse(HOURS + "weekly = {}\n").rules[0].type == "hours"


def test_phone_number_data_loads_only_for_configs_with_rules(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(HEAD + f'[admin]\ntoken = "{TOKEN}"\n')
    code = ("import sys; from pbx.config import load_config\n"
            "for path in sys.argv[1:]:\n"
            "    load_config(path); print('phonenumbers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(plain), str(DEMO)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]      # phonenumbers takes ~0.25 s to import


def test_media_table() -> None:
    base = '[sip]\nlisten = ["udp:127.0.0.1:5060"]\ndomain = "d.test"\n'
    config = parse_config(base, "m.toml")
    assert (config.media.port_min, config.media.port_max, config.media.bind,
            config.media.rtp_timeout, config.media.session_expires) == (20000, 30000, None,
                                                                        30.0, 1800)
    config = parse_config(base + "[media]\nport_min = 40000\nport_max = 40099\nbind = "
                          '"127.0.0.2"\nrtp_timeout = 0\nsession_expires = 0\n', "m.toml")
    assert (config.media.port_min, config.media.port_max, config.media.bind,
            config.media.rtp_timeout, config.media.session_expires) == (40000, 40099,
                                                                        "127.0.0.2", 0.0, 0)
    for bad, key, line in (("port_max = 20001", "media.port_max", 6),
                           ('bind = "0.0.0.0"', "media.bind", 6),
                           ('bind = "pbx.example"', "media.bind", 6),
                           ("session_expires = 60", "media.session_expires", 6),
                           ("rtp_timeout = -1", "media.rtp_timeout", 6),
                           ("jitter = 1", "media.jitter", 6)):
        with pytest.raises(ConfigError) as info:
            parse_config(base + "[media]\n" + ("port_min = 20000\n" if "port_max" in bad
                                               else "\n") + bad + "\n", "m.toml")
        assert info.value.key == key and info.value.line == line, (bad, info.value)


def test_route_credentials() -> None:
    base = '[sip]\nlisten = ["udp:127.0.0.1:5060"]\ndomain = "d.test"\n[[routes]]\n' \
           'match = "^9(\\\\d+)$"\nto = "sip:\\\\1@trunk.test"\n'
    config = parse_config(base + 'username = "acct"\npassword = "pw"\n', "r.toml")
    route = config.routes[0]
    assert (route.username, route.password) == ("acct", "pw") and "pw" not in repr(route)
    assert parse_config(base, "r.toml").routes[0].username is None
    for extra, key in (('username = "acct"\n', "routes[0].password"),
                       ('password = "pw"\n', "routes[0].username"),
                       ('username = ""\npassword = "pw"\n', "routes[0].username")):
        with pytest.raises(ConfigError) as info:
            parse_config(base + extra, "r.toml")
        assert info.value.key == key, (extra, info.value)
