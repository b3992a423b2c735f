"""SDP parsing and serialization (RFC 8866): real peers' descriptions, tolerance, errors, limits."""

from __future__ import annotations

import pytest
import sdp_samples as S

from pbx.errors import ParseError
from pbx.sip.sdp import (
    MAX_LINES,
    MAX_MEDIA,
    MAX_SDP_SIZE,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SessionDescription,
    Timing,
    is_rtp_proto,
    parse_connection,
    parse_rtcp,
    parse_rtpmap,
    parse_sdp,
)


@pytest.mark.parametrize("name", sorted(S.ALL))
def test_every_sample_parses_and_round_trips(name: str) -> None:
    sdp = parse_sdp(S.ALL[name])
    text = str(sdp)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert parse_sdp(text) == sdp
    assert parse_sdp(bytes(sdp)) == sdp


@pytest.mark.parametrize("name", ["baresip", "baresip_mux", "baresip_answer", "sipp_uac",
                                  "asterisk", "chrome", "rfc8866", "ipv6"])
def test_well_formed_descriptions_serialize_octet_for_octet(name: str) -> None:
    assert bytes(parse_sdp(S.ALL[name])) == S.ALL[name]


def test_baresip_offer_fields() -> None:
    sdp = parse_sdp(S.BARESIP_OFFER)
    assert sdp.version == 0
    assert sdp.origin == Origin("-", "4064124514", 1852598653, "IN", "IP4", "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == Connection("IN", "IP4", "127.0.0.1")
    assert sdp.timing == [Timing(0, 0)]
    assert sdp.attributes == [("tool", "baresip 1.0.0")]
    [m] = sdp.media
    assert (m.media, m.port, m.proto, m.formats) == ("audio", 21316, "RTP/AVP",
                                                     ["96", "9", "0", "8", "101"])
    assert m.connection is None and sdp.connection_for(m) == sdp.connection
    assert m.rtpmaps()["96"] == RtpMap(96, "opus", 48000, 2)
    assert m.codec("101") == RtpMap(101, "telephone-event", 8000)
    assert m.fmtp("96") == "stereo=1;sprop-stereo=1"
    assert m.fmtps() == {"96": "stereo=1;sprop-stereo=1", "101": "0-15"}
    assert m.fmtp("0") is None
    assert (m.ptime, m.maxptime, m.direction, m.rtcp, m.rtcp_mux) == (20, None, "sendrecv",
                                                                      None, False)
    assert sdp.direction is None and sdp.direction_of(m) == "sendrecv"
    assert m.attribute("ssrc") == "2982301047 cname:sip:1001@127.0.0.1:5399"
    assert m.attribute("rtcp-rsize") == "" and m.has_attribute("RTCP-RSIZE")
    assert m.attribute("nope") is None
    assert parse_sdp(S.BARESIP_OFFER_MUX).media[0].rtcp_mux


def test_static_payload_types_need_no_rtpmap() -> None:
    sdp = parse_sdp(S.SLOPPY_OFFER)
    m = sdp.media[0]
    assert m.rtpmaps() == {}
    assert m.codec("8") == RtpMap(8, "PCMA", 8000, 1)
    assert m.codec("0") == RtpMap(0, "PCMU", 8000, 1)
    assert m.codec("96") is None
    # an explicit rtpmap wins over the static table
    m.attributes.append(("rtpmap", "0 PCMA/8000"))
    assert m.codec("0") == RtpMap(0, "PCMA", 8000)


def test_tolerates_lf_trailing_blanks_empty_session_name_and_extra_spaces() -> None:
    sdp = parse_sdp(S.SLOPPY_OFFER)
    assert sdp.session_name == "-"
    assert sdp.origin == Origin("-", "0", 0, "IN", "IP4", "10.0.0.2")
    assert sdp.connection == Connection("IN", "IP4", "10.0.0.2")
    assert sdp.media[0].formats == ["8", "0"]
    assert sdp.media[0].attributes == [("X-nat", "0")]
    assert str(sdp).startswith("v=0\r\no=- 0 0 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n")


def test_chrome_offer() -> None:
    sdp = parse_sdp(S.CHROME_OFFER)
    assert sdp.connection is None
    assert [(m.media, m.proto) for m in sdp.media] == [
        ("audio", "UDP/TLS/RTP/SAVPF"), ("video", "UDP/TLS/RTP/SAVPF"),
        ("application", "UDP/DTLS/SCTP")]
    assert sdp.attribute("msid-semantic") == " WMS 5c2b4c4e-6f3c-4d57-9a57-2f4f4a1f3c11"
    audio, video, data = sdp.media
    assert audio.rtcp == Rtcp(9, Connection("IN", "IP4", "0.0.0.0"))
    assert audio.rtcp_mux and audio.is_rtp and not data.is_rtp
    assert audio.codec("126") == RtpMap(126, "telephone-event", 8000)
    assert audio.codec("63") == RtpMap(63, "red", 48000, 2)
    assert len(audio.attribute_values("candidate")) == 2
    assert video.fmtp("97") == "apt=96"
    assert data.formats == ["webrtc-datachannel"]
    assert sdp.connection_for(data) == Connection("IN", "IP4", "0.0.0.0")


def test_rfc8866_example() -> None:
    sdp = parse_sdp(S.RFC8866_EXAMPLE)
    assert sdp.information == "SDP Offer #1"
    assert sdp.uri == "http://www.jdoe.example.com/home.html"
    assert sdp.emails == ["Jane Doe <jane@jdoe.example.com>"]
    assert sdp.phones == ["+1 617 555-6011"]
    assert [m.port for m in sdp.media] == [49170, 49180, 51372]
    video = sdp.media[2]
    assert video.connection == Connection("IN", "IP6", "2001:db8::2")
    assert sdp.connection_for(video) is video.connection
    assert video.codec("99") == RtpMap(99, "h263-1998", 90000)


def test_ipv6_and_rtcp_attribute() -> None:
    sdp = parse_sdp(S.IPV6_OFFER)
    assert sdp.origin.addrtype == "IP6" and sdp.connection == Connection.for_address(
        "2001:db8::10")
    m = sdp.media[0]
    assert m.rtcp == Rtcp(7082, Connection("IN", "IP6", "2001:db8::11"))
    assert m.ptime == 30


def test_full_session_level_fields_round_trip() -> None:
    text = ("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=Meeting\r\ni=About it\r\nu=http://x.example/\r\n"
            "e=a@x.example\r\ne=b@x.example\r\np=+1 555 0100\r\nc=IN IP4 233.252.0.1/127/2\r\n"
            "b=CT:128\r\nb=AS:64\r\nt=2873397496 2873404696\r\nr=604800 3600 0 90000\r\n"
            "r=7d 1h 0 25h\r\nt=0 0\r\nz=2882844526 -1h 2898848070 0\r\nk=prompt\r\n"
            "a=recvonly\r\na=charset:UTF-8\r\n"
            "m=audio 49170/2 RTP/AVP 0\r\ni=voice\r\nb=AS:64\r\nk=prompt\r\na=ptime:20.0\r\n"
            "m=image 0 udptl t38\r\n")
    sdp = parse_sdp(text)
    assert str(sdp) == text
    assert sdp.bandwidths == [Bandwidth("CT", 128), Bandwidth("AS", 64)]
    assert sdp.timing == [Timing(2873397496, 2873404696, ["604800 3600 0 90000", "7d 1h 0 25h"]),
                          Timing(0, 0)]
    assert sdp.zone == "2882844526 -1h 2898848070 0" and sdp.key == "prompt"
    assert sdp.connection is not None and sdp.connection.host == "233.252.0.1"
    assert sdp.connection.is_multicast and not sdp.connection.is_unspecified
    m = sdp.media[0]
    assert (m.port, m.port_count, m.information, m.key, m.ptime) == (49170, 2, "voice",
                                                                      "prompt", 20)
    assert sdp.direction == "recvonly" and sdp.direction_of(m) == "recvonly"
    assert sdp.media[1].formats == ["t38"] and not sdp.media[1].is_rtp


def test_decimal_ptime_and_leading_zero_payload_types() -> None:
    text = S.SIPP_UAC_OFFER.decode().replace("RTP/AVP 0", "RTP/AVP 08 000") + "a=ptime:22.5\r\n"
    m = parse_sdp(text).media[0]
    assert m.formats == ["08", "000"]
    assert m.codec("08") == RtpMap(8, "PCMA", 8000, 1)
    assert m.ptime == 22  # rounded half to even
    assert parse_sdp(text.replace("22.5", "0")).media[0].ptime is None


def test_non_utf8_text_fields_fall_back_to_latin1() -> None:
    data = S.SIPP_UAC_OFFER.replace(b"s=-", b"s=Caf\xe9")
    assert parse_sdp(data).session_name == "Café"


def test_build_and_serialize() -> None:
    m = MediaDescription(media="audio", port=4000, proto="RTP/AVP")
    m.add_format(RtpMap(0, "PCMU", 8000))
    m.add_format(RtpMap(96, "opus", 48000, 2), "useinbandfec=1")
    m.add_attribute("ptime", "20")
    m.set_direction("sendonly")
    m.set_direction("inactive")
    sdp = SessionDescription(origin=Origin("pbx", "7", 3, "IN", "IP6", "::1"),
                             connection=Connection.for_address("::1"), media=[m])
    assert str(sdp) == ("v=0\r\no=pbx 7 3 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
                        "m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\n"
                        "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=ptime:20\r\n"
                        "a=inactive\r\n")
    assert parse_sdp(bytes(sdp)) == sdp
    m.remove_attribute("ptime")
    assert m.ptime is None and m.direction == "inactive"
    m.set_direction(None)
    assert m.direction is None
    with pytest.raises(ValueError):
        m.set_direction("sideways")
    copy = sdp.copy()
    copy.media[0].port = 1
    assert sdp.media[0].port == 4000


def test_serializing_a_line_break_is_refused() -> None:
    sdp = parse_sdp(S.SIPP_UAC_OFFER)
    sdp.session_name = "x\r\na=injected"
    with pytest.raises(ValueError):
        str(sdp)
    sdp = parse_sdp(S.SIPP_UAC_OFFER)
    sdp.media[0].attributes.append(("foo", "bar\nm=video 1 RTP/AVP 0"))
    with pytest.raises(ValueError):
        bytes(sdp)


def test_connection_helpers() -> None:
    assert Connection.for_address("192.0.2.1") == Connection("IN", "IP4", "192.0.2.1")
    assert Connection("IN", "IP4", "0.0.0.0").is_unspecified
    assert Connection("IN", "IP6", "::").is_unspecified
    assert not Connection("IN", "IP4", "pbx.example.com").is_unspecified
    assert Connection("IN", "IP4", "host.example").is_ip
    assert not Connection("ATM", "NSAP", "47.0091").is_ip
    assert parse_connection("IN IP4 pbx.example.com").host == "pbx.example.com"
    assert parse_connection("IN IP6 FF15::101/3").is_multicast
    assert parse_connection("ATM NSAP 47.0091.8100.0000") == Connection("ATM", "NSAP",
                                                                       "47.0091.8100.0000")
    assert parse_rtcp("53020") == Rtcp(53020)
    assert str(Rtcp(9, Connection("IN", "IP4", "0.0.0.0"))) == "9 IN IP4 0.0.0.0"
    assert parse_rtpmap("97 telephone-event/8000") == RtpMap(97, "telephone-event", 8000)
    assert is_rtp_proto("UDP/TLS/RTP/SAVPF") and not is_rtp_proto("udptl")


GOOD = S.SIPP_UAC_OFFER.decode()


def _swap(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(("text", "status", "reason"), [
    ("", 400, "missing v="),
    ("\r\n\r\n", 400, "missing v="),
    (_swap("v=0\r\n", ""), 400, "must start with v="),
    (_swap("v=0", "v=1"), 400, "unsupported SDP version"),
    (_swap("o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n", ""), 400, "must start"),
    (_swap("s=-\r\n", ""), 400, "must start"),
    (_swap("t=0 0\r\n", ""), 400, "missing t="),
    (_swap("t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ""), 400, "missing t="),
    (_swap("53655765 2353687637", "53655765"), 400, "six fields"),
    (_swap("2353687637", "x1"), 400, "session version"),
    (_swap("2353687637", "9" * 19), 400, "too large"),
    (_swap("s=-\r\n", "s=-\r\ns=again\r\n"), 400, "more than one s="),
    (_swap("c=IN IP4 127.0.0.1\r\nt=0 0\r\n", "t=0 0\r\nc=IN IP4 127.0.0.1\r\n"), 400,
     "out of order"),
    (_swap("t=0 0\r\n", "t=0 0\r\nr=x\r\nc=IN IP4 127.0.0.1\r\n"), 400, "out of order"),
    (_swap("c=IN IP4 127.0.0.1\r\n", "c=IN IP4 127.0.0.1\r\nr=1 2 3\r\n"), 400,
     "r= line not after"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\r\nt=0 0"), 400, "not allowed at media"),
    (_swap("a=rtpmap:0 PCMU/8000", "c=IN IP4 1.2.3.4\r\na=rtpmap:0 PCMU/8000\r\nc=IN IP4 1.2.3.4"),
     400, "out of order"),
    (_swap("a=rtpmap:0 PCMU/8000", "x=whatever"), 400, "unknown line type"),
    (_swap("a=rtpmap:0 PCMU/8000", "A=rtpmap:0 PCMU/8000"), 400, "<type>=<value>"),
    (_swap("a=rtpmap:0 PCMU/8000", "a rtpmap"), 400, "<type>=<value>"),
    (_swap("a=rtpmap:0 PCMU/8000", " a=rtpmap:0 PCMU/8000"), 400, "<type>=<value>"),
    (_swap("s=-", "s=a\x00b"), 400, "control character"),
    (_swap("s=-\r\n", "s=-\rc=IN IP4 127.0.0.1\r\n"), 400, "control character"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4"), 400, "connection needs"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4 999.1.1.1"), 400, "bad IPv4"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP6 fe80:::1"), 400, "bad IPv6"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4 bad_host!"), 400, "bad connection address"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4 233.252.0.1/x"), 400, "multicast suffix"),
    (_swap("c=IN IP4 127.0.0.1\r\n", ""), 400, "no connection address"),
    (_swap("t=0 0", "t=0"), 400, "start and stop"),
    (_swap("t=0 0", "t=now 0"), 400, "start time"),
    (_swap("t=0 0", "t=0 0\r\nb=AS:64"), 400, "out of order"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.1\r\nb=AS"), 400, "malformed bandwidth"),
    (_swap("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.1\r\nb=AS:lots"), 400, "bandwidth value"),
    (_swap("m=audio 6000 RTP/AVP 0", "m=audio 6000"), 400, "media, port and proto"),
    (_swap("m=audio 6000", "m=audio 70000"), 400, "bad media port"),
    (_swap("m=audio 6000", "m=audio 6000/0"), 400, "port count is zero"),
    (_swap("m=audio 6000", "m=audio -1"), 400, "bad media port"),
    (_swap("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP/AVP"), 400, "without formats"),
    (_swap("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP/AVP 128"), 400, "payload type 0-127"),
    (_swap("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP/AVP PCMU"), 400, "payload type 0-127"),
    (_swap("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP//AVP 0"), 400, "bad media proto"),
    (_swap("m=audio", "m=au(dio"), 400, "bad media type"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU"), 400, "malformed rtpmap"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtpmap:200 PCMU/8000"), 400, "above 127"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/0"), 400, "clock rate is zero"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=fmtp:"), 400, "malformed fmtp"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=ptime:twenty"), 400, "malformed ptime"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=maxptime"), 400, "malformed ptime"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtcp:70000"), 400, "bad port in rtcp"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=rtcp:7001 IN IP4"), 400, "connection needs"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=:novalue"), 400, "attribute name"),
    (_swap("a=rtpmap:0 PCMU/8000", "a=two words"), 400, "attribute name"),
    (_swap("t=0 0\r\n", "t=0 0\r\na=ptime:x\r\n"), 400, "malformed ptime"),
])
def test_malformed_descriptions(text: str, status: int, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sdp(text)
    assert info.value.status_hint == status
    assert reason in info.value.reason


def test_rejected_stream_may_lack_formats_and_connection() -> None:
    text = _swap("c=IN IP4 127.0.0.1\r\n", "").replace("m=audio 6000 RTP/AVP 0",
                                                       "m=audio 0 RTP/AVP")
    sdp = parse_sdp(text)
    assert sdp.media[0].port == 0 and sdp.media[0].formats == []
    assert parse_sdp(str(sdp)) == sdp


def test_session_level_rtpmap_is_not_checked() -> None:
    # Meaningless at session level, so left alone rather than rejected.
    text = _swap("t=0 0\r\n", "t=0 0\r\na=rtpmap:garbage\r\n")
    assert parse_sdp(text).attribute("rtpmap") == "garbage"


def test_limits() -> None:
    with pytest.raises(ParseError) as info:
        parse_sdp(GOOD + "a=x:" + "y" * MAX_SDP_SIZE + "\r\n")
    assert info.value.status_hint == 413
    with pytest.raises(ParseError) as info:
        parse_sdp(GOOD.encode() + b"a=x:" + b"y" * MAX_SDP_SIZE + b"\r\n")
    assert info.value.status_hint == 413
    many_media = GOOD + "m=audio 0 RTP/AVP 0\r\n" * MAX_MEDIA
    with pytest.raises(ParseError) as info:
        parse_sdp(many_media)
    assert info.value.status_hint == 413 and "media" in info.value.reason
    assert len(parse_sdp(GOOD + "m=audio 0 RTP/AVP 0\r\n" * (MAX_MEDIA - 1)).media) == MAX_MEDIA
    many_lines = GOOD + "a=x\r\n" * MAX_LINES
    with pytest.raises(ParseError) as info:
        parse_sdp(many_lines)
    assert info.value.status_hint == 413 and "lines" in info.value.reason
