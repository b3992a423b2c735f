"""INVITE sessions over a hostile network (RFC 3261 §13-15, RFC 6026): hypothesis drives two
endpoints (transaction layer + InviteSession, the harness of tests/unit/test_invite.py) through a
call with random TU behaviour (early media, delayed offer, reject, CANCEL at any time, re-INVITEs
from both sides at any time, hang-up from either side) while the network drops, duplicates and
delays (so reorders) the first messages. Afterwards the network is reliable, and once every timer
has run out:

- both sides agree: both confirmed, or both terminated (a callee that never saw the INVITE
  counts as terminated);
- confirmed sides mirror each other: dialog ids, sequence numbers, offer/answer settled;
- no side ever sent more ACKs for a 2xx than it received copies of that 2xx;
- a session's ``Terminated`` comes at most once and is its last event, and it owes nothing more
  (``finished``); no transaction is left;
- with at most five losses (fewer than any retransmission series is long) the outcome is the one
  the TUs asked for: answered and never hung up -> confirmed, with each re-INVITE completed
  exactly once; rejected, cancelled or hung up -> terminated.

At most ten messages are lost in all, fewer than the shortest retransmission series (11 for a
BYE over 64*T1): with more, SIP itself cannot promise agreement (every BYE can be lost).
"""

from __future__ import annotations

import heapq
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.invite import (
    AckTimeout,
    Answered,
    AnswerReceived,
    DialogResponse,
    InviteSession,
    OfferReceived,
    OfferRequested,
    OfferState,
    Output,
    SessionState,
    Terminated,
)
from pbx.sip.message import Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_invite import ANSWER_A, ANSWER_B, HOLD, OFFER_A, OFFER_B, Endpoint, summary

T = TypeVar("T")

END = 400.0         # long enough for every timer (Timer C is 200 s) to run out
MAX_LOSSES = 10
FEW_LOSSES = 5

times = st.integers(0, 1500).map(lambda ms: ms / 100)      # 0-15 s in 10 ms steps
short = st.integers(0, 300).map(lambda ms: ms / 100)


@dataclass(frozen=True)
class Scenario:
    offer: bool                        # offer in the INVITE, or in the 2xx (delayed offer)
    ring: int | None                   # 180, 183 (with early SDP) or no provisional
    accept: bool                       # the callee accepts, or rejects with 486
    answer_after: float
    cancel_at: float | None
    reinvite_a: tuple[float, bool] | None   # (when, with an offer)
    reinvite_b: tuple[float, bool] | None
    hangup: tuple[str, float] | None   # ("a" | "b", when)


def mostly_none(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), st.none(), strategy)


scenarios = st.builds(
    Scenario,
    offer=st.booleans(),
    ring=st.sampled_from([None, 180, 183]),
    accept=st.sampled_from([True, True, True, False]),
    answer_after=short,
    cancel_at=mostly_none(short),
    reinvite_a=st.none() | st.tuples(times, st.booleans()),
    reinvite_b=st.none() | st.tuples(times, st.booleans()),
    hangup=mostly_none(st.tuples(st.sampled_from(["a", "b"]), times)),
)
# Fate of each of the first messages: delivered, lost or duplicated, after a delay in ms
# (different delays reorder messages).
fates = st.lists(st.tuples(st.sampled_from(["ok", "drop", "drop", "dup"]), st.integers(1, 1500),
                           st.integers(1, 1500)), min_size=5, max_size=50)
randoms = st.lists(st.floats(0.0, 0.999), min_size=1, max_size=3)


