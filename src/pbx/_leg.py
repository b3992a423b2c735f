"""``Leg``: one party of a call, its dialog and its RTP stream (see ``pbx.call``).

The media methods apps use (play, say, collect_digits, record, hold, hangup ...) and the
signalling of the leg's dialog behind them: offer/answer on re-INVITE and UPDATE, early media,
session timers (RFC 4028), 401/407 and 422 retries, REFER handed to ``pbx._transfer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pbx.errors import CallHungUp, ParseError
from pbx.events import (
    CallAnswered,
    CallRinging,
    DigitsReceived,
    HangupSide,
    Reason,
    RecordingStarted,
)
from pbx.media.playback import FrameSource, LoopSource, PcmSource, WavSource
from pbx.sip import auth, b2bua
from pbx.sip import session_timer as st
from pbx.sip.invite import (
    AckTimeout,
    Answered,
    AnswerReceived,
    ByeReceived,
    DialogRequest,
    Failed,
    OfferReceived,
    OfferRequested,
    ReinviteFailed,
    Ringing,
    Terminated,
)
from pbx.sip.message import Request, Response
from pbx.sip.offer_answer import (
    LocalMedia,
    NegotiatedMedia,
    OfferAnswerError,
    answer,
    build_offer,
    hold_direction,
    negotiate,
)
from pbx.sip.sdp import SessionDescription, parse_sdp
from pbx.sip.uri import Uri

if TYPE_CHECKING:
    from pbx.call import Call
    from pbx.media.engine import Conference, Recording, Stream
    from pbx.pbx import Pbx
    from pbx.sip.endpoint import SessionHandle

__all__ = ["Leg", "Source", "State"]

log = logging.getLogger("pbx.call")

Source = str | os.PathLike[str] | FrameSource
State = Literal["new", "ringing", "early", "answered", "ended"]


class Leg:
    """One party of a call, with its SIP dialog and its RTP stream in the media engine.

    ``state``: ``new`` → ``ringing`` (180) / ``early`` (early media) → ``answered`` → ``ended``.
    ``status`` is the final SIP status of a leg that failed (486 busy ...), ``party`` who it is
    (an extension, a number, a URI).
    """

    def __init__(self, pbx: Pbx, handle: SessionHandle, *, leg_id: str, party: str,
                 outgoing: bool, call: Call | None) -> None:
        self._pbx = pbx
        self._handle = handle
        self.id = leg_id
        self.party = party
        self.outgoing = outgoing
        self.state: State = "new"
        self.status: int | None = None
        self.end_side: str = ""               # "remote" or "local" once ended
        self.hangup_reason: str = ""
        self._call = call
        loop = asyncio.get_running_loop()
        self._stream: Stream | None = None
        self._stream_ready: asyncio.Future[Stream] = loop.create_future()
        self._answered: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[None] = loop.create_future()
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._offer: SessionDescription | None = None       # the peer's pending offer
        self._local_sdp: SessionDescription | None = None    # the last description we sent
        self._our_offer: SessionDescription | None = None    # our offer awaiting its answer
        self.media: NegotiatedMedia | None = None
        self._direction = "sendrecv"                          # ours (hold: sendonly)
        self._remote_hold = False
        self._moh: Any = None
        self._peer: Leg | None = None                         # the leg bridged with this one
        self._conference: Conference | None = None
        self._on_ringing: Callable[[Leg, SessionDescription | None], None] | None = None
        self._early_media: SessionDescription | None = None
        self._redirect: list[Uri] = []                        # a 3xx's Contacts
        self._auth: tuple[str, str] | None = None             # trunk credentials (401/407)
        self._auth_tried = False
        self._422_tried = False
        self._st_policy: st.SessionTimerPolicy | None = None  # raised by a 422
        self._invite_headers: list[tuple[str, str]] = []     # extra headers of our INVITE
        self._reported = False                                # its LegEnded is published
        self._recordings = 0                                  # record() blocks running
        self._timer: st.SessionTimer | None = None           # RFC 4028, once answered
        self._timer_handle: asyncio.TimerHandle | None = None
        self._refreshing = False
        handle.on_event = self._on_sip
        handle.owner = self

    # Introspection ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.party!r} {self.state}>"

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def answered(self) -> bool:
        return self._answered.done() and not self._answered.cancelled()

    @property
    def stream(self) -> Stream | None:
        """The leg's RTP stream in the media engine (None until it is open)."""
        return self._stream

    @property
    def bridged_with(self) -> Leg | None:
        return self._peer

    @property
    def call(self) -> Call:
        assert self._call is not None
        return self._call

    # Media -----------------------------------------------------------------------------------
    async def play(self, source: Source, *, loop: bool = False) -> None:
        """Play a WAV file or a ``FrameSource`` to this party, to the end.

        Example: ``await call.play("welcome.wav")``. An unanswered incoming call is answered
        first. ``loop`` repeats it until the call ends or the task is cancelled."""
        stream = await self._media_ready()
        src = self._source(source, stream)
        if loop:
            src = LoopSource(src)  # type: ignore[arg-type]
        playback = stream.play(src)
        try:
            await self._until(asyncio.ensure_future(_await(playback)))
        finally:
            if not playback.done:
                playback.stop()

    async def say(self, text: str, *, voice: str | None = None) -> None:
        """Speak ``text`` (TTS, espeak-ng by default). Example: ``await call.say("Welcome")``."""
        stream = await self._media_ready()
        samples, rate = await asyncio.to_thread(
            self._pbx.tts.synthesize, text, voice=voice or self._pbx.voice,
            rate=stream.sample_rate)
        await self.play(PcmSource(samples, rate))

    async def collect_digits(self, prompt: Source | None = None, *, max_digits: int = 1,
                             terminator: str | None = "#", timeout: float = 5.0,
                             inter_digit_timeout: float = 3.0) -> str:
        """Play ``prompt`` (a digit stops it) and collect DTMF (RFC 4733, SIP INFO or in-band).

        Returns the digits without the terminator: after ``max_digits``, the ``terminator``,
        ``timeout`` seconds after the prompt with no digit, or ``inter_digit_timeout`` between
        two digits ("" if none came). Example::

            choice = await call.collect_digits("menu.wav", max_digits=1, timeout=5)
        """
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        stream = await self._media_ready()
        while not self._digits.empty():
            self._digits.get_nowait()
        playback = None
        if prompt is not None:
            playback = stream.play(self._source(prompt, stream))
        digits = ""
        try:
            first = asyncio.ensure_future(self._digits.get())
            try:
                if playback is not None:
                    prompt_done = asyncio.ensure_future(_await(playback))
                    await self._until(asyncio.wait({first, prompt_done},
                                                   return_when=asyncio.FIRST_COMPLETED))
                    prompt_done.cancel()
                    playback.stop()
                await self._until(asyncio.wait({first}, timeout=timeout))
            finally:
                if not first.done():
                    first.cancel()
            if not first.done() or first.cancelled():
                return ""
            d = first.result()
            while True:
                if terminator and d == terminator:
                    break
                digits += d
                if len(digits) >= max_digits:
                    break
                nxt = asyncio.ensure_future(self._digits.get())
                try:
                    await self._until(asyncio.wait({nxt}, timeout=inter_digit_timeout))
                finally:
                    if not nxt.done():
                        nxt.cancel()
                if not nxt.done() or nxt.cancelled():
                    break
                d = nxt.result()
        finally:
            if playback is not None and not playback.done:
                playback.stop()
            if digits:
                self._publish_digits(digits)
        return digits

    @contextlib.asynccontextmanager
    async def record(self, path: str | os.PathLike[str], *,
                     mode: Literal["mono", "stereo", "mixed"] = "stereo"
                     ) -> AsyncIterator[Recording]:
        """Record this leg to a WAV file while the block runs: ``stereo`` puts the party on the
        left and what it hears on the right; ``mono`` the party only; ``mixed`` both summed.

        Example: ``async with call.record("calls/1234.wav"): await call.bridge(leg)``."""
        stream = await self._media_ready()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        rec = stream.record(path, mode=mode)
        # A relay forwards packets untouched; a recorded bridge goes through the engine's mix.
        self._recordings += 1
        if self._peer is not None:
            self._pbx._relink(self)
        if self._call is not None:
            self._call._publish(RecordingStarted, leg_id=self._leg_key, path=os.fspath(path))
        try:
            yield rec
        finally:
            rec.stop()
            self._recordings -= 1
            if self._peer is not None:
                self._pbx._relink(self)

    async def hold(self) -> None:
        """Put this party on hold: a re-INVITE (sendonly) and music on hold. Example:
        ``await call.hold(); ...; await call.unhold()``."""
        self._check_alive()
        if self._direction != "sendrecv":
            return
        self._direction = hold_direction("sendrecv")
        self._suspend_bridge()
        await self._reoffer()
        self._start_moh()

    async def unhold(self) -> None:
        """Take this party off hold (re-INVITE sendrecv) and reconnect its bridge, if any.
        Example: ``await leg.unhold()``."""
        self._check_alive()
        if self._direction == "sendrecv":
            return
        self._direction = "sendrecv"
        self._stop_moh()
        await self._reoffer()
        self._resume_bridge()

    async def hangup(self) -> None:
        """End this leg: BYE when answered, CANCEL while an outgoing leg rings, 480 for an
        incoming call not answered yet. Returns at once; idempotent. Example:
        ``await call.hangup()`` (the app returning does the same for the whole call)."""
        if self.state == "ended":
            return
        self._hangup_now()

    async def wait_answered(self) -> None:
        """Return when this leg is answered; ``CallHungUp`` if it ends first. Example:
        ``call = await pbx.originate("1001"); await call.wait_answered()``."""
        await asyncio.shield(self._answered)

    async def wait_hangup(self) -> None:
        """Return when this party hangs up (or the leg ends otherwise). Example: an app that
        only records, ``async with call.record(path): await call.wait_hangup()``."""
        await asyncio.shield(self._ended)

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF to this party (RFC 4733 when negotiated, else tones) and wait for it.
        Example: ``await leg.send_dtmf("1234#")`` (an extension code on a shared number)."""
        stream = await self._media_ready()
        await self._until(asyncio.ensure_future(_await(stream.send_dtmf(digits))))

    # Internals: life cycle ---------------------------------------------------------------------
    @property
    def _leg_key(self) -> str:
        """The leg id as events carry it ("" for the call's own A leg)."""
        return "" if self._call is self else self.id

    def _check_alive(self) -> None:
        if self.state == "ended":
            raise CallHungUp(self._side_name(), self.hangup_reason)

    def _side_name(self) -> str:
        if self.end_side == "local":
            return HangupSide.SYSTEM
        return HangupSide.CALLER if self._call is self else HangupSide.CALLEE

    async def _until(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw`` unless this leg ends first (then ``CallHungUp``)."""
        self._check_alive()
        fut = asyncio.ensure_future(aw)
        if fut.done():
            return fut.result()
        await asyncio.wait({fut, self._ended}, return_when=asyncio.FIRST_COMPLETED)
        if fut.done():
            return fut.result()
        fut.cancel()
        raise CallHungUp(self._side_name(), self.hangup_reason)

    async def _media_ready(self) -> Stream:
        """The stream, once media is negotiated (an incoming call is answered for it)."""
        self._check_alive()
        if self.media is None:
            if not self.outgoing and self.state != "answered":
                await self.call.answer() if self._call is self else None
            if self.media is None:
                await self._until(asyncio.shield(self._answered))
        stream = await self._until(asyncio.shield(self._stream_ready))
        return stream  # type: ignore[no-any-return]

    def _source(self, source: Source, stream: Stream) -> FrameSource:
        if isinstance(source, str | os.PathLike):
            path = self._pbx.sound_path(source)
            return WavSource(path, stream.sample_rate)
        return source

    def _set_stream(self, stream: Stream) -> None:
        self._stream = stream
        if not self._stream_ready.done():
            self._stream_ready.set_result(stream)

    def _local_media(self) -> LocalMedia:
        assert self._stream is not None
        host, port = self._stream.local
        return LocalMedia(address=host, port=port, codecs=self._pbx.codecs,
                          direction=self._direction)

    def _apply_media(self, media: NegotiatedMedia) -> None:
        assert self._stream is not None
        self.media = media
        self._remote_hold = media.remote_hold
        try:
            self._stream.set_media(media, latch=True)
        except Exception:
            log.exception("%r: cannot use the negotiated media", self)

    def _hangup_now(self) -> None:
        if self.state == "ended":
            return
        self.end_side = self.end_side or "local"
        session = self._handle.session
        if self.state == "answered" or (self.outgoing and self.state in ("ringing", "early")):
            self._handle.act(lambda s, now: s.hangup(now))
        elif self.outgoing:
            self._handle.act(lambda s, now: s.cancel(now))
        elif session.state.name != "TERMINATED":
            self._handle.act(lambda s, now: s.reject(480, now))
        if session.state.name == "TERMINATED":
            self._finish("local-bye", None)   # no-op if the session's events ended the leg

    def _finish(self, reason: str, status: int | None) -> None:
        """The leg is over: record why, release media, wake every waiter."""
        if self.state == "ended":
            return
        was = self.state
        self.state = "ended"
        self.status = status if status is not None else self.status
        self.hangup_reason = reason
        if not self.end_side:
            self.end_side = "local" if reason in ("local-bye",) else "remote"
        peer = self._peer
        if peer is not None:
            self._pbx._disconnect(self, peer)
        self._stop_moh()
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        if not self._answered.done():
            self._answered.set_exception(CallHungUp(self._side_name(), reason))
            self._answered.exception()   # retrieved: no "never retrieved" warning
        if not self._ended.done():
            self._ended.set_result(None)
        self._pbx._leg_ended(self, was)

    # Internals: SIP ------------------------------------------------------------------------
    def _on_sip(self, ev: object) -> None:
        if isinstance(ev, Ringing):
            self._on_ringing_event(ev.status, ev.sdp)
        elif isinstance(ev, Answered):
            self._on_answered(ev.sdp, ev.response)
        elif isinstance(ev, Failed):
            if ev.status in (401, 407) and ev.response is not None and self._retry_auth(
                    ev.response):
                return
            if ev.status == 422 and ev.response is not None and self._retry_422(ev.response):
                return
            self.status = ev.status
            if 300 <= ev.status < 400 and ev.status not in (305, 380) and ev.response:
                self._pbx._redirected(self, ev.response)
        elif isinstance(ev, OfferReceived):
            if ev.initial and not self.outgoing:
                self._offer = _parse(ev.sdp)
            elif isinstance(ev.message, Request):
                self._on_reoffer(ev.sdp, ev.message)
            # (an offer in a 2xx cannot come: our INVITEs always carry one)
        elif isinstance(ev, OfferRequested):
            if not ev.initial:
                self._offer_requested(ev.request)
        elif isinstance(ev, AnswerReceived):
            self._on_answer(ev.sdp, ev.message)
        elif isinstance(ev, ReinviteFailed):
            self._our_offer = None           # our offer was refused; the session goes on
        elif isinstance(ev, AckTimeout):
            self._hangup_now()
        elif isinstance(ev, ByeReceived):
            self.end_side = "remote"
        elif isinstance(ev, DialogRequest):
            self._on_dialog_request(ev)
        elif isinstance(ev, Terminated):
            if ev.reason in ("remote-bye", "cancelled", "gone"):
                self.end_side = self.end_side or "remote"
            self._finish(ev.reason, self.status)

    def _retry_422(self, response: Response) -> bool:
        """Session Interval Too Small (RFC 4028 §7.3): once, the INVITE again with the interval
        the 422's Min-SE asks for."""
        policy = self._pbx.session_timer
        if policy is None or self._422_tried or not self.outgoing:
            return False
        self._422_tried = True
        try:
            raised = st.on_422(response, policy)
        except ParseError:
            return False
        if raised is policy:
            return False                       # it asks for nothing new: retrying would loop
        headers = [(n, v) for n, v in self._invite_headers
                   if n.lower() not in ("session-expires", "min-se", "supported")]
        headers += st.offer_headers(raised)
        self._st_policy = raised
        self._invite_headers = headers
        self._retry_with(headers)
        return True

    def _retry_with(self, headers: list[tuple[str, str]]) -> None:
        """Follow a new INVITE transaction repeating ours (Call-ID, From tag, CSeq + 1)."""
        old = self._handle
        handle = self._pbx._reinvite_with(old, old.session.invite, headers)
        old.on_event = _ignore
        old.owner = None
        self._handle = handle
        handle.on_event = self._on_sip
        handle.owner = self
        # After the transaction layer has ACKed the failure (same batch of events).
        asyncio.get_running_loop().call_soon(
            lambda: handle.act(lambda s, now: s.start(now)) if self.state != "ended" else None)

    def _retry_auth(self, response: Response) -> bool:
        """Answer a trunk's 401/407 once: the same INVITE again (Call-ID, From tag, CSeq + 1)
        with our credentials; this leg follows the new transaction."""
        if self._auth is None or self._auth_tried or not self.outgoing:
            return False
        self._auth_tried = True
        proxy = response.status == 407
        challenges = []
        for value in response.headers.get_all("Proxy-Authenticate" if proxy
                                              else "WWW-Authenticate"):
            with contextlib.suppress(ParseError):
                challenges.append(auth.parse_challenge(value))
        client = auth.DigestClient()
        challenge = client.choose(challenges)
        if challenge is None:
            return False
        old = self._handle
        invite = old.session.invite
        username, password = self._auth
        value = client.authorize(challenge, "INVITE", str(invite.uri), username, password,
                                 cnonce=os.urandom(8).hex(), nc=1)
        headers = [(n, v) for n, v in self._invite_headers]
        headers.append(("Proxy-Authorization" if proxy else "Authorization", value))
        self._invite_headers = headers
        self._retry_with(headers)
        return True

    def _on_ringing_event(self, status: int, sdp: bytes | None) -> None:
        early = None
        if sdp and self._our_offer is not None:
            early = _parse(sdp)
            if early is not None:
                try:
                    self._apply_media(negotiate(self._our_offer, early))
                    self._early_media = early
                except OfferAnswerError:
                    early = None
        if self.state == "new" or (early is not None and self.state == "ringing"):
            self.state = "early" if early is not None else "ringing"
        if self._call is not None:
            self._call._publish(CallRinging, leg_id=self._leg_key, status=status)
        if self._on_ringing is not None:
            self._on_ringing(self, early)

    def _on_answered(self, sdp: bytes | None, response: Any = None) -> None:
        if self._our_offer is not None:
            desc = _parse(sdp) if sdp else self._early_media
            if desc is not None:
                try:
                    self._apply_media(negotiate(self._our_offer, desc))
                    self._local_sdp = self._our_offer
                except OfferAnswerError:
                    log.info("%r: unusable answer, hanging up", self)
                    self.state = "answered"
                    self._hangup_now()
                    return
            self._our_offer = None
        self.state = "answered"
        if not self._answered.done():
            self._answered.set_result(None)
        policy = self._st_policy or self._pbx.session_timer
        if policy is not None and response is not None:
            try:
                self._set_timer(st.from_2xx(response, policy, self._now()))
            except Exception:                  # a peer's bad Session-Expires: no timer
                log.info("%r: unusable Session-Expires in the 2xx", self)
        if self._call is not None:
            self._call._publish(CallAnswered, leg_id=self._leg_key)

    # Session timers (RFC 4028) ---------------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _set_timer(self, timer: st.SessionTimer | None) -> None:
        self._timer = timer
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        timer = self._timer
        if timer is None or self.state != "answered":
            return
        deadline = timer.expires_at if self._refreshing else timer.next_deadline
        loop = asyncio.get_running_loop()
        self._timer_handle = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        timer = self._timer
        if timer is None or self.state != "answered":
            return
        due = timer.due(self._now())
        if due == "bye":
            log.info("%r: session timer expired, hanging up", self)
            self.hangup_reason = "session expired"
            if self._call is self:
                self.call.end_reason(Reason.NORMAL, cause="session timer expired")
            self._hangup_now()
            return
        if due == "refresh" and not self._refreshing:
            self._refreshing = True
            self._send_reoffer(refresh=True)
        self._arm_timer()

    def _refreshed(self, timer: st.SessionTimer | None) -> None:
        """A session refresh succeeded (ours answered, or the peer's accepted)."""
        self._refreshing = False
        if timer is not None:
            self._set_timer(timer)
        elif self._timer is not None:
            self._set_timer(self._timer.refreshed(self._now()))

    def _answer_headers(self, request: Request) -> list[tuple[str, str]]:
        """Session-Expires for our 2xx to ``request`` (an INVITE, re-INVITE or UPDATE); the
        timer starts (again) with it."""
        policy = self._pbx.session_timer
        if policy is None:
            return []
        try:
            timer = st.from_request(request, policy, self._now())
        except Exception:
            return []
        if timer is None:
            return []
        self._refreshed(timer)
        return st.answer_headers(timer)

    def _on_reoffer(self, sdp: bytes, request: Request) -> None:
        """A re-INVITE with an offer (hold, resume, codec or address change)."""
        offer = _parse(sdp)
        answered = self._answer_offer(offer) if offer is not None else None
        if answered is None:
            self._handle.act(lambda s, now: s.reject(488, now))
            return
        body, media = answered
        headers = self._answer_headers(request)
        self._handle.act(lambda s, now: s.accept(body, now, headers=headers))
        self._use_new_media(media)

    def _answer_offer(self, offer: SessionDescription) -> tuple[bytes, NegotiatedMedia] | None:
        """Our answer to a new offer in the dialog (it becomes our description), or None."""
        if self._stream is None:
            return None
        desc, agreed = answer(offer, self._local_media(), session_id=self._pbx.session_id,
                              previous=self._local_sdp)
        media = next((m for m in agreed if m is not None), None)
        if media is None:
            return None
        self._local_sdp = desc
        return bytes(desc), media

    def _use_new_media(self, media: NegotiatedMedia) -> None:
        """Media changed by the peer's offer: hold and resume are carried to the bridged
        party, anything else (codec, address) rebuilds the bridge."""
        was_held = self._remote_hold
        self._apply_media(media)
        if media.remote_hold != was_held:
            self._pbx._remote_hold_changed(self, media.remote_hold)
        elif self._peer is not None:
            self._pbx._reconnect(self)

    def _offer_requested(self, request: Request) -> None:
        """A re-INVITE without an offer: ours goes in the 2xx, the answer comes in the ACK."""
        if self._stream is None:
            self._handle.act(lambda s, now: s.reject(488, now))
            return
        offer = build_offer(self._local_media(), session_id=self._pbx.session_id,
                            previous=self._local_sdp)
        self._our_offer = offer
        body = bytes(offer)
        headers = self._answer_headers(request)
        self._handle.act(lambda s, now: s.accept(body, now, headers=headers))

    def _on_answer(self, sdp: bytes | None, message: Any = None) -> None:
        offer, self._our_offer = self._our_offer, None
        if self._refreshing:
            policy = self._pbx.session_timer
            timer = None
            if policy is not None and isinstance(message, Response):
                with contextlib.suppress(Exception):
                    timer = st.from_2xx(message, policy, self._now())
            self._refreshed(timer)
        desc = _parse(sdp) if sdp else None
        if offer is None or desc is None:
            return
        try:
            media = negotiate(offer, desc)
        except OfferAnswerError:
            return
        self._local_sdp = offer
        self._apply_media(media)
        if self._peer is not None:
            self._pbx._reconnect(self)

    async def _reoffer(self) -> None:
        """Send a re-INVITE with our current direction."""
        self._send_reoffer()

    def _send_reoffer(self, *, refresh: bool = False) -> None:
        """A re-INVITE with our current media (a session refresh when nothing changed); it
        carries the session timer, so any re-INVITE refreshes the session."""
        if self._stream is None or self.state != "answered":
            return
        offer = build_offer(self._local_media(), session_id=self._pbx.session_id,
                            previous=self._local_sdp)
        self._our_offer = offer
        body = bytes(offer)
        policy = self._st_policy or self._pbx.session_timer
        headers = st.offer_headers(policy, self._timer) if policy is not None else []
        if self._timer is not None:
            self._refreshing = True
        self._handle.act(lambda s, now: s.reinvite(body, now, headers=headers))

    def _on_dialog_request(self, ev: DialogRequest) -> None:
        req = ev.request
        method = req.method
        key = ev.key
        if method == "INFO":
            digit = b2bua.info_digit(req)
            if digit is not None:
                self._digits.put_nowait(digit)
            self._handle.act(lambda s, now: s.respond(key, 200, now))
        elif method == "REFER":
            self._pbx._on_refer(self, ev)
        elif method in ("NOTIFY", "OPTIONS"):
            self._handle.act(lambda s, now: s.respond(key, 200, now))
        elif method == "UPDATE":
            self._on_update(ev)
        else:
            self._handle.act(lambda s, now: s.respond(key, 501, now))

    def _on_update(self, ev: DialogRequest) -> None:
        """UPDATE (RFC 3311): a session refresh, or a new offer in the confirmed dialog (hold,
        resume, codec change), answered in its 200 and carried across like a re-INVITE's."""
        req, key = ev.request, ev.key
        if not req.body:
            headers = self._answer_headers(req)
            self._handle.act(lambda s, now: s.respond(key, 200, now, headers=headers))
            return
        offer = _parse(req.body)
        if self._our_offer is not None:      # our own offer is outstanding (RFC 3311 §5.2)
            self._handle.act(lambda s, now: s.respond(key, 491, now))
            return
        answered = (self._answer_offer(offer)
                    if offer is not None and self.state == "answered" else None)
        if answered is None:
            self._handle.act(lambda s, now: s.respond(key, 488, now))
            return
        body, media = answered
        headers = self._answer_headers(req)
        self._handle.act(lambda s, now: s.respond(key, 200, now, body=body,
                                                  content_type="application/sdp",
                                                  headers=headers))
        self._use_new_media(media)

    def _on_digit(self, digit: str) -> None:
        self._digits.put_nowait(digit)

    def _publish_digits(self, digits: str) -> None:
        if self._call is not None:
            self._call._publish(DigitsReceived, leg_id=self._leg_key, digits=digits)

    # Internals: bridge & hold -----------------------------------------------------------------
    def _suspend_bridge(self) -> None:
        peer = self._peer
        if peer is not None:
            self._pbx._unlink(self, peer)

    def _resume_bridge(self) -> None:
        if self._peer is not None:
            self._pbx._link(self, self._peer)

    def _start_moh(self) -> None:
        if self._stream is None or self.media is None or self._moh is not None:
            return
        self._moh = self._stream.play(self._pbx.moh_source(self._stream.sample_rate))

    def _stop_moh(self) -> None:
        moh, self._moh = self._moh, None
        if moh is not None and not moh.done:
            moh.stop()


def _ignore(event: object) -> None:
    return None


def _parse(sdp: bytes | None) -> SessionDescription | None:
    if not sdp:
        return None
    try:
        return parse_sdp(sdp)
    except ParseError:
        return None


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw
