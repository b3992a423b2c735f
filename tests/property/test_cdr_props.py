"""Call records do not depend on how calls interleave, only on each call's own event order."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.cdr import CallRecord, CdrStore, CdrWriter, Disposition
from pbx.events import (
    CallAnswered,
    CallBridged,
    CallDataSet,
    CallEnded,
    CallRinging,
    CallStarted,
    CallTransferred,
    DigitsReceived,
    Event,
    LegEnded,
    LegStarted,
    RecordingStarted,
    RegistrationChanged,
    RuleMatched,
)

T0 = 1_714_550_400.0
LEGS = ["", "a", "b1", "b2"]
STATUSES = [None, None, 404, 408, 480, 486, 487, 503, 600, 603]
REASONS = ["normal", "busy", "no_answer", "cancelled", "rule", "failed", "app_error",
           "interrupted", "bye"]


@st.composite
def call_script(draw: st.DrawFn, call_id: str) -> list[Event]:
    """The events of one call, in their own order, with non-decreasing times."""
    t = T0 + draw(st.integers(0, 3600)) / 4
    tenant = draw(st.sampled_from(["", "acme", "globex"]))

    def tick() -> float:
        nonlocal t
        t += draw(st.integers(0, 40)) / 4
        return t

    events: list[Event] = [CallStarted(
        call_id=call_id, at=t, tenant=tenant, caller=draw(st.sampled_from(["1001", "1002"])),
        callee="2000", dialed="8000", leg_id=draw(st.sampled_from(["", "a"])),
        app=draw(st.sampled_from(["", "ivr"])))]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 10))
        leg = draw(st.sampled_from(LEGS))
        common: dict[str, Any] = {"call_id": call_id, "at": tick(), "tenant": tenant}
        if kind == 0:
            events.append(LegStarted(**common, leg_id=leg or "b1",
                                     party=draw(st.sampled_from(["agent1", "agent2"]))))
        elif kind == 1:
            events.append(CallRinging(**common, leg_id=leg))
        elif kind == 2:
            events.append(CallAnswered(**common, leg_id=leg))
        elif kind == 3:
            events.append(DigitsReceived(**common, leg_id=leg, digits="1"))
        elif kind == 4:
            events.append(CallBridged(**common, leg_id=leg, peer_leg_id="b2", peer="agent2"))
        elif kind == 5:
            events.append(CallTransferred(**common, leg_id=leg, target="3000"))
        elif kind == 6:
            events.append(RuleMatched(**common, rule="r", branch=draw(st.sampled_from("xy"))))
        elif kind == 7:
            events.append(RecordingStarted(**common, path=f"rec/{call_id}-{len(events)}.wav"))
        elif kind == 8:
            events.append(CallDataSet(**common, data={draw(st.sampled_from("kl")): len(events)}))
        else:
            events.append(LegEnded(**common, leg_id=leg or "b1",
                                   status=draw(st.sampled_from(STATUSES)),
                                   reason=draw(st.sampled_from(["", "busy"]))))
    if draw(st.integers(0, 4)):  # most calls end; some are still up
        events.append(CallEnded(
            call_id=call_id, at=tick(), tenant=tenant, status=draw(st.sampled_from(STATUSES)),
            reason=draw(st.sampled_from(REASONS)),
            side=draw(st.sampled_from(["", "caller", "callee", "system"]))))
    return events


@st.composite
def scripts_and_interleaving(draw: st.DrawFn) -> tuple[list[list[Event]], list[Event]]:
    n = draw(st.integers(1, 5))
    scripts = [draw(call_script(f"call{i}")) for i in range(n)]
    labels = [i for i, script in enumerate(scripts) for _ in script]
    order = draw(st.permutations(labels))
    cursors = [0] * n
    interleaved: list[Event] = []
    for i in order:  # the k-th occurrence of i takes call i's k-th event: own order kept
        interleaved.append(scripts[i][cursors[i]])
        cursors[i] += 1
    noise = RegistrationChanged(at=T0, aor="sip:1@x", contact="sip:1@y", expires=60)
    interleaved.insert(draw(st.integers(0, len(interleaved))), noise)
    return scripts, interleaved


def _records(events: list[Event]) -> list[CallRecord]:
    with CdrStore(":memory:") as store:
        writer = CdrWriter(store)
        for event in events:
            writer(event)
        return store.query()


@settings(max_examples=150, deadline=None)
@given(scripts_and_interleaving())
def test_interleaving_does_not_change_the_records(
        case: tuple[list[list[Event]], list[Event]]) -> None:
    scripts, interleaved = case
    one_by_one = _records([e for script in scripts for e in script])
    assert _records(interleaved) == one_by_one
    assert len(one_by_one) == len(scripts)


@settings(max_examples=150, deadline=None)
@given(scripts_and_interleaving())
def test_record_invariants_and_recovery(case: tuple[list[list[Event]], list[Event]]) -> None:
    scripts, interleaved = case
    with CdrStore(":memory:") as store:
        writer = CdrWriter(store)
        for event in interleaved:
            writer(event)
        ended = {s[0].call_id for s in scripts if isinstance(s[-1], CallEnded)}
        assert writer.active == len(scripts) - len(ended)
        store.recover_interrupted(now=T0 + 10_000)
        records = store.query()
        assert sorted(r.call_id for r in records) == sorted(s[0].call_id for s in scripts)
        for record in records:
            script = next(s for s in scripts if s[0].call_id == record.call_id)
            last = script[-1]
            assert record.disposition != Disposition.IN_PROGRESS
            assert record.end_time is not None and record.duration is not None
            assert record.end_time >= record.start_time
            assert record.duration == round(record.end_time - record.start_time, 3)
            assert record.end_time == last.at    # the end, or the last sign of life
            assert all(leg.end_time is not None for leg in record.legs)
            assert record.legs[0].role == "caller"
            assert len({leg.leg_id for leg in record.legs}) == len(record.legs)
            if record.answer_time is None:
                assert record.billable == 0
                assert record.disposition != Disposition.ANSWERED
            else:
                assert record.billable is not None and record.billable >= 0
                assert record.answer_time <= record.end_time
                interrupted = (not isinstance(last, CallEnded)
                               or last.reason == "interrupted")
                assert record.disposition == (
                    Disposition.INTERRUPTED if interrupted else Disposition.ANSWERED)
