"""Session descriptions as real peers send them, for the SDP and offer/answer tests.

The baresip and SIPp ones were captured on loopback from the Debian packages on this machine
(baresip 1.0.0 with its opus, g722 and g711 modules; SIPp 3.6.1's built-in ``uac`` scenario):
the INVITE body octet for octet, and baresip's 200 OK bodies for the offers next to them. The
others are written after what those peers send (Asterisk chan_pjsip, Chrome, an RFC 2543-era
gateway that holds with c=0.0.0.0, a softphone with LF line ends) and RFC 8866's own example.
"""

from __future__ import annotations


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# baresip 1.0.0 dialling out (modules opus, g722, g711; default config).
BARESIP_OFFER = crlf(
    "v=0",
    "o=- 4064124514 1852598653 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 21316 RTP/AVP 96 9 0 8 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=rtcp-rsize",
    "a=ssrc:2982301047 cname:sip:1001@127.0.0.1:5399",
    "a=minptime:20",
    "a=ptime:20",
)

# The same with ``rtcp_mux yes`` in baresip's config.
BARESIP_OFFER_MUX = crlf(
    "v=0",
    "o=- 101255999 1995438632 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 21330 RTP/AVP 96 9 0 8 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=rtcp-rsize",
    "a=ssrc:2428561507 cname:sip:1001@127.0.0.1:5399",
    "a=rtcp-mux",
    "a=minptime:20",
    "a=ptime:20",
)

# Offers we sent to baresip (auto-answer) and the answers it gave.
OFFER_TO_BARESIP = crlf(
    "v=0",
    "o=pbx 1000 1 IN IP4 127.0.0.1",
    "s=pbx",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 30000 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp-mux",
)
BARESIP_ANSWER = crlf(
    "v=0",
    "o=- 1636168241 119515464 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 21350 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:3901867478 cname:sip:1001@127.0.0.1:5371",
    "a=minptime:20",
    "a=ptime:20",
)

HOLD_OFFER_TO_BARESIP = crlf(
    "v=0",
    "o=pbx 1001 1 IN IP4 127.0.0.1",
    "s=pbx",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 30002 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendonly",
)
BARESIP_HOLD_ANSWER = crlf(
    "v=0",
    "o=- 2636304909 1170910658 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 21366 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=recvonly",
    "a=label:1",
    "a=ssrc:3915503694 cname:sip:1001@127.0.0.1:5371",
    "a=minptime:20",
    "a=ptime:20",
)

VIDEO_OFFER_TO_BARESIP = crlf(
    "v=0",
    "o=pbx 1002 1 IN IP4 127.0.0.1",
    "s=pbx",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 30004 RTP/AVP 8 0 101",
    "a=rtpmap:101 telephone-event/8000",
    "m=video 30006 RTP/AVP 96",
    "a=rtpmap:96 H264/90000",
)
# baresip rejects the video stream with a format that was not in the offer.
BARESIP_VIDEO_ANSWER = crlf(
    "v=0",
    "o=- 2203361071 502639096 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 21386 RTP/AVP 8 0 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:983839343 cname:sip:1001@127.0.0.1:5371",
    "a=minptime:20",
    "a=ptime:20",
    "m=video 0 RTP/AVP 0",
)

# SIPp 3.6.1 ``-sn uac`` (the uas scenario answers with the same body).
SIPP_UAC_OFFER = crlf(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)
# SIPp ``-sn uac_pcap`` (plays a PCMA pcap with RFC 2833 digits), keywords expanded.
SIPP_PCAP_OFFER = crlf(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6002 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11,16",
)

