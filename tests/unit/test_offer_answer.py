"""RFC 3264 offer/answer against what real peers offer and answer (see sdp_samples.py)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import sdp_samples as S

from pbx.sip.offer_answer import (
    Codec,
    LocalMedia,
    NegotiatedMedia,
    OfferAnswerError,
    answer,
    answer_direction,
    build_offer,
    effective_direction,
    hold_direction,
    is_hold,
    negotiate,
    negotiate_all,
    next_version,
    sdp_changed,
)
from pbx.sip.sdp import Connection, RtpMap, SessionDescription, parse_sdp

PCMU = Codec("PCMU", 8000, 1, 0)
PCMA = Codec("PCMA", 8000, 1, 8)
G722 = Codec("G722", 8000, 1, 9)
OPUS = Codec("opus", 48000, 2, None, "useinbandfec=1")
G711 = LocalMedia("192.0.2.10", 40000, (PCMU, PCMA))
WIDE = LocalMedia("192.0.2.10", 40000, (OPUS, G722, PCMU, PCMA), telephone_event=(8000, 48000),
                  rtcp_mux=True)


def audio_line(sdp: SessionDescription, index: int = 0) -> str:
    """The m= line at ``index`` as serialized."""
    return [line for line in str(sdp).split("\r\n") if line.startswith("m=")][index]


def only(results: list[NegotiatedMedia | None]) -> NegotiatedMedia:
    [result] = [r for r in results if r is not None]
    return result


# -- building offers ---------------------------------------------------------------------------


def test_offer_g711() -> None:
    offer = build_offer(G711, session_id=1234)
    assert str(offer) == (
        "v=0\r\no=- 1234 0 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        "a=sendrecv\r\n")
    assert parse_sdp(bytes(offer)) == offer


def test_offer_assigns_static_and_dynamic_payload_types() -> None:
    local = LocalMedia("2001:db8::5", 5004,
                       (OPUS, Codec("PCMU", 8000), Codec("L16", 16000), Codec("CN", 8000)),
                       telephone_event=(8000, 48000, 16000), ptime=None, rtcp_mux=True,
                       direction="recvonly", username="pbx", session_name="call")
    offer = build_offer(local, session_id=9)
    m = offer.media[0]
    assert offer.origin.addrtype == "IP6" and offer.connection == Connection("IN", "IP6",
                                                                             "2001:db8::5")
    # PCMU and CN are static; opus, L16 and the 48/16 kHz events take 96..; 8 kHz events 101
    assert m.formats == ["96", "0", "97", "13", "101", "98", "99"]
    assert [m.codec(f) for f in m.formats] == [
        RtpMap(96, "opus", 48000, 2), RtpMap(0, "PCMU", 8000), RtpMap(97, "L16", 16000),
        RtpMap(13, "CN", 8000), RtpMap(101, "telephone-event", 8000),
        RtpMap(98, "telephone-event", 48000), RtpMap(99, "telephone-event", 16000)]
    assert m.fmtp("96") == "useinbandfec=1" and m.ptime is None
    assert m.rtcp_mux and m.direction == "recvonly"
    assert offer.session_name == "call" and offer.origin.username == "pbx"


def test_offer_telephone_event_only_at_rates_of_offered_codecs() -> None:
    offer = build_offer(dataclasses.replace(G711, telephone_event=(8000, 48000)))
    assert [m.codec(f) for m in offer.media for f in m.formats][-1] == RtpMap(
        101, "telephone-event", 8000)
    assert len(offer.media[0].formats) == 3
    assert build_offer(dataclasses.replace(G711, telephone_event=())).media[0].formats == ["0",
                                                                                         "8"]


def test_local_media_is_checked() -> None:
    with pytest.raises(ValueError):
        LocalMedia("pbx.example.com", 4000, (PCMU,))
    with pytest.raises(ValueError):
        LocalMedia("0.0.0.0", 4000, (PCMU,))
    with pytest.raises(ValueError):
        LocalMedia("ff02::1", 4000, (PCMU,))
    with pytest.raises(ValueError):
        LocalMedia("192.0.2.1", 70000, (PCMU,))
    with pytest.raises(ValueError):
        LocalMedia("192.0.2.1", 4000, ())
    with pytest.raises(ValueError):
        LocalMedia("192.0.2.1", 4000, (Codec("PCMU", 8000, 1, 200),))
    with pytest.raises(ValueError):
        LocalMedia("192.0.2.1", 4000, (PCMU,), direction="both")
    with pytest.raises(ValueError):
        LocalMedia("192.0.2.1", 4000, (PCMU,), ptime=0)


# -- answering real offers -----------------------------------------------------------------------


def test_answer_baresip_with_our_preference() -> None:
    offer = parse_sdp(S.BARESIP_OFFER)
    sdp, results = answer(offer, G711, session_id=77)
    assert str(sdp) == (
        "v=0\r\no=- 77 0 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        "a=sendrecv\r\n")
    result = only(results)
    assert result.index == 0
    assert (result.remote_address, result.remote_port) == ("127.0.0.1", 21316)
    assert (result.remote_rtcp_address, result.remote_rtcp_port) == ("127.0.0.1", 21317)
    assert result.send_codec == PCMU and result.send_payload_type == 0
    assert result.receive_payload_types == {0: PCMU, 8: PCMA}
    assert result.telephone_event == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert result.receive_telephone_events == {101: 8000}
    assert (result.ptime, result.direction, result.rtcp_mux) == (20, "sendrecv", False)
    assert result.sends and result.receives and not result.remote_hold


def test_answer_baresip_with_their_preference() -> None:
    offer = parse_sdp(S.BARESIP_OFFER_MUX)
    sdp, results = answer(offer, WIDE, prefer="remote")
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 96 9 0 8 101"
    assert sdp.media[0].rtcp_mux
    result = only(results)
    # their numbers, their fmtp for what we send, ours for what we receive
    assert result.send_codec == Codec("opus", 48000, 2, 96, "stereo=1;sprop-stereo=1")
    assert result.receive_payload_types[96] == Codec("opus", 48000, 2, 96, "useinbandfec=1")
    assert sdp.media[0].fmtp("96") == "useinbandfec=1"
    assert result.rtcp_mux and result.remote_rtcp_port == 21330
    # baresip offers no telephone-event/48000: DTMF goes at 8000 rather than not at all
    assert result.telephone_event is not None and result.telephone_event.clock_rate == 8000


def test_answer_with_one_codec_keeps_lenient_dtmf() -> None:
    sdp, results = answer(parse_sdp(S.BARESIP_OFFER), WIDE, max_codecs=1)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 96 101"
    assert only(results).receive_telephone_events == {101: 8000}
    sdp, _ = answer(parse_sdp(S.BARESIP_OFFER), dataclasses.replace(WIDE, telephone_event=()),
                    max_codecs=2)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 96 9"


def test_rtcp_mux_only_when_offered_and_wanted() -> None:
    sdp, results = answer(parse_sdp(S.BARESIP_OFFER), WIDE)  # not offered
    assert not sdp.media[0].rtcp_mux and not only(results).rtcp_mux
    sdp, results = answer(parse_sdp(S.BARESIP_OFFER_MUX), G711)  # offered, not wanted
    assert not sdp.media[0].rtcp_mux and only(results).remote_rtcp_port == 21331


def test_answer_sipp_uac() -> None:
    sdp, results = answer(parse_sdp(S.SIPP_UAC_OFFER), WIDE)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 0"
    result = only(results)
    assert result.send_codec == PCMU and result.telephone_event is None
    assert result.receive_telephone_events == {}
    assert result.ptime == 20  # none offered: our own


def test_answer_sipp_pcap_with_rfc2833() -> None:
    sdp, results = answer(parse_sdp(S.SIPP_PCAP_OFFER), G711)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 8 101"
    result = only(results)
    assert result.send_codec == PCMA and result.receive_payload_types == {8: PCMA}
    assert result.telephone_event == Codec("telephone-event", 8000, 1, 101, "0-11,16")


def test_answer_asterisk_and_its_re_offers() -> None:
    local = LocalMedia("192.0.2.10", 40000, (PCMA, PCMU))
    first, results = answer(parse_sdp(S.ASTERISK_OFFER), local, session_id=5)
    assert audio_line(first) == "m=audio 40000 RTP/AVP 8 0 101"
    assert only(results).ptime == 20 and first.origin.sess_version == 0

    # hold: sendonly -> we answer recvonly, and the version moves on
    hold_offer = parse_sdp(S.ASTERISK_HOLD)
    assert is_hold(hold_offer) and sdp_changed(parse_sdp(S.ASTERISK_OFFER), hold_offer)
    held, results = answer(hold_offer, local, session_id=999, previous=first)
    result = only(results)
    assert held.media[0].direction == "recvonly" and result.direction == "recvonly"
    assert result.remote_hold and not result.sends and result.receives
    assert held.origin == dataclasses.replace(first.origin, sess_version=1)

    # resume
    resumed, results = answer(parse_sdp(S.ASTERISK_RESUME), local, previous=held)
    assert resumed.media[0].direction == "sendrecv" and not only(results).remote_hold
    assert resumed.origin.sess_version == 2 and resumed.origin.sess_id == "5"

    # a session refresh with the same offer: nothing changes, not even the version
    again, _ = answer(parse_sdp(S.ASTERISK_RESUME), local, previous=resumed)
    assert again == resumed

    # codec change: only PCMA is offered now
    changed, results = answer(parse_sdp(S.ASTERISK_PCMA_ONLY), LocalMedia(
        "192.0.2.10", 40000, (PCMU, PCMA)), previous=again)
    assert audio_line(changed) == "m=audio 40000 RTP/AVP 8 101"
    assert only(results).send_codec == PCMA and changed.origin.sess_version == 3


def test_answer_keeps_the_offerers_numbers_even_for_static_codecs() -> None:
    offer = parse_sdp(S.SIPP_UAC_OFFER.replace(b"RTP/AVP 0", b"RTP/AVP 100 120")
                      .replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:100 pcmu/8000\r\n"
                               b"a=rtpmap:120 telephone-event/8000"))
    sdp, results = answer(offer, G711)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 100 120"
    result = only(results)
    assert result.send_codec == Codec("PCMU", 8000, 1, 100)
    assert result.receive_payload_types == {100: Codec("PCMU", 8000, 1, 100)}
    assert result.receive_telephone_events == {120: 8000}


def test_maxptime_bounds_what_we_send() -> None:
    offer = parse_sdp(S.ASTERISK_OFFER.replace(b"a=ptime:20", b"a=ptime:60")
                      .replace(b"a=maxptime:150", b"a=maxptime:40"))
    assert only(answer(offer, G711)[1]).ptime == 40


def test_legacy_hold_with_unspecified_address() -> None:
    offer = parse_sdp(S.LEGACY_HOLD)
    assert is_hold(offer, offer.media[0]) and offer.media[0].direction is None
    assert effective_direction(offer, offer.media[0]) == "sendonly"
    sdp, results = answer(offer, G711)
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 0 101"
    result = only(results)
    assert result.direction == "recvonly" and result.remote_hold
    assert result.remote_address == "0.0.0.0"


def test_no_common_codec_rejects_the_stream() -> None:
    offer = parse_sdp(S.LEGACY_HOLD.replace(b" 18 0 101", b" 18 101"))
    sdp, results = answer(offer, G711)
    assert results == [None]
    assert audio_line(sdp) == "m=audio 0 RTP/AVP 18 101"
    g729 = LocalMedia("192.0.2.10", 40000, (Codec("G729", 8000, 1, 18, "annexb=no"),))
    _, results = answer(offer, g729)
    assert only(results).send_codec == Codec("G729", 8000, 1, 18, "annexb=no")


def test_webrtc_offer_is_answered_with_every_stream_rejected() -> None:
    offer = parse_sdp(S.CHROME_OFFER)
    sdp, results = answer(offer, WIDE)
    assert results == [None, None, None]
    assert [(m.media, m.port, m.proto, m.formats) for m in sdp.media] == [
        (m.media, 0, m.proto, m.formats) for m in offer.media]
    assert all(m.attributes == [] for m in sdp.media)
    assert parse_sdp(bytes(sdp)) == sdp


def test_plain_rtp_twin_of_the_webrtc_offer_picks_telephone_event_by_rate() -> None:
    text = S.CHROME_OFFER.replace(b"UDP/TLS/RTP/SAVPF", b"RTP/AVP")
    offer = parse_sdp(text)
    sdp, results = answer(offer, WIDE)
    assert results[1] is None and results[2] is None
    assert audio_line(sdp) == "m=audio 40000 RTP/AVP 111 9 0 8 110 126"
    result = only(results)
    assert result.telephone_event is not None
    assert result.telephone_event.payload_type == 110  # 48 kHz, like opus
    assert result.receive_telephone_events == {110: 48000, 126: 8000}
    assert result.rtcp_mux and 63 not in result.receive_payload_types  # no red: not ours
    assert [m.port for m in sdp.media] == [40000, 0, 0]


def test_video_is_rejected_and_only_one_audio_stream_taken() -> None:
    sdp, results = answer(parse_sdp(S.VIDEO_OFFER_TO_BARESIP), G711)
    assert [audio_line(sdp, i) for i in range(2)] == ["m=audio 40000 RTP/AVP 0 8 101",
                                                      "m=video 0 RTP/AVP 96"]
    assert results[0] is not None and results[1] is None
    sdp, results = answer(parse_sdp(S.RFC8866_EXAMPLE), G711)
    assert [m.port for m in sdp.media] == [40000, 0, 0]
    assert results[0] is not None and results[1:] == [None, None]


def test_disabled_and_multicast_streams_are_rejected() -> None:
    offer = parse_sdp(S.SIPP_UAC_OFFER.replace(b"m=audio 6000", b"m=audio 0"))
    assert answer(offer, G711)[1] == [None]
    offer = parse_sdp(S.SIPP_UAC_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 233.252.0.1/8"))
    assert answer(offer, G711)[1] == [None]
    offer = parse_sdp(S.SIPP_UAC_OFFER.replace(b"RTP/AVP", b"RTP/SAVP"))
    assert answer(offer, G711)[1] == [None]


def test_ipv6_offer_with_rtcp_port_and_ptime() -> None:
    local = LocalMedia("2001:db8::99", 6000, (OPUS, PCMU), telephone_event=(8000, 48000))
    sdp, results = answer(parse_sdp(S.IPV6_OFFER), local)
    assert sdp.connection == Connection("IN", "IP6", "2001:db8::99")
    result = only(results)
    assert (result.remote_address, result.remote_port) == ("2001:db8::10", 7078)
    assert (result.remote_rtcp_address, result.remote_rtcp_port) == ("2001:db8::11", 7082)
    assert result.ptime == 30
    assert result.telephone_event == Codec("telephone-event", 48000, 1, 101, None)
    assert result.receive_telephone_events == {101: 48000, 97: 8000}


@pytest.mark.parametrize(("offered", "local", "expected"), [
    ("sendrecv", "sendrecv", "sendrecv"), ("sendrecv", "sendonly", "sendonly"),
    ("sendrecv", "recvonly", "recvonly"), ("sendrecv", "inactive", "inactive"),
    ("sendonly", "sendrecv", "recvonly"), ("sendonly", "sendonly", "inactive"),
    ("recvonly", "sendrecv", "sendonly"), ("recvonly", "recvonly", "inactive"),
    ("inactive", "sendrecv", "inactive"), ("inactive", "recvonly", "inactive"),
])
def test_answer_directions(offered: str, local: str, expected: str) -> None:
    assert answer_direction(offered, local) == expected
    offer = parse_sdp(S.SIPP_UAC_OFFER + f"a={offered}\r\n".encode())
    sdp, results = answer(offer, G711.with_direction(local))
    assert sdp.media[0].direction == expected and only(results).direction == expected


def test_session_level_direction_applies_to_media() -> None:
    offer = parse_sdp(S.SIPP_UAC_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n"))
    assert is_hold(offer, 0)
    assert only(answer(offer, G711)[1]).direction == "inactive"


def test_hold_directions() -> None:
    assert [hold_direction(d) for d in ("sendrecv", "sendonly", "recvonly", "inactive")] == [
        "sendonly", "sendonly", "inactive", "inactive"]


# -- the offerer's side against real answers --------------------------------------------------------


def test_negotiate_with_baresip_answer() -> None:
    result = negotiate(parse_sdp(S.OFFER_TO_BARESIP), parse_sdp(S.BARESIP_ANSWER))
    assert (result.remote_address, result.remote_port) == ("127.0.0.1", 21350)
    # we offered rtcp-mux, baresip did not take it
    assert not result.rtcp_mux and result.remote_rtcp_port == 21351
    assert result.send_codec == PCMU
    assert result.receive_payload_types == {0: PCMU, 8: PCMA}
    assert result.telephone_event == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert result.receive_telephone_events == {101: 8000}
    assert result.direction == "sendrecv" and result.ptime == 20


def test_negotiate_hold_with_baresip() -> None:
    result = negotiate(parse_sdp(S.HOLD_OFFER_TO_BARESIP), parse_sdp(S.BARESIP_HOLD_ANSWER))
    assert result.direction == "sendonly" and not result.remote_hold


def test_negotiate_tolerates_baresips_rejected_video() -> None:
    results = negotiate_all(parse_sdp(S.VIDEO_OFFER_TO_BARESIP),
                            parse_sdp(S.BARESIP_VIDEO_ANSWER))
    assert results[1] is None and results[0] is not None
    assert results[0].send_codec == PCMA and results[0].receive_payload_types == {8: PCMA,
                                                                                   0: PCMU}


def test_negotiate_our_offer_with_our_answer() -> None:
    offer = build_offer(WIDE, session_id=1)
    bob = LocalMedia("198.51.100.7", 7000, (PCMA, G722), telephone_event=(8000,), ptime=30,
                     rtcp_mux=True)
    reply, results = answer(parse_sdp(bytes(offer)), bob)
    theirs = only(results)
    ours = negotiate(offer, parse_sdp(bytes(reply)))
    assert ours.send_codec.key == theirs.send_codec.key == PCMA.key  # bob's preference
    assert ours.send_payload_type in theirs.receive_payload_types
    assert theirs.send_payload_type in ours.receive_payload_types
    assert ours.ptime == 30 and theirs.ptime == 20
    assert ours.rtcp_mux and theirs.rtcp_mux
    assert ours.telephone_event is not None and theirs.telephone_event is not None
    assert ours.telephone_event.payload_type in theirs.receive_telephone_events
    assert theirs.telephone_event.payload_type in ours.receive_telephone_events


def test_negotiate_asymmetric_payload_types_and_missing_rtpmap() -> None:
    offer = build_offer(WIDE)
    text = bytes(offer).decode()
    # the answerer receives opus on 111 and leaves our 101 without an rtpmap
    reply = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 7000 RTP/AVP 111 101 18\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:18 G729/8000\r\na=sendrecv\r\na=rtcp:7005\r\n")
    assert "96 opus/48000/2" in text
    result = negotiate(offer, reply)
    assert result.send_codec == Codec("opus", 48000, 2, 111, None)
    assert result.receive_payload_types == {96: dataclasses.replace(OPUS, payload_type=96)}
    assert result.receive_telephone_events == {101: 8000}
    assert result.remote_rtcp_port == 7005 and not result.rtcp_mux


def test_negotiate_narrows_a_direction_the_answer_may_not_give() -> None:
    offer = build_offer(G711.with_direction("sendonly"))
    reply = parse_sdp(S.SIPP_UAC_OFFER + b"a=sendrecv\r\n")
    assert negotiate(offer, reply).direction == "sendonly"
    reply = parse_sdp(S.SIPP_UAC_OFFER + b"a=inactive\r\n")
    result = negotiate(build_offer(G711), reply)
    assert result.direction == "inactive" and result.remote_hold


def test_invalid_answers_are_refused() -> None:
    offer = parse_sdp(S.VIDEO_OFFER_TO_BARESIP)
    good = S.BARESIP_VIDEO_ANSWER
    cases = {
        "media descriptions": good.replace(b"m=video 0 RTP/AVP 0\r\n", b""),
        "from video to audio": good.replace(b"m=video 0", b"m=audio 0"),
        "transport": good.replace(b"m=audio 21386 RTP/AVP", b"m=audio 21386 RTP/SAVP"),
        "none of the offered codecs": good.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 18")
                                          .replace(b"a=rtpmap:8 PCMA", b"a=rtpmap:18 G729"),
    }
    for reason, data in cases.items():
        with pytest.raises(OfferAnswerError) as info:
            negotiate_all(offer, parse_sdp(data))
        assert reason in info.value.reason, reason
    disabled = parse_sdp(S.VIDEO_OFFER_TO_BARESIP.replace(b"m=video 30006", b"m=video 0"))
    with pytest.raises(OfferAnswerError, match="disabled"):
        negotiate_all(disabled, parse_sdp(good.replace(b"m=video 0", b"m=video 5")))
    rejected = parse_sdp(good.replace(b"m=audio 21386", b"m=audio 0"))
    assert negotiate_all(offer, rejected) == [None, None]
    with pytest.raises(OfferAnswerError) as info:
        negotiate(offer, rejected)
    assert info.value.status_hint == 488


# -- versions and re-offers ------------------------------------------------------------------------


def test_next_version() -> None:
    first = build_offer(G711, session_id=42)
    assert next_version(None, first) is first
    same = build_offer(dataclasses.replace(G711, username="other"), session_id=1)
    assert next_version(first, same).origin == first.origin  # origin kept, nothing changed
    held = build_offer(G711.with_direction("sendonly"), session_id=1)
    bumped = next_version(first, held)
    assert bumped.origin == dataclasses.replace(first.origin, sess_version=1)
    assert bumped.media == held.media
    assert not sdp_changed(first, first.copy()) and sdp_changed(first, bumped)
    assert sdp_changed(None, first)


def test_re_offer_for_hold_keeps_origin_numbers_and_m_lines() -> None:
    # We answered an offer with audio and video, then put the call on hold with a re-offer.
    ours, _ = answer(parse_sdp(S.VIDEO_OFFER_TO_BARESIP), WIDE, session_id=3)
    local = WIDE.with_direction(hold_direction(WIDE.direction))
    hold = build_offer(local, previous=ours)
    assert hold.origin == dataclasses.replace(ours.origin, sess_version=1)
    assert [(m.media, m.port) for m in hold.media] == [("audio", 40000), ("video", 0)]
    audio = hold.media[0]
    assert audio.direction == "sendonly"
    # the numbers we used before (offerer's 8, 0 and 101) are kept, new ones avoid them
    numbers = {(r.encoding, r.clock_rate): f for f in audio.formats
               if (r := audio.codec(f)) is not None}
    assert numbers[("PCMA", 8000)] == "8" and numbers[("PCMU", 8000)] == "0"
    assert numbers[("telephone-event", 8000)] == "101"
    assert numbers[("opus", 48000)] == "96" and numbers[("telephone-event", 48000)] == "97"
    resumed = build_offer(WIDE, previous=hold)
    assert resumed.origin.sess_version == 2 and resumed.media[0].direction == "sendrecv"
    assert build_offer(WIDE, previous=resumed) == resumed


def test_re_offer_after_a_rejected_audio_stream_reuses_its_slot() -> None:
    ours, _ = answer(parse_sdp(S.CHROME_OFFER), WIDE)
    offer = build_offer(G711, previous=ours)
    assert [(m.media, m.port, m.proto) for m in offer.media] == [
        ("audio", 0, "UDP/TLS/RTP/SAVPF"), ("video", 0, "UDP/TLS/RTP/SAVPF"),
        ("application", 0, "UDP/DTLS/SCTP"), ("audio", 40000, "RTP/AVP")]


def test_hostile_descriptions_cost_bounded_time() -> None:
    # Thousands of formats and rtpmap lines within the size limit: each is resolved once, so
    # answering and checking take milliseconds (a per-format rescan took seconds).
    head = S.SIPP_UAC_OFFER.decode().split("m=")[0]
    text = (head + "m=audio 4000 RTP/AVP " + " ".join(str(i % 128) for i in range(8000)) +
            "\r\n" + "a=rtpmap:96 opus/48000/2\r\n" * 1000)
    offer = parse_sdp(text)
    start = time.perf_counter()
    reply, results = answer(offer, WIDE)
    assert only(results).send_codec.key == OPUS.key and reply.media[0].port == 40000
    assert only(negotiate_all(build_offer(G711), offer)).send_codec == PCMU
    assert only(negotiate_all(offer, offer)).send_codec.key == ("pcmu", 8000, 1)
    assert time.perf_counter() - start < 1.0
