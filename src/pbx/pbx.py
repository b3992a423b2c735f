"""``Pbx``: the SIP server, the B2BUA, the media engine, the event bus and the stores, wired.

Embed it in a product::

    from pbx import Pbx

    pbx = Pbx("pbx.toml")

    @pbx.route("4001234567")
    async def hotline(call):
        await call.answer()
        await call.say("Welcome")
        leg = await call.dial("1001")
        await call.bridge(leg)

    asyncio.run(pbx.serve_forever())

An INVITE to a number routed here (``route()`` in Python or ``[[numbers]]`` in the config) is
taken by the B2BUA: a ``Call`` is made and its app runs in the call's own task group, behind
the middleware (``use()``, rules). Any other INVITE is proxied (extension to extension) and
REGISTERs go to the registrar, as in ``pbx.server``. Every call publishes its events on
``pbx.bus``: call records (SQLite), webhooks, metrics and the admin API's WebSocket feed read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pbx._transfer import on_refer
from pbx.call import App, Call, Leg, Middleware
from pbx.cdr import CdrStore, CdrWriter
from pbx.config import Config, load_config, parse_config
from pbx.errors import CallHungUp, DialFailed, ParseError
from pbx.events import (
    CallBridged,
    CallEnded,
    CallStarted,
    EventBus,
    HangupSide,
    LegEnded,
    LegStarted,
    Reason,
    RegistrationChanged,
)
from pbx.media.engine import Conference, EngineConfig, MediaEngine, MediaEvent, Stream
from pbx.media.playback import FrameSource, LoopSource, PcmSource, WavSource
from pbx.media.tts import EspeakNgProvider, TtsProvider
from pbx.metrics import CallMetrics, Registry
from pbx.region import region_of
from pbx.server import SipServer, _tune_gc
from pbx.sip import b2bua
from pbx.sip import session_timer as st
from pbx.sip.address import Address
from pbx.sip.endpoint import Endpoint, SessionHandle
from pbx.sip.location import Binding
from pbx.sip.message import Request, Response
from pbx.sip.offer_answer import Codec, LocalMedia, build_offer
from pbx.sip.peer import Peer
from pbx.sip.sdp import SessionDescription
from pbx.sip.transaction import Timers, TxKey
from pbx.sip.uri import SipUri, Uri

__all__ = ["DEFAULT_CODECS", "Pbx"]

log = logging.getLogger("pbx")

DEFAULT_CODECS = (Codec("PCMU", 8000, 1, 0), Codec("PCMA", 8000, 1, 8), Codec("G722", 8000, 1, 9),
                  Codec("opus", 48000, 2, None))

_MINIMAL = """
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "pbx.local"
[store]
path = "pbx.sqlite3"
"""


@dataclass(slots=True)
class _Route:
    """A number (or pattern) taken by the B2BUA and the app that answers it."""

    name: str
    match: Callable[[str], bool]
    app: App
    middlewares: tuple[Middleware, ...] = ()
    tenant: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def _matcher(pattern: str | re.Pattern[str]) -> Callable[[str], bool]:
    if isinstance(pattern, re.Pattern):
        return lambda user: pattern.fullmatch(user) is not None
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return lambda user: user.startswith(prefix)
    return lambda user: user == pattern


class _Taker:
    """The server's ``take_call`` hook: ``wants`` asks without side effects."""

    def __init__(self, pbx: Pbx) -> None:
        self._pbx = pbx

    def wants(self, req: Request) -> bool:
        return self._pbx._route_for(req) is not None

    def __call__(self, key: TxKey, req: Request, source: Peer) -> bool:
        return self._pbx._take_call(key, req, source)