@dataclass
class World:
    """Two endpoints, a network with per-message fates, and the TUs' scheduled actions."""

    scenario: Scenario
    fates: list[tuple[str, int, int]]
    a: Endpoint = field(init=False)
    b: Endpoint = field(init=False)
    now: float = 0.0
    losses: int = 0
    _wire: list[tuple[float, int, str, bytes, str]] = field(default_factory=list)
    _jobs: list[tuple[float, int, Callable[[float], None]]] = field(default_factory=list)
    _seq: int = 0
    _sent: int = 0
    reinvites: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0})
    hung_up: bool = False
    cancelled: bool = False
    posted: Counter[bytes] = field(default_factory=Counter)

    def later(self, at: float, job: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._jobs, (at, self._seq, job))

    def post(self, sender: Endpoint) -> None:
        """Put what ``sender`` sent on the wire, each message with its fate."""
        for dest, data in sender.outbox:
            self.posted[data] += 1
            fate, delay, delay2 = (self.fates[self._sent] if self._sent < len(self.fates)
                                   else ("ok", 10, 10))
            self._sent += 1
            if fate == "drop" and self.losses < MAX_LOSSES:
                self.losses += 1
                continue
            copies = [delay, delay2] if fate == "dup" else [delay]
            for d in copies:
                self._seq += 1
                heapq.heappush(self._wire, (self.now + d / 1000, self._seq, dest, data,
                                            sender.host))
        sender.outbox = []

    def run(self) -> None:
        eps = (self.a, self.b)
        while True:
            for ep in eps:
                self.post(ep)
            candidates = [d for d in (ep.next_deadline() for ep in eps) if d is not None]
            if self._wire:
                candidates.append(self._wire[0][0])
            if self._jobs:
                candidates.append(self._jobs[0][0])
            if not candidates or min(candidates) > END:
                return
            self.now = max(self.now, min(candidates))
            now = self.now
            while self._wire and self._wire[0][0] <= now:
                _, _, dest, data, source = heapq.heappop(self._wire)
                for ep in eps:
                    if dest in ep.hosts:
                        ep.receive(data, source, now)
            for ep in eps:
                deadline = ep.next_deadline()
                if deadline is not None and deadline <= now:
                    ep.timer(now)
            while self._jobs and self._jobs[0][0] <= now:
                _, _, job = heapq.heappop(self._jobs)
                job(now)


def build(scenario: Scenario, fate_list: list[tuple[str, int, int]], ra: list[float],
          rb: list[float]) -> World:
    world = World(scenario, fate_list)

    def react(ep: Endpoint, s: InviteSession, ev: Output, now: float) -> list[Output]:
        mine = ep.name == "alice"
        answer = ANSWER_A if mine else ANSWER_B
        offer = OFFER_A if mine else OFFER_B
        if isinstance(ev, OfferReceived | OfferRequested) and ev.initial and s.role == "uas":
            def respond(t: float) -> None:
                if scenario.accept:
                    ep.apply(s, s.accept(answer if isinstance(ev, OfferReceived) else offer, t), t)
                else:
                    ep.apply(s, s.reject(486, t), t)
            if scenario.ring is not None:
                ep.apply(s, s.provisional(scenario.ring, now,
                                          body=answer if scenario.ring == 183 else None), now)
            world.later(now + scenario.answer_after, respond)
            return []
        if isinstance(ev, OfferReceived):
            if isinstance(ev.message, Request):
                return s.accept(answer, now)
            return s.ack(answer, now)
        if isinstance(ev, OfferRequested):
            return s.accept(offer, now)
        if isinstance(ev, AckTimeout):
            return s.bye(now)
        return []

    world.a = Endpoint("alice", "10.0.0.1", randoms=ra, react=react)
    world.b = Endpoint("bob", "10.0.0.2", aliases=("b.example",), randoms=rb, react=react)
    a, b = world.a, world.b
    sa = a.call(0.0, body=OFFER_A if scenario.offer else None)

    def session_of(ep: Endpoint) -> InviteSession | None:
        return ep.sessions[0] if ep.sessions else None

    if scenario.cancel_at is not None:
        def cancel(t: float) -> None:
            if sa.state in (SessionState.CALLING, SessionState.EARLY):
                world.cancelled = True          # before any final response: it will end
            a.apply(sa, sa.cancel(t), t)
        world.later(scenario.cancel_at, cancel)
    for side, plan in (("a", scenario.reinvite_a), ("b", scenario.reinvite_b)):
        if plan is None:
            continue
        at, with_offer = plan
        ep = a if side == "a" else b

        def reinvite(t: float, ep: Endpoint = ep, side: str = side,
                     with_offer: bool = with_offer) -> None:
            s = session_of(ep)
            if s is not None and s.state is SessionState.CONFIRMED:
                world.reinvites[side] += 1
                ep.apply(s, s.reinvite(HOLD if with_offer else None, t), t)
        world.later(at, reinvite)
    if scenario.hangup is not None:
        who, at = scenario.hangup
        ep = a if who == "a" else b

        def hangup(t: float, ep: Endpoint = ep) -> None:
            s = session_of(ep)
            if s is not None and s.state is not SessionState.TERMINATED:
                world.hung_up = True
                ep.apply(s, s.hangup(t), t)
        world.later(at, hangup)
    return world


