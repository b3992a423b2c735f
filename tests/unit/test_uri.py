"""SIP, SIPS, tel and other URIs (RFC 3261 §19.1, RFC 3966, RFC 5118) and name-addr values."""

from __future__ import annotations

import pytest

from pbx.errors import ParseError
from pbx.sip._lex import quote, split_commas, unquote
from pbx.sip.address import Address, parse_address
from pbx.sip.uri import (
    AbsoluteUri,
    SipUri,
    TelUri,
    format_host,
    parse_host,
    parse_port,
    parse_uri,
)


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# ---------------------------------------------------------------------------------------------
# SIP and SIPS URIs
# ---------------------------------------------------------------------------------------------


def test_full_sip_uri() -> None:
    uri = sip("sips:alice:secret@Atlanta.Example.COM:5061;transport=TCP;lr;Maddr=239.255.255.1"
              "?subject=project%20x&priority=urgent")
    assert uri == SipUri("atlanta.example.com", "alice", 5061, "sips", "secret",
                         {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"},
                         {"subject": "project x", "priority": "urgent"})
    assert uri.transport == "tcp"
    assert str(uri) == ("sips:alice:secret@atlanta.example.com:5061;transport=TCP;lr;"
                        "maddr=239.255.255.1?subject=project%20x&priority=urgent")


@pytest.mark.parametrize(("text", "transport"), [
    ("sip:a@example.com", "udp"), ("sips:a@example.com", "tls"),
    ("sip:a@example.com;transport=WS", "ws"), ("SIP:a@example.com", "udp"),
    ("SIPS:a@example.com", "tls")])
def test_scheme_and_default_transport(text: str, transport: str) -> None:
    uri = sip(text)
    assert uri.scheme == text.split(":")[0].lower()
    assert uri.transport == transport


@pytest.mark.parametrize("text", [
    "sip:example.com", "sip:alice@example.com", "sip:alice:@example.com", "sip:+1-212-555-1212:1234@gateway.com;user=phone",
    "sip:alice@192.0.2.4", "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
    "sip:alice;day=tuesday@atlanta.com", "sip:[::1]", "sip:[::1]:5060;transport=tcp",
    "sip:user:pass@[2001:db8::1]:1234;transport=udp?foo=bar", "sip:host.example.com.",
    "sips:a%25b@example.com", "sip:a@example.com?Subject=", "sip:%E2%98%8E@example.com",
    "sip:x@example.com;maddr=[2001:db8::9]", "sip:x@1and1.example"])
def test_round_trip(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri
    assert str(parse_uri(str(uri))) == str(uri)


def test_escapes_are_decoded_and_reapplied_where_needed() -> None:
    uri = sip("sip:%61lice%20smith%3a%40%25@example.com;%6Cr;na%6De=v%61lue%3B")
    assert uri.user == "alice smith:@%"
    assert uri.params == {"lr": None, "name": "value;"}
    assert str(uri) == "sip:alice%20smith%3A%40%25@example.com;lr;name=value%3B"
    assert uri == sip("sip:alice%20smith%3A%40%25@example.com;lr;name=value%3B")
    assert sip("sip:%E2%98%8E@example.com").user == "\u260e"
    assert str(SipUri("example.com", "\u260e")) == "sip:%E2%98%8E@example.com"


@pytest.mark.parametrize("user", [
    "a b", "a@b", "a:b", "100%", "semi;colon=ok?/", "<>\"", "\x00", "ü", "\u260e", "a\\b"])
def test_any_user_round_trips(user: str) -> None:
    uri = SipUri("example.com", user, params={"p": user}, headers={"h": user})
    again = sip(str(uri))
    assert again == uri


@pytest.mark.parametrize("text", [
    "sip:a@example.com%", "sip:%4@example.com", "sip:%zz@example.com", "sip:%FF@example.com",
    "sip:a@example.com;p=%C3", "sip:a@example.com?h=%GG"])
def test_bad_escapes(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


@pytest.mark.parametrize("text", [
    "sip:", "sip:@example.com", "sip:a@", "sip:a@b@example.com", "sip:a b@example.com",
    "sip:a@example.com:", "sip:a@example.com:0", "sip:a@example.com:65536",
    "sip:a@example.com:123456", "sip:a@example.com:\u0665", "sip:a@example.com:-1",
    "sip:a@example.com;", "sip:a@example.com;;lr", "sip:a@example.com;=x",
    "sip:a@example.com;p=", "sip:a@example.com;p=1;P=2", "sip:a@example.com;a=b=c",
    "sip:a@example.com?", "sip:a@example.com?x", "sip:a@example.com?=1", "sip:a@example.com?a=1&a=2",
    "sip:a@exa mple.com", "sip:a@example.com>", "sip:<a>@example.com", 'sip:"a"@example.com',
    "sip:a@ex_ample.com", "sip:a@-example.com", "sip:a@example-.com", "sip:a@example..com",
    "sip:a@.example.com", "sip:a@example.com-", "sip:a@1.2.3", "sip:a@256.1.1.1",
    "sip:a@01.2.3.4", "sip:a@example.123", "sip:2001:db8::10", "sip:a@[2001:db8::10",
    "sip:a@[2001:db8::g]", "sip:a@[]", "sip:a@[::1]x", "sip:a@[::1%25eth0]",
    "sip:a@[1::2::3]", "sip:a@[2001:db8:::10]", "sip:a@example.com\t", "sip:a@ex\u00e4mple.com",
    "sip:a\x00@example.com", "sip:a@example.com;p=a b", "sip:a@example.com;p=\u00e9"])
def test_malformed_sip_uris(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


def test_too_long_uri_is_414() -> None:
    with pytest.raises(ParseError) as info:
        parse_uri("sip:" + "a" * 5000 + "@example.com")
    assert info.value.status_hint == 414
    assert sip("sip:" + "a" * 3000 + "@example.com").user == "a" * 3000


# ---------------------------------------------------------------------------------------------
# Hosts, IPv6 (RFC 5118), ports
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "host"), [
    ("Example.COM", "example.com"), ("a.b-c.d", "a.b-c.d"), ("localhost", "localhost"),
    ("example.com.", "example.com."), ("192.0.2.1", "192.0.2.1"), ("0.0.0.0", "0.0.0.0"),
    ("255.255.255.255", "255.255.255.255"), ("1.example", "1.example"),
    ("[2001:DB8:0:0:0:0:0:1]", "[2001:db8::1]"), ("[::1]", "[::1]"),
    ("[2001:db8::10:5070]", "[2001:db8::10:5070]"),  # RFC 5118 §4.3: no port in there
    ("[::ffff:192.0.2.10]", "[::ffff:c000:20a]"),  # §4.9
    ("[2001:db8:::192.0.2.1]", "[2001:db8::c000:201]"),  # §4.10, tolerated
    ("[:::192.0.2.1]", "[::c000:201]"),
])
def test_hosts_are_validated_and_normalized(text: str, host: str) -> None:
    assert parse_host(text) == host
    assert sip(f"sip:u@{text}").host == host


@pytest.mark.parametrize("text", [
    "", "[", "[]", "[::1", "::1", "[::1]]", "[2001:db8::1::2]", "[12345::]", "[::1%eth0]",
    "a_b.com", "-a.com", "a-.com", "a..com", ".", "..", "1.2.3.4.5", "1.2.3.256", "1.2.3",
    "192.168.001.001", "com.1", "a b", "a/b", "example.com-", "\u212aelvin.example.com",
    "\u0130.example.com", "ex\u00e4mple.com", "\uff11.2.3.4"])
def test_invalid_hosts(text: str) -> None:
    with pytest.raises(ParseError):
        parse_host(text)


def test_format_host_brackets_bare_ipv6_only() -> None:
    assert format_host("2001:db8::1") == "[2001:db8::1]"
    assert format_host("[2001:db8::1]") == "[2001:db8::1]"
    assert format_host("example.com") == "example.com"
    assert sip("sip:[2001:db8::1]:5060").host_bare == "2001:db8::1"


def test_ipv6_port_ambiguity_rfc5118() -> None:
    assert sip("sip:[2001:db8::10:5070]") == SipUri("[2001:db8::10:5070]")
    assert sip("sip:[2001:db8::10]:5070") == SipUri("[2001:db8::10]", port=5070)
    with pytest.raises(ParseError):
        parse_uri("sip:2001:db8::10")  # §4.2: an IPv6 address must be bracketed


@pytest.mark.parametrize(("text", "port"), [("1", 1), ("5060", 5060), ("65535", 65535),
                                            ("00080", 80)])
def test_ports_in_range(text: str, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "99999", "123456", "", "-1", "+1", "1.0",
                                  "\u00b9", "\u0661", " 1"])
def test_ports_out_of_range(text: str) -> None:
    with pytest.raises(ParseError):
        parse_port(text)


# ---------------------------------------------------------------------------------------------
# tel URIs (RFC 3966) and other schemes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "number", "params"), [
    ("tel:+1-201-555-0123", "+1-201-555-0123", {}),
    ("tel:7042;phone-context=example.com", "7042", {"phone-context": "example.com"}),
    ("tel:863-1234;phone-context=+1-914-555", "863-1234", {"phone-context": "+1-914-555"}),
    ("TEL:+1(201)555.0123;ext=22;isub=abc", "+1(201)555.0123", {"ext": "22", "isub": "abc"}),
    ("tel:*21#;phone-context=example.com", "*21#", {"phone-context": "example.com"}),
    ("tel:+358-555-1234567;postd=pp22", "+358-555-1234567", {"postd": "pp22"}),
    ("tel:+1234;Foo;bar=%41", "+1234", {"foo": None, "bar": "A"}),
])
def test_tel_uris(text: str, number: str, params: dict[str, str | None]) -> None:
    uri = parse_uri(text)
    assert uri == TelUri(number, params)
    assert isinstance(uri, TelUri) and uri.user == number
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", [
    "tel:", "tel:xyz", "tel:+", "tel:--", "tel:1 2", "tel:+1+2", "tel:+1;", "tel:+1;;a",
    "tel:+1;a=", "tel:+1;a=1;a=2", "tel:+1;a=b c", "tel:1@example.com"])
