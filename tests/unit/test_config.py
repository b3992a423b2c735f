"""Configuration loading: values, defaults, and errors that name the file, line and key."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

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
