"""Properties of SDP and offer/answer.

* Generated session descriptions survive serialize -> parse unchanged.
* Random bytes, random SDP-shaped lines and mutated real descriptions never make the parser raise
  anything but ``ParseError``; what parses has accessors that do not fail, re-serializes to
  itself, and can be answered (same m-line count, at most one stream taken, only offered
  formats) without any exception; checking it as an answer raises only ``ParseError``.
* Two generated endpoints, one offering and one answering, agree on what each sends and receives.
* ``next_version`` keeps the origin and bumps the version exactly when the content changed.
"""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.errors import ParseError
from pbx.sip.offer_answer import (
    Codec,
    LocalMedia,
    OfferAnswerError,
    answer,
    build_offer,
    negotiate,
    negotiate_all,
    next_version,
)
from pbx.sip.sdp import (
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    is_rtp_proto,
    parse_sdp,
)

# The real peers' descriptions live next to the unit tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import sdp_samples

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_ALPHABET = string.ascii_letters + string.digits + "!#$%&'*+-.^_`{|}~"
CHECKED = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp"}

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=8)
# Line text: any code point but surrogates and control characters (HTAB allowed inside).
_chars = st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.just("\t"),
                   st.sampled_from(" :/=-"))
text = st.text(_chars, max_size=16).map(lambda s: s.rstrip(" \t"))
nonspace = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=" "),
                   min_size=1, max_size=12)
numbers = st.integers(0, 10**20 - 1)

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda ls, top: ".".join([*ls, top]), st.lists(label, max_size=2),
                      st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True))
connections = st.one_of(
    st.builds(lambda a: Connection("IN", "IP4", str(a)), st.ip_addresses(v=4)),
    st.builds(lambda a: Connection("IN", "IP6", str(a)), st.ip_addresses(v=6)),
    st.builds(lambda h, t: Connection("IN", t, h), hostnames, st.sampled_from(["IP4", "IP6"])),
    st.builds(lambda a, ttl: Connection("IN", "IP4", f"{a}/{ttl}"),
              st.ip_addresses(v=4, network="224.0.0.0/4"), st.integers(0, 255)),
    st.builds(Connection, st.sampled_from(["ATM", "TN", "X-NET"]), tokens, nonspace),
)
bandwidths = st.builds(Bandwidth, tokens, numbers)
timings = st.builds(Timing, numbers, numbers, st.lists(text, max_size=2))
origins = st.builds(Origin, nonspace, nonspace.filter(lambda s: len(s) <= 64),
                    st.integers(0, 2**63 - 1), tokens, tokens, nonspace)
free_attributes = st.tuples(tokens.filter(lambda n: n.lower() not in CHECKED),
                            st.one_of(st.none(), text))
rtpmaps = st.builds(RtpMap, st.integers(0, 127), st.text(TOKEN_ALPHABET, min_size=1, max_size=8),
                    st.integers(1, 10**9), st.one_of(st.none(), st.integers(0, 999)))
checked_attributes = st.one_of(
    st.builds(lambda r: ("rtpmap", str(r)), rtpmaps),
    st.builds(lambda f, p: ("fmtp", f"{f} {p}".rstrip()), tokens, text),
    st.builds(lambda n, t: (n, str(t)), st.sampled_from(["ptime", "maxptime"]),
              st.integers(0, 999999)),
    st.builds(lambda p, c: ("rtcp", f"{p} {c}" if c else str(p)), st.integers(0, 65535),
              st.one_of(st.none(), connections)),
)
media_attributes = st.lists(st.one_of(free_attributes, checked_attributes), max_size=6)
RTP_PROTOS = ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]
protos = st.one_of(st.sampled_from(RTP_PROTOS),
                   st.builds(lambda ts: "/".join(ts), st.lists(tokens, min_size=1, max_size=3))
                   .filter(lambda p: not is_rtp_proto(p)))


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    proto = draw(protos)
    port = draw(st.one_of(st.just(0), st.integers(0, 65535)))
    fmt = (st.integers(0, 127).map(str) if is_rtp_proto(proto) else tokens)
    formats = draw(st.lists(fmt, min_size=0 if port == 0 else 1, max_size=5))
    return MediaDescription(
        media=draw(tokens), port=port, proto=proto, formats=formats,
        port_count=draw(st.one_of(st.none(), st.integers(1, 65535))),
        information=draw(st.one_of(st.none(), text)),
        connection=draw(st.one_of(st.none(), connections)),
        bandwidths=draw(st.lists(bandwidths, max_size=2)),
        key=draw(st.one_of(st.none(), text)), attributes=draw(media_attributes))