def events_of(ep: Endpoint, s: InviteSession) -> list[Output]:
    return [ev for owner, ev in ep.log if owner is s]


def check(world: World) -> None:
    a, b, sc = world.a, world.b, world.scenario
    assert len(a.sessions) == 1 and len(b.sessions) <= 1
    sa = a.sessions[0]
    sb = b.sessions[0] if b.sessions else None
    up_a = sa.state is SessionState.CONFIRMED
    up_b = sb is not None and sb.state is SessionState.CONFIRMED
    # Agreement.
    assert up_a == up_b, (sa, sb)
    # One ACK per 2xx received at most, on both sides.
    for ep in (a, b):
        for key, count in ep.acks_sent.items():
            assert count <= ep.ok_received[key], (ep.name, key)
    # Terminated at most once, and last (a DialogResponse may still come after it).
    for ep, s in ((a, sa), (b, sb)):
        if s is None:
            continue
        evs = [e for e in events_of(ep, s) if not isinstance(e, DialogResponse)]
        ends = [i for i, e in enumerate(evs) if isinstance(e, Terminated)]
        assert len(ends) <= 1 and (not ends or ends[0] == len(evs) - 1), evs
        assert (s.state is SessionState.TERMINATED) == bool(ends)
        assert s.finished or s.state is SessionState.CONFIRMED
        assert s.next_deadline() is None
        assert sum(isinstance(e, Answered) for e in evs) <= 1
    assert len(a.layer) == 0 and len(b.layer) == 0
    # Never a 2xx to the peer's INVITE while ours awaits its final response (§14: 491).
    assert a.crossed_2xx == 0 and b.crossed_2xx == 0
    # Confirmed sides mirror each other.
    if up_a and sb is not None:
        da, db = sa.dialog, sb.dialog
        assert da is not None and db is not None
        assert (da.call_id, da.local_tag, da.remote_tag) == (db.call_id, db.remote_tag,
                                                             db.local_tag)
        assert da.local_cseq == db.remote_cseq
        assert db.local_cseq == da.remote_cseq or (db.local_cseq is None
                                                   and da.remote_cseq is None)
        assert sa.offer_state is sb.offer_state is OfferState.STABLE
    if world.losses > FEW_LOSSES:
        return
    # Few losses: what the TUs asked for.
    ended = not sc.accept or sc.cancel_at is not None or world.hung_up
    if not ended:
        assert up_a and up_b
        for side, ep, s in (("a", a, sa), ("b", b, sb)):
            assert s is not None
            done = [e for e in events_of(ep, s)
                    if (isinstance(e, AnswerReceived) and not isinstance(e.message, Request))
                    or (isinstance(e, OfferReceived) and not e.initial
                    and not isinstance(e.message, Request))]
            assert len(done) == world.reinvites[side], (side, done)
    elif not sc.accept or world.hung_up or world.cancelled:
        assert not up_a and not up_b


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios, fate_list=fates, ra=randoms, rb=randoms)
def test_both_sides_agree_under_loss_duplication_and_reordering(
        scenario: Scenario, fate_list: list[tuple[str, int, int]], ra: list[float],
        rb: list[float]) -> None:
    world = build(scenario, fate_list, ra, rb)
    world.run()
    check(world)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios, ra=randoms, rb=randoms)
def test_reliable_network_gives_exactly_what_the_tus_asked(
        scenario: Scenario, ra: list[float], rb: list[float]) -> None:
    world = build(scenario, [], ra, rb)
    world.run()
    check(world)
    assert world.losses == 0
    sa = world.a.sessions[0]
    if scenario.cancel_at is None and not world.hung_up:
        assert (sa.state is SessionState.CONFIRMED) == scenario.accept
    # Nothing is ever retransmitted on a reliable, fast wire (every message is sent once).
    assert not [summary(d) for d, n in world.posted.items() if n > 1]