def test_malformed_tel_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


@pytest.mark.parametrize(("text", "scheme", "rest"), [
    ("mailto:alice@example.com", "mailto", "alice@example.com"),
    ("urn:service:sos", "urn", "service:sos"),
    ("HTTP://www.example.com/a?b=c", "http", "//www.example.com/a?b=c"),
    ("soap.beep://192.0.2.103:3002", "soap.beep", "//192.0.2.103:3002"),
    ("im:x+y-z.w@example.com", "im", "x+y-z.w@example.com"),
])
def test_other_schemes_are_opaque(text: str, scheme: str, rest: str) -> None:
    uri = parse_uri(text)
    assert uri == AbsoluteUri(scheme, rest)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", [
    "", ":", "nocolon", ":rest", "1abc:rest", "a_b:rest", "mailto:", "mailto:a b",
    "mailto:<a>", 'mailto:"a"', "mailto:caf\u00e9", "mailto:a\x7fb"])
def test_malformed_absolute_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


# ---------------------------------------------------------------------------------------------
# Comparison (RFC 3261 §19.1.4 examples)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:[2001:db8::1]", "sip:[2001:DB8:0::1]"),
])
def test_equivalent_uris(a: str, b: str) -> None:
    assert sip(a).matches(sip(b))
    assert sip(b).matches(sip(a))


