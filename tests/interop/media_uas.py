"""A minimal SIP UAS on loopback that answers calls with streams of a ``MediaEngine``.

For interop tests of the media engine: SIPp and baresip call it directly at
``sip:<any user>@127.0.0.1:<port>`` over UDP, with no registrar or proxy in between. Each INVITE
carrying an SDP offer gets a stream opened on the engine and an answer built by
``pbx.sip.offer_answer.answer``; the negotiated media is handed to the stream (``setup``, by
default ``stream.set_media``) before the 200 goes out, so the stream is ready for the first
packet the peer sends after it.

What a test peer does with a call is handled: 100 (and 180 when ``ring`` > 0) before the final
response; the final response to an INVITE retransmitted until the ACK (RFC 3261 §13.3.1.4 and
§17.2.1, T1 doubling up to T2; a 2xx never acknowledged within 64*T1 ends the call with a BYE);
retransmitted INVITEs answered with the last response; CANCEL while ringing (200, then 487);
BYE (200); re-INVITE in the dialog (answered on the same stream); INFO and OPTIONS (200). The UAS
can hang up itself (``hangup``: BYE, retransmitted until answered). Responses and our requests go
back to the address the INVITE came from (symmetric, like rport: all peers are on loopback).

Not a SIP stack: no TCP, no authentication, no Record-Route, no late offer (an INVITE without
SDP gets 488), no PRACK. It is test equipment; ``pbx.sip`` is what is being tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pbx.errors import ParseError
from pbx.media.engine import MediaEngine, Stream
from pbx.sip.message import Headers, Request, Response, parse_message
from pbx.sip.offer_answer import Codec, LocalMedia, NegotiatedMedia, answer
from pbx.sip.sdp import SessionDescription, parse_sdp
from pbx.sip.uri import parse_uri

__all__ = ["DEFAULT_CODECS", "MediaUas", "UasCall", "set_media"]

log = logging.getLogger("tests.interop.media_uas")

DEFAULT_CODECS = (Codec("PCMU", 8000, 1, 0), Codec("PCMA", 8000, 1, 8))
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
_T2 = 4.0


def set_media(call: UasCall) -> None:
    """The default ``setup``: the negotiated media goes to the stream (it becomes terminated)."""
    assert call.stream is not None and call.media is not None
    call.stream.set_media(call.media)


def _token() -> str:
    return secrets.token_hex(6)


@dataclass(eq=False)
class UasCall:
    """One call the UAS answered (or refused): its dialog, its stream and what happened.

    ``state``: ``proceeding`` (INVITE received), ``answered`` (2xx sent, waiting for the ACK),
    ``confirmed`` (ACK received), ``terminated``. ``reason`` says why it ended: ``bye`` (the peer
    hung up), ``hangup`` (we did), ``cancel``, ``rejected`` (no usable offer), ``no-ack``.
    """

    call_id: str
    peer: tuple[str, int]
    invite: Request
    local_tag: str
    stream: Stream | None = None
    offer: SessionDescription | None = None
    answer: SessionDescription | None = None
    media: NegotiatedMedia | None = None
    state: str = "proceeding"
    reason: str | None = None
    requests: list[str] = field(default_factory=list)   # methods received, in order
    notifies: list[Request] = field(default_factory=list)  # NOTIFYs received (REFER progress)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    terminated: asyncio.Event = field(default_factory=asyncio.Event)
    _invite_branch: str = ""
    _invite_cseq: int = 0
    _last_response: bytes = b""
    _retransmit: asyncio.TimerHandle | None = None
    _answer_timer: asyncio.TimerHandle | None = None
    _local_cseq: int = 0

    async def wait_confirmed(self, timeout: float = 5.0) -> UasCall:
        """Wait for the ACK of our 2xx; raises AssertionError with the call's state if none."""
        try:
            await asyncio.wait_for(self.confirmed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"call {self.call_id}: no ACK within {timeout:g} s "
                                 f"(state {self.state}, requests {self.requests})") from None
        return self

    async def wait_terminated(self, timeout: float = 5.0) -> UasCall:
        try:
            await asyncio.wait_for(self.terminated.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"call {self.call_id} still {self.state} after {timeout:g} s "
                                 f"(requests {self.requests})") from None
        return self


