"""Webhooks against a real aiohttp server on 127.0.0.1: signing, retries, order, restarts, ask."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pbx.errors import PbxError
from pbx.events import CallAnswered, CallEnded, CallStarted, EventBus
from pbx.metrics import Registry
from pbx.webhooks import (
    DeadLetter,
    WebhookDispatcher,
    WebhookEndpoint,
    ask,
    backoff_delay,
    sign,
    verify_signature,
)

T = TypeVar("T")
SECRET = "s3cret"


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def label(self) -> str:
        return f"{self.event['call_id']}:{self.event['kind']}"


Responder = Callable[[Hit, list[Hit]], Awaitable[int] | int]


class Receiver:
    """An aiohttp app recording every POST; ``respond`` picks each status."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.hits: list[Hit] = []
        self.respond: Responder = respond or (lambda hit, hits: 200)
        self.app = web.Application()
        self.app.router.add_post("/hook", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(time.monotonic(), dict(request.headers), await request.read())
        self.hits.append(hit)
        status = self.respond(hit, self.hits)
        if not isinstance(status, int):
            status = await status
        hit.status = status
        return web.Response(status=status)

    def ok(self) -> list[str]:
        return [h.label for h in self.hits if 200 <= h.status < 300]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def started(call_id: str, at: float = 1000.0) -> CallStarted:
    return CallStarted(call_id=call_id, at=at, caller="1001", callee="1002")


def ended(call_id: str, at: float = 1010.0) -> CallEnded:
    return CallEnded(call_id=call_id, at=at, side="caller")


class FakeTime:
    """A wall clock that sleeping advances at once (the sleeps are recorded)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(round(delay, 6))
        self.now += delay
        await asyncio.sleep(0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# Signatures and backoff ---------------------------------------------------------------------------

def test_sign_and_verify() -> None:
    body = b'{"kind":"call.started"}'
    header = sign(SECRET, "1700000000", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, "1700000000", body, header)
    assert verify_signature(SECRET.encode(), "1700000000", body, header + " ")
    assert not verify_signature(SECRET, "1700000000", body + b" ", header)
    assert not verify_signature(SECRET, "1700000001", body, header)
    assert not verify_signature("other", "1700000000", body, header)
    assert not verify_signature(SECRET, "1700000000", body, "sha256=" + "0" * 64)
    assert verify_signature(SECRET, "1700000000", body, header, now=1700000299)
    assert not verify_signature(SECRET, "1700000000", body, header, now=1700000301)
    assert not verify_signature(SECRET, "soon", body, sign(SECRET, "soon", body), now=1.0)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    def delays(rand: float) -> list[float]:
        return [backoff_delay(n, base=1.0, cap=30.0, rand=lambda: rand) for n in range(1, 8)]

    assert delays(0.999999) == pytest.approx([1, 2, 4, 8, 16, 30, 30], abs=1e-4)
    assert delays(0.0) == [0.5, 1, 2, 4, 8, 15, 15]
    assert backoff_delay(0, base=2.0, cap=30.0, rand=lambda: 0.5) == 1.5


def test_configuration_errors(tmp_path: Path) -> None:
    outbox = tmp_path / "o.sqlite3"
    with pytest.raises(ValueError, match="unknown event kind"):
        WebhookDispatcher([WebhookEndpoint("http://x/", kinds=("call.endd",))], outbox)
    with pytest.raises(ValueError, match="must be http"):
        WebhookDispatcher([WebhookEndpoint("ftp://x/")], outbox)
    with pytest.raises(ValueError, match="duplicate"):
        WebhookDispatcher([WebhookEndpoint("http://x/"), WebhookEndpoint("http://x/")], outbox)


# Delivery -----------------------------------------------------------------------------------------

def test_events_are_signed_and_filtered_per_endpoint(tmp_path: Path) -> None:
    signed, plain = Receiver(), Receiver()

    async def main() -> None:
        async with TestServer(signed.app, host="127.0.0.1") as s1, \
                TestServer(plain.app, host="127.0.0.1") as s2:
            bus = EventBus()
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(s1.make_url("/hook")), secret=SECRET, name="crm"),
                 WebhookEndpoint(str(s2.make_url("/hook")), kinds=("call.ended",))],
                tmp_path / "outbox.sqlite3", bus=bus)
            await dispatcher.start()
            bus.publish(started("c1"))
            bus.publish(CallAnswered(call_id="c1", at=1001.0))
            bus.publish(ended("c1"))
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            assert dispatcher.depth == 0
            await dispatcher.stop()

    run(main())
    assert signed.ok() == ["c1:call.started", "c1:call.answered", "c1:call.ended"]
    assert plain.ok() == ["c1:call.ended"]
    first = signed.hits[0]
    h = first.headers
    assert h["X-Pbx-Event"] == "call.started"
    assert len(h["X-Pbx-Delivery"]) == 32 and h["Content-Type"] == "application/json"
    assert abs(int(h["X-Pbx-Timestamp"]) - time.time()) < 60
    assert verify_signature(SECRET, h["X-Pbx-Timestamp"], first.body, h["X-Pbx-Signature"],
                            now=time.time())
    assert not verify_signature(SECRET, h["X-Pbx-Timestamp"], first.body.replace(b"1001", b"1003"),
                                h["X-Pbx-Signature"])
    assert first.event == started("c1").to_dict()
    assert len({hit.headers["X-Pbx-Delivery"] for hit in signed.hits}) == 3
    assert "X-Pbx-Signature" not in plain.hits[0].headers      # no secret, no signature


def test_500_twice_then_200_arrives_on_the_third_try_with_backoff(tmp_path: Path) -> None:
    receiver = Receiver(lambda hit, hits: 500 if len(hits) <= 2 else 200)
    fake = FakeTime()
    registry = Registry()

    async def main() -> WebhookDispatcher:
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), secret=SECRET, name="crm")],
                tmp_path / "outbox.sqlite3", base_delay=2.0, clock=fake.clock,
                rand=lambda: 0.5, sleep=fake.sleep, metrics=registry)
            dispatcher(started("c1"))
            await dispatcher.start()
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            await dispatcher.stop()
            return dispatcher

    dispatcher = run(main())
    assert [h.status for h in receiver.hits] == [500, 500, 200]
    assert fake.slept == [1.5, 3.0]                       # 2 s then 4 s, times 0.75 (jitter)
    assert len({h.headers["X-Pbx-Delivery"] for h in receiver.hits}) == 1
    stamps = [int(h.headers["X-Pbx-Timestamp"]) for h in receiver.hits]
    assert stamps == [1_700_000_000, 1_700_000_001, 1_700_000_004]   # each attempt re-signed
    for hit in receiver.hits:
        assert verify_signature(SECRET, hit.headers["X-Pbx-Timestamp"], hit.body,
                                hit.headers["X-Pbx-Signature"])
    assert dispatcher.delivered.value(endpoint="crm") == 1
    assert dispatcher.failures.value(endpoint="crm") == 2
    text = registry.render()
    assert 'pbx_webhook_deliveries_total{endpoint="crm"} 1' in text
    assert 'pbx_webhook_outbox_depth{endpoint="crm"} 0' in text


def test_order_is_kept_per_call_and_other_calls_are_not_blocked(tmp_path: Path) -> None:
    def respond(hit: Hit, hits: list[Hit]) -> int:
        # The slow call's first event fails until the fast call has fully arrived.
        if hit.label == "slow:call.started" and "fast:call.ended" not in receiver.ok():
            return 503
        return 200

    receiver = Receiver(respond)

    async def main() -> None:
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            bus = EventBus()
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")))], tmp_path / "o.sqlite3",
                bus=bus, base_delay=0.005, max_delay=0.02)
            await dispatcher.start()
            bus.publish(started("slow"))
            bus.publish(started("fast"))
            bus.publish(CallAnswered(call_id="slow", at=1001.0))
            bus.publish(CallAnswered(call_id="fast", at=1001.0))
            bus.publish(ended("slow"))
            bus.publish(ended("fast"))
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            await dispatcher.stop()

    run(main())
    labels = [h.label for h in receiver.hits]
    assert receiver.hits[0].label == "slow:call.started" and receiver.hits[0].status == 503
    ok = receiver.ok()
    assert [x for x in ok if x.startswith("fast")] == [
        "fast:call.started", "fast:call.answered", "fast:call.ended"]
    assert [x for x in ok if x.startswith("slow")] == [
        "slow:call.started", "slow:call.answered", "slow:call.ended"]
    assert ok.index("fast:call.ended") < ok.index("slow:call.started")
    # Nothing of the slow call was even tried before its first event got through.
    first_ok = next(i for i, h in enumerate(receiver.hits)
                    if h.label == "slow:call.started" and h.status == 200)
    assert all(h.label == "slow:call.started" for h in receiver.hits[:first_ok]
               if h.label.startswith("slow"))
    assert len(labels) == len(ok) + sum(1 for h in receiver.hits if h.status == 503)


def test_a_restart_resumes_undelivered_events_in_order(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    down = Receiver(lambda hit, hits: 503)
    up = Receiver()

    async def first_run() -> None:
        async with TestServer(down.app, host="127.0.0.1") as server:
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), name="crm")], outbox,
                base_delay=0.2, rand=lambda: 0.0)
            await dispatcher.start()
            for event in (started("c1"), CallAnswered(call_id="c1", at=1001.0), ended("c1"),
                          started("c2")):
                dispatcher(event)
            while len(down.hits) < 2:       # both calls' first events tried and failed
                await asyncio.sleep(0.005)
            assert dispatcher.depth == 4
            await dispatcher.stop()

    async def second_run() -> WebhookDispatcher:
        async with TestServer(up.app, host="127.0.0.1") as server:
            # Same endpoint name, new URL: its undelivered events follow it.
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), name="crm")], outbox)
            assert dispatcher.depth == 4
            await dispatcher.start()
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            await dispatcher.stop()
            return dispatcher

    run(first_run())
    run(second_run())
    ok = up.ok()
    assert sorted(ok) == sorted(["c1:call.started", "c1:call.answered", "c1:call.ended",
                                 "c2:call.started"])
    assert [x for x in ok if x.startswith("c1")] == [
        "c1:call.started", "c1:call.answered", "c1:call.ended"]
    tried = {h.label: h.headers["X-Pbx-Delivery"] for h in down.hits}
    again = {h.label: h.headers["X-Pbx-Delivery"] for h in up.hits}
    assert all(again[label] == delivery for label, delivery in tried.items())  # same ids


PUBLISHER = textwrap.dedent("""
    import sys, time
    from pbx.events import CallEnded, CallStarted, EventBus
    from pbx.webhooks import WebhookDispatcher, WebhookEndpoint
    bus = EventBus()
    WebhookDispatcher([WebhookEndpoint("http://127.0.0.1:9/hook", name="crm")], sys.argv[1],
                      bus=bus)
    bus.publish(CallStarted(call_id="k", at=1.0, caller="1001", callee="1002"))
    bus.publish(CallEnded(call_id="k", at=2.0))
    print("ready", flush=True)
    time.sleep(60)
""")


def test_events_published_before_a_kill_9_are_delivered_after_restart(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(outbox)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    receiver = Receiver()

    async def main() -> None:
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), name="crm")], outbox)
            await dispatcher.start()
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            await dispatcher.stop()

    run(main())
    assert receiver.ok() == ["k:call.started", "k:call.ended"]


def test_client_errors_and_old_events_become_dead_letters(tmp_path: Path) -> None:
    receiver = Receiver(lambda hit, hits: 400 if hit.label == "c1:call.started" else 200)
    fake = FakeTime()
    port = closed_port()

    async def main() -> tuple[WebhookDispatcher, list[DeadLetter]]:
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), name="crm"),
                 WebhookEndpoint(f"http://127.0.0.1:{port}/hook", name="gone", timeout=2)],
                tmp_path / "o.sqlite3", base_delay=10.0, max_delay=100.0, max_age=120.0,
                clock=fake.clock, sleep=fake.sleep, rand=lambda: 0.999999)
            await dispatcher.start()
            dispatcher(started("c1"))
            dispatcher(ended("c1"))
            await asyncio.wait_for(dispatcher.wait_idle(), 10)
            assert dispatcher.depth == 0
            letters = dispatcher.dead_letters()
            await dispatcher.stop()
            return dispatcher, letters

    dispatcher, letters = run(main())
    # The 400 is final at once; the next event of the call is not held up by it.
    assert [h.status for h in receiver.hits] == [400, 200]
    # The unreachable endpoint retried after 10, 20, 40, 80 s; at 150 s the event was too old,
    # and the next one (as old) died on its first failure.
    assert dispatcher.dead.value(endpoint="gone") == 2
    assert fake.slept == pytest.approx([10, 20, 40, 80], abs=1e-3)
    dead = {(d.endpoint, d.kind): d for d in letters}
    assert set(dead) == {("crm", "call.started"), ("gone", "call.started"),
                         ("gone", "call.ended")}
    assert dead["crm", "call.started"].error == "HTTP 400"
    assert dead["crm", "call.started"].attempts == 1
    assert "ClientConnectorError" in dead["gone", "call.started"].error
    assert dead["gone", "call.started"].attempts == 5
    assert json.loads(dead["gone", "call.ended"].body)["kind"] == "call.ended"


def test_rows_of_removed_endpoints_are_buried_on_start(tmp_path: Path) -> None:
    outbox = tmp_path / "o.sqlite3"
    first = WebhookDispatcher([WebhookEndpoint("http://127.0.0.1:9/", name="old")], outbox)
    first(started("c1"))
    run(first.stop())
    second = WebhookDispatcher([WebhookEndpoint("http://127.0.0.1:9/", name="new")], outbox)
    assert second.depth == 0
    [letter] = second.dead_letters()
    assert (letter.endpoint, letter.error) == ("old", "endpoint no longer configured")
    run(second.stop())
    with pytest.raises(PbxError, match="closed"):
        run(second.start())
    with pytest.raises(PbxError, match="closed"):
        second(started("c2"))


# Routing questions --------------------------------------------------------------------------------

def test_ask_answers_and_falls_back() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.json_response({"agent": "1007"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"agent": "late"})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="agent 1007")

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"agent": "x"}, status=500)

    app = web.Application()
    for path, handler in (("/answer", answer), ("/slow", slow), ("/text", text),
                          ("/broken", broken)):
        app.router.add_post(path, handler)

    async def main() -> None:
        async with TestServer(app, host="127.0.0.1") as server:
            def url(path: str) -> str:
                return str(server.make_url(path))

            payload = {"caller": "13800138000", "queue": "sales"}
            got = await ask(url("/answer"), "route", payload, timeout=2, fallback="queue",
                            secret=SECRET)
            assert got == {"agent": "1007"}
            t0 = time.monotonic()
            assert await ask(url("/slow"), "route", payload, timeout=0.1,
                             fallback="queue") == "queue"
            assert time.monotonic() - t0 < 1.0
            assert await ask(url("/text"), "route", payload, fallback="queue") == "queue"
            assert await ask(url("/broken"), "route", payload, fallback="queue") == "queue"
            assert await ask(f"http://127.0.0.1:{closed_port()}/", "route", payload,
                             fallback="queue") == "queue"
            assert await ask(url("/answer"), "route", payload, fallback="queue",
                             validate=lambda a: a.get("agent") == "9999") == "queue"
            assert await ask(url("/answer"), "route", payload, fallback="queue",
                             validate=lambda a: a["missing"]) == "queue"   # validate raising
            dispatcher = WebhookDispatcher([], ":memory:")
            for started_first in (False, True):   # its own session once started
                if started_first:
                    await dispatcher.start()
                assert await dispatcher.ask(url("/answer"), "route", payload) == {
                    "agent": "1007"}
            await dispatcher.stop()

    run(main())
    headers, body = seen[0]
    assert json.loads(body) == {"question": "route",
                                "data": {"caller": "13800138000", "queue": "sales"}}
    assert (headers["X-Pbx-Event"], headers["X-Pbx-Question"]) == ("question", "route")
    assert verify_signature(SECRET, headers["X-Pbx-Timestamp"], body,
                            headers["X-Pbx-Signature"], now=time.time())


def test_a_receiver_down_for_30_seconds_gets_every_event_afterwards_in_order() -> None:
    """The receiver answers 503 (and refuses nothing else) for the first 30 s of wall-clock
    time; events of three calls published meanwhile all arrive once it is back, each call's in
    order. Time is a fake clock that the dispatcher's backoff sleeps advance, so the 30 s pass
    at once; the HTTP exchanges are real."""
    fake = FakeTime()
    back_at = fake.now + 30.0
    receiver = Receiver(lambda hit, hits: 503 if fake.now < back_at else 200)

    async def main(tmp: Path) -> WebhookDispatcher:
        async with TestServer(receiver.app, host="127.0.0.1") as server:
            dispatcher = WebhookDispatcher(
                [WebhookEndpoint(str(server.make_url("/hook")), SECRET, name="crm")],
                tmp / "outbox.sqlite3", base_delay=1.0, max_delay=8.0, clock=fake.clock,
                sleep=fake.sleep, rand=lambda: 0.5)
            await dispatcher.start()
            for n in range(3):
                call = f"c{n}"
                dispatcher(started(call, at=fake.now))
                dispatcher(CallAnswered(call_id=call, at=fake.now + 1))
                dispatcher(ended(call, at=fake.now + 2))
            await asyncio.wait_for(dispatcher.wait_idle(), 20)
            await dispatcher.stop()
            return dispatcher

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        dispatcher = run(main(Path(tmp)))
    assert dispatcher.depth == 0
    assert fake.now >= back_at                              # it really was down for 30 s
    failed = [h for h in receiver.hits if h.status == 503]
    assert failed and all(h.status == 503 for h in receiver.hits[:len(failed)])
    ok = receiver.ok()
    for n in range(3):
        assert [x for x in ok if x.startswith(f"c{n}:")] == [
            f"c{n}:call.started", f"c{n}:call.answered", f"c{n}:call.ended"]
    for hit in receiver.hits:
        assert verify_signature(SECRET, hit.headers["X-Pbx-Timestamp"], hit.body,
                                hit.headers["X-Pbx-Signature"], now=float(
                                    hit.headers["X-Pbx-Timestamp"]))