@pytest.mark.parametrize(("a", "b"), [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:a@example.com", "sips:a@example.com"),
    ("sip:a:x@example.com", "sip:a:y@example.com"),
])
def test_different_uris(a: str, b: str) -> None:
    assert not sip(a).matches(sip(b))
    assert not sip(b).matches(sip(a))


def test_copy_is_deep_enough() -> None:
    uri = sip("sip:a@example.com;lr?x=1")
    dup = uri.copy()
    dup.params["transport"] = "tcp"
    dup.headers["y"] = "2"
    assert uri == sip("sip:a@example.com;lr?x=1")


def test_parse_results_are_fresh_objects() -> None:
    first = sip("sip:cache@example.com;lr")
    first.params["mutated"] = "yes"
    first.headers["h"] = "v"
    again = sip("sip:cache@example.com;lr")
    assert again.params == {"lr": None} and again.headers == {}
    tel = parse_uri("tel:+1;a=b")
    assert isinstance(tel, TelUri)
    tel.params.clear()
    assert parse_uri("tel:+1;a=b") == TelUri("+1", {"a": "b"})


# ---------------------------------------------------------------------------------------------
# name-addr / addr-spec
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "display", "uri", "params"), [
    ("<sip:a@example.com>", None, "sip:a@example.com", {}),
    ("sip:a@example.com", None, "sip:a@example.com", {}),
    ("sip:a@example.com;tag=x", None, "sip:a@example.com", {"tag": "x"}),
    ("<sip:a@example.com;tag=x>", None, "sip:a@example.com;tag=x", {}),
    ('"" <sip:a@example.com>', "", "sip:a@example.com", {}),
    ('"A \\"B\\" \\\\C" <sip:a@example.com>', 'A "B" \\C', "sip:a@example.com", {}),
    ("Alice  Liddell\t<sip:a@example.com>;Tag=1", "Alice Liddell", "sip:a@example.com",
     {"tag": "1"}),
    ("caller<sip:a@example.com>", "caller", "sip:a@example.com", {}),
    ('"x"<sip:a@example.com> ; q = 0.5 ; expires=60 ; +sip.instance="<urn:uuid:1>"', "x",
     "sip:a@example.com", {"q": "0.5", "expires": "60", "+sip.instance": '"<urn:uuid:1>"'}),
    ("  <tel:+1234>;user=phone  ", None, "tel:+1234", {"user": "phone"}),
    ("<urn:service:sos>", None, "urn:service:sos", {}),
    ("<sip:a@[2001:db8::1]>;received=[2001:db8::2]", None, "sip:a@[2001:db8::1]",
     {"received": "[2001:db8::2]"}),
    ('"Ünïcödé ☎" <sip:a@example.com>', "Ünïcödé ☎", "sip:a@example.com", {}),
])
def test_addresses(text: str, display: str | None, uri: str,
                   params: dict[str, str | None]) -> None:
    addr = parse_address(text)
    assert addr == Address(parse_uri(uri), display, params)
    assert parse_address(str(addr)) == addr


