"""Properties of the transfer pieces (RFC 3515, 3891, 3892, 3420).

* Replaces values, Refer-To values (with Replaces escaped into the URI, other URI headers and a
  display name) and sipfrag bodies survive format -> parse unchanged.
* The lenient reading of a Replaces left unescaped in the URI (as phones send it) gives the same
  target as the escaped form.
* Random and mutated text makes the parsers raise ``ParseError`` and nothing else; whatever
  parses formats back to a value that parses to the same thing.
* ``find_replaced`` finds exactly the dialog the Replaces names, seen from the recipient.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.sip.dialog import DialogId
from pbx.sip.refer import (
    ReferTarget,
    Replaces,
    find_replaced,
    parse_refer_to,
    parse_referred_by,
    parse_replaces,
    parse_sipfrag,
    refer_to_value,
    sipfrag,
)
from pbx.sip.uri import SipUri

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=10)
# Anything visible but ';' may be in a Call-ID as a Replaces header writes it.
CALL_ID_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ";")
call_ids = st.text(CALL_ID_ALPHABET, min_size=1, max_size=20)
replaces_values = st.builds(Replaces, call_ids, tokens, tokens, st.booleans())
# Text with no control characters (what a header or display name can hold), often delimiters.
DELIMITERS = ';@:?&=%/,.<>"\\[]#+$ \u00e9\u260e'
free_text = st.one_of(
    st.text(st.sampled_from(DELIMITERS + "aZ0"), max_size=8),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12))
hosts = st.sampled_from(["b.example", "10.0.0.2", "[2001:db8::1]", "pbx.local"])
params = st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6),
                         st.one_of(st.none(), tokens), max_size=3)
safe_headers = st.dictionaries(st.sampled_from(["Subject", "Priority", "X-Trace", "Alert-Info"]),
                               free_text, max_size=3)
sip_uris = st.builds(
    lambda user, host, port, scheme, p: SipUri(host, user, port, scheme, params=p),
    st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), min_size=1,
                                 max_size=10)),
    hosts, st.one_of(st.none(), st.integers(1, 65535)), st.sampled_from(["sip", "sips"]), params)


@FAST
@given(replaces_values)
def test_replaces_round_trips(replaces: Replaces) -> None:
    assert parse_replaces(str(replaces)) == replaces


@FAST
@given(sip_uris, safe_headers, st.one_of(st.none(), replaces_values),
       st.one_of(st.none(), free_text))
def test_refer_to_round_trips(uri: SipUri, headers: dict[str, str], replaces: Replaces | None,
                              display: str | None) -> None:
    with_headers = uri.copy()
    with_headers.headers.update(headers)
    value = refer_to_value(with_headers, replaces, display=display)
    assert parse_refer_to(value) == ReferTarget(uri, replaces, display, tuple(headers.items()))
    assert with_headers.headers == headers  # the caller's URI is not changed


# Call-IDs a phone can leave unescaped: no '%', quotes, angle brackets, '&', '=' or '?'.
RAW_CALL_ID = string.ascii_letters + string.digits + "-.!*_+`'~()@:/[]{}"


@FAST
@given(st.text(RAW_CALL_ID, min_size=1, max_size=20), tokens, tokens, st.booleans())
def test_unescaped_replaces_reads_like_the_escaped_one(call_id: str, to_tag: str,
                                                       from_tag: str, early: bool) -> None:
    assume("%" not in to_tag + from_tag)
    replaces = Replaces(call_id, to_tag, from_tag, early)
    uri = SipUri("b.example", "bob")
    escaped = parse_refer_to(refer_to_value(uri, replaces))
    raw = parse_refer_to(f"<sip:bob@b.example?Replaces={replaces}>")
    assert raw == escaped == ReferTarget(uri, replaces)


def mutate(text: str, data: st.DataObject) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        c = data.draw(st.one_of(st.sampled_from(DELIMITERS + "\x00\r\n\t%3B%40"),
                                st.characters(blacklist_categories=("Cs",))))
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + c + text[i + 1 :]
    return text


REFER_TOS = [
    "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D"
    "5FFE-3994>",
    '"Bob" <sips:bob@b.example;transport=tcp?Replaces=a@h;to-tag=1;from-tag=2;early-only>;x=y',
    "<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net&Call-ID%3D55432"
    "%40alicepc.atlanta.example.com>",
    "sip:alice@atlanta.example.com", "<tel:+861012345678>", "http://www.ietf.org",
]


def check_refer_to(text: str) -> None:
    """Parse; if it parses, its formatted form parses to the same target."""
    try:
        target = parse_refer_to(text)
    except ParseError:
        return
    uri = target.uri
    if isinstance(uri, SipUri):
        names = [name.lower() for name, _ in target.headers]
        assume(len(set(names)) == len(names))
        uri = uri.copy()
        uri.headers.update(target.headers)
    elif target.replaces is not None or target.headers:
        raise AssertionError("headers on a non-SIP URI")
    again = parse_refer_to(refer_to_value(uri, target.replaces, display=target.display))
    assert again == target


@FUZZ
@given(st.sampled_from(REFER_TOS), st.data())
def test_mutated_refer_to_raises_only_parse_error(value: str, data: st.DataObject) -> None:
    check_refer_to(mutate(value, data))


@FUZZ
@given(st.one_of(st.text(max_size=60), st.text(st.sampled_from(DELIMITERS + "<>sip:a%3B"),
                                                max_size=60)))
def test_random_text_raises_only_parse_error(text: str) -> None:
    check_refer_to(text)
    for parse in (parse_replaces, parse_referred_by):
        try:
            parse(text)
        except ParseError:
            pass


@FUZZ
@given(st.one_of(st.binary(max_size=60), st.sampled_from([b"SIP/2.0 200 OK\r\n",
                                                          b"SIP/2.0 100 Trying"]),
                 st.binary(max_size=30).map(lambda b: b"SIP/2.0 " + b)))
def test_sipfrag_parse_raises_only_parse_error(body: bytes) -> None:
    try:
        status = parse_sipfrag(body)
    except ParseError:
        return
    assert 100 <= status <= 699


@FAST
@given(st.integers(100, 699),
       st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                                  blacklist_characters="\x85\u2028\u2029"),
                                    max_size=30)))
def test_sipfrag_round_trips(status: int, reason: str | None) -> None:
    body = sipfrag(status, reason)
    assert body.endswith(b"\r\n") and body.count(b"\n") == 1
    assert parse_sipfrag(body) == status
    assert parse_sipfrag(body + b"Content-Type: text/plain\r\n\r\n") == status


# -- matching ----------------------------------------------------------------------------------

small = st.sampled_from(["a", "b", "0", ""])
dialog_ids = st.builds(DialogId, st.sampled_from(["c1", "c2"]), small, small)


@FAST
@given(st.dictionaries(dialog_ids, st.integers(), max_size=12), st.sampled_from(["c1", "c2"]),
       st.sampled_from(["a", "b", "0"]), st.sampled_from(["a", "b", "0"]))
def test_find_replaced_finds_exactly_the_named_dialog(dialogs: dict[DialogId, int], call_id: str,
                                                      to_tag: str, from_tag: str) -> None:
    replaces = Replaces(call_id, to_tag, from_tag)
    found = find_replaced(replaces, dialogs)
    # Exact first, then with a "0" read as a missing tag (local before remote).
    candidates = [DialogId(call_id, local, remote)
                  for local in [to_tag, *([""] if to_tag == "0" else [])]
                  for remote in [from_tag, *([""] if from_tag == "0" else [])]]
    expected = next(((key, dialogs[key]) for key in candidates if key in dialogs), None)
    assert found == expected
    if found is not None:
        key = found[0]
        assert key.call_id == call_id
        assert key.local_tag in (to_tag, "") and key.remote_tag in (from_tag, "")


@FAST
@given(st.builds(DialogId, call_ids, st.one_of(st.just(""), tokens), st.one_of(st.just(""),
                                                                                 tokens)))
def test_targeting_is_what_the_peer_finds(ours: DialogId) -> None:
    peer_view = DialogId(ours.call_id, ours.remote_tag, ours.local_tag)
    replaces = parse_replaces(str(Replaces.targeting(ours)))
    assert find_replaced(replaces, {peer_view: "x"}) == (peer_view, "x")
