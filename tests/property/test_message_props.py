"""Properties of the SIP message layer.

* Generated messages, URIs, addresses and Vias survive serialize -> parse unchanged.
* Random bytes and mutated valid messages never make the parser (or the structured views of a
  message that parsed) raise anything but ``ParseError``; a message that parses re-serializes to
  one that parses to the same thing.
* A TCP stream of pipelined messages and keep-alives gives the same items however it is cut.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.sip._lex import quote
from pbx.sip.address import Address, parse_address
from pbx.sip.message import (
    MAX_CSEQ,
    CSeq,
    Headers,
    KeepAlive,
    Request,
    Response,
    StreamParser,
    parse_message,
)
from pbx.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri
from pbx.sip.via import Via, parse_via

# Sized so the whole module runs in well under 20 s; CI can raise them with a hypothesis profile.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STREAM = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-.!%*_+`'~"
LOWER_TOKEN_ALPHABET = string.ascii_lowercase + string.digits + "-.!%*_+`'~"

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=10)
lower_tokens = st.text(LOWER_TOKEN_ALPHABET, min_size=1, max_size=10)
# Any text a URI component may carry once escaped: every code point but surrogates; half the
# time drawn from the delimiters of the grammar, which is where escaping bugs live.
DELIMITERS = ';@:?&=%/,.<>"\\[]#+$ \t\x00\x7f\u00e9\u260e'
chars = st.one_of(st.sampled_from(DELIMITERS + "aZ0"), st.characters(blacklist_categories=("Cs",)))
any_text = st.one_of(st.text(st.sampled_from(DELIMITERS + "aZ0"), min_size=1, max_size=8),
                     st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12))
# Header-line text: no CR/LF, no other controls (HTAB is fine inside), no surrounding blanks.
line_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n")
line_text = st.text(st.one_of(line_chars, st.just("\t")), max_size=30).map(
    lambda s: s.strip(" \t"))

# -- URIs --------------------------------------------------------------------------------------

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
top_label = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda ls, top, dot: ".".join([*ls, top]) + dot,
                      st.lists(label, max_size=3), top_label, st.sampled_from(["", "", "", "."]))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6_refs = st.ip_addresses(v=6).map(lambda a: f"[{a.compressed}]")
hosts = st.one_of(hostnames, ipv4, ipv6_refs)
ports = st.one_of(st.none(), st.integers(1, 65535))


def lowered(d: dict[str, str | None]) -> dict[str, str | None]:
    return {k.lower(): v for k, v in d.items() if k.lower() == k}


uri_params = st.dictionaries(any_text, st.one_of(st.none(), any_text), max_size=3).map(lowered)
uri_headers = st.dictionaries(any_text, st.text(chars, max_size=8), max_size=2)


@st.composite
def sip_uris(draw: st.DrawFn, with_headers: bool = True) -> SipUri:
    user = draw(st.one_of(st.none(), any_text))
    password = draw(st.one_of(st.none(), st.text(chars, max_size=8))) if user is not None else None
    return SipUri(draw(hosts), user, draw(ports), draw(st.sampled_from(["sip", "sips"])),
                  password, draw(uri_params), draw(uri_headers) if with_headers else {})


tel_numbers = st.one_of(
    st.from_regex(r"\+[0-9]([0-9().-]{0,12}[0-9])?", fullmatch=True),
    st.from_regex(r"[0-9A-Fa-f*#][0-9A-Fa-f*#().-]{0,8}", fullmatch=True))
tel_params = st.dictionaries(st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True),
                             st.one_of(st.none(), any_text), max_size=3)
tel_uris = st.builds(TelUri, tel_numbers, tel_params)
absolute_uris = st.builds(
    AbsoluteUri,
    st.from_regex(r"[a-z][a-z0-9+.-]{0,8}", fullmatch=True).filter(
        lambda s: s not in ("sip", "sips", "tel")),
    st.text(st.sampled_from([chr(c) for c in range(0x21, 0x7F) if chr(c) not in '<>"']),
            min_size=1, max_size=20))
uris: st.SearchStrategy[Uri] = st.one_of(sip_uris(), sip_uris(), tel_uris, absolute_uris)
request_uris: st.SearchStrategy[Uri] = st.one_of(sip_uris(with_headers=False), tel_uris,
                                                 absolute_uris)

# -- header parameters, addresses, Vias --------------------------------------------------------

param_values = st.one_of(
    st.none(),
    st.text(TOKEN_ALPHABET + ":/", min_size=1, max_size=10),
    st.text(chars.filter(lambda c: c not in "\r\n"), max_size=10).map(quote),
    ipv6_refs,
)
header_params = st.dictionaries(lower_tokens, param_values, max_size=3)
display_names = st.one_of(st.none(), st.text(chars.filter(lambda c: c not in "\r\n"),
                                              max_size=15))


@st.composite
def addresses(draw: st.DrawFn, tag: bool = False) -> Address:
    params = draw(header_params)
    if tag:
        params["tag"] = draw(tokens)
    return Address(draw(uris), draw(display_names), params)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params = draw(st.dictionaries(
        lower_tokens.filter(lambda k: k not in ("received", "rport", "ttl", "maddr", "branch")),
        param_values, max_size=2))
    params["branch"] = "z9hG4bK" + draw(tokens)
    if draw(st.booleans()):
        params["rport"] = draw(st.one_of(st.none(), st.integers(1, 65535).map(str)))
    if draw(st.booleans()):
        params["received"] = draw(st.one_of(ipv4, ipv6_refs,
                                            st.ip_addresses(v=6).map(lambda a: a.compressed)))
    return Via(draw(tokens).upper(), draw(hosts), draw(ports), params)


# -- whole messages ----------------------------------------------------------------------------

methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER",
                                     "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "INFO"]), tokens)
call_ids = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~()<>:\\\"/[]?{}@",
                   min_size=1, max_size=20)
extra_headers = st.lists(st.tuples(
    st.one_of(tokens.map(lambda t: "X-" + t), st.sampled_from(["Subject", "User-Agent",
                                                              "Server", "Organization"])),
    line_text), max_size=4)


def joined(values: list[str], draw: st.DrawFn) -> list[str]:
    """Some list-header values on one line, comma-separated; the rest on lines of their own."""
    lines: list[str] = []
    for value in values:
        if lines and draw(st.booleans()):
            lines[-1] += draw(st.sampled_from([",", ", ", " ,\t"])) + value
        else:
            lines.append(value)
    return lines


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    is_request = draw(st.booleans())
    method = draw(methods)
    hop_list = draw(st.lists(vias(), min_size=1, max_size=3))
    contacts = draw(st.lists(addresses(), max_size=3))
    lines: list[tuple[str, str]] = [("Via", line) for line in joined([str(v) for v in hop_list],
                                                                     draw)]
    lines += [
        ("From", str(draw(addresses(tag=True)))),
        ("To", str(draw(addresses(tag=not is_request)))),
        ("Call-ID", draw(call_ids)),
        ("CSeq", f"{draw(st.integers(0, MAX_CSEQ))} {method}"),
    ]
    if draw(st.booleans()):
        lines.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    lines += [("Contact", line) for line in joined([str(c) for c in contacts], draw)]
    lines += draw(extra_headers)
    lines = draw(st.permutations(lines))
    compact = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m"}
    headers = Headers()
    for name, value in lines:
        headers.add(compact[name] if name in compact and draw(st.booleans()) else name, value)
    body = draw(st.binary(max_size=200))
    if is_request:
        return Request(method, draw(request_uris), headers, body)
    reason = draw(st.text(line_chars, max_size=20))
    return Response(draw(st.integers(100, 699)), reason, headers, body)


def touch_views(msg: Request | Response) -> None:
    """Use every structured view; only ParseError may come out."""
    msg.vias  # noqa: B018
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.cseq  # noqa: B018
    msg.contacts  # noqa: B018
    msg.call_id  # noqa: B018
    msg.top_via  # noqa: B018
    msg.content_type  # noqa: B018
    for name, _ in msg.headers:
        msg.headers.values(name)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@settings(FAST, max_examples=400)
@given(uris)
def test_uri_round_trip(uri: Uri) -> None:
    text = str(uri)
    assert parse_uri(text) == uri
    assert str(parse_uri(text)) == text


@settings(FAST, max_examples=400)
@given(addresses(tag=True))
def test_address_round_trip(addr: Address) -> None:
    assert parse_address(str(addr)) == addr


@settings(FAST, max_examples=400)
@given(vias())
def test_via_round_trip(via: Via) -> None:
    assert parse_via(str(via)) == via


@FAST
@given(messages())
def test_message_round_trip(msg: Request | Response) -> None:
    data = bytes(msg)
    parsed = parse_message(data)
    assert parsed == msg
    assert bytes(parsed) == data
    # The structured views agree with what was generated.
    assert parsed.cseq == CSeq(int((msg.headers.get("CSeq") or "").split()[0]),
                               (msg.headers.get("CSeq") or "").split()[1])
    assert [str(v) for v in parsed.vias] == [str(v) for v in msg.vias]
    assert parsed.from_ == parse_address(msg.headers.get("From") or "")
    assert parsed.contacts == msg.contacts


@settings(FAST, max_examples=60)
@given(messages(), st.data())
def test_folding_and_line_endings_do_not_change_the_message(msg: Request | Response,
                                                            data: st.DataObject) -> None:
    head, _, body = bytes(msg).partition(b"\r\n\r\n")
    start, *lines = head.split(b"\r\n")
    out = []
    for line in lines:
        # Fold at a single space between two non-blank characters (LWS means one SP).
        spots = [i for i in range(1, len(line) - 1)
                 if line[i] == 32 and line[i - 1] not in b" \t" and line[i + 1] not in b" \t"]
        if spots and data.draw(st.booleans()):
            i = data.draw(st.sampled_from(spots))
            fold = data.draw(st.sampled_from([b"\r\n ", b"\r\n\t", b"\r\n   "]))
            line = line[:i] + fold + line[i + 1 :]
        out.append(line)
    eol = data.draw(st.sampled_from([b"\r\n", b"\n"]))
    folded = eol.join([start, *out]).replace(b"\r\n", eol) + eol + eol + body
    assert parse_message(folded) == msg


# ---------------------------------------------------------------------------------------------
# Hostile input
# ---------------------------------------------------------------------------------------------


def parse_or_error(data: bytes) -> Request | Response | None:
    try:
        msg = parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status_hint < 600
        event(f"rejected: {exc.reason[:30]}")
        return None
    try:
        touch_views(msg)
    except ParseError:
        event("view rejected")
        return msg
    # What parsed re-serializes into something that parses to the same message.
    again = parse_message(bytes(msg))
    assert again == msg
    event("accepted")
    return msg


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    parse_or_error(data)


@FUZZ
@given(st.lists(st.sampled_from([
    b"INVITE sip:a@b SIP/2.0", b"SIP/2.0 200 OK", b"Via: SIP/2.0/UDP h;branch=z9hG4bK1",
    b"v: SIP/2.0/TCP [::1]:5060", b"From: <sip:a@b>;tag=1", b"f: a <sip:a@b>", b"To: sip:b@c",
    b"t: \"x\" <sip:b@c>;tag=2", b"Call-ID: 1", b"i: x@y", b"CSeq: 1 INVITE", b"CSeq: 2 BYE",
    b"Max-Forwards: 70", b"Contact: *", b"m: <sip:c@d>, <sip:e@f>", b"Content-Length: 3",
    b"l: 0", b" folded", b"\tfolded", b"", b"X: \"", b"X: \\", b"Route: <sip:r;lr>",
    b"Expires: 10", b"abc", b"\x00", b"\xff\xfe", b":", b"Via: ,", b"To: <>", b"\r"]),
    max_size=14), st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=5))
def test_random_header_soup(lines: list[bytes], eol: bytes, tail: bytes) -> None:
    parse_or_error(eol.join(lines) + eol + eol + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(bytes(draw(messages())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "dup_line",
                                   "drop_line", "byte"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "byte":
            data[pos] = draw(st.sampled_from(b"\r\n\t ;,:<>\"\\@[]%=\x00\x80"))
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            else:
                del lines[i]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(FUZZ, max_examples=120)
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    parse_or_error(data)


@FUZZ
@given(st.text(max_size=60))
def test_random_text_to_the_value_parsers(text: str) -> None:
    for parse in (parse_uri, parse_address, parse_via):
        try:
            parse(text)
        except ParseError:
            pass


# ---------------------------------------------------------------------------------------------
# Stream framing
# ---------------------------------------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn, max_messages: int = 4) -> tuple[bytes, list[Request | Response | KeepAlive]]:
    """Pipelined messages with runs of CRLF between them, and the items they must give."""
    data = b""
    expected: list[Request | Response | KeepAlive] = []
    for msg in draw(st.lists(messages(), min_size=1, max_size=max_messages)):
        crlfs = draw(st.integers(0, 5))
        data += b"\r\n" * crlfs
        expected += [KeepAlive()] * (crlfs // 2)  # a CRLFCRLF is a ping, a lone CRLF is ignored
        data += bytes(msg)
        expected.append(msg)
    crlfs = draw(st.integers(0, 4))
    data += b"\r\n" * crlfs
    expected += [KeepAlive()] * (crlfs // 2)
    return data, expected


@STREAM
@given(streams(), st.data())
def test_stream_splits(stream: tuple[bytes, list[Request | Response | KeepAlive]],
                       data: st.DataObject) -> None:
    raw, expected = stream
    whole = StreamParser().feed(raw)
    assert whole == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    parser = StreamParser()
    items = []
    last = 0
    for cut in [*cuts, len(raw)]:
        items.extend(parser.feed(raw[last:cut]))
        last = cut
    assert items == whole
    assert parser.pending in (0, 2)  # at most a lone CRLF left waiting to become a ping


@settings(STREAM, max_examples=20)
@given(streams(max_messages=2))
def test_stream_byte_at_a_time(stream: tuple[bytes, list[Request | Response | KeepAlive]]) -> None:
    raw, expected = stream
    parser = StreamParser()
    items = []
    for i in range(len(raw)):
        items.extend(parser.feed(raw[i : i + 1]))
    assert items == expected


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_stream_of_garbage_never_raises_anything_else(chunks: list[bytes]) -> None:
    parser = StreamParser(max_size=500)
    for chunk in chunks:
        try:
            items = parser.feed(chunk)
        except ParseError:
            return  # framing lost: the connection would be closed
        for item in items:
            assert isinstance(item, Request | Response | ParseError | KeepAlive)
            if isinstance(item, Request | Response):
                try:
                    touch_views(item)
                except ParseError:
                    pass