@st.composite
def descriptions(draw: st.DrawFn) -> SessionDescription:
    sdp = SessionDescription(
        origin=draw(origins), session_name=draw(text.filter(bool)),
        connection=draw(st.one_of(st.none(), connections)),
        media=draw(st.lists(media_descriptions(), max_size=4)),
        attributes=draw(st.lists(free_attributes, max_size=4)),
        bandwidths=draw(st.lists(bandwidths, max_size=2)),
        timing=draw(st.lists(timings, min_size=1, max_size=2)),
        information=draw(st.one_of(st.none(), text)), uri=draw(st.one_of(st.none(), text)),
        emails=draw(st.lists(text, max_size=2)), phones=draw(st.lists(text, max_size=2)),
        zone=draw(st.one_of(st.none(), text)), key=draw(st.one_of(st.none(), text)))
    if sdp.connection is None:
        for m in sdp.media:
            if m.port != 0 and m.connection is None:
                m.connection = draw(connections)
    return sdp


@FAST
@given(descriptions())
def test_serialize_then_parse_is_identity(sdp: SessionDescription) -> None:
    data = bytes(sdp)
    assert parse_sdp(data) == sdp
    assert parse_sdp(str(sdp)) == sdp
    assert parse_sdp(data.replace(b"\r\n", b"\n")) == sdp


# -- hostile input ---------------------------------------------------------------------------------

PCMU = Codec("PCMU", 8000, 1, 0)
PCMA = Codec("PCMA", 8000, 1, 8)
G722 = Codec("G722", 8000, 1, 9)
OPUS = Codec("opus", 48000, 2, None, "useinbandfec=1")
L16 = Codec("L16", 16000)
G729 = Codec("G729", 8000, 1, 18)
CN = Codec("CN", 8000, 1, 13)
ANSWERER = LocalMedia("192.0.2.1", 4000, (OPUS, G722, PCMU, PCMA, CN),
                      telephone_event=(8000, 48000), rtcp_mux=True)
OFFERER_SDP = build_offer(ANSWERER, session_id=1)


def check_parsed(sdp: SessionDescription) -> None:
    """What parsed must be usable: accessors, re-serialization, answering, negotiating."""
    _ = (sdp.direction, sdp.ptime, sdp.maxptime)
    for m in sdp.media:
        _ = (m.rtpmaps(), m.fmtps(), m.ptime, m.maxptime, m.rtcp, m.rtcp_mux, m.is_rtp,
             sdp.direction_of(m), sdp.connection_for(m), [m.codec(f) for f in m.formats])
    assert parse_sdp(bytes(sdp)) == sdp
    reply, results = answer(sdp, ANSWERER)
    assert len(reply.media) == len(results) == len(sdp.media)
    assert [m.media for m in reply.media] == [m.media for m in sdp.media]
    assert sum(r is not None for r in results) <= 1
    for offered, answered, result in zip(sdp.media, reply.media, results, strict=True):
        if result is None:
            assert answered.port == 0
        else:
            assert set(answered.formats) <= {str(int(f)) for f in offered.formats}
            assert result.send_codec.payload_type in result.receive_payload_types
    assert parse_sdp(bytes(reply)) == reply
    for offer in (sdp, OFFERER_SDP):
        try:
            negotiate_all(offer, sdp)
        except ParseError:
            pass