@pytest.mark.parametrize("text", [
    "", "   ", "<sip:a@example.com", "sip:a@example.com>", "< sip:a@example.com >",
    "<sip:a@example.com >", '"unterminated <sip:a@example.com>', '"a" "b" <sip:a@example.com>',
    '"a"', "Bell, Alexander <sip:a@example.com>", "a@b <sip:a@example.com>",
    "<sip:a@example.com> junk", "<sip:a@example.com>;", "<sip:a@example.com>;;tag=1",
    "<sip:a@example.com>;tag=1;TAG=2", "<sip:a@example.com>;tag=", "<sip:a@example.com>;=1",
    "sip:a@example.com?x=1", "sip:a@example.com,sip:b@example.com", "<<sip:a@example.com>>",
    "<sip:a@example.com><sip:b@example.com>", '"a\\', "<>", "*", "<sip:a@example.com>;a=\"b",
    '"a\x01b" <sip:a@example.com>', "<sip:a@example.com>;p=[::1"])
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(ParseError):
        parse_address(text)


@pytest.mark.parametrize("display", [
    "plain", 'quote " inside', "back\\slash", "", "\x00\x01\x7f", "tab\there", "ü ☎",
    "a\\\"b", "trailing\\"])
def test_display_names_round_trip(display: str) -> None:
    addr = Address(parse_uri("sip:a@example.com"), display, {"tag": "1"})
    assert parse_address(str(addr)) == addr


def test_display_names_cannot_break_a_header_line() -> None:
    addr = Address(parse_uri("sip:a@example.com"), "evil\r\nVia: SIP/2.0/UDP x\nmore")
    text = str(addr)
    assert "\r" not in text and "\n" not in text
    assert parse_address(text).display == "evil Via: SIP/2.0/UDP x more"


def test_with_tag() -> None:
    addr = parse_address("<sip:a@example.com>;x=1")
    tagged = addr.with_tag("abc")
    assert tagged.tag == "abc" and addr.tag is None
    assert str(tagged) == "<sip:a@example.com>;x=1;tag=abc"


def test_quoting_helpers() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert unquote('"a\\"b\\\\c"') == 'a"b\\c'
    assert unquote("token") == "token"
    assert quote("\x07") == '"\\\x07"'
    assert split_commas('a, "b,c" , <d,e>,, f') == ["a", '"b,c"', "<d,e>", "f"]
    assert split_commas("  ") == []
    with pytest.raises(ParseError):
        split_commas('a, "unterminated, b')
