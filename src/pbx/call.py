"""The Call API: what an app sees of a call.

An app is ``async def app(call: Call) -> None``. The PBX runs it in the call's own task group
(``call.tasks``) when a routed INVITE arrives (``Pbx.route``) or an originated call answers
(``Pbx.originate``). Everything is a method on the call or one of its legs::

    async def hotline(call: Call) -> None:
        await call.answer()
        digit = await call.collect_digits(prompt="menu.wav", max_digits=1, timeout=5)
        leg = await call.dial("1001" if digit == "1" else "1002", timeout=20)
        await call.bridge(leg)                  # returns when the agent hangs up

Rules of the road:

- Once the caller hangs up, every Call/Leg method raises ``CallHungUp`` (awaits on other
  things are not interrupted: an app that lingers is cancelled ``Pbx.app_grace`` seconds after).
  An app that raises anything else ends its call cleanly (record written, legs hung up, reason
  ``app_error``); it never harms other calls.
- A ``Leg`` is one party: the caller's leg is the ``Call`` itself, ``dial()`` makes others.
  ``play``, ``say``, ``collect_digits``, ``record``, ``hold``, ``hangup`` work on any leg.
- Media is anchored: every leg has its own RTP stream in the PBX's media engine, so prompts,
  digits and recordings work on any leg and a bridge is a relay (same codec) or a two-party mix
  (different codecs) inside the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pbx._leg import Leg
from pbx.errors import CallHungUp, DialFailed
from pbx.events import (
    CallAnswered,
    CallDataSet,
    CallTransferred,
    HangupSide,
    Reason,
    RuleMatched,
)
from pbx.media.tones import ToneSource, ringback
from pbx.region import Region
from pbx.sip import b2bua
from pbx.sip.offer_answer import answer, build_offer
from pbx.sip.sdp import SessionDescription

if TYPE_CHECKING:
    from pbx.pbx import Pbx
    from pbx.sip.endpoint import SessionHandle

__all__ = ["App", "Call", "CallHungUp", "DialFailed", "Leg", "Middleware"]

log = logging.getLogger("pbx.call")

App = Callable[["Call"], Awaitable[None]]
Middleware = Callable[["Call", App], Awaitable[None]]
_MAX_REDIRECTS = 3


class Call(Leg):
    """An inbound call (the caller's leg), or an originated one; the legs it creates.

    ``caller``: who calls (the number presented), ``callee``: who it is for (updated to the
    party that answered), ``dialed``: the number the caller dialed (the public number),
    ``region``: where the caller's number is from, ``data``: call-associated data that goes
    with the call to its legs' apps, its record and webhooks.
    """

    def __init__(self, pbx: Pbx, handle: SessionHandle, *, call_id: str, caller: str,
                 callee: str, dialed: str, tenant: str = "", region: Region,
                 data: Mapping[str, Any] | None = None, outgoing: bool = False,
                 caller_name: str = "") -> None:
        super().__init__(pbx, handle, leg_id=call_id, party=caller, outgoing=outgoing,
                         call=None)
        self._call = self
        self.call_id = call_id
        self.caller = caller
        self.caller_name = caller_name
        self.callee = callee
        self.dialed = dialed
        self.tenant = tenant
        self.region = region
        self.data: dict[str, Any] = dict(data or {})
        self.legs: list[Leg] = []
        self.path: list[str] = []
        self.tasks: asyncio.TaskGroup | None = None
        self._end: dict[str, Any] = {}
        self._leg_serial = 0
        self._bridge_changed = asyncio.Event()
        self._last_failure: DialFailed | None = None
        self._app_task: asyncio.Task[Any] | None = None
        self._peer_hung_up = False       # the bridged party hung up (the record's side)

    # The clock rules and apps read --------------------------------------------------------
    def now(self) -> datetime:
        """The wall clock as an aware UTC datetime (``Pbx.clock``, replaceable in tests).
        Example: ``if call.now().astimezone(shanghai).hour >= 18: ...``."""
        return self._pbx.clock()

    # Decisions, data, end reason ------------------------------------------------------------
    def decide(self, rule: str, branch: str = "") -> None:
        """Record a routing decision (``rule``, ``branch``) on the call and its record.
        Example: ``call.decide("menu", digit)`` puts ``"menu:2"`` in the record's path."""
        self.path.append(f"{rule}:{branch}" if branch else rule)
        self._publish(RuleMatched, rule=rule, branch=branch)

    def set_data(self, **values: Any) -> None:
        """Add call-associated data (JSON-serialisable); it reaches the record and webhooks.
        Example: ``call.set_data(order=42, vip=True)``; read it back from ``call.data``."""
        self.data.update(values)
        self._publish(CallDataSet, data=dict(values))

    def end_reason(self, reason: str, *, status: int | None = None, cause: str = "") -> None:
        """What the call's end will say (``pbx.events.Reason``), e.g. before ``reject()``.
        Example: ``call.end_reason(Reason.REJECTED_BY_RULE, status=403, cause="blacklist")``."""
        self._end = {"reason": reason, "status": status, "cause": cause}

    # Answering ---------------------------------------------------------------------------
    async def ringing(self) -> None:
        """Send 180 Ringing to the caller (before a slow lookup, say). Example:
        ``await call.ringing()``."""
        self._check_alive()
        if not self.outgoing and self.state == "new":
            self._handle.act(lambda s, now: s.provisional(180, now))
            self.state = "ringing"

    async def answer(self) -> None:
        """Answer the call (200 OK with our SDP). Idempotent. Example: ``await call.answer()``."""
        self._check_alive()
        if self.outgoing or self.state == "answered":
            return
        stream = await self._until(asyncio.shield(self._stream_ready))
        del stream
        self._check_alive()
        body = self._answer_sdp()
        if body is None:
            self.end_reason(Reason.FAILED, status=488, cause="no usable media offer")
            self._handle.act(lambda s, now: s.reject(488, now))
            raise CallHungUp(HangupSide.SYSTEM, "no usable media offer")
        headers = self._answer_headers(self._handle.session.invite)
        self._handle.act(lambda s, now: s.accept(body, now, headers=headers))
        self.state = "answered"
        self._arm_timer()
        if not self._answered.done():
            self._answered.set_result(None)
        self._publish(CallAnswered, leg_id="")

    def _answer_sdp(self) -> bytes | None:
        """Our answer to the caller's offer (or our offer when the INVITE had none)."""
        if self._local_sdp is not None:
            return bytes(self._local_sdp)
        if self._offer is None:
            offer = build_offer(self._local_media(), session_id=self._pbx.session_id)
            self._our_offer = self._local_sdp = offer
            return bytes(offer)
        desc, agreed = answer(self._offer, self._local_media(), session_id=self._pbx.session_id)
        media = next((m for m in agreed if m is not None), None)
        if media is None:
            return None
        self._local_sdp = desc
        self._apply_media(media)
        return bytes(desc)

    async def _early_answer(self) -> bool:
        """183 Session Progress with our SDP, so the caller hears what we send before the
        answer (early media). False if there was no usable offer."""
        if self.outgoing or self.state in ("answered", "early", "ended"):
            return self.state == "early"
        await self._until(asyncio.shield(self._stream_ready))
        body = self._answer_sdp()
        if body is None:
            return False
        self._handle.act(lambda s, now: s.provisional(183, now, body=body))
        self.state = "early"
        return True

    async def reject(self, status: int = 486, reason: str | None = None) -> None:
        """Refuse the call with a final status (486 busy, 403 forbidden, 480 ...). Example:
        ``await call.reject(403)``."""
        if self.state == "answered":
            raise ValueError("the call is answered: hang up instead")
        self._check_alive()
        if not 300 <= status <= 699:
            raise ValueError(f"{status} is not a failure status")
        if self._end.get("status") is None:
            self._end.setdefault("reason", b2bua.reason_for(status))
            self._end["status"] = status
        self.end_side = "local"
        self._handle.act(lambda s, now: s.reject(status, now, reason=reason))
        self._finish("rejected", status)

    # Dialing -----------------------------------------------------------------------------
    async def dial(self, targets: str | Iterable[str], *, timeout: float = 30.0,
                   caller_id: str | None = None,
                   strategy: Literal["parallel", "sequential"] = "parallel") -> Leg:
        """Call one or more parties; returns the leg that answered (the others are cancelled).

        ``targets``: extensions (every registered device rings), numbers matched by the
        ``[[routes]]`` of the config, or SIP URIs. ``parallel`` rings all at once, ``sequential``
        one after another, each for ``timeout`` seconds. ``caller_id`` is the number shown to
        them (default: the caller's). While they ring, an unanswered caller hears their
        ringing (180, or their early media); an answered one hears ringback. Raises
        ``DialFailed(status, reason)`` when nobody answers. Example::

            leg = await call.dial(["1001", "1002"], timeout=20)
            await call.bridge(leg)
        """
        self._check_alive()
        items = [targets] if isinstance(targets, str) else list(targets)
        if not items:
            raise ValueError("dial() needs at least one target")
        if strategy not in ("parallel", "sequential"):
            raise ValueError(f"unknown dial strategy {strategy!r}")
        if strategy == "sequential":
            failure: DialFailed | None = None
            for t in items:
                try:
                    return await self._dial_group([t], timeout, caller_id)
                except DialFailed as exc:
                    failure = _better(failure, exc)
            assert failure is not None
            raise failure
        return await self._dial_group(items, timeout, caller_id)

    async def _dial_group(self, targets: list[str], timeout: float,
                          caller_id: str | None) -> Leg:
        legs: list[Leg] = []
        failure: DialFailed | None = None
        for t in targets:
            try:
                legs.extend(await self._pbx._dial_legs(self, t, caller_id))
            except DialFailed as exc:
                failure = _better(failure, exc)
        if not legs:
            self._last_failure = failure or DialFailed(404, Reason.FAILED, targets)
            raise self._last_failure
        ringback_play = None

        def on_ringing(leg: Leg, early: SessionDescription | None) -> None:
            nonlocal ringback_play
            if self.state == "ended":
                return
            if self.state == "answered":
                if ringback_play is None and self._stream is not None and self.media:
                    ringback_play = self._stream.play(
                        ToneSource(ringback(self._pbx.tone_region), self._stream.sample_rate))
                return
            if early is not None:
                self._pbx._spawn(self._connect_early(leg))
            elif self.state == "new" and not self.outgoing:
                self._handle.act(lambda s, now: s.provisional(180, now))
                self.state = "ringing"

        for leg in legs:
            leg._on_ringing = on_ringing
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        winner: Leg | None = None
        redirects = 0
        try:
            while winner is None:
                live = [leg for leg in legs if leg.state != "ended"]
                if not live:
                    break
                waits: set[asyncio.Future[Any]] = {self._ended}
                waits.update(leg._ended for leg in live)
                waits.update(leg._answered for leg in live)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if self.state == "ended":
                    raise CallHungUp(self._side_name(), self.hangup_reason)
                for leg in [leg for leg in legs if leg.ended and leg._redirect]:
                    uris, leg._redirect = leg._redirect, []
                    if redirects >= _MAX_REDIRECTS:
                        continue
                    redirects += 1          # 3xx: the Contacts are tried in parallel (§8.1.3.4)
                    more = await self._pbx._dial_legs(self, leg.party, caller_id,
                                                      uris=[(uri, None) for uri in uris])
                    for extra in more:
                        extra._on_ringing = on_ringing
                    legs.extend(more)
                winner = next((leg for leg in legs if leg.answered and leg.state == "answered"),
                              None)
        finally:
            if ringback_play is not None and not ringback_play.done:
                ringback_play.stop()
            for leg in legs:
                leg._on_ringing = None
                if leg is not winner and leg.state != "ended":
                    leg.hangup_reason = "cancelled"
                    leg._hangup_now()
        if winner is not None:
            self.legs.append(winner) if winner not in self.legs else None
            if self.state != "answered" and not self.outgoing:
                await self.answer()
            return winner
        statuses = [leg.status for leg in legs   # a followed redirect is not an outcome
                    if leg.status is None or not 300 <= leg.status < 400]
        status = b2bua.best_status([s for s in statuses if s is not None])
        timed_out = any(s is None for s in statuses) or status in (None, 408)
        err = DialFailed(status if not timed_out else (status or 408),
                         Reason.NO_ANSWER if timed_out else b2bua.reason_for(status), targets)
        self._last_failure = err
        raise err

    async def _connect_early(self, leg: Leg) -> None:
        """The callee sends early media: let the unanswered caller hear it (183)."""
        try:
            if await self._early_answer() and leg.state != "ended":
                self._pbx._link(self, leg)
        except CallHungUp:
            pass

    # Bridging ------------------------------------------------------------------------------
    async def bridge(self, leg: Leg) -> None:
        """Connect the caller and ``leg`` (they hear each other) until one hangs up.

        Returns when ``leg`` ends (the caller is still there: an app may go on, e.g. a survey);
        raises ``CallHungUp`` when the caller hangs up (``leg`` is hung up too). A transfer
        (REFER from the other party, or ``transfer()``) swaps the leg and the bridge goes on.
        Example::

            agent = await call.dial("1001")
            await call.bridge(agent)
            await call.say("Please rate the call from 1 to 5")   # the agent hung up first
        """
        self._check_alive()
        if leg.state != "answered":
            raise ValueError(f"{leg!r} is not answered")
        if self.state != "answered":
            await self.answer()
        if leg not in self.legs:
            self.legs.append(leg)
        self._pbx._bridge(self, leg)
        while True:
            peer = self._peer
            if peer is None:
                return
            self._bridge_changed.clear()
            changed: asyncio.Future[Any] = asyncio.ensure_future(self._bridge_changed.wait())
            try:
                await asyncio.wait({self._ended, peer._ended, changed},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if self.state == "ended":
                current = self._peer            # (a transfer may have taken ``peer`` away)
                if current is not None and current.state != "ended":
                    current._hangup_now()
                raise CallHungUp(self._side_name(), self.hangup_reason)
            if peer.state == "ended" and self._peer in (peer, None):
                self._peer = None
                return

    async def transfer(self, target: str | Leg) -> None:
        """Connect the caller to ``target`` instead of the party it is bridged with (blind:
        a number or URI is dialed; attended: an answered ``Leg`` from ``dial()``). The old
        party is hung up once the new one answers. Raises ``DialFailed`` if it does not (the
        old party stays connected). Example: ``await call.transfer("1003")``, or attended::

            consult = await call.dial("1003")      # the caller hears music meanwhile
            await call.transfer(consult)
        """
        self._check_alive()
        new = target if isinstance(target, Leg) else await self.dial(target)
        old = self._peer
        self._pbx._swap(self, old, new)
        self._publish(CallTransferred, leg_id=old.id if old else "",
                      target=new.party, attended=isinstance(target, Leg))
        if old is not None and old.state != "ended":
            old._hangup_now()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (the admin API's active call list)."""
        return {"id": self.call_id, "caller": self.caller, "callee": self.callee,
                "dialed": self.dialed, "state": self.state, "tenant": self.tenant,
                "region": self.region.description, "path": list(self.path),
                "data": dict(self.data), "legs": [
                    {"id": leg.id, "party": leg.party, "state": leg.state} for leg in self.legs]}

    # Events ----------------------------------------------------------------------------------
    def _publish(self, cls: type[Any], **fields: Any) -> None:
        self._pbx._publish(self, cls, **fields)

    def _next_leg_id(self) -> str:
        self._leg_serial += 1
        return f"{self.call_id}-b{self._leg_serial}"


def _better(current: DialFailed | None, new: DialFailed) -> DialFailed:
    if current is None:
        return new
    best = b2bua.best_status([s for s in (current.status, new.status) if s is not None])
    return new if best == new.status and best != current.status else current
