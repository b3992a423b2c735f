"""Typed events and the in-process event bus."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from pbx.events import (
    EVENT_KINDS,
    CallAnswered,
    CallBridged,
    CallDataSet,
    CallEnded,
    CallRinging,
    CallStarted,
    CallTransferred,
    DigitsReceived,
    Event,
    EventBus,
    KindFilter,
    LegEnded,
    LegStarted,
    RecordingStarted,
    RegistrationChanged,
    RuleMatched,
    event_from_dict,
)
from pbx.region import Region

REGION = Region("+8613800138000", True, "CN", "北京市", "北京市", "北京市", "中国移动")

SAMPLES: list[Event] = [
    CallStarted(call_id="c1", at=1.0, tenant="t", caller="13800138000", callee="1001",
                dialed="4008001234", region=REGION, leg_id="a1", app="hotline",
                data={"crm": 42, "tags": ["vip"]}),
    LegStarted(call_id="c1", at=1.5, leg_id="b1", party="1002", dialed="8002"),
    CallRinging(call_id="c1", at=2.0, leg_id="b1", status=183),
    CallAnswered(call_id="c1", at=3.0, leg_id="b1"),
    DigitsReceived(call_id="c1", at=3.5, digits="12#"),
    CallBridged(call_id="c1", at=4.0, leg_id="a1", peer_leg_id="b1", peer="1002"),
    CallTransferred(call_id="c1", at=5.0, leg_id="b1", target="1003", attended=True),
    RuleMatched(call_id="c1", at=0.5, rule="vip", branch="gold"),
    RecordingStarted(call_id="c1", at=4.5, path="/rec/c1.wav"),
    CallDataSet(call_id="c1", at=4.6, data={"order": "A-1"}),
    LegEnded(call_id="c1", at=6.0, leg_id="b1", status=486, reason="busy"),
    CallEnded(call_id="c1", at=7.0, status=None, reason="normal", side="caller", cause="BYE",
              disposition="answered"),
    RegistrationChanged(at=8.0, tenant="t", aor="sip:1001@pbx.local",
                        contact="sip:1001@10.0.0.1:5062", expires=3600, source="udp:10.0.0.1"),
]


def started(call_id: str = "c1", at: float = 1.0) -> CallStarted:
    return CallStarted(call_id=call_id, at=at, caller="1001", callee="1002")


def ended(call_id: str = "c1", at: float = 2.0) -> CallEnded:
    return CallEnded(call_id=call_id, at=at)


# Events -------------------------------------------------------------------------------------------

def test_every_kind_has_a_sample_and_round_trips_through_json() -> None:
    assert {e.kind for e in SAMPLES} == set(EVENT_KINDS)
    for event in SAMPLES:
        data = json.loads(json.dumps(event.to_dict()))
        assert data["kind"] == event.kind
        assert event_from_dict(data) == event


def test_to_dict_flattens_the_region_and_copies_data() -> None:
    data = SAMPLES[0].to_dict()
    assert list(data)[:4] == ["kind", "call_id", "at", "tenant"]
    assert data["region"]["province"] == "北京市"
    assert data["region"]["carrier"] == "中国移动"
    data["data"]["crm"] = 0
    assert SAMPLES[0].data["crm"] == 42  # type: ignore[attr-defined]


def test_event_from_dict_rejects_unknown_kinds_and_fields() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        event_from_dict({"kind": "call.exploded", "at": 1.0})
    with pytest.raises(ValueError, match=r"bad call\.ended"):
        event_from_dict({"kind": "call.ended", "at": 1.0, "colour": "red"})
    with pytest.raises(ValueError, match=r"bad call\.started"):
        event_from_dict({"kind": "call.started", "at": 1.0})  # caller/callee missing


def test_events_are_frozen_and_keyed() -> None:
    event = started()
    with pytest.raises(AttributeError):
        event.call_id = "x"  # type: ignore[misc]
    assert event.key == "c1"
    reg = SAMPLES[-1]
    assert reg.key == "aor:sip:1001@pbx.local"


def test_kind_filter() -> None:
    assert KindFilter()("call.started")
    assert KindFilter(["*"])("leg.ended")
    f = KindFilter(["call.ended", CallStarted, "leg.*"])
    assert [k for k in sorted(EVENT_KINDS) if f(k)] == [
        "call.ended", "call.started", "leg.ended", "leg.started"]
    assert not KindFilter([])("call.started")
    with pytest.raises(ValueError, match=r"unknown event kind 'call\.endd'"):
        KindFilter(["call.endd"])
    with pytest.raises(ValueError, match=r"no event kind matches 'fax\.\*'"):
        KindFilter(["fax.*"])


# Synchronous subscribers --------------------------------------------------------------------------

def test_sync_subscribers_get_matching_events_in_order() -> None:
    bus = EventBus()
    everything: list[Event] = []
    ends: list[Event] = []
    bus.subscribe(everything.append)
    bus.subscribe(ends.append, kinds=[CallEnded])
    events = [started("c1"), started("c2"), ended("c2"), ended("c1")]
    for e in events:
        bus.publish(e)
    assert everything == events
    assert ends == [events[2], events[3]]
    assert bus.published == 4


def test_a_failing_subscriber_is_logged_and_harms_no_one(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(lambda e: seen.append("first"))
    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append("third"))
    with caplog.at_level(logging.ERROR, logger="pbx.events"):
        bus.publish(started())  # does not raise
    assert seen == ["first", "third"]
    assert "failed on call.started" in caplog.text and "boom" in caplog.text


def test_unsubscribe_including_from_inside_a_callback() -> None:
    bus = EventBus()
    seen: list[str] = []
    unsubscribe_b: list[Any] = []

    def a(event: Event) -> None:
        seen.append("a")
        unsubscribe_b[0]()  # b still gets the event being published (snapshot), not later ones

    unsubscribe_a = bus.subscribe(a)
    unsubscribe_b.append(bus.subscribe(lambda e: seen.append("b")))
    bus.publish(started())
    bus.publish(started("c2"))
    assert seen == ["a", "b", "a"]
    unsubscribe_a()
    unsubscribe_a()  # idempotent
    bus.publish(started("c3"))
    assert seen == ["a", "b", "a"]


def test_publishing_from_a_subscriber_keeps_one_global_order() -> None:
    bus = EventBus()
    first: list[str] = []
    second: list[str] = []

    def echo(event: Event) -> None:
        first.append(event.call_id)
        if event.call_id == "c1":
            bus.publish(started("c1-child"))

    bus.subscribe(echo)
    bus.subscribe(lambda e: second.append(e.call_id))
    bus.publish(started("c1"))
    assert first == second == ["c1", "c1-child"]


def test_a_sync_subscriber_returning_a_coroutine_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()

    async def handler(event: Event) -> None:  # pragma: no cover - never awaited
        raise AssertionError

    bus.subscribe(lambda e: handler(e))  # a lambda hides that it is async
    with caplog.at_level(logging.ERROR, logger="pbx.events"):
        bus.publish(started())
    assert "returned a coroutine" in caplog.text


# Asynchronous subscribers -------------------------------------------------------------------------

def test_async_subscribers_do_not_block_the_publisher_and_keep_order() -> None:
    async def main() -> None:
        bus = EventBus()
        gate = asyncio.Event()
        seen: list[str] = []

        async def slow(event: Event) -> None:
            await gate.wait()
            seen.append(event.call_id)

        bus.subscribe(slow)
        for i in range(5):
            bus.publish(started(f"c{i}"))  # returns at once though slow() is stuck
        await asyncio.sleep(0.01)
        assert seen == []
        gate.set()
        await bus.drain()
        assert seen == [f"c{i}" for i in range(5)]

    asyncio.run(main())


def test_async_callable_objects_and_failures(caplog: pytest.LogCaptureFixture) -> None:
    class Sink:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def __call__(self, event: Event) -> None:
            if event.call_id == "bad":
                raise ValueError("async boom")
            self.seen.append(event.call_id)

    async def main() -> Sink:
        bus = EventBus()
        sink = Sink()
        bus.subscribe(sink, kinds=["call.started"])
        for call_id in ("c1", "bad", "c2"):
            bus.publish(started(call_id))
            bus.publish(ended(call_id))
        await bus.drain()
        return sink

    with caplog.at_level(logging.ERROR, logger="pbx.events"):
        sink = asyncio.run(main())
    assert sink.seen == ["c1", "c2"]
    assert "async boom" in caplog.text


def test_async_subscriber_queue_drops_the_oldest_and_counts() -> None:
    async def main() -> None:
        bus = EventBus(queue_size=3)
        gate = asyncio.Event()
        seen: list[str] = []

        async def slow(event: Event) -> None:
            await gate.wait()
            seen.append(event.call_id)

        bus.subscribe(slow)
        bus.publish(started("c0"))
        await asyncio.sleep(0)  # the worker takes c0 and blocks on the gate
        for i in range(1, 7):
            bus.publish(started(f"c{i}"))
        assert bus.dropped == 3
        gate.set()
        await bus.drain()
        assert seen == ["c0", "c4", "c5", "c6"]

    asyncio.run(main())


def test_events_published_without_a_loop_reach_async_subscribers_on_drain() -> None:
    bus = EventBus()
    seen: list[str] = []

    async def sink(event: Event) -> None:
        seen.append(event.call_id)

    bus.subscribe(sink)
    bus.publish(started("early"))  # no running loop: queued
    assert seen == []
    asyncio.run(bus.drain())
    assert seen == ["early"]


# Streams --------------------------------------------------------------------------------------------

def test_stream_iterates_and_closes() -> None:
    async def main() -> list[str]:
        bus = EventBus()
        got: list[str] = []

        async def consume() -> None:
            async with bus.stream(kinds=["call.*"]) as stream:
                async for event in stream:
                    got.append(f"{event.kind}:{event.call_id}")
                    if event.kind == "call.ended":
                        break

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        bus.publish(SAMPLES[-1])  # registration: filtered out
        bus.publish(started("c1"))
        await asyncio.sleep(0)
        bus.publish(CallAnswered(call_id="c1", at=1.5))
        bus.publish(ended("c1"))
        await asyncio.wait_for(task, 1)
        bus.publish(started("c2"))  # nobody listens any more: no error
        return got

    assert asyncio.run(main()) == ["call.started:c1", "call.answered:c1", "call.ended:c1"]


def test_stream_is_bounded_drops_oldest_and_ends_after_close() -> None:
    async def main() -> None:
        bus = EventBus()
        stream = bus.stream(maxsize=2)
        for i in range(5):
            bus.publish(started(f"c{i}"))
        assert (len(stream), stream.dropped, bus.dropped) == (2, 3, 3)
        first = stream.get_nowait()
        assert first is not None and first.call_id == "c3"
        stream.close()
        bus.publish(started("late"))  # after close: not queued
        rest = [e.call_id async for e in stream]
        assert rest == ["c4"]
        assert stream.get_nowait() is None

    asyncio.run(main())


def test_closing_a_stream_wakes_a_waiting_consumer() -> None:
    async def main() -> None:
        bus = EventBus()
        stream = bus.stream()
        task = asyncio.create_task(anext(stream, None))
        await asyncio.sleep(0)
        stream.close()
        assert await asyncio.wait_for(task, 1) is None

    asyncio.run(main())


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventBus().stream(maxsize=0)