def parse_or_none(data: bytes | str) -> SessionDescription | None:
    try:
        return parse_sdp(data)
    except ParseError as e:
        assert e.reason and e.status_hint in (400, 413)
        return None


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_parse_error(data: bytes) -> None:
    sdp = parse_or_none(data)
    if sdp is not None:
        check_parsed(sdp)


PLAUSIBLE = ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
             "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 telephone-event/48000", "a=sendonly",
             "a=recvonly", "a=inactive", "a=rtcp-mux", "a=ptime:20", "a=maxptime:40",
             "a=rtcp:4001", "a=rtcp:4001 IN IP6 ::1", "c=IN IP4 0.0.0.0", "c=IN IP6 ::1",
             "b=AS:64", "i=info", "k=clear:x", "m=audio 4000 RTP/AVP 0 8 101 96 97",
             "m=audio 0 RTP/AVP 0", "m=video 4002 RTP/AVP 96", "m=audio 4004 RTP/SAVP 0",
             "m=image 4006 udptl t38", "m=audio 4008 RTP/AVPF 96 97"]
sdp_lines = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.builds(lambda kind, value: f"{kind}={value}", st.sampled_from("vosiuepcbtrzkam"), text))


@FUZZ
@given(st.lists(sdp_lines, max_size=20), st.sampled_from(["\r\n", "\n"]))
def test_random_sdp_shaped_lines_raise_only_parse_error(lines: list[str], eol: str) -> None:
    head = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
            "m=audio 4000 RTP/AVP 0 8 101"]
    sdp = parse_or_none(eol.join(head + lines) + eol)
    if sdp is not None:
        check_parsed(sdp)


