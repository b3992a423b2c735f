"""SIP message parsing and serialization: RFC 4475 and RFC 5118 torture tests, limits, framing.

The torture messages are the RFCs' own test vectors, octet for octet (RFC 4475 §2 explains the
notation; long repeated strings are written with Python's ``*`` where the RFC writes
``<repeat>``). Each valid message is checked for the values the RFC says it carries; each
invalid one must raise ``ParseError`` with the status a server should answer with.
"""

from __future__ import annotations

import time

import pytest

from pbx.errors import ParseError
from pbx.sip._lex import parse_params, split_commas
from pbx.sip.address import Address, parse_address
from pbx.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    CSeq,
    Headers,
    KeepAlive,
    Request,
    Response,
    StreamParser,
    parse_message,
)
from pbx.sip.uri import AbsoluteUri, SipUri, parse_uri
from pbx.sip.via import Via, parse_via


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def parse_response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def assert_round_trip(msg: Request | Response) -> None:
    again = parse_message(bytes(msg))
    assert again == msg
    assert bytes(again) == bytes(msg)


def crlf(text: str) -> bytes:
    """A message written with one header per line; lines end in CRLF, a blank line ends the head."""
    return text.replace("\n", "\r\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# RFC 4475 §3.1.1: valid messages
# ---------------------------------------------------------------------------------------------

# §3.1.1.1 A Short Tortuous INVITE
WSINV = (
    b'INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n'
    b'TO :\r\n'
    b' sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n'
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    b'  ;\r\n'
    b'  tag = 98asjd8\r\n'
    b'MaX-fOrWaRdS: 0068\r\n'
    b'Call-ID: wsinv.ndaksdj@192.0.2.1\r\n'
    b'Content-Length   : 150\r\n'
    b'cseq: 0009\r\n'
    b'  INVITE\r\n'
    b'Via  : SIP  /   2.0\r\n'
    b' /UDP\r\n'
    b'    192.0.2.2;branch=390skdjuw\r\n'
    b's :\r\n'
    b'NewFangledHeader:   newfangled value\r\n'
    b' continued newfangled value\r\n'
    b'UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Route:\r\n'
    b' <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n'
    b'v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n'
    b'  branch  =   z9hG4bK9ikj8  ,\r\n'
    b' SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n'
    b' z9hG4bK30239\r\n'
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    b'      newvalue ;\r\n'
    b'  secondparam ; q = 0.33\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.4\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.1.2 Wide Range of Valid Characters
INTMETH = (
    b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>\r\n'
    b'From: token1~` token2\'+_ token3*%!.- <sip:mundane@example.com>;fromParam\'\'~+*_!.-%="\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9";tag=_token~1\'+`*%!-.\r\n'
    b'Call-ID: intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{\r\n'
    b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    b'Max-Forwards: 255\r\n'
    b"extensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb\r\n"
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.1.1.3 Valid Use of the % Escaping Mechanism
ESC01 = (
    b'INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n'
    b'To: sip:%75se%72@example.com\r\n'
    b'From: <sip:I%20have%20spaces@example.net>;tag=938\r\n'
    b'Max-Forwards: 87\r\n'
    b'i: esc01.239409asdfakjkn23onasd0-3234\r\n'
    b'CSeq: 234234 INVITE\r\n'
    b'Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\n'
    b'C: application/sdp\r\n'
    b'Contact:\r\n'
    b'  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\n'
    b'Content-Length: 150\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.1\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.1.4 Escaped Nulls in URIs
ESCNULL = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: sip:null-%00-null@example.com\r\n'
    b'From: sip:null-%00-null@example.com;tag=839923423\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\n'
    b'CSeq: 14398234 REGISTER\r\n'
    b'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Contact: <sip:%00@host5.example.com>\r\n'
    b'Contact: <sip:%00%00@host5.example.com>\r\n'
    b'L:0\r\n'
    b'\r\n'
)

# §3.1.1.5 Use of % When It Is Not an Escape
ESC02 = (
    b'RE%47IST%45R sip:registrar.example.com SIP/2.0\r\n'
    b'To: "%Z%45" <sip:resource@example.com>\r\n'
    b'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\r\n'
    b'Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\r\n'
    b'Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\r\n'
    b'CSeq: 29344 RE%47IST%45R\r\n'
    b'Max-Forwards: 70\r\n'
    b'Contact: <sip:alias1@host1.example.com>\r\n'
    b'C%6Fntact: <sip:alias2@host2.example.com>\r\n'
    b'Contact: <sip:alias3@host3.example.com>\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.1.6 Message with No LWS between Display Name and <
LWSDISP = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: caller<sip:caller@example.com>;tag=323\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: lwsdisp.1234abcd@funky.example.com\r\n'
    b'CSeq: 60 OPTIONS\r\n'
    b'Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.1.7 Long Values in Header Fields
LONGREQ = (
    b"INVITE sip:user@example.com SIP/2.0\r\n"
    b'To: "I have a user name of ' + b"extreme" * 10 + b' proportion"<sip:user@example.com:6000;'
    b"unknownparam1=very" + b"long" * 20 + b"value;"
    b"longparam" + b"name" * 25 + b"=shortvalue;"
    b"very" + b"long" * 25 + b"ParameterNameWithNoValue>\r\n"
    b"F: sip:" + b"amazinglylongcallername" * 5 + b"@example.net;tag=1" + b"298" * 50 + b"2424;"
    b"unknownheaderparam" + b"name" * 20 + b"=unknowheaderparam" + b"value" * 15 + b";"
    b"unknownValueless" + b"paramname" * 10 + b"\r\n"
    b"Call-ID: longreq.one" + b"really" * 20 + b"longcallid\r\n"
    b"CSeq: 3882340 INVITE\r\n"
    b"Unknown-" + b"Long" * 20 + b"-Name: unknown-" + b"long" * 20 + b"-value; unknown-"
    + b"long" * 20 + b"-parameter-name = unknown-" + b"long" * 20 + b"-parameter-value\r\n"
    b"Via: SIP/2.0/TCP sip33.example.com\r\n"
    b"v: SIP/2.0/TCP sip32.example.com\r\n"
    b"V: SIP/2.0/TCP sip31.example.com\r\n"
    b"Via: SIP/2.0/TCP sip30.example.com\r\n"
    b"ViA: SIP/2.0/TCP sip29.example.com\r\n"
    b"VIa: SIP/2.0/TCP sip28.example.com\r\n"
    b"VIA: SIP/2.0/TCP sip27.example.com\r\n"
    b"via: SIP/2.0/TCP sip26.example.com\r\n"
    b"viA: SIP/2.0/TCP sip25.example.com\r\n"
    b"vIa: SIP/2.0/TCP sip24.example.com\r\n"
    b"vIA: SIP/2.0/TCP sip23.example.com\r\n"
    b"V :  SIP/2.0/TCP sip22.example.com\r\n"
    b"v :  SIP/2.0/TCP sip21.example.com\r\n"
    b"V  : SIP/2.0/TCP sip20.example.com\r\n"
    b"v  : SIP/2.0/TCP sip19.example.com\r\n"
    b"Via : SIP/2.0/TCP sip18.example.com\r\n"
    b"Via  : SIP/2.0/TCP sip17.example.com\r\n"
    + b"".join(b"Via: SIP/2.0/TCP sip%d.example.com\r\n" % n for n in range(16, 0, -1))
    + b"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very" + b"long" * 50
    + b"branchvalue\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:" + b"amazinglylongcallername" * 5 + b"@host5.example.net>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"l: 150\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49217 RTP/AVP 0 12\r\n"
    b"m=video 3227 RTP/AVP 31\r\n"
    b"a=rtpmap:31 LPC\r\n"
)

# §3.1.1.8 Extra Trailing Octets in a UDP Datagram
DBLREQ = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:j.user@example.com;tag=43251j3j324\r\n'
    b'Max-Forwards: 8\r\n'
    b'I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\n'
    b'Contact: sip:j.user@host.example.com\r\n'
    b'CSeq: 8 REGISTER\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
    b'\r\n'
    b'INVITE sip:joe@example.com SIP/2.0\r\n'
    b't: sip:joe@example.com\r\n'
    b'From: sip:caller@example.net;tag=141334\r\n'
    b'Max-Forwards: 8\r\n'
    b'Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 150\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.15\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm =video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
    b'\r\n'
)

# §3.1.1.9 Semicolon-Separated Parameters in URI User Part
SEMIURI = (
    b'OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\n'
    b'To: sip:j_user@example.com\r\n'
    b'From: sip:caller@example.org;tag=33242\r\n'
    b'Max-Forwards: 3\r\n'
    b'Call-ID: semiuri.0ha0isndaksdj\r\n'
    b'CSeq: 8 OPTIONS\r\n'
    b'Accept: application/sdp, application/pkcs7-mime,\r\n'
    b'        multipart/mixed, multipart/signed,\r\n'
    b'        message/sip, message/sipfrag\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.1.10 Varied and Unknown Transport Types
TRANSPORTS = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: <sip:caller@example.com>;tag=323\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID:  transports.kijh4akdnaqjkwendsasfdj\r\n'
    b'Accept: application/sdp\r\n'
    b'CSeq: 60 OPTIONS\r\n'
    b'Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\r\n'
    b'Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\r\n'
    b'Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\r\n'
    b'Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.1.11 Multipart MIME Message (the second part is a binary S/MIME signature)
MPART01_DER = bytes.fromhex(
    "3082015206092a864886f70d010702a08201433082013f020101310930070605"
    "2b0e03021a300b06092a864886f70d010701318201203082011c020101307c30"
    "70310b3009060355040613025553311330110603550408130a43616c69666f72"
    "6e69613111300f0603550407130853616e204a6f7365310e300c060355040a13"
    "05736970697431293027060355040b1320536970697420546573742043657274"
    "6966696361746520417574686f7269747902080195007102330113300706052b"
    "0e03021a300d06092a864886f70d01010105000481808ef466f948f0522dd2e5"
    "978e9d95aae9f2fe15a06659716292e8da2aa8d8350a68ceffae3cbd2bff1675"
    "ddd5648e593dd64728f26220f7e941749e330d9a15edabdb93d10c42102e7b72"
    "89d29cc0c9ae2efbc7c0cff9172f3b027e4fc027e1546de4b6aa3abb3e66cccb"
    "5dd6c64b8383149cb8e6ff182d944fe57b65bc99d005"
)
MPART01 = (
    b"MESSAGE sip:kumiko@example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:127.0.0.1:5080>\r\n"
    b"Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\r\n"
    b"Contact: <sip:fluffy@127.0.0.1:5070>\r\n"
    b"To: <sip:kumiko@example.org>\r\n"
    b"From: <sip:fluffy@example.com>;tag=2fb0dcc9\r\n"
    b"Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\r\n"
    b"Date: Sat, 15 Oct 2005 04:44:56 GMT\r\n"
    b"User-Agent: SIPimp.org/0.2.5 (curses)\r\n"
    b"Content-Length: 553\r\n"
    b"\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    + MPART01_DER
    + b"\r\n--7a9cbec02ceef655--\r\n"
)

# §3.1.1.12 Unusual Reason Phrase
UNREASON = (
    b'SIP/2.0 200 = 2**3 * 5**2 \xd0\xbd\xd0\xbe \xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2\xd1\x8f\xd0\xbd\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe \xd0\xb4\xd0\xb5\xd0\xb2\xd1\x8f\xd1\x82\xd1\x8c - \xd0\xbf\xd1\x80\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe\xd0\xb5\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n'
    b'Call-ID: unreason.1234ksdfak3j2erwedfsASdf\r\n'
    b'CSeq: 35 INVITE\r\n'
    b'From: sip:user@example.com;tag=11141343\r\n'
    b'To: sip:user@example.edu;tag=2229\r\n'
    b'Content-Length: 154\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Contact: <sip:user@host198.example.com>\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.198\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.198\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.1.13 Empty Reason Phrase
NOREASON = (
    b'SIP/2.0 100 \r\n'
    b'Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n'
    b'Call-ID: noreason.asndj203insdf99223ndf\r\n'
    b'CSeq: 35 INVITE\r\n'
    b'From: <sip:user@example.com>;tag=39ansfi3\r\n'
    b'To: <sip:user@example.edu>;tag=902jndnke3\r\n'
    b'Content-Length: 0\r\n'
    b'Contact: <sip:user@host105.example.com>\r\n'
    b'\r\n'
)


# ---------------------------------------------------------------------------------------------
# RFC 4475 §3.1.2: invalid messages
# ---------------------------------------------------------------------------------------------

# §3.1.2.1 Extraneous Header Field Separators
BADINV01 = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=134161461246\r\n'
    b'Max-Forwards: 7\r\n'
    b'Call-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n'
    b'Contact: "Joe" <sip:joe@example.org>;;;;\r\n'
    b'Content-Length: 152\r\n'
    b'Content-Type: application/sdp\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.15\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.2 Content Length Larger Than Message
CLERR = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'Max-Forwards: 80\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=93942939o2\r\n'
    b'Contact: <sip:caller@hungry.example.net>\r\n'
    b'Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 9999\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.155\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.155\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.3 Negative Content-Length
NCL = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'Max-Forwards: 254\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=32394234\r\n'
    b'Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\n'
    b'CSeq: 0 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n'
    b'Contact: <sip:caller@example53.example.net>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: -999\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.53\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.53\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.4 Request Scalar Fields with Overlarge Values
SCALAR02 = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\n"
    b"To: <sip:user@example.com>\r\n"
    b"From: <sip:user@example.com>;tag=239232jh3\r\n"
    b"CSeq: 36893488147419103232 REGISTER\r\n"
    b"Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\n"
    b"Max-Forwards: 300\r\n"
    b"Expires: 1" + b"0" * 100 + b"\r\n"
    b"Contact: <sip:user@host129.example.com>\r\n"
    b"  ;expires=280297596632815\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# §3.1.2.5 Response Scalar Fields with Overlarge Values
SCALARLG = (
    b'SIP/2.0 503 Service Unavailable\r\n'
    b'Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\r\n'
    b'To: <sip:user@example.com>\r\n'
    b'From: <sip:other@example.net>;tag=2easdjfejw\r\n'
    b'CSeq: 9292394834772304023312 OPTIONS\r\n'
    b'Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\r\n'
    b'Retry-After: 949302838503028349304023988\r\n'
    b'Warning: 1812 overture "In Progress"\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.1.2.6 Unterminated Quoted String in Display Name
QUOTBAL = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'To: "Mr. J. User <sip:j.user@example.com>\r\n'
    b'From: sip:caller@example.net;tag=93334\r\n'
    b'Max-Forwards: 10\r\n'
    b'Call-ID: quotbal.aksdj\r\n'
    b'Contact: <sip:caller@host59.example.net>\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 152\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.15\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.7 <> Enclosing Request-URI
LTGTRURI = (
    b'INVITE <sip:user@example.com> SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=39291\r\n'
    b'Max-Forwards: 23\r\n'
    b'Call-ID: ltgtruri.1@192.0.2.5\r\n'
    b'CSeq: 1 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.5\r\n'
    b'Contact: <sip:caller@host5.example.net>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 159\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.5\r\n'
    b't=3149328700 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.8 Malformed SIP Request-URI (embedded LWS)
LWSRURI = (
    b'INVITE sip:user@example.com; lr SIP/2.0\r\n'
    b'To: sip:user@example.com;tag=3xfe-9921883-z9f\r\n'
    b'From: sip:caller@example.net;tag=231413434\r\n'
    b'Max-Forwards: 5\r\n'
    b'Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\n'
    b'CSeq: 2130706432 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\r\n'
    b'Contact: <sip:caller@host1.example.net>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 159\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.1\r\n'
    b't=3149328700 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.9 Multiple SP Separating Request-Line Elements
LWSSTART = (
    b'INVITE  sip:user@example.com  SIP/2.0\r\n'
    b'Max-Forwards: 8\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=8814\r\n'
    b'Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\r\n'
    b'CSeq: 1893884 INVITE\r\n'
    b'Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\r\n'
    b'Contact: <sip:caller@host1.example.net>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 150\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.1\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.10 SP Characters at End of Request-Line
TRWS = (
    b'OPTIONS sip:remote-target@example.com SIP/2.0  \r\n'
    b'Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\r\n'
    b'To: <sip:remote-target@example.com>\r\n'
    b'From: <sip:local-resource@example.com>;tag=329429089\r\n'
    b'Call-ID: trws.oicu34958239neffasdhr2345r\r\n'
    b'Accept: application/sdp\r\n'
    b'CSeq: 238923 OPTIONS\r\n'
    b'Max-Forwards: 70\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.1.2.11 Escaped Headers in SIP Request-URI
ESCRURI = (
    b'INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=341518\r\n'
    b'Max-Forwards: 7\r\n'
    b'Contact: <sip:caller@host39923.example.net>\r\n'
    b'Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\r\n'
    b'CSeq: 149209342 INVITE\r\n'
    b'Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 150\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.1\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.12 Invalid Time Zone in Date Header Field
BADDATE = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=2234923\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\r\n'
    b'CSeq: 1392934 INVITE\r\n'
    b'Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Date: Fri, 01 Jan 2010 16:00:00 EST\r\n'
    b'Contact: <sip:caller@host5.example.net>\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Content-Length: 150\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.5\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.13 Failure to Enclose name-addr URI in <>
REGBADCT = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:user@example.com;tag=998332\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\r\n'
    b'CSeq: 1 REGISTER\r\n'
    b'Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\r\n'
    b'Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.2.14 Spaces within addr-spec
BADASPEC = (
    b'OPTIONS sip:user@example.org SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\r\n'
    b'Max-Forwards: 70\r\n'
    b'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\r\n'
    b'To: "Watson, Thomas" < sip:t.watson@example.org >\r\n'
    b'Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\r\n'
    b'Accept: application/sdp\r\n'
    b'CSeq: 3923239 OPTIONS\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.2.15 Non-token Characters in Display Name
BADDN = (
    b'OPTIONS sip:t.watson@example.org SIP/2.0\r\n'
    b'Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\r\n'
    b'Max-Forwards:      70\r\n'
    b'From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n'
    b'To:      Watson, Thomas <sip:t.watson@example.org>\r\n'
    b'Call-ID: baddn.31415@c.example.com\r\n'
    b'Accept: application/sdp\r\n'
    b'CSeq:    3923239 OPTIONS\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.2.16 Unknown Protocol Version
BADVERS = (
    b'OPTIONS sip:t.watson@example.org SIP/7.0\r\n'
    b'Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Max-Forwards:     70\r\n'
    b'From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\n'
    b'To:      T. Watson <sip:t.watson@example.org>\r\n'
    b'Call-ID: badvers.31417@c.example.com\r\n'
    b'CSeq:    1 OPTIONS\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.2.17 Start Line and CSeq Method Mismatch
MISMATCH01 = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=34525\r\n'
    b'Max-Forwards: 6\r\n'
    b'Call-ID: mismatch01.dj0234sxdfl3\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.1.2.18 Unknown Method with CSeq Method Mismatch
MISMATCH02 = (
    b'NEWMETHOD sip:user@example.com SIP/2.0\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=34525\r\n'
    b'Max-Forwards: 6\r\n'
    b'Call-ID: mismatch02.dj0234sxdfl3\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Contact: <sip:caller@host.example.net>\r\n'
    b'Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\r\n'
    b'Content-Type: application/sdp\r\n'
    b'l: 138\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n'
    b'c=IN IP4 192.0.2.1\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.1.2.19 Overlarge Response Code
BIGCODE = (
    b'SIP/2.0 4294967301 better not break the receiver\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n'
    b'Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\r\n'
    b'CSeq: 353494 INVITE\r\n'
    b'From: <sip:user@example.com>;tag=39ansfi3\r\n'
    b'To: <sip:user@example.edu>;tag=902jndnke3\r\n'
    b'Content-Length: 0\r\n'
    b'Contact: <sip:user@host105.example.com>\r\n'
    b'\r\n'
)


# ---------------------------------------------------------------------------------------------
# RFC 4475 §3.2 transaction layer, §3.3 application layer, §3.4 backward compatibility
# ---------------------------------------------------------------------------------------------

# §3.2.1 Missing Transaction Identifier
BADBRANCH = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.org;tag=33242\r\n'
    b'Max-Forwards: 3\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n'
    b'Accept: application/sdp\r\n'
    b'Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n'
    b'CSeq: 8 OPTIONS\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.3.1 Missing Required Header Fields
INSUF = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'CSeq: 193942 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n'
    b'Content-Type: application/sdp\r\n'
    b'l: 152\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.95\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.95\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.3.2 Request-URI with Unknown Scheme
UNKSCM = (
    b'OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=384\r\n'
    b'Max-Forwards: 3\r\n'
    b'Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\n'
    b'CSeq: 3923423 OPTIONS\r\n'
    b'Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.3.3 Request-URI with Known but Atypical Scheme
NOVELSC = (
    b'OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=384\r\n'
    b'Max-Forwards: 3\r\n'
    b'Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\r\n'
    b'CSeq: 3923423 OPTIONS\r\n'
    b'Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.3.4 Unknown URI Schemes in Header Fields
UNKSM2 = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: isbn:2983792873\r\n'
    b'From: <http://www.example.com>;tag=3234233\r\n'
    b'Call-ID: unksm2.daksdj@hyphenated-host.example.com\r\n'
    b'CSeq: 234902 REGISTER\r\n'
    b'Max-Forwards: 70\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\r\n'
    b'Contact: <name:John_Smith>\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.3.5 Proxy-Require and Require
BEXT01 = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:j_user@example.com\r\n'
    b'From: sip:caller@example.net;tag=242etr\r\n'
    b'Max-Forwards: 6\r\n'
    b'Call-ID: bext01.0ha0isndaksdj\r\n'
    b'Require: nothingSupportsThis, nothingSupportsThisEither\r\n'
    b'Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n'
    b'CSeq: 8 OPTIONS\r\n'
    b'Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.3.6 Unknown Content-Type
INVUT = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'Contact: <sip:caller@host5.example.net>\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:caller@example.net;tag=8392034\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: invut.0ha0isndaksdjadsfij34n23d\r\n'
    b'CSeq: 235448 INVITE\r\n'
    b'Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw\r\n'
    b'Content-Type: application/unknownformat\r\n'
    b'Content-Length: 40\r\n'
    b'\r\n'
    b'<audio>\r\n'
    b' <pcmu port="443"/>\r\n'
    b'</audio>\r\n'
)

# §3.3.7 Unknown Authorization Scheme
REGAUT01 = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: sip:j.user@example.com\r\n'
    b'From: sip:j.user@example.com;tag=87321hj23128\r\n'
    b'Max-Forwards: 8\r\n'
    b'Call-ID: regaut01.0ha0isndaksdj\r\n'
    b'CSeq: 9338 REGISTER\r\n'
    b'Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\r\n'
    b'Authorization: NoOneKnowsThisScheme opaque-data=here\r\n'
    b'Content-Length:0\r\n'
    b'\r\n'
)

# §3.3.8 Multiple Values in Single Value Required Fields
MULTI01 = (
    b'INVITE sip:user@company.com SIP/2.0\r\n'
    b'Contact: <sip:caller@host25.example.net>\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\r\n'
    b'Max-Forwards: 70\r\n'
    b'CSeq: 5 INVITE\r\n'
    b'Call-ID: multi01.98asdh@192.0.2.1\r\n'
    b'CSeq: 59 INVITE\r\n'
    b'Call-ID: multi01.98asdh@192.0.2.2\r\n'
    b'From: sip:caller@example.com;tag=3413415\r\n'
    b'To: sip:user@example.com\r\n'
    b'To: sip:other@example.net\r\n'
    b'From: sip:caller@example.net;tag=2923420123\r\n'
    b'Content-Type: application/sdp\r\n'
    b'l: 154\r\n'
    b'Contact: <sip:caller@host36.example.net>\r\n'
    b'Max-Forwards: 5\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.25\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.25\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
    b'\r\n'
)

# §3.3.9 Multiple Content-Length Values
MCL01 = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:other@example.net;tag=3923942\r\n'
    b'Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\r\n'
    b'CSeq: 15932 OPTIONS\r\n'
    b'Content-Length: 13\r\n'
    b'Max-Forwards: 60\r\n'
    b'Content-Length: 5\r\n'
    b'Content-Type: text/plain\r\n'
    b'\r\n'
    b"There's no way to know how many octets are supposed to be here.\r\n"
    b'\r\n'
)

# §3.3.10 200 OK Response with Broadcast Via Header Field Value
BCAST = (
    b'SIP/2.0 200 OK\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n'
    b'Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n'
    b'Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\r\n'
    b'CSeq: 35 INVITE\r\n'
    b'From: sip:user@example.com;tag=11141343\r\n'
    b'To: sip:user@example.edu;tag=2229\r\n'
    b'Content-Length: 154\r\n'
    b'Content-Type: application/sdp\r\n'
    b'Contact: <sip:user@host28.example.com>\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.198\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.198\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.3.11 Max-Forwards of Zero
ZEROMF = (
    b'OPTIONS sip:user@example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:caller@example.net;tag=3ghsd41\r\n'
    b'Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\r\n'
    b'CSeq: 39234321 OPTIONS\r\n'
    b'Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\r\n'
    b'Max-Forwards: 0\r\n'
    b'Content-Length: 0\r\n'
    b'\r\n'
)

# §3.3.12 REGISTER with a Contact Header Parameter
CPARAM01 = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\n'
    b'Max-Forwards: 70\r\n'
    b'From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\r\n'
    b'To: sip:watson@example.com\r\n'
    b'Call-ID: cparam01.70710@saturn.example.com\r\n'
    b'CSeq: 2 REGISTER\r\n'
    b'Contact: sip:+19725552222@gw1.example.net;unknownparam\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.3.13 REGISTER with a url-parameter
CPARAM02 = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\n'
    b'Max-Forwards: 70\r\n'
    b'From: sip:watson@example.com;tag=838293\r\n'
    b'To: sip:watson@example.com\r\n'
    b'Call-ID: cparam02.70710@saturn.example.com\r\n'
    b'CSeq: 3 REGISTER\r\n'
    b'Contact: <sip:+19725552222@gw1.example.net;unknownparam>\r\n'
    b'l: 0\r\n'
    b'\r\n'
)

# §3.3.14 REGISTER with a URL Escaped Header
REGESCRT = (
    b'REGISTER sip:example.com SIP/2.0\r\n'
    b'To: sip:user@example.com\r\n'
    b'From: sip:user@example.com;tag=8\r\n'
    b'Max-Forwards: 70\r\n'
    b'Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\r\n'
    b'CSeq: 14398234 REGISTER\r\n'
    b'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n'
    b'M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n'
    b'L:0\r\n'
    b'\r\n'
)

# §3.3.15 Unacceptable Accept Offering
SDP01 = (
    b'INVITE sip:user@example.com SIP/2.0\r\n'
    b'To: sip:j_user@example.com\r\n'
    b'Contact: <sip:caller@host15.example.net>\r\n'
    b'From: sip:caller@example.net;tag=234\r\n'
    b'Max-Forwards: 5\r\n'
    b'Call-ID: sdp01.ndaksdj9342dasdd\r\n'
    b'Accept: text/nobodyKnowsThis\r\n'
    b'CSeq: 8 INVITE\r\n'
    b'Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\r\n'
    b'Content-Length: 150\r\n'
    b'Content-Type: application/sdp\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.5\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0 12\r\n'
    b'm=video 3227 RTP/AVP 31\r\n'
    b'a=rtpmap:31 LPC\r\n'
)

# §3.4.1 INVITE with RFC 2543 Syntax
INV2543 = (
    b'INVITE sip:UserB@example.com SIP/2.0\r\n'
    b'Via: SIP/2.0/UDP iftgw.example.com\r\n'
    b'From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n'
    b'Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\r\n'
    b'To: sip:+16505552222@ss1.example.net;user=phone\r\n'
    b'Call-ID: inv2543.1717@ift.client.example.com\r\n'
    b'CSeq: 56 INVITE\r\n'
    b'Content-Type: application/sdp\r\n'
    b'\r\n'
    b'v=0\r\n'
    b'o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n'
    b's=-\r\n'
    b'c=IN IP4 192.0.2.5\r\n'
    b't=0 0\r\n'
    b'm=audio 49217 RTP/AVP 0\r\n'
)


# ---------------------------------------------------------------------------------------------
# RFC 4475 valid messages: they parse, with the values the RFC describes
# ---------------------------------------------------------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:
    req = parse_request(WSINV)
    assert req.method == "INVITE"
    assert req.uri == SipUri("chair-dnrc.example.com", "vivekg", params={"unknownparam": None})
    assert req.to == Address(parse_uri("sip:vivekg@chair-dnrc.example.com"), None,
                             {"tag": "1918181833n"})
    assert req.from_.display == 'J Rosenberg \\"'
    assert req.from_.uri == parse_uri("sip:jdrosen@example.com")
    assert req.from_.tag == "98asjd8"
    assert req.headers.get("Max-Forwards") == "0068"
    assert req.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert req.cseq == CSeq(9, "INVITE")
    assert req.vias == [
        Via("UDP", "192.0.2.2", None, {"branch": "390skdjuw"}),
        Via("TCP", "spindle.example.com", None, {"branch": "z9hG4bK9ikj8"}),
        Via("UDP", "192.168.255.111", None, {"branch": "z9hG4bK30239"}),
    ]
    assert req.headers.get("Subject") == ""
    assert req.headers.get("s") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    # An unknown header is opaque: never split at its commas.
    assert req.headers.values("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    assert req.content_type == "application/sdp"
    routes = req.headers.values("Route")
    assert routes == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    assert req.contacts == [Address(parse_uri("sip:jdrosen@example.com"), 'Quoted string ""',
                                    {"newparam": "newvalue", "secondparam": None, "q": "0.33"})]
    assert len(req.body) == 150
    assert req.body.startswith(b"v=0\r\n") and req.body.endswith(b"a=rtpmap:31 LPC\r\n")
    assert_round_trip(req)


def test_intmeth_wide_range_of_valid_characters() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    req = parse_request(INTMETH)
    assert req.method == method  # an unknown method; '%' is not an escape here
    assert isinstance(req.uri, SipUri)
    assert req.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.uri.host == "example.com"
    assert req.branch == "z9hG4bK-.!%66*_+`'~"
    # quoted-pairs in the display name, including an escaped NUL
    assert req.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert isinstance(req.to.uri, SipUri)
    assert req.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.from_.display == "token1~` token2'+_ token3*%!.-"
    assert req.from_.params == {"fromparam''~+*_!.-%": '"работающий"',
                                "tag": "_token~1'+`*%!-."}
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.cseq == CSeq(139122385, method)
    assert req.headers.get("Max-Forwards") == "255"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert req.body == b""
    assert_round_trip(req)


def test_esc01_escapes_are_decoded_and_compare_equal() -> None:
    req = parse_request(ESC01)
    assert req.uri == SipUri("example.net", "sips:user@example.com")
    assert str(req.uri) == "sip:sips%3Auser%40example.com@example.net"
    assert req.to.uri == parse_uri("sip:user@example.com")
    assert req.from_.uri == SipUri("example.net", "I have spaces")
    assert req.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # "i" is Call-ID
    assert req.content_type == "application/sdp"  # "C" is Content-Type
    [contact] = req.contacts
    assert contact.uri == SipUri("host5.example.net", "caller",
                                 params={"lr": None, "name": "value%41"})
    assert len(req.body) == 150
    assert_round_trip(req)


def test_escnull_escaped_nuls_in_uris() -> None:
    req = parse_request(ESCNULL)
    assert isinstance(req.to.uri, SipUri) and req.to.uri.user == "null-\x00-null"
    assert isinstance(req.from_.uri, SipUri) and req.from_.uri.user == "null-\x00-null"
    assert [c.uri.user for c in req.contacts] == ["\x00", "\x00\x00"]
    assert str(req.contacts[1].uri) == "sip:%00%00@host5.example.com"
    assert req.body == b""  # "L:0"
    assert_round_trip(req)


def test_esc02_percent_that_is_not_an_escape() -> None:
    req = parse_request(ESC02)
    assert req.method == "RE%47IST%45R"
    assert req.method != "REGISTER"
    assert req.to.display == "%Z%45"
    assert req.from_.display == "%Z%45"
    assert req.branch == "z9hG4bK209%fzsnel234"
    assert req.cseq == CSeq(29344, "RE%47IST%45R")
    # "C%6Fntact" is an unknown header, not a Contact.
    assert [c.uri for c in req.contacts] == [parse_uri("sip:alias1@host1.example.com"),
                                             parse_uri("sip:alias3@host3.example.com")]
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert_round_trip(req)


def test_lwsdisp_no_space_between_display_name_and_bracket() -> None:
    req = parse_request(LWSDISP)
    assert req.from_ == Address(parse_uri("sip:caller@example.com"), "caller", {"tag": "323"})
    assert_round_trip(req)


def test_longreq_long_values_and_many_vias() -> None:
    req = parse_request(LONGREQ)
    assert req.to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    assert req.to.uri == SipUri("example.com", "user", 6000, params={
        "unknownparam1": "very" + "long" * 20 + "value",
        "longparam" + "name" * 25: "shortvalue",
        ("very" + "long" * 25 + "ParameterNameWithNoValue").lower(): None,
    })
    assert isinstance(req.from_.uri, SipUri)
    assert req.from_.uri.user == "amazinglylongcallername" * 5
    assert req.from_.tag == "1" + "298" * 50 + "2424"
    assert len(req.from_.params) == 3
    assert req.call_id == "longreq.one" + "really" * 20 + "longcallid"
    vias = req.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[33].params == {"received": "192.0.2.5",
                               "branch": "very" + "long" * 50 + "branchvalue"}
    assert vias[33].received == "192.0.2.5"
    assert req.headers.get("Unknown-" + "Long" * 20 + "-Name", "").startswith("unknown-long")
    assert len(req.body) == 150
    assert_round_trip(req)


def test_dblreq_extra_octets_in_a_datagram_are_ignored() -> None:
    req = parse_request(DBLREQ)
    assert req.method == "REGISTER"
    assert req.body == b""
    assert req.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"  # "I" is Call-ID
    assert_round_trip(req)


def test_semiuri_semicolons_in_the_user_part() -> None:
    req = parse_request(SEMIURI)
    assert req.uri == SipUri("example.com", "user;par=u@example.net")
    assert str(req.uri) == "sip:user;par=u%40example.net@example.com"
    assert req.headers.values("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]
    assert_round_trip(req)


def test_transports_varied_and_unknown() -> None:
    req = parse_request(TRANSPORTS)
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"
    assert_round_trip(req)


def test_mpart01_binary_body_is_kept_exactly() -> None:
    req = parse_request(MPART01)
    assert len(req.body) == 553
    assert MPART01_DER in req.body
    assert req.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert req.content_type == "multipart/mixed"
    assert req.vias[0].params == {"branch": "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
                                  "rport": None}
    assert_round_trip(req)


def test_unreason_utf8_reason_phrase() -> None:
    resp = parse_response(UNREASON)
    assert resp.status == 200
    assert resp.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(resp.body) == 154
    assert_round_trip(resp)


def test_noreason_empty_reason_phrase() -> None:
    resp = parse_response(NOREASON)
    assert resp.status == 100
    assert resp.reason == ""
    assert resp.to.tag == "902jndnke3"
    assert_round_trip(resp)


# ---------------------------------------------------------------------------------------------
# RFC 4475 invalid messages: ParseError with the status to answer
# ---------------------------------------------------------------------------------------------

INVALID = [
    ("badinv01", BADINV01, 400),  # ";;,;,," in Via, ";;;;" in Contact
    ("clerr", CLERR, 400),  # datagram shorter than Content-Length
    ("ncl", NCL, 400),  # negative Content-Length
    ("scalar02", SCALAR02, 400),  # CSeq > 2**32-1 (and Max-Forwards > 255)
    ("scalarlg", SCALARLG, 400),  # a response: the 400 means "drop it"
    ("quotbal", QUOTBAL, 400),
    ("ltgtruri", LTGTRURI, 400),
    ("lwsruri", LWSRURI, 400),
    ("lwsstart", LWSSTART, 400),
    ("trws", TRWS, 400),
    ("escruri", ESCRURI, 400),
    ("regbadct", REGBADCT, 400),
    ("badaspec", BADASPEC, 400),
    ("baddn", BADDN, 400),
    ("badvers", BADVERS, 505),
    ("mismatch01", MISMATCH01, 400),
    ("mismatch02", MISMATCH02, 400),
    ("bigcode", BIGCODE, 400),
    ("insuf", INSUF, 400),
    ("multi01", MULTI01, 400),
    ("mcl01", MCL01, 400),
]


@pytest.mark.parametrize(("name", "data", "status"), INVALID, ids=[i[0] for i in INVALID])
def test_rfc4475_invalid_messages_raise_parse_error(name: str, data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == status


def test_scalar02_each_overlarge_value_alone_is_rejected() -> None:
    fixed = SCALAR02.replace(b"36893488147419103232", b"1")
    with pytest.raises(ParseError, match="Max-Forwards"):
        parse_message(fixed)
    fixed = fixed.replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
    with pytest.raises(ParseError, match="Expires"):
        parse_message(fixed)
    fixed = fixed.replace(b"Expires: 1" + b"0" * 100, b"Expires: 3600")
    assert parse_request(fixed).cseq == CSeq(1, "REGISTER")


def test_multi01_each_duplicated_single_header_is_rejected() -> None:
    base = crlf(
        "INVITE sip:user@company.com SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n"
        "Max-Forwards: 70\n"
        "CSeq: 5 INVITE\n"
        "Call-ID: multi01.98asdh@192.0.2.1\n"
        "From: sip:caller@example.com;tag=3413415\n"
        "To: sip:user@example.com\n"
        "Expires: 60\n"
        "Content-Type: application/sdp\n"
        "Content-Length: 0\n\n")
    assert parse_request(base).cseq == CSeq(5, "INVITE")
    for extra in ("CSeq: 59 INVITE", "Call-ID: multi01.98asdh@192.0.2.2",
                  "From: sip:caller@example.net;tag=2923420123", "To: sip:other@example.net",
                  "Max-Forwards: 5", "Content-Length: 1", "Expires: 5",
                  "Content-Type: text/plain"):
        data = base.replace(b"\r\n\r\n", f"\r\n{extra}\r\n\r\n".encode())
        with pytest.raises(ParseError, match="more than one") as info:
            parse_message(data)
        assert info.value.status_hint == 400


def test_escruri_is_fine_outside_the_request_uri() -> None:
    # Escaped headers are legal in a Contact URI (§3.3.14), just not in the Request-URI.
    fixed = ESCRURI.replace(b"?Route=%3Csip:example.com%3E", b"")
    assert parse_request(fixed).uri == parse_uri("sip:user@example.com")


# ---------------------------------------------------------------------------------------------
# RFC 4475 §3.2-§3.4: messages a parser accepts (and the TU may refuse)
# ---------------------------------------------------------------------------------------------


def test_baddate_is_not_a_parse_error() -> None:
    # §3.1.2.12: reject only if the Date matters; the parser keeps it as text.
    req = parse_request(BADDATE)
    assert req.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_badbranch_magic_cookie_without_identifier() -> None:
    assert parse_request(BADBRANCH).branch == "z9hG4bK"


def test_unknown_and_atypical_request_uri_schemes_parse_for_a_416() -> None:
    assert parse_request(UNKSCM).uri == AbsoluteUri("nobodyknowsthisscheme",
                                                      "totallyopaquecontent")
    assert parse_request(NOVELSC).uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")


def test_unksm2_unknown_schemes_in_header_fields() -> None:
    req = parse_request(UNKSM2)
    assert req.to.uri == AbsoluteUri("isbn", "2983792873")
    assert req.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert [c.uri for c in req.contacts] == [AbsoluteUri("name", "John_Smith")]
    assert_round_trip(req)


def test_tu_level_messages_parse() -> None:
    bext = parse_request(BEXT01)
    assert bext.headers.values("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert bext.headers.values("Proxy-Require") == ["noProxiesSupportThis",
                                                    "norDoAnyProxiesSupportThis"]
    assert parse_request(INVUT).content_type == "application/unknownformat"
    auth = parse_request(REGAUT01).headers.get("Authorization")
    assert auth == "NoOneKnowsThisScheme opaque-data=here"
    assert parse_request(SDP01).headers.values("Accept") == ["text/nobodyKnowsThis"]
    assert parse_request(ZEROMF).headers.get("Max-Forwards") == "0"  # the TU answers 483
    for data in (BEXT01, INVUT, REGAUT01, SDP01, ZEROMF):
        assert_round_trip(parse_message(data))


def test_bcast_response_with_broadcast_via() -> None:
    resp = parse_response(BCAST)
    assert [v.host for v in resp.vias] == ["192.0.2.198", "255.255.255.255"]


def test_cparam01_addr_spec_parameters_belong_to_the_header() -> None:
    [contact] = parse_request(CPARAM01).contacts
    assert contact.uri == SipUri("gw1.example.net", "+19725552222")
    assert contact.params == {"unknownparam": None}


def test_cparam02_name_addr_parameters_belong_to_the_uri() -> None:
    [contact] = parse_request(CPARAM02).contacts
    assert contact.uri == SipUri("gw1.example.net", "+19725552222",
                                 params={"unknownparam": None})
    assert contact.params == {}


def test_regescrt_escaped_header_in_a_contact_uri() -> None:
    req = parse_request(REGESCRT)
    [contact] = req.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert_round_trip(req)


def test_inv2543_rfc2543_syntax() -> None:
    req = parse_request(INV2543)
    assert req.branch == ""
    assert req.vias[0].params == {}
    assert "Max-Forwards" not in req.headers
    # addr-spec form: ";user=phone" is a parameter of the To header, not of the URI.
    assert req.to == Address(SipUri("ss1.example.net", "+16505552222"), None, {"user": "phone"})
    assert req.from_.uri == SipUri("ift.client.example.net", "+13035551111",
                                   params={"user": "phone"})
    assert req.body.startswith(b"v=0\r\n")  # no Content-Length: the datagram's rest
    assert len(req.body) == len(INV2543) - INV2543.index(b"\r\n\r\n") - 4
    assert_round_trip(req)


# ---------------------------------------------------------------------------------------------
# RFC 5118: IPv6
# ---------------------------------------------------------------------------------------------


def _v6(start: str, *headers: str, body: str = "") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


_V6_COMMON = ("To: sip:user@example.com", "From: sip:user@example.com;tag=81x2",
              "Call-ID: SSG9559905523997077@hlau_4100", "Max-Forwards: 70")


def test_rfc5118_4_1_valid_ipv6_references() -> None:
    req = parse_request(_v6("REGISTER sip:[2001:db8::10] SIP/2.0", *_V6_COMMON,
                            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
                            'Contact: "Caller" <sip:caller@[2001:db8::1]>',
                            "CSeq: 98176 REGISTER"))
    assert req.uri == SipUri("[2001:db8::10]")
    assert req.vias[0].host == "[2001:db8::9:1]" and req.vias[0].host_bare == "2001:db8::9:1"
    assert req.contacts[0].uri == SipUri("[2001:db8::1]", "caller")
    assert_round_trip(req)


def test_rfc5118_4_2_ipv6_without_brackets_is_rejected() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(_v6("REGISTER sip:2001:db8::10 SIP/2.0", *_V6_COMMON,
                          "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
                          "CSeq: 98176 REGISTER"))
    assert info.value.status_hint == 400


def test_rfc5118_4_3_and_4_4_port_inside_and_outside_the_brackets() -> None:
    ambiguous = parse_request(_v6("REGISTER sip:[2001:db8::10:5070] SIP/2.0", *_V6_COMMON,
                                  "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
                                  "CSeq: 98176 REGISTER"))
    assert ambiguous.uri == SipUri("[2001:db8::10:5070]")  # an address, no port
    explicit = parse_request(_v6("REGISTER sip:[2001:db8::10]:5070 SIP/2.0", *_V6_COMMON,
                                 "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
                                 "CSeq: 98176 REGISTER"))
    assert explicit.uri == SipUri("[2001:db8::10]", port=5070)


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_rfc5118_4_5_received_with_and_without_brackets(received: str) -> None:
    req = parse_request(_v6(
        "BYE sip:[2001:db8::10] SIP/2.0", *_V6_COMMON,
        f"Via: SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3-111",
        "CSeq: 321 BYE"))
    via = req.vias[0]
    assert via.params["received"] == received
    assert via.received == "2001:db8::9:255"
    assert via.branch == "z9hG4bKas3-111"


def test_rfc5118_4_6_and_4_8_ipv6_in_sdp_bodies() -> None:
    sdp = ("v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\ns=Live video feed\r\n"
           "c=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
           "m=video 6024 RTP/AVP 107\r\nc=IN IP4 192.0.2.1\r\n")
    req = parse_request(_v6("INVITE sip:user@[2001:db8::10] SIP/2.0", *_V6_COMMON[1:],
                            "To: sip:user@[2001:db8::10]",
                            "Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111",
                            'Contact: "Caller" <sip:caller@[2001:db8::20]>',
                            "CSeq: 8612 INVITE", "Content-Type: application/sdp", body=sdp))
    assert req.body == sdp.encode()
    assert req.to.uri == SipUri("[2001:db8::10]", "user")


def test_rfc5118_4_7_mixed_ipv4_and_ipv6_vias() -> None:
    req = parse_request(_v6(
        "BYE sip:user@host.example.net SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
        "Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
        "Call-ID: 997077@lau_4100", "Max-Forwards: 70", "CSeq: 89187 BYE",
        "To: sip:user@example.net;tag=9817--94", "From: sip:user@example.com;tag=81x2"))
    assert [(v.host, v.port) for v in req.vias] == [
        ("[2001:db8::9:1]", 6050), ("192.0.2.1", None), ("[2001:db8::9:255]", None)]
    assert req.vias[2].received == "192.0.2.200"


def test_rfc5118_4_9_ipv4_mapped_ipv6() -> None:
    req = parse_request(_v6(
        "INVITE sip:user@example.com SIP/2.0", "To: sip:user@example.com",
        "From: sip:user@east.example.com;tag=81x2",
        "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
        "Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111",
        "Call-ID: SSG9559905523997077@hlau_4100",
        'Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>',
        "CSeq: 612 INVITE", "Max-Forwards: 70"))
    assert req.vias[0].port == 19823
    assert req.vias[0].host == "[::ffff:c000:20a]"  # normalized (RFC 5952 compressed form)
    assert req.contacts[0].uri == parse_uri("sip:ted@[::ffff:c000:202]")
    assert_round_trip(req)


@pytest.mark.parametrize("reference", ["[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]"])
def test_rfc5118_4_10_three_colon_abnf_bug_is_tolerated(reference: str) -> None:
    req = parse_request(_v6(f"OPTIONS sip:user@{reference} SIP/2.0",
                            f"To: sip:user@{reference}", "From: sip:user@example.com;tag=810x2",
                            "Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111",
                            "Call-ID: G9559905523997077@hlau_4100", "CSeq: 689 OPTIONS",
                            "Max-Forwards: 70"))
    assert req.uri == SipUri("[2001:db8::c000:201]", "user")
    assert req.to.uri == req.uri


# ---------------------------------------------------------------------------------------------
# Syntax features
# ---------------------------------------------------------------------------------------------

BASE = crlf(
    "OPTIONS sip:bob@biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\n"
    "Max-Forwards: 70\n"
    "To: Bob <sip:bob@biloxi.example.com>\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n"
    "CSeq: 63104 OPTIONS\n"
    "Content-Length: 0\n\n")


def with_header(line: str, data: bytes = BASE) -> bytes:
    """``data`` with one more header line before the blank line."""
    head, _, body = data.partition(b"\r\n\r\n")
    return head + b"\r\n" + line.encode() + b"\r\n\r\n" + body


def replace_header(name: str, line: str | None, data: bytes = BASE) -> bytes:
    """``data`` with the header line starting ``name:`` replaced (or removed if ``line`` is None)."""
    lines = data.split(b"\r\n")
    prefix = name.encode() + b":"
    assert any(ln.startswith(prefix) for ln in lines), name
    out = [(line.encode() if line is not None else None) if ln.startswith(prefix) else ln
           for ln in lines]
    return b"\r\n".join(x for x in out if x is not None)


def test_base_message_parses() -> None:
    req = parse_request(BASE)
    assert req.method == "OPTIONS"
    assert req.cseq == CSeq(63104, "OPTIONS")
    assert_round_trip(req)


@pytest.mark.parametrize(("compact", "name", "value"), [
    ("a", "Accept-Contact", "*;audio"), ("b", "Referred-By", "<sip:a@example.com>"),
    ("c", "Content-Type", "text/plain"), ("d", "Request-Disposition", "proxy"),
    ("e", "Content-Encoding", "gzip"), ("j", "Reject-Contact", "*;video"),
    ("k", "Supported", "timer"), ("m", "Contact", "<sip:a@example.com>"),
    ("n", "Identity-Info", "<https://example.com/cert>"), ("o", "Event", "presence"),
    ("r", "Refer-To", "<sip:c@example.com>"), ("s", "Subject", "lunch"),
    ("u", "Allow-Events", "presence"), ("x", "Session-Expires", "1800"), ("y", "Identity", "abc"),
])
def test_compact_header_forms(compact: str, name: str, value: str) -> None:
    for spelling in (compact, compact.upper()):
        req = parse_request(with_header(f"{spelling}: {value}"))
        assert req.headers.get(name) == value
        assert req.headers.get(compact) == value
        assert f"\r\n{name}: {value}\r\n".encode() in bytes(req)


def test_compact_forms_of_the_core_headers() -> None:
    data = crlf(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\n"
        "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\n"
        "t: <sip:bob@biloxi.example.com>\n"
        "f: <sip:alice@atlanta.example.com>;tag=1928301774\n"
        "i: a84b4c76e66710\n"
        "CSeq: 1 INVITE\n"
        "m: <sip:alice@pc33.atlanta.example.com>\n"
        "c: application/sdp\n"
        "l: 4\n\nv=0\n")
    req = parse_request(data)
    assert req.call_id == "a84b4c76e66710"
    assert req.to.uri == parse_uri("sip:bob@biloxi.example.com")
    assert req.from_.tag == "1928301774"
    assert req.contacts[0].uri == parse_uri("sip:alice@pc33.atlanta.example.com")
    assert req.body == b"v=0\r"  # exactly four octets
    assert [name for name, _ in req.headers] == ["Via", "To", "From", "Call-ID", "CSeq",
                                                 "Contact", "Content-Type"]
    assert_round_trip(req)


def test_header_names_are_case_insensitive() -> None:
    req = parse_request(with_header("X-Custom-Thing: 1", BASE.replace(b"Call-ID", b"cALL-iD")))
    assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    for name in ("x-custom-thing", "X-CUSTOM-THING", "X-Custom-Thing"):
        assert req.headers.get(name) == "1"
        assert name in req.headers
    assert bytes(req).count(b"Call-ID: a84b") == 1  # canonical spelling on output


def test_folded_headers_with_spaces_and_tabs() -> None:
    data = with_header("Subject: first\r\n\tsecond \r\n   third",
                       BASE.replace(b"CSeq: 63104 OPTIONS", b"CSeq:\r\n 63104\r\n\tOPTIONS"))
    req = parse_request(data)
    assert req.headers.get("Subject") == "first second third"
    assert req.cseq == CSeq(63104, "OPTIONS")


def test_continuation_line_before_any_header_is_rejected() -> None:
    with pytest.raises(ParseError):
        parse_message(BASE.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n Via"))


def test_multi_valued_headers_split_at_top_level_commas_only() -> None:
    data = with_header('Contact: "Doe, John" <sip:john@example.com;x=1>;q=0.5, '
                       "<sip:other@example.com>", BASE)
    data = with_header("Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>", data)
    data = with_header("Route: <sip:p3.example.com;lr>", data)
    data = data.replace(b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
                        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/TCP "
                        b"b.example.com:5061;branch=z9hG4bK2\r\nVia: SIP/2.0/TLS c.example.com"
                        b";branch=z9hG4bK3")
    req = parse_request(data)
    assert [(c.display, str(c.uri)) for c in req.contacts] == [
        ("Doe, John", "sip:john@example.com;x=1"), (None, "sip:other@example.com")]
    assert req.headers.values("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>",
                                           "<sip:p3.example.com;lr>"]
    assert len(req.headers.get_all("Route")) == 2
    assert [(v.transport, v.host, v.port, v.branch) for v in req.vias] == [
        ("UDP", "a.example.com", None, "z9hG4bK1"), ("TCP", "b.example.com", 5061, "z9hG4bK2"),
        ("TLS", "c.example.com", None, "z9hG4bK3")]
    assert_round_trip(req)


def test_quoted_strings_with_escapes_in_display_names_and_parameters() -> None:
    data = BASE.replace(b"From: Alice <",
                        b'From: "Al \\"the pal\\" \\\\ ice, <x>" <').replace(
        b";tag=1928301774", b';tag=1928301774;note="a;b,c=\\"d\\""')
    req = parse_request(data)
    assert req.from_.display == 'Al "the pal" \\ ice, <x>'
    assert req.from_.params == {"tag": "1928301774", "note": '"a;b,c=\\"d\\""'}
    assert_round_trip(req)


def test_unknown_methods_and_extension_headers_round_trip() -> None:
    data = BASE.replace(b"OPTIONS", b"FOO.BAR-baz")
    req = parse_request(with_header("X-Whatever: ;;;, odd \"value", data))
    assert req.method == "FOO.BAR-baz"
    assert req.cseq.method == "FOO.BAR-baz"
    assert req.headers.get("X-Whatever") == ';;;, odd "value'
    assert_round_trip(req)


def test_methods_are_case_sensitive() -> None:
    with pytest.raises(ParseError, match="CSeq method"):
        parse_message(BASE.replace(b"CSeq: 63104 OPTIONS", b"CSeq: 63104 options"))


def test_leading_crlfs_are_skipped_and_bare_lf_lines_tolerated() -> None:
    assert parse_message(b"\r\n\r\n" + BASE) == parse_message(BASE)
    lf = BASE.replace(b"\r\n", b"\n")
    assert parse_message(lf) == parse_message(BASE)
    mixed = BASE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
    assert parse_message(mixed) == parse_message(BASE)


def test_missing_final_blank_line_in_a_datagram_is_tolerated() -> None:
    assert parse_message(BASE.rstrip(b"\r\n")) == parse_message(BASE)


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_headers(name: str) -> None:
    with pytest.raises(ParseError, match="missing") as info:
        parse_message(replace_header(name, None))
    assert info.value.status_hint == 400


@pytest.mark.parametrize("line", [
    "Call-ID:", "Call-ID: two words", "From: <sip:a@example.com", "To: sip:a@example.com>",
    "From: <sip:a@example.com>;tag", "From: <sip:a@example.com>;tag=a b",
    "To: <sip:bob@biloxi.example.com> trailing", "Via: SIP/2.0/UDP", "Via: SIP/2.0 host",
    "Via: SIP/2.0/UDP host;branch", "Via: SIP/2.0/UDP host:0", "Via: SIP/2.0/UDP host:65536",
    "Via: SIP/2.0/UDP host;received=host.example.com", "Via: SIP/2.0/UDP host;rport=0",
    "Via: SIP/2.0/UDP host;ttl=256", "Via: SIP/2.0/UDP host;maddr=-bad",
    "Via: SIP/2.0/UDP ho st", "Via: SIP/2.0/UDP host, junk", "CSeq: 1", "CSeq: OPTIONS",
    "CSeq: -1 OPTIONS", "CSeq: 1.5 OPTIONS", "CSeq: 4294967296 OPTIONS",
    "CSeq: \u00b9 OPTIONS", "CSeq: \u0661 OPTIONS", "Max-Forwards: 256", "Max-Forwards: -1",
    "Max-Forwards: 7a", "Max-Forwards:", "Max-Forwards: \u00b2", "Expires:", "Expires: -1",
    "Expires: 1h", "Expires: 12345678901", "Expires: \u0663",
])
def test_malformed_core_header_values(line: str) -> None:
    name = line.split(":", 1)[0]
    data = (replace_header(name, line) if name.encode() + b":" in BASE
            else with_header(line))
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400


def test_via_with_a_comma_and_nothing_after_it_keeps_one_hop() -> None:
    # An empty list element is skipped (RFC 7230-style), not an extra hop.
    data = replace_header("Via", "Via: SIP/2.0/UDP host;branch=z9hG4bK1,")
    assert len(parse_request(data).vias) == 1


@pytest.mark.parametrize("value", ["0", "3600", "4294967295", "0000000000007200"])
def test_expires_values(value: str) -> None:
    assert parse_request(with_header(f"Expires: {value}")).headers.get("Expires") == value


@pytest.mark.parametrize(("value", "seq"), [
    ("0 OPTIONS", 0), ("4294967295 OPTIONS", 2**32 - 1), ("00000000001 OPTIONS", 1),
    ("7\t OPTIONS", 7)])
def test_cseq_range(value: str, seq: int) -> None:
    assert parse_request(replace_header("CSeq", f"CSeq: {value}")).cseq == CSeq(seq, "OPTIONS")


@pytest.mark.parametrize("value", ["0", "255", "0068", "70"])
def test_max_forwards_range(value: str) -> None:
    req = parse_request(replace_header("Max-Forwards", f"Max-Forwards: {value}"))
    assert req.headers.get("Max-Forwards") == value


@pytest.mark.parametrize(("line", "status"), [
    ("SIP/2.0 100 Trying", 100), ("SIP/2.0 699 Whatever", 699), ("sip/2.0 200 OK", 200),
    ("SIP/2.0 183", 183)])
def test_status_codes_in_range(line: str, status: int) -> None:
    data = BASE.replace(b"OPTIONS sip:bob@biloxi.example.com SIP/2.0", line.encode())
    assert parse_response(data).status == status


@pytest.mark.parametrize("line", [
    "SIP/2.0 099 Low", "SIP/2.0 700 High", "SIP/2.0 1000 Long", "SIP/2.0 20 Short",
    "SIP/2.0 2OO OK", "SIP/2.0 \u00b2\u00b2\u00b2 Digits", "SIP/2.0  200 OK", "SIP/2.0",
    "SIP/2.0 -200 OK"])
def test_status_codes_out_of_range(line: str) -> None:
    data = BASE.replace(b"OPTIONS sip:bob@biloxi.example.com SIP/2.0", line.encode())
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400


@pytest.mark.parametrize(("line", "status"), [
    ("OPTIONS sip:bob@biloxi.example.com SIP/3.0", 505),
    ("OPTIONS sip:bob@biloxi.example.com SIP/1.0", 505),
    ("SIP/1.0 200 OK", 505),
    ("OPTIONS sip:bob@biloxi.example.com HTTP/1.1", 400),
    ("OPTIONS sip:bob@biloxi.example.com SIP/2", 400),
    ("OPTIONS sip:bob@biloxi.example.com", 400),
    ("OPTIONS  sip:bob@biloxi.example.com SIP/2.0", 400),
    ("OPTIONS sip:bob@biloxi.example.com SIP/2.0 ", 400),
    ("OPT@ONS sip:bob@biloxi.example.com SIP/2.0", 400),
    ("OPTIONS sip:bob@biloxi.example.com?Subject=x SIP/2.0", 400),
    ("OPTIONS sip:bob@bi loxi.example.com SIP/2.0", 400),
    ("OPTIONS sip:bob@biloxi.example.com:99999 SIP/2.0", 400),
    ("OPTIONS sip:bob@biloxi.example.com\tSIP/2.0", 400),
    ("OPTIONS sip:bob@biloxi.example.com \u017fIP/2.0", 400),  # LATIN SMALL LONG S upper-cases to S
    ("\u017fIP/2.0 200 OK", 400),
    ("OPTIONS sip:bob@biloxi.example.com \u017fIP/3.0", 400),
    ("", 400),
])
def test_bad_start_lines(line: str, status: int) -> None:
    data = BASE.replace(b"OPTIONS sip:bob@biloxi.example.com SIP/2.0", line.encode())
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == status


def test_request_uri_too_long_is_414() -> None:
    uri = "sip:" + "a" * 5000 + "@example.com"
    data = BASE.replace(b"sip:bob@biloxi.example.com SIP", uri.encode() + b" SIP")
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 414


@pytest.mark.parametrize("line", [
    ": value", "Bad Name: value", "Bad\x01Name: x", "NoColonHere", "Ümlaut: x", "X:Y:Z ok?",
    "(comment): x"])
def test_bad_header_lines(line: str) -> None:
    data = with_header(line)
    if line == "X:Y:Z ok?":
        # A colon in the value is fine.
        assert parse_request(data).headers.get("X") == "Y:Z ok?"
        return
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 400


@pytest.mark.parametrize("raw", [b"\x00", b"\x07", b"\x1b", b"\x7f", b"\r", b"\x0b", b"\x0c"])
def test_raw_control_characters_in_the_head_are_rejected(raw: bytes) -> None:
    for data in (with_header("X-Thing: a" + raw.decode() + "b"),
                 BASE.replace(b"From: Alice", b'From: "Al' + raw + b'ice"'),
                 BASE.replace(b"63104 OPTIONS", b"63104 OPTIONS" + raw)):
        with pytest.raises(ParseError) as info:
            parse_message(data)
        assert info.value.status_hint == 400


def test_control_characters_are_legal_as_quoted_pairs() -> None:
    data = BASE.replace(b"From: Alice", b'From: "A\\\x00l\\\x07i\\\x7fce"')
    assert parse_request(data).from_.display == "A\x00l\x07i\x7fce"
    # An escaped backslash does not escape what follows it.
    with pytest.raises(ParseError):
        parse_message(BASE.replace(b"From: Alice", b'From: "A\\\\\x00lice"'))


def test_head_must_be_utf8_but_body_need_not_be() -> None:
    latin1 = with_header("Subject: cafe").replace(b"cafe", b"caf\xe9")
    with pytest.raises(ParseError) as info:
        parse_message(latin1)
    assert info.value.status_hint == 400
    assert parse_request(latin1.replace(b"caf\xe9", "café".encode())).headers.get(
        "Subject") == "café"
    body = bytes(range(256))
    data = BASE.replace(b"Content-Length: 0", b"Content-Length: 256") + body
    assert parse_request(data).body == body


def test_header_values_can_be_empty_and_keep_inner_whitespace() -> None:
    req = parse_request(with_header("Subject:  a  b\t c  \t", with_header("X-Empty:")))
    assert req.headers.get("X-Empty") == ""
    assert req.headers.get("Subject") == "a  b\t c"


# ---------------------------------------------------------------------------------------------
# Content-Length and size limits
# ---------------------------------------------------------------------------------------------


def body_message(length: str, body: bytes) -> bytes:
    return BASE.replace(b"Content-Length: 0", f"Content-Length: {length}".encode()) + body


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    assert parse_request(body_message("5", b"hello world")).body == b"hello"
    assert parse_request(body_message("0", b"trailing junk")).body == b""


def test_datagram_body_shorter_than_content_length_is_an_error() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(body_message("12", b"hello world"))
    assert info.value.status_hint == 400


def test_without_content_length_the_body_is_the_rest_of_the_datagram() -> None:
    data = replace_header("Content-Length", None) + b"hello"
    assert parse_request(data).body == b"hello"


@pytest.mark.parametrize("value", ["-1", "+5", "5 5", "0x10", "five", "\u00b2", "\u0665",
                                   "12345678901", ""])
def test_bad_content_length_values(value: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(body_message(value, b"hello"))
    assert info.value.status_hint == 400


def test_content_length_with_leading_zeros_and_identical_duplicates() -> None:
    assert parse_request(body_message("005", b"hello!")).body == b"hello"
    dup = with_header("l: 5", body_message("5", b""))
    assert parse_request(dup + b"hello").body == b"hello"
    conflicting = with_header("l: 4", body_message("5", b""))
    with pytest.raises(ParseError):
        parse_message(conflicting + b"hello")


def test_content_length_larger_than_the_size_limit_is_513() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(body_message("9999999999", b""), max_size=1000)
    assert info.value.status_hint == 513


def test_message_size_limit() -> None:
    big = body_message(str(MAX_MESSAGE_SIZE), b"x" * MAX_MESSAGE_SIZE)
    with pytest.raises(ParseError) as info:
        parse_message(big)
    assert info.value.status_hint == 513
    fits = body_message("1000", b"x" * 1000)
    assert len(parse_request(fits, ).body) == 1000
    with pytest.raises(ParseError) as info:
        parse_message(fits, max_size=len(fits) - 1)
    assert info.value.status_hint == 513
    assert len(parse_request_limited(fits, len(fits)).body) == 1000


def parse_request_limited(data: bytes, max_size: int) -> Request:
    msg = parse_message(data, max_size=max_size)
    assert isinstance(msg, Request)
    return msg


def test_header_count_limit() -> None:
    core = len(BASE.split(b"\r\n\r\n")[0].split(b"\r\n")) - 1
    data = BASE
    for n in range(MAX_HEADERS - core):
        data = with_header(f"X-H{n}: {n}", data)
    assert len(parse_request(data).headers) == MAX_HEADERS - 1  # Content-Length is not kept
    with pytest.raises(ParseError) as info:
        parse_message(with_header("X-One-Too-Many: 1", data))
    assert info.value.status_hint == 513
    with pytest.raises(ParseError):
        parse_message(BASE, max_headers=3)
    # Folded continuation lines belong to their header and do not count.
    folded = with_header("X-Folded: a\r\n b\r\n c", data.replace(b"X-H0: 0\r\n", b""))
    assert parse_request(folded).headers.get("X-Folded") == "a b c"


# ---------------------------------------------------------------------------------------------
# Serialization and the Headers API
# ---------------------------------------------------------------------------------------------


def test_serialization_writes_content_length_from_the_body() -> None:
    req = parse_request(BASE)
    req.body = b"abc"
    out = bytes(req)
    assert out.endswith(b"Content-Length: 3\r\n\r\nabc")
    assert out.count(b"Content-Length") == 1
    assert parse_request(out).body == b"abc"


def test_building_a_response_from_scratch() -> None:
    h = Headers([("v", "SIP/2.0/UDP h.example.com;branch=z9hG4bK1;received=192.0.2.1"),
                 ("f", "<sip:a@example.com>;tag=1"), ("t", "<sip:b@example.com>;tag=2"),
                 ("i", "cid"), ("CSeq", "1 INVITE")])
    resp = Response(486, headers=h)
    assert resp.reason == "Busy Here"
    out = bytes(resp)
    assert out.startswith(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h.example.com")
    assert parse_message(out) == resp


def test_headers_reject_values_that_would_inject_lines() -> None:
    h = Headers()
    for bad in ("a\r\nVia: x", "a\nb", "a\rb"):
        with pytest.raises(ValueError):
            h.add("Subject", bad)
        with pytest.raises(ValueError):
            h.set("Subject", bad)
        with pytest.raises(ValueError):
            h.insert_before("Subject", bad)
    for name in ("Bad Name", "", "X:Y", "Sub\nject"):
        with pytest.raises(ValueError):
            h.add(name, "v")
    assert len(h) == 0


def test_headers_api() -> None:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")
    h.add("v", "SIP/2.0/UDP c;branch=z9hG4bK3")
    h.insert_before("Via", "SIP/2.0/UDP top;branch=z9hG4bK0")
    assert h.values("VIA") == ["SIP/2.0/UDP top;branch=z9hG4bK0", "SIP/2.0/UDP a;branch=z9hG4bK1",
                               "SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    assert h.remove_first_value("Via") == "SIP/2.0/UDP top;branch=z9hG4bK0"
    assert h.remove_first_value("v") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.get_all("Via") == ["SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    h.set("Max-Forwards", "70")
    h.set("max-forwards", "69")
    assert h.get_all("Max-Forwards") == ["69"]
    h.add("Route", "<sip:p1;lr>", first=True)
    assert next(iter(h)) == ("Route", "<sip:p1;lr>")
    h.remove("route")
    assert "Route" not in h and h.get("Route", "none") == "none"
    assert h.remove_first_value("Route") is None
    assert 42 not in h  # type: ignore[operator]
    copy = h.copy()
    copy.add("X", "1")
    assert "X" not in h and copy != h
    assert Headers([("CSeq", "1 A")]) == Headers([("cseq", "1 A")])


def test_structured_views_follow_header_changes() -> None:
    req = parse_request(BASE)
    assert req.to.tag is None
    req.headers.set("To", "Bob <sip:bob@biloxi.example.com>;tag=abc")
    assert req.to.tag == "abc"
    req.headers.insert_before("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
    assert req.top_via.host == "proxy.example.com"
    assert len(req.vias) == 2
    req.headers.remove("Via")
    with pytest.raises(ParseError):
        req.top_via  # noqa: B018
    req.headers.set("Contact", "*")
    assert req.contacts == []


def test_copies_are_independent() -> None:
    req = parse_request(BASE)
    dup = req.copy()
    assert dup == req
    assert isinstance(dup.uri, SipUri)
    dup.uri.params["transport"] = "tcp"
    dup.headers.set("Subject", "x")
    assert req.uri == parse_uri("sip:bob@biloxi.example.com")
    assert "Subject" not in req.headers


def test_parsed_uris_are_not_shared_between_messages() -> None:
    a, b = parse_request(BASE), parse_request(BASE)
    assert a.uri == b.uri and a.uri is not b.uri
    assert isinstance(a.uri, SipUri)
    a.uri.params["lr"] = None
    assert b.uri == parse_uri("sip:bob@biloxi.example.com")
    assert parse_request(BASE).uri == b.uri


def test_via_properties() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5060;rport=5062;received=192.0.2.9;branch=z9hG4bKx")
    assert (via.received, via.rport, via.branch) == ("192.0.2.9", 5062, "z9hG4bKx")
    plain = parse_via("sip / 2.0 / udp   [2001:DB8::1] : 5060 ; RPORT ; Branch = z9hG4bKy")
    assert (plain.transport, plain.host, plain.port) == ("UDP", "[2001:db8::1]", 5060)
    assert (plain.received, plain.rport, plain.branch) == (None, None, "z9hG4bKy")
    assert str(plain) == "SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bKy"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize("value", [
    "SIP/3.0/UDP host", "HTTP/2.0/UDP host"])
def test_via_with_another_protocol_version_is_505(value: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_via(value)
    assert info.value.status_hint == 505


# ---------------------------------------------------------------------------------------------
# Stream framing (TCP/TLS)
# ---------------------------------------------------------------------------------------------

INVITE_WITH_BODY = body_message("4", b"v=0\n").replace(b"OPTIONS", b"INVITE")


def test_stream_pipelined_messages_and_keepalives() -> None:
    stream = BASE + b"\r\n\r\n" + INVITE_WITH_BODY + b"\r\n" + BASE
    items = StreamParser().feed(stream)
    assert items == [parse_message(BASE), KeepAlive(), parse_message(INVITE_WITH_BODY),
                     parse_message(BASE)]


def test_stream_byte_by_byte() -> None:
    stream = b"\r\n\r\n" + INVITE_WITH_BODY + BASE + b"\r\n\r\n"
    parser = StreamParser()
    items = []
    for i in range(len(stream)):
        items.extend(parser.feed(stream[i : i + 1]))
    assert items == [KeepAlive(), parse_message(INVITE_WITH_BODY), parse_message(BASE),
                     KeepAlive()]
    assert parser.pending == 0


def test_stream_waits_for_the_whole_body() -> None:
    parser = StreamParser()
    head, body = INVITE_WITH_BODY[:-4], INVITE_WITH_BODY[-4:]
    assert parser.feed(head) == []
    assert parser.pending == len(head)
    assert parser.feed(body[:2]) == []
    assert parser.feed(body[2:]) == [parse_message(INVITE_WITH_BODY)]
    assert parser.pending == 0


def test_stream_framing_uses_compact_and_folded_content_length() -> None:
    compact = INVITE_WITH_BODY.replace(b"Content-Length: 4", b"l:4")
    folded = INVITE_WITH_BODY.replace(b"Content-Length: 4", b"Content-Length:\r\n  4")
    for data in (compact, folded):
        assert StreamParser().feed(data + BASE) == [parse_message(data), parse_message(BASE)]


def test_stream_malformed_but_framed_message_is_reported_and_skipped() -> None:
    bad = BASE.replace(b"CSeq: 63104 OPTIONS", b"CSeq: x OPTIONS")
    items = StreamParser().feed(bad + BASE)
    assert isinstance(items[0], ParseError)
    assert items[1:] == [parse_message(BASE)]


@pytest.mark.parametrize("value", [b"-1", b"abc", b"\xc2\xb2", b"99999999999"])
def test_stream_bad_content_length_loses_the_framing(value: bytes) -> None:
    data = BASE.replace(b"Content-Length: 0", b"Content-Length: " + value)
    with pytest.raises(ParseError):
        StreamParser().feed(data)


def test_stream_slow_drip_body_does_not_rescan_the_head() -> None:
    # A peer sending a large body one octet at a time must cost linear time, not head x body:
    # re-scanning this head for Content-Length at every octet would take tens of seconds.
    # (The head has too many header lines, so the message is answered 513 once it is all in.)
    head = body_message("50000", b"").replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n" + b"X: 1\r\n" * 8000)
    parser = StreamParser(max_size=200_000)
    start = time.perf_counter()
    assert parser.feed(head) == []
    for _ in range(49999):
        assert parser.feed(b"b") == []
    assert parser.pending == len(head) + 49999
    [item] = parser.feed(b"b")
    assert time.perf_counter() - start < 3.0
    assert isinstance(item, ParseError) and item.status_hint == 513
    assert parser.pending == 0
    assert parser.feed(BASE) == [parse_message(BASE)]


def test_stream_size_limits() -> None:
    parser = StreamParser(max_size=1000)
    with pytest.raises(ParseError) as info:
        parser.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 1200)
    assert info.value.status_hint == 513
    with pytest.raises(ParseError) as info:
        StreamParser(max_size=1000).feed(body_message("5000", b""))
    assert info.value.status_hint == 513


# ---------------------------------------------------------------------------------------------
# Hostile input costs linear time
# ---------------------------------------------------------------------------------------------

N = 60000  # about the largest message allowed
PATHOLOGICAL = {
    "unterminated quoted string": lambda: parse_address('"' + "a\\" * (N // 2)),
    "display-name tokens, no <": lambda: parse_address("a " * (N // 2) + "<"),
    "parameters with junk at the end": lambda: parse_params(";a=b" * (N // 4) + " x", "x"),
    "parameters with blanks": lambda: parse_params("; a = b " * (N // 8) + "x", "x"),
    "host of hyphens": lambda: parse_uri("sip:" + "a-" * 2000),
    "host of labels ending badly": lambda: parse_uri("sip:" + "a." * 2000 + "-"),
    "user part without @": lambda: parse_uri("sip:" + "a:" * 2000),
    "Via with many parameters": lambda: parse_via("SIP/2.0/UDP h" + ";a=b" * (N // 4) + ";"),
    "commas and a stray quote": lambda: split_commas("a," * (N // 2) + '"'),
    "many folded lines": lambda: parse_message(
        b"INVITE sip:a@b SIP/2.0\r\nX: a" + b"\r\n b" * (N // 5) + b"\r\n\r\n"),
    "many quoted-pair controls": lambda: parse_message(
        b"INVITE sip:a@b SIP/2.0\r\nX: " + b"\\\x00" * (N // 2) + b"\r\n\r\n"),
    "ping flood": lambda: StreamParser().feed(b"\r\n" * N),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_input_is_cheap(name: str) -> None:
    # Linear work on 60 kB is milliseconds; a quadratic regex would take minutes. The bound is
    # deliberately loose so a loaded machine cannot make this flaky.
    start = time.perf_counter()
    try:
        PATHOLOGICAL[name]()
    except ParseError:
        pass
    assert time.perf_counter() - start < 2.0