# Asterisk (chan_pjsip): the initial offer, then hold, resume and a codec change in re-INVITEs.
ASTERISK_OFFER = crlf(
    "v=0",
    "o=- 1549416466 1549416466 IN IP4 203.0.113.5",
    "s=Asterisk",
    "c=IN IP4 203.0.113.5",
    "t=0 0",
    "m=audio 18472 RTP/AVP 0 8 9 3 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)
ASTERISK_HOLD = ASTERISK_OFFER.replace(b"1549416466 1549416466", b"1549416466 1549416467") \
    .replace(b"a=sendrecv", b"a=sendonly")
ASTERISK_RESUME = ASTERISK_OFFER.replace(b"1549416466 1549416466", b"1549416466 1549416468")
ASTERISK_PCMA_ONLY = crlf(
    "v=0",
    "o=- 1549416466 1549416469 IN IP4 203.0.113.5",
    "s=Asterisk",
    "c=IN IP4 203.0.113.5",
    "t=0 0",
    "m=audio 18472 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

# An RFC 2543-era gateway putting the call on hold: c=0.0.0.0, no direction attribute.
LEGACY_HOLD = crlf(
    "v=0",
    "o=CiscoSystemsSIP-GW-UserAgent 4382 1212 IN IP4 198.51.100.20",
    "s=SIP Call",
    "c=IN IP4 0.0.0.0",
    "t=0 0",
    "m=audio 17418 RTP/AVP 18 0 101",
    "c=IN IP4 0.0.0.0",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
)

# Chrome (WebRTC): DTLS-SRTP audio and video and a data channel; we answer all with port 0.
CHROME_OFFER = crlf(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1 2",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 5c2b4c4e-6f3c-4d57-9a57-2f4f4a1f3c11",
    "m=audio 54400 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 192.0.2.33",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1467250027 1 udp 2122260223 192.0.2.33 54400 typ host generation 0 "
    "network-id 1",
    "a=candidate:435653019 1 tcp 1518280447 192.0.2.33 9 typ host tcptype active generation 0 "
    "network-id 1",
    "a=ice-ufrag:9LmA",
    "a=ice-pwd:Wr1sZ1oVXnh7Yl2c8hZp1aQk",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:5c2b4c4e-6f3c-4d57-9a57-2f4f4a1f3c11 0b6e8f6c-2c0c-4c4b-8d5c-7e0d3b2f1a90",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:Yv1Jc0m3P2v5xYzQ",
    "a=ssrc:3735928559 msid:5c2b4c4e-6f3c-4d57-9a57-2f4f4a1f3c11 "
    "0b6e8f6c-2c0c-4c4b-8d5c-7e0d3b2f1a90",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:9LmA",
    "a=ice-pwd:Wr1sZ1oVXnh7Yl2c8hZp1aQk",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:1",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=ice-ufrag:9LmA",
    "a=ice-pwd:Wr1sZ1oVXnh7Yl2c8hZp1aQk",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:2",
    "a=sctp-port:5000",
    "a=max-message-size:262144",
)

# A softphone with LF line ends, trailing blanks, an empty s= and no rtpmap for static types.
SLOPPY_OFFER = (b"v=0\n"
                b"o=-  0 0 IN IP4 10.0.0.2 \n"
                b"s=\n"
                b"c=IN IP4 10.0.0.2\t\n"
                b"t=0 0\n"
                b"m=audio 5004 RTP/AVP 8 0   \n"
                b"a=X-nat:0 \n"
                b"\n")

# IPv6, opus with telephone-event at 48 kHz and 8 kHz, RTCP on an explicit port (RFC 3605).
IPV6_OFFER = crlf(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP6 2001:db8::10",
    "s=Talk",
    "c=IN IP6 2001:db8::10",
    "t=0 0",
    "m=audio 7078 RTP/AVP 96 0 8 101 97",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:97 telephone-event/8000",
    "a=rtcp:7082 IN IP6 2001:db8::11",
    "a=ptime:30",
)

# RFC 8866 §5 (addresses as in the RFC; IPv6 media connection).
RFC8866_EXAMPLE = crlf(
    "v=0",
    "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1",
    "s=Call to John Smith",
    "i=SDP Offer #1",
    "u=http://www.jdoe.example.com/home.html",
    "e=Jane Doe <jane@jdoe.example.com>",
    "p=+1 617 555-6011",
    "c=IN IP4 198.51.100.1",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0",
    "m=audio 49180 RTP/AVP 0",
    "m=video 51372 RTP/AVP 99",
    "c=IN IP6 2001:db8::2",
    "a=rtpmap:99 h263-1998/90000",
)

ALL = {
    "baresip": BARESIP_OFFER, "baresip_mux": BARESIP_OFFER_MUX, "to_baresip": OFFER_TO_BARESIP,
    "baresip_answer": BARESIP_ANSWER, "hold_to_baresip": HOLD_OFFER_TO_BARESIP,
    "baresip_hold_answer": BARESIP_HOLD_ANSWER, "video_to_baresip": VIDEO_OFFER_TO_BARESIP,
    "baresip_video_answer": BARESIP_VIDEO_ANSWER, "sipp_uac": SIPP_UAC_OFFER,
    "sipp_pcap": SIPP_PCAP_OFFER, "asterisk": ASTERISK_OFFER, "asterisk_hold": ASTERISK_HOLD,
    "asterisk_resume": ASTERISK_RESUME, "asterisk_pcma": ASTERISK_PCMA_ONLY,
    "legacy_hold": LEGACY_HOLD, "chrome": CHROME_OFFER, "sloppy": SLOPPY_OFFER,
    "ipv6": IPV6_OFFER, "rfc8866": RFC8866_EXAMPLE,
}