SEEDS = list(sdp_samples.ALL.values())
WEIRD = [b"", b"0", b"-1", b"99999999999999999999999", b":", b"/", b" ", b"\t", b"=", b"a=",
         b"0.0.0.0", b"::", b"IN IP6 ::1", b"RTP/AVP", b"\r", b"\x00", b"\xff", b"\r\nm=audio 0 x",
         b"\r\nt=0 0", b"\r\nc=IN IP4 1.2.3.4", b"rtpmap:96 x/0", b"telephone-event/0", b"\xc3"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real description with a few edits: mostly ones that keep the line structure (numbers,
    attribute values, whole lines), sometimes raw octets."""
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        lines = data.split(b"\r\n")
        j = draw(st.integers(0, len(lines) - 1))
        k = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["number", "number", "value", "drop", "copy", "move", "octet",
                                   "insert"]))
        if op == "number":  # another number where there was one: ports, PTs, rates, versions
            runs = list(re.finditer(rb"[0-9]+", data))
            if runs:
                run = draw(st.sampled_from(runs))
                new = draw(st.sampled_from([b"0", b"1", b"127", b"128", b"65535", b"65536",
                                            b"8000", b"99999999999999999999999", b"00", b""]))
                data = data[:run.start()] + new + data[run.end():]
            continue
        if op == "value":  # keep the type letter (and attribute name), change the rest
            line = lines[j]
            cut = line.find(b":") + 1 if line.startswith(b"a=") and b":" in line else 2
            lines[j] = line[:cut] + draw(st.sampled_from(WEIRD))
        elif op == "drop":
            del lines[j]
        elif op == "copy":
            lines.insert(k, lines[j])
        elif op == "move":
            lines.insert(k, lines.pop(j))
        elif op == "octet" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
            continue
        else:
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.sampled_from(WEIRD)) + data[i:]
            continue
        data = b"\r\n".join(lines)
    return data


@FUZZ
@given(mutated())
def test_mutated_real_descriptions_raise_only_parse_error(data: bytes) -> None:
    sdp = parse_or_none(data)
    if sdp is not None:
        check_parsed(sdp)


@FAST
@given(descriptions())
def test_generated_descriptions_can_be_answered(sdp: SessionDescription) -> None:
    check_parsed(sdp)


# -- two endpoints agree ---------------------------------------------------------------------------

POOL = [PCMU, PCMA, G722, OPUS, L16, G729, CN]


@st.composite
def locals_(draw: st.DrawFn) -> LocalMedia:
    codecs = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=6, unique=True)
                  .filter(lambda cs: any(not c.is_auxiliary for c in cs)))
    address = str(draw(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
                       .filter(lambda ip: not (ip.is_unspecified or ip.is_multicast))))
    return LocalMedia(
        address, draw(st.integers(1024, 65535)), tuple(codecs),
        telephone_event=tuple(draw(st.lists(st.sampled_from([8000, 16000, 48000]), max_size=3,
                                            unique=True))),
        ptime=draw(st.sampled_from([None, 10, 20, 30, 60])),
        direction=draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])),
        rtcp_mux=draw(st.booleans()))


@FAST
@given(locals_(), locals_(), st.sampled_from(["local", "remote"]),
       st.one_of(st.none(), st.integers(1, 3)), st.integers(0, 2**62))
def test_offerer_and_answerer_agree(a: LocalMedia, b: LocalMedia, prefer: str,
                                    max_codecs: int | None, session_id: int) -> None:
    offer = build_offer(a, session_id=session_id)
    assert parse_sdp(bytes(offer)) == offer
    reply, results = answer(parse_sdp(bytes(offer)), b, prefer=prefer,  # type: ignore[arg-type]
                            max_codecs=max_codecs)
    assert parse_sdp(bytes(reply)) == reply and len(reply.media) == 1
    speech_a = [c.key for c in a.codecs if not c.is_auxiliary]
    speech_b = [c.key for c in b.codecs if not c.is_auxiliary]
    common = [k for k in speech_a if k in speech_b]
    if not common:
        assert results == [None] and reply.media[0].port == 0
        try:
            negotiate(offer, reply)
        except OfferAnswerError:
            return
        raise AssertionError("an answer without codecs was accepted")
    theirs = results[0]
    assert theirs is not None
    ours = negotiate(offer, reply)
    # the codec each sends is the answerer's first choice, and the other side receives it
    first = common[0] if prefer == "remote" else next(k for k in speech_b if k in speech_a)
    assert ours.send_codec.key == theirs.send_codec.key == first
    assert theirs.receive_payload_types[ours.send_payload_type].key == ours.send_codec.key
    assert ours.receive_payload_types[theirs.send_payload_type].key == theirs.send_codec.key
    speech_answered = [c for c in theirs.receive_payload_types.values() if not c.is_auxiliary]
    assert 1 <= len(speech_answered) <= (max_codecs or len(common))
    # directions are mirror images; rtcp-mux only when both want it
    assert (ours.sends, ours.receives) == (theirs.receives, theirs.sends)
    assert ours.rtcp_mux == theirs.rtcp_mux == (a.rtcp_mux and b.rtcp_mux)
    # addresses and packet times
    assert (ours.remote_address, ours.remote_port) == (b.address, b.port)
    assert (theirs.remote_address, theirs.remote_port) == (a.address, a.port)
    assert theirs.ptime == (a.ptime or b.ptime or 20)
    assert ours.ptime == (b.ptime or a.ptime or 20)
    # telephone-event: whatever one sends, the other accepts at the same rate
    for sender, receiver in ((ours, theirs), (theirs, ours)):
        if sender.telephone_event is not None:
            pt = sender.telephone_event.payload_type
            assert pt is not None
            assert receiver.receive_telephone_events[pt] == sender.telephone_event.clock_rate
    both_rates = set(a.telephone_event) & set(b.telephone_event) & {
        c.clock_rate for c in a.codecs if not c.is_auxiliary}
    assert (theirs.telephone_event is not None) == bool(both_rates)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descriptions(), descriptions())
def test_next_version_bumps_exactly_on_change(x: SessionDescription,
                                              y: SessionDescription) -> None:
    x.origin.sess_version %= 2**62
    same = next_version(x, x.copy())
    assert same == x
    moved = next_version(x, y)
    assert moved.origin.sess_id == x.origin.sess_id and moved.origin.username == x.origin.username
    y.origin = x.origin
    changed = y != x
    assert moved.origin.sess_version == x.origin.sess_version + changed