class Pbx:
    """The telephone exchange. ``config`` is a ``Config``, a TOML file path, or None for a
    minimal one (UDP on 127.0.0.1:5060, domain ``pbx.local``, SQLite files in the current
    directory).

    ``codecs``: what calls are offered/answered with, in preference order. ``sounds``: where
    relative prompt names are looked up (default: ``sounds/`` beside the config). ``clock``:
    the wall clock apps and rules see (``call.now()``). ``app_grace``: seconds an app may run on
    after its caller hung up before it is cancelled.
    """

    def __init__(self, config: Config | str | os.PathLike[str] | None = None, *,
                 engine: EngineConfig | None = None, codecs: Sequence[Codec] = DEFAULT_CODECS,
                 tts: TtsProvider | None = None, sounds: str | os.PathLike[str] | None = None,
                 clock: Callable[[], datetime] | None = None, tone_region: str = "cn",
                 voice: str = "en", app_grace: float = 60.0, moh: str | None = None,
                 session_expires: int | None = None) -> None:
        if config is None:
            config = parse_config(_MINIMAL, Path.cwd() / "pbx.toml")
        elif not isinstance(config, Config):
            config = load_config(Path(config))
        self.config = config
        base = Path(config.path).resolve().parent
        self.sounds = Path(sounds) if sounds is not None else base / "sounds"
        self.codecs = tuple(codecs)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.tone_region = tone_region
        self.voice = voice
        self.app_grace = app_grace
        self.moh = moh
        # RFC 4028 for every call leg (0: off): dead calls end within ``session_expires``.
        media = config.media
        if session_expires is None:
            session_expires = media.session_expires
        self.session_timer = (st.SessionTimerPolicy(expires=session_expires)
                              if session_expires else None)
        self._tts = tts
        host = config.sip.listen[0].host if config.sip.listen else "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        self.engine_config = engine or EngineConfig(
            bind_host=media.bind or host, port_min=media.port_min, port_max=media.port_max,
            rtp_timeout=media.rtp_timeout)
        self.bus = EventBus()
        self.metrics = Registry()
        self.calls: dict[str, Call] = {}
        self.session_id = int.from_bytes(os.urandom(4), "big") >> 1
        self._routes: list[_Route] = []
        self._apps: dict[str, App] = {}
        self._middlewares: list[Middleware] = []
        self._streams: dict[Stream, Leg] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serial = 0
        self._moh_pcm: dict[int, np.ndarray[Any, Any]] = {}
        self.engine: MediaEngine | None = None
        self.server: SipServer | None = None
        self.endpoint: Endpoint | None = None
        self.cdr: CdrStore | None = None
        self.webhooks: Any = None
        self._cdr_writer: CdrWriter | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._admin: Any = None
        self._started = False
        CallMetrics(self.metrics, self.bus)

    # Configuration in Python ----------------------------------------------------------------
    def route(self, pattern: str | re.Pattern[str], app: App | None = None, *,
              rules: Iterable[Middleware] = (), name: str = "", tenant: str = "",
              data: Mapping[str, Any] | None = None) -> Any:
        """Send calls to ``pattern`` (an exact number, ``"400*"`` prefix, or a compiled regex
        matched against the dialed user part) to ``app``, behind ``rules`` (middleware,
        outermost first). Usable as a decorator::

            @pbx.route("4001234567", rules=[business_hours(hours, closed=480)])
            async def hotline(call): ...
        """
        def register(fn: App) -> App:
            label = name or getattr(fn, "__name__", "app")
            self._routes.append(_Route(label, _matcher(pattern), fn, tuple(rules), tenant,
                                       dict(data or {})))
            return fn
        return register(app) if app is not None else register

    def app(self, name: str) -> Callable[[App], App]:
        """Register an app under ``name`` for the config (``[[numbers]] app = "name"``) and
        the admin API's originate. Example::

            @pbx.app("survey")
            async def survey(call): ...
        """
        def register(fn: App) -> App:
            self._apps[name] = fn
            return fn
        return register

    def dial_app(self, target: str, *, timeout: float = 30.0) -> App:
        """The app ``"dial:<target>"`` names in the config: ring ``target`` and bridge the
        caller to whoever answers (the caller hears the callee ringing; busy and no answer are
        passed back to the caller and end up in the record)."""
        async def dial(call: Call) -> None:
            leg = await call.dial(target, timeout=timeout)
            await call.bridge(leg)
        dial.__name__ = f"dial:{target}"
        return dial

    def _load_numbers(self) -> None:
        """Routes for the config's ``[[numbers]]``, behind their ``[[rules]]``, after the ones
        made in Python (which win)."""
        if not self.config.numbers:
            return
        from pbx.apps.rules import build_rules, resolve_app
        rules: dict[str, Any] = build_rules(self.config.rules, self._apps, dial=self.dial_app)
        for n in self.config.numbers:
            app = resolve_app(n.app, self._apps, dial=self.dial_app)
            self.route(n.pattern, app, rules=[rules[r] for r in n.rules], name=n.app,
                       tenant=n.tenant, data=n.data)

    def use(self, middleware: Middleware) -> Middleware:
        """Add middleware run for every routed call, before the route's own rules. Example::

            @pbx.use
            async def tag_vips(call, next_app):
                if call.caller in VIPS:
                    call.set_data(vip=True)
                await next_app(call)
        """
        self._middlewares.append(middleware)
        return middleware

    @property
    def tts(self) -> TtsProvider:
        if self._tts is None:
            cache = Path(self.config.store_path).resolve().parent / "tts-cache"
            self._tts = EspeakNgProvider(cache)
        return self._tts

    def sound_path(self, name: str | os.PathLike[str]) -> Path:
        """A prompt file: as given if it exists, else under ``sounds``."""
        path = Path(name)
        if path.is_absolute() or path.exists():
            return path
        return self.sounds / path

    def moh_source(self, rate: int) -> FrameSource:
        """Music on hold: the configured WAV looped, or a soft built-in melody."""
        if self.moh is not None:
            return LoopSource(WavSource(self.sound_path(self.moh), rate))
        pcm = self._moh_pcm.get(rate)
        if pcm is None:
            notes = (523.25, 659.25, 783.99, 659.25)
            t = np.arange(int(rate * 0.4)) / rate
            env = np.minimum(1.0, np.minimum(t, t[::-1]) * 20)
            pcm = np.concatenate([(np.sin(2 * np.pi * f * t) * env * 2500).astype(np.int16)
                                  for f in notes])
            self._moh_pcm[rate] = pcm
        return LoopSource(PcmSource(pcm, rate))

    # Life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the media engine, the SIP listeners, the stores, webhooks and the admin API."""
        if self._started:
            return
        self.engine = MediaEngine(self.engine_config, on_event=self._on_media)
        await self.engine.start()
        config = self.config
        self.cdr = CdrStore(config.cdr_path)
        recovered = self.cdr.recover_interrupted(time.time())
        if recovered:
            log.warning("%d call(s) were in progress when the PBX last stopped: closed as "
                        "interrupted", len(recovered))
        self._cdr_writer = CdrWriter(self.cdr, region_lookup=region_of, deferred=True)
        self.bus.subscribe(self._cdr_writer)
        if config.webhooks:
            from pbx.webhooks import WebhookDispatcher, WebhookEndpoint
            endpoints = [WebhookEndpoint(w.url, w.secret, w.events, name=w.name,
                                         timeout=w.timeout) for w in config.webhooks]
            outbox = Path(config.store_path).resolve().parent / "webhooks.sqlite3"
            self.webhooks = WebhookDispatcher(endpoints, outbox)
            self.bus.subscribe(self.webhooks)
            await self.webhooks.start()
        self._load_numbers()
        server = SipServer(config)
        self.server = server
        self.endpoint = Endpoint(server, timers=Timers(t1=config.sip.t1, t2=config.sip.t2,
                                                       t4=config.sip.t4),
                                 user_agent=config.sip.server_header)
        server.endpoint = self.endpoint
        server.take_call = _Taker(self)
        server.on_registration = self._on_registration
        await server.start()
        self._heartbeat = asyncio.create_task(self._beat())
        if config.admin is not None:
            from pbx.admin import start_admin
            self._admin = await start_admin(_AdminBackend(self), config.admin)
        self._started = True

    async def stop(self) -> None:
        """Hang up every call (records say ``interrupted``), then close everything."""
        if not self._started:
            return
        self._started = False
        for call in list(self.calls.values()):
            call.end_reason(Reason.INTERRUPTED, cause="pbx stopped")
            for leg in [*call.legs, call]:
                leg._hangup_now()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._admin is not None:
            await self._admin.cleanup()
        await asyncio.sleep(0.05)            # let BYEs and CANCELs leave
        if self.server is not None:
            await self.server.stop()
        await self.bus.drain()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self._cdr_writer is not None:
            self._cdr_writer.close(time.time())
        if self.cdr is not None:
            self.cdr.close()
        if self.engine is not None:
            await self.engine.aclose()

    async def __aenter__(self) -> Pbx:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start and run until cancelled (Ctrl-C)."""
        await self.start()
        _tune_gc()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _beat(self) -> None:
        """Write changed call records every 50 ms, and a sign of life every 5 s."""
        ticks = 0
        while True:
            await asyncio.sleep(0.05)
            ticks += 1
            writer = self._cdr_writer
            if writer is None:
                continue
            try:
                if ticks % 100 == 0:
                    writer.heartbeat(time.time())
                else:
                    writer.flush()
            except Exception:
                log.exception("writing call records failed")

    # Incoming calls ----------------------------------------------------------------------------
    def _route_for(self, req: Request) -> _Route | None:
        uri = req.uri
        user = uri.user if isinstance(uri, SipUri) else None
        if not user:
            return None
        for route in self._routes:
            if route.match(user):
                return route
        return None

    def _take_call(self, key: TxKey, req: Request, source: Peer) -> bool:
        route = self._route_for(req)
        if route is None or self.endpoint is None:
            return False
        endpoint = self.endpoint
        handle = endpoint.incoming(key, req, source)
        if self.session_timer is not None:
            try:
                min_se = st.check_request(req, self.session_timer)
            except ParseError:
                handle.act(lambda s, now: s.start(now))
                handle.act(lambda s, now: s.reject(400, now, reason="Bad Session-Expires"))
                return True
            if min_se is not None:       # the caller's interval is below ours (RFC 4028 §8.1)
                handle.act(lambda s, now: s.start(now))
                handle.act(lambda s, now: s.reject(422, now,
                                                   headers=[("Min-SE", str(min_se))]))
                return True
        from_uri = req.from_.uri
        caller = (from_uri.user or "") if isinstance(from_uri, SipUri) else str(from_uri)
        uri = req.uri
        dialed = uri.user or "" if isinstance(uri, SipUri) else ""
        call = Call(self, handle, call_id=self._new_id(), caller=caller, callee=dialed,
                    dialed=dialed, tenant=route.tenant, region=region_of(caller),
                    data=route.data, caller_name=req.from_.display or "")
        self.calls[call.call_id] = call
        handle.act(lambda s, now: s.start(now))
        self._spawn(self._run_call(call, route))
        return True

    def _new_id(self) -> str:
        self._serial += 1
        return f"{int(time.time()):x}{self._serial:04x}{os.urandom(3).hex()}"

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_call(self, call: Call, route: _Route | None, app: App | None = None) -> None:
        """Open the caller's stream, publish the start, run the app chain, end the call."""
        assert self.engine is not None
        self._publish(call, CallStarted, caller=call.caller, callee=call.callee,
                      dialed=call.dialed, region=call.region, leg_id="",
                      app=route.name if route is not None else getattr(app, "__name__", ""),
                      data=dict(call.data))
        outcome: str = "normal"
        failure: DialFailed | None = None
        try:
            if call._stream is None:
                stream = await self.engine.open_stream()
                self._streams[stream] = call
                call._set_stream(stream)
            chain = app if app is not None else self._chain(route)
            call._app_task = asyncio.current_task()
            if call.outgoing:
                await call._until(asyncio.shield(call._answered))
            async with asyncio.TaskGroup() as tg:
                call.tasks = tg
                await chain(call)
        except* CallHungUp:
            outcome = "hungup"
        except* DialFailed as group:
            outcome = "dial"
            failure = group.exceptions[0]  # type: ignore[assignment]
        except* Exception as group:
            outcome = "error"
            for exc in group.exceptions:
                log.error("app of call %s failed: %r", call.call_id, exc,
                          exc_info=(type(exc), exc, exc.__traceback__))
        except* asyncio.CancelledError:
            outcome = "cancelled"
        finally:
            self._end_call(call, outcome, failure)

    def _chain(self, route: _Route | None) -> App:
        assert route is not None
        app = route.app
        for mw in reversed((*self._middlewares, *route.middlewares)):
            app = _wrap(mw, app)
        return app

    def _end_call(self, call: Call, outcome: str, failure: DialFailed | None) -> None:
        """Hang up what is left and publish the call's end (its record closes)."""
        end = dict(call._end)
        answered = call.answered or call.state == "answered"
        failure = failure or (call._last_failure if not answered else None)
        side = HangupSide.SYSTEM
        if call.end_side == "remote":
            side = HangupSide.CALLER
        elif call._peer_hung_up:
            side = HangupSide.CALLEE
        status = end.get("status")
        reason = end.get("reason")
        cause = end.get("cause", "")
        if reason is None:
            if outcome == "error":
                reason, status, side, cause = Reason.APP_ERROR, status or 500, HangupSide.SYSTEM, \
                    "the app failed"
            elif side == HangupSide.CALLER:
                reason = Reason.NORMAL if answered else Reason.CANCELLED
                cause = cause or ("BYE" if answered else "CANCEL")
            elif failure is not None and not answered:
                reason, status = failure.reason, failure.status
                cause = cause or f"dial failed: {failure.status or 'no answer'}"
            elif outcome == "cancelled":
                reason, cause = Reason.INTERRUPTED, "pbx stopped"
            else:
                reason = Reason.NORMAL
        if call.state != "ended":
            if call.state == "answered":
                call._hangup_now()
            else:
                a_status = b2bua.a_status_for(status, str(reason)) if reason != Reason.APP_ERROR \
                    else 500
                if end.get("status") is not None:
                    a_status = int(end["status"])
                call.end_side = "local"
                try:
                    call._handle.act(lambda s, now: s.reject(a_status, now))
                except ValueError:
                    call._hangup_now()
                call._finish("rejected", a_status)
        for leg in list(call.legs):
            if leg.state != "ended":
                was = leg.state
                leg._hangup_now()
                if not leg.ended and not leg._reported:
                    # Still winding down (CANCEL/BYE in flight): its record entry is written
                    # now, before the call's record closes.
                    leg._reported = True
                    self._publish(call, LegEnded, leg_id=leg.id, status=leg.status,
                                  reason=_leg_reason(leg, was))
        self._publish(call, CallEnded, status=status, reason=str(reason), side=str(side),
                      cause=cause)
        self.calls.pop(call.call_id, None)

    # Legs --------------------------------------------------------------------------------------
    async def _dial_legs(self, call: Call, target: str, caller_id: str | None,
                         uris: Sequence[tuple[Uri, Peer | None]] | None = None) -> list[Leg]:
        """Start one outgoing leg per device of ``target`` (ringing, not answered yet)."""
        assert self.server is not None and self.endpoint is not None and self.engine is not None
        if uris is None:
            found, status = self.server.locate(target)
            if not found:
                raise DialFailed(status or 404, b2bua.reason_for(status), target)
        else:
            found = list(uris)
        legs: list[Leg] = []
        number = caller_id or call.caller
        display = call.caller_name if caller_id is None else ""
        prefer = call.media.send_codec.key if call.media is not None else None
        codecs = sorted(self.codecs, key=lambda c: c.key != prefer)
        for uri, peer in found:
            handle, stream, offer, headers = await self._outgoing(
                target, uri, peer, number=number, display=display, codecs=codecs)
            leg = Leg(self, handle, leg_id=call._next_leg_id(), party=target, outgoing=True,
                      call=call)
            self._attach(leg, stream, offer, headers,
                         self.server.credentials_for(target) if uris is None else None)
            self._publish(call, LegStarted, leg_id=leg.id, party=target, dialed=target)
            if call.state == "ended":
                stream.close()
                raise CallHungUp(call._side_name(), call.hangup_reason)
            call.legs.append(leg)
            handle.act(lambda s, now: s.start(now))
            legs.append(leg)
        return legs

    async def _outgoing(self, target: str, uri: Uri, peer: Peer | None, *, number: str,
                        display: str = "", codecs: Sequence[Codec] | None = None
                        ) -> tuple[SessionHandle, Stream, SessionDescription,
                                   list[tuple[str, str]]]:
        """An INVITE session (not started) from ``number`` to ``uri``, offering a fresh
        stream's address: the handle, the stream, our offer, the INVITE's extra headers."""
        assert self.server is not None and self.endpoint is not None and self.engine is not None
        stream = await self.engine.open_stream()
        host, port = stream.local
        offer = build_offer(LocalMedia(address=host, port=port,
                                       codecs=tuple(codecs or self.codecs)),
                            session_id=self.session_id)
        to_uri = uri if not isinstance(uri, SipUri) or target.startswith(("sip:", "sips:")) \
            else self.server.user_uri(target)
        headers = self._timer_headers()
        handle = self.endpoint.outgoing(
            target=uri, from_=b2bua.from_address(number, self.config.sip.domain, display=display),
            to=Address(to_uri), body=bytes(offer), peer=peer, headers=headers)
        return handle, stream, offer, headers

    def _attach(self, leg: Leg, stream: Stream, offer: SessionDescription,
                headers: list[tuple[str, str]], auth: tuple[str, str] | None) -> None:
        """Give an outgoing leg its stream, offer and what a 401/407/422 retry needs."""
        leg._invite_headers = headers
        leg._auth = auth
        leg._our_offer = offer
        leg._set_stream(stream)
        self._streams[stream] = leg

    def _reinvite_with(self, old: Any, invite: Request,
                       headers: list[tuple[str, str]]) -> Any:
        """A new INVITE session repeating ``invite`` (same Call-ID, From tag, body; CSeq + 1)
        with ``headers``, towards the same next hop."""
        assert self.endpoint is not None
        return self.endpoint.outgoing(
            target=invite.uri, from_=invite.from_, to=invite.to, body=invite.body or None,
            peer=old.peer, headers=headers, call_id=invite.call_id, cseq=invite.cseq.seq + 1)

    def _timer_headers(self) -> list[tuple[str, str]]:
        return st.offer_headers(self.session_timer) if self.session_timer is not None else []

    def _leg_ended(self, leg: Leg, was: str) -> None:
        stream = leg._stream
        if stream is not None:
            self._streams.pop(stream, None)
            if not stream.closed and self.engine is not None and self.engine.running:
                with contextlib.suppress(Exception):
                    self.engine.unrelay(stream)
                stream.close()
        call = leg._call
        if call is None:
            return
        if leg is call:
            task = call._app_task
            if task is not None and not task.done() and self.app_grace >= 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.app_grace, _cancel_if_running, task)
        elif not leg._reported:
            leg._reported = True
            call._publish(LegEnded, leg_id=leg.id, status=leg.status,
                          reason=_leg_reason(leg, was))

    def _redirected(self, leg: Leg, response: Response) -> None:
        leg._redirect = b2bua.redirect_targets(response)

    # Media links -----------------------------------------------------------------------------
    def _link(self, a: Leg, b: Leg) -> None:
        """Let ``a`` and ``b`` hear each other: a relay when they use the same codec, else a
        two-party mix (transcoding) in the engine."""
        engine = self.engine
        sa, sb = a._stream, b._stream
        if engine is None or sa is None or sb is None or sa.closed or sb.closed:
            return
        if sa.relayed_with is sb:
            return
        self._unlink(a, b)
        ma, mb = a.media, b.media
        if (ma is not None and mb is not None and ma.send_codec.key == mb.send_codec.key
                and not a._recordings and not b._recordings):
            a._stop_moh()
            b._stop_moh()
            sa.stop_playing()
            sb.stop_playing()
            engine.relay(sa, sb)
            return
        if ma is None or mb is None:
            return
        conf = engine.conference(rate=max(sa.sample_rate, sb.sample_rate, 8000))
        conf.join(sa)
        conf.join(sb)
        a._conference = b._conference = conf

    def _unlink(self, a: Leg, b: Leg) -> None:
        engine = self.engine
        if engine is None or not engine.running:
            return
        for leg in (a, b):
            s = leg._stream
            if s is not None and not s.closed and s.relayed_with is not None:
                engine.unrelay(s)
        conf: Conference | None = a._conference or b._conference
        if conf is not None:
            a._conference = b._conference = None
            with contextlib.suppress(Exception):
                conf.close()

    def _bridge(self, call: Call, leg: Leg) -> None:
        if call._peer is leg:
            self._link(call, leg)
            return
        if call._peer is not None:
            self._unlink(call, call._peer)
            call._peer._peer = None
        call._peer, leg._peer = leg, call
        self._link(call, leg)
        call._publish(CallBridged, leg_id="", peer_leg_id=leg.id, peer=leg.party)

    def _disconnect(self, leg: Leg, peer: Leg) -> None:
        self._unlink(leg, peer)
        if isinstance(peer, Call) and peer._peer is leg:
            peer._peer_hung_up = True
        leg._peer = None
        peer._peer = None

    def _swap(self, call: Call, old: Leg | None, new: Leg) -> None:
        if old is not None:
            self._unlink(call, old)
            old._peer = None
        if new not in call.legs:
            call.legs.append(new)
        call._peer, new._peer = new, call
        self._link(call, new)
        call._bridge_changed.set()
        call._publish(CallBridged, leg_id="", peer_leg_id=new.id, peer=new.party)

    def _relink(self, leg: Leg) -> None:
        """Rebuild ``leg``'s bridge (relay or mix) after something that decides it changed."""
        peer = leg._peer
        if peer is not None and not leg._moh and not peer._moh:
            self._unlink(leg, peer)
            self._link(leg, peer)

    def _reconnect(self, leg: Leg) -> None:
        peer = leg._peer
        if peer is None or leg._direction != "sendrecv" or peer._direction != "sendrecv":
            return
        if leg._remote_hold or peer._remote_hold:
            return
        self._unlink(leg, peer)
        self._link(leg, peer)

    def _remote_hold_changed(self, leg: Leg, held: bool) -> None:
        """The party of ``leg`` put the call on hold (or resumed): the other party hears music
        and is told by a re-INVITE (sendonly), and back."""
        peer = leg._peer
        if peer is None:
            return
        if held:
            self._unlink(leg, peer)
            peer._direction = "sendonly"
            self._spawn(peer._reoffer())
            peer._start_moh()
        else:
            peer._direction = "sendrecv"
            peer._stop_moh()
            self._spawn(peer._reoffer())
            self._link(leg, peer)

    def _on_refer(self, leg: Leg, ev: Any) -> None:
        on_refer(self, leg, ev)

    # Media events --------------------------------------------------------------------------
    def _on_media(self, ev: MediaEvent) -> None:
        leg = self._streams.get(ev.stream)
        if leg is None:
            return
        if ev.kind == "digit" and ev.digit:
            leg._on_digit(ev.digit)
        elif ev.kind == "timeout":
            log.info("%r: no RTP for %s s, hanging up", leg, self.engine_config.rtp_timeout)
            leg.hangup_reason = "rtp timeout"
            if leg._call is not None and leg._call is leg:
                leg._call.end_reason(Reason.NORMAL, cause="RTP timeout")
            leg._hangup_now()

    # Events --------------------------------------------------------------------------------
    def _publish(self, call: Call, cls: type[Any], **fields: Any) -> None:
        try:
            self.bus.publish(cls(call_id=call.call_id, at=time.time(), tenant=call.tenant,
                                 **fields))
        except Exception:
            log.exception("publishing %s failed", cls.__name__)

    def _on_registration(self, aor: str, bindings: list[Binding], source: Peer) -> None:
        now = time.time()
        contacts = {b.contact: b for b in bindings}
        for b in bindings:
            self.bus.publish(RegistrationChanged(at=now, aor=aor, contact=b.contact,
                                                 expires=max(0, int(b.expires_at - now)),
                                                 source=str(source)))
        if not contacts:
            self.bus.publish(RegistrationChanged(at=now, aor=aor, contact="*", expires=0,
                                                 source=str(source)))

    # Outbound calls ----------------------------------------------------------------------
    async def originate(self, to: str, app: App | str | None = None, *,
                        caller_id: str = "pbx", timeout: float = 30.0,
                        data: Mapping[str, Any] | None = None, tenant: str = "") -> Call:
        """Call ``to`` (an extension, a routed number or a SIP URI) from the PBX; once it
        answers, ``app`` runs with the call (its ``caller`` is ``caller_id``). Returns the
        call at once; ``await call.wait_answered()`` or watch the events. If nobody answers
        within ``timeout`` the call ends (record: no answer / busy). Example::

            call = await pbx.originate("1001", confirm_order, data={"order": 42})
        """
        if not self._started or self.server is None or self.endpoint is None:
            raise RuntimeError("the PBX is not started")
        if isinstance(app, str):
            try:
                app = self._apps[app]
            except KeyError:
                raise LookupError(f"no app named {app!r}") from None
        found, status = self.server.locate(to)
        if not found:
            raise DialFailed(status or 404, b2bua.reason_for(status), to)
        uri, peer = found[0]
        handle, stream, offer, headers = await self._outgoing(to, uri, peer, number=caller_id)
        call = Call(self, handle, call_id=self._new_id(), caller=caller_id, callee=to,
                    dialed=to, tenant=tenant, region=region_of(caller_id), data=data,
                    outgoing=True)
        self._attach(call, stream, offer, headers, self.server.credentials_for(to))
        self.calls[call.call_id] = call
        handle.act(lambda s, now: s.start(now))

        async def run(c: Call) -> None:
            if app is not None:
                await app(c)
            else:
                await c.wait_hangup()

        async def guarded(c: Call) -> None:
            try:
                await asyncio.wait_for(asyncio.shield(c._answered), timeout)
            except TimeoutError:
                c.end_reason(Reason.NO_ANSWER, status=408, cause="no answer")
                c._hangup_now()
                raise CallHungUp(HangupSide.SYSTEM, "no answer") from None
            except CallHungUp:
                if c.status is not None:
                    c.end_reason(b2bua.reason_for(c.status), status=c.status,
                                 cause=f"{c.status}")
                raise
            await run(c)

        self._spawn(self._run_call(call, None, app=guarded))
        return call

    # The admin API's view ----------------------------------------------------------------
    def registrations(self) -> list[dict[str, Any]]:
        if self.server is None:
            return []
        now = time.time()
        out = []
        for aor, bindings in self.server.bindings.items():
            for b in bindings:
                if b.expires_at > now:
                    out.append({"aor": aor, "contact": b.contact, "source": b.source,
                                "expires": int(b.expires_at - now)})
        return out