class MediaUas(asyncio.DatagramProtocol):
    """The UAS. ``async with MediaUas(engine) as uas:`` then have a peer dial ``uas.uri()``.

    ``codecs`` and ``telephone_event`` are what the answers offer to take (``LocalMedia``);
    ``ring`` seconds of 180 Ringing before the 200 (0: answer at once); ``setup(call)`` runs
    once the call's stream and negotiated media exist, before the 2xx is sent (default
    ``set_media``; raise to refuse the call with 500); ``linger`` seconds after a call ends its
    stream is closed (None: kept open until the UAS closes, so a test can still read it).
    """

    def __init__(self, engine: MediaEngine, *, host: str = "127.0.0.1", port: int = 0,
                 codecs: Iterable[Codec] = DEFAULT_CODECS,
                 telephone_event: tuple[int, ...] = (8000,), ring: float = 0.0,
                 setup: Callable[[UasCall], None] = set_media, linger: float | None = None,
                 t1: float = 0.5) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.codecs = tuple(codecs)
        self.telephone_event = telephone_event
        self.ring = ring
        self.setup = setup
        self.linger = linger
        self.t1 = t1
        self.calls: list[UasCall] = []
        self.malformed = 0
        self._by_id: dict[str, UasCall] = {}
        self._new_calls: asyncio.Queue[UasCall] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[Response]] = {}   # our requests, by branch
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._session_id = secrets.randbits(31)

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> MediaUas:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def aclose(self) -> None:
        """Stop answering; close every call's stream (the calls are not hung up)."""
        for task in list(self._tasks):
            task.cancel()
        for call in self.calls:
            self._stop_timers(call)
            if call.stream is not None and not call.stream.closed and self.engine.running:
                call.stream.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> MediaUas:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def uri(self, user: str = "media") -> str:
        """The SIP URI to dial."""
        return f"sip:{user}@{self.host}:{self.port}"

    async def next_call(self, timeout: float = 5.0) -> UasCall:
        """The next call to arrive (in order of their INVITEs)."""
        try:
            return await asyncio.wait_for(self._new_calls.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no INVITE reached {self.uri()} within {timeout:g} s "
                                 f"({len(self.calls)} calls so far)") from None

    # asyncio -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not data.strip(b"\r\n"):
            return                                    # keep-alive
        try:
            msg = parse_message(data)
            msg.call_id, msg.cseq, msg.branch  # noqa: B018 - the fields every message needs
        except ParseError as exc:
            self.malformed += 1
            log.warning("malformed SIP from %s: %s", addr, exc)
            return
        peer = (addr[0], addr[1])
        if isinstance(msg, Response):
            fut = self._pending.get(msg.branch)
            if fut is not None and not fut.done() and msg.status >= 200:
                fut.set_result(msg)
            return
        handler = {"INVITE": self._on_invite, "ACK": self._on_ack, "BYE": self._on_bye,
                   "CANCEL": self._on_cancel}.get(msg.method, self._on_other)
        try:
            handler(msg, peer)
        except Exception:                             # a bug here must not kill the endpoint
            log.exception("media UAS failed on %s from %s", msg.method, peer)

    # requests ------------------------------------------------------------------------------------
    def _on_invite(self, req: Request, peer: tuple[str, int]) -> None:
        call = self._by_id.get(req.call_id)
        if call is not None and req.branch == call._invite_branch:
            if call._last_response:                   # retransmission: repeat what we said last
                self._send(call._last_response, call.peer)
            return
        if call is not None and (call.state == "terminated" or req.to.tag != call.local_tag):
            self._reply(req, peer, 481)
            return
        if call is not None and (call.state != "confirmed" or req.cseq.seq <= call._invite_cseq):
            self._reply(req, peer, 491 if call.state != "confirmed" else 500)
            return
        if call is None:
            if req.to.tag is not None:
                self._reply(req, peer, 481)
                return
            call = UasCall(req.call_id, peer, req, _token())
            self._by_id[req.call_id] = call
            self.calls.append(call)
            self._new_calls.put_nowait(call)
        call.requests.append("INVITE")
        call.invite = req
        call._invite_branch = req.branch
        call._invite_cseq = req.cseq.seq
        self._stop_timers(call)
        self._respond(call, 100)
        self._spawn(self._answer(call))

    async def _answer(self, call: UasCall) -> None:
        req = call.invite
        reinvite = call.state == "confirmed"
        try:
            offer = parse_sdp(req.body) if req.body and req.content_type == "application/sdp" \
                else None
        except ParseError as exc:
            self._finish_invite(call, 400, reason=f"bad SDP: {exc.reason}")
            return
        if offer is None:
            self._finish_invite(call, 488, reason="an SDP offer is required")
            return
        if call.stream is None:
            call.stream = await self.engine.open_stream(host=self.host)
        if call.state == "terminated":                # cancelled while the stream opened
            return
        local = LocalMedia(address=self.host, port=call.stream.port, codecs=self.codecs,
                           telephone_event=self.telephone_event)
        sdp, agreed = answer(offer, local, session_id=self._session_id, previous=call.answer)
        media = next((m for m in agreed if m is not None), None)
        if media is None:
            self._finish_invite(call, 488)
            return
        call.offer, call.answer, call.media = offer, sdp, media
        try:
            self.setup(call)
        except Exception as exc:
            log.exception("setup of call %s failed", call.call_id)
            self._finish_invite(call, 500, reason=f"media setup failed: {exc}")
            return
        if self.ring > 0 and not reinvite:
            self._respond(call, 180)
            loop = asyncio.get_running_loop()
            call._answer_timer = loop.call_later(self.ring, self._send_2xx, call)
        else:
            self._send_2xx(call)

    def _send_2xx(self, call: UasCall) -> None:
        call._answer_timer = None
        if call.state == "terminated":
            return
        assert call.answer is not None
        if call.state != "confirmed":
            call.state = "answered"
        self._respond(call, 200, body=bytes(call.answer), content_type="application/sdp")
        self._retransmit_final(call, self.t1, 0.0)

    def _finish_invite(self, call: UasCall, status: int, reason: str | None = None) -> None:
        """A final non-2xx answer to the INVITE: a new call ends with it, a re-INVITE does not."""
        self._respond(call, status, reason=reason)
        if call.state != "confirmed":
            self._end(call, "cancel" if status == 487 else "rejected")
        self._retransmit_final(call, self.t1, 0.0)

    def _retransmit_final(self, call: UasCall, interval: float, elapsed: float) -> None:
        """Repeat the final response until the ACK; a 2xx never acknowledged ends the call."""
        if elapsed >= 64 * self.t1:
            call._retransmit = None
            if call.state == "answered":
                log.warning("call %s: no ACK for the 2xx, hanging up", call.call_id)
                self._spawn(self._bye(call, "no-ack"))
            return

        def again() -> None:
            self._send(call._last_response, call.peer)
            self._retransmit_final(call, min(2 * interval, _T2), elapsed + interval)

        call._retransmit = asyncio.get_running_loop().call_later(interval, again)

    def _on_ack(self, req: Request, peer: tuple[str, int]) -> None:
        call = self._by_id.get(req.call_id)
        if call is None or req.cseq.seq != call._invite_cseq:
            return
        call.requests.append("ACK")
        if call._retransmit is not None:
            call._retransmit.cancel()
            call._retransmit = None
        if call.state == "answered":
            call.state = "confirmed"
            call.confirmed.set()

    def _on_bye(self, req: Request, peer: tuple[str, int]) -> None:
        call = self._by_id.get(req.call_id)
        if call is None or req.to.tag != call.local_tag:
            self._reply(req, peer, 481)
            return
        call.requests.append("BYE")
        self._reply(req, peer, 200)
        self._end(call, "bye")

    def _on_cancel(self, req: Request, peer: tuple[str, int]) -> None:
        call = self._by_id.get(req.call_id)
        if call is None or req.branch != call._invite_branch:
            self._reply(req, peer, 481)
            return
        call.requests.append("CANCEL")
        self._reply(req, peer, 200, to_tag=call.local_tag)
        if call.state == "proceeding":
            self._finish_invite(call, 487)

    def _on_other(self, req: Request, peer: tuple[str, int]) -> None:
        call = self._by_id.get(req.call_id)
        if call is not None:
            call.requests.append(req.method)
        if req.method == "OPTIONS":
            self._reply(req, peer, 200, extra=[("Allow", _ALLOW), ("Accept", "application/sdp")])
        elif req.method in ("INFO", "NOTIFY") and call is not None:
            if req.method == "NOTIFY":
                call.notifies.append(req)
            self._reply(req, peer, 200)
        else:
            self._reply(req, peer, 501 if call is None else 405, extra=[("Allow", _ALLOW)])

    # our side of the dialog ------------------------------------------------------------------------
    async def hangup(self, call: UasCall, timeout: float = 5.0) -> Response:
        """End a confirmed call from our side with a BYE; returns the peer's final response."""
        if call.state not in ("answered", "confirmed"):
            raise AssertionError(f"call {call.call_id} is {call.state}: nothing to hang up")
        return await asyncio.wait_for(self._bye(call, "hangup"), timeout)

    async def _bye(self, call: UasCall, reason: str) -> Response:
        self._end(call, reason)
        return await self._request(call, "BYE")

    async def request(self, call: UasCall, method: str, headers: Iterable[tuple[str, str]] = (),
                      body: bytes = b"", timeout: float = 5.0) -> Response:
        """Send ``method`` (REFER, INFO ...) in the call's dialog; returns the final response."""
        return await asyncio.wait_for(self._request(call, method, headers, body), timeout)

    async def _request(self, call: UasCall, method: str,
                       extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Response:
        inv = call.invite
        target = inv.contacts[0].uri if inv.contacts else inv.from_.uri
        call._local_cseq += 1
        branch = "z9hG4bK" + _token()
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", str(inv.to.with_tag(call.local_tag)))
        headers.add("To", inv.headers.get("From") or "")
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{call._local_cseq} {method}")
        for name, value in extra:
            headers.add(name, value)
        data = bytes(Request(method, parse_uri(str(target)), headers, body))
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[branch] = fut
        interval = self.t1
        try:
            for _ in range(11):                       # Timer E up to Timer F (64*T1)
                self._send(data, call.peer)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), interval)
                interval = min(2 * interval, _T2)
            raise AssertionError(f"call {call.call_id}: no answer to our {method}")
        finally:
            self._pending.pop(branch, None)

    # helpers ---------------------------------------------------------------------------------------
    def _end(self, call: UasCall, reason: str) -> None:
        if call.state == "terminated":
            return
        call.state = "terminated"
        call.reason = reason
        if call._answer_timer is not None:
            call._answer_timer.cancel()
            call._answer_timer = None
        call.terminated.set()
        stream = call.stream
        if stream is not None and self.linger is not None:
            def close() -> None:
                if not stream.closed and self.engine.running:
                    stream.close()
            asyncio.get_running_loop().call_later(self.linger, close)

    def _stop_timers(self, call: UasCall) -> None:
        for timer in (call._retransmit, call._answer_timer):
            if timer is not None:
                timer.cancel()
        call._retransmit = call._answer_timer = None

    def _respond(self, call: UasCall, status: int, *, reason: str | None = None,
                 body: bytes = b"", content_type: str | None = None) -> None:
        """Send a response to the call's current INVITE (remembered for retransmissions)."""
        extra = [("Contact", f"<sip:media@{self.host}:{self.port}>"), ("Allow", _ALLOW)] \
            if status < 300 and status != 100 else []
        if content_type is not None:
            extra.append(("Content-Type", content_type))
        tag = call.local_tag if status != 100 else None
        call._last_response = self._build(call.invite, status, reason=reason, to_tag=tag,
                                          extra=extra, body=body)
        self._send(call._last_response, call.peer)

    def _reply(self, req: Request, peer: tuple[str, int], status: int, *,
               to_tag: str | None = None, extra: list[tuple[str, str]] | None = None) -> None:
        self._send(self._build(req, status, to_tag=to_tag or _token(), extra=extra or []), peer)

    @staticmethod
    def _build(req: Request, status: int, *, reason: str | None = None, to_tag: str | None,
               extra: list[tuple[str, str]], body: bytes = b"") -> bytes:
        headers = Headers()
        for via in req.headers.get_all("Via"):
            headers.add("Via", via)
        to = req.to
        headers.add("From", req.headers.get("From") or "")
        headers.add("To", str(to.with_tag(to_tag)) if to_tag and to.tag is None
                    else req.headers.get("To") or "")
        headers.add("Call-ID", req.call_id)
        headers.add("CSeq", req.headers.get("CSeq") or "")
        for name, value in extra:
            headers.add(name, value)
        return bytes(Response(status, reason, headers, body))

    def _send(self, data: bytes, peer: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, peer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("media UAS task failed", exc_info=t.exception())

        task.add_done_callback(done)
