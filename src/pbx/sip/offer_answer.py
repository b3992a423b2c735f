"""RFC 3264 offer/answer for one audio stream per call, as pure functions over ``pbx.sip.sdp``.

* ``build_offer(local, session_id=...)`` describes what we can do; ``answer(offer, local, ...)``
  answers a peer's offer, m-line for m-line, and says what was agreed for each stream;
  ``negotiate(offer, answer)`` is the offerer's side: it checks the answer against our offer and
  says what was agreed.
* Codecs match by encoding name (case-insensitive), clock rate and channels, never by payload
  type number; the answer keeps the offerer's numbers (RFC 3264 §6.1). RFC 4733 telephone-event
  is answered at the clock rate of an agreed codec (RFC 4733 §2.1), with one deliberate leniency:
  peers like baresip offer opus/48000 with only telephone-event/8000, so when no rate matches we
  still take an 8000 (or other supported) one rather than lose DTMF.
* Streams we cannot take (not audio, SRTP or another profile, multicast, no common codec, a second
  audio stream, port 0) are answered with port 0, so the answer always has as many m-lines as
  the offer (RFC 3264 §6).
* Our descriptions keep one origin for the whole dialog; ``next_version`` increments the version
  exactly when the content changed (RFC 3264 §8).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from pbx.errors import ParseError
from pbx.sip.sdp import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)

__all__ = [
    "ACCEPTED_PROTOS",
    "TELEPHONE_EVENT",
    "Codec",
    "LocalMedia",
    "NegotiatedMedia",
    "OfferAnswerError",
    "answer",
    "answer_direction",
    "build_offer",
    "effective_direction",
    "hold_direction",
    "is_hold",
    "negotiate",
    "negotiate_all",
    "next_version",
    "sdp_changed",
]

TELEPHONE_EVENT: Final = "telephone-event"
ACCEPTED_PROTOS: Final = ("RTP/AVP", "RTP/AVPF")
# Formats that ride along with a voice codec but are never the one we send speech with.
_AUXILIARY: Final = frozenset({"cn", TELEPHONE_EVENT, "red", "rtx", "ulpfec", "flexfec"})
_DYNAMIC: Final = range(96, 128)
_PREFERRED_TE_PT: Final = 101  # what most peers use for telephone-event/8000

Prefer = Literal["local", "remote"]
_BITS: Final = {"sendrecv": (True, True), "sendonly": (True, False),
                "recvonly": (False, True), "inactive": (False, False)}


class OfferAnswerError(ParseError):
    """An offer or answer that breaks RFC 3264, or leaves no usable audio (488 by default)."""

    def __init__(self, reason: str, status_hint: int = 488, data: bytes | str | None = None) -> None:
        super().__init__(reason, status_hint, data)


@dataclass(frozen=True, slots=True)
class Codec:
    """A codec as (encoding name, RTP clock rate, channels), with a payload type and fmtp.

    In ``LocalMedia.codecs`` the payload type is the static one, or None for a dynamic one;
    in ``NegotiatedMedia`` it is the number used on the wire.
    """

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int | None = None
    fmtp: str | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.name.lower(), self.clock_rate, self.channels)

    def matches(self, rtpmap: RtpMap) -> bool:
        return self.key == _rtpmap_key(rtpmap)

    @property
    def is_auxiliary(self) -> bool:
        """Comfort noise, telephone-event, redundancy ...: never the speech codec."""
        return self.name.lower() in _AUXILIARY


def _rtpmap_key(rtpmap: RtpMap) -> tuple[str, int, int]:
    return (rtpmap.encoding.lower(), rtpmap.clock_rate, rtpmap.channels or 1)


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we can do on our one audio stream.

    ``codecs`` in preference order; ``telephone_event`` the clock rates at which we send and
    receive RFC 4733 events (empty: none); ``ptime`` the packet time we want to receive (ms);
    ``direction`` what we are willing to do (``hold_direction`` gives the hold one).
    """

    address: str
    port: int
    codecs: tuple[Codec, ...]
    telephone_event: tuple[int, ...] = (8000,)
    dtmf_events: str = "0-16"
    ptime: int | None = 20
    direction: str = "sendrecv"
    rtcp_mux: bool = False
    username: str = "-"
    session_name: str = "-"

    def __post_init__(self) -> None:
        ip = ipaddress.ip_address(self.address)  # ValueError unless an IP literal
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"not a unicast address: {self.address}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"bad port {self.port}")
        if not self.codecs:
            raise ValueError("LocalMedia needs at least one codec")
        for c in self.codecs:
            if c.payload_type is not None and not 0 <= c.payload_type <= 127:
                raise ValueError(f"bad payload type {c.payload_type}")
            if c.clock_rate <= 0 or c.channels <= 0 or not c.name or " " in c.name:
                raise ValueError(f"bad codec {c!r}")
        if any(rate <= 0 for rate in self.telephone_event):
            raise ValueError("telephone-event rates must be positive")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"not a direction: {self.direction!r}")
        if self.ptime is not None and self.ptime <= 0:
            raise ValueError("ptime must be positive")

    def with_direction(self, direction: str) -> LocalMedia:
        return dataclasses.replace(self, direction=direction)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What one stream does after offer/answer, from our side.

    ``send_codec.payload_type`` is the number we send speech with (its ``fmtp`` is the peer's);
    ``receive_payload_types`` maps the numbers we may receive to codecs. ``telephone_event`` is
    what we send RFC 4733 events with (name, rate, PT) and ``receive_telephone_events`` maps the
    numbers we accept them on to their clock rates. ``ptime`` is the packet time to send with.
    ``direction`` is ours (``sendonly``: we send, do not receive). ``remote_hold`` is true when
    the peer will not receive media we are willing to send: it put the call on hold.
    """

    index: int
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    send_codec: Codec
    receive_payload_types: dict[int, Codec]
    telephone_event: Codec | None
    receive_telephone_events: dict[int, int]
    ptime: int
    direction: str
    rtcp_mux: bool
    remote_hold: bool = False

    @property
    def send_payload_type(self) -> int:
        assert self.send_codec.payload_type is not None
        return self.send_codec.payload_type

    @property
    def sends(self) -> bool:
        return _BITS[self.direction][0]

    @property
    def receives(self) -> bool:
        return _BITS[self.direction][1]


# -- directions --------------------------------------------------------------------------------


def _direction(send: bool, recv: bool) -> str:
    return ("sendrecv" if recv else "sendonly") if send else ("recvonly" if recv else "inactive")


def answer_direction(offered: str, local: str) -> str:
    """RFC 3264 §6.1: the answer's direction for an offered one, limited by what we allow.

    sendonly → recvonly, recvonly → sendonly, inactive → inactive, sendrecv → ``local``.
    """
    offer_send, offer_recv = _BITS[offered]
    local_send, local_recv = _BITS[local]
    return _direction(offer_recv and local_send, offer_send and local_recv)


def hold_direction(current: str) -> str:
    """The direction to offer to put a stream on hold (RFC 3264 §8.4)."""
    return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(current, current)


def effective_direction(sdp: SessionDescription, media: MediaDescription) -> str:
    """The direction ``media`` asks for, counting ``c=0.0.0.0`` (RFC 2543 hold) as not receiving."""
    send, recv = _BITS[sdp.direction_of(media)]
    conn = sdp.connection_for(media)
    if conn is not None and conn.is_unspecified:
        recv = False
    return _direction(send, recv)


def is_hold(sdp: SessionDescription, media: MediaDescription | int = 0) -> bool:
    """True if ``media`` (or the m-line at that index) puts the stream on hold: the sender of
    ``sdp`` does not want to receive (a=sendonly, a=inactive, or c=0.0.0.0)."""
    m = sdp.media[media] if isinstance(media, int) else media
    return not _BITS[effective_direction(sdp, m)][1]


# -- versions ----------------------------------------------------------------------------------


def next_version(previous: SessionDescription | None, current: SessionDescription
                 ) -> SessionDescription:
    """``current`` with ``previous``'s origin: same version if nothing else changed, else +1.

    RFC 3264 §8: a new description in a session keeps the o= line except for the version,
    which increments exactly when the description changes.
    """
    if previous is None:
        return current
    out = current.copy()
    out.origin = dataclasses.replace(previous.origin)
    if out != previous:
        out.origin.sess_version = (previous.origin.sess_version + 1) % 2**63
    return out


def sdp_changed(previous: SessionDescription | None, current: SessionDescription) -> bool:
    """Whether a peer's new description is a change (RFC 3264 §8: a new origin or version)."""
    if previous is None:
        return True
    return previous.origin != current.origin


# -- building ------------------------------------------------------------------------------------


def _static_pt(codec: Codec) -> int | None:
    for pt, (name, rate, channels) in STATIC_PAYLOAD_TYPES.items():
        if (name.lower(), rate, channels or 1) == codec.key:
            return pt
    return None


def _audio_slot(previous: SessionDescription | None) -> int | None:
    """Where our audio goes in a re-offer: the previous live audio m-line, else any audio one."""
    if previous is None:
        return None
    candidates = [i for i, m in enumerate(previous.media)
                  if m.media.lower() == "audio" and m.proto.upper() in ACCEPTED_PROTOS]
    live = [i for i in candidates if previous.media[i].port != 0]
    chosen = live or candidates
    return chosen[0] if chosen else None


def _previous_numbers(previous: SessionDescription | None, slot: int | None
                      ) -> dict[tuple[str, int, int], int]:
    """Payload types used before, to keep them stable in a re-offer (RFC 3264 §8.3.2)."""
    if previous is None or slot is None:
        return {}
    out: dict[tuple[str, int, int], int] = {}
    for rtpmap in previous.media[slot].codecs().values():
        out.setdefault(_rtpmap_key(rtpmap), rtpmap.payload_type)
    return out


def _assign_payload_types(local: LocalMedia, te_rates: list[int],
                          reuse: dict[tuple[str, int, int], int]
                          ) -> tuple[list[Codec], list[Codec]]:
    """Give every codec and telephone-event a payload type: static, reused, then dynamic."""
    used: set[int] = set()
    codecs: list[tuple[Codec, int | None]] = []
    seen: set[tuple[str, int, int]] = set()
    for c in local.codecs:
        if c.key in seen:
            continue
        seen.add(c.key)
        pt = c.payload_type if c.payload_type is not None else _static_pt(c)
        if pt is None or pt in used:
            pt = None
        else:
            used.add(pt)
        codecs.append((c, pt))
    events = [(Codec(TELEPHONE_EVENT, rate, 1, None, local.dtmf_events), None)
              for rate in te_rates]
    pending = codecs + events
    out: list[tuple[Codec, int]] = []
    # Reused numbers next, then 101 for telephone-event/8000, then the lowest free dynamic ones.
    for i, (c, pt) in enumerate(pending):
        if pt is None and reuse.get(c.key) is not None and reuse[c.key] not in used:
            pt = reuse[c.key]
            used.add(pt)
            pending[i] = (c, pt)
    for i, (c, pt) in enumerate(pending):
        if pt is None and c.name == TELEPHONE_EVENT and c.clock_rate == 8000 \
                and _PREFERRED_TE_PT not in used:
            used.add(_PREFERRED_TE_PT)
            pending[i] = (c, _PREFERRED_TE_PT)
    free = (pt for pt in _DYNAMIC if pt not in used)
    for c, pt in pending:
        if pt is None:
            pt = next(free, None)
            if pt is None:
                raise ValueError("more codecs than dynamic payload types")
            used.add(pt)
        out.append((c, pt))
    assigned = [dataclasses.replace(c, payload_type=pt) for c, pt in out]
    return assigned[: len(codecs)], assigned[len(codecs):]


def _finish_media(m: MediaDescription, local: LocalMedia, direction: str, rtcp_mux: bool) -> None:
    if local.ptime is not None:
        m.add_attribute("ptime", str(local.ptime))
    if rtcp_mux:
        m.add_attribute("rtcp-mux")
    m.add_attribute(direction)


def _add_codec(m: MediaDescription, c: Codec) -> None:
    assert c.payload_type is not None
    channels = c.channels if c.channels != 1 else None
    m.add_format(RtpMap(c.payload_type, c.name, c.clock_rate, channels), c.fmtp)


def _session(local: LocalMedia, session_id: int, timing: list[Timing]) -> SessionDescription:
    conn = Connection.for_address(local.address)
    origin = Origin(local.username, str(session_id), 0, "IN", conn.addrtype, local.address)
    return SessionDescription(origin=origin, session_name=local.session_name, connection=conn,
                              timing=[dataclasses.replace(t, repeats=list(t.repeats))
                                      for t in timing] or [Timing()])


def _rejected(m: MediaDescription) -> MediaDescription:
    """The answer to a stream we do not take: same media and proto, port 0 (RFC 3264 §6)."""
    return MediaDescription(media=m.media, port=0, proto=m.proto, formats=list(m.formats))


def build_offer(local: LocalMedia, *, session_id: int = 0,
                previous: SessionDescription | None = None) -> SessionDescription:
    """An offer for one audio stream with ``local``'s codecs in preference order.

    ``previous`` is our last description in this dialog (offer or answer): a re-offer keeps its
    origin (version +1 when anything changed), its m-line count (other streams stay at port 0)
    and its payload type numbers.
    """
    slot = _audio_slot(previous)
    voice, events = _assign_payload_types(
        local, [r for r in dict.fromkeys(local.telephone_event)
                if any(c.clock_rate == r and not c.is_auxiliary for c in local.codecs)],
        _previous_numbers(previous, slot))
    proto = previous.media[slot].proto if previous is not None and slot is not None else "RTP/AVP"
    m = MediaDescription(media="audio", port=local.port, proto=proto)
    for c in [*voice, *events]:
        _add_codec(m, c)
    _finish_media(m, local, local.direction, local.rtcp_mux)
    sdp = _session(local, session_id, previous.timing if previous is not None else [])
    if previous is None:
        sdp.media = [m]
    else:
        sdp.media = [_rejected(pm) for pm in previous.media]
        if slot is None:
            sdp.media.append(m)
        else:
            sdp.media[slot] = m
    return next_version(previous, sdp)


# -- answering -----------------------------------------------------------------------------------


def _usable(sdp: SessionDescription, m: MediaDescription) -> bool:
    conn = sdp.connection_for(m)
    return (m.port != 0 and m.media.lower() == "audio" and m.proto.upper() in ACCEPTED_PROTOS
            and conn is not None and conn.is_ip and not conn.is_multicast)


def _offered(m: MediaDescription) -> list[RtpMap]:
    """The offered formats we can identify, in offer order, one entry per payload type."""
    out: list[RtpMap] = []
    seen: set[int] = set()
    for rtpmap in m.codecs().values():
        if rtpmap.payload_type not in seen:
            seen.add(rtpmap.payload_type)
            out.append(rtpmap)
    return out


def _choose(offered: list[RtpMap], local: LocalMedia, prefer: Prefer
            ) -> list[tuple[RtpMap, Codec]]:
    """Common codecs (not telephone-event) as (offered rtpmap, our codec), in preference order,
    one payload type per codec."""
    candidates = [r for r in offered if r.encoding.lower() != TELEPHONE_EVENT]
    pairs: list[tuple[RtpMap, Codec]] = []
    taken: set[tuple[str, int, int]] = set()
    if prefer == "remote":
        for r in candidates:
            mine = next((c for c in local.codecs if c.matches(r)), None)
            if mine is not None and mine.key not in taken:
                taken.add(mine.key)
                pairs.append((r, mine))
    else:
        for c in local.codecs:
            theirs = next((r for r in candidates if c.matches(r)), None)
            if theirs is not None and c.key not in taken:
                taken.add(c.key)
                pairs.append((theirs, c))
    # Speech codecs first: the first one is the one we send.
    return [p for p in pairs if not p[1].is_auxiliary] + [p for p in pairs if p[1].is_auxiliary]


def _pick_events(events: list[RtpMap], supported: Iterable[int], voice_rates: list[int]
                 ) -> list[RtpMap]:
    """telephone-event entries to keep: those at an agreed codec's rate (RFC 4733 §2.1); if
    none, one at a rate we support (8000 first) so DTMF survives lenient peers."""
    rates = set(supported)
    usable: dict[int, RtpMap] = {}
    for r in events:
        if r.clock_rate in rates:
            usable.setdefault(r.clock_rate, r)
    matched = [r for rate, r in usable.items() if rate in voice_rates]
    if matched or not usable:
        return matched
    return [usable.get(8000) or next(iter(usable.values()))]


def _send_event(events: list[Codec], rate: int) -> Codec | None:
    return next((e for e in events if e.clock_rate == rate), events[0] if events else None)


def _rtcp_target(sdp: SessionDescription, m: MediaDescription, mux: bool) -> tuple[str, int]:
    conn = sdp.connection_for(m)
    host = conn.host if conn is not None else ""
    if mux:
        return host, m.port
    rtcp = m.rtcp
    if rtcp is not None:
        return (rtcp.connection.host if rtcp.connection is not None else host), rtcp.port
    return host, m.port + 1


def _send_ptime(remote: MediaDescription, remote_sdp: SessionDescription,
                fallback: int | None) -> int:
    """Packet time to send with: what the peer asked for, within its maxptime."""
    ptime = remote.ptime or remote_sdp.ptime or fallback or 20
    maxptime = remote.maxptime or remote_sdp.maxptime
    return min(ptime, maxptime) if maxptime else ptime


def answer(offer: SessionDescription, local: LocalMedia, *, session_id: int = 0,
           previous: SessionDescription | None = None, prefer: Prefer = "local",
           max_codecs: int | None = None
           ) -> tuple[SessionDescription, list[NegotiatedMedia | None]]:
    """Answer ``offer`` (RFC 3264 §6): one m-line per offered one, in order.

    The first usable audio stream is taken with the codecs both sides support, ordered by our
    preference (``prefer="local"``) or the offerer's; at most ``max_codecs`` speech codecs are
    listed. Every other stream gets port 0. The list gives, per m-line, what was agreed (None
    for a rejected stream); when every entry is None, a SIP server answers 488.
    ``previous`` is our last description in this dialog: the origin is kept and the version
    incremented when the answer differs from it.
    """
    sdp = _session(local, session_id, offer.timing)
    results: list[NegotiatedMedia | None] = []
    taken = False
    for index, m in enumerate(offer.media):
        result: NegotiatedMedia | None = None
        if not taken and _usable(offer, m):
            built = _answer_stream(offer, m, index, local, prefer, max_codecs)
            if built is not None:
                media, result = built
                sdp.media.append(media)
                taken = True
        if result is None:
            sdp.media.append(_rejected(m))
        results.append(result)
    return next_version(previous, sdp), results


def _answer_stream(offer: SessionDescription, m: MediaDescription, index: int,
                   local: LocalMedia, prefer: Prefer, max_codecs: int | None
                   ) -> tuple[MediaDescription, NegotiatedMedia] | None:
    offered = _offered(m)
    pairs = _choose(offered, local, prefer)
    speech = [p for p in pairs if not p[1].is_auxiliary]
    if not speech:
        return None
    if max_codecs is not None:
        pairs = speech[: max(1, max_codecs)] + pairs[len(speech):]
    voice_rates = [c.clock_rate for _, c in pairs if not c.is_auxiliary]
    events = _pick_events([r for r in offered if r.encoding.lower() == TELEPHONE_EVENT],
                          local.telephone_event, voice_rates)
    fmtps = m.fmtps()
    mux = m.rtcp_mux and local.rtcp_mux
    offered_dir = effective_direction(offer, m)
    direction = answer_direction(offered_dir, local.direction)

    media = MediaDescription(media=m.media, port=local.port, proto=m.proto)
    receive: dict[int, Codec] = {}
    for r, c in pairs:
        ours = dataclasses.replace(c, payload_type=r.payload_type)
        _add_codec(media, ours)
        receive[r.payload_type] = ours
    event_codecs = [Codec(TELEPHONE_EVENT, r.clock_rate, 1, r.payload_type,
                          fmtps.get(str(r.payload_type))) for r in events]
    for e in events:
        _add_codec(media, Codec(TELEPHONE_EVENT, e.clock_rate, 1, e.payload_type,
                                local.dtmf_events))
    _finish_media(media, local, direction, mux)

    first_rtpmap, first = pairs[0]
    send = dataclasses.replace(first, payload_type=first_rtpmap.payload_type,
                               fmtp=fmtps.get(str(first_rtpmap.payload_type)))
    conn = offer.connection_for(m)
    assert conn is not None
    rtcp_host, rtcp_port = _rtcp_target(offer, m, mux)
    result = NegotiatedMedia(
        index=index, remote_address=conn.host, remote_port=m.port,
        remote_rtcp_address=rtcp_host, remote_rtcp_port=rtcp_port, send_codec=send,
        receive_payload_types=receive,
        telephone_event=_send_event(event_codecs, send.clock_rate),
        receive_telephone_events={e.payload_type: e.clock_rate for e in events},
        ptime=_send_ptime(m, offer, local.ptime), direction=direction, rtcp_mux=mux,
        remote_hold=_BITS[local.direction][0] and not _BITS[offered_dir][1])
    return media, result


# -- the offerer's side ---------------------------------------------------------------------------


def negotiate_all(offer: SessionDescription, answer: SessionDescription
                  ) -> list[NegotiatedMedia | None]:
    """Check ``answer`` against our ``offer`` (RFC 3264 §6) and say what each stream does.

    Raises ``OfferAnswerError`` when the answer has a different number of m-lines, changes a
    media type or transport, enables a stream we disabled, or takes a stream with none of the
    codecs we offered. Formats the answer adds beyond the offer are allowed (§6.1) and ignored.
    A direction the answer may not give (sendrecv to our sendonly ...) is narrowed to what the
    offer allows rather than refused.
    """
    if len(answer.media) != len(offer.media):
        raise OfferAnswerError(f"answer has {len(answer.media)} media descriptions, "
                               f"the offer had {len(offer.media)}", 400)
    out: list[NegotiatedMedia | None] = []
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if a.media.lower() != o.media.lower():
            raise OfferAnswerError(f"answer changes m-line {index} from {o.media} to {a.media}",
                                   400)
        if a.port == 0:
            out.append(None)
            continue
        if o.port == 0:
            raise OfferAnswerError(f"answer enables m-line {index}, which the offer disabled", 400)
        if a.proto.upper() != o.proto.upper():
            raise OfferAnswerError(f"answer changes the transport of m-line {index}", 400)
        if not (_usable(offer, o) and _usable(answer, a)):
            out.append(None)
            continue
        out.append(_negotiate_stream(offer, o, answer, a, index))
    return out


def negotiate(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """The agreed audio stream of an offer/answer exchange we started (see ``negotiate_all``);
    ``OfferAnswerError`` if the answer rejected every stream."""
    for result in negotiate_all(offer, answer):
        if result is not None:
            return result
    raise OfferAnswerError("the answer accepted no audio stream")


def _negotiate_stream(offer: SessionDescription, o: MediaDescription,
                      answer: SessionDescription, a: MediaDescription, index: int
                      ) -> NegotiatedMedia:
    ours = _offered(o)
    by_key: dict[tuple[str, int, int], RtpMap] = {}
    for r in ours:
        by_key.setdefault(_rtpmap_key(r), r)
    our_fmtps = o.fmtps()
    their_fmtps = a.fmtps()
    # What the answer lists, resolved; a dynamic number it leaves without an rtpmap means what
    # it meant in the offer (RFC 3264 §6.1 asks the answerer to keep the numbers).
    agreed: list[tuple[RtpMap, RtpMap]] = []  # (answer's, ours)
    answered, offered = a.codecs(), o.codecs()
    taken: set[RtpMap] = set()
    for fmt in dict.fromkeys(a.formats):
        theirs = answered.get(fmt) or offered.get(fmt)
        if theirs is None:
            continue
        mine = by_key.get(_rtpmap_key(theirs))
        if mine is not None and mine not in taken:
            taken.add(mine)
            agreed.append((theirs, mine))
    speech = [(t, m) for t, m in agreed if m.encoding.lower() not in _AUXILIARY]
    if not speech:
        raise OfferAnswerError(f"the answer for m-line {index} has none of the offered codecs")
    events = [(t, m) for t, m in agreed if m.encoding.lower() == TELEPHONE_EVENT]

    theirs, mine = speech[0]
    send = Codec(mine.encoding, mine.clock_rate, mine.channels or 1, theirs.payload_type,
                 their_fmtps.get(str(theirs.payload_type)))
    receive = {m.payload_type: Codec(m.encoding, m.clock_rate, m.channels or 1, m.payload_type,
                                     our_fmtps.get(str(m.payload_type)))
               for _, m in agreed if m.encoding.lower() != TELEPHONE_EVENT}
    send_events = [Codec(TELEPHONE_EVENT, t.clock_rate, 1, t.payload_type,
                         their_fmtps.get(str(t.payload_type))) for t, _ in events]

    offer_send, offer_recv = _BITS[effective_direction(offer, o)]
    answer_send, answer_recv = _BITS[effective_direction(answer, a)]
    direction = _direction(offer_send and answer_recv, offer_recv and answer_send)
    mux = o.rtcp_mux and a.rtcp_mux
    conn = answer.connection_for(a)
    assert conn is not None
    rtcp_host, rtcp_port = _rtcp_target(answer, a, mux)
    return NegotiatedMedia(
        index=index, remote_address=conn.host, remote_port=a.port,
        remote_rtcp_address=rtcp_host, remote_rtcp_port=rtcp_port, send_codec=send,
        receive_payload_types=receive,
        telephone_event=_send_event(send_events, send.clock_rate),
        receive_telephone_events={m.payload_type: m.clock_rate for _, m in events},
        ptime=_send_ptime(a, answer, o.ptime or offer.ptime), direction=direction,
        rtcp_mux=mux, remote_hold=offer_send and not answer_recv)