def _wrap(mw: Middleware, app: App) -> App:
    async def step(call: Call) -> None:
        await mw(call, app)
    step.__name__ = getattr(app, "__name__", "app")
    return step


def _cancel_if_running(task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()


def _leg_reason(leg: Leg, was: str) -> str:
    if leg.hangup_reason == "cancelled" or (leg.end_side == "local" and was != "answered"):
        return Reason.CANCELLED
    if leg.status is not None and leg.status >= 300:
        return b2bua.reason_for(leg.status)
    if leg.hangup_reason == "rtp timeout":
        return "rtp timeout"
    return Reason.NORMAL if was == "answered" else leg.hangup_reason


class _AdminBackend:
    """``pbx.admin.AdminBackend`` over a ``Pbx``."""

    def __init__(self, pbx: Pbx) -> None:
        self._pbx = pbx
        self.bus = pbx.bus
        self.metrics = pbx.metrics

    @property
    def cdr(self) -> CdrStore:
        assert self._pbx.cdr is not None
        return self._pbx.cdr

    def active_calls(self, tenant: str | None) -> list[dict[str, Any]]:
        return [c.describe() for c in self._pbx.calls.values()
                if tenant is None or c.tenant == tenant]

    def registrations(self, tenant: str | None) -> list[dict[str, Any]]:
        return self._pbx.registrations() if tenant is None else []

    async def originate(self, *, to: str, caller_id: str | None, app: str | None,
                        data: dict[str, Any], timeout: float, tenant: str | None) -> str:
        if not to:
            raise ValueError("to: must not be empty")
        try:
            call = await self._pbx.originate(to, app, caller_id=caller_id or "pbx",
                                             timeout=timeout, data=data, tenant=tenant or "")
        except DialFailed as exc:
            raise ValueError(f"to: cannot be reached ({exc.status})") from None
        return call.call_id

    async def hangup(self, call_id: str, tenant: str | None) -> bool:
        call = self._pbx.calls.get(call_id)
        if call is None or (tenant is not None and call.tenant != tenant):
            return False
        call.end_reason(Reason.NORMAL, cause="hung up by the admin API")
        for leg in [*call.legs, call]:
            leg._hangup_now()
        return True

